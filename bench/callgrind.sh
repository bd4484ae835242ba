#!/usr/bin/env bash
# CPU instructions per inserted and per updated row, counted by valgrind's callgrind in a
# single-user backend, for the cases of setup.sql: no trigger, the trigger with no column to scrub,
# the extension's trigger, and the PL/pgSQL equivalent. Instruction counts repeat exactly from run
# to run, unlike wall time on a shared machine.
#   bench/callgrind.sh          ROWS=20000 bench/callgrind.sh
source "$(dirname "${BASH_SOURCE[0]}")/../scripts/lib.sh"
ROWS=${ROWS:-100000}

ensure_deps
command -v valgrind >/dev/null || "${SUDO[@]}" apt-get install -y -qq valgrind >/dev/null
install_extension release
cluster_start callgrind
trap cluster_stop EXIT
psql_run -v rows="$ROWS" -f "$ROOT/bench/setup.sql" >/dev/null
psql_run -c "CREATE TABLE src_v4 AS SELECT ip FROM src WHERE family(ip) = 4" >/dev/null
v4_rows=$(psql_run -At -c "SELECT count(*) FROM src_v4")
as_server_user "$PG_BIN/pg_ctl" -D "$CLUSTER_DIR/data" -m fast -w stop >/dev/null

# Instructions a single-user backend executes for one statement, startup included.
count() {
    echo "$1" | as_server_user valgrind --tool=callgrind --callgrind-out-file=/dev/null \
        "$PG_BIN/postgres" --single -D "$CLUSTER_DIR/data" -c session_preload_libraries=mastodon_ip_scrub postgres 2>&1 >/dev/null |
        sed -n 's/.*Collected : \([0-9]*\).*/\1/p'
}
startup=$(count "SELECT 1")
say "Instructions per row ($ROWS rows, PostgreSQL $PG_MAJOR; startup of $startup subtracted)"
printf '| statement | case | instructions per row | vs. no trigger | added per row |\n|---|---|---|---|---|\n'
# The INSERTs fill the (empty) tables that the UPDATEs then rewrite.
for statement in "INSERT INTO %s SELECT * FROM src" "UPDATE %s SET success = NOT success"; do
    declare -A per_row=()
    for c in la_none la_noop la_ours la_plpgsql; do
        sql=$(printf "$statement" "$c")
        per_row[$c]=$(( ($(count "$sql") - startup) / ROWS ))
        printf '| %s | %s | %d | %s | %d |\n' "${statement%% *}" "$c" "${per_row[$c]}" \
            "$(awk -v a="${per_row[$c]}" -v b="${per_row[la_none]}" 'BEGIN { printf "%.3fx", a / b }')" \
            $(( per_row[$c] - per_row[la_none] ))
    done
done

# truncate() against the built-in expression an admin would write, per call, over the IPv4 rows
# (the built-in one handles only one family); the same scan without any call is subtracted.
scan=$(count "SELECT count(ip) FROM src_v4")
say "Instructions per call over $v4_rows IPv4 addresses (the scan itself subtracted)"
printf '| expression | instructions per call | vs. built-in |\n|---|---|---|\n'
builtin=$(( ($(count "SELECT count(set_masklen(network(set_masklen(ip, 24)), 32)) FROM src_v4") - scan) / v4_rows ))
ours=$(( ($(count "SELECT count(mastodon_ip_scrub.truncate(ip)) FROM src_v4") - scan) / v4_rows ))
printf '| `set_masklen(network(set_masklen(ip, 24)), 32)` | %d | 1.000x |\n' "$builtin"
printf '| `mastodon_ip_scrub.truncate(ip)` | %d | %s |\n' "$ours" \
    "$(awk -v a="$ours" -v b="$builtin" 'BEGIN { printf "%.3fx", a / b }')"

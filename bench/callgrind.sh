#!/usr/bin/env bash
# CPU instructions, counted by valgrind's callgrind in a single-user backend (library preloaded,
# as the README recommends), which repeat exactly from run to run, unlike time on a shared machine:
#   - per row written, for the tables of setup.sql (no trigger, the trigger with no column to
#     scrub, the extension's trigger, the PL/pgSQL equivalent): INSERT ... SELECT, INSERT ... VALUES
#     (1,000 rows per statement) and COPY FROM of login_activities-shaped rows, UPDATE of a non-IP
#     column of users-shaped rows;
#   - per call of truncate() and of the built-in expression an admin would write;
#   - per transaction of the pgbench write mix (bench/write_mix), replayed without pgbench, with
#     and without the extension.
#   bench/callgrind.sh          ROWS=20000 MIX_TRANSACTIONS=1000 bench/callgrind.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
ROWS=${ROWS:-100000}
MIX_TRANSACTIONS=${MIX_TRANSACTIONS:-2000}
MIX_USERS=10000

command -v valgrind >/dev/null || apt_install valgrind
bench_server
psql_run -v rows="$ROWS" -f "$ROOT/bench/setup.sql" >/dev/null
psql_run -c "CREATE TABLE src_v4 AS SELECT ip FROM src WHERE family(ip) = 4" >/dev/null
v4_rows=$(psql_run -At -c "SELECT count(*) FROM src_v4")
COPY_FILE=$CLUSTER_DIR/login_activities.copy
psql_run -c "COPY src TO '$COPY_FILE'"
# The same rows as an application sends them: INSERT ... VALUES, 1,000 rows per statement, one
# statement per line (a single-user backend ends a statement at a newline).
VALUES_FILE=$CLUSTER_DIR/login_activities.values
psql_run -At -c "SELECT 'INSERT INTO :table VALUES ' || string_agg(format('(%s, %s, %L, %L, %L, %L, %L, %L, %L)',
                        id, user_id, authentication_method, provider, success, failure_reason, ip, user_agent, created_at), ', ' ORDER BY id)
                   FROM src GROUP BY (id - 1) / 1000 ORDER BY (id - 1) / 1000" >"$VALUES_FILE"
chmod 644 "$VALUES_FILE"
for db in mix_none mix_ours; do
    "$PG_BIN/createdb" "$db"
    [ "$db" = mix_ours ] && psql_run -d "$db" -c "SET client_min_messages = error" -c "CREATE EXTENSION mastodon_ip_scrub"
    psql_run -d "$db" -v users="$MIX_USERS" -f "$ROOT/bench/write_mix/setup.sql" >/dev/null
done
REPLAY=$CLUSTER_DIR/replay.sql
awk -v n="$MIX_TRANSACTIONS" -v users="$MIX_USERS" -f "$ROOT/bench/write_mix/replay.awk" >"$REPLAY"
chmod 644 "$REPLAY"
as_server_user "$PG_BIN/pg_ctl" -D "$CLUSTER_DIR/data" -m fast -w stop >/dev/null

# Instructions for the statements on standard input (startup included) in database $1.
count() { callgrind_instructions "$@"; }
startup=$(echo "SELECT 1" | count)
say "Instructions per row ($ROWS rows, PostgreSQL $PG_MAJOR; startup of $startup subtracted)"
printf '| statement | table | instructions per row | vs. no trigger | added per row |\n|---|---|---|---|---|\n'
# The INSERTs fill the (empty) la_ tables, which VALUES and COPY then fill again; the users_ tables are
# filled untimed, and their UPDATE is counted.
for statement in insert values copy update; do
    declare -A per_row=()
    for c in none noop ours plpgsql; do
        case $statement in
        insert) t=la_$c sql="INSERT INTO $t SELECT * FROM src" ;;
        values) t=la_$c sql=$(sed "s/:table/$t/" "$VALUES_FILE") ;;
        copy) t=la_$c sql="COPY $t FROM '$COPY_FILE'" ;;
        update)
            t=users_$c sql="UPDATE $t SET last_emailed_at = now()"
            # One line: a single-user backend ends a statement at a newline.
            echo "INSERT INTO $t ($USERS_COLUMNS) SELECT * FROM src_users" | count >/dev/null ;;
        esac
        [ "$statement" = copy ] || [ "$statement" = values ] && echo "TRUNCATE $t" | count >/dev/null
        per_row[$c]=$(( ($(echo "$sql" | count) - startup) / ROWS ))
        printf '| %s | %s | %d | %s | %d |\n' "$statement" "$t" "${per_row[$c]}" \
            "$(awk -v a="${per_row[$c]}" -v b="${per_row[none]}" 'BEGIN { printf "%.3fx", a / b }')" \
            $(( per_row[$c] - per_row[none] ))
        result "instructions.$statement.$c" "$(ratio "${per_row[$c]}" "${per_row[none]}")"
        if [ "$c" = plpgsql ]; then
            result "instructions.$statement.share_of_plpgsql" \
                "$(ratio $((per_row[ours] - per_row[none])) $((per_row[plpgsql] - per_row[none])))"
        fi
    done
done

# truncate() against the built-in expression an admin would write, per call, over the IPv4 rows
# (the built-in one handles only one family); the same scan without any call is subtracted.
scan=$(echo "SELECT count(ip) FROM src_v4" | count)
say "Instructions per call over $v4_rows IPv4 addresses (the scan itself subtracted)"
printf '| expression | instructions per call | vs. built-in |\n|---|---|---|\n'
builtin=$(( ($(echo "SELECT count(set_masklen(network(set_masklen(ip, 24)), 32)) FROM src_v4" | count) - scan) / v4_rows ))
ours=$(( ($(echo "SELECT count(mastodon_ip_scrub.truncate(ip)) FROM src_v4" | count) - scan) / v4_rows ))
printf '| `set_masklen(network(set_masklen(ip, 24)), 32)` | %d | 1.000x |\n' "$builtin"
printf '| `mastodon_ip_scrub.truncate(ip)` | %d | %s |\n' "$ours" \
    "$(awk -v a="$ours" -v b="$builtin" 'BEGIN { printf "%.3fx", a / b }')"
result instructions.truncate "$(ratio "$ours" "$builtin")"

say "Instructions per transaction of the write mix ($MIX_TRANSACTIONS transactions, $MIX_USERS users)"
printf '| database | instructions per transaction | vs. no extension |\n|---|---|---|\n'
declare -A mix=()
for db in mix_none mix_ours; do
    mix[$db]=$(( ($(count "$db" <"$REPLAY") - $(echo "SELECT 1" | count "$db")) / MIX_TRANSACTIONS ))
    printf '| %s | %d | %s |\n' "$db" "${mix[$db]}" \
        "$(awk -v a="${mix[$db]}" -v b="${mix[mix_none]}" 'BEGIN { printf "%.3fx", a / b }')"
done
result instructions.mix "$(ratio "${mix[mix_ours]}" "${mix[mix_none]}")"

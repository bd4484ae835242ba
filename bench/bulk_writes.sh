#!/usr/bin/env bash
# Bulk writes of ROWS (default 1,000,000) rows into identical tables (see setup.sql) with no trigger
# (*_none), the extension's trigger function with no column to scrub (*_noop: the floor any row
# trigger costs), the extension protecting the address (*_ours), and the same masking as a
# PL/pgSQL trigger (*_plpgsql):
#   insert  INSERT ... SELECT of login_activities-shaped rows, each with a full address
#   copy    COPY ... FROM a file of the same rows
#   update  UPDATE of a non-IP column of every row of a users-shaped table
# Each round runs every case back to back (the order rotates between rounds) and divides each by
# the no-trigger time of the same round, so load that comes and goes on a shared machine affects
# both sides of a ratio alike. Wall time and the backend's own CPU time are taken; reported are the
# medians over ROUNDS (default 7) of the times and of the ratios.
#   bench/bulk_writes.sh        or, quicker:   ROWS=200000 ROUNDS=3 bench/bulk_writes.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
ROWS=${ROWS:-1000000}
ROUNDS=${ROUNDS:-7}

# No autovacuum: each case VACUUMs its own table before it is timed, and an autovacuum of the
# previous case's table (a million rows inserted or updated) would otherwise run beside the next
# case's timed statement. Measured with it on: 15 rounds put the non-IP UPDATE of users_ours at
# 1.20x, with 0 trigger calls; the same UPDATEs without autovacuum alternated at 0.93x to 1.05x.
bench_server -c autovacuum=off
say "Preparing $ROWS rows of each shape"
psql_run -v rows="$ROWS" -f "$ROOT/bench/setup.sql" >/dev/null
# As the README recommends: without the library loaded, an UPDATE would not know it may skip the trigger.
psql_run -c "ALTER DATABASE postgres SET session_preload_libraries = 'mastodon_ip_scrub'"
COPY_FILE=$CLUSTER_DIR/login_activities.copy
psql_run -c "COPY src TO '$COPY_FILE'"

# Prepares table $2 for statement $1 (untimed), then prints "wall cpu" of the statement itself.
run_case() {
    case $1 in
    insert)
        psql_run -c "TRUNCATE $2"
        timed_sql "INSERT INTO $2 SELECT * FROM src" ;;
    copy)
        psql_run -c "TRUNCATE $2"
        timed_sql "COPY $2 FROM '$COPY_FILE'" ;;
    update)
        psql_run -c "TRUNCATE $2" -c "INSERT INTO $2 ($USERS_COLUMNS) SELECT * FROM src_users" -c "VACUUM ANALYZE $2"
        timed_sql "UPDATE $2 SET last_emailed_at = now()" ;;
    esac
}
declare -A table=([insert]=la [copy]=la [update]=users)
# interleaved_round's measure: case $1 of the current $statement.
measure() { run_case "$statement" "${table[$statement]}_$1"; }
declare -A samples
for ((round = 0; round < ROUNDS; round++)); do
    for statement in insert copy update; do
        line="  round $((round + 1)) $statement:"
        measured=$(interleaved_round measure "$round" none noop ours plpgsql)
        while read -r c wall cpu wall_ratio cpu_ratio; do
            samples[$statement,wall,$c]+="$wall "
            samples[$statement,cpu,$c]+="$cpu "
            samples[$statement,wall_ratio,$c]+="$wall_ratio "
            samples[$statement,cpu_ratio,$c]+="$cpu_ratio "
            line+=$(printf '  %s %.3f s (cpu %.3f s, %.3fx)' "$c" "$wall" "$cpu" "$cpu_ratio")
        done <<<"$measured"
        echo "$line"
    done
done

# Every stored address must be scrubbed: a benchmark of a broken trigger proves nothing.
for t in la_ours users_ours; do
    col=ip
    [ "$t" = users_ours ] && col=sign_up_ip
    psql_run -At -c "SELECT count(*) FROM $t WHERE $col IS DISTINCT FROM mastodon_ip_scrub.truncate($col)" |
        grep -qx 0 || die "$t holds unscrubbed addresses"
done

say "$ROWS rows, PostgreSQL $PG_MAJOR, median of $ROUNDS rounds; ratios are to no trigger in the same round"
printf '| statement | table | wall s | wall ratio | backend CPU s | CPU ratio |\n|---|---|---|---|---|---|\n'
for statement in insert copy update; do
    for c in none noop ours plpgsql; do
        m() { echo "${samples[$statement,$1,$c]}" | median; }
        printf '| %s | %s | %.3f | %.3fx | %.3f | %.3fx |\n' "$statement" "${table[$statement]}_$c" \
            "$(m wall)" "$(m wall_ratio)" "$(m cpu)" "$(m cpu_ratio)"
        result "$statement.$c.wall_ratio" "$(m wall_ratio)"
        result "$statement.$c.cpu_ratio" "$(m cpu_ratio)"
    done
done

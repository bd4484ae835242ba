#!/usr/bin/env bash
# backfill() against the one-statement UPDATE an admin would otherwise run by hand, on identical
# copies of a ROWS-row (default 1,000,000) session_activations-shaped table with Mastodon's indexes,
# every row holding a full address (3/4 IPv4, 1/4 IPv6; bench/session_activations.sql):
#   plain:    UPDATE t SET ip = <network/set_masklen expression>   (one transaction, no trigger)
#   backfill: CALL mastodon_ip_scrub.backfill()                    (batches of 10,000, COMMIT each,
#             the scrub trigger on the table, the estimate of rows to do and the sweep included)
# Each round builds both copies; each is timed in its own session after a CHECKPOINT, by wall clock
# and by the backend's CPU time (wall time on a shared VM varies by 15% between identical runs);
# which runs first alternates between rounds. Reported: medians over ROUNDS (default 7) of the
# times, of backfill's rate as a fraction of plain's in the same round, and of the size of the
# table's indexes afterwards (plain's single transaction leaves every old entry in them; backfill's
# committed batches let PostgreSQL's bottom-up index deletion remove old entries as it goes; in
# callgrind that is most of backfill's extra instructions). After each round's
# backfill, a second CALL must write nothing: its row versions and WAL records are counted (WAL
# records by pg_waldump, leaving out the standby snapshots the background writer logs on its own
# every 15 s, which the cluster's WAL position would otherwise count). Last, both methods once more
# under callgrind on CALLGRIND_ROWS (default 200,000) rows: instructions, which repeat exactly.
#   bench/backfill.sh        or, quicker:   ROWS=200000 ROUNDS=3 CALLGRIND_ROWS=20000 bench/backfill.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
ROWS=${ROWS:-1000000}
ROUNDS=${ROUNDS:-7}

bench_server -c autovacuum=off -c shared_buffers="${SHARED_BUFFERS:-128MB}"

say "Preparing $ROWS session_activations-shaped rows"
psql_run -c "CREATE EXTENSION mastodon_ip_scrub" -f "$ROOT/bench/session_activations.sql" \
    -c "CALL make_source('src', $ROWS)" >/dev/null

# Runs one statement in a fresh session after a CHECKPOINT: "wall cpu" seconds (see timed_sql).
timed() { timed_sql "$1"; }
# WAL records between positions $1 and $2 other than the background writer's standby snapshots
# (RUNNING_XACTS): what a session in between wrote itself. pg_waldump reads the segment files, so
# this waits for the WAL writer to flush them.
wal_records() {
    [ "$1" = "$2" ] && { echo 0; return; }
    sleep 1
    as_server_user "$PG_BIN/pg_waldump" -p "$CLUSTER_DIR/data/pg_wal" -s "$1" -e "$2" |
        { grep -v 'desc: RUNNING_XACTS' || true; } | wc -l
}
# Row versions written to sa_backfill so far, as the statistics collector has them.
updated_rows() {
    sleep 1 # the last session has exited; let its statistics arrive
    psql_run -At -c "SELECT n_tup_upd FROM pg_stat_user_tables WHERE relname = 'sa_backfill'"
}
# The size of table $1's indexes, in MB.
index_mb() { psql_run -At -c "SELECT round(pg_indexes_size('$1') / 1048576.0, 1)"; }
PLAIN="UPDATE sa_plain SET ip = set_masklen(network(set_masklen(ip, CASE family(ip) WHEN 4 THEN 24 ELSE 48 END)),
                                          CASE family(ip) WHEN 4 THEN 32 ELSE 128 END)"
BACKFILL="CALL mastodon_ip_scrub.backfill()"
declare -a plain_wall backfill_wall wall_ratio plain_cpu backfill_cpu cpu_ratio second_rows second_wal second_records
declare -a plain_index backfill_index
for ((round = 1; round <= ROUNDS; round++)); do
    psql_run -c "CALL fresh_copy('sa_plain')" -c "CALL fresh_copy('sa_backfill')" \
        -c "VACUUM ANALYZE sa_plain" -c "VACUUM ANALYZE sa_backfill" \
        -c "SET client_min_messages = error" -c "SELECT mastodon_ip_scrub.protect('sa_backfill', 'ip')" >/dev/null
    before_index=$(index_mb sa_plain)
    # Which runs first alternates between rounds, so that effects of the order cancel out.
    if ((round % 2)); then
        read -r pw pc <<<"$(timed "$PLAIN")"; read -r bw bc <<<"$(timed "$BACKFILL")"
    else
        read -r bw bc <<<"$(timed "$BACKFILL")"; read -r pw pc <<<"$(timed "$PLAIN")"
    fi
    plain_index+=("$(index_mb sa_plain)") backfill_index+=("$(index_mb sa_backfill)")
    # A second run finds nothing left to do, so it must write nothing at all.
    rows0=$(updated_rows)
    lsn=$(psql_run -At -c "SELECT pg_current_wal_insert_lsn()")
    psql_run -c "SET client_min_messages = warning" -c "$BACKFILL"
    lsn_after=$(psql_run -At -c "SELECT pg_current_wal_insert_lsn()")
    second_wal+=("$(psql_run -At -c "SELECT pg_wal_lsn_diff('$lsn_after', '$lsn')")")
    second_records+=("$(wal_records "$lsn" "$lsn_after")")
    second_rows+=($(($(updated_rows) - rows0)))
    plain_wall+=("$pw") backfill_wall+=("$bw") plain_cpu+=("$pc") backfill_cpu+=("$bc")
    wall_ratio+=("$(awk -v p="$pw" -v b="$bw" 'BEGIN { print p / b }')")
    cpu_ratio+=("$(awk -v p="$pc" -v b="$bc" 'BEGIN { print p / b }')")
    printf '  round %d: plain UPDATE %.2f s (cpu %.2f s), backfill %.2f s (cpu %.2f s); backfill rate / plain rate %.3f (cpu %.3f); indexes afterwards %.1f MB (plain) and %.1f MB (backfill); second backfill: %d row versions, %d WAL records of its own (%d WAL bytes in all)\n' \
        "$round" "$pw" "$pc" "$bw" "$bc" "${wall_ratio[-1]}" "${cpu_ratio[-1]}" "${plain_index[-1]}" "${backfill_index[-1]}" \
        "${second_rows[-1]}" "${second_records[-1]}" "${second_wal[-1]}"
    # Both copies must now hold the same, fully scrubbed addresses.
    psql_run -At -c "SELECT count(*) FROM sa_plain p JOIN sa_backfill b USING (id) WHERE p.ip IS DISTINCT FROM b.ip" |
        grep -qx 0 || die "backfill and the plain UPDATE stored different addresses"
    psql_run -c "SELECT mastodon_ip_scrub.unprotect('sa_backfill', 'ip')" >/dev/null
done

median_of() { printf '%s\n' "$@" | median; }
say "$ROWS rows, PostgreSQL $PG_MAJOR, median of $ROUNDS rounds"
printf '| method | wall s | rows/s | rate vs plain UPDATE | backend CPU s | CPU rate vs plain | indexes afterwards |\n|---|---|---|---|---|---|---|\n'
pw=$(median_of "${plain_wall[@]}") bw=$(median_of "${backfill_wall[@]}")
printf '| plain UPDATE (one statement) | %.2f | %.0f | 1.000x | %.2f | 1.000x | %.1f MB |\n' \
    "$pw" "$(awk -v n="$ROWS" -v t="$pw" 'BEGIN { print n / t }')" "$(median_of "${plain_cpu[@]}")" \
    "$(median_of "${plain_index[@]}")"
printf '| CALL backfill() | %.2f | %.0f | %.3fx | %.2f | %.3fx | %.1f MB |\n' \
    "$bw" "$(awk -v n="$ROWS" -v t="$bw" 'BEGIN { print n / t }')" "$(median_of "${wall_ratio[@]}")" \
    "$(median_of "${backfill_cpu[@]}")" "$(median_of "${cpu_ratio[@]}")" "$(median_of "${backfill_index[@]}")"
max_rows=$(printf '%s\n' "${second_rows[@]}" | sort -n | tail -1)
max_wal=$(printf '%s\n' "${second_wal[@]}" | sort -n | tail -1)
max_records=$(printf '%s\n' "${second_records[@]}" | sort -n | tail -1)
echo
echo "The indexes held $before_index MB before either method ran."
echo
echo "A second CALL backfill() after each round: at most $max_rows row versions and $max_records WAL records of its own written (the cluster's WAL grew by at most $max_wal bytes meanwhile, standby snapshots included)."

# Instructions, which repeat exactly from run to run (the times above vary by 15% between identical
# runs on a shared VM): both methods once more, on CALLGRIND_ROWS (default 200,000) rows of the same
# shape, each in a single-user backend under callgrind.
CALLGRIND_ROWS=${CALLGRIND_ROWS:-200000}
command -v valgrind >/dev/null || apt_install valgrind
psql_run -c "CALL make_source('src_small', $CALLGRIND_ROWS)" \
    -c "CALL fresh_copy('sa_plain', 'src_small')" -c "CALL fresh_copy('sa_backfill', 'src_small')" \
    -c "VACUUM ANALYZE sa_plain" -c "VACUUM ANALYZE sa_backfill" -c "CHECKPOINT" \
    -c "SET client_min_messages = error" -c "SELECT mastodon_ip_scrub.protect('sa_backfill', 'ip')" >/dev/null
as_server_user "$PG_BIN/pg_ctl" -D "$CLUSTER_DIR/data" -m fast -w stop >/dev/null
startup=$(echo "SELECT 1" | callgrind_instructions)
# A single-user backend ends a statement at a newline.
plain_instructions=$(( $(echo "$PLAIN" | tr '\n' ' ' | callgrind_instructions) - startup ))
backfill_instructions=$(( $(echo "$BACKFILL" | callgrind_instructions) - startup ))
instructions_ratio=$(ratio "$plain_instructions" "$backfill_instructions")
say "Instructions per row ($CALLGRIND_ROWS rows, callgrind; startup of $startup subtracted)"
printf '| method | instructions per row | rate vs plain UPDATE |\n|---|---|---|\n'
printf '| plain UPDATE (one statement) | %d | 1.000x |\n' $((plain_instructions / CALLGRIND_ROWS))
printf '| CALL backfill() | %d | %.3fx |\n' $((backfill_instructions / CALLGRIND_ROWS)) "$instructions_ratio"
result backfill.instructions_ratio "$instructions_ratio"
result backfill.wall_ratio "$(median_of "${wall_ratio[@]}")"
result backfill.cpu_ratio "$(median_of "${cpu_ratio[@]}")"
result backfill.second_run_rows "$max_rows"
result backfill.second_run_wal "$max_wal"
result backfill.second_run_records "$max_records"

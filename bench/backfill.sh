#!/usr/bin/env bash
# backfill() against the one-statement UPDATE an admin would otherwise run by hand, at several table
# sizes (SIZES, default 1, 4 and 16 million rows) and two shared_buffers (SHARED_BUFFERS_LIST,
# default the bench's 128MB and a production-like 25 % of this machine's memory), ROUNDS (default
# 3) rounds each. Every method runs on an identical copy of a session_activations-shaped table with
# Mastodon's indexes, every row holding a full address (3/4 IPv4, 1/4 IPv6; made by
# session_activations.sql beside this script):
#   plain:    UPDATE t SET ip = <network/set_masklen expression>   (one transaction, no trigger)
#   batched:  the same UPDATE, without the extension, in backfill()'s ranges of about 10,000 rows,
#             each in one transaction committed as backfill() commits
#             (bench/session_activations.sql: batched_update): what committing in batches costs
#             PostgreSQL itself when every new row version goes to another page, with new index
#             entries, as in backfill() before its passes (in the first BATCHED_ROUNDS rounds,
#             default 0)
#   backfill: CALL mastodon_ip_scrub.backfill()       (ranges of about 10,000 rows, each written in
#             8 committed transactions, a share of each page's rows at a time; the scrub trigger
#             on the table, the estimate of rows to do and the sweep included)
# Each is timed in its own session after a CHECKPOINT, by wall clock and by the backend's CPU time
# (wall time on a shared VM varies by 15% between identical runs), with the heap blocks it read from
# outside shared_buffers; their order rotates between rounds. Also timed on each round's backfill
# copy before its backfill, still holding only full addresses: protect(), which counts the rows for
# its "existing rows still hold full IP addresses" warning (the one CREATE EXTENSION gives), and
# status() sampled and exact.
# Reported per size and shared_buffers: medians over the rounds of the times, of backfill's rate as
# a fraction of plain's and of batched's in the same round, and of the sizes of the table and its
# indexes afterwards, with the share of backfill's updates that were HOT (new version on the same
# page, no index entry: what its passes over each range are for, sql/backfill.sql); then, across
# sizes, each method's per-row cost against its own at the smallest size, and the worst ratio of
# backfill's growth to plain's. After each round's backfill, a second CALL must write nothing: its
# row versions and WAL records are counted (WAL records by pg_waldump, leaving out the standby
# snapshots the background writer logs on its own every 15 s, which the cluster's WAL position
# would otherwise count; any record left is named). Last, plain and backfill once more under
# callgrind on CALLGRIND_ROWS (default 200,000; 0 skips it) rows: instructions, which repeat exactly.
#   bench/backfill.sh        (an hour and a half on 2 cores; about 45 GB of disk at 16M rows)
#   quicker:  SIZES="200000 800000" ROUNDS=1 CALLGRIND_ROWS=20000 bench/backfill.sh
# ROWS=N, as bench/run.sh passes it, is SIZES=N.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
SIZES=${SIZES:-${ROWS:-1000000 4000000 16000000}}
ROUNDS=${ROUNDS:-3}
BATCHED_ROUNDS=${BATCHED_ROUNDS:-0}
production_buffers=$(awk '/^MemTotal:/ { printf "%dMB", $2 / 1024 / 4 }' /proc/meminfo)
SHARED_BUFFERS_LIST=${SHARED_BUFFERS_LIST:-128MB $production_buffers}
read -ra buffer_settings <<<"$SHARED_BUFFERS_LIST"
SETTINGS=(-c autovacuum=off)

# Disk at the largest size: the source, three copies that each double in the UPDATE (about 1.8 kB
# per row in all, measured at 16M rows), and their WAL, which checkpoints recycle at max_wal_size
# (16 GB; about 0.8 kB per row and method before that).
largest=$(printf '%s\n' $SIZES | sort -n | tail -1)
wal_gb=$((largest * 2600 / 1000000000))
need_gb=$((largest * 1800 / 1000000000 + (wal_gb < 17 ? wal_gb : 17) + 1))
free_gb=$(df -P -BG "${TMPDIR:-/tmp}" | awk 'NR == 2 { sub(/G$/, "", $4); print $4 }')
((free_gb >= need_gb)) ||
    die "about $need_gb GB of disk needed at $largest rows, ${TMPDIR:-/tmp} has $free_gb GB free: set TMPDIR to a bigger disk or leave the largest size out of SIZES"

bench_server "${SETTINGS[@]}" -c shared_buffers="${buffer_settings[0]}"
psql_run -c "CREATE EXTENSION mastodon_ip_scrub" -f "$ROOT/bench/session_activations.sql" >/dev/null

# WAL records between positions $1 and $2 other than the background writer's standby snapshots
# (RUNNING_XACTS): what a session in between wrote itself; their descriptions are left in
# $WAL_SEEN. pg_waldump reads the segment files, so this waits for the WAL writer to flush them.
WAL_SEEN=$(mktemp)
wal_records() {
    : >"$WAL_SEEN"
    [ "$1" = "$2" ] && { echo 0; return; }
    sleep 1
    as_server_user "$PG_BIN/pg_waldump" -p "$CLUSTER_DIR/data/pg_wal" -s "$1" -e "$2" |
        { grep -v 'desc: RUNNING_XACTS' || true; } >"$WAL_SEEN"
    wc -l <"$WAL_SEEN"
}
# Blocks of table $1 read from outside shared_buffers so far, as the statistics have them.
heap_reads() {
    sleep 1 # the timed session has exited; let its statistics arrive
    psql_run -At -c "SELECT heap_blks_read FROM pg_statio_user_tables WHERE relname = '$1'"
}
# Row versions written to sa_backfill so far, as the statistics collector has them.
updated_rows() {
    sleep 1 # the last session has exited; let its statistics arrive
    psql_run -At -c "SELECT n_tup_upd FROM pg_stat_user_tables WHERE relname = 'sa_backfill'"
}
# The size of table $1's indexes, and of the table itself, in MB.
index_mb() { psql_run -At -c "SELECT round(pg_indexes_size('$1') / 1048576.0, 1)"; }
table_mb() { psql_run -At -c "SELECT round(pg_relation_size('$1') / 1048576.0, 1)"; }
# The percentage of sa_backfill's row updates that were HOT (no new index entries).
hot_percent() {
    sleep 1 # the last session has exited; let its statistics arrive
    psql_run -At -c "SELECT round(100.0 * n_tup_hot_upd / greatest(n_tup_upd, 1)) FROM pg_stat_user_tables WHERE relname = 'sa_backfill'"
}
# A fresh copy of the source as table $1, vacuumed and analyzed.
copy_of_source() { psql_run -c "CALL fresh_copy('$1')" -c "VACUUM ANALYZE $1" >/dev/null; }
PLAIN="UPDATE sa_plain SET ip = set_masklen(network(set_masklen(ip, CASE family(ip) WHEN 4 THEN 24 ELSE 48 END)),
                                          CASE family(ip) WHEN 4 THEN 32 ELSE 128 END)"
BATCHED="CALL batched_update('sa_batched', 10000)"
BACKFILL="CALL mastodon_ip_scrub.backfill()"
statement_of() {
    case $1 in plain) echo "$PLAIN" ;; batched) echo "$BATCHED" ;; backfill) echo "$BACKFILL" ;; esac
}
median_of() { printf '%s\n' "$@" | median; }
# Seconds per million rows for $1 seconds at $2 rows.
per_million() { awk -v t="$1" -v n="$2" 'BEGIN { printf "%.2f", t * 1000000 / n }'; }

SUMMARY=$(mktemp)
trap 'rm -f "$SUMMARY" "$WAL_SEEN"; cluster_stop' EXIT
second_rows_max=0 second_records_max=0 second_wal_max=0
worst_wall=9 worst_cpu=9 worst_batched_wall=9 worst_batched_cpu=9
smallest=
for rows in $SIZES; do
    say "Preparing $rows session_activations-shaped rows"
    psql_run -c "DROP TABLE IF EXISTS src, sa_plain, sa_batched, sa_backfill" -c "CALL make_source('src', $rows)" >/dev/null
    for buffers in "${buffer_settings[@]}"; do
        if [ "$(psql_run -At -c 'SHOW shared_buffers')" != "$buffers" ]; then
            bench_restart "${SETTINGS[@]}" -c shared_buffers="$buffers"
        fi
        say "$rows rows, shared_buffers = $buffers, PostgreSQL $PG_MAJOR, $ROUNDS rounds"
        declare -A wall=() cpu=()
        declare -a wall_ratio=() cpu_ratio=() batched_wall_ratio=() batched_cpu_ratio=()
        declare -a plain_index=() backfill_index=() plain_table=() backfill_table=() hot=() protect_s=() sampled_s=() exact_s=()
        for ((round = 1; round <= ROUNDS; round++)); do
            # What an admin meets first: protect()'s count for its warning, then status().
            copy_of_source sa_backfill
            read -r t _ <<<"$(timed_sql "SET client_min_messages = error; SELECT mastodon_ip_scrub.protect('sa_backfill', 'ip')")"
            protect_s+=("$t")
            read -r t _ <<<"$(timed_sql "SELECT count(*) FROM mastodon_ip_scrub.status()")"
            sampled_s+=("$t")
            read -r t _ <<<"$(timed_sql "SELECT count(*) FROM mastodon_ip_scrub.status(exact => true)")"
            exact_s+=("$t")
            copy_of_source sa_plain
            methods=(plain backfill)
            if ((round <= BATCHED_ROUNDS)); then
                copy_of_source sa_batched
                methods+=(batched)
            fi
            line="  round $round:"
            for ((k = 0; k < ${#methods[@]}; k++)); do
                method=${methods[(k + round) % ${#methods[@]}]}
                reads=$(heap_reads "sa_$method")
                read -r w c <<<"$(timed_sql "$(statement_of "$method")")"
                reads=$(($(heap_reads "sa_$method") - reads))
                wall[$method]+=" $w" cpu[$method]+=" $c"
                line+=" $method $(printf '%.2f s (cpu %.2f s, %d heap blocks read),' "$w" "$c" "$reads")"
                if [ "$method" = plain ]; then pw=$w pc=$c; elif [ "$method" = backfill ]; then bw=$w bc=$c; else tw=$w tc=$c; fi
            done
            wall_ratio+=("$(ratio "$pw" "$bw")") cpu_ratio+=("$(ratio "$pc" "$bc")")
            line+=" $(printf 'backfill rate / plain rate %.3f (cpu %.3f)' "${wall_ratio[-1]}" "${cpu_ratio[-1]}")"
            if ((round <= BATCHED_ROUNDS)); then
                batched_wall_ratio+=("$(ratio "$tw" "$bw")") batched_cpu_ratio+=("$(ratio "$tc" "$bc")")
                line+=" $(printf '/ batched rate %.3f (cpu %.3f)' "${batched_wall_ratio[-1]}" "${batched_cpu_ratio[-1]}")"
                psql_run -At -c "SELECT count(*) FROM sa_plain p JOIN sa_batched b USING (id) WHERE p.ip IS DISTINCT FROM b.ip" |
                    grep -qx 0 || die "the batched and the one-statement UPDATE stored different addresses"
                psql_run -c "DROP TABLE sa_batched" >/dev/null # disk: each copy is twice the source now
            fi
            plain_index+=("$(index_mb sa_plain)") backfill_index+=("$(index_mb sa_backfill)")
            plain_table+=("$(table_mb sa_plain)") backfill_table+=("$(table_mb sa_backfill)") hot+=("$(hot_percent)")
            # A second run finds nothing left to do, so it must write nothing at all.
            rows0=$(updated_rows)
            lsn=$(psql_run -At -c "SELECT pg_current_wal_insert_lsn()")
            psql_run -c "SET client_min_messages = warning" -c "$BACKFILL"
            lsn_after=$(psql_run -At -c "SELECT pg_current_wal_insert_lsn()")
            second_wal=$(psql_run -At -c "SELECT pg_wal_lsn_diff('$lsn_after', '$lsn')")
            second_records=$(wal_records "$lsn" "$lsn_after")
            second_rows=$(($(updated_rows) - rows0))
            second_rows_max=$((second_rows > second_rows_max ? second_rows : second_rows_max))
            second_records_max=$((second_records > second_records_max ? second_records : second_records_max))
            second_wal_max=$((second_wal > second_wal_max ? second_wal : second_wal_max))
            line+="; indexes afterwards ${plain_index[-1]} MB (plain), ${backfill_index[-1]} MB (backfill)"
            line+="; table afterwards ${plain_table[-1]} MB (plain), ${backfill_table[-1]} MB (backfill, ${hot[-1]} % of its updates HOT)"
            line+="; protect() ${protect_s[-1]} s, status() ${sampled_s[-1]} s, status(exact) ${exact_s[-1]} s"
            line+="; second backfill: $second_rows row versions, $second_records WAL records of its own ($second_wal WAL bytes in all)"
            if [ "$second_records" -gt 0 ]; then line+=" [$(sed 's/.*rmgr: *\([A-Za-z0-9]*\).*desc: \(.\{0,120\}\).*/\1 \2/' "$WAL_SEEN" | paste -sd ';')]"; fi
            echo "$line"
            # Both copies must now hold the same, fully scrubbed addresses.
            psql_run -At -c "SELECT count(*) FROM sa_plain p JOIN sa_backfill b USING (id) WHERE p.ip IS DISTINCT FROM b.ip" |
                grep -qx 0 || die "backfill and the plain UPDATE stored different addresses"
            psql_run -c "SELECT mastodon_ip_scrub.unprotect('sa_backfill', 'ip')" >/dev/null
        done

        # shellcheck disable=SC2086 # the lists are space-separated numbers
        pw=$(median_of ${wall[plain]}) pc=$(median_of ${cpu[plain]})
        # shellcheck disable=SC2086
        bw=$(median_of ${wall[backfill]}) bc=$(median_of ${cpu[backfill]})
        wr=$(median_of "${wall_ratio[@]}") cr=$(median_of "${cpu_ratio[@]}")
        printf '| method | wall s | s per million rows | rate vs plain UPDATE | backend CPU s | CPU rate vs plain | indexes afterwards | table afterwards |\n|---|---|---|---|---|---|---|---|\n'
        printf '| plain UPDATE (one statement) | %.2f | %s | 1.000x | %.2f | 1.000x | %.1f MB | %.1f MB |\n' \
            "$pw" "$(per_million "$pw" "$rows")" "$pc" "$(median_of "${plain_index[@]}")" "$(median_of "${plain_table[@]}")"
        if ((BATCHED_ROUNDS > 0)); then
            # shellcheck disable=SC2086
            tw=$(median_of ${wall[batched]}) tc=$(median_of ${cpu[batched]})
            btw=$(median_of "${batched_wall_ratio[@]}") btc=$(median_of "${batched_cpu_ratio[@]}")
            printf '| the same UPDATE in committed batches | %.2f | %s | %.3fx | %.2f | %.3fx | | |\n' \
                "$tw" "$(per_million "$tw" "$rows")" "$(ratio "$pw" "$tw")" "$tc" "$(ratio "$pc" "$tc")"
        else
            tw=? tc=? btw=? btc=?
        fi
        printf '| CALL backfill() | %.2f | %s | %.3fx | %.2f | %.3fx | %.1f MB | %.1f MB (%s %% of updates HOT) |\n' \
            "$bw" "$(per_million "$bw" "$rows")" "$wr" "$bc" "$cr" "$(median_of "${backfill_index[@]}")" "$(median_of "${backfill_table[@]}")" "$(median_of "${hot[@]}")"
        echo
        if [ "$btw" != "?" ]; then
            printf "Rates are medians of each round's ratio. Backfill's rate against the batched UPDATE's: %.3fx (CPU %.3fx).\n" "$btw" "$btc"
        fi
        printf 'Before backfill, on its copy: protect() (with the count behind its warning) %.2f s, status() %.2f s, status(exact => true) %.2f s.\n' \
            "$(median_of "${protect_s[@]}")" "$(median_of "${sampled_s[@]}")" "$(median_of "${exact_s[@]}")"
        echo "$rows $buffers $pw $pc ${tw} ${tc} $bw $bc $wr $cr $btw $btc $(median_of "${protect_s[@]}") $(median_of "${sampled_s[@]}") $(median_of "${exact_s[@]}")" >>"$SUMMARY"
        worst_wall=$(awk -v a="$worst_wall" -v b="$wr" 'BEGIN { print (b < a) ? b : a }')
        worst_cpu=$(awk -v a="$worst_cpu" -v b="$cr" 'BEGIN { print (b < a) ? b : a }')
        if [ "$btw" != "?" ]; then
            worst_batched_wall=$(awk -v a="$worst_batched_wall" -v b="$btw" 'BEGIN { print (b < a) ? b : a }')
            worst_batched_cpu=$(awk -v a="$worst_batched_cpu" -v b="$btc" 'BEGIN { print (b < a) ? b : a }')
        fi
        unset wall cpu
    done
    smallest=${smallest:-$rows}
    psql_run -c "DROP TABLE src, sa_plain, sa_backfill" >/dev/null
done

say "Every size (medians; per-row cost relative to the same method at $smallest rows, same shared_buffers)"
printf '| rows | shared_buffers | plain s | batched s | backfill s | backfill s per million rows | backfill rate vs plain (CPU) | vs batched (CPU) | per-row cost growth: plain, batched, backfill | protect() s | status() s | status(exact) s |\n'
printf '|---|---|---|---|---|---|---|---|---|---|---|---|\n'
awk -v smallest="$smallest" '
    function growth(t, n, b) { return (t == "?" || b == "" || b == "?") ? "?" : sprintf("%.2f", (t / n) / b) }
    function rate(r) { return (r == "?") ? "?" : sprintf("%.3fx", r) }
    {
        if ($1 == smallest) { p[$2] = $3 / $1; t[$2] = ($5 == "?") ? "?" : $5 / $1; b[$2] = $7 / $1 }
        printf "| %d | %s | %.1f | %s | %.1f | %.2f | %.3fx (%.3fx) | %s (%s) | %s, %s, %s | %.2f | %.2f | %.2f |\n",
            $1, $2, $3, ($5 == "?") ? "?" : sprintf("%.1f", $5), $7, $7 * 1000000 / $1, $9, $10, rate($11), rate($12),
            growth($3, $1, p[$2]), growth($5, $1, t[$2]), growth($7, $1, b[$2]), $13, $14, $15
    }' "$SUMMARY"
echo
echo "A second CALL backfill() after each round: at most $second_rows_max row versions and $second_records_max WAL records of its own written (the cluster's WAL grew by at most $second_wal_max bytes meanwhile, standby snapshots included)."
# Per row, backfill should cost no more at a bigger size, relative to its own cost at the smallest,
# than plain does: the worst ratio of its growth to plain's over every size and shared_buffers.
growth_vs_plain=$(awk -v smallest="$smallest" '
    $1 == smallest { p[$2] = $3; b[$2] = $7 }
    END { worst = 0
          while ((getline < FILENAME) > 0) if (p[$2] > 0 && b[$2] > 0) { g = ($7 / b[$2]) / ($3 / p[$2]); if (g > worst) worst = g }
          printf "%.3f", worst }' "$SUMMARY")
echo "Backfill's per-row cost growth with size, relative to plain's, at its worst: ${growth_vs_plain}x (at most 1 means it grows no faster)."
result backfill.wall_ratio "$worst_wall"
result backfill.cpu_ratio "$worst_cpu"
result backfill.growth_vs_plain "$growth_vs_plain"
if ((BATCHED_ROUNDS > 0)); then
    result backfill.batched_wall_ratio "$worst_batched_wall"
    result backfill.batched_cpu_ratio "$worst_batched_cpu"
fi
result backfill.second_run_rows "$second_rows_max"
result backfill.second_run_wal "$second_wal_max"
result backfill.second_run_records "$second_records_max"

# Instructions, which repeat exactly from run to run (the times above vary by 15% between identical
# runs on a shared VM): both methods once more, on CALLGRIND_ROWS (default 200,000) rows of the same
# shape, each in a single-user backend under callgrind.
CALLGRIND_ROWS=${CALLGRIND_ROWS:-200000}
((CALLGRIND_ROWS > 0)) || exit 0
command -v valgrind >/dev/null || apt_install valgrind
psql_run -c "CALL make_source('src', $CALLGRIND_ROWS)" \
    -c "CALL fresh_copy('sa_plain')" -c "CALL fresh_copy('sa_backfill')" \
    -c "VACUUM ANALYZE sa_plain" -c "VACUUM ANALYZE sa_backfill" -c "CHECKPOINT" \
    -c "SET client_min_messages = error" -c "SELECT mastodon_ip_scrub.protect('sa_backfill', 'ip')" >/dev/null
as_server_user "$PG_BIN/pg_ctl" -D "$CLUSTER_DIR/data" -m fast -w stop >/dev/null
startup=$(echo "SELECT 1" | callgrind_instructions)
# A single-user backend ends a statement at a newline.
plain_instructions=$(($(echo "$PLAIN" | tr '\n' ' ' | callgrind_instructions) - startup))
backfill_instructions=$(($(echo "$BACKFILL" | callgrind_instructions) - startup))
instructions_ratio=$(ratio "$plain_instructions" "$backfill_instructions")
say "Instructions per row ($CALLGRIND_ROWS rows, callgrind; startup of $startup subtracted)"
printf '| method | instructions per row | rate vs plain UPDATE |\n|---|---|---|\n'
printf '| plain UPDATE (one statement) | %d | 1.000x |\n' $((plain_instructions / CALLGRIND_ROWS))
printf '| CALL backfill() | %d | %.3fx |\n' $((backfill_instructions / CALLGRIND_ROWS)) "$instructions_ratio"
result backfill.instructions_ratio "$instructions_ratio"

#!/usr/bin/env bash
# Every benchmark in one run, then BENCHMARKS.md: one release build, then each benchmark on its own
# throwaway server (callgrind.sh, bulk_writes.sh, write_mix.sh, backfill.sh, session_requests.sh;
# each interleaves its cases over several rounds and reports medians), then a summary of every
# figure against its target, with the machine, the PostgreSQL version and this command.
#   bench/run.sh                 about two and a half hours on 2 cores (an hour and a half of them backfill.sh's), PostgreSQL 15
#   PG=17 bench/run.sh           another major
# The sizes and rounds of each benchmark can be set as for the benchmark itself (ROWS, ROUNDS, ...),
# for example ROWS=100000 ROUNDS=3 DURATION=5 bench/run.sh for a quick look.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
OUT=${BENCHMARKS_MD:-$ROOT/BENCHMARKS.md}
COMMAND="${BENCH_COMMAND:-bench/run.sh}"
for v in PG ROWS ROUNDS DURATION USERS MIX_TRANSACTIONS; do
    if [ -n "${!v:-}" ]; then COMMAND="$v=${!v} $COMMAND"; fi
done

ensure_deps
command -v valgrind >/dev/null || apt_install valgrind
install_extension release
export BENCH_BUILT=1
LOGS=$(mktemp -d "${TMPDIR:-/tmp}/mastodon_ip_scrub-bench.XXXXXX")
export BENCH_RESULTS=$LOGS/results
: >"$BENCH_RESULTS"
started=$(date -u '+%Y-%m-%d %H:%M UTC')
SECONDS=0
for bench in callgrind bulk_writes write_mix backfill session_requests; do
    say "bench/$bench.sh"
    # Each benchmark's own ROWS/ROUNDS defaults apply unless the caller set them.
    bash "$ROOT/bench/$bench.sh" 2>&1 | tee "$LOGS/$bench.log"
done
minutes=$((SECONDS / 60))

# The value recorded under $1, or "?".
get() { awk -v k="$1" '$1 == k { v = $2 } END { print (v == "" ? "?" : v) }' "$BENCH_RESULTS"; }
# "1.234x" from a ratio.
x() { awk -v v="$1" 'BEGIN { if (v == "?") print "?"; else printf "%.3fx", v }'; }
# "yes" when $1 $2 $3 holds (for example 1.01 <= 1.05), else "**no**".
met() { awk -v a="$1" -v op="$2" -v b="$3" 'BEGIN {
    if (a == "?") { print "?"; exit }
    ok = (op == "<=") ? a + 0 <= b + 0 : a + 0 >= b + 0
    print ok ? "yes" : "**no**" }'; }
# ours' overhead as a fraction of PL/pgSQL's, from ratios to no trigger.
share() { awk -v o="$1" -v p="$2" 'BEGIN { if (o == "?" || p == "?") print "?"; else printf "%.3f", (o - 1) / (p - 1) }'; }
# A benchmark's output as Markdown, from its server's start on: headings in bold, tables as they
# are, the per-round lines in code blocks; progress lines and terminal colours left out.
section() {
    sed -e 's/\x1b\[[0-9;]*m//g' "$LOGS/$1.log" | sed -n '/^==> Starting/,$p' |
        grep -v '^==> \(Starting\|Loading\|Preparing\)' | awk '
        function close_code() { if (code) { print "```"; code = 0 } }
        /^==> / { close_code(); print ""; print "**" substr($0, 5) "**"; print ""; next }
        /^\|/ { close_code(); print; next }
        /^$/ { next }
        { if (!code) { print ""; print "```"; code = 1 } print }
        END { close_code() }'
}

insert_share_wall=$(share "$(get insert.ours.wall_ratio)" "$(get insert.plpgsql.wall_ratio)")
insert_share_instr=$(get instructions.insert.share_of_plpgsql)
{
    echo "# Benchmarks"
    echo
    echo "Written by \`$COMMAND\` on $started ($minutes minutes), commit $(git -C "$ROOT" rev-parse --short HEAD)$(git -C "$ROOT" diff --quiet HEAD -- src sql bench 2>/dev/null || echo ' with local changes')."
    echo
    hypervisor=$(lscpu | sed -n 's/^Hypervisor vendor: *//p')
    echo "- Machine: $(lscpu | sed -n 's/^Model name: *//p'), $(nproc) CPUs${hypervisor:+ (a $hypervisor virtual machine)}, $(awk '/MemTotal/ { printf "%.0f GiB", $2 / 1048576 }' /proc/meminfo) RAM, Linux $(uname -r)"
    echo "- PostgreSQL: $("$PG_BIN/postgres" --version | sed 's/^postgres (PostgreSQL) //'); the extension built in release mode by $(rustc --version | cut -d' ' -f1-2)"
    echo "- Each benchmark starts its own server with stock settings, except that checkpoints never start during a timed statement (max_wal_size = 16GB, checkpoint_timeout = 1h) and as noted in its section."
    echo
    echo "## Summary"
    echo
    echo "Wall clock and backend CPU: medians over the rounds of each case's ratio to the baseline of the same round. Instructions: valgrind's callgrind in a single-user backend, exact and repeatable. Where they disagree by a few percent, the wall clock is within this shared VM's noise (see the rounds below)."
    echo
    echo "| case | compared with | target | wall clock | backend CPU | instructions | met (wall clock) | met (instructions) |"
    echo "|---|---|---|---|---|---|---|---|"
    echo "| bulk INSERT ... SELECT, login_activities-shaped | no trigger | ≤ 1.05x | $(x "$(get insert.ours.wall_ratio)") | $(x "$(get insert.ours.cpu_ratio)") | $(x "$(get instructions.insert.ours)") | $(met "$(get insert.ours.wall_ratio)" '<=' 1.05) | $(met "$(get instructions.insert.ours)" '<=' 1.05) |"
    echo "| bulk INSERT ... VALUES (1,000 rows per statement), login_activities-shaped | no trigger | ≤ 1.05x | | | $(x "$(get instructions.values.ours)") | | $(met "$(get instructions.values.ours)" '<=' 1.05) |"
    echo "| bulk INSERT: our overhead / PL/pgSQL's overhead | PL/pgSQL trigger | ≤ 0.25 | $insert_share_wall | $(share "$(get insert.ours.cpu_ratio)" "$(get insert.plpgsql.cpu_ratio)") | $(awk -v v="$insert_share_instr" 'BEGIN { printf "%.3f", v }') | $(met "$insert_share_wall" '<=' 0.25) | $(met "$insert_share_instr" '<=' 0.25) |"
    echo "| COPY FROM, login_activities-shaped | no trigger | ≤ 1.05x | $(x "$(get copy.ours.wall_ratio)") | $(x "$(get copy.ours.cpu_ratio)") | $(x "$(get instructions.copy.ours)") | $(met "$(get copy.ours.wall_ratio)" '<=' 1.05) | $(met "$(get instructions.copy.ours)" '<=' 1.05) |"
    echo "| UPDATE of a non-IP column, users-shaped | no trigger | ≤ 1.02x | $(x "$(get update.ours.wall_ratio)") | $(x "$(get update.ours.cpu_ratio)") | $(x "$(get instructions.update.ours)") | $(met "$(get update.ours.wall_ratio)" '<=' 1.02) | $(met "$(get instructions.update.ours)" '<=' 1.02) |"
    for clients in 1 8; do
        echo "| pgbench write mix, $clients client(s): tps | no extension | ≥ 0.98x | $(x "$(get mix.$clients.ours.ratio)") | $(x "$(get mix.$clients.ours.cpu_ratio)") (server CPU per transaction; lower is better) | $(x "$(get instructions.mix)") (per transaction; lower is better) | $(met "$(get mix.$clients.ours.ratio)" '>=' 0.98) | $(met "$(get instructions.mix)" '<=' "$(awk 'BEGIN { print 1 / 0.98 }')") |"
    done
    echo "| backfill() rate, at its worst size and shared_buffers | one plain UPDATE | ≥ 0.9x | $(x "$(get backfill.wall_ratio)") | $(x "$(get backfill.cpu_ratio)") | $(x "$(get backfill.instructions_ratio)") | $(met "$(get backfill.wall_ratio)" '>=' 0.9) | $(met "$(get backfill.instructions_ratio)" '>=' 0.9) |"
    echo "| backfill() per-row cost growth with size, at its worst size and shared_buffers | one plain UPDATE's growth | ≤ 1.0x | $(x "$(get backfill.growth_vs_plain)") | | | $(met "$(get backfill.growth_vs_plain)" '<=' 1.0) | |"
    echo "| second backfill() | | writes nothing | $(get backfill.second_run_rows) row versions, $(get backfill.second_run_records) WAL records of its own ($(get backfill.second_run_wal) WAL bytes in the cluster, standby snapshots included) | | | $(met "$(awk -v r="$(get backfill.second_run_rows)" -v w="$(get backfill.second_run_records)" 'BEGIN { print (r == "?" || w == "?") ? "?" : r + w }')" '<=' 0) | |"
    echo "| truncate() per call | \`set_masklen(network(set_masklen(ip, 24)), 32)\` | ≤ 1.0x | | | $(x "$(get instructions.truncate)") | | $(met "$(get instructions.truncate)" '<=' 1.0) |"
    echo
    for bench in callgrind bulk_writes write_mix backfill session_requests; do
        echo "## bench/$bench.sh"
        echo
        sed -n '2,/^[^#]/p' "$ROOT/bench/$bench.sh" | sed -n 's/^# \{0,1\}//p' | sed '/^ *bench\//d'
        echo
        section "$bench"
        echo
    done
} >"$OUT"
say "Wrote $OUT ($minutes minutes)"
sed -n '/^## Summary/,/^## bench/p' "$OUT" | head -n -1

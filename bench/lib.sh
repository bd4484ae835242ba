# Shared by the benchmarks beside it (on top of scripts/lib.sh): a throwaway server, timing, medians.
source "$(dirname "${BASH_SOURCE[0]}")/../scripts/lib.sh"
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-/var/tmp/mastodon_ip_scrub-target}

# The columns setup.sql's src_users fills, in its order.
USERS_COLUMNS="id, email, created_at, updated_at, encrypted_password, current_sign_in_at, confirmed_at, locale, account_id, disabled, approved, sign_up_ip, settings"

# No checkpoint starts in the middle of a timed statement.
BENCH_SERVER_SETTINGS=(-c max_wal_size=16GB -c checkpoint_timeout=1h)

# What every benchmark starts with: dependencies, a release build, and a throwaway server with
# BENCH_SERVER_SETTINGS. Extra arguments are further server settings.
# BENCH_BUILT=1 (set by bench/run.sh, which builds once) skips the build.
bench_server() {
    if [ "${BENCH_BUILT:-0}" != 1 ]; then
        ensure_deps
        install_extension release
    fi
    say "Starting a throwaway PostgreSQL $PG_MAJOR"
    cluster_start bench "${BENCH_SERVER_SETTINGS[@]}" "$@"
    trap cluster_stop EXIT
}

# Restarts bench_server's server, keeping its data, with BENCH_SERVER_SETTINGS and the settings
# given here in place of the extra ones it had.
bench_restart() {
    as_server_user "$PG_BIN/pg_ctl" -D "$CLUSTER_DIR/data" -m fast -w stop >/dev/null
    server_start "$CLUSTER_DIR" 5432 "${BENCH_SERVER_SETTINGS[@]}" "$@"
}

# Runs one statement in a fresh session right after a CHECKPOINT; prints its wall time and the CPU
# time of the backend that ran it, in seconds. The CPU time comes from the kernel's scheduler
# statistics (/proc/self/schedstat, nanoseconds on a CPU): unlike wall time it leaves out the time
# a shared machine gave to other work. Extra arguments go to psql (-d db).
timed_sql() {
    local statement=$1
    shift
    psql_run "$@" -c CHECKPOINT >/dev/null
    sync
    psql_run "$@" -At <<SQL | tail -1
SET client_min_messages = warning;
SELECT clock_timestamp() AS t0, split_part(pg_read_file('/proc/self/schedstat'), ' ', 1)::bigint AS c0 \gset
$statement;
SELECT extract(epoch FROM clock_timestamp() - :'t0') || ' ' ||
       (split_part(pg_read_file('/proc/self/schedstat'), ' ', 1)::bigint - :c0) / 1e9;
SQL
}

# Instructions a single-user backend executes for the statements on standard input, one per line
# (startup included), in database $1 (default postgres), counted by valgrind's callgrind with the
# library preloaded, as the README recommends. The server must be stopped.
callgrind_instructions() {
    as_server_user valgrind --tool=callgrind --callgrind-out-file=/dev/null \
        "$PG_BIN/postgres" --single -D "$CLUSTER_DIR/data" -c session_preload_libraries=mastodon_ip_scrub "${1:-postgres}" 2>&1 >/dev/null |
        sed -n 's/.*Collected : \([0-9]*\).*/\1/p'
}

# The median of the numbers on standard input (separated by spaces or newlines).
median() {
    tr ' ' '\n' | grep . | sort -g |
        awk '{ a[NR] = $1 } END { print (NR % 2) ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2 }'
}
# $1 / $2
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { print a / b }'; }

# One round of a comparison with a baseline: the baseline and every case back to back, in an
# order rotated by round number, so that none always runs first or after the same neighbour. $1 is
# a command that measures the case named by its argument and prints one or more numbers; $2 the
# round number; $3 the baseline; the rest the cases. Prints one line per case, the baseline first:
#   name n1 n2 ... r1 r2 ...
# its numbers, and each divided by the baseline's in this round.
# Used for the bulk statements: running every case between two baseline runs (bracketed_round)
# took 73 minutes instead of 57 at ROUNDS=7, and their single-round ratios spread as widely.
interleaved_round() {
    local measure=$1 round=$2
    shift 2
    local names=("$@") k name base
    declare -A measured=()
    for ((k = 0; k < ${#names[@]}; k++)); do
        name=${names[(k + round) % ${#names[@]}]}
        # Explicit return: errexit is off inside the command substitution this runs in.
        measured[$name]=$("$measure" "$name") || return 1
    done
    base=${measured[${names[0]}]}
    for name in "${names[@]}"; do
        awk -v name="$name" -v now="${measured[$name]}" -v base="$base" 'BEGIN {
            n = split(now, v, " "); split(base, b, " "); line = name
            for (i = 1; i <= n; i++) line = line " " v[i]
            for (i = 1; i <= n; i++) line = line " " v[i] / b[i]
            print line }'
    done
}

# One round as interleaved_round's, but every case runs between two runs of the baseline,
#   base, case 1, base, case 2, base, ...
# (cases rotated by round) and is divided by the mean of those two; the baseline's line holds the
# mean of its runs and ratios of 1. Used for pgbench's short runs, whose 1-client tps follows the
# machine's load from one run to the next. The evidence is thin: its single-round ratios spread
# 0.92x-1.07x and 0.76x-1.13x in two full runs bracketed, 0.78x-1.31x in one back to back.
bracketed_round() {
    local measure=$1 round=$2 base=$3
    shift 3
    local cases=("$@") k name before after now bases
    # Explicit returns: errexit is off inside the command substitution this runs in.
    before=$("$measure" "$base") || return 1
    bases=$before
    for ((k = 0; k < ${#cases[@]}; k++)); do
        name=${cases[(k + round) % ${#cases[@]}]}
        now=$("$measure" "$name") || return 1
        after=$("$measure" "$base") || return 1
        bases+=$'\n'$after
        awk -v name="$name" -v now="$now" -v a="$before" -v b="$after" 'BEGIN {
            n = split(now, v, " "); split(a, x, " "); split(b, y, " "); line = name
            for (i = 1; i <= n; i++) line = line " " v[i]
            for (i = 1; i <= n; i++) line = line " " v[i] / ((x[i] + y[i]) / 2)
            print line }'
        before=$after
    done
    echo "$bases" | awk -v name="$base" '{ for (i = 1; i <= NF; i++) s[i] += $i; n = NF }
        END { line = name; for (i = 1; i <= n; i++) line = line " " s[i] / NR
              for (i = 1; i <= n; i++) line = line " 1"; print line }'
}

# Records a figure for bench/run.sh's summary (a line "name value" in $BENCH_RESULTS, when set).
result() {
    if [ -n "${BENCH_RESULTS:-}" ]; then echo "$1 $2" >>"$BENCH_RESULTS"; fi
}

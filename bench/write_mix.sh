#!/usr/bin/env bash
# pgbench: Mastodon's writes of client addresses as one weighted mix (bench/write_mix/*.sql),
#   sign_up 5, sign_in 15, token_use 30, session_request 50
# against three databases of USERS (default 100,000) users, loaded alike: no extension; the
# extension with its defaults; the extension with skip_redundant_updates = off (the trigger's own
# cost, without the writes it saves). Each round runs every database for DURATION seconds (default
# 10) with 1 and with 8 clients, each extension database between two no-extension runs (see
# bracketed_round); reported are the medians over ROUNDS (default 7) of tps and of tps as a fraction
# of the mean of the two no-extension runs around it.
# With 1 client, pgbench and the server share one CPU (see run_mix).
# Server settings are stock (fsync and synchronous_commit on), as on an instance, but the cluster
# lives in MIX_TMPFS (default /dev/shm, when it exists): with a disk under it, each run's tps
# follows the virtual disk's flush latency, which varies by a factor of two here between identical
# runs and hides the difference being measured. MIX_TMPFS= (empty) keeps it on disk.
#   bench/write_mix.sh        or, quicker:   DURATION=5 ROUNDS=3 bench/write_mix.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
USERS=${USERS:-100000}
DURATION=${DURATION:-10}
ROUNDS=${ROUNDS:-7}
MIX=(sign_up@5 sign_in@15 token_use@30 session_request@50)

MIX_TMPFS=${MIX_TMPFS-/dev/shm}
if [ -n "$MIX_TMPFS" ] && [ -d "$MIX_TMPFS" ]; then export TMPDIR=$MIX_TMPFS; fi
bench_server
configs=(none ours noskip)
for config in "${configs[@]}"; do
    db=mix_$config
    "$PG_BIN/createdb" "$db"
    if [ "$config" != none ]; then
        psql_run -d "$db" -c "SET client_min_messages = error" -c "CREATE EXTENSION mastodon_ip_scrub"
        psql_run -c "ALTER DATABASE $db SET session_preload_libraries = 'mastodon_ip_scrub'"
    fi
    [ "$config" = noskip ] && psql_run -c "ALTER DATABASE $db SET mastodon_ip_scrub.skip_redundant_updates = off"
    say "Loading $USERS users into $db"
    psql_run -d "$db" -v users="$USERS" -f "$ROOT/bench/write_mix/setup.sql" >/dev/null
done

scripts=()
for s in "${MIX[@]}"; do scripts+=(-f "$ROOT/bench/write_mix/${s%@*}.sql@${s#*@}"); done
# CPU time of the server's processes that have exited, in clock ticks: the postmaster's reaped
# children. A run's backends exit when pgbench disconnects, so the difference over a run is the
# CPU time the server spent on its transactions (less noisy than tps on a shared machine).
postmaster_pid() { head -1 "$CLUSTER_DIR/data/postmaster.pid"; }
server_cpu() { sed 's/.*) //' "/proc/$(postmaster_pid)/stat" | awk '{ print $14 + $15 }'; }
TICK=$(getconf CLK_TCK)
# pgbench with one client alternates between two processes, pgbench and its backend. Both run on
# one CPU: on this 2-vCPU VM a wake-up across vCPUs cost more than the whole transaction and varied
# from run to run (same database, 4 s runs: 1,700 to 3,400 tps across CPUs, 11,000 to 16,000 tps on
# one), which buried the server's own time. With more clients, every CPU is used.
LAST_CPU=$(($(nproc) - 1))
# One pgbench run of the mix against database $1 with $2 clients; prints its tps and the server's
# CPU microseconds per transaction.
run_mix() {
    local out cpu0 cpu1 tx cpus=0-$LAST_CPU
    [ "$2" = 1 ] && cpus=$LAST_CPU
    # New backends inherit the postmaster's CPU affinity.
    taskset -p -c "$cpus" "$(postmaster_pid)" >/dev/null
    psql_run -d "$1" -c CHECKPOINT
    sleep 0.2 # the CHECKPOINT's backend has been reaped
    cpu0=$(server_cpu)
    out=$(taskset -c "$cpus" "$PG_BIN/pgbench" -n -M prepared -c "$2" -j "$(($2 < 2 ? $2 : 2))" -T "$DURATION" \
        -D users="$USERS" "${scripts[@]}" "$1" 2>&1) || { echo "$out" >&2; die "pgbench failed on $1"; }
    sleep 0.2
    cpu1=$(server_cpu)
    echo "$out" >>"$CLUSTER_DIR/pgbench.log"
    tx=$(echo "$out" | sed -n 's/^number of transactions actually processed: \([0-9]*\).*/\1/p')
    echo "$(echo "$out" | sed -n 's/^tps = \([0-9.]*\).*/\1/p')" \
        "$(awk -v c=$((cpu1 - cpu0)) -v t="$tx" -v hz="$TICK" 'BEGIN { print c / hz * 1e6 / t }')"
}
# bracketed_round's measure: database mix_$1 with the current $clients.
measure() { run_mix "mix_$1" "$clients"; }
declare -A samples
for ((round = 0; round < ROUNDS; round++)); do
    for clients in 1 8; do
        line="  round $((round + 1)), $clients client(s):"
        measured=$(bracketed_round measure "$round" none ours noskip)
        while read -r c tps cpu tps_ratio cpu_ratio; do
            samples[$clients,tps,$c]+="$tps "
            samples[$clients,ratio,$c]+="$tps_ratio "
            samples[$clients,cpu,$c]+="$cpu "
            samples[$clients,cpu_ratio,$c]+="$cpu_ratio "
            line+=$(printf '  %s %.0f tps (%.3fx; %.0f us CPU)' "$c" "$tps" "$tps_ratio" "$cpu")
        done <<<"$measured"
        echo "$line"
    done
done
grep -q 'number of failed transactions: [1-9]' "$CLUSTER_DIR/pgbench.log" && die "pgbench reported failed transactions"

# With the extension, no protected column may hold more than the scrubbed address.
for c in ours noskip; do
    psql_run -d "mix_$c" -At <<'SQL' | grep -qx 0 || die "mix_$c holds unscrubbed addresses"
SELECT (SELECT count(*) FROM users WHERE sign_up_ip IS DISTINCT FROM mastodon_ip_scrub.scrub(sign_up_ip))
     + (SELECT count(*) FROM session_activations WHERE ip IS DISTINCT FROM mastodon_ip_scrub.scrub(ip))
     + (SELECT count(*) FROM login_activities WHERE ip IS DISTINCT FROM mastodon_ip_scrub.scrub(ip))
     + (SELECT count(*) FROM oauth_access_tokens WHERE last_used_ip IS DISTINCT FROM mastodon_ip_scrub.scrub(last_used_ip))
SQL
done

say "pgbench write mix ${MIX[*]}, $USERS users, ${DURATION} s per run, PostgreSQL $PG_MAJOR, median of $ROUNDS rounds"
printf '| clients | database | tps | tps vs. no extension | server CPU per transaction | CPU vs. no extension |\n|---|---|---|---|---|---|\n'
for clients in 1 8; do
    for c in "${configs[@]}"; do
        m() { echo "${samples[$clients,$1,$c]}" | median; }
        printf '| %d | %s | %.0f | %.3fx | %.0f us | %.3fx |\n' "$clients" "$c" "$(m tps)" "$(m ratio)" "$(m cpu)" "$(m cpu_ratio)"
        result "mix.$clients.$c.ratio" "$(m ratio)"
        result "mix.$clients.$c.cpu_ratio" "$(m cpu_ratio)"
    done
done

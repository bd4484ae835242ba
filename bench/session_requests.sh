#!/usr/bin/env bash
# Mastodon's per-request session write: REQUESTS (default 10,000) web requests from SESSIONS
# (default 1,000) known sessions, replayed as Devise sends them (see session_requests.sql), in
# three fresh databases: no extension; the extension with skip_redundant_updates = off; the
# extension with its default (on). Reported for each: the UPDATEs Mastodon issues, the row
# versions PostgreSQL writes (n_tup_upd) and the WAL the replay generates.
#   bench/session_requests.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
SESSIONS=${SESSIONS:-1000}
REQUESTS=${REQUESTS:-10000}

# No autovacuum or timed checkpoint may add WAL during a replay.
bench_server -c autovacuum=off

results=()
for config in none skip_off skip_on; do
    db=requests_$config
    "$PG_BIN/createdb" "$db"
    psql_run -d "$db" -f "$ROOT/pgrx-tests/fixtures/mastodon_schema.sql"
    if [ "$config" != none ]; then
        psql_run -d "$db" -c "SET client_min_messages = error" -c "CREATE EXTENSION mastodon_ip_scrub"
    fi
    [ "$config" = skip_off ] && psql_run -c "ALTER DATABASE $db SET mastodon_ip_scrub.skip_redundant_updates = off"
    psql_run -d "$db" -v sessions="$SESSIONS" -v requests="$REQUESTS" -f "$ROOT/bench/session_requests.sql" >/dev/null
    psql_run -d "$db" -c CHECKPOINT
    lsn=$(psql_run -d "$db" -At -c "SELECT pg_current_wal_insert_lsn()")
    upd=$(psql_run -d "$db" -At -c "SELECT n_tup_upd FROM pg_stat_user_tables WHERE relname = 'session_activations'")
    issued=$(psql_run -d "$db" -c "CALL replay()" 2>&1 | sed -n 's/.*issued \([0-9]*\) UPDATEs.*/\1/p')
    wal=$(psql_run -d "$db" -At -c "SELECT pg_wal_lsn_diff(pg_current_wal_insert_lsn(), '$lsn')")
    sleep 1 # the replaying backend has exited; let its statistics arrive
    versions=$(psql_run -d "$db" -At -c "SELECT n_tup_upd - $upd FROM pg_stat_user_tables WHERE relname = 'session_activations'")
    # With the extension, every stored address must be scrubbed: a fast write path that stores
    # full addresses would prove nothing.
    if [ "$config" != none ]; then
        psql_run -d "$db" -At -c "SELECT count(*) FROM session_activations WHERE ip IS DISTINCT FROM mastodon_ip_scrub.scrub(ip)" |
            grep -qx 0 || die "$config: unscrubbed addresses stored"
    fi
    results+=("| $config | $issued | $versions | $wal |")
    echo "  $config: $issued UPDATEs issued, $versions row versions, $wal WAL bytes"
done

say "$REQUESTS requests from $SESSIONS sessions, PostgreSQL $PG_MAJOR"
printf '| configuration | UPDATEs Mastodon issues | row versions written | WAL bytes |\n|---|---|---|---|\n'
printf '%s\n' "${results[@]}"

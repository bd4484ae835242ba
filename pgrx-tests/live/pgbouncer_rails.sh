#!/usr/bin/env bash
# Mastodon's production path to the database: a Rails client (Debian's ruby-activerecord and
# ruby-pg) doing Mastodon's IP writes and reads from several threads, once directly with prepared
# statements (Mastodon's default) and once through PgBouncer in transaction pooling without them
# (Mastodon's scaling guide). Then, through the pool:
#  1. Mastodon's role cannot change a setting (SET, SET LOCAL, set_config, ALTER ROLE/DATABASE);
#  2. how an admin's change of a setting reaches the pooled server connections: ALTER DATABASE
#     reaches them only after PgBouncer's RECONNECT; ALTER SYSTEM + pg_reload_conf() reaches them
#     at once, unless a database-level value shadows the file.
# Needs the extension installed (scripts/test.sh does that). Exits non-zero on any failure.
source "$(dirname "${BASH_SOURCE[0]}")/../../scripts/lib.sh"
command -v pgbouncer >/dev/null && command -v ruby >/dev/null ||
    die "needs pgbouncer, ruby-activerecord and ruby-pg (scripts/test.sh installs them)"
WORK=$(server_dir pool)
stop_bouncer() { [ -f "$WORK/pgbouncer.pid" ] && kill "$(cat "$WORK/pgbouncer.pid")" 2>/dev/null; sleep 0.2; }
trap 'stop_bouncer; cluster_stop; rm -rf "$WORK"' EXIT
cluster_start pool
DB=mastodon_production
CLIENT="$ROOT/pgrx-tests/live/rails/mastodon_client.rb"
q() { psql_run -d "$DB" -tA -c "$1"; }

say "A Mastodon database owned by its role, protected"
psql_run -c "CREATE ROLE mastodon LOGIN" -c "CREATE DATABASE $DB OWNER mastodon"
psql_run -U mastodon -d "$DB" -f "$ROOT/pgrx-tests/fixtures/mastodon_schema.sql"
psql_run -d "$DB" -c "SET client_min_messages = warning" -c "CREATE EXTENSION mastodon_ip_scrub"

cat >"$WORK/pgbouncer.ini" <<INI
[databases]
$DB = host=$CLUSTER_DIR port=5432 dbname=$DB
[pgbouncer]
unix_socket_dir = $WORK
listen_port = 6432
auth_type = trust
auth_file = $WORK/userlist.txt
pool_mode = transaction
default_pool_size = 3
max_client_conn = 200
admin_users = postgres
logfile = $WORK/pgbouncer.log
pidfile = $WORK/pgbouncer.pid
INI
printf '"mastodon" ""\n"postgres" ""\n' >"$WORK/userlist.txt"
[ "$(id -u)" = 0 ] && chown postgres:postgres "$WORK"/*
as_server_user pgbouncer -d "$WORK/pgbouncer.ini"
for _ in $(seq 50); do [ -S "$WORK/.s.PGSQL.6432" ] && break; sleep 0.1; done
pooled() { PGHOST=$WORK PGPORT=6432 "$@"; }
bouncer_admin() { pooled psql_run -U postgres -d pgbouncer -c "$1" >/dev/null; }

say "Rails, directly, prepared statements (Mastodon's default)"
PGUSER=mastodon PGDATABASE=$DB ruby "$CLIENT" --prepared-statements true --threads 4 --users 12
say "Rails through PgBouncer (transaction pooling, PREPARED_STATEMENTS=false), 6 threads on 3 server connections"
PGUSER=mastodon PGDATABASE=$DB pooled ruby "$CLIENT" --prepared-statements false --threads 6 --users 12
check "unscrubbed rows in status(exact)" 0 "$(q "SELECT sum(unscrubbed_rows) FROM mastodon_ip_scrub.status(exact => true)")"
check "warnings and errors in the server log" 0 "$(grep -cE " (WARNING|ERROR|FATAL|PANIC): " "$CLUSTER_DIR/server.log" || true)"

# Writes through the pool from 3 clients at once, tagged $1; each row keeps the written address
# and the server process in user_agent. Then checks that every row is stored masked to /$2, and
# that more than one pooled server connection wrote.
UID_=$(q "SELECT min(id) FROM users")
cat >"$WORK/write.sql" <<'SQL'
\set a random(0, 255)
\set b random(0, 255)
\set c random(1, 254)
INSERT INTO login_activities (user_id, success, ip, user_agent, created_at)
SELECT :uid, true, w, :phase || ':' || pg_backend_pid() || ':' || host(w), now()
  FROM (SELECT format('10.%s.%s.%s', :a, :b, :c)::inet) AS s (w);
SQL
pool_writes_masked_to() {
    local phase=$1 bits=$2 result
    pooled "$PG_BIN/pgbench" -n -U mastodon -c 3 -j 1 -t 40 -D uid="$UID_" -D phase="$phase" -f "$WORK/write.sql" "$DB" >"$WORK/pgbench.log" 2>&1 ||
        { cat "$WORK/pgbench.log"; die "writes through PgBouncer failed"; }
    result=$(q "SELECT count(*) FILTER (WHERE ip = set_masklen(network(set_masklen(split_part(user_agent, ':', 3)::inet, $bits)), 32))
                       || ' of ' || count(*) || (CASE WHEN count(DISTINCT split_part(user_agent, ':', 2)) > 1 THEN ', several connections' ELSE ', one connection' END)
                  FROM login_activities WHERE split_part(user_agent, ':', 1) = '$phase'")
    check "pooled writes ($phase) stored with a /$bits" "120 of 120, several connections" "$result"
}

say "1. Mastodon's role cannot change a setting through the pool"
pool_writes_masked_to 1 24
for attempt in "SET mastodon_ip_scrub.ipv4_prefix = 32" \
    "BEGIN; SET LOCAL mastodon_ip_scrub.ipv4_prefix = 32; INSERT INTO login_activities (user_id, success, ip, created_at) VALUES ($UID_, true, '10.9.9.9', now()); COMMIT" \
    "SELECT set_config('mastodon_ip_scrub.enabled', 'off', false)" \
    "SELECT set_config('mastodon_ip_scrub.mode', 'truncate', true)" \
    "ALTER ROLE mastodon SET mastodon_ip_scrub.ipv4_prefix = 32" \
    "ALTER DATABASE $DB SET mastodon_ip_scrub.enabled = off"; do
    if out=$(pooled psql_run -U mastodon -d "$DB" -c "$attempt" 2>&1); then
        die "Mastodon's role was allowed: $attempt"
    fi
    grep -q 'permission denied' <<<"$out" || die "expected permission denied for: $attempt; got: $out"
    echo "ok: refused: $attempt"
done
check "role- or database-level settings stored" 0 "$(q "SELECT count(*) FROM pg_db_role_setting WHERE array_to_string(setconfig, ',') LIKE '%mastodon_ip_scrub%'")"
pool_writes_masked_to 2 24

say "2. An admin's change reaching the pooled connections"
psql_run -d "$DB" -c "ALTER DATABASE $DB SET mastodon_ip_scrub.ipv4_prefix = 16"
# The pool's three server connections were opened before the change and keep their values.
pool_writes_masked_to 3 24
bouncer_admin "RECONNECT $DB"
pool_writes_masked_to 4 16
# A file-level value (ALTER SYSTEM) is shadowed by the database-level one, reload or not.
psql_run -c "LOAD 'mastodon_ip_scrub'" -c "ALTER SYSTEM SET mastodon_ip_scrub.ipv4_prefix = 20" -c "SELECT pg_reload_conf()" >/dev/null
sleep 1
pool_writes_masked_to 5 16
# Without a database-level value, ALTER SYSTEM + pg_reload_conf() reaches every pooled connection.
psql_run -d "$DB" -c "ALTER DATABASE $DB RESET mastodon_ip_scrub.ipv4_prefix"
bouncer_admin "RECONNECT $DB"
pool_writes_masked_to 6 20
psql_run -c "LOAD 'mastodon_ip_scrub'" -c "ALTER SYSTEM SET mastodon_ip_scrub.ipv4_prefix = 22" -c "SELECT pg_reload_conf()" >/dev/null
sleep 1
pool_writes_masked_to 7 22
psql_run -c "LOAD 'mastodon_ip_scrub'" -c "ALTER SYSTEM RESET mastodon_ip_scrub.ipv4_prefix" -c "SELECT pg_reload_conf()" >/dev/null
sleep 1
pool_writes_masked_to 8 24
check "PgBouncer errors" 0 "$(grep -c ' ERROR ' "$WORK/pgbouncer.log" || true)"

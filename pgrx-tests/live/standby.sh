#!/usr/bin/env bash
# A hot standby, made as an admin makes Mastodon's read replica (pg_basebackup -R, streaming), with
# the library preloaded on both servers:
#  1. the standby holds only scrubbed values, of rows written through the triggers and of rows
#     scrubbed later by backfill();
#  2. status(), audit(), protected_columns, scrub() and truncate() work there, read-only;
#  3. backfill(), protect(), unprotect(), exempt() and protect_mastodon() fail with a message that
#     says the server is a standby;
#  4. its log shows no WARNING or ERROR during replay and the queries, other than those refusals;
#  5. promoted, it protects as a primary: writes, protect(), a Mastodon migration's new table.
# Needs the extension installed (scripts/test.sh does that). Exits non-zero on any failure.
source "$(dirname "${BASH_SOURCE[0]}")/../../scripts/lib.sh"
STANDBY=
trap 'server_discard "$STANDBY"; cluster_stop' EXIT
cluster_start primary -c shared_preload_libraries=mastodon_ip_scrub -c wal_level=replica
DB=mastodon_production
PRIMARY=$CLUSTER_DIR
q() { psql_run -d "$DB" -tA -c "$1"; }
on_standby() { PGHOST=$STANDBY PGPORT=5433 "$@"; }
qs() { on_standby psql_run -d "$DB" -tA -c "$1"; }
# Waits until the standby has replayed everything the primary has committed so far: a marker
# committed now (synchronously) is replayed after every earlier commit, asynchronous ones too
# (backfill's), and is visible there once it is.
caught_up() {
    local n
    n=$(q "UPDATE replication_marker SET n = n + 1 RETURNING n")
    for _ in $(seq 300); do
        [ "$(qs "SELECT n FROM replication_marker")" = "$n" ] && return 0
        sleep 0.1
    done
    tail -20 "$STANDBY/server.log" >&2
    die "the standby did not replay marker $n"
}
FULL="SELECT (SELECT count(*) FROM users WHERE sign_up_ip <> set_masklen(network(set_masklen(sign_up_ip, 24)), 32))
           + (SELECT count(*) FROM session_activations WHERE ip <> set_masklen(network(set_masklen(ip, CASE family(ip) WHEN 4 THEN 24 ELSE 48 END)), CASE family(ip) WHEN 4 THEN 32 ELSE 128 END))
           + (SELECT count(*) FROM login_activities WHERE ip <> set_masklen(network(set_masklen(ip, 24)), 32))"

say "A Mastodon primary with rows from before the extension, and its streaming standby"
psql_run -c "CREATE ROLE mastodon LOGIN" -c "CREATE DATABASE $DB OWNER mastodon"
psql_run -U mastodon -d "$DB" -f "$ROOT/pgrx-tests/fixtures/mastodon_schema.sql"
psql_run -U mastodon -d "$DB" <<SQL
INSERT INTO accounts (id, username, created_at, updated_at) SELECT g, 'u' || g, now(), now() FROM generate_series(1, 200) g;
INSERT INTO users (id, email, created_at, updated_at, account_id, sign_up_ip)
     SELECT g, g || '@example.org', now(), now(), g, format('203.0.113.%s', g)::inet FROM generate_series(1, 200) g;
SQL
psql_run -d "$DB" -c "SET client_min_messages = warning" -c "CREATE EXTENSION mastodon_ip_scrub"
psql_run -d "$DB" -c "CREATE TABLE replication_marker (n integer)" -c "INSERT INTO replication_marker VALUES (0)"
STANDBY=$(server_dir standby)
as_server_user "$PG_BIN/pg_basebackup" -h "$PRIMARY" -p 5432 -U postgres -D "$STANDBY/data" -R -X stream -c fast
server_start "$STANDBY" 5433 -c hot_standby=on -c shared_preload_libraries=mastodon_ip_scrub
check "the standby is in recovery, with the library preloaded" "true mastodon_ip_scrub" \
    "$(qs "SELECT pg_is_in_recovery() || ' ' || current_setting('shared_preload_libraries')")"

say "1. Only scrubbed values reach the standby"
psql_run -U mastodon -d "$DB" <<SQL
INSERT INTO session_activations (session_id, user_agent, ip, user_id, created_at, updated_at)
     SELECT 's' || g, '', CASE WHEN g % 2 = 0 THEN format('198.51.100.%s', g % 250 + 1) ELSE format('2001:db8:%s::%s', g, g) END::inet,
            g % 200 + 1, now(), now() FROM generate_series(1, 500) g;
INSERT INTO login_activities (user_id, success, ip, created_at) SELECT g % 200 + 1, true, format('192.0.2.%s', g % 250 + 1)::inet, now() FROM generate_series(1, 500) g;
UPDATE session_activations SET ip = '198.51.100.77', updated_at = now() WHERE id % 3 = 0;
SQL
caught_up
check "rows replayed on the standby" 700 "$(qs "SELECT (SELECT count(*) FROM session_activations) + (SELECT count(*) FROM users)")"
check "full addresses on the standby before backfill (the 200 sign-ups from before the extension)" 200 "$(qs "$FULL")"
psql_run -d "$DB" -c "CALL mastodon_ip_scrub.backfill()"
caught_up
check "full addresses on the standby after backfill on the primary" 0 "$(qs "$FULL")"

say "2. Reading functions on the standby"
check "status(exact) on the standby: unscrubbed rows" 0 "$(qs "SELECT sum(unscrubbed_rows) FROM mastodon_ip_scrub.status(exact => true)")"
check "status() on the standby: protected columns" "$(q "SELECT count(*) FROM mastodon_ip_scrub.status()")" \
    "$(qs "SELECT count(*) FROM mastodon_ip_scrub.status()")"
check "audit() on the standby" "$(q "SELECT count(*) FROM mastodon_ip_scrub.audit()")" "$(qs "SELECT count(*) FROM mastodon_ip_scrub.audit()")"
check "protected_columns on the standby" "$(q "SELECT string_agg(table_name || '.' || column_name, ' ' ORDER BY 1) FROM mastodon_ip_scrub.protected_columns")" \
    "$(qs "SELECT string_agg(table_name || '.' || column_name, ' ' ORDER BY 1) FROM mastodon_ip_scrub.protected_columns")"
check "scrub() on the standby" 203.0.113.0 "$(qs "SELECT mastodon_ip_scrub.scrub('203.0.113.77')")"
check "truncate() on the standby" 2001:db8:: "$(qs "SELECT mastodon_ip_scrub.truncate('2001:db8:1:2::3', 24, 32)")"
# So far, replay and reads: nothing from the extension or anyone else went wrong.
check "warnings and errors in the standby's log" "" "$(grep -E ' (WARNING|ERROR|FATAL|PANIC): ' "$STANDBY/server.log" || true)"

say "3. Changing functions on the standby refuse, naming the standby"
for call in "CALL mastodon_ip_scrub.backfill()" \
    "SELECT mastodon_ip_scrub.protect('ip_blocks', 'ip')" \
    "SELECT mastodon_ip_scrub.unprotect('session_activations', 'ip')" \
    "SELECT mastodon_ip_scrub.exempt('ip_blocks', 'ip', 'admins only')" \
    "SELECT * FROM mastodon_ip_scrub.protect_mastodon()"; do
    if out=$(qs "$call" 2>&1); then die "the standby ran: $call"; fi
    grep -q 'is a standby' <<<"$out" || die "expected a message naming the standby for: $call; got: $out"
    echo "ok: refused on the standby: $call"
    echo "   ${out%%$'\n'*}"
done
# 4. Its log holds those five refusals and nothing else.
check "errors in the standby's log" 5 "$(grep -cE ' (WARNING|ERROR|FATAL|PANIC): ' "$STANDBY/server.log" || true)"
check "errors in the standby's log that are not the refusals" "" \
    "$(grep -E ' (WARNING|ERROR|FATAL|PANIC): ' "$STANDBY/server.log" | grep -v 'is a standby' || true)"

say "5. Promoted, the standby protects as a primary"
server_ctl "$PG_BIN" -D "$STANDBY/data" -w promote >/dev/null
check "in recovery after promotion" f "$(qs "SELECT pg_is_in_recovery()")"
on_standby psql_run -U mastodon -d "$DB" <<SQL
INSERT INTO login_activities (user_id, success, ip, created_at) VALUES (1, true, '192.0.2.200', now());
UPDATE users SET sign_up_ip = '203.0.113.99' WHERE id = 1;
-- A Mastodon migration adding a table with an address column.
CREATE TABLE moderation_notes (id bigserial PRIMARY KEY, reporter_ip inet);
SQL
on_standby psql_run -d "$DB" -c "SELECT mastodon_ip_scrub.protect('moderation_notes', 'reporter_ip')" >/dev/null
on_standby psql_run -U mastodon -d "$DB" -c "INSERT INTO moderation_notes (reporter_ip) VALUES ('198.51.100.200')"
check "writes on the promoted server" "192.0.2.0 203.0.113.0 198.51.100.0" \
    "$(qs "SELECT (SELECT host(ip) FROM login_activities WHERE ip <<= '192.0.2.0/24' ORDER BY id DESC LIMIT 1) || ' ' ||
              (SELECT host(sign_up_ip) FROM users WHERE id = 1) || ' ' || (SELECT host(reporter_ip) FROM moderation_notes)")"
check "full addresses on the promoted server" 0 "$(qs "$FULL")"

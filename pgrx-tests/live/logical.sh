#!/usr/bin/env bash
# Logical replication between two servers, set up as an admin moving a Mastodon database would:
#  1. a publisher without the extension, a subscriber with it: the initial table copy and the
#     streamed changes arrive scrubbed (the triggers fire ALWAYS); with replicas => false, byte for
#     byte; a Mastodon migration on both sides keeps protection on the subscriber;
#  2. FOR ALL TABLES from a publisher with the extension to a subscriber without it: the
#     subscription starts (the extension keeps its state in a large object, which no publication
#     carries, not in tables), and only scrubbed values arrive;
#  3. FOR ALL TABLES between two servers with the extension: the initial sync finishes, and the
#     subscriber keeps its own protections and exemptions.
# Needs the extension installed (scripts/test.sh does that). Exits non-zero on any failure.
source "$(dirname "${BASH_SOURCE[0]}")/../../scripts/lib.sh"
SUB=
trap 'server_discard "$SUB"; cluster_stop' EXIT
cluster_start publisher -c wal_level=logical
PUB=$CLUSTER_DIR
SUB=$(server_dir subscriber)
as_server_user "$PG_BIN/initdb" -D "$SUB/data" -U postgres --auth=trust -E UTF8 --no-locale >/dev/null
server_start "$SUB" 5433 -c wal_retrieve_retry_interval=200ms -c max_sync_workers_per_subscription=4
on_sub() { PGHOST=$SUB PGPORT=5433 "$@"; }
qp() { psql_run -d "$1" -tA -c "$2"; }
qs() { on_sub psql_run -d "$1" -tA -c "$2"; }
# Stored addresses of the tables below that keep more than /24 (IPv4) or /48 (IPv6).
FULL="SELECT (SELECT count(*) FROM users WHERE sign_up_ip <> set_masklen(network(set_masklen(sign_up_ip, 24)), 32))
           + (SELECT count(*) FROM session_activations WHERE ip <> set_masklen(network(set_masklen(ip, CASE family(ip) WHEN 4 THEN 24 ELSE 48 END)), CASE family(ip) WHEN 4 THEN 32 ELSE 128 END))
           + (SELECT count(*) FROM login_activities WHERE ip <> set_masklen(network(set_masklen(ip, 24)), 32))"
ROWS="SELECT (SELECT count(*) FROM users) || '/' || (SELECT count(*) FROM session_activations) || '/' || (SELECT count(*) FROM login_activities)"
# A Mastodon database $2 on the publisher ($1 = pub) or the subscriber ($1 = sub), with $3 rows of
# full addresses ($3 = 0: the schema only).
mastodon_db() {
    local run=()
    [ "$1" = sub ] && run=(on_sub)
    "${run[@]}" psql_run -c "CREATE DATABASE $2 OWNER mastodon"
    "${run[@]}" psql_run -U mastodon -d "$2" -f "$ROOT/pgrx-tests/fixtures/mastodon_schema.sql"
    [ "$3" -gt 0 ] || return 0
    "${run[@]}" psql_run -U mastodon -d "$2" <<SQL
INSERT INTO accounts (id, username, created_at, updated_at) SELECT g, 'u' || g, now(), now() FROM generate_series(1, $3) g;
INSERT INTO users (id, email, created_at, updated_at, account_id, sign_up_ip)
     SELECT g, g || '@example.org', now(), now(), g, format('203.0.113.%s', g % 250 + 1)::inet FROM generate_series(1, $3) g;
INSERT INTO session_activations (session_id, user_agent, ip, user_id, created_at, updated_at)
     SELECT 's' || g, '', CASE WHEN g % 2 = 0 THEN format('198.51.100.%s', g % 250 + 1) ELSE format('2001:db8:%s::%s', g, g) END::inet,
            g, now(), now() FROM generate_series(1, $3) g;
SQL
}
# Waits until every table of subscription $2 in database $1 is synchronized and the subscriber's
# table counts ($ROWS) reach $3.
synced() {
    for _ in $(seq 600); do
        if [ "$(qs "$1" "SELECT count(*) FROM pg_subscription_rel WHERE srsubstate <> 'r'")" = 0 ] &&
            [ "$(qs "$1" "$ROWS")" = "$3" ]; then
            return 0
        fi
        sleep 0.1
    done
    echo "subscriber's log:" >&2 && tail -20 "$SUB/server.log" >&2
    die "subscription $2 did not reach $3 (at $(qs "$1" "$ROWS"))"
}
extension() { "$@" -c "SET client_min_messages = warning" -c "CREATE EXTENSION mastodon_ip_scrub"; }
psql_run -c "CREATE ROLE mastodon LOGIN"
on_sub psql_run -c "CREATE ROLE mastodon LOGIN"

say "1. Publisher without the extension, subscriber with it"
mastodon_db pub plain 300
mastodon_db sub plain 0
extension on_sub psql_run -d plain
psql_run -d plain -c "CREATE PUBLICATION mastodon FOR ALL TABLES"
on_sub psql_run -d plain -c "CREATE SUBSCRIPTION mastodon CONNECTION 'host=$PUB port=5432 dbname=plain user=postgres' PUBLICATION mastodon"
synced plain mastodon 300/300/0
check "full addresses on the subscriber after the initial copy" 0 "$(qs plain "$FULL")"
check "full addresses on the publisher (no extension)" 600 "$(qp plain "$FULL")"
# The apply worker commits in the publisher's order: once the INSERT has arrived, so has the UPDATE.
psql_run -U mastodon -d plain <<SQL
UPDATE session_activations SET ip = '198.51.100.201', updated_at = now() WHERE id <= 50;
INSERT INTO login_activities (user_id, success, ip, created_at) SELECT g, true, format('192.0.2.%s', g % 250 + 1)::inet, now() FROM generate_series(1, 100) g;
SQL
synced plain mastodon 300/300/100
check "full addresses on the subscriber after streamed changes" 0 "$(qs plain "$FULL")"
check "streamed UPDATE stored scrubbed" 198.51.100.0 "$(qs plain "SELECT DISTINCT host(ip) FROM session_activations WHERE id <= 50")"

say "   A Mastodon migration on both sides (the historical users.last_sign_in_ip column)"
for run in "" on_sub; do $run psql_run -U mastodon -d plain -c "ALTER TABLE users ADD COLUMN last_sign_in_ip inet"; done
psql_run -U mastodon -d plain -c "UPDATE users SET last_sign_in_ip = '203.0.113.222' WHERE id = 1"
for _ in $(seq 100); do [ -n "$(qs plain "SELECT last_sign_in_ip FROM users WHERE id = 1")" ] && break; sleep 0.1; done
check "the new column, streamed, on the subscriber" 203.0.113.0 "$(qs plain "SELECT host(last_sign_in_ip) FROM users WHERE id = 1")"

say "   replicas => false on the subscriber: stored byte for byte"
on_sub psql_run -d plain -c "SELECT count(*) FROM mastodon_ip_scrub.protect_mastodon(replicas => false)" >/dev/null
psql_run -U mastodon -d plain -c "INSERT INTO login_activities (user_id, success, ip, created_at) SELECT g, true, format('192.0.2.%s', g)::inet, now() FROM generate_series(1, 20) g"
synced plain mastodon 300/300/120
check "rows the subscriber stores as the publisher sent them" \
    "$(qp plain "SELECT string_agg(host(ip), ' ' ORDER BY id) FROM login_activities WHERE id > 100")" \
    "$(qs plain "SELECT string_agg(host(ip), ' ' ORDER BY id) FROM login_activities WHERE id > 100")"

say "2. FOR ALL TABLES from a publisher with the extension to a subscriber without it"
mastodon_db pub scrubbing 200
mastodon_db sub receiving 0
extension psql_run -d scrubbing
psql_run -d scrubbing -c "CALL mastodon_ip_scrub.backfill()" >/dev/null 2>&1
psql_run -d scrubbing -c "CREATE PUBLICATION mastodon FOR ALL TABLES"
check "the extension's objects in the publication" 0 \
    "$(qp scrubbing "SELECT count(*) FROM pg_publication_tables WHERE pubname = 'mastodon' AND schemaname = 'mastodon_ip_scrub'")"
on_sub psql_run -d receiving -c "CREATE SUBSCRIPTION receiving CONNECTION 'host=$PUB port=5432 dbname=scrubbing user=postgres' PUBLICATION mastodon"
psql_run -U mastodon -d scrubbing -c "INSERT INTO login_activities (user_id, success, ip, created_at) SELECT g, true, format('192.0.2.%s', g)::inet, now() FROM generate_series(1, 50) g"
synced receiving receiving 200/200/50
check "full addresses on a subscriber without the extension" 0 "$(qs receiving "$FULL")"
check "errors in the subscriber's log" "" "$(grep -E ' (ERROR|FATAL|PANIC): ' "$SUB/server.log" || true)"

say "3. FOR ALL TABLES between two servers with the extension"
mastodon_db pub twoway 100
mastodon_db sub twoway 0
psql_run -U mastodon -d twoway -c "CREATE TABLE moderation_notes (id bigserial PRIMARY KEY, reporter_ip inet)"
extension psql_run -d twoway
extension on_sub psql_run -d twoway
psql_run -d twoway <<SQL >/dev/null
SELECT mastodon_ip_scrub.unprotect('session_activations', 'ip');
SELECT mastodon_ip_scrub.exempt('session_activations', 'ip', 'the publisher keeps them');
SELECT mastodon_ip_scrub.protect('moderation_notes', 'reporter_ip');
SQL
psql_run -d twoway -c "CREATE PUBLICATION everything FOR ALL TABLES"
on_sub psql_run -U mastodon -d twoway -c "CREATE TABLE moderation_notes (id bigserial PRIMARY KEY, reporter_ip inet)"
on_sub psql_run -d twoway -c "SELECT mastodon_ip_scrub.protect('moderation_notes', 'reporter_ip')" >/dev/null
sub_protection=$(qs twoway "SELECT string_agg(table_name || '.' || column_name, ' ' ORDER BY 1) FROM mastodon_ip_scrub.protection")
sub_exemptions=$(qs twoway "SELECT string_agg(table_name || '.' || column_name, ' ' ORDER BY 1) FROM mastodon_ip_scrub.exemption")
on_sub psql_run -d twoway -c "CREATE SUBSCRIPTION everything CONNECTION 'host=$PUB port=5432 dbname=twoway user=postgres' PUBLICATION everything"
synced twoway everything 100/100/0
check "the subscriber's protections, its own" "$sub_protection" \
    "$(qs twoway "SELECT string_agg(table_name || '.' || column_name, ' ' ORDER BY 1) FROM mastodon_ip_scrub.protection")"
check "the subscriber's exemptions, its own" "$sub_exemptions" \
    "$(qs twoway "SELECT string_agg(table_name || '.' || column_name, ' ' ORDER BY 1) FROM mastodon_ip_scrub.exemption")"
# Changes to the publisher's protection stay there.
psql_run -d twoway -c "SELECT mastodon_ip_scrub.unprotect('moderation_notes', 'reporter_ip')" >/dev/null
psql_run -U mastodon -d twoway -c "INSERT INTO moderation_notes (reporter_ip) VALUES ('198.51.100.99')" \
    -c "UPDATE session_activations SET ip = '198.51.100.123' WHERE id = 1" \
    -c "INSERT INTO login_activities (user_id, success, ip, created_at) VALUES (1, true, '192.0.2.99', now())"
synced twoway everything 100/100/1
for _ in $(seq 100); do [ "$(qs twoway "SELECT count(*) FROM moderation_notes")" = 1 ] && break; sleep 0.1; done
check "the subscriber's protections after the publisher's unprotect()" "$sub_protection" \
    "$(qs twoway "SELECT string_agg(table_name || '.' || column_name, ' ' ORDER BY 1) FROM mastodon_ip_scrub.protection")"
check "a row the publisher does not scrub, on the subscriber that protects it" 198.51.100.0 "$(qs twoway "SELECT host(reporter_ip) FROM moderation_notes")"
check "full addresses on the subscriber" 0 "$(qs twoway "$FULL")"
check "unscrubbed rows in the subscriber's status(exact)" 0 "$(qs twoway "SELECT sum(unscrubbed_rows) FROM mastodon_ip_scrub.status(exact => true)")"
check "errors in the subscriber's log" "" "$(grep -E ' (ERROR|FATAL|PANIC): ' "$SUB/server.log" || true)"

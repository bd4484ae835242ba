#!/usr/bin/env bash
# pg_upgrade of a protected Mastodon database from the oldest supported major to the newest
# (OLD_PG, NEW_PG; default 14 and 18), the extension installed in both: the upgrade succeeds, and
# afterwards protection, exemptions, settings, event triggers and scrubbing work as before, and
# status() shows no unscrubbed row.
# Needs the extension installed for both majors (scripts/test.sh runs this after building both).
source "$(dirname "${BASH_SOURCE[0]}")/../../scripts/lib.sh"
OLD_PG=${OLD_PG:-${SUPPORTED_MAJORS[0]}}
NEW_PG=${NEW_PG:-${SUPPORTED_MAJORS[-1]}}
OLD_BIN=$(dirname "$(resolved_pg_config "$OLD_PG")")
NEW_BIN=$(dirname "$(resolved_pg_config "$NEW_PG")")
for bin in "$OLD_BIN" "$NEW_BIN"; do
    [ -f "$("$bin/pg_config" --pkglibdir)/mastodon_ip_scrub.so" ] ||
        die "the extension is not installed for $("$bin/pg_config" --version) (scripts/test.sh installs it)"
done
WORK=$(server_dir pg_upgrade)
server() { server_ctl "$1" -D "$WORK/$2" -l "$WORK/$2.log" -w -o "-c listen_addresses='' -k $WORK -p 5432" "$3" >/dev/null; }
cleanup() {
    local d
    for d in old new; do
        as_server_user "$OLD_BIN/pg_ctl" -D "$WORK/$d" -m immediate stop >/dev/null 2>&1 || true
        as_server_user "$NEW_BIN/pg_ctl" -D "$WORK/$d" -m immediate stop >/dev/null 2>&1 || true
    done
    rm -rf "$WORK"
}
trap cleanup EXIT
export PGHOST=$WORK PGPORT=5432 PGUSER=postgres
DB=mastodon_production
q() { "$1/psql" -X -q -v ON_ERROR_STOP=1 -d "$DB" -tA -c "$2"; }
# What must survive: protection, exemptions, the database's settings, the scrub triggers and the
# event triggers with their states.
STATE="SELECT string_agg(x, ' ' ORDER BY x) FROM (
    SELECT 'protect:' || table_name || '.' || column_name || ':' || replicas FROM mastodon_ip_scrub.protection
    UNION ALL SELECT 'exempt:' || table_name || '.' || column_name FROM mastodon_ip_scrub.exemption
    UNION ALL SELECT 'setting:' || array_to_string(setconfig, ',') FROM pg_db_role_setting s JOIN pg_database d ON d.oid = s.setdatabase WHERE d.datname = current_database()
    UNION ALL SELECT 'trigger:' || tgrelid::regclass || ':' || tgenabled::text FROM pg_trigger WHERE tgname = 'zz_mastodon_ip_scrub'
    UNION ALL SELECT 'event:' || evtname || ':' || evtenabled::text FROM pg_event_trigger) AS s (x)"

say "A protected Mastodon database on PostgreSQL $OLD_PG"
# -k: PostgreSQL 18 initializes with data checksums, and pg_upgrade needs both clusters alike.
as_server_user "$OLD_BIN/initdb" -k -D "$WORK/old" -U postgres --auth=trust -E UTF8 --no-locale >/dev/null
server "$OLD_BIN" old start
"$OLD_BIN/psql" -X -q -v ON_ERROR_STOP=1 -d postgres -c "CREATE ROLE mastodon LOGIN" -c "CREATE DATABASE $DB OWNER mastodon"
"$OLD_BIN/psql" -X -q -v ON_ERROR_STOP=1 -U mastodon -d "$DB" -f "$ROOT/pgrx-tests/fixtures/mastodon_schema.sql"
"$OLD_BIN/psql" -X -q -v ON_ERROR_STOP=1 -U mastodon -d "$DB" <<SQL
CREATE TABLE moderation_notes (id bigserial PRIMARY KEY, reporter_ip inet);
CREATE TABLE office_networks (id bigserial PRIMARY KEY, network cidr);
INSERT INTO accounts (id, username, created_at, updated_at) SELECT g, 'u' || g, now(), now() FROM generate_series(1, 100) g;
INSERT INTO users (id, email, created_at, updated_at, account_id, sign_up_ip)
     SELECT g, g || '@example.org', now(), now(), g, format('203.0.113.%s', g)::inet FROM generate_series(1, 100) g;
SQL
"$OLD_BIN/psql" -X -q -v ON_ERROR_STOP=1 -d "$DB" <<SQL >/dev/null
SET client_min_messages = error;
CREATE EXTENSION mastodon_ip_scrub;
SELECT mastodon_ip_scrub.protect('moderation_notes', 'reporter_ip');
SELECT mastodon_ip_scrub.exempt('office_networks', 'network', 'our own office ranges');
SELECT mastodon_ip_scrub.protect('login_activities', '{ip}', replicas => false);
ALTER DATABASE $DB SET mastodon_ip_scrub.ipv4_prefix = 16;
SQL
# In a new session, which the database's /16 applies to.
"$OLD_BIN/psql" -X -q -v ON_ERROR_STOP=1 -d "$DB" -c "SET client_min_messages = error" -c "CALL mastodon_ip_scrub.backfill()"
"$OLD_BIN/psql" -X -q -v ON_ERROR_STOP=1 -U mastodon -d "$DB" -c "INSERT INTO moderation_notes (reporter_ip) VALUES ('198.51.100.7')"
before=$(q "$OLD_BIN" "$STATE")
echo "before: $before"
check "a write before the upgrade, at the database's /16" 198.51.0.0 "$(q "$OLD_BIN" "SELECT host(reporter_ip) FROM moderation_notes")"
server "$OLD_BIN" old stop

say "pg_upgrade to PostgreSQL $NEW_PG"
as_server_user "$NEW_BIN/initdb" -k -D "$WORK/new" -U postgres --auth=trust -E UTF8 --no-locale >/dev/null
(cd "$WORK" && as_server_user env LD_LIBRARY_PATH="$("$NEW_BIN/pg_config" --libdir)" "$NEW_BIN/pg_upgrade" -b "$OLD_BIN" -B "$NEW_BIN" -d "$WORK/old" -D "$WORK/new" \
    -s "$WORK" -p 5432 -P 5432 -U postgres --check >"$WORK/check.log" 2>&1) || { cat "$WORK/check.log"; die "pg_upgrade --check failed"; }
(cd "$WORK" && as_server_user env LD_LIBRARY_PATH="$("$NEW_BIN/pg_config" --libdir)" "$NEW_BIN/pg_upgrade" -b "$OLD_BIN" -B "$NEW_BIN" -d "$WORK/old" -D "$WORK/new" \
    -s "$WORK" -p 5432 -P 5432 -U postgres >"$WORK/upgrade.log" 2>&1) || { cat "$WORK/upgrade.log"; die "pg_upgrade failed"; }
echo "ok: pg_upgrade from $OLD_PG to $NEW_PG"
server "$NEW_BIN" new start

say "Afterwards, on PostgreSQL $NEW_PG"
check "protection, exemptions, settings, scrub and event triggers" "$before" "$(q "$NEW_BIN" "$STATE")"
"$NEW_BIN/psql" -X -q -v ON_ERROR_STOP=1 -U mastodon -d "$DB" <<SQL
INSERT INTO moderation_notes (reporter_ip) VALUES ('198.51.100.8');
UPDATE users SET sign_up_ip = '203.0.113.200' WHERE id = 1;
INSERT INTO office_networks (network) VALUES ('192.0.2.0/28');
-- A Mastodon migration: the event triggers protect the new column.
ALTER TABLE users ADD COLUMN last_sign_in_ip inet;
UPDATE users SET last_sign_in_ip = '203.0.113.201' WHERE id = 2;
SQL
check "writes after the upgrade" "198.51.0.0 203.0.0.0 192.0.2.0/28 203.0.0.0" \
    "$(q "$NEW_BIN" "SELECT (SELECT host(reporter_ip) FROM moderation_notes ORDER BY id DESC LIMIT 1) || ' ' ||
                           (SELECT host(sign_up_ip) FROM users WHERE id = 1) || ' ' || (SELECT network::text FROM office_networks) || ' ' ||
                           (SELECT host(last_sign_in_ip) FROM users WHERE id = 2)")"
check "unscrubbed rows in status(exact)" 0 "$(q "$NEW_BIN" "SELECT sum(unscrubbed_rows) FROM mastodon_ip_scrub.status(exact => true)")"
check "audit() findings" 0 "$(q "$NEW_BIN" "SELECT count(*) FROM mastodon_ip_scrub.audit()")"
check "extension version" "$(crate_version)" "$(q "$NEW_BIN" "SELECT extversion FROM pg_extension WHERE extname = 'mastodon_ip_scrub'")"

#!/usr/bin/env bash
# pg_dump and restore of a protected Mastodon database, in custom and plain format, full and
# schema-only, each into an empty database where the extension is available. Every restore must
# finish without a single error, and the restored database must protect the same columns (a
# schema-only dump carries no exemptions, so there the exempted Mastodon column is protected
# again), keep the exemptions (full dumps: the large object that stores them is merged with the
# restoring database's own), and hold no full address in a protected column.
# Needs the extension installed (scripts/test.sh does that). Exits non-zero on any failure.
source "$(dirname "${BASH_SOURCE[0]}")/../../scripts/lib.sh"
WORK=$(mktemp -d "${TMPDIR:-/tmp}/mastodon_ip_scrub-dump.XXXXXX")
chmod 755 "$WORK"
trap 'cluster_stop; rm -rf "$WORK"' EXIT
cluster_start dump
export PGDATABASE=mastodon_production
# Each query returns one line, its items sorted (the clusters use the C locale).
PROTECTED="SELECT string_agg(c, ' ' ORDER BY c) FROM (SELECT format('%s.%s.%s', schema_name, table_name, column_name)
             FROM mastodon_ip_scrub.protected_columns WHERE column_present AND trigger_enabled) AS p (c)"
EXEMPT="SELECT string_agg(c, ' ' ORDER BY c) FROM (SELECT table_name || '.' || column_name || ':' || reason
          FROM mastodon_ip_scrub.exemption WHERE NOT builtin) AS e (c)"
TRIGGERS="SELECT string_agg(c, ' ' ORDER BY c) FROM (SELECT tgrelid::regclass || ':' || tgenabled::text
            FROM pg_trigger WHERE tgname = 'zz_mastodon_ip_scrub') AS t (c)"
# Rows of a protected column holding more than the trigger would store now.
FULL="SELECT coalesce(sum(s.unscrubbed_rows), 0) FROM mastodon_ip_scrub.status(exact => true) s"
KEPT="SELECT count(*) FROM session_activations WHERE masklen(ip) = 32"

say "A protected Mastodon database with the admin's own protections and exemptions"
psql_run -q -d postgres -c "CREATE ROLE mastodon LOGIN" -c "CREATE DATABASE mastodon_production OWNER mastodon"
psql_run -q -U mastodon -f "$ROOT/pgrx-tests/fixtures/mastodon_schema.sql"
psql_run -q -U mastodon <<SQL
CREATE TABLE moderation_notes (id bigserial PRIMARY KEY, reporter_ip inet, body text);
CREATE TABLE office_networks (id bigserial PRIMARY KEY, network cidr);
INSERT INTO accounts (id, username, created_at, updated_at) SELECT g, 'u' || g, now(), now() FROM generate_series(1, 50) g;
INSERT INTO users (id, email, created_at, updated_at, account_id, sign_up_ip)
     SELECT g, g || '@example.org', now(), now(), g, format('203.0.113.%s', g)::inet FROM generate_series(1, 50) g;
INSERT INTO session_activations (session_id, user_agent, ip, user_id, created_at, updated_at)
     SELECT 's' || g, '', format('198.51.100.%s', g)::inet, g, now(), now() FROM generate_series(1, 50) g;
INSERT INTO login_activities (user_id, success, ip, created_at)
     SELECT g, true, format('2001:db8:%s::1', g)::inet, now() FROM generate_series(1, 50) g;
INSERT INTO moderation_notes (reporter_ip, body) SELECT format('192.0.2.%s', g)::inet, 'spam' FROM generate_series(1, 50) g;
SQL
psql_run -q <<SQL
SET client_min_messages = error;
CREATE EXTENSION mastodon_ip_scrub;
SELECT mastodon_ip_scrub.protect('moderation_notes', 'reporter_ip');
SELECT mastodon_ip_scrub.exempt('office_networks', 'network', 'our own office ranges');
-- An instance that keeps session addresses whole, on purpose.
SELECT mastodon_ip_scrub.unprotect('session_activations', 'ip');
SELECT mastodon_ip_scrub.exempt('session_activations', 'ip', 'kept for abuse handling');
CALL mastodon_ip_scrub.backfill();
SQL
q() { psql_run -d "$1" -tA -c "$2"; }
src_protected=$(q mastodon_production "$PROTECTED")
src_exempt=$(q mastodon_production "$EXEMPT")
src_triggers=$(q mastodon_production "$TRIGGERS")
src_kept=$(q mastodon_production "$KEPT")
echo "protected: $src_protected"
echo "exempt:    $src_exempt"
check "full addresses in protected columns of the source" 0 "$(q mastodon_production "$FULL")"
check "whole addresses kept in the exempt column of the source" 50 "$src_kept"

# Restores $1 (custom|plain) $2 (full|schema), dumped by role $3 (default postgres), into a new
# database named restored_$1_$2 (with _by_$3 for another role).
restore() {
    local format=$1 scope=$2 user=${3:-postgres} db="restored_$1_$2" dump="$WORK/$1_$2" flags=()
    [ "$scope" = schema ] && flags=(--schema-only)
    [ "$user" = postgres ] || { db="${db}_by_$user"; dump="${dump}_by_$user"; }
    say "$format format, $scope dump by $user, restored into an empty database"
    psql_run -q -d postgres -c "CREATE DATABASE $db OWNER mastodon"
    if [ "$format" = custom ]; then
        "$PG_BIN/pg_dump" -U "$user" -Fc "${flags[@]}" -f "$dump" mastodon_production 2>"$dump.log"
        "$PG_BIN/pg_restore" --exit-on-error -d "$db" "$dump" 2>"$dump.err" ||
            { cat "$dump.err"; echo "FAILED: pg_restore" >&2; exit 1; }
    else
        "$PG_BIN/pg_dump" -U "$user" -Fp "${flags[@]}" -f "$dump" mastodon_production 2>"$dump.log"
        psql_run -d "$db" -f "$dump" >/dev/null 2>"$dump.err" ||
            { cat "$dump.err"; echo "FAILED: psql restore" >&2; exit 1; }
    fi
    check "pg_dump's warnings" "" "$(cat "$dump.log")"
    check "errors in the restore's output" 0 "$(grep -c ERROR "$dump.err" || true)"
}

# What a restored full dump must hold, in database $1.
check_full() {
    local db=$1
    check "protected columns" "$src_protected" "$(q "$db" "$PROTECTED")"
    check "triggers and how they fire" "$src_triggers" "$(q "$db" "$TRIGGERS")"
    check "exemptions" "$src_exempt" "$(q "$db" "$EXEMPT")"
    # The dumped store (a large object) and the one the restored CREATE EXTENSION made are merged
    # by the first DDL command after the dump's data (sql/config_store.sql).
    check "stores of protection, merged" 1 "$(q "$db" "SELECT count(*) FROM mastodon_ip_scrub._stores()")"
    check "full addresses in protected columns" 0 "$(q "$db" "$FULL")"
    check "whole addresses kept in the exempt column" "$src_kept" "$(q "$db" "$KEPT")"
    check "audit() findings" "" "$(q "$db" "SELECT string_agg(column_name, ',') FROM mastodon_ip_scrub.audit()")"
    check "a new write is scrubbed" "203.0.113.0" "$(q "$db" "INSERT INTO moderation_notes (reporter_ip, body)
        VALUES ('203.0.113.99', 'x') RETURNING host(reporter_ip)")"
}

for format in custom plain; do
    restore "$format" full
    check_full "restored_${format}_full"

    restore "$format" schema
    db="restored_${format}_schema"
    # No exemptions in a schema-only dump: the Mastodon column exempted above is protected again,
    # and the admin has to exempt it once more.
    check "protected columns (plus the no longer exempt Mastodon column)" \
        "$(echo "$src_protected public.session_activations.ip" | tr ' ' '\n' | LC_ALL=C sort | paste -sd' ')" \
        "$(q "$db" "$PROTECTED")"
    check "exemptions" "" "$(q "$db" "$EXEMPT")"
    check "a new write to the admin's own protected column is scrubbed" "192.0.2.0" "$(q "$db" "
        INSERT INTO moderation_notes (reporter_ip, body) VALUES ('192.0.2.99', 'x') RETURNING host(reporter_ip)")"
done

# Mastodon's own backup instructions run pg_dump as Mastodon's role, which may read (not write) the
# store; the dump is restored by a superuser, as any database with extensions.
restore custom full mastodon
check_full restored_custom_full_by_mastodon
say "dump and restore: all checks passed"

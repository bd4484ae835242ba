#!/usr/bin/env bash
# Upgrading in place from every release in sql/releases to this tree's version, the way an admin
# does it: the release's library and SQL are installed and in use, the new library replaces the
# file (as a package manager does, by rename), then ALTER EXTENSION mastodon_ip_scrub UPDATE.
#  1. Each release's source still generates the install script whose fingerprint sql/releases
#     records (and 0.1.0's, kept in sql/, is that one), and a tree at a released version generates
#     that version's script.
#  2. Two databases per release: one upgraded quietly, one while the application writes through
#     sessions opened before the new library arrived (the old library stays loaded in them) and
#     through a new session per transaction (the new library with the old SQL, then the new SQL).
#     No write fails, and every address written at any moment is scrubbed.
#  3. Protections, exemptions, database settings and rows are as they were; the old rows still to
#     scrub are scrubbed by the new backfill(); DDL is followed by the new event triggers.
#  4. A dump taken under the release restores into this version with the same protections and
#     exemptions, and its rows scrubbed.
#  5. Each upgraded database's extension equals a fresh install's, object by object
#     (extension_catalog.sql), and that comparison does see a changed attribute, grant or state.
# Reinstalls this tree's build at the end. Exits non-zero on any failure.
source "$(dirname "${BASH_SOURCE[0]}")/../../scripts/lib.sh"
WORK=$(mktemp -d "${TMPDIR:-/tmp}/mastodon_ip_scrub-upgrade.XXXXXX")
chmod 755 "$WORK"
LIBDIR=$("$PG_CONFIG" --pkglibdir)
EXTDIR=$("$PG_CONFIG" --sharedir)/extension
trap 'cluster_stop; install_build "$WORK/current" 2>/dev/null; rm -rf "$WORK"' EXIT
VERSION=$(crate_version)
SCHEME="$ROOT/pgrx-tests/live/extension_catalog.sql"

q() { psql_run -d "$1" -tA -c "$2"; }
extversion() { q "$1" "SELECT extversion FROM pg_extension WHERE extname = 'mastodon_ip_scrub'"; }

# Installs the files of a package_tree build into this PostgreSQL, replacing whatever version is
# there: every script and control file of ours goes, the library is replaced by rename, so
# sessions that have the old one mapped keep running it.
install_build() {
    rm -f "$EXTDIR"/mastodon_ip_scrub.control "$EXTDIR"/mastodon_ip_scrub--*.sql
    find "$1" -path '*/extension/*' -type f -exec cp {} "$EXTDIR/" \;
    cp "$(find "$1" -name mastodon_ip_scrub.so)" "$LIBDIR/mastodon_ip_scrub.so.new"
    mv -f "$LIBDIR/mastodon_ip_scrub.so.new" "$LIBDIR/mastodon_ip_scrub.so"
}

say "Building this tree ($VERSION) and every earlier release for PostgreSQL $PG_MAJOR"
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
package_tree "$ROOT" "$WORK/current" "$TARGET"
RELEASES=()
while read -r release commit sum; do
    case $release in '#'* | '') continue ;; esac
    if [ "$release" = "$VERSION" ]; then
        # Released: any change to the SQL needs a new version and an upgrade script (RELEASING.md).
        [ "$(install_script_sum "$(find "$WORK/current" -name "mastodon_ip_scrub--$VERSION.sql")")" = "$sum" ] ||
            die "this tree's install script is not the one released as $VERSION: bump the version (RELEASING.md)"
        echo "ok: this tree generates the install script released as $VERSION"
        continue
    fi
    [ "$commit" != - ] || die "sql/releases: release $release has no commit (RELEASING.md, step 4)"
    RELEASES+=("$release")
    src=$(release_source "$release" "$commit")
    package_tree "$src" "$WORK/$release" "$(dirname "$src")/target"
    check "fingerprint of the install script release $release ($commit) generates" "$sum" \
        "$(install_script_sum "$(find "$WORK/$release" -name "mastodon_ip_scrub--$release.sql")")"
    if [ -f "$ROOT/sql/mastodon_ip_scrub--$release.sql" ]; then
        check "fingerprint of sql/mastodon_ip_scrub--$release.sql" "$sum" "$(install_script_sum "$ROOT/sql/mastodon_ip_scrub--$release.sql")"
    fi
done <"$ROOT/sql/releases"

# A Mastodon database as release $2 leaves it, in database $1: rows written before the extension
# (still full), the admin's protection, exemption and settings, rows written since (scrubbed).
setup_db() {
    local db=$1 release=$2
    psql_run -q -d postgres -c "CREATE DATABASE $db OWNER mastodon"
    psql_run -q -U mastodon -d "$db" -f "$ROOT/pgrx-tests/fixtures/mastodon_schema.sql"
    psql_run -q -U mastodon -d "$db" <<SQL
CREATE TABLE moderation_notes (id bigserial PRIMARY KEY, reporter_ip inet, body text);
CREATE TABLE office_networks (id bigserial PRIMARY KEY, network cidr);
INSERT INTO accounts (id, username, created_at, updated_at) SELECT g, 'u' || g, now(), now() FROM generate_series(1, 20) g;
INSERT INTO users (id, email, created_at, updated_at, account_id, sign_up_ip)
     SELECT g, g || '@example.org', now(), now(), g, format('203.0.113.%s', g)::inet FROM generate_series(1, 20) g;
INSERT INTO session_activations (id, session_id, user_agent, ip, user_id, created_at, updated_at)
     SELECT g, 's' || g, '', format('2001:db8:%s::1', g)::inet, g, now(), now() FROM generate_series(1, 20) g;
INSERT INTO moderation_notes (reporter_ip, body) SELECT format('192.0.2.%s', g)::inet, 'spam' FROM generate_series(1, 20) g;
INSERT INTO office_networks (network) VALUES ('198.51.100.0/24');
SQL
    psql_run -q -d "$db" >/dev/null <<SQL
SET client_min_messages = error;
CREATE EXTENSION mastodon_ip_scrub VERSION '$release';
SELECT mastodon_ip_scrub.protect('moderation_notes', 'reporter_ip');
SELECT mastodon_ip_scrub.exempt('office_networks', 'network', 'our own office ranges');
ALTER DATABASE $db SET session_preload_libraries = 'mastodon_ip_scrub';
ALTER DATABASE $db SET mastodon_ip_scrub.ipv4_prefix = 16;
ALTER DATABASE $db SET mastodon_ip_scrub.ipv6_prefix = 32;
SQL
    psql_run -q -U mastodon -d "$db" <<SQL
INSERT INTO login_activities (user_id, success, ip, user_agent, created_at)
     SELECT g, true, format('198.51.%s.%s', g, g)::inet, 'before', now() FROM generate_series(1, 20) g;
INSERT INTO moderation_notes (reporter_ip, body) VALUES ('192.0.2.77', 'after');
SQL
}

# What the upgrade must keep: the admin's decisions and every row (ordered, as text).
KEPT="SELECT 'protection', schema_name, table_name, column_name, replicas::text FROM mastodon_ip_scrub.protection
      UNION ALL SELECT 'exemption', schema_name, table_name, column_name, reason || builtin FROM mastodon_ip_scrub.exemption
      UNION ALL SELECT 'setting', array_to_string(s.setconfig, ' '), '', '', '' FROM pg_db_role_setting s
                 JOIN pg_database d ON d.oid = s.setdatabase WHERE d.datname = current_database()
      UNION ALL SELECT 'users', id::text, host(sign_up_ip), masklen(sign_up_ip)::text, '' FROM users
      UNION ALL SELECT 'sessions', id::text, host(ip), masklen(ip)::text, '' FROM session_activations
      UNION ALL SELECT 'logins', id::text, host(ip), user_agent, '' FROM login_activities
      UNION ALL SELECT 'notes', id::text, host(reporter_ip), body, '' FROM moderation_notes
      UNION ALL SELECT 'networks', id::text, network::text, '', '' FROM office_networks
      ORDER BY 1, 2, 3, 4"
# Rows the writers below inserted or updated (since $1) that hold more than /16 or /32 of an address.
full_writes() {
    q live "SELECT (SELECT count(*) FROM login_activities WHERE user_agent LIKE 'writer%'
                       AND ip <> mastodon_ip_scrub.truncate(ip, 16, 32))
                 + (SELECT count(*) FROM session_activations WHERE updated_at >= '$1'
                       AND ip <> mastodon_ip_scrub.truncate(ip, 16, 32))"
}

# The C functions of the installed extension whose symbol the library on disk lacks.
SYMBOLS="CREATE FUNCTION pg_temp.missing_symbols() RETURNS text LANGUAGE plpgsql AS \$\$
DECLARE
    r record;
    missing text[] := '{}';
BEGIN
    FOR r IN SELECT p.probin, p.prosrc FROM pg_proc p JOIN pg_depend d ON d.classid = 'pg_proc'::regclass AND d.objid = p.oid
              JOIN pg_extension e ON d.refclassid = 'pg_extension'::regclass AND d.refobjid = e.oid
             WHERE e.extname = 'mastodon_ip_scrub' AND d.deptype = 'e' AND p.prolang = (SELECT oid FROM pg_language WHERE lanname = 'c')
    LOOP
        BEGIN
            EXECUTE format('CREATE FUNCTION pg_temp.symbol_probe() RETURNS void LANGUAGE c AS %L, %L', r.probin, r.prosrc);
            DROP FUNCTION pg_temp.symbol_probe();
        EXCEPTION WHEN undefined_function THEN
            missing := missing || r.prosrc;
        END;
    END LOOP;
    RETURN array_to_string(missing, ' ');
END
\$\$; SELECT pg_temp.missing_symbols()"

# $1 fresh database, $2 database under test: identical extension catalogs, else the difference.
same_catalog() {
    psql_run -d "$1" -f "$SCHEME" >"$WORK/catalog-$1"
    psql_run -d "$2" -f "$SCHEME" >"$WORK/catalog-$2"
    diff -u "$WORK/catalog-$1" "$WORK/catalog-$2" >"$WORK/catalog.diff"
}

cluster_start upgrade
psql_run -q -c "CREATE ROLE mastodon LOGIN"
# Mastodon-like writers: a sign-in (INSERT) and Rails' per-request session UPDATE, each with a new
# full address. Marked by user_agent (writer-1: sessions kept throughout, writer-2: a new session
# per transaction), so their rows can be told apart.
cat >"$WORK/write.sql" <<'SQL'
\set a random(1, 254)
\set b random(1, 254)
\set c random(1, 254)
INSERT INTO login_activities (user_id, success, ip, user_agent, created_at)
     VALUES (1, true, ('10.' || :a || '.' || :b || '.' || :c)::inet, 'writer-' || :w, now());
UPDATE session_activations SET ip = ('2001:db8:' || :a || ':' || :b || '::' || :c)::inet, updated_at = now() WHERE id = :c % 20 + 1;
SQL
writes() { q "$1" "SELECT count(*) FROM login_activities WHERE user_agent = '$2'"; }
wait_for_writes() { # $1 db, $2 tag, $3 count to exceed
    for _ in $(seq 1 300); do
        [ "$(writes "$1" "$2")" -gt "$3" ] && return 0
        sleep 0.1
    done
    die "no writes from $2 in $1 for 30 s"
}

for release in "${RELEASES[@]}"; do
    say "Upgrade from $release to $VERSION on PostgreSQL $PG_MAJOR"
    install_build "$WORK/$release"
    setup_db quiet "$release"
    setup_db live "$release"
    for db in quiet live; do
        q "$db" "$KEPT" >"$WORK/kept-$db"
        check "extension version in $db" "$release" "$(extversion "$db")"
    done
    # An admin's backup taken under $release, restored once $VERSION is installed.
    "$PG_BIN/pg_dump" -Fc -f "$WORK/dump-$release" quiet

    # Writers on the live database: two sessions for the whole run (they load $release's library
    # now and keep it), and one new session per transaction (whatever library is installed).
    started=$(q live "SELECT localtimestamp")
    "$PG_BIN/pgbench" -n -U mastodon -d live -f "$WORK/write.sql" -D w=1 -c 2 -T 20 \
        >"$WORK/kept.log" 2>&1 &
    kept=$!
    "$PG_BIN/pgbench" -n -C -U mastodon -d live -f "$WORK/write.sql" -D w=2 -c 1 -T 20 \
        >"$WORK/new.log" 2>&1 &
    new=$!
    wait_for_writes live writer-1 0
    wait_for_writes live writer-2 0

    install_build "$WORK/current"
    # New sessions now run the new library against $release's SQL: every C function that SQL
    # names must resolve in it (CREATE FUNCTION looks the symbol up).
    check "C functions of $release's SQL missing from the new library" "" "$(q quiet "$SYMBOLS")"
    before=$(writes live writer-2)
    wait_for_writes live writer-2 "$((before + 20))"
    check "writes so far holding more than /16 or /32 (new sessions: the new library, $release's SQL)" 0 "$(full_writes "$started")"

    psql_run -q -d quiet -c "ALTER EXTENSION mastodon_ip_scrub UPDATE"
    psql_run -q -d live -c "ALTER EXTENSION mastodon_ip_scrub UPDATE"
    kept_before=$(writes live writer-1)
    new_before=$(writes live writer-2)
    # Both kinds of session go on writing through the new SQL: the old library in the kept ones.
    wait_for_writes live writer-1 "$((kept_before + 20))"
    wait_for_writes live writer-2 "$((new_before + 20))"
    wait "$kept" || { cat "$WORK/kept.log"; die "a write failed in a session opened before the upgrade"; }
    wait "$new" || { cat "$WORK/new.log"; die "a write failed in a new session during the upgrade"; }
    echo "writers: $(writes live writer-1) sign-ins from sessions kept throughout, $(writes live writer-2) from new sessions;" \
        "$(q live "SELECT count(*) FROM session_activations WHERE updated_at >= '$started'") session rows updated"
    check "writes during the whole upgrade holding more than /16 or /32" 0 "$(full_writes "$started")"

    for db in quiet live; do
        check "extension version in $db" "$VERSION" "$(extversion "$db")"
        # The writers (live only) added login rows and changed session addresses.
        ours='^logins|.*|writer'
        [ "$db" = quiet ] || ours="$ours\|^sessions|"
        diff <(grep -v "$ours" "$WORK/kept-$db") <(q "$db" "$KEPT" | grep -v "$ours") ||
            die "the upgrade changed protections, exemptions, settings or rows in $db"
        echo "ok: protections, exemptions, settings and rows of $db are as before"
    done

    say "A dump taken under $release restores into $VERSION"
    psql_run -q -d postgres -c "CREATE DATABASE restored OWNER mastodon"
    "$PG_BIN/pg_restore" --exit-on-error -d restored "$WORK/dump-$release" 2>"$WORK/restore.err" ||
        { cat "$WORK/restore.err"; die "pg_restore of $release's dump into $VERSION failed"; }
    check "errors in the restore's output" 0 "$(grep -c ERROR "$WORK/restore.err" || true)"
    check "extension version in the restored database" "$VERSION" "$(extversion restored)"
    diff <(grep '^protection\|^exemption' "$WORK/kept-quiet") <(q restored "$KEPT" | grep '^protection\|^exemption') ||
        die "the restore of $release's dump changed protections or exemptions"
    echo "ok: protections and exemptions of $release's dump are restored as they were"
    # The rows written before $release protected them arrive through the restored triggers.
    check "rows restored" "$(grep -vc '^protection\|^exemption\|^setting' "$WORK/kept-quiet")" \
        "$(q restored "$KEPT" | grep -vc '^protection\|^exemption\|^setting')"
    check "rows restored holding a full address" 0 \
        "$(q restored "SELECT sum(unscrubbed_rows) FROM mastodon_ip_scrub.status(exact => true)")"
    psql_run -q -d postgres -c "DROP DATABASE restored"

    say "The upgraded extension equals a fresh install of $VERSION"
    setup_db fresh "$VERSION"
    for db in quiet live; do
        same_catalog fresh "$db" || { cat "$WORK/catalog.diff"; die "$db, upgraded from $release, differs from a fresh install"; }
        echo "ok: $db, upgraded from $release: $(wc -l <"$WORK/catalog-$db") catalog facts, all equal to a fresh install's"
    done

    say "The upgraded databases work as $VERSION"
    for db in quiet live; do
        full=$(q "$db" "SELECT sum(unscrubbed_rows) FROM mastodon_ip_scrub.status(exact => true)")
        [ "$full" -gt 0 ] || die "no rows left full by $release in $db: nothing for backfill to show"
        echo "ok: $full rows written before $release protected them, still full ($db)"
        psql_run -q -d "$db" -c "SET client_min_messages = warning" -c "CALL mastodon_ip_scrub.backfill()"
        check "rows left full after backfill ($db)" 0 "$(q "$db" "SELECT sum(unscrubbed_rows) FROM mastodon_ip_scrub.status(exact => true)")"
        psql_run -q -U mastodon -d "$db" -c "ALTER TABLE moderation_notes RENAME COLUMN reporter_ip TO reporter_addr"
        check "protection follows the application's rename ($db)" "reporter_addr" \
            "$(q "$db" "SELECT column_name FROM mastodon_ip_scrub.protection WHERE table_name = 'moderation_notes'")"
        check "a new session's write ($db)" "192.0.0.0" \
            "$(psql_run -U mastodon -d "$db" -tA -c "INSERT INTO moderation_notes (reporter_addr) VALUES ('192.0.2.1') RETURNING host(reporter_addr)")"
    done
    for db in quiet live fresh; do psql_run -q -d postgres -c "DROP DATABASE $db"; done
done

# $@: server settings beyond those cluster_start gives.
restart_server() {
    server_ctl "$PG_BIN" -D "$CLUSTER_DIR/data" -l "$CLUSTER_DIR/server.log" -w -m fast \
        -o "-c listen_addresses='' -k $CLUSTER_DIR -p 5432 $*" restart >/dev/null
}
first=${RELEASES[0]}
say "With the library in shared_preload_libraries, the update waits for a restart ($first to $VERSION)"
install_build "$WORK/$first"
restart_server -c shared_preload_libraries=mastodon_ip_scrub
setup_db preload "$first"
install_build "$WORK/current"
out=$(psql_run -d preload -c "ALTER EXTENSION mastodon_ip_scrub UPDATE" 2>&1) &&
    die "ALTER EXTENSION UPDATE ran on the old library, preloaded by the server"
[[ $out == *"runs the library of an older version"*"restart PostgreSQL"* ]] || die "unclear refusal: $out"
echo "ok: refused until the server restarts: ${out//$'\n'/ }"
check "extension version after the refusal" "$first" "$(extversion preload)"
check "a write meanwhile" "198.51.0.0" "$(psql_run -U mastodon -d preload -tA -c "INSERT INTO login_activities (user_id, success, ip, created_at)
      VALUES (1, true, '198.51.100.7', now()) RETURNING host(ip)")"
restart_server -c shared_preload_libraries=mastodon_ip_scrub
psql_run -q -d preload -c "ALTER EXTENSION mastodon_ip_scrub UPDATE"
setup_db fresh "$VERSION"
same_catalog fresh preload || { cat "$WORK/catalog.diff"; die "preload, upgraded after the restart, differs from a fresh install"; }
echo "ok: after the restart, the update ran and equals a fresh install"
check "a write after the update" "198.51.0.0" "$(psql_run -U mastodon -d preload -tA -c "INSERT INTO login_activities (user_id, success, ip, created_at)
      VALUES (1, true, '198.51.100.8', now()) RETURNING host(ip)")"
for db in preload fresh; do psql_run -q -d postgres -c "DROP DATABASE $db"; done
restart_server

say "The catalog comparison sees what differs"
setup_db fresh "$VERSION"
setup_db other "$VERSION"
same_catalog fresh other || { cat "$WORK/catalog.diff"; die "two fresh installs differ"; }
for change in "ALTER FUNCTION mastodon_ip_scrub._settings() SECURITY DEFINER" \
    "GRANT EXECUTE ON FUNCTION mastodon_ip_scrub.status(boolean) TO mastodon" \
    "ALTER EVENT TRIGGER mastodon_ip_scrub_table_rewrite ENABLE" \
    "COMMENT ON FUNCTION mastodon_ip_scrub.audit() IS 'changed'" \
    "ALTER VIEW mastodon_ip_scrub.exemption ALTER COLUMN reason SET DEFAULT 'none'" \
    "REVOKE USAGE ON SCHEMA mastodon_ip_scrub FROM PUBLIC"; do
    psql_run -q -d postgres -c "CREATE DATABASE changed TEMPLATE other"
    psql_run -q -d changed -c "$change"
    if same_catalog fresh changed; then die "the comparison missed: $change"; fi
    echo "ok: the comparison sees: $change ($(grep -c '^[-+][^-+]' "$WORK/catalog.diff") lines differ)"
    psql_run -q -d postgres -c "DROP DATABASE changed"
done
say "upgrade: all checks passed"

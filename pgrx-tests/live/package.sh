#!/usr/bin/env bash
# The packages, as an admin meets them. For the selected major, scripts/package.sh builds this
# version's .deb and .tar.gz and those of the release before it (debug builds: the layout is what
# is tested, not the optimizer), and their contents, paths, control fields and checksums are
# checked. On Debian's own PostgreSQL (15 here), with apt: the from-source install is removed, the
# older package installed, the extension created in a Mastodon-shaped database and seen
# scrubbing, the package upgraded to this version and ALTER EXTENSION ... UPDATE run, scrubbing
# seen again, and the package removed and purged with no file left behind. Reinstalls this
# tree's from-source build at the end. Exits non-zero on any failure.
source "$(dirname "${BASH_SOURCE[0]}")/../../scripts/lib.sh"
WORK=$(mktemp -d "${TMPDIR:-/tmp}/mastodon_ip_scrub-package-test.XXXXXX")
chmod 755 "$WORK"
VERSION=$(crate_version)
PACKAGE=postgresql-$PG_MAJOR-mastodon-ip-scrub
LIBDIR=$("$PG_CONFIG" --pkglibdir)
EXTDIR=$("$PG_CONFIG" --sharedir)/extension
reinstall() {
    if dpkg-query -W -f='${Status}' "$PACKAGE" 2>/dev/null | grep -q installed; then
        "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get purge -y -qq "$PACKAGE" >/dev/null
    fi
    install_extension debug >/dev/null 2>&1
}
trap 'cluster_stop; [ "${TOUCHED:-0}" = 1 ] && reinstall; rm -rf "$WORK"' EXIT

# The release before this version, from sql/releases.
previous=$(awk -v v="$VERSION" '!/^#/ && NF == 3 && $1 != v && $2 != "-" { p = $1; c = $2 } END { print p, c }' "$ROOT/sql/releases")
read -r OLD OLD_COMMIT <<<"$previous"
[ -n "$OLD" ] || die "sql/releases names no release before $VERSION"

say "Packages of $OLD and $VERSION for PostgreSQL $PG_MAJOR"
src=$(release_source "$OLD" "$OLD_COMMIT")
PG=$PG_MAJOR PROFILE=debug OUT="$WORK/dist" SOURCE="$src" CARGO_TARGET_DIR="$(dirname "$src")/target" \
    "$ROOT/scripts/package.sh" >"$WORK/old.log" 2>&1 || { cat "$WORK/old.log"; die "packaging $OLD failed"; }
PG=$PG_MAJOR PROFILE=debug OUT="$WORK/dist" "$ROOT/scripts/package.sh" >"$WORK/new.log" 2>&1 ||
    { cat "$WORK/new.log"; die "packaging $VERSION failed"; }
(cd "$WORK/dist" && sha256sum --check --quiet SHA256SUMS) || die "SHA256SUMS does not match the packages"
echo "ok: SHA256SUMS matches $(wc -l <"$WORK/dist/SHA256SUMS") files"

declare -A TREE=(["$OLD"]=$src ["$VERSION"]=$ROOT)
for version in "$OLD" "$VERSION"; do
    deb=$WORK/dist/${PACKAGE}_${version}_amd64.deb
    tgz=$WORK/dist/${PACKAGE}_${version}_amd64.tar.gz
    [ -f "$deb" ] && [ -f "$tgz" ] || die "missing ${PACKAGE}_${version}_amd64.deb or .tar.gz"
    check "package name" "$PACKAGE" "$(dpkg-deb -f "$deb" Package)"
    check "package version" "$version" "$(dpkg-deb -f "$deb" Version)"
    check "architecture" "amd64" "$(dpkg-deb -f "$deb" Architecture)"
    check "dependencies" "postgresql-$PG_MAJOR" "$(dpkg-deb -f "$deb" Depends)"
    # Exactly these files, at PGDG's paths: the library, the control file, the install script,
    # every upgrade script of the source tree (PostgreSQL chains them), and the docs.
    expected=("usr/lib/postgresql/$PG_MAJOR/lib/mastodon_ip_scrub.so"
        "usr/share/doc/$PACKAGE/changelog.gz"
        "usr/share/doc/$PACKAGE/copyright"
        "usr/share/postgresql/$PG_MAJOR/extension/mastodon_ip_scrub--$version.sql"
        "usr/share/postgresql/$PG_MAJOR/extension/mastodon_ip_scrub.control")
    for script in "${TREE[$version]}"/sql/mastodon_ip_scrub--*--*.sql; do
        if [ -f "$script" ]; then expected+=("usr/share/postgresql/$PG_MAJOR/extension/$(basename "$script")"); fi
    done
    want=$(printf '%s\n' "${expected[@]}" | LC_ALL=C sort)
    check "files in the .deb" "$want" "$(dpkg-deb --fsys-tarfile "$deb" | tar -t | grep -v '/$' | sed 's|^\./||' | LC_ALL=C sort)"
    check "files in the .tar.gz" "$want" "$(tar -tzf "$tgz" | grep -v '/$' | LC_ALL=C sort)"
    check "default version in the control file" "default_version = '$version'" \
        "$(dpkg-deb --fsys-tarfile "$deb" | tar -xO "./usr/share/postgresql/$PG_MAJOR/extension/mastodon_ip_scrub.control" | grep default_version)"
    zcat_entry=$(dpkg-deb --fsys-tarfile "$deb" | tar -xO "./usr/share/doc/$PACKAGE/changelog.gz" | gunzip | head -1)
    check "changelog's latest entry" "mastodon-ip-scrub ($version) unstable; urgency=medium" "$zcat_entry"
done

if [ "$PG_CONFIG" != "/usr/lib/postgresql/$PG_MAJOR/bin/pg_config" ] || ! command -v apt-get >/dev/null; then
    say "package: contents checked; PostgreSQL $PG_MAJOR here is not Debian's, so apt does not install it"
    exit 0
fi

say "Installing $OLD with apt into Debian's PostgreSQL $PG_MAJOR"
TOUCHED=1
# A from-source install's files belong to no package: removed first, so that what is installed and
# removed below is the package's alone.
"${SUDO[@]}" rm -f "$LIBDIR/mastodon_ip_scrub.so" "$EXTDIR"/mastodon_ip_scrub.control "$EXTDIR"/mastodon_ip_scrub--*.sql
apt() { "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get "$@" -y -qq >"$WORK/apt.log" 2>&1 || { cat "$WORK/apt.log"; die "apt-get $*"; }; }
apt install "$WORK/dist/${PACKAGE}_${OLD}_amd64.deb"
check "installed package version" "$OLD" "$(dpkg-query -W -f='${Version}' "$PACKAGE")"

cluster_start package
export PGDATABASE=mastodon_production
psql_run -q -d postgres -c "CREATE ROLE mastodon LOGIN" -c "CREATE DATABASE mastodon_production OWNER mastodon"
psql_run -q -U mastodon -f "$ROOT/pgrx-tests/fixtures/mastodon_schema.sql" \
    -c "INSERT INTO accounts (id, username, created_at, updated_at) VALUES (1, 'admin', now(), now())" \
    -c "INSERT INTO users (id, email, created_at, updated_at, account_id, sign_up_ip)
        VALUES (1, 'admin@example.org', now(), now(), 1, '203.0.113.5')"
psql_run -q -c "SET client_min_messages = warning" -c "CREATE EXTENSION mastodon_ip_scrub"
check "extension version" "$OLD" "$(psql_run -tA -c "SELECT extversion FROM pg_extension WHERE extname = 'mastodon_ip_scrub'")"
login() { # a sign-in from address $1, as Mastodon's role; prints what was stored
    psql_run -U mastodon -tA -c "INSERT INTO login_activities (user_id, success, ip, created_at)
                                 VALUES (1, true, '$1', now()) RETURNING host(ip)"
}
check "a sign-in stored by $OLD" "203.0.113.0" "$(login 203.0.113.77)"

say "Upgrading the package to $VERSION, then the extension"
apt install "$WORK/dist/${PACKAGE}_${VERSION}_amd64.deb"
check "installed package version" "$VERSION" "$(dpkg-query -W -f='${Version}' "$PACKAGE")"
check "a sign-in with the new library and $OLD's SQL" "2001:db8:1::" "$(login 2001:db8:1:2:3::4)"
psql_run -q -c "ALTER EXTENSION mastodon_ip_scrub UPDATE"
check "extension version" "$VERSION" "$(psql_run -tA -c "SELECT extversion FROM pg_extension WHERE extname = 'mastodon_ip_scrub'")"
check "a sign-in stored by $VERSION" "198.51.100.0" "$(login 198.51.100.9)"
full="SELECT sum(unscrubbed_rows) FROM mastodon_ip_scrub.status(exact => true)"
check "rows written before CREATE EXTENSION, still full" 1 "$(psql_run -tA -c "$full")"
psql_run -q -c "SET client_min_messages = warning" -c "CALL mastodon_ip_scrub.backfill()"
check "rows still full after $VERSION's backfill" 0 "$(psql_run -tA -c "$full")"
cluster_stop

say "Removing the package"
dpkg-query -L "$PACKAGE" >"$WORK/files"
apt purge "$PACKAGE"
left=$(while read -r path; do [ ! -f "$path" ] || echo "$path"; done <"$WORK/files")
check "files left behind by the package" "" "$left"
check "extension files left in PostgreSQL's directories" "" \
    "$(ls "$LIBDIR"/mastodon_ip_scrub* "$EXTDIR"/mastodon_ip_scrub* /usr/share/doc/"$PACKAGE" 2>/dev/null)"
say "package: all checks passed"

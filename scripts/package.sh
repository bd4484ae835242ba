#!/usr/bin/env bash
# Builds the packages of this version (`make package`): for each PostgreSQL major,
#   postgresql-NN-mastodon-ip-scrub_<version>_amd64.deb     (PGDG paths, Depends: postgresql-NN)
#   postgresql-NN-mastodon-ip-scrub_<version>_amd64.tar.gz  (the same files, rooted at /)
# and SHA256SUMS over them, in dist/. Installs whatever the build needs first.
#   PG=15 (or "14 18", or all; default all) picks the majors; OUT=dir the output directory.
#   PROFILE=debug builds faster, unoptimized packages (the tests use them); SOURCE=dir packages
#   another source tree (a release's, for the upgrade tests) with this tree's packaging files.
PG=${PG:-all}
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
OUT=${OUT:-$ROOT/dist}
SOURCE=${SOURCE:-$ROOT}
PROFILE=${PROFILE:-release}
TARGET=${CARGO_TARGET_DIR:-$SOURCE/target}
[ "$PROFILE" = release ] || [ "$PROFILE" = debug ] || die "PROFILE=$PROFILE: release or debug"
[ "$(uname -m)" = x86_64 ] || die "packages are built for amd64 only; build from source elsewhere (README)"
VERSION=$(crate_version "$SOURCE")
[ -n "$VERSION" ] || die "no version in $SOURCE/Cargo.toml"

ensure_deps "${PG_MAJORS[@]}"
command -v dpkg-deb >/dev/null || die "dpkg-deb is needed to build .deb packages (Debian's dpkg)"
if [ "$PROFILE" = release ] && ! command -v strip >/dev/null; then
    can_install || die "strip is needed to package a release build (Debian: binutils)"
    apt_install binutils
fi
mkdir -p "$OUT"
WORK=$(mktemp -d "${TMPDIR:-/tmp}/mastodon_ip_scrub-package.XXXXXX")
trap 'rm -rf "$WORK"' EXIT

# The Debian changelog's entries up to this version (a release's package lists no later ones).
changelog_until() {
    awk -v v="$1" '/^[a-z]/ { keep = keep || index($0, "(" v ")") > 0 } keep' "$ROOT/packaging/changelog"
}

for major in "${PG_MAJORS[@]}"; do
    [ -n "${USER_PG_CONFIG:-}" ] || use_pg "$major"
    name=postgresql-$PG_MAJOR-mastodon-ip-scrub
    base=${name}_${VERSION}_amd64
    say "Building $base ($PROFILE)"
    build=$WORK/build-$PG_MAJOR
    package_tree "$SOURCE" "$build" "$TARGET" "$PROFILE"

    # PGDG's layout, whatever layout the PostgreSQL we built against has.
    root=$WORK/$base
    lib=$root/usr/lib/postgresql/$PG_MAJOR/lib
    ext=$root/usr/share/postgresql/$PG_MAJOR/extension
    doc=$root/usr/share/doc/$name
    install -d "$lib" "$ext" "$doc"
    install -m 644 "$(find "$build" -name mastodon_ip_scrub.so)" "$lib/"
    find "$build" -path '*/extension/*' -type f -exec install -m 644 {} "$ext/" \;
    # Debug information is for developers; the tests' debug packages keep theirs.
    [ "$PROFILE" = release ] && strip --strip-unneeded "$lib/mastodon_ip_scrub.so"
    install -m 644 "$ROOT/packaging/copyright" "$doc/copyright"
    changelog_until "$VERSION" | gzip -9n >"$doc/changelog.gz"
    [ -s "$doc/changelog.gz" ] && zcat "$doc/changelog.gz" | grep -q "($VERSION)" ||
        die "packaging/changelog has no entry for $VERSION (RELEASING.md)"

    install -d "$root/DEBIAN"
    cat >"$root/DEBIAN/control" <<EOF
Package: $name
Version: $VERSION
Architecture: amd64
Maintainer: mastodon_ip_scrub maintainers <maintainers@mastodon-ip-scrub.invalid>
Depends: postgresql-$PG_MAJOR
Section: database
Priority: optional
Installed-Size: $(du -sk --exclude=DEBIAN "$root" | cut -f1)
Description: anonymizes client IP addresses in a Mastodon database (PostgreSQL $PG_MAJOR)
 A PostgreSQL extension: BEFORE INSERT/UPDATE triggers on Mastodon's IP columns
 store only a truncated address, whatever the application writes.
 After installing: CREATE EXTENSION mastodon_ip_scrub; after upgrading:
 ALTER EXTENSION mastodon_ip_scrub UPDATE; in each Mastodon database.
EOF
    (cd "$root" && find usr -type f -print0 | LC_ALL=C sort -z | xargs -0 md5sum >DEBIAN/md5sums)
    # xz for what is published; the tests' debug builds (60 MB) are only unpacked once.
    compression=(-Zxz)
    [ "$PROFILE" = release ] || compression=(-Zgzip -z1)
    dpkg-deb --root-owner-group "${compression[@]}" --build "$root" "$OUT/$base.deb" >/dev/null
    # The same files for systems without dpkg: unpack at / (or copy into pg_config's directories).
    tar --owner=0 --group=0 --numeric-owner --sort=name -C "$root" -czf "$OUT/$base.tar.gz" usr
    echo "$OUT/$base.deb"
    echo "$OUT/$base.tar.gz"
done
(cd "$OUT" && sha256sum -- *.deb *.tar.gz >SHA256SUMS)
say "Packages and SHA256SUMS in $OUT"

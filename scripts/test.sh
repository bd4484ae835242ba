#!/usr/bin/env bash
# Runs every test: the prerequisite check itself and the released SQL scripts' checksums;
# formatting and lints, the pure core's unit, property and doc-example tests (core/, plain cargo
# test), the in-database suite (cargo pgrx test), the pg_regress suite against a throwaway cluster, the backfill-under-load
# check (pgbench writers beside backfill), dump/restore round trips, upgrades in place from every
# release, and the packages (installed, upgraded and removed with apt on Debian's PostgreSQL).
# Installs whatever is missing first.
#   PG=<major> picks the PostgreSQL major (default 15), PG="14 18" several, PG=all every supported one;
#   PG_CONFIG=/path/to/pg_config tests against a PostgreSQL of your own.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$ROOT"

TEST_TOOLS=1 ensure_deps "${PG_MAJORS[@]}"

say "The scripts' prerequisite check"
bash pgrx-tests/live/prerequisites.sh
say "Released SQL scripts are unchanged (sql/released.sha256)"
(cd sql && sha256sum --check --strict released.sha256)

say "cargo fmt"
cargo fmt --all -- --check

say "The pure core (core/): lints, unit, property and doc-example tests, no PostgreSQL"
cargo clippy -p mastodon_ip_scrub_core --all-targets -- -D warnings
cargo test -p mastodon_ip_scrub_core

WORK=$(mktemp -d "${TMPDIR:-/tmp}/mastodon_ip_scrub-test.XXXXXX")
trap 'rm -rf "$WORK"; cluster_stop' EXIT
chmod 755 "$WORK"
runas=$(id -un)
if [ "$(id -u)" = 0 ]; then runas=postgres; chown postgres:postgres "$WORK"; fi

# The whole suite against one major, selected with use_pg.
suite() {
    # The live scripts source lib.sh themselves: they must pick the same PostgreSQL.
    export PG=$PG_MAJOR

    say "cargo clippy (pg$PG_MAJOR)"
    cargo clippy --all-targets --no-default-features --features "pg$PG_MAJOR pg_test" -- -D warnings

    say "Unit and in-database tests (cargo pgrx test pg$PG_MAJOR)"
    cargo pgrx test "pg$PG_MAJOR" --runas "$runas" --pgdata "$WORK/pgrx-$PG_MAJOR"

    # pgrx test installed a build with the test functions in it; the regression suite needs the real one.
    install_extension debug

    say "Regression suite (pg_regress, pgrx-tests/regress) on PostgreSQL $PG_MAJOR"
    cluster_start regress
    local out="${CARGO_TARGET_DIR:-$ROOT/target}/regress-pg$PG_MAJOR"
    rm -rf "$out" && mkdir -p "$out"
    if ! (cd "$ROOT/pgrx-tests/regress" &&
        "$($PG_CONFIG --pkglibdir)/pgxs/src/test/regress/pg_regress" \
            --bindir="$PG_BIN" --inputdir=. --outputdir="$out" --dbname=mastodon_production \
            --schedule=schedule); then
        cat "$out/regression.diffs" 2>/dev/null || true
        die "regression suite failed on PostgreSQL $PG_MAJOR"
    fi
    cluster_stop

    say "backfill() killed and resumed, and beside live application writes (PostgreSQL $PG_MAJOR)"
    bash pgrx-tests/live/backfill_under_load.sh
    say "pg_dump and restore, custom and plain, full and schema-only (PostgreSQL $PG_MAJOR)"
    bash pgrx-tests/live/dump_restore.sh
    say "A Rails client directly and through PgBouncer; settings through the pool (PostgreSQL $PG_MAJOR)"
    bash pgrx-tests/live/pgbouncer_rails.sh
    say "A hot standby: replay, reads, refusals, promotion (PostgreSQL $PG_MAJOR)"
    bash pgrx-tests/live/standby.sh
    say "Logical replication, to and from servers with and without the extension (PostgreSQL $PG_MAJOR)"
    bash pgrx-tests/live/logical.sh
    say "Upgrade in place from every release, beside live writers (PostgreSQL $PG_MAJOR)"
    bash pgrx-tests/live/upgrade.sh
    say "Packages: contents; on Debian's PostgreSQL installed, upgraded and removed (PostgreSQL $PG_MAJOR)"
    bash pgrx-tests/live/package.sh
    say "All tests passed on PostgreSQL $PG_MAJOR"
}

for major in "${PG_MAJORS[@]}"; do
    [ -n "${USER_PG_CONFIG:-}" ] || use_pg "$major"
    suite
done
# pg_upgrade from the oldest supported major to the newest, when this run built both.
oldest=${SUPPORTED_MAJORS[0]} newest=${SUPPORTED_MAJORS[-1]}
if [[ " ${PG_MAJORS[*]} " == *" $oldest "* && " ${PG_MAJORS[*]} " == *" $newest "* ]]; then
    say "pg_upgrade from PostgreSQL $oldest to $newest"
    OLD_PG=$oldest NEW_PG=$newest bash pgrx-tests/live/pg_upgrade.sh
fi
[ ${#PG_MAJORS[@]} -eq 1 ] || say "All tests passed on PostgreSQL ${PG_MAJORS[*]}"

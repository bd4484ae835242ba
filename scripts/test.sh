#!/usr/bin/env bash
# Runs every test: formatting and lints, the pure-Rust unit and property tests together with the
# in-database suite (cargo pgrx test), the pg_regress suite against a throwaway cluster, and the
# backfill-under-load check (pgbench writers beside backfill) and dump/restore round trips.
# Installs whatever is missing first. PG=<major> picks the PostgreSQL major (default 15).
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$ROOT"

ensure_deps

say "cargo fmt and clippy"
cargo fmt --all -- --check
cargo clippy --all-targets --no-default-features --features "pg$PG_MAJOR pg_test" -- -D warnings

say "Unit, property and in-database tests (cargo pgrx test pg$PG_MAJOR)"
PGRX_TEST_DIR=$(mktemp -d "${TMPDIR:-/tmp}/mastodon_ip_scrub-pgrx.XXXXXX")
trap 'rm -rf "$PGRX_TEST_DIR"; cluster_stop' EXIT
chmod 755 "$PGRX_TEST_DIR"
runas=$(id -un)
if [ "$(id -u)" = 0 ]; then runas=postgres; chown postgres:postgres "$PGRX_TEST_DIR"; fi
cargo pgrx test "pg$PG_MAJOR" --runas "$runas" --pgdata "$PGRX_TEST_DIR/data"

# pgrx test installed a build with the test functions in it; the regression suite needs the real one.
install_extension debug

say "Regression suite (pg_regress, pgrx-tests/regress)"
cluster_start regress
REGRESS_OUT="${CARGO_TARGET_DIR:-$ROOT/target}/regress"
rm -rf "$REGRESS_OUT" && mkdir -p "$REGRESS_OUT"
cd "$ROOT/pgrx-tests/regress"
if ! "$($PG_CONFIG --pkglibdir)/pgxs/src/test/regress/pg_regress" \
    --bindir="$PG_BIN" --inputdir=. --outputdir="$REGRESS_OUT" --dbname=mastodon_production \
    --schedule=schedule; then
    cat "$REGRESS_OUT/regression.diffs" 2>/dev/null || true
    die "regression suite failed"
fi

say "backfill() killed and resumed, and beside live application writes (pgrx-tests/live)"
cd "$ROOT"
bash pgrx-tests/live/backfill_under_load.sh
say "pg_dump and restore, custom and plain, full and schema-only (pgrx-tests/live)"
bash pgrx-tests/live/dump_restore.sh
say "All tests passed"

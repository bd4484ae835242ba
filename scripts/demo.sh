#!/usr/bin/env bash
# Sets up everything on a fresh Debian/Ubuntu machine, then shows the extension at work on a
# throwaway PostgreSQL with a Mastodon-shaped database. KEEP=1 leaves that server running.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

ensure_deps
install_extension release

say "Starting a throwaway PostgreSQL $PG_MAJOR"
cluster_start demo
[ "${KEEP:-0}" = 1 ] || trap cluster_stop EXIT

say "Demo (scripts/demo.sql)"
psql_run -e -f "$ROOT/scripts/demo.sql" 2>&1

if [ "${KEEP:-0}" = 1 ]; then
    say "The server keeps running. Connect with:"
    echo "  psql -h $PGHOST -p $PGPORT -U postgres mastodon_production"
    prefix=""
    [ "$(id -u)" = 0 ] && prefix="runuser -u postgres -- "
    echo "Stop it with:"
    echo "  $prefix$PG_BIN/pg_ctl -D $CLUSTER_DIR/data stop"
fi

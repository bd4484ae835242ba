#!/usr/bin/env bash
# Builds the extension (release profile) and installs it into a PostgreSQL of your own: the one
# PG_CONFIG=/path/to/pg_config names, else PostgreSQL 15 (or PG=<major>) as the other scripts find
# it. Installs whatever the build needs first (Debian and Ubuntu; elsewhere it names it).
# Then, in the Mastodon database: CREATE EXTENSION mastodon_ip_scrub (or, after an upgrade,
# ALTER EXTENSION mastodon_ip_scrub UPDATE).
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
ensure_deps
install_extension release
say "Installed into $("$PG_CONFIG" --pkglibdir) and $("$PG_CONFIG" --sharedir)/extension"

#!/usr/bin/env bash
# Bulk INSERT of ROWS (default 1,000,000) login_activities-shaped rows into three identical tables:
# no trigger, the extension's trigger, and an equivalent PL/pgSQL trigger (network/set_masklen).
# Rounds are interleaved (the case order rotates each round); the median of ROUNDS (default 5)
# is reported with its ratio to the no-trigger baseline from the same run.
#   bench/bulk_insert.sh            ROWS=200000 ROUNDS=3 bench/bulk_insert.sh
source "$(dirname "${BASH_SOURCE[0]}")/../scripts/lib.sh"
ROWS=${ROWS:-1000000}
ROUNDS=${ROUNDS:-5}

ensure_deps
install_extension release
say "Starting a throwaway PostgreSQL $PG_MAJOR"
cluster_start bench -c shared_buffers=1GB -c max_wal_size=16GB -c checkpoint_timeout=1h \
    -c synchronous_commit=off
trap cluster_stop EXIT

say "Preparing $ROWS source rows"
psql_run <<SQL
CREATE EXTENSION mastodon_ip_scrub;
CREATE TABLE src AS
SELECT i::bigint AS id, (i % 50000 + 1)::bigint AS user_id, 'password'::varchar AS authentication_method,
       NULL::varchar AS provider, i % 10 <> 0 AS success, NULL::varchar AS failure_reason,
       CASE WHEN i % 4 = 0 THEN '2001:db8::'::inet + i::bigint * 65537 * 65536
            ELSE '0.0.0.0'::inet + (i::bigint * 2654435761 % 4294967296) END AS ip,
       'Mozilla/5.0 (X11; Linux x86_64; rv:145.0) Gecko/20100101 Firefox/145.0'::varchar AS user_agent,
       now()::timestamp - i * interval '1 second' AS created_at
  FROM generate_series(1, $ROWS) AS i;
VACUUM ANALYZE src;

CREATE FUNCTION plpgsql_scrub() RETURNS trigger LANGUAGE plpgsql AS \$\$
BEGIN
    IF NEW.ip IS NOT NULL THEN
        IF family(NEW.ip) = 4 THEN
            NEW.ip := set_masklen(network(set_masklen(NEW.ip, 24)), 32);
        ELSE
            NEW.ip := set_masklen(network(set_masklen(NEW.ip, 48)), 128);
        END IF;
    END IF;
    RETURN NEW;
END
\$\$;

DO \$\$
DECLARE t text;
BEGIN
    FOREACH t IN ARRAY ARRAY['la_none', 'la_ours', 'la_plpgsql'] LOOP
        EXECUTE format('CREATE TABLE %I (
            id bigserial PRIMARY KEY, user_id bigint NOT NULL, authentication_method varchar,
            provider varchar, success boolean, failure_reason varchar, ip inet, user_agent varchar,
            created_at timestamp)', t);
        EXECUTE format('CREATE INDEX ON %I (user_id)', t);
    END LOOP;
END
\$\$;
SELECT mastodon_ip_scrub.unprotect(table_name::regclass, column_name)
  FROM mastodon_ip_scrub.protected_columns;
SELECT mastodon_ip_scrub.protect('la_ours', 'ip');
CREATE TRIGGER scrub BEFORE INSERT OR UPDATE ON la_plpgsql FOR EACH ROW EXECUTE FUNCTION plpgsql_scrub();

CREATE FUNCTION timed_insert(tbl regclass) RETURNS float8 LANGUAGE plpgsql AS \$\$
DECLARE t0 timestamptz;
BEGIN
    t0 := clock_timestamp();
    EXECUTE format('INSERT INTO %s SELECT * FROM src', tbl);
    RETURN extract(epoch FROM clock_timestamp() - t0);
END
\$\$;
SQL

cases=(la_none la_ours la_plpgsql)
declare -A times
for ((round = 0; round < ROUNDS; round++)); do
    for ((k = 0; k < ${#cases[@]}; k++)); do
        c=${cases[(k + round) % ${#cases[@]}]}
        psql_run -c "TRUNCATE $c" -c CHECKPOINT
        t=$(psql_run -At -c "SELECT timed_insert('$c')")
        times[$c]+="$t "
        printf '  round %d  %-11s %8.3f s\n' $((round + 1)) "$c" "$t"
    done
done

# Every stored address in la_ours must be scrubbed: a benchmark of a broken trigger proves nothing.
psql_run -At -c "SELECT count(*) FROM la_ours WHERE ip IS DISTINCT FROM mastodon_ip_scrub.truncate(ip)" |
    grep -qx 0 || die "la_ours holds unscrubbed addresses"

median() { tr ' ' '\n' | grep . | sort -g | awk '{a[NR]=$1} END {print (NR % 2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}'; }
base=$(echo "${times[la_none]}" | median)
say "Bulk INSERT of $ROWS rows, PostgreSQL $PG_MAJOR, median of $ROUNDS rounds"
printf '| case | median seconds | vs. no trigger |\n|---|---|---|\n'
for c in "${cases[@]}"; do
    m=$(echo "${times[$c]}" | median)
    awk -v c="$c" -v m="$m" -v b="$base" 'BEGIN { printf "| %s | %.3f | %.3fx |\n", c, m, m / b }'
done

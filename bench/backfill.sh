#!/usr/bin/env bash
# backfill() against the one-statement UPDATE an admin would otherwise run by hand, on identical
# copies of a ROWS-row (default 1,000,000) session_activations-shaped table with Mastodon's indexes,
# every row holding a full address (3/4 IPv4, 1/4 IPv6):
#   plain:    UPDATE t SET ip = <network/set_masklen expression>   (one transaction, no trigger)
#   backfill: CALL mastodon_ip_scrub.backfill()                    (batches of 10,000, COMMIT each,
#             the scrub trigger on the table, the exact count of rows to do included)
# Each round builds both copies, then CHECKPOINTs before timing each from the client; which one
# runs first alternates between rounds. Reported: the median
# over ROUNDS (default 5) of each time, and of backfill's rate as a fraction of plain's rate.
#   bench/backfill.sh        or, quicker:   ROWS=200000 ROUNDS=3 bench/backfill.sh
source "$(dirname "${BASH_SOURCE[0]}")/../scripts/lib.sh"
ROWS=${ROWS:-1000000}
ROUNDS=${ROUNDS:-5}

ensure_deps
install_extension release
say "Starting a throwaway PostgreSQL $PG_MAJOR"
cluster_start bench -c max_wal_size=16GB -c checkpoint_timeout=1h -c autovacuum=off
trap cluster_stop EXIT

say "Preparing $ROWS session_activations-shaped rows"
psql_run -v rows="$ROWS" <<'SQL' >/dev/null
CREATE EXTENSION mastodon_ip_scrub;
CREATE TABLE src AS
SELECT i::bigint AS id, md5(i::text) AS session_id,
       now()::timestamp - i * interval '1 minute' AS created_at, now()::timestamp AS updated_at,
       'Mozilla/5.0 (X11; Linux x86_64; rv:145.0) Gecko/20100101 Firefox/145.0'::varchar AS user_agent,
       CASE WHEN i % 4 = 0 THEN '2001:db8::'::inet + i::bigint * 65537 * 65536
            ELSE '0.0.0.0'::inet + (i::bigint * 2654435761 % 4294967296) END AS ip,
       NULL::bigint AS access_token_id, (i % 50000 + 1)::bigint AS user_id, NULL::bigint AS web_push_subscription_id
  FROM generate_series(1, :rows) AS i;
-- A copy of src as session_activations, with Mastodon's indexes.
CREATE PROCEDURE fresh_copy(name text) LANGUAGE plpgsql AS $$
BEGIN
    EXECUTE format('DROP TABLE IF EXISTS %I', name);
    EXECUTE format('CREATE TABLE %I (LIKE src)', name);
    EXECUTE format('INSERT INTO %I SELECT * FROM src', name);
    EXECUTE format('ALTER TABLE %I ADD PRIMARY KEY (id)', name);
    EXECUTE format('CREATE UNIQUE INDEX ON %I (session_id)', name);
    EXECUTE format('CREATE INDEX ON %I (user_id)', name);
END
$$;
SQL

now_s() { date +%s.%N; }
plain_times=() backfill_times=() ratios=()
time_plain() {
    psql_run -c CHECKPOINT >/dev/null; sync
    t0=$(now_s)
    psql_run -c "UPDATE sa_plain SET ip = set_masklen(network(set_masklen(ip, CASE family(ip) WHEN 4 THEN 24 ELSE 48 END)),
                                                      CASE family(ip) WHEN 4 THEN 32 ELSE 128 END)" >/dev/null
    t1=$(now_s)
}
time_backfill() {
    psql_run -c CHECKPOINT >/dev/null; sync
    t2=$(now_s)
    psql_run -c "SET client_min_messages = warning" -c "CALL mastodon_ip_scrub.backfill()"
    t3=$(now_s)
}
for ((round = 1; round <= ROUNDS; round++)); do
    psql_run -c "CALL fresh_copy('sa_plain')" -c "CALL fresh_copy('sa_backfill')" \
        -c "VACUUM ANALYZE sa_plain" -c "VACUUM ANALYZE sa_backfill" \
        -c "SET client_min_messages = error" -c "SELECT mastodon_ip_scrub.protect('sa_backfill', 'ip')" >/dev/null
    # Which runs first alternates between rounds, so that effects of the order cancel out.
    if ((round % 2)); then time_plain; time_backfill; else time_backfill; time_plain; fi
    plain=$(awk -v a="$t0" -v b="$t1" 'BEGIN { print b - a }')
    backfill=$(awk -v a="$t2" -v b="$t3" 'BEGIN { print b - a }')
    plain_times+=("$plain") backfill_times+=("$backfill")
    ratios+=("$(awk -v p="$plain" -v b="$backfill" 'BEGIN { print p / b }')")
    printf '  round %d: plain UPDATE %.2f s, backfill %.2f s, backfill rate / plain rate %.3f\n' \
        "$round" "$plain" "$backfill" "${ratios[-1]}"
    # Both copies must now hold the same, fully scrubbed addresses.
    psql_run -At -c "SELECT count(*) FROM sa_plain p JOIN sa_backfill b USING (id) WHERE p.ip IS DISTINCT FROM b.ip" |
        grep -qx 0 || die "backfill and the plain UPDATE stored different addresses"
    psql_run -c "SELECT mastodon_ip_scrub.unprotect('sa_backfill', 'ip')" >/dev/null
done

median() { printf '%s\n' "$@" | sort -g | awk '{a[NR]=$1} END {print (NR % 2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}'; }
say "$ROWS rows, PostgreSQL $PG_MAJOR, median of $ROUNDS rounds"
printf '| method | seconds | rows/s | rate vs plain UPDATE |\n|---|---|---|---|\n'
p=$(median "${plain_times[@]}") b=$(median "${backfill_times[@]}") r=$(median "${ratios[@]}")
printf '| plain UPDATE (one statement) | %.2f | %.0f | 1.000x |\n' "$p" "$(awk -v n="$ROWS" -v t="$p" 'BEGIN { print n / t }')"
printf '| CALL backfill() | %.2f | %.0f | %.3fx |\n' "$b" "$(awk -v n="$ROWS" -v t="$b" 'BEGIN { print n / t }')" "$r"

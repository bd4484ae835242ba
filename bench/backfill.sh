#!/usr/bin/env bash
# backfill() against the one-statement UPDATE an admin would otherwise run by hand, on identical
# copies of a ROWS-row (default 1,000,000) session_activations-shaped table with Mastodon's indexes,
# every row holding a full address (3/4 IPv4, 1/4 IPv6):
#   plain:    UPDATE t SET ip = <network/set_masklen expression>   (one transaction, no trigger)
#   backfill: CALL mastodon_ip_scrub.backfill()                    (batches of 10,000, COMMIT each,
#             the scrub trigger on the table, the estimate of rows to do included)
# Each round builds both copies; each is timed in its own session after a CHECKPOINT, by wall clock
# and by the backend's CPU time (wall time on a shared VM varies by 15% between identical runs);
# which runs first alternates between rounds. Reported: medians over ROUNDS (default 5) of the
# times, and of backfill's rate as a fraction of plain's in the same round.
#   bench/backfill.sh        or, quicker:   ROWS=200000 ROUNDS=3 bench/backfill.sh
source "$(dirname "${BASH_SOURCE[0]}")/../scripts/lib.sh"
ROWS=${ROWS:-1000000}
ROUNDS=${ROUNDS:-5}

bench_server -c autovacuum=off -c shared_buffers="${SHARED_BUFFERS:-128MB}"

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

# Runs one statement in a fresh session after a CHECKPOINT; prints its wall time, measured by the
# client, and the CPU time of the backend that ran it (from /proc/self/schedstat), in seconds.
timed() {
    psql_run -c CHECKPOINT >/dev/null
    sync
    psql_run -At <<SQL | tail -1
SET client_min_messages = warning;
SELECT clock_timestamp() AS t0, split_part(pg_read_file('/proc/self/schedstat'), ' ', 1)::bigint AS c0 \gset
$1;
SELECT extract(epoch FROM clock_timestamp() - :'t0') || ' ' ||
       (split_part(pg_read_file('/proc/self/schedstat'), ' ', 1)::bigint - :c0) / 1e9;
SQL
}
PLAIN="UPDATE sa_plain SET ip = set_masklen(network(set_masklen(ip, CASE family(ip) WHEN 4 THEN 24 ELSE 48 END)),
                                          CASE family(ip) WHEN 4 THEN 32 ELSE 128 END)"
BACKFILL="CALL mastodon_ip_scrub.backfill()"
declare -a plain_wall backfill_wall wall_ratio plain_cpu backfill_cpu cpu_ratio
for ((round = 1; round <= ROUNDS; round++)); do
    psql_run -c "CALL fresh_copy('sa_plain')" -c "CALL fresh_copy('sa_backfill')" \
        -c "VACUUM ANALYZE sa_plain" -c "VACUUM ANALYZE sa_backfill" \
        -c "SET client_min_messages = error" -c "SELECT mastodon_ip_scrub.protect('sa_backfill', 'ip')" >/dev/null
    # Which runs first alternates between rounds, so that effects of the order cancel out.
    if ((round % 2)); then
        read -r pw pc <<<"$(timed "$PLAIN")"; read -r bw bc <<<"$(timed "$BACKFILL")"
    else
        read -r bw bc <<<"$(timed "$BACKFILL")"; read -r pw pc <<<"$(timed "$PLAIN")"
    fi
    plain_wall+=("$pw") backfill_wall+=("$bw") plain_cpu+=("$pc") backfill_cpu+=("$bc")
    wall_ratio+=("$(awk -v p="$pw" -v b="$bw" 'BEGIN { print p / b }')")
    cpu_ratio+=("$(awk -v p="$pc" -v b="$bc" 'BEGIN { print p / b }')")
    printf '  round %d: plain UPDATE %.2f s (cpu %.2f s), backfill %.2f s (cpu %.2f s); backfill rate / plain rate %.3f (cpu %.3f)\n' \
        "$round" "$pw" "$pc" "$bw" "$bc" "${wall_ratio[-1]}" "${cpu_ratio[-1]}"
    # Both copies must now hold the same, fully scrubbed addresses.
    psql_run -At -c "SELECT count(*) FROM sa_plain p JOIN sa_backfill b USING (id) WHERE p.ip IS DISTINCT FROM b.ip" |
        grep -qx 0 || die "backfill and the plain UPDATE stored different addresses"
    psql_run -c "SELECT mastodon_ip_scrub.unprotect('sa_backfill', 'ip')" >/dev/null
done

median() { printf '%s\n' "$@" | sort -g | awk '{a[NR]=$1} END {print (NR % 2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}'; }
say "$ROWS rows, PostgreSQL $PG_MAJOR, median of $ROUNDS rounds"
printf '| method | wall s | rows/s | rate vs plain UPDATE | backend CPU s | CPU rate vs plain |\n|---|---|---|---|---|---|\n'
pw=$(median "${plain_wall[@]}") bw=$(median "${backfill_wall[@]}")
printf '| plain UPDATE (one statement) | %.2f | %.0f | 1.000x | %.2f | 1.000x |\n' \
    "$pw" "$(awk -v n="$ROWS" -v t="$pw" 'BEGIN { print n / t }')" "$(median "${plain_cpu[@]}")"
printf '| CALL backfill() | %.2f | %.0f | %.3fx | %.2f | %.3fx |\n' \
    "$bw" "$(awk -v n="$ROWS" -v t="$bw" 'BEGIN { print n / t }')" "$(median "${wall_ratio[@]}")" \
    "$(median "${backfill_cpu[@]}")" "$(median "${cpu_ratio[@]}")"

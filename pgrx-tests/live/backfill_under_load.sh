#!/usr/bin/env bash
# backfill() on a Mastodon-shaped database while the application writes, and after being killed:
#  1. a backfill whose backend is terminated mid-way leaves a consistent half, and a new CALL
#     finishes the rest; a further CALL rewrites no row;
#  2. a backfill holds row locks for one batch at a time: while it runs, rows its earlier batches
#     scrubbed can be locked at once (FOR UPDATE NOWAIT);
#  3. a backfill running beside Mastodon-like writers (per-request session updates, two-row
#     transactions locking in reverse order, sign-ins) makes none of them fail, loses none of
#     their updates to other columns, and leaves no full address behind.
# Dumps and restores are checked by dump_restore.sh.
# Needs the extension installed (scripts/test.sh does that). Exits non-zero on any failure.
source "$(dirname "${BASH_SOURCE[0]}")/../../scripts/lib.sh"
SESSIONS=${SESSIONS:-200000}
WORK=$(mktemp -d "${TMPDIR:-/tmp}/mastodon_ip_scrub-live.XXXXXX")
chmod 755 "$WORK"
trap 'cluster_stop; rm -rf "$WORK"' EXIT
cluster_start live
export PGDATABASE=mastodon_production
"$PG_BIN/createdb" mastodon_production
q() { psql_run -tA -c "$1"; }

say "Mastodon-shaped database with $SESSIONS sessions holding full addresses"
psql_run -f "$ROOT/pgrx-tests/fixtures/mastodon_schema.sql"
psql_run <<SQL
INSERT INTO accounts (id, username, created_at, updated_at) SELECT g, 'u' || g, now(), now() FROM generate_series(1, 2000) g;
INSERT INTO users (id, email, created_at, updated_at, account_id, sign_up_ip, settings)
     SELECT g, g || '@example.org', now(), now(), g, format('203.0.%s.%s', g % 256, g % 250 + 1)::inet, ''
       FROM generate_series(1, 2000) g;
INSERT INTO session_activations (session_id, user_agent, ip, user_id, created_at, updated_at)
     SELECT 's' || g, '', CASE WHEN g % 4 = 0 THEN format('2001:db8:%s:%s::%s', to_hex(g % 65536), to_hex(g % 999), to_hex(g % 65536))
                               ELSE format('198.%s.%s.%s', g % 200, g % 256, g % 250 + 1) END::inet,
            g % 2000 + 1, now(), now()
       FROM generate_series(1, $SESSIONS) g;
CREATE EXTENSION mastodon_ip_scrub;
SQL
FULL="SELECT count(*) FROM session_activations WHERE ip <> set_masklen(network(set_masklen(ip,
        CASE family(ip) WHEN 4 THEN 24 ELSE 48 END)), CASE family(ip) WHEN 4 THEN 32 ELSE 128 END)"
check "full addresses before backfill" "$SESSIONS" "$(q "$FULL")"

say "1. Killed mid-way, resumed, then idempotent"
psql_run -c "CALL mastodon_ip_scrub.backfill(batch_size => 2000)" >"$WORK/killed.log" 2>&1 &
backfill=$!
for _ in $(seq 1 600); do
    [ "$(q "$FULL")" -lt "$((SESSIONS * 3 / 4))" ] && break
    sleep 0.1
done
q "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE query LIKE 'CALL mastodon_ip_scrub.backfill%'" >/dev/null
wait "$backfill" && { echo "FAILED: the backfill was not interrupted" >&2; exit 1; }
left=$(q "$FULL")
echo "terminated with $left of $SESSIONS rows still full"
[ "$left" -gt 0 ] && [ "$left" -lt "$SESSIONS" ] || { echo "FAILED: expected a partial backfill" >&2; exit 1; }
psql_run -c "CALL mastodon_ip_scrub.backfill(batch_size => 2000)"
check "full addresses after the resumed backfill" 0 "$(q "$FULL")"
check "unscrubbed rows in status(exact)" 0 "$(q "SELECT sum(unscrubbed_rows) FROM mastodon_ip_scrub.status(exact => true)")"
q "CREATE TABLE versions AS SELECT id, xmin::text AS row_xmin, ctid::text AS row_ctid FROM session_activations" >/dev/null
psql_run -c "CALL mastodon_ip_scrub.backfill()"
check "row versions written by a second backfill" 0 "$(q "SELECT count(*) FROM versions v JOIN session_activations s USING (id)
      WHERE (v.row_xmin, v.row_ctid) IS DISTINCT FROM (s.xmin::text, s.ctid::text)")"

# Full addresses again, as before installing.
unscrub() {
    psql_run -q <<SQL
SET mastodon_ip_scrub.enabled = off;
UPDATE session_activations SET ip = CASE WHEN id % 4 = 0 THEN format('2001:db8:%s:%s::%s', to_hex(id % 65536), to_hex(id % 999), to_hex(id % 65535 + 1))
                                         ELSE format('198.%s.%s.%s', id % 200, id % 256, id % 250 + 1) END::inet;
UPDATE users SET sign_up_ip = format('203.0.%s.%s', id % 256, id % 250 + 1)::inet;
SQL
    psql_run -q -c "VACUUM session_activations" -c "VACUUM users"
}

say "2. Row locks held for one batch at a time"
unscrub
psql_run -c "CALL mastodon_ip_scrub.backfill(batch_size => 2000)" >"$WORK/locks.log" 2>&1 &
backfill=$!
# While backfill runs, the application locks rows that earlier batches scrubbed and committed, with
# NOWAIT: an error if backfill still held one of them. Each sample: rows locked, full rows left.
SCRUBBED=${FULL/ip <> /ip = }
SCRUBBED=${SCRUBBED/SELECT count(\*)/SELECT 1}
midway=0 samples=0
while kill -0 "$backfill" 2>/dev/null; do
    sample=$(q "WITH locked AS ($SCRUBBED ORDER BY random() LIMIT 200 FOR UPDATE NOWAIT)
                SELECT (SELECT count(*) FROM locked), ($FULL)") ||
        { echo "FAILED: a row that an earlier batch scrubbed was still locked" >&2; exit 1; }
    IFS='|' read -r locked full <<<"$sample"
    samples=$((samples + 1))
    if [ "${locked:-0}" -gt 0 ] && [ "${full:-0}" -gt 0 ]; then midway=$((midway + 1)); fi
done
wait "$backfill" || { cat "$WORK/locks.log"; echo "FAILED: the backfill failed" >&2; exit 1; }
echo "$samples samples during the backfill; in $midway of them, with full rows still left, rows of committed batches were locked with NOWAIT"
[ "$midway" -gt 0 ] || { echo "FAILED: no sample locked committed rows while the backfill was mid-way" >&2; exit 1; }
check "full addresses after the backfill" 0 "$(q "$FULL")"

say "3. Backfill beside live application writes"
# Full addresses again; then the writers start and backfill runs among them.
unscrub
cat >"$WORK/request.sql" <<SQL
\set id random(1, $SESSIONS)
\set a random(1, 254)
UPDATE session_activations SET ip = ('198.51.100.' || :a)::inet, updated_at = now() WHERE id = :id;
SQL
cat >"$WORK/two_rows.sql" <<SQL
\set lo random(1, $SESSIONS - 100)
\set hi :lo + random(1, 100)
BEGIN;
UPDATE session_activations SET user_agent = user_agent || 'z' WHERE id = :hi;
UPDATE session_activations SET user_agent = user_agent || 'z' WHERE id = :lo;
COMMIT;
SQL
cat >"$WORK/sign_in.sql" <<SQL
\set uid random(1, 2000)
\set a random(1, 254)
BEGIN;
UPDATE users SET settings = settings || 'z', current_sign_in_at = now() WHERE id = :uid;
INSERT INTO login_activities (user_id, authentication_method, success, ip, created_at)
     VALUES (:uid, 'password', true, ('192.0.2.' || :a)::inet, now());
COMMIT;
SQL
DURATION=${DURATION:-15}
for s in request two_rows sign_in; do
    "$PG_BIN/pgbench" -n -c 2 -j 1 -T "$DURATION" -f "$WORK/$s.sql" >"$WORK/$s.out" 2>&1 &
    echo $! >"$WORK/$s.pid"
done
sleep 1
start=$(date +%s)
psql_run -c "CALL mastodon_ip_scrub.backfill(batch_size => 1000)" 2>&1 | tee "$WORK/live.log"
took=$(( $(date +%s) - start ))
for s in request two_rows sign_in; do
    wait "$(cat "$WORK/$s.pid")" || { cat "$WORK/$s.out"; echo "FAILED: pgbench $s reported errors" >&2; exit 1; }
done
echo "backfill took ${took}s beside ${DURATION}s of writers"
[ "$took" -lt "$DURATION" ] || { echo "FAILED: backfill did not run entirely among the writers" >&2; exit 1; }
processed() { sed -n 's/^number of transactions actually processed: \([0-9]*\).*/\1/p' "$WORK/$1.out"; }
# pgbench 14 has no failed-transaction counter: an error there aborts the client, which it reports.
failed() {
    if grep -q '^number of failed transactions' "$WORK/$1.out"; then
        sed -n 's/^number of failed transactions: \([0-9]*\).*/\1/p' "$WORK/$1.out"
    else
        grep -c 'aborted in command' "$WORK/$1.out" || true
    fi
}
for s in request two_rows sign_in; do
    echo "$s: $(processed "$s") transactions, $(failed "$s") failed"
    check "failed $s transactions" 0 "$(failed "$s")"
done
check "user_agent characters appended (no lost update)" "$(( $(processed two_rows) * 2 ))" \
    "$(q "SELECT sum(length(user_agent)) FROM session_activations")"
check "users.settings characters appended (no lost update)" "$(processed sign_in)" "$(q "SELECT sum(length(settings)) FROM users")"
check "login_activities rows written" "$(processed sign_in)" "$(q "SELECT count(*) FROM login_activities")"
# Rows the writers held past backfill's retries would be reported and left for the next run.
if grep -q "left for the next run" "$WORK/live.log"; then psql_run -c "CALL mastodon_ip_scrub.backfill()"; fi
check "full addresses left" 0 "$(q "$FULL")"
check "unscrubbed rows in status(exact)" 0 "$(q "SELECT sum(unscrubbed_rows) FROM mastodon_ip_scrub.status(exact => true)")"

say "backfill under load: all checks passed"

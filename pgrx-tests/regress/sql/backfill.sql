-- Existing rows: what CREATE EXTENSION and protect() report, status(), and backfill().
-- CONTEXT lines name PL/pgSQL line numbers, which say nothing here.
\set SHOW_CONTEXT never
-- Rows written while scrubbing was off stand for an instance's years of history.
SET mastodon_ip_scrub.enabled = off;
INSERT INTO users (email, created_at, updated_at, account_id, sign_up_ip)
SELECT format('user%s@example.org', g), now(), now(), 1, format('203.0.113.%s', g)::inet
  FROM generate_series(10, 59) g;
INSERT INTO session_activations (session_id, user_agent, ip, user_id, created_at, updated_at)
SELECT format('s%s', g), 'Firefox', format('2001:db8:%s::%s', g, g)::inet, 1, now(), '2026-01-01'
  FROM generate_series(1, 30) g;
RESET mastodon_ip_scrub.enabled;

SELECT table_name, column_name, trigger_present, trigger_enabled, trigger_always, rows, unscrubbed_rows, counted, scrubbing, mode, ipv4_prefix, ipv6_prefix
  FROM mastodon_ip_scrub.status() ORDER BY table_name, column_name;

-- Protecting a column tells how many rows already hold full addresses, and what to run.
CREATE TABLE web_hits (id bigint, client inet);
INSERT INTO web_hits VALUES (1, '192.0.2.1'), (2, '192.0.2.2'), (3, NULL);
SELECT mastodon_ip_scrub.protect('web_hits', 'client');

-- A dry run reports and changes nothing.
CALL mastodon_ip_scrub.backfill(dry_run => true);
SELECT count(*) AS still_full FROM session_activations
 WHERE ip <> set_masklen(network(set_masklen(ip, CASE family(ip) WHEN 4 THEN 24 ELSE 48 END)),
                         CASE family(ip) WHEN 4 THEN 32 ELSE 128 END);

-- The real run, in batches of 4 rows; progress NOTICEs carry timings, so only the result is shown.
CREATE TABLE before_backfill AS SELECT id, session_id, user_agent, updated_at FROM session_activations;
SET client_min_messages = warning;
CALL mastodon_ip_scrub.backfill(batch_size => 4);
RESET client_min_messages;
SELECT table_name, column_name, rows, unscrubbed_rows FROM mastodon_ip_scrub.status(exact => true) ORDER BY 1, 2;
SELECT ip FROM session_activations ORDER BY id LIMIT 3;
SELECT sign_up_ip FROM users WHERE email = 'user10@example.org';
SELECT id, client FROM web_hits ORDER BY id;
-- Nothing but the addresses changed.
SELECT count(*) AS other_columns_changed
  FROM before_backfill b JOIN session_activations s USING (id)
 WHERE (b.session_id, b.user_agent, b.updated_at) IS DISTINCT FROM (s.session_id, s.user_agent, s.updated_at);

-- A second run finds nothing and writes no row version.
CREATE TABLE versions AS SELECT id, xmin::text AS row_xmin, ctid::text AS row_ctid FROM session_activations;
CALL mastodon_ip_scrub.backfill();
SELECT count(*) AS rewritten FROM versions v JOIN session_activations s USING (id)
 WHERE (v.row_xmin, v.row_ctid) IS DISTINCT FROM (s.xmin::text, s.ctid::text);

-- Stricter settings make scrubbed rows pending again; backfill applies them.
SET mastodon_ip_scrub.ipv4_prefix = 16;
SELECT unscrubbed_rows FROM mastodon_ip_scrub.status() WHERE table_name = 'web_hits';
SET client_min_messages = warning;
CALL mastodon_ip_scrub.backfill();
RESET client_min_messages;
SELECT id, client FROM web_hits ORDER BY id;
RESET mastodon_ip_scrub.ipv4_prefix;

-- Most rows are rewritten on their own page (HOT updates, no new index entries): a table that was
-- only ever appended to, its pages full, grows by a fraction where one UPDATE would double it.
SET mastodon_ip_scrub.enabled = off;
CREATE TABLE sign_ins (id bigint PRIMARY KEY, agent text, ip inet);
INSERT INTO sign_ins SELECT g, repeat('Mozilla/5.0 ', 8), format('198.51.%s.%s', g % 256, g % 250 + 1)::inet
  FROM generate_series(1, 20000) g;
RESET mastodon_ip_scrub.enabled;
SET client_min_messages = warning;
SELECT mastodon_ip_scrub.protect('sign_ins', 'ip');
CREATE TABLE sizes AS SELECT pg_relation_size('sign_ins') AS table_before;
CALL mastodon_ip_scrub.backfill();
RESET client_min_messages;
SELECT count(*) FILTER (WHERE ip <> set_masklen(network(set_masklen(ip, 24)), 32)) AS still_full,
       pg_relation_size('sign_ins') < 1.25 * table_before AS table_grew_by_under_a_quarter
  FROM sign_ins, sizes GROUP BY table_before;
SELECT mastodon_ip_scrub.unprotect('sign_ins', 'ip');
DROP TABLE sign_ins, sizes;

-- Bad calls say what to do, and change nothing.
CALL mastodon_ip_scrub.backfill(batch_size => 0);
SET mastodon_ip_scrub.enabled = off;
CALL mastodon_ip_scrub.backfill();
RESET mastodon_ip_scrub.enabled;
SELECT mastodon_ip_scrub.unprotect('web_hits', 'client');
DROP TABLE web_hits, before_backfill, versions;

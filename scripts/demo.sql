-- The demo run by scripts/demo.sh on a throwaway cluster: a Mastodon database before and after
-- CREATE EXTENSION mastodon_ip_scrub, written to by Mastodon's own role with Mastodon's own SQL.
\set ON_ERROR_STOP 1
\pset footer off

\echo '--- A Mastodon database: role "mastodon" owns it and its tables, as after rails db:setup'
CREATE ROLE mastodon LOGIN;
CREATE DATABASE mastodon_production OWNER mastodon;
\c mastodon_production mastodon
\set ECHO none
\set QUIET 1
\ir ../pgrx-tests/fixtures/mastodon_schema.sql
\set QUIET 0
\set ECHO queries
INSERT INTO accounts (username, created_at, updated_at) VALUES ('alice', now(), now());
INSERT INTO users (email, created_at, updated_at, account_id, sign_up_ip)
     VALUES ('alice@example.org', now(), now(), currval('accounts_id_seq'), '203.0.113.77');
INSERT INTO ip_blocks (ip, severity, created_at, updated_at) VALUES ('198.51.100.0/24', 1, now(), now());

\echo
\echo '--- Before the extension: Mastodon stores the full address'
SELECT id, email, sign_up_ip FROM users;

\echo
\echo '--- A superuser installs the extension; it protects every Mastodon user-IP column at once'
\c mastodon_production postgres
CREATE EXTENSION mastodon_ip_scrub;
SELECT * FROM mastodon_ip_scrub.protected_columns ORDER BY table_name;
SHOW mastodon_ip_scrub.mode;
SHOW mastodon_ip_scrub.ipv4_prefix;
SHOW mastodon_ip_scrub.ipv6_prefix;

\echo
\echo '--- Mastodon (role mastodon) keeps writing full addresses; RETURNING shows what was stored'
\c mastodon_production mastodon
\echo 'Sign-up (web or API):'
INSERT INTO accounts (username, created_at, updated_at) VALUES ('bob', now(), now());
INSERT INTO users (email, created_at, updated_at, account_id, sign_up_ip)
     VALUES ('bob@example.org', now(), now(), currval('accounts_id_seq'), '2001:db8:4f1e:77:a1b2:c3d4:e5f6:1234')
  RETURNING email, '2001:db8:4f1e:77:a1b2:c3d4:e5f6:1234' AS written, sign_up_ip AS stored;
\echo 'Sign-in: a session and a login activity:'
INSERT INTO session_activations (session_id, user_agent, ip, user_id, created_at, updated_at)
     VALUES ('8f1c0d', 'Firefox/145.0', '::ffff:192.0.2.155', currval('users_id_seq'), now(), now())
  RETURNING session_id, '::ffff:192.0.2.155' AS written, ip AS stored;
INSERT INTO login_activities (user_id, authentication_method, success, ip, user_agent, created_at)
     VALUES (currval('users_id_seq'), 'password', true, '192.0.2.155', 'Firefox/145.0', now())
  RETURNING authentication_method, '192.0.2.155' AS written, ip AS stored;
\echo 'Session refresh from a new address, and API token use:'
UPDATE session_activations SET ip = '192.0.2.201', updated_at = now() WHERE session_id = '8f1c0d'
  RETURNING session_id, '192.0.2.201' AS written, ip AS stored;
INSERT INTO oauth_access_tokens (token, created_at, resource_owner_id) VALUES ('t0k3n', now(), currval('users_id_seq'));
UPDATE oauth_access_tokens SET last_used_at = now(), last_used_ip = '198.51.100.42' WHERE token = 't0k3n'
  RETURNING token, '198.51.100.42' AS written, last_used_ip AS stored;

\echo
\echo '--- Mastodon refreshes the session on a request from the same network: nothing is written'
SELECT id AS session FROM session_activations WHERE session_id = '8f1c0d' \gset
PREPARE devise_refresh(inet, bigint) AS UPDATE session_activations SET ip = $1, updated_at = now() WHERE id = $2;
\echo 'stored 192.0.2.0, request from 192.0.2.77 (UPDATE 0: no row version, no WAL):'
EXECUTE devise_refresh('192.0.2.77', :session);
\echo 'request from another network (UPDATE 1):'
EXECUTE devise_refresh('198.51.100.20', :session);
SELECT session_id, ip AS stored FROM session_activations WHERE id = :session;

\echo
\echo '--- What an admin now sees in Mastodon (the user_ips view behind admin IP search)'
SELECT user_id, ip FROM user_ips ORDER BY user_id, ip;
\echo 'Admin IP blocks are never touched:'
SELECT ip, severity FROM ip_blocks;

\echo
\set SHOW_CONTEXT never
\echo '--- The application role cannot switch it off (it owns the tables, but not the protection)'
\set ON_ERROR_STOP 0
SET mastodon_ip_scrub.enabled = off;
DROP TRIGGER zz_mastodon_ip_scrub ON session_activations;
\set ON_ERROR_STOP 1
ALTER TABLE session_activations DISABLE TRIGGER zz_mastodon_ip_scrub;

\echo
\echo '--- A Mastodon upgrade adds an IP column: protected in the same migration'
ALTER TABLE users ADD COLUMN last_sign_in_ip inet;
UPDATE users SET last_sign_in_ip = '198.51.100.23' WHERE email = 'bob@example.org'
  RETURNING '198.51.100.23' AS written, last_sign_in_ip AS stored;

\echo
\echo '--- An admin widens the prefix for the whole database (ALTER DATABASE ... SET)'
\c mastodon_production postgres
ALTER DATABASE mastodon_production SET mastodon_ip_scrub.ipv4_prefix = 16;
\c mastodon_production mastodon
INSERT INTO login_activities (user_id, authentication_method, success, ip, created_at)
     VALUES ((SELECT id FROM users WHERE email = 'bob@example.org'), 'password', false, '203.0.113.99', now())
  RETURNING '203.0.113.99' AS written, ip AS stored;

\echo
\echo '--- Rows written before CREATE EXTENSION (alice) still hold the full address; status() shows them'
\c mastodon_production postgres
ALTER DATABASE mastodon_production RESET mastodon_ip_scrub.ipv4_prefix;
\c mastodon_production postgres
SELECT id, email, sign_up_ip FROM users ORDER BY id;
SELECT table_name, column_name, trigger_enabled, rows, unscrubbed_rows, counted FROM mastodon_ip_scrub.status();
\echo 'backfill() scrubs them in short, committed batches:'
CALL mastodon_ip_scrub.backfill();
SELECT id, email, sign_up_ip FROM users ORDER BY id;
\echo 'audit() lists address columns nobody has decided about yet (none here; ip_blocks.ip is exempt):'
SELECT * FROM mastodon_ip_scrub.audit();
SELECT table_name, column_name, reason FROM mastodon_ip_scrub.exemption;

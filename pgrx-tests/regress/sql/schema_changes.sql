-- Mastodon's migrations and schema reloads, run by its own role: protection follows every change,
-- in the same transaction, with no superuser involved.
\set SHOW_CONTEXT never
CREATE VIEW protected AS
  SELECT table_name || '.' || column_name AS "column", column_present, trigger_enabled
    FROM mastodon_ip_scrub.protected_columns ORDER BY 1;
-- An admin protects a column of their own by name.
SET ROLE mastodon;
CREATE TABLE moderation_notes (id bigserial PRIMARY KEY, reporter_ip inet, body text);
RESET ROLE;
SELECT mastodon_ip_scrub.protect('moderation_notes', 'reporter_ip');

-- An upgrade adds an IP column Mastodon knows about: protected before the migration commits.
\c - mastodon
BEGIN;
ALTER TABLE users ADD COLUMN current_sign_in_ip inet;
INSERT INTO users (email, created_at, updated_at, account_id, current_sign_in_ip)
     VALUES ('dave@example.org', now(), now(), 1, '198.51.100.44') RETURNING current_sign_in_ip;
COMMIT;

-- Renaming a protected column keeps it protected under the new name.
ALTER TABLE moderation_notes RENAME COLUMN reporter_ip TO reporter_address;
INSERT INTO moderation_notes (reporter_address, body) VALUES ('203.0.113.201', 'spam') RETURNING reporter_address;
-- So does renaming or moving the table.
ALTER TABLE moderation_notes RENAME TO mod_notes;
INSERT INTO mod_notes (reporter_address, body) VALUES ('203.0.113.202', 'spam') RETURNING reporter_address;
-- Dropping a protected column needs no CASCADE and breaks nothing.
ALTER TABLE mod_notes DROP COLUMN reporter_address;
INSERT INTO mod_notes (body) VALUES ('no address any more') RETURNING body;
-- A protected column turned cidr (another address type) stays protected, and is counted by status().
ALTER TABLE users ALTER COLUMN current_sign_in_ip TYPE cidr USING network(current_sign_in_ip);
\c - postgres
SELECT * FROM protected;
SELECT table_name, column_name, data_type FROM mastodon_ip_scrub.audit() ORDER BY 1, 2;
SELECT column_name, rows, unscrubbed_rows FROM mastodon_ip_scrub.status() WHERE table_name = 'users' ORDER BY 1;
ALTER TABLE users DROP COLUMN current_sign_in_ip;
SELECT mastodon_ip_scrub.unprotect('users', 'current_sign_in_ip');
SELECT mastodon_ip_scrub.unprotect('mod_notes', 'reporter_address');
DROP TABLE mod_notes;
DELETE FROM users WHERE email = 'dave@example.org';

-- Replicas: by default the triggers are ENABLE ALWAYS, so a logical-replication subscriber and a
-- session_replication_role = replica session (pg_restore --disable-triggers, some loaders) scrub too.
SELECT max(id) AS last_id_before FROM login_activities \gset
SET session_replication_role = replica;
INSERT INTO login_activities (user_id, success, ip) VALUES (1, true, '192.0.2.55') RETURNING ip;
RESET session_replication_role;
-- protect(..., replicas => false) and protect_mastodon(replicas => false) choose ENABLE ORIGIN.
SELECT mastodon_ip_scrub.protect('login_activities', '{ip}', replicas => false);
SELECT tgenabled FROM pg_trigger WHERE tgrelid = 'login_activities'::regclass AND tgname = 'zz_mastodon_ip_scrub';
SET session_replication_role = replica;
INSERT INTO login_activities (user_id, success, ip) VALUES (1, true, '192.0.2.56') RETURNING ip;
RESET session_replication_role;
SELECT * FROM mastodon_ip_scrub.protect_mastodon(replicas => true) ORDER BY 1, 2;
SELECT tgrelid::regclass AS "table", tgenabled FROM pg_trigger WHERE tgname = 'zz_mastodon_ip_scrub' ORDER BY 1;
DELETE FROM login_activities WHERE id > :last_id_before;

-- CREATE EXTENSION before the tables (install showed the other order), in a fresh database: the
-- same columns end up protected.
\set main_db :DBNAME
CREATE DATABASE schema_reload OWNER mastodon;
\c schema_reload
CREATE EXTENSION mastodon_ip_scrub;
CREATE VIEW protected AS
  SELECT table_name || '.' || column_name AS "column", column_present, trigger_enabled
    FROM mastodon_ip_scrub.protected_columns ORDER BY 1;
\c - mastodon
\set ECHO none
\i ../fixtures/mastodon_schema.sql
\set ECHO all
CREATE TABLE moderation_notes (id bigserial PRIMARY KEY, reporter_ip inet, body text);
\c - postgres
SELECT mastodon_ip_scrub.protect('moderation_notes', 'reporter_ip');
SELECT * FROM protected;

-- `rails db:schema:load`: every table dropped (CASCADE, as Rails does) and created again in one
-- transaction. The known columns and the admin's own column are protected again before it commits.
\c - mastodon
BEGIN;
DROP TABLE accounts, users, session_activations, login_activities, oauth_access_tokens, ip_blocks,
           moderation_notes CASCADE;
\set ECHO none
\i ../fixtures/mastodon_schema.sql
\set ECHO all
CREATE TABLE moderation_notes (id bigserial PRIMARY KEY, reporter_ip inet, body text);
INSERT INTO accounts (username, created_at, updated_at) VALUES ('alice', now(), now());
INSERT INTO users (email, created_at, updated_at, account_id, sign_up_ip)
     VALUES ('alice@example.org', now(), now(), 1, '2001:db8:77:88::1') RETURNING sign_up_ip;
INSERT INTO moderation_notes (reporter_ip, body) VALUES ('203.0.113.200', 'spam') RETURNING reporter_ip;
COMMIT;
\c - postgres
SELECT * FROM protected;
\c :main_db
DROP DATABASE schema_reload;

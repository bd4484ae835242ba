-- Hostile role, class "DDL": commands that write or change column values without firing row
-- triggers cannot leave a full address in a protected column. Each is either followed, in the same
-- transaction and as the table's owner, by the scrubbing of the values it wrote, or refused with
-- an error naming the fix:
--   scrubbed: ALTER COLUMN ... TYPE ... USING, ADD COLUMN with a volatile default (both rewrite
--     the table), ATTACH PARTITION and INHERIT of a table holding rows, a table or column renamed
--     or moved to a protected name, CREATE TABLE AS / SELECT INTO under a protected name;
--   refused: ADD COLUMN with a constant default that is not scrubbed (PostgreSQL keeps it in the
--     catalog, where every existing row reads it), a generated column under a protected name
--     (computed after every trigger), a NOT NULL column of a type that holds no address.
\set SHOW_CONTEXT never
\c - mastodon
\set SHOW_CONTEXT never
CREATE SCHEMA ddl;
-- A protected table of the role's with one row, scrubbed as it was written.
CREATE FUNCTION ddl.fresh() RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    DROP TABLE IF EXISTS ddl.login_activities;
    CREATE TABLE ddl.login_activities (id int, ip inet, ip_text text, note text);
    INSERT INTO ddl.login_activities VALUES (1, '203.0.113.77', '198.51.100.77', 'before');
END $$;
-- How many values of the protected column hold more than the configured prefix (as text too).
CREATE FUNCTION ddl.full_addresses(tbl regclass, col name DEFAULT 'ip') RETURNS bigint LANGUAGE plpgsql AS $$
DECLARE n bigint;
BEGIN
    EXECUTE format('SELECT count(*) FROM %s WHERE mastodon_ip_scrub._pending(%I::text::inet)', tbl, col) INTO n;
    RETURN n;
END $$;
-- A default PostgreSQL folds into a constant (an inlined SQL function), and one it cannot.
CREATE FUNCTION ddl.client_address() RETURNS inet LANGUAGE sql VOLATILE AS $$ SELECT '203.0.113.99'::inet $$;
CREATE FUNCTION ddl.request_address() RETURNS inet LANGUAGE plpgsql VOLATILE AS $$ BEGIN RETURN '203.0.113.98'; END $$;

-- Every ALTER TABLE form that rewrites a protected column's values or gives it a default, on a
-- fresh table each time: what PostgreSQL does, and what the column holds afterwards.
CREATE FUNCTION pg_temp.try(command text) RETURNS text LANGUAGE plpgsql AS $$
DECLARE v_msg text;
BEGIN
    PERFORM ddl.fresh();
    BEGIN
        EXECUTE command;
    EXCEPTION WHEN OTHERS THEN
        GET STACKED DIAGNOSTICS v_msg = MESSAGE_TEXT;
        RETURN 'refused: ' || v_msg;
    END;
    RETURN format('done, %s full addresses', ddl.full_addresses('ddl.login_activities'));
END $$;
SELECT form, pg_temp.try(form) AS outcome FROM unnest(ARRAY[
    'ALTER TABLE ddl.login_activities ALTER COLUMN ip TYPE inet USING ''203.0.113.5''',
    'ALTER TABLE ddl.login_activities ALTER COLUMN ip TYPE inet USING ip_text::inet',
    'ALTER TABLE ddl.login_activities ALTER COLUMN ip TYPE inet USING ip + 1',
    'ALTER TABLE ddl.login_activities ALTER COLUMN ip TYPE cidr USING set_masklen(ip_text::inet, 32)',
    'ALTER TABLE ddl.login_activities ALTER COLUMN ip SET DATA TYPE inet USING ddl.client_address()',
    'ALTER TABLE ddl.login_activities ALTER COLUMN ip TYPE text USING ip_text',
    'ALTER TABLE ddl.login_activities DROP COLUMN ip, ADD COLUMN ip inet DEFAULT ''203.0.113.5''',
    'ALTER TABLE ddl.login_activities DROP COLUMN ip, ADD COLUMN ip inet DEFAULT ''203.0.113.0''',
    'ALTER TABLE ddl.login_activities DROP COLUMN ip, ADD COLUMN ip inet DEFAULT ddl.client_address()',
    'ALTER TABLE ddl.login_activities DROP COLUMN ip, ADD COLUMN ip inet DEFAULT ddl.request_address()',
    'ALTER TABLE ddl.login_activities DROP COLUMN ip, ADD COLUMN ip inet GENERATED ALWAYS AS (ip_text::inet) STORED',
    'ALTER TABLE ddl.login_activities DROP COLUMN ip, ADD COLUMN ip text NOT NULL DEFAULT ''203.0.113.5''',
    'ALTER TABLE ddl.login_activities ALTER COLUMN ip TYPE varchar USING ip_text, ALTER COLUMN ip SET NOT NULL',
    'ALTER TABLE ddl.login_activities ALTER COLUMN ip SET DEFAULT ''203.0.113.5''',
    'ALTER TABLE ddl.login_activities ADD COLUMN added_at timestamptz DEFAULT clock_timestamp()',
    'ALTER TABLE ddl.login_activities SET UNLOGGED',
    'ALTER TABLE ddl.login_activities ALTER COLUMN note TYPE varchar(100)'
]) AS form;
-- A default set for later INSERTs is scrubbed by the trigger when it is used.
SELECT ddl.fresh();
ALTER TABLE ddl.login_activities ALTER COLUMN ip SET DEFAULT '203.0.113.5';
INSERT INTO ddl.login_activities (id) VALUES (2) RETURNING ip;

-- A table with full addresses, brought under protection by a command: renamed or moved into a
-- protected name, created by CREATE TABLE AS or SELECT INTO, attached as a partition, made a child.
CREATE TABLE ddl.staging (id int, ip inet);
INSERT INTO ddl.staging VALUES (1, '203.0.113.1'), (2, '2001:db8:1:2:3:4:5:6');
DROP TABLE ddl.login_activities;
ALTER TABLE ddl.staging RENAME TO login_activities;
SELECT id, ip FROM ddl.login_activities ORDER BY id;
CREATE SCHEMA ddl2;
CREATE TABLE ddl2.session_activations AS SELECT 1 AS id, '203.0.113.2'::inet AS ip;
SELECT * INTO ddl2.oauth_access_tokens FROM (SELECT 1 AS id, '203.0.113.3'::inet AS last_used_ip) s;
SELECT ip FROM ddl2.session_activations UNION ALL SELECT last_used_ip FROM ddl2.oauth_access_tokens;
CREATE TABLE ddl2.users (id int, sign_up_ip inet);
INSERT INTO ddl2.users VALUES (1, '203.0.113.4');
ALTER TABLE ddl2.users SET SCHEMA ddl;
SELECT sign_up_ip FROM ddl.users;
-- A column renamed into a name that is protected (its column was dropped, the name stays
-- protected): what it holds is scrubbed. (A protected column renamed takes its protection along.)
CREATE TABLE ddl.moved_col (id int, client inet);
\c - postgres
SELECT mastodon_ip_scrub.protect('ddl.moved_col', 'client');
\c - mastodon
\set SHOW_CONTEXT never
ALTER TABLE ddl.moved_col DROP COLUMN client;
ALTER TABLE ddl.moved_col ADD COLUMN raw inet;
INSERT INTO ddl.moved_col VALUES (1, '203.0.113.6');
ALTER TABLE ddl.moved_col RENAME COLUMN raw TO client;
SELECT id, client FROM ddl.moved_col;
-- ATTACH PARTITION of a table that already holds rows.
CREATE TABLE ddl.oauth_access_tokens (id int, last_used_ip inet) PARTITION BY RANGE (id);
CREATE TABLE ddl.tokens_2026 (id int, last_used_ip inet);
INSERT INTO ddl.tokens_2026 VALUES (1, '203.0.113.7');
ALTER TABLE ddl.oauth_access_tokens ATTACH PARTITION ddl.tokens_2026 FOR VALUES FROM (0) TO (100);
SELECT last_used_ip FROM ddl.oauth_access_tokens;
-- INHERIT: a table with rows made a child of a protected table.
CREATE TABLE ddl.older_logins (id int, ip inet, ip_text text, note text);
INSERT INTO ddl.older_logins VALUES (9, '203.0.113.8', NULL, 'child');
ALTER TABLE ddl.older_logins INHERIT ddl.login_activities;
SELECT id, ip FROM ddl.login_activities ORDER BY id;

-- A Mastodon IP column of another type than inet is protected all the same: another address type
-- (cidr, a domain) is scrubbed; a type that holds no address stores NULL, with a WARNING.
CREATE SCHEMA ddl3;
CREATE DOMAIN ddl3.client_inet AS inet;
CREATE TABLE ddl3.login_activities (id int, ip cidr);
CREATE TABLE ddl3.oauth_access_tokens (id int, last_used_ip ddl3.client_inet);
CREATE TABLE ddl3.users (id int, sign_up_ip text);
INSERT INTO ddl3.login_activities VALUES (1, '203.0.113.11/32') RETURNING ip;
INSERT INTO ddl3.oauth_access_tokens VALUES (1, '203.0.113.12') RETURNING last_used_ip;
INSERT INTO ddl3.users VALUES (1, '203.0.113.13') RETURNING sign_up_ip;
-- Tables created OF a composite type change with it (ALTER TYPE ... CASCADE), unnamed by the command.
CREATE TYPE ddl3.session AS (id int, ip cidr);
CREATE TABLE ddl3.session_activations OF ddl3.session;
INSERT INTO ddl3.session_activations VALUES (1, '203.0.113.14/32');
ALTER TYPE ddl3.session ALTER ATTRIBUTE ip TYPE inet CASCADE;
INSERT INTO ddl3.session_activations VALUES (2, '203.0.113.15') RETURNING ip;
SELECT id, ip FROM ddl3.session_activations ORDER BY id;

-- Mastodon's own migrations, as Rails runs them, keep working and stay protected.
BEGIN;
ALTER TABLE users ADD COLUMN current_sign_in_ip inet;                          -- add_column
UPDATE users SET current_sign_in_ip = '192.0.2.1' WHERE current_sign_in_ip IS NULL;  -- change_column_null
ALTER TABLE users ALTER COLUMN current_sign_in_ip SET NOT NULL;                     -- ... with a default
ALTER TABLE users ALTER COLUMN current_sign_in_ip DROP NOT NULL;
CREATE INDEX index_users_on_current_sign_in_ip ON users (current_sign_in_ip);   -- add_index
ALTER TABLE users RENAME COLUMN current_sign_in_ip TO last_sign_in_ip;          -- rename_column
INSERT INTO users (email, created_at, updated_at, account_id, last_sign_in_ip)
     VALUES ('migrated@example.org', now(), now(), 1, '203.0.113.10') RETURNING last_sign_in_ip;
ALTER TABLE users DROP COLUMN last_sign_in_ip;                                   -- remove_column
ROLLBACK;

\c - postgres
SELECT schema_name, table_name, column_name, trigger_enabled FROM mastodon_ip_scrub.protected_columns
 WHERE schema_name LIKE 'ddl%' ORDER BY 1, 2, 3;
SELECT count(*) AS full_addresses
  FROM (SELECT ip FROM ONLY ddl.login_activities UNION ALL SELECT ip FROM ddl.older_logins
        UNION ALL SELECT ip FROM ddl2.session_activations UNION ALL SELECT last_used_ip FROM ddl2.oauth_access_tokens
        UNION ALL SELECT sign_up_ip FROM ddl.users UNION ALL SELECT client FROM ddl.moved_col
        UNION ALL SELECT last_used_ip FROM ddl.oauth_access_tokens) a
 WHERE mastodon_ip_scrub._pending(ip);
SELECT mastodon_ip_scrub.unprotect('ddl.moved_col', 'client');
DROP SCHEMA ddl, ddl2, ddl3 CASCADE;
DELETE FROM mastodon_ip_scrub.protection WHERE schema_name LIKE 'ddl%';

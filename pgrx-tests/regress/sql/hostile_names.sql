-- Hostile role, class "names": protection never depends on a name Mastodon's role can change,
-- even for a moment. It follows a protected table, column or schema through every command
-- PostgreSQL's grammar has for renaming or moving them, and the scrub trigger itself is
-- recognised by its function, whatever its table is called meanwhile.
--
-- The commands, from gram.y: RenameStmt for a relation (ALTER TABLE | INDEX | VIEW | SEQUENCE |
-- MATERIALIZED VIEW | FOREIGN TABLE ... RENAME TO), for a column (ALTER TABLE | VIEW |
-- MATERIALIZED VIEW | FOREIGN TABLE ... RENAME COLUMN, ALTER TYPE ... RENAME ATTRIBUTE) and for a
-- schema (ALTER SCHEMA ... RENAME TO); AlterObjectSchemaStmt (ALTER <same keywords> ... SET
-- SCHEMA). PostgreSQL applies some keywords to a plain table and refuses others, depending on the
-- major; every one is tried, and whatever it did, the table must stay protected.
\set SHOW_CONTEXT never
-- The issue's own example, on a table Mastodon writes to: rename the table by another command's
-- keyword, drop the trigger under the new name, rename it back.
\c - mastodon
ALTER INDEX login_activities RENAME TO x;
DROP TRIGGER zz_mastodon_ip_scrub ON x;
ALTER INDEX x RENAME TO login_activities;
INSERT INTO login_activities (user_id, success, ip, created_at) VALUES (1, true, '203.0.113.41', now()) RETURNING id AS written, ip \gset
SELECT :'ip' AS stored;
DELETE FROM login_activities WHERE id = :written;

-- An admin protects a column of a table of the role's own schema by name, so nothing but
-- following the table can keep it protected under another name.
CREATE SCHEMA app;
CREATE SCHEMA elsewhere;
CREATE TABLE app.reports (id bigserial PRIMARY KEY, reporter_ip inet, body text);
CREATE FUNCTION app.reports_row(inet) RETURNS text LANGUAGE sql AS $$ SELECT 'row' $$;
\c - postgres
SELECT mastodon_ip_scrub.protect('app.reports', 'reporter_ip');
\c - mastodon
\set SHOW_CONTEXT never

-- attempt(command, undo): runs `command` as the role; whether PostgreSQL accepted it or not, the
-- table (found by OID, whatever it is called now) must still store only scrubbed addresses through
-- its current names, and still refuse to lose its trigger. `undo` puts the names back.
CREATE FUNCTION pg_temp.attempt(command text, undo text) RETURNS text LANGUAGE plpgsql AS $$
DECLARE
    v_table   regclass := 'app.reports'::regclass;
    v_column  name;
    v_stored  text;
    v_dropped boolean := false;
    v_done    boolean := true;
BEGIN
    BEGIN
        EXECUTE command;
    EXCEPTION WHEN OTHERS THEN
        v_done := false;
    END;
    SELECT a.attname INTO v_column FROM pg_attribute a WHERE a.attrelid = v_table AND a.attnum = 2;
    EXECUTE format('INSERT INTO %s (%I, body) VALUES (%L, %L) RETURNING host(%I)',
                   v_table, v_column, '203.0.113.77', command, v_column) INTO v_stored;
    BEGIN
        EXECUTE format('DROP TRIGGER zz_mastodon_ip_scrub ON %s', v_table);
        v_dropped := true;
    EXCEPTION WHEN insufficient_privilege THEN
        NULL;
    END;
    IF v_done THEN
        EXECUTE undo;
    END IF;
    RETURN CASE WHEN v_stored = '203.0.113.0' AND NOT v_dropped THEN 'protected'
                ELSE format('NOT PROTECTED: stored %s, trigger dropped: %s', v_stored, v_dropped) END;
END $$;

SELECT keyword, pg_temp.attempt(format('ALTER %s app.reports RENAME TO reports_renamed', keyword),
                                'ALTER TABLE app.reports_renamed RENAME TO reports') AS rename_table,
       pg_temp.attempt(format('ALTER %s app.reports RENAME COLUMN reporter_ip TO ip_renamed', keyword),
                       'ALTER TABLE app.reports RENAME COLUMN ip_renamed TO reporter_ip') AS rename_column,
       pg_temp.attempt(format('ALTER %s app.reports SET SCHEMA elsewhere', keyword),
                       'ALTER TABLE elsewhere.reports SET SCHEMA app') AS set_schema
  FROM unnest(ARRAY['TABLE', 'TABLE IF EXISTS', 'INDEX', 'VIEW', 'SEQUENCE', 'MATERIALIZED VIEW',
                    'FOREIGN TABLE', 'TYPE']) AS keyword;
SELECT pg_temp.attempt('ALTER TYPE app.reports RENAME ATTRIBUTE reporter_ip TO ip_renamed',
                       'ALTER TABLE app.reports RENAME COLUMN ip_renamed TO reporter_ip') AS rename_attribute,
       pg_temp.attempt('ALTER SCHEMA app RENAME TO app_renamed',
                       'ALTER SCHEMA app_renamed RENAME TO app') AS rename_schema;
-- Several renames in one transaction, the trigger dropped in between: refused at each step.
BEGIN;
ALTER INDEX app.reports RENAME TO r1;
ALTER SCHEMA app RENAME TO a1;
ALTER VIEW a1.r1 RENAME COLUMN reporter_ip TO c1;
DROP TRIGGER zz_mastodon_ip_scrub ON a1.r1;
ROLLBACK;
BEGIN;
ALTER INDEX app.reports RENAME TO r1;
ALTER SCHEMA app RENAME TO a1;
ALTER VIEW a1.r1 RENAME COLUMN reporter_ip TO c1;
ALTER TABLE a1.r1 DISABLE TRIGGER zz_mastodon_ip_scrub;
INSERT INTO a1.r1 (c1, body) VALUES ('198.51.100.9', 'renamed three times') RETURNING c1;
SELECT pg_get_triggerdef(t.oid) FROM pg_trigger t WHERE t.tgrelid = 'a1.r1'::regclass AND t.tgname = 'zz_mastodon_ip_scrub';
ROLLBACK;

-- From PostgreSQL 15 on the role owns the public schema (as the database's owner), so it can rename
-- it, and all of Mastodon's tables with it: their protection moves along. (On 14 it cannot.)
CREATE FUNCTION pg_temp.rename_public() RETURNS text LANGUAGE plpgsql AS $$
DECLARE
    v_table   regclass := 'public.login_activities'::regclass;
    v_id      bigint;
    v_stored  text;
    v_dropped boolean := false;
    v_done    boolean := true;
BEGIN
    BEGIN
        ALTER SCHEMA public RENAME TO public_renamed;
    EXCEPTION WHEN insufficient_privilege THEN
        v_done := false;
    END;
    EXECUTE format('INSERT INTO %s (user_id, success, ip, created_at) VALUES (1, true, %L, now()) RETURNING id, host(ip)',
                   v_table, '203.0.113.88') INTO v_id, v_stored;
    BEGIN
        EXECUTE format('DROP TRIGGER zz_mastodon_ip_scrub ON %s', v_table);
        v_dropped := true;
    EXCEPTION WHEN insufficient_privilege THEN
        NULL;
    END;
    EXECUTE format('DELETE FROM %s WHERE id = %s', v_table, v_id);
    IF v_done THEN
        ALTER SCHEMA public_renamed RENAME TO public;
    END IF;
    RETURN CASE WHEN v_stored = '203.0.113.0' AND NOT v_dropped THEN 'protected'
                ELSE format('NOT PROTECTED: stored %s, trigger dropped: %s', v_stored, v_dropped) END;
END $$;
SELECT pg_temp.rename_public() AS rename_public;

-- What the protection table says after all that: the admin's column, under its own name, once.
\c - postgres
SELECT schema_name, table_name, column_name, column_present, trigger_enabled
  FROM mastodon_ip_scrub.protected_columns ORDER BY 1, 2, 3;
SELECT count(*) FILTER (WHERE host(reporter_ip) <> '203.0.113.0') AS full_addresses, count(*) AS rows FROM app.reports;
-- Renaming is followed for an admin's rename too, and unprotect() then finds the new name.
ALTER TABLE app.reports RENAME TO reports_by_admin;
SELECT table_name, column_name FROM mastodon_ip_scrub.protected_columns WHERE schema_name = 'app';
SELECT mastodon_ip_scrub.unprotect('app.reports_by_admin', 'reporter_ip');
SELECT count(*) AS scrub_triggers_left FROM pg_trigger WHERE tgrelid = 'app.reports_by_admin'::regclass;
DROP SCHEMA app, elsewhere CASCADE;

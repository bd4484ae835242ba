-- Hostile role, class "privileged execution": no entry point of the extension runs code Mastodon's
-- role controls with rights other than the table owner's. The role plants a trojan in every place
-- PostgreSQL runs a table owner's code when someone reads or writes the table: index expressions
-- (folded by the planner, and computed per row), partial-index predicates, triggers, rules, column
-- defaults, check constraints, domain checks, operators, views and policies. Each trojan logs the
-- role it runs as, tries to make the role a superuser, to switch scrubbing off and to change the
-- caller's settings. Then an admin calls every entry point, and the role runs the DDL that fires
-- the event triggers. Nothing may ever run as a superuser, and the caller's settings stay as they
-- were: the extension reads and writes the role's tables only as their owner, under
-- SECURITY_RESTRICTED_OPERATION, as PostgreSQL's VACUUM and ANALYZE do.
\set SHOW_CONTEXT never
\set main_db :DBNAME
CREATE DATABASE escalation OWNER mastodon;
\c escalation mastodon
\set SHOW_CONTEXT never
\set ECHO none
\i ../fixtures/mastodon_schema.sql
\set ECHO all
INSERT INTO accounts (username, created_at, updated_at) VALUES ('alice', now(), now());
INSERT INTO users (email, created_at, updated_at, account_id, sign_up_ip)
     VALUES ('alice@example.org', now(), now(), 1, '203.0.113.77');
INSERT INTO login_activities (user_id, success, ip, created_at) VALUES (1, true, '203.0.113.78', now());
INSERT INTO oauth_access_tokens (token, created_at, resource_owner_id, last_used_at, last_used_ip)
     VALUES ('t1', now(), 1, now(), '203.0.113.76');
CREATE TABLE reports (id bigserial PRIMARY KEY, reporter_ip inet);
INSERT INTO reports (reporter_ip) VALUES ('203.0.113.79');

CREATE TABLE trojan_log (entry text, place text, role name, superuser boolean);
-- The trojan: what the role's code would do with a superuser's rights. Armed once the test names
-- the entry point it calls (trojan.entry), so that setting the tables up does not trip it.
CREATE FUNCTION trojan(place text) RETURNS boolean LANGUAGE plpgsql VOLATILE AS $$
BEGIN
    IF coalesce(current_setting('trojan.entry', true), '') = '' THEN
        RETURN true;
    END IF;
    INSERT INTO public.trojan_log
    SELECT current_setting('trojan.entry'), place, current_user, r.rolsuper
      FROM pg_roles r WHERE r.rolname = current_user;
    BEGIN EXECUTE 'ALTER ROLE mastodon SUPERUSER'; EXCEPTION WHEN OTHERS THEN NULL; END;
    BEGIN EXECUTE 'SET mastodon_ip_scrub.enabled = off'; EXCEPTION WHEN OTHERS THEN NULL; END;
    IF to_regclass('public.trojan_made') IS NULL THEN
        BEGIN EXECUTE 'CREATE TABLE public.trojan_made (x int)'; EXCEPTION WHEN OTHERS THEN NULL; END;
    END IF;
    PERFORM set_config('search_path', 'trojan_was_here', false);
    PERFORM set_config('trojan.planted', 'yes', false);
    RETURN true;
END $$;
-- Each calls it by its qualified name, as code that PostgreSQL may run under a restricted
-- search_path (index builds, maintenance) must.
CREATE FUNCTION trojan_immutable(place text) RETURNS integer LANGUAGE plpgsql IMMUTABLE AS $$
BEGIN PERFORM public.trojan(place); RETURN 0; END $$;
CREATE FUNCTION trojan_check(ip inet, place text) RETURNS boolean LANGUAGE plpgsql IMMUTABLE AS $$
BEGIN RETURN public.trojan(place); END $$;
CREATE FUNCTION trojan_row() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN PERFORM public.trojan(TG_ARGV[0]); RETURN CASE WHEN TG_LEVEL = 'ROW' THEN NEW END; END $$;
CREATE FUNCTION trojan_equal(inet, inet) RETURNS boolean LANGUAGE plpgsql IMMUTABLE AS $$
BEGIN RETURN public.trojan('operator'); END $$;
CREATE OPERATOR === (LEFTARG = inet, RIGHTARG = inet, FUNCTION = trojan_equal);
CREATE DOMAIN watched_inet AS inet CHECK (public.trojan_check(VALUE, 'domain check'));

-- A protected column whose type is a domain with a check of the role's.
ALTER TABLE oauth_access_tokens ALTER COLUMN last_used_ip TYPE watched_inet;
-- Every place, on every table Mastodon writes addresses to (views only where no column type
-- changes later: a view pins its columns' types).
DO $$
DECLARE t record;
BEGIN
    FOR t IN SELECT * FROM (VALUES ('users', 'sign_up_ip'), ('login_activities', 'ip'),
                                   ('session_activations', 'ip'), ('oauth_access_tokens', 'last_used_ip'),
                                   ('reports', 'reporter_ip')) AS x (tbl, col) LOOP
        EXECUTE format('CREATE INDEX ON %I ((id + trojan_immutable(%L)))', t.tbl, 'index expression');
        EXECUTE format('CREATE INDEX ON %I (id) WHERE trojan_check(%I, %L)', t.tbl, t.col, 'partial index predicate');
        EXECUTE format('ALTER TABLE %I ADD CONSTRAINT trojan_check CHECK (trojan_check(%I, %L))', t.tbl, t.col, 'check constraint');
        EXECUTE format('ALTER TABLE %I ADD CONSTRAINT trojan_operator CHECK (%I OPERATOR(public.===) %I)', t.tbl, t.col, t.col);
        EXECUTE format('ALTER TABLE %I ADD COLUMN trojan_default boolean DEFAULT trojan(%L)', t.tbl, 'column default');
        EXECUTE format('CREATE TRIGGER a_before BEFORE UPDATE ON %I FOR EACH ROW EXECUTE FUNCTION trojan_row(%L)', t.tbl, 'BEFORE row trigger');
        EXECUTE format('CREATE TRIGGER after_row AFTER UPDATE ON %I FOR EACH ROW EXECUTE FUNCTION trojan_row(%L)', t.tbl, 'AFTER row trigger');
        EXECUTE format('CREATE TRIGGER after_statement AFTER UPDATE ON %I FOR EACH STATEMENT EXECUTE FUNCTION trojan_row(%L)', t.tbl, 'AFTER statement trigger');
        IF t.tbl IN ('users', 'login_activities', 'session_activations') THEN
            EXECUTE format('CREATE VIEW %I AS SELECT *, trojan(%L) AS trojan FROM %I', t.tbl || '_view', 'view', t.tbl);
        END IF;
        EXECUTE format('ALTER TABLE %I ENABLE ROW LEVEL SECURITY', t.tbl);
        EXECUTE format('CREATE POLICY trojan ON %I USING (trojan(%L))', t.tbl, 'policy');
    END LOOP;
END $$;
-- A rule can only be made before the table is protected; reports is protected later, by hand.
CREATE RULE trojan AS ON UPDATE TO reports DO ALSO SELECT trojan('rule');

-- A schema of the extension's name made beforehand by the role would give it the extension.
CREATE SCHEMA mastodon_ip_scrub;
\c - postgres
CREATE EXTENSION mastodon_ip_scrub;
\c - mastodon
DROP SCHEMA mastodon_ip_scrub;

-- The admin's entry points, each in a new session (so that the planner reads the role's index
-- expressions afresh), with the caller's settings checked afterwards.
\c - postgres
\set SHOW_CONTEXT never
SET search_path = "$user", public;
CREATE VIEW caller AS
  SELECT current_setting('search_path') AS search_path, current_setting('mastodon_ip_scrub.enabled', true) AS enabled,
         coalesce(current_setting('trojan.planted', true), '') AS planted;
SET trojan.entry = 'CREATE EXTENSION';
CREATE EXTENSION mastodon_ip_scrub;
SELECT * FROM caller;
\c - postgres
SET search_path = "$user", public;
SET trojan.entry = 'status()';
SELECT table_name, column_name, rows, unscrubbed_rows, counted FROM mastodon_ip_scrub.status() ORDER BY 1, 2;
\c - postgres
SET search_path = "$user", public;
SET trojan.entry = 'status(exact)';
SELECT count(*) AS lines FROM mastodon_ip_scrub.status(exact => true);
\c - postgres
SET search_path = "$user", public;
SET trojan.entry = 'audit()';
SELECT count(*) AS lines FROM mastodon_ip_scrub.audit();
\c - postgres
SET search_path = "$user", public;
SET trojan.entry = 'protect()';
SELECT mastodon_ip_scrub.protect('reports', 'reporter_ip');
\c - postgres
SET search_path = "$user", public;
SET trojan.entry = 'protect_mastodon()';
SELECT count(*) AS protected FROM mastodon_ip_scrub.protect_mastodon();
\c - postgres
SET search_path = "$user", public;
SET trojan.entry = 'exempt()';
ALTER TABLE accounts ADD COLUMN last_ip inet;
SELECT mastodon_ip_scrub.exempt('accounts', 'last_ip', 'test column');
\c - postgres
SET search_path = "$user", public;
SET trojan.entry = 'unprotect()';
SELECT mastodon_ip_scrub.unprotect('reports', 'reporter_ip');
SELECT mastodon_ip_scrub.protect('reports', 'reporter_ip');
SELECT * FROM caller;
\c - postgres
SET search_path = "$user", public;
SET trojan.entry = 'backfill(dry_run)';
CALL mastodon_ip_scrub.backfill(dry_run => true);
\c - postgres
SET search_path = "$user", public;
SET trojan.entry = 'backfill()';
SET client_min_messages = warning;  -- its progress NOTICEs carry timings
CALL mastodon_ip_scrub.backfill();
RESET client_min_messages;
SELECT * FROM caller;
-- An admin's own DDL on the role's tables fires the event triggers as the admin: they count and
-- scrub as the owner. (DDL that itself evaluates the role's code, such as a table rewrite, runs it
-- as whoever issues it: that is PostgreSQL's, and why Mastodon's migrations run as its own role.)
\c - mastodon
CREATE TABLE session_staging (LIKE reports INCLUDING ALL);
ALTER TABLE session_staging RENAME COLUMN reporter_ip TO ip;
INSERT INTO session_staging (ip) VALUES ('203.0.113.80');
CREATE TRIGGER a_before BEFORE UPDATE ON session_staging FOR EACH ROW EXECUTE FUNCTION trojan_row('BEFORE row trigger');
CREATE SCHEMA staged;
\c - postgres
SET search_path = "$user", public;
SET trojan.entry = 'admin DDL';
ALTER TABLE users ADD COLUMN last_sign_in_ip inet;
ALTER TABLE session_staging SET SCHEMA staged;
ALTER TABLE staged.session_staging RENAME TO session_activations;
SELECT * FROM caller;

-- The role's own DDL fires the event triggers, which run as the extension's owner.
\c - mastodon
\set SHOW_CONTEXT never
-- (PostgreSQL itself runs some of them in the role's session, which they disturb: reset after.)
SET trojan.entry = 'role DDL';
ALTER TABLE users ADD COLUMN current_sign_in_ip inet;
RESET search_path;
ALTER TABLE oauth_access_tokens ALTER COLUMN last_used_ip TYPE watched_inet USING '203.0.113.81';
RESET search_path;
RESET trojan.entry;
CREATE TABLE staging (LIKE reports INCLUDING ALL);
INSERT INTO staging (reporter_ip) VALUES ('203.0.113.82');
CREATE TRIGGER a_before BEFORE UPDATE ON staging FOR EACH ROW EXECUTE FUNCTION trojan_row('BEFORE row trigger');
DROP TABLE reports CASCADE;
SET trojan.entry = 'role DDL';
ALTER TABLE staging RENAME TO reports;
RESET search_path;
\c - postgres
\set SHOW_CONTEXT never

-- Where the trojans ran, and as whom: every place that runs when a table is read or written, never
-- as a superuser; nothing ran where the extension does not look (defaults, views, policies).
SELECT place, array_agg(DISTINCT role) AS roles, bool_or(superuser) AS ever_superuser
  FROM trojan_log GROUP BY place ORDER BY place;
SELECT entry, bool_or(superuser) AS ever_superuser FROM trojan_log GROUP BY entry ORDER BY entry;
SELECT rolsuper AS mastodon_is_superuser FROM pg_roles WHERE rolname = 'mastodon';
-- What the trojans created stays theirs: nothing became a member of the extension.
SELECT to_regclass('public.trojan_made') IS NOT NULL AS trojan_made_a_table,
       count(*) AS trojan_objects_in_the_extension
  FROM pg_depend d JOIN pg_extension e ON e.oid = d.refobjid AND e.extname = 'mastodon_ip_scrub'
 WHERE d.deptype = 'e' AND d.classid = 'pg_class'::regclass AND d.objid = to_regclass('public.trojan_made');
-- And every address is scrubbed all the same.
SELECT count(*) AS full_addresses
  FROM (SELECT sign_up_ip AS ip FROM users UNION ALL SELECT ip FROM login_activities
        UNION ALL SELECT ip FROM session_activations UNION ALL SELECT reporter_ip FROM reports
        UNION ALL SELECT last_used_ip FROM oauth_access_tokens UNION ALL SELECT ip FROM staged.session_activations) a
 WHERE mastodon_ip_scrub._pending(ip);

-- A deferred trigger would fire at commit, as whoever commits: PostgreSQL refuses to queue one in a
-- security-restricted operation, so backfill stops at that table with PostgreSQL's message.
\c - mastodon
CREATE TABLE deferred (id bigserial PRIMARY KEY, ip inet);
CREATE CONSTRAINT TRIGGER at_commit AFTER UPDATE ON deferred DEFERRABLE INITIALLY DEFERRED
    FOR EACH ROW EXECUTE FUNCTION trojan_row('deferred trigger');
\c - postgres
SELECT mastodon_ip_scrub.protect('deferred', 'ip');
SET mastodon_ip_scrub.enabled = off;
INSERT INTO deferred (ip) VALUES ('203.0.113.83');
RESET mastodon_ip_scrub.enabled;
CALL mastodon_ip_scrub.backfill();
SELECT count(*) AS deferred_trojan_runs FROM trojan_log WHERE place = 'deferred trigger';
-- Forced row-level security would let the role hide rows from its owner: such a table is not
-- counted, and backfill leaves it with a WARNING naming the fix.
\c - mastodon
ALTER TABLE deferred DISABLE TRIGGER at_commit;
ALTER TABLE deferred ENABLE ROW LEVEL SECURITY;
ALTER TABLE deferred FORCE ROW LEVEL SECURITY;
\c - postgres
SELECT table_name, rows, unscrubbed_rows, counted FROM mastodon_ip_scrub.status() WHERE table_name = 'deferred';
CALL mastodon_ip_scrub.backfill();

-- The extension's helpers that act as a table's owner are for superusers, and even a role granted
-- them may act only as an owner whose rights it already has.
\c - mastodon
SELECT mastodon_ip_scrub._query_as_owner('users'::regclass, 'SELECT ARRAY[1::bigint]');
SELECT mastodon_ip_scrub._write_as_owner('users'::regclass, 'UPDATE users SET email = email');
SELECT mastodon_ip_scrub._internal_ddl('DROP TRIGGER zz_mastodon_ip_scrub ON users');
\c - postgres
CREATE ROLE helper;
GRANT EXECUTE ON FUNCTION mastodon_ip_scrub._query_as_owner(oid, text) TO helper;
SET ROLE helper;
SELECT mastodon_ip_scrub._query_as_owner('users'::regclass, 'SELECT ARRAY[1::bigint]');
RESET ROLE;
REVOKE EXECUTE ON FUNCTION mastodon_ip_scrub._query_as_owner(oid, text) FROM helper;
DROP ROLE helper;
\c :main_db postgres
DROP DATABASE escalation;

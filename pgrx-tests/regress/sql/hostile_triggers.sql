-- Hostile role, class "the trigger and the settings": Mastodon's role owns every table, so
-- PostgreSQL lets it disable, drop, rename and replace triggers on them. It tries every way it has
-- to switch the scrub trigger off or change what it does; after each attempt it writes an
-- address, and what is stored shows the attempt failed. The scrub trigger is recognised by its
-- function, and only the extension creates, changes or drops one.
\c - mastodon
\set SHOW_CONTEXT never
SELECT max(id) AS last_id_before FROM login_activities \gset
CREATE TEMP VIEW stored AS
  SELECT ip FROM login_activities ORDER BY id DESC LIMIT 1;
\set write 'INSERT INTO login_activities (user_id, success, ip, created_at) VALUES (1, true, ''203.0.113.5'', now());'

-- Disable the trigger: by name, all user triggers, all triggers.
ALTER TABLE login_activities DISABLE TRIGGER zz_mastodon_ip_scrub;
:write
SELECT * FROM stored;
ALTER TABLE login_activities DISABLE TRIGGER USER;
:write
SELECT * FROM stored;
-- Mastodon's tables have foreign keys, whose system triggers already make this a superuser's job.
-- (The message names a foreign-key trigger by OID, which differs between majors.)
DO $$ BEGIN ALTER TABLE login_activities DISABLE TRIGGER ALL;
EXCEPTION WHEN insufficient_privilege THEN RAISE NOTICE '%', regexp_replace(SQLERRM, '\d+"', 'NNN"');
END $$;
-- Fire only in replica sessions, or only on the origin again.
ALTER TABLE login_activities ENABLE REPLICA TRIGGER zz_mastodon_ip_scrub;
:write
SELECT * FROM stored;
ALTER TABLE login_activities ENABLE TRIGGER zz_mastodon_ip_scrub;
SELECT tgenabled FROM pg_trigger WHERE tgrelid = 'login_activities'::regclass AND tgname = 'zz_mastodon_ip_scrub';

-- Drop it, rename it, or replace it with a trigger that does nothing.
DROP TRIGGER zz_mastodon_ip_scrub ON login_activities;
ALTER TRIGGER zz_mastodon_ip_scrub ON login_activities RENAME TO aa_scrub;
CREATE FUNCTION keep_row() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RETURN NEW; END $$;
CREATE OR REPLACE TRIGGER zz_mastodon_ip_scrub BEFORE INSERT OR UPDATE ON login_activities
  FOR EACH ROW EXECUTE FUNCTION keep_row();
:write
SELECT * FROM stored;
-- The same trigger function, pointed at another column.
CREATE OR REPLACE TRIGGER zz_mastodon_ip_scrub BEFORE INSERT OR UPDATE ON login_activities
  FOR EACH ROW EXECUTE FUNCTION mastodon_ip_scrub.scrub_trigger('user_agent');
:write
SELECT * FROM stored;
SELECT pg_get_triggerdef(oid) FROM pg_trigger
 WHERE tgrelid = 'login_activities'::regclass AND tgname = 'zz_mastodon_ip_scrub';

-- Every other way to redefine it with CREATE OR REPLACE TRIGGER (timing, events, level, a WHEN
-- condition, UPDATE OF a column, a transition table), with the role's function or with ours:
-- whatever PostgreSQL accepts is put back in the same command, or refused.
CREATE FUNCTION pg_temp.redefine(definition text) RETURNS text LANGUAGE plpgsql AS $$
DECLARE v_msg text; v_stored text;
BEGIN
    BEGIN
        EXECUTE format('CREATE OR REPLACE TRIGGER zz_mastodon_ip_scrub %s', definition);
        v_msg := 'put back';
    EXCEPTION WHEN OTHERS THEN
        v_msg := 'refused';
    END;
    INSERT INTO login_activities (user_id, success, ip, created_at) VALUES (1, true, '203.0.113.5', now())
    RETURNING host(ip) INTO v_stored;
    UPDATE login_activities SET ip = '198.51.100.6' WHERE id = (SELECT max(id) FROM login_activities)
    RETURNING v_stored || ', then ' || host(ip) INTO v_stored;
    RETURN v_msg || ': stored ' || v_stored || ', trigger ' ||
           (SELECT CASE WHEN pg_get_triggerdef(t.oid) = 'CREATE TRIGGER zz_mastodon_ip_scrub BEFORE INSERT OR UPDATE ON public.login_activities FOR EACH ROW EXECUTE FUNCTION mastodon_ip_scrub.scrub_trigger(''ip'')'
                        AND t.tgenabled = 'A' THEN 'intact' ELSE pg_get_triggerdef(t.oid) END
              FROM pg_trigger t WHERE t.tgrelid = 'login_activities'::regclass AND t.tgname = 'zz_mastodon_ip_scrub');
END $$;
SELECT format(definition, 'login_activities', fn) AS definition,
       pg_temp.redefine(format(definition, 'login_activities', fn)) AS outcome
  FROM unnest(ARRAY['keep_row()', 'mastodon_ip_scrub.scrub_trigger(''ip'')']) AS fn,
       unnest(ARRAY[
           'BEFORE INSERT ON %s FOR EACH ROW EXECUTE FUNCTION %s',
           'BEFORE UPDATE ON %s FOR EACH ROW EXECUTE FUNCTION %s',
           'BEFORE INSERT OR UPDATE OF user_agent ON %s FOR EACH ROW EXECUTE FUNCTION %s',
           'BEFORE INSERT OR UPDATE ON %s FOR EACH ROW WHEN (false) EXECUTE FUNCTION %s',
           'BEFORE INSERT OR UPDATE ON %s FOR EACH STATEMENT EXECUTE FUNCTION %s',
           'AFTER INSERT OR UPDATE ON %s FOR EACH ROW EXECUTE FUNCTION %s',
           'AFTER INSERT ON %s REFERENCING NEW TABLE AS n FOR EACH STATEMENT EXECUTE FUNCTION %s',
           'BEFORE INSERT OR UPDATE OR DELETE ON %s FOR EACH ROW EXECUTE FUNCTION %s']) AS definition
 ORDER BY fn, definition;
-- Its own trigger, made to depend on an extension the role may create and drop (a trusted one):
-- refused, so dropping that extension cannot take the trigger along.
CREATE EXTENSION IF NOT EXISTS pg_trgm;
ALTER TRIGGER zz_mastodon_ip_scrub ON login_activities DEPENDS ON EXTENSION pg_trgm;
DROP EXTENSION pg_trgm;
-- A scrub trigger of the role's own, on any table, is refused: only the extension makes them.
CREATE TABLE my_logins (ip inet);
CREATE TRIGGER zz_mastodon_ip_scrub BEFORE INSERT OR UPDATE ON my_logins
  FOR EACH ROW EXECUTE FUNCTION mastodon_ip_scrub.scrub_trigger('ip');
DROP TABLE my_logins;

-- A BEFORE trigger of its own that writes the address back: refused if it would run after ours
-- (BEFORE triggers fire in name order)...
CREATE FUNCTION put_back() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN NEW.ip := '203.0.113.5'; RETURN NEW; END $$;
CREATE TRIGGER zzz_put_back BEFORE INSERT ON login_activities FOR EACH ROW EXECUTE FUNCTION put_back();
-- ...also when it gets there by a rename or by being enabled later...
CREATE TRIGGER put_back BEFORE INSERT ON login_activities FOR EACH ROW EXECUTE FUNCTION put_back();
ALTER TRIGGER put_back ON login_activities RENAME TO zzz_put_back;
-- ...and harmless before ours.
:write
SELECT * FROM stored;
DROP TRIGGER put_back ON login_activities;
-- An UPDATE that names no protected column skips our trigger, but not while a BEFORE UPDATE
-- trigger of the role's own could put an address into the row.
CREATE TRIGGER put_back BEFORE UPDATE ON login_activities FOR EACH ROW EXECUTE FUNCTION put_back();
UPDATE login_activities SET success = false WHERE id = (SELECT max(id) FROM login_activities);
SELECT * FROM stored;
DROP TRIGGER put_back ON login_activities;

-- Settings: refused once the library is loaded (it is: this session wrote to a protected table).
SET mastodon_ip_scrub.enabled = off;
BEGIN;
SET LOCAL mastodon_ip_scrub.ipv4_prefix = 32;
ROLLBACK;
SELECT set_config('mastodon_ip_scrub.mode', 'keep', false);
ALTER ROLE mastodon SET mastodon_ip_scrub.enabled = off;
ALTER ROLE mastodon IN DATABASE :"DBNAME" SET mastodon_ip_scrub.enabled = off;
-- Without the privilege to set the parameter, session_replication_role is out of reach too.
SET session_replication_role = replica;

-- Shadowing what the extension's SQL uses with objects in public changes nothing: every
-- extension function pins search_path to pg_catalog first. Each decoy fails loudly if called.
CREATE FUNCTION public.hijacked() RETURNS boolean LANGUAGE plpgsql AS $$
BEGIN RAISE EXCEPTION 'a public decoy was called'; END $$;
CREATE FUNCTION public.format(text, text) RETURNS text LANGUAGE sql AS $$ SELECT public.hijacked()::text $$;
CREATE FUNCTION public.quote_literal(name) RETURNS text LANGUAGE sql AS $$ SELECT public.hijacked()::text $$;
CREATE FUNCTION public.name_eq(name, text) RETURNS boolean LANGUAGE sql AS $$ SELECT public.hijacked() $$;
CREATE OPERATOR public.= (LEFTARG = name, RIGHTARG = text, FUNCTION = public.name_eq);
CREATE FUNCTION public.set_masklen(inet, integer) RETURNS inet LANGUAGE sql AS $$ SELECT public.hijacked()::text::inet $$;
SET search_path = public, pg_catalog;
-- The event triggers still work for this role's DDL: a new IP column of a known table is protected.
ALTER TABLE users ADD COLUMN last_sign_in_ip inet;
SELECT pg_get_triggerdef(oid) FROM pg_trigger
 WHERE tgrelid = 'users'::regclass AND tgname = 'zz_mastodon_ip_scrub';
INSERT INTO users (email, created_at, updated_at, account_id, last_sign_in_ip)
     VALUES ('mallory@example.org', now(), now(), 1, '2001:db8:1:2:3:4:5:6') RETURNING last_sign_in_ip;
:write
SELECT * FROM stored;
RESET search_path;
ALTER TABLE users DROP COLUMN last_sign_in_ip;
DROP OPERATOR public.= (name, text);
DROP FUNCTION public.format(text, text), public.quote_literal(name), public.name_eq(name, text),
              public.set_masklen(inet, integer), public.hijacked();
DROP FUNCTION keep_row(), put_back();

-- A fresh session, where the library is not loaded yet: a setting placed now is a placeholder,
-- discarded with a WARNING when the first protected write loads the library.
\c - mastodon
SET mastodon_ip_scrub.enabled = off;
INSERT INTO login_activities (user_id, success, ip, created_at) VALUES (1, true, '203.0.113.5', now()) RETURNING ip;
SHOW mastodon_ip_scrub.enabled;

-- What the role can still do: copy addresses into a table of its own. No trigger can see that;
-- audit() lists the column for the admin.
CREATE TABLE my_copy (ip inet);
\c - postgres
SELECT table_name, column_name, suggestion FROM mastodon_ip_scrub.audit() WHERE table_name = 'my_copy';
DROP TABLE my_copy;
DELETE FROM login_activities WHERE id > :last_id_before;
-- The dropped column stays protected by name until the admin says otherwise.
SELECT column_name, column_present FROM mastodon_ip_scrub.protected_columns WHERE table_name = 'users' ORDER BY 1;
SELECT mastodon_ip_scrub.unprotect('users', 'last_sign_in_ip');
DELETE FROM users WHERE email = 'mallory@example.org';

-- Hostile role, class "the store": what is protected and exempt lives in a large object owned by a
-- superuser (sql/config_store.sql), which the role can see in the catalogs and read (table and
-- column names: pg_dump run as the role reads it), but neither write, remove nor take over; and a
-- large object of its own dressed up as the store is ignored: it cannot give one to a superuser.
-- A store that does not parse is reported, naming the object.
\set SHOW_CONTEXT never
\set VERBOSITY terse
SELECT count(*) AS stores FROM mastodon_ip_scrub._stores();
SELECT string_agg(table_name || '.' || column_name, ' ' ORDER BY 1) AS protected FROM mastodon_ip_scrub.protection;
SELECT s AS store FROM mastodon_ip_scrub._stores() s \gset
-- Runs a command, and returns 'done' or its error (the store's number is random: numbers are left out).
CREATE FUNCTION public.try(command text) RETURNS text
LANGUAGE plpgsql AS $$
BEGIN
    EXECUTE command;
    RETURN 'done';
EXCEPTION WHEN OTHERS THEN
    RETURN regexp_replace(SQLERRM, '[0-9]{5,}', 'N', 'g');
END
$$;
\c - mastodon
\set SHOW_CONTEXT never
\set VERBOSITY terse
-- The views that front the store are not the role's.
SELECT count(*) FROM mastodon_ip_scrub.protection;
DELETE FROM mastodon_ip_scrub.protection;
INSERT INTO mastodon_ip_scrub.exemption (schema_name, table_name, column_name, reason) VALUES ('public', 'users', 'sign_up_ip', 'mine');
-- Nor the lock that serializes changes of the store: holding it would stall every protect().
BEGIN;
LOCK TABLE mastodon_ip_scrub.protection IN ACCESS SHARE MODE;
ROLLBACK;
-- The object itself it may read, as pg_dump does, but not overwrite, truncate, remove, or take over.
SELECT convert_from(lo_get(:store), 'UTF8')::jsonb -> 'exemption' -> 0 ->> 'table_name' AS readable;
SELECT public.try(format('SELECT lo_put(%s, 0, %L)', :store, '{"protection": [], "exemption": []}'));
SELECT public.try(format('SELECT lo_open(%s, x''20000''::integer)', :store));
SELECT public.try(format('SELECT lo_unlink(%s)', :store));
SELECT public.try(format('ALTER LARGE OBJECT %s OWNER TO mastodon', :store));
SELECT public.try(format('COMMENT ON LARGE OBJECT %s IS %L', :store, 'mine now'));
-- A store of its own, marked as ours, that exempts the sign-up address and protects nothing...
SELECT lo_from_bytea(0, convert_to('{"protection": [], "exemption": [{"schema_name": "public", "table_name": "users", "column_name": "sign_up_ip", "reason": "x", "builtin": false, "exempted_at": "2026-01-01T00:00:00+00:00"}]}', 'UTF8')) AS fake \gset
SELECT public.try(format('COMMENT ON LARGE OBJECT %s IS %L', :fake,
                          'mastodon_ip_scrub: protected and exempt columns. Change them with protect(), unprotect() and exempt(), not by hand.'));
-- ...cannot be handed to a superuser (PostgreSQL 16 and later word the refusal differently)...
SELECT public.try(format('ALTER LARGE OBJECT %s OWNER TO postgres', :fake))
       IN ('must be member of role "postgres"', 'must be able to SET ROLE "postgres"') AS refused;
-- ...and is ignored, also when the role's next migration runs the DDL event trigger that merges stores.
ALTER TABLE users ADD COLUMN nickname text;
INSERT INTO users (email, created_at, updated_at, account_id, sign_up_ip)
     VALUES ('mallory@example.org', now(), now(), 1, '203.0.113.250') RETURNING sign_up_ip;
DELETE FROM users WHERE email = 'mallory@example.org';
ALTER TABLE users DROP COLUMN nickname;
SELECT public.try(format('SELECT lo_unlink(%s)', :fake));
\c - postgres
\set SHOW_CONTEXT never
\set VERBOSITY terse
SELECT count(*) AS stores FROM mastodon_ip_scrub._stores();
SELECT string_agg(table_name || '.' || column_name, ' ' ORDER BY 1) AS protected FROM mastodon_ip_scrub.protection;
SELECT count(*) AS exempt_users_columns FROM mastodon_ip_scrub.exemption WHERE table_name = 'users';
-- A store that does not parse (a damaged backup, a hand edit) stops the functions that read it,
-- with the object's number and what to do; writes to the tables never read it.
BEGIN;
SELECT lo_put(:store, 0, '{"protection": [{');
SELECT public.try('SELECT count(*) FROM mastodon_ip_scrub.protected_columns');
ROLLBACK;
SET ROLE mastodon;
INSERT INTO users (email, created_at, updated_at, account_id, sign_up_ip)
     VALUES ('trent@example.org', now(), now(), 1, '203.0.113.251') RETURNING sign_up_ip;
DELETE FROM users WHERE email = 'trent@example.org';
RESET ROLE;
DROP FUNCTION public.try(text);

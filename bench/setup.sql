-- The tables the write benchmarks use, in a fresh database with the extension available.
-- psql -v rows=N: the number of source rows of each shape (login_activities, users).
CREATE EXTENSION mastodon_ip_scrub;
CREATE TABLE src AS
SELECT i::bigint AS id, (i % 50000 + 1)::bigint AS user_id, 'password'::varchar AS authentication_method,
       NULL::varchar AS provider, i % 10 <> 0 AS success, NULL::varchar AS failure_reason,
       CASE WHEN i % 4 = 0 THEN '2001:db8::'::inet + i::bigint * 65537 * 65536
            ELSE '0.0.0.0'::inet + (i::bigint * 2654435761 % 4294967296) END AS ip,
       'Mozilla/5.0 (X11; Linux x86_64; rv:145.0) Gecko/20100101 Firefox/145.0'::varchar AS user_agent,
       now()::timestamp - i * interval '1 second' AS created_at
  FROM generate_series(1, :rows) AS i;
VACUUM ANALYZE src;

-- What an admin would write instead: the same masking in PL/pgSQL, one function per column name.
DO $do$
DECLARE c text;
BEGIN
    FOREACH c IN ARRAY ARRAY['ip', 'sign_up_ip'] LOOP
        EXECUTE format($f$
            CREATE FUNCTION %1$I() RETURNS trigger LANGUAGE plpgsql AS $$
            BEGIN
                IF NEW.%2$I IS NOT NULL THEN
                    IF family(NEW.%2$I) = 4 THEN
                        NEW.%2$I := set_masklen(network(set_masklen(NEW.%2$I, 24)), 32);
                    ELSE
                        NEW.%2$I := set_masklen(network(set_masklen(NEW.%2$I, 48)), 128);
                    END IF;
                END IF;
                RETURN NEW;
            END
            $$$f$, 'plpgsql_scrub_' || c, c);
    END LOOP;
END
$do$;

DO $$
DECLARE t text;
BEGIN
    FOREACH t IN ARRAY ARRAY['la_none', 'la_noop', 'la_ours', 'la_plpgsql'] LOOP
        EXECUTE format('CREATE TABLE %I (
            id bigserial PRIMARY KEY, user_id bigint NOT NULL, authentication_method varchar,
            provider varchar, success boolean, failure_reason varchar, ip inet, user_agent varchar,
            created_at timestamp)', t);
        EXECUTE format('CREATE INDEX ON %I (user_id)', t);
    END LOOP;
END
$$;
SELECT mastodon_ip_scrub.protect('la_ours', 'ip');
-- The floor any row trigger pays: our trigger function with no column to scrub. The event triggers
-- refuse a scrub trigger the extension did not make; the extension's own DDL path gets past them.
SELECT mastodon_ip_scrub._internal_ddl('CREATE TRIGGER zz_noop BEFORE INSERT OR UPDATE ON la_noop
    FOR EACH ROW EXECUTE FUNCTION mastodon_ip_scrub.scrub_trigger()');
CREATE TRIGGER scrub BEFORE INSERT OR UPDATE ON la_plpgsql FOR EACH ROW EXECUTE FUNCTION plpgsql_scrub_ip();

-- users-shaped: Mastodon's users table (columns, defaults and indexes of the test fixture), filled
-- as a long-running instance holds it: every row signed up from some address.
CREATE SCHEMA mastodon;
SET search_path = mastodon;
\ir ../pgrx-tests/fixtures/mastodon_schema.sql
RESET search_path;
CREATE TABLE src_users AS
SELECT i::bigint AS id, 'user' || i || '@example.com' AS email,
       now()::timestamp - i * interval '1 minute' AS created_at, now()::timestamp AS updated_at,
       '$2a$10$' || md5(i::text) || 'abcdefghijklmnopqrstu' AS encrypted_password,
       now()::timestamp - (i % 1000) * interval '1 hour' AS current_sign_in_at,
       now()::timestamp - i * interval '1 minute' AS confirmed_at, 'en'::varchar AS locale,
       i::bigint AS account_id, false AS disabled, true AS approved,
       CASE WHEN i % 4 = 0 THEN '2001:db8::'::inet + i::bigint * 65537 * 65536
            ELSE '0.0.0.0'::inet + (i::bigint * 2654435761 % 4294967296) END AS sign_up_ip,
       '{"default_privacy":"public","theme":"system"}'::text AS settings
  FROM generate_series(1, :rows) AS i;
VACUUM ANALYZE src_users;
DO $$
DECLARE t text;
BEGIN
    FOREACH t IN ARRAY ARRAY['users_none', 'users_noop', 'users_ours', 'users_plpgsql'] LOOP
        EXECUTE format('CREATE TABLE %I (LIKE mastodon.users INCLUDING DEFAULTS INCLUDING INDEXES)', t);
    END LOOP;
END
$$;
SELECT mastodon_ip_scrub.protect('users_ours', 'sign_up_ip');
SELECT mastodon_ip_scrub._internal_ddl('CREATE TRIGGER zz_noop BEFORE INSERT OR UPDATE ON users_noop
    FOR EACH ROW EXECUTE FUNCTION mastodon_ip_scrub.scrub_trigger()');
CREATE TRIGGER scrub BEFORE INSERT OR UPDATE ON users_plpgsql FOR EACH ROW EXECUTE FUNCTION plpgsql_scrub_sign_up_ip();

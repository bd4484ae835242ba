-- The tables every benchmark here uses, in a fresh database with the extension available.
-- psql -v rows=N: the number of login_activities-shaped source rows.
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

CREATE FUNCTION plpgsql_scrub() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.ip IS NOT NULL THEN
        IF family(NEW.ip) = 4 THEN
            NEW.ip := set_masklen(network(set_masklen(NEW.ip, 24)), 32);
        ELSE
            NEW.ip := set_masklen(network(set_masklen(NEW.ip, 48)), 128);
        END IF;
    END IF;
    RETURN NEW;
END
$$;

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
-- The floor any row trigger pays: our trigger function with no column to scrub.
CREATE TRIGGER zz_noop BEFORE INSERT OR UPDATE ON la_noop FOR EACH ROW EXECUTE FUNCTION mastodon_ip_scrub.scrub_trigger();
CREATE TRIGGER scrub BEFORE INSERT OR UPDATE ON la_plpgsql FOR EACH ROW EXECUTE FUNCTION plpgsql_scrub();

-- Runs a statement; returns {wall seconds, CPU seconds of this backend}. The CPU time comes from
-- the kernel's scheduler statistics (/proc/self/schedstat, nanoseconds on a CPU): unlike wall time
-- it leaves out time the shared machine gave to other work.
CREATE FUNCTION cpu_ns() RETURNS bigint LANGUAGE sql AS $$
    SELECT split_part(pg_read_file('/proc/self/schedstat'), ' ', 1)::bigint
$$;
CREATE FUNCTION timed(statement text) RETURNS float8[] LANGUAGE plpgsql AS $$
DECLARE
    t0 timestamptz;
    c0 bigint;
BEGIN
    t0 := clock_timestamp();
    c0 := cpu_ns();
    EXECUTE statement;
    RETURN ARRAY[extract(epoch FROM clock_timestamp() - t0), (cpu_ns() - c0) / 1e9];
END
$$;

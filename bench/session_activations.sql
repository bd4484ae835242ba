-- session_activations-shaped tables for bench/backfill.sh.
-- make_source(name, n): n rows, every one holding a full address (3/4 IPv4, 1/4 IPv6), 20 rows per
-- user, as a source for copies. fresh_copy(name, source): a copy of the source as session_activations,
-- with Mastodon's indexes, replacing any table of that name.
CREATE PROCEDURE make_source(name text, n bigint) LANGUAGE plpgsql AS $$
BEGIN
    EXECUTE format($sql$
        CREATE TABLE %I AS
        SELECT i::bigint AS id, md5(i::text) AS session_id,
               now()::timestamp - i * interval '1 minute' AS created_at, now()::timestamp AS updated_at,
               'Mozilla/5.0 (X11; Linux x86_64; rv:145.0) Gecko/20100101 Firefox/145.0'::varchar AS user_agent,
               CASE WHEN i %% 4 = 0 THEN '2001:db8::'::inet + i::bigint * 65537 * 65536
                    ELSE '0.0.0.0'::inet + (i::bigint * 2654435761 %% 4294967296) END AS ip,
               NULL::bigint AS access_token_id, (i %% greatest(1, %s / 20) + 1)::bigint AS user_id,
               NULL::bigint AS web_push_subscription_id
          FROM generate_series(1, %s) AS i$sql$, name, n, n);
END
$$;

CREATE PROCEDURE fresh_copy(name text, source text DEFAULT 'src') LANGUAGE plpgsql AS $$
BEGIN
    EXECUTE format('DROP TABLE IF EXISTS %I', name);
    EXECUTE format('CREATE TABLE %I (LIKE %I)', name, source);
    EXECUTE format('INSERT INTO %I SELECT * FROM %I', name, source);
    EXECUTE format('ALTER TABLE %I ADD PRIMARY KEY (id)', name);
    EXECUTE format('CREATE UNIQUE INDEX ON %I (session_id)', name);
    EXECUTE format('CREATE INDEX ON %I (user_id)', name);
END
$$;

-- session_activations-shaped tables for bench/backfill.sh.
-- make_source(name, n): n rows, every one holding a full address (3/4 IPv4, 1/4 IPv6), 20 rows per
-- user, as a source for copies. fresh_copy(name, source): a copy of the source as session_activations,
-- with Mastodon's indexes, replacing any table of that name. batched_update(name, batch_size): the
-- plain UPDATE committed in backfill()'s ranges, to measure what committing in batches costs
-- PostgreSQL itself.
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

-- The same UPDATE as bench/backfill.sh's plain one, without the extension, in ranges of heap blocks
-- holding about batch_size rows each (as backfill() sizes them), each committed as backfill()
-- commits (synchronous_commit off). Its table holds only rows to scrub, so reltuples (after
-- ANALYZE) is the number backfill() estimates.
CREATE PROCEDURE batched_update(name text, batch_size integer) LANGUAGE plpgsql AS $$
DECLARE
    pages bigint := pg_relation_size(name::regclass) / current_setting('block_size')::bigint;
    step bigint := greatest(1, ceil(batch_size::numeric * pages /
                                    greatest(1, (SELECT reltuples FROM pg_class WHERE oid = name::regclass)::numeric)));
    from_block bigint := 0;
BEGIN
    WHILE from_block < pages LOOP
        PERFORM set_config('synchronous_commit', 'off', true);
        EXECUTE format($sql$
            UPDATE %I SET ip = set_masklen(network(set_masklen(ip, CASE family(ip) WHEN 4 THEN 24 ELSE 48 END)),
                                           CASE family(ip) WHEN 4 THEN 32 ELSE 128 END)
             WHERE ctid >= $1 AND ctid < $2$sql$, name)
            USING format('(%s,0)', from_block)::tid, format('(%s,0)', least(from_block + step, pages))::tid;
        from_block := from_block + step;
        COMMIT;
    END LOOP;
END
$$;

-- What is protected, what is not, and what existing rows still hold: status(), audit(), exempt().

-- How many rows of table `tbl` itself (ONLY: not its partitions or children) hold a value in each
-- of `cols` that the trigger would store differently now (unscrubbed), and how many hold one in
-- any of them (unscrubbed_rows). Read as the table's owner (_query_as_owner): the owner's index
-- expressions, policies and the like never run with our rights. Read in full when `exact` or when
-- the table is small (up to 2560 pages, 20 MB); otherwise a block sample of about 2560 pages is
-- scaled up (method 'sampled'), so the cost stays flat however large the table is. A column that
-- is gone or holds no address type counts NULL; so does every column of a table whose row-level
-- security is forced on its owner, from whom policies could hide rows.
CREATE FUNCTION mastodon_ip_scrub._count_one(
    tbl regclass, cols name[], exact boolean,
    OUT total bigint, OUT unscrubbed bigint[], OUT unscrubbed_rows bigint, OUT method text)
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    c_sample_pages constant bigint := 2560;
    v_pages    bigint;
    v_percent  float8;
    v_filters  text;
    v_any      text;
    v_sampling text := '';
    v_scale    float8 := 1;
    v_counts   bigint[];
BEGIN
    SELECT string_agg(CASE WHEN mastodon_ip_scrub._address_base(a.atttypid)
                           THEN format('count(*) FILTER (WHERE mastodon_ip_scrub._pending(%I::inet, %L))', c.name, a.attnotnull)
                           ELSE 'NULL::bigint' END, ', ' ORDER BY c.ord),
           coalesce(string_agg(format('mastodon_ip_scrub._pending(%I::inet, %L)', c.name, a.attnotnull), ' OR ' ORDER BY c.ord)
                        FILTER (WHERE mastodon_ip_scrub._address_base(a.atttypid)), 'false')
      INTO v_filters, v_any
      FROM unnest(cols) WITH ORDINALITY AS c (name, ord)
      LEFT JOIN pg_attribute a ON a.attrelid = tbl AND a.attname = c.name AND a.attnum > 0 AND NOT a.attisdropped;
    IF NOT mastodon_ip_scrub._owner_sees_all(tbl) THEN
        method := 'not counted: row security forced';
        RETURN;
    END IF;
    v_pages := pg_relation_size(tbl) / current_setting('block_size')::bigint;
    method := 'exact';
    IF NOT exact AND v_pages > c_sample_pages THEN
        v_percent := 100.0 * c_sample_pages / v_pages;
        v_sampling := format(' TABLESAMPLE SYSTEM (%s)', v_percent);
        v_scale := 100 / v_percent;
        method := 'sampled';
    END IF;
    v_counts := mastodon_ip_scrub._query_as_owner(tbl, format(
        'SELECT ARRAY[count(*), count(*) FILTER (WHERE %s), %s]::bigint[] FROM ONLY %s%s',
        v_any, v_filters, tbl, v_sampling));
    total := round(v_counts[1] * v_scale)::bigint;
    unscrubbed_rows := round(v_counts[2] * v_scale)::bigint;
    unscrubbed := ARRAY(SELECT round(u * v_scale)::bigint
                          FROM unnest(v_counts[3:]) WITH ORDINALITY AS x (u, ord) ORDER BY ord);
END
$$;

-- _count_one summed over `tbl` and every table that inherits from it (its partitions, its
-- children): what a query on `tbl` reads. 'sampled' if any of them was.
CREATE FUNCTION mastodon_ip_scrub._count_unscrubbed(
    tbl regclass, cols name[], exact boolean,
    OUT total bigint, OUT unscrubbed bigint[], OUT unscrubbed_rows bigint, OUT method text)
LANGUAGE sql
SET search_path = pg_catalog, pg_temp
AS $$
    WITH counts AS (
        SELECT n.*
          FROM mastodon_ip_scrub._descendants(tbl) d
          JOIN pg_class c ON c.oid = d AND c.relkind = 'r'
         CROSS JOIN LATERAL mastodon_ip_scrub._count_one(d, cols, exact) n
    ), uncounted AS (
        -- Why a member could not be counted, if one could not: then neither can the whole.
        SELECT min(method) AS why FROM counts WHERE method LIKE 'not counted%'
    )
    SELECT CASE WHEN u.why IS NULL THEN coalesce(sum(total), 0)::bigint END,
           CASE WHEN u.why IS NULL
                THEN ARRAY(SELECT sum(x.u)::bigint
                             FROM counts CROSS JOIN LATERAL unnest(counts.unscrubbed) WITH ORDINALITY AS x (u, ord)
                            GROUP BY x.ord ORDER BY x.ord) END,
           CASE WHEN u.why IS NULL THEN coalesce(sum(unscrubbed_rows), 0)::bigint END,
           coalesce(u.why, CASE WHEN bool_or(method = 'sampled') THEN 'sampled' ELSE 'exact' END)
      FROM uncounted u LEFT JOIN counts ON true   -- one row, also when there is no table to count
     GROUP BY u.why
$$;

-- Tells the admin, as a WARNING (shown even inside CREATE EXTENSION, which hides NOTICEs), how many
-- existing rows of `tbl` still hold full addresses and how to scrub them.
CREATE FUNCTION mastodon_ip_scrub._warn_unscrubbed(tbl regclass) RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_cols  name[];
    v_count record;
BEGIN
    v_cols := mastodon_ip_scrub._wanted_columns(tbl);
    IF v_cols IS NULL THEN
        RETURN;
    END IF;
    SELECT * INTO v_count FROM mastodon_ip_scrub._count_unscrubbed(tbl, v_cols, false);
    IF v_count.unscrubbed_rows > 0 THEN
        RAISE WARNING 'mastodon_ip_scrub: % existing rows of % still hold full IP addresses', v_count.unscrubbed_rows, tbl
            USING DETAIL = format('%s (%s count); new writes are scrubbed from now on.',
                                  (SELECT string_agg(format('%s: %s', quote_ident(c), u), ', ' ORDER BY ord)
                                     FROM unnest(v_cols, v_count.unscrubbed) WITH ORDINALITY AS x (c, u, ord)
                                    WHERE u > 0),
                                  v_count.method),
                  HINT = 'Scrub them, in batches that keep locks short: CALL mastodon_ip_scrub.backfill();';
    END IF;
END
$$;

CREATE FUNCTION mastodon_ip_scrub.status(exact boolean DEFAULT false)
RETURNS TABLE (
    schema_name     name,
    table_name      name,
    column_name     name,
    column_present  boolean,
    trigger_present boolean,
    trigger_enabled boolean,
    trigger_always  boolean,
    rows            bigint,
    unscrubbed_rows bigint,
    dead_rows       bigint,
    counted         text,
    scrubbing       boolean,
    mode            text,
    ipv4_prefix     integer,
    ipv6_prefix     integer)
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_settings record;
    v_table    record;
    v_count    record;
    v_dead     bigint;
    v_trigger  record;
    i          integer;
BEGIN
    SELECT * INTO v_settings FROM mastodon_ip_scrub._settings();
    FOR v_table IN
        SELECT p.schema_name AS nsp, p.table_name AS rel, c.oid AS relid,
               array_agg(p.column_name ORDER BY p.column_name) AS cols
          FROM mastodon_ip_scrub.protection p
          LEFT JOIN pg_namespace n ON n.nspname = p.schema_name
          LEFT JOIN pg_class c ON c.relnamespace = n.oid AND c.relname = p.table_name AND c.relkind IN ('r', 'p')
         GROUP BY p.schema_name, p.table_name, c.oid
         ORDER BY p.schema_name, p.table_name
    LOOP
        -- A protected table that is gone (dropped, not created yet) has nothing to count.
        SELECT NULL::bigint AS total, NULL::bigint[] AS unscrubbed, NULL::text AS method INTO v_count;
        v_dead := NULL;
        IF v_table.relid IS NOT NULL THEN
            SELECT * INTO v_count FROM mastodon_ip_scrub._count_unscrubbed(v_table.relid, v_table.cols, exact);
            SELECT sum(pg_stat_get_dead_tuples(d))::bigint INTO v_dead FROM mastodon_ip_scrub._descendants(v_table.relid) d;
        END IF;
        FOR i IN 1 .. cardinality(v_table.cols) LOOP
            SELECT * INTO v_trigger FROM mastodon_ip_scrub._trigger_state(v_table.relid, v_table.cols[i]);
            schema_name := v_table.nsp;
            table_name := v_table.rel;
            column_name := v_table.cols[i];
            column_present := EXISTS (SELECT FROM pg_attribute a
                                       WHERE a.attrelid = v_table.relid AND a.attname = v_table.cols[i]
                                         AND a.attnum > 0 AND NOT a.attisdropped);
            trigger_present := v_trigger.present;
            trigger_enabled := v_trigger.enabled;
            trigger_always := v_trigger.always;
            rows := v_count.total;
            unscrubbed_rows := v_count.unscrubbed[i];
            dead_rows := v_dead;
            counted := v_count.method;
            scrubbing := v_settings.enabled;
            mode := v_settings.mode;
            ipv4_prefix := v_settings.ipv4_prefix;
            ipv6_prefix := v_settings.ipv6_prefix;
            RETURN NEXT;
        END LOOP;
    END LOOP;
END
$$;
COMMENT ON FUNCTION mastodon_ip_scrub.status(boolean) IS
    'One row per protected column: trigger state, rows, rows not yet scrubbed under the current settings (sampled on tables over 20 MB unless exact), dead row versions awaiting VACUUM, settings.';

CREATE FUNCTION mastodon_ip_scrub.audit()
RETURNS TABLE (schema_name name, table_name name, column_name name, data_type text, suggestion text)
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT x.nspname, x.relname, x.attname, x.data_type, x.suggestion FROM (
    SELECT n.nspname, c.relname, a.attname, a.attnum::integer AS ord, format_type(a.atttypid, a.atttypmod) AS data_type,
           CASE WHEN a.attgenerated = 's'
                THEN format('ALTER TABLE %s ALTER COLUMN %I DROP EXPRESSION;  -- generated: no trigger can scrub it',
                            c.oid::regclass::text, a.attname)
                WHEN a.attgenerated = 'v'  -- PostgreSQL 18+
                THEN format('SELECT mastodon_ip_scrub.exempt(%L, %L, %L);', c.oid::regclass::text, a.attname,
                            'virtual generated column: stores nothing')
                WHEN p.column_name IS NOT NULL
                THEN format('ALTER TABLE %s ALTER COLUMN %I TYPE inet;  -- protected, but holds no address type',
                            c.oid::regclass::text, a.attname)
                WHEN mastodon_ip_scrub._address_base(a.atttypid) AND NOT (c.relname = 'ip_blocks' AND a.attname = 'ip')
                THEN format('SELECT mastodon_ip_scrub.protect(%L, %L);', c.oid::regclass::text, a.attname)
                ELSE format('SELECT mastodon_ip_scrub.exempt(%L, %L, %L);', c.oid::regclass::text, a.attname,
                            'why it holds no client addresses')
           END AS suggestion
      FROM pg_attribute a
      JOIN pg_class c ON c.oid = a.attrelid
      JOIN pg_namespace n ON n.oid = c.relnamespace
      LEFT JOIN mastodon_ip_scrub.protection p
             ON p.schema_name = n.nspname AND p.table_name = c.relname AND p.column_name = a.attname
     WHERE c.relkind IN ('r', 'p') AND NOT c.relispartition
       AND a.attnum > 0 AND NOT a.attisdropped
       AND n.nspname NOT IN ('pg_catalog', 'information_schema', 'mastodon_ip_scrub')
       AND n.nspname NOT LIKE 'pg\_%'
       AND (mastodon_ip_scrub._address_type(a.atttypid) OR p.column_name IS NOT NULL)
       -- Protected columns only when their type drifted to one that holds no address (the
       -- trigger stores NULL there) or they became generated (unscrubbable).
       AND (p.column_name IS NULL OR NOT mastodon_ip_scrub._address_base(a.atttypid) OR a.attgenerated <> '')
       AND NOT EXISTS (SELECT FROM mastodon_ip_scrub.exemption e
                        WHERE e.schema_name = n.nspname AND e.table_name = c.relname AND e.column_name = a.attname)
    UNION ALL
    -- Rules on protected tables (and their partitions and children): they rewrite Mastodon's own
    -- writes before the trigger sees them. The event triggers refuse new ones; these came before.
    SELECT n.nspname, c.relname, NULL::name, 100000, 'rule ' || quote_ident(r.rulename),
           format('DROP RULE %I ON %s;  -- rewrites writes to a protected table before its trigger runs',
                  r.rulename, c.oid::regclass::text)
      FROM pg_rewrite r
      JOIN pg_class c ON c.oid = r.ev_class
      JOIN pg_namespace n ON n.oid = c.relnamespace
     WHERE r.rulename <> '_RETURN'
       AND EXISTS (SELECT FROM pg_trigger t WHERE t.tgrelid = c.oid AND t.tgfoid = mastodon_ip_scrub._scrub_function())
    UNION ALL
    -- lo_compat_privileges lets every role write every large object, the one that keeps what is
    -- protected too (sql/config_store.sql).
    SELECT NULL, NULL, NULL, 200000, 'setting lo_compat_privileges',
           'ALTER SYSTEM SET lo_compat_privileges = off; SELECT pg_reload_conf();  -- lets any role rewrite what is protected'
     WHERE current_setting('lo_compat_privileges')::boolean
    ) x
    ORDER BY x.nspname, x.relname, x.ord, x.data_type
$$;
COMMENT ON FUNCTION mastodon_ip_scrub.audit() IS
    'Every inet, cidr or inet[] column that is neither protected nor exempt, every protected column no longer a plain inet column, every rule on a protected table, and lo_compat_privileges if on, with the statement that settles it.';

CREATE FUNCTION mastodon_ip_scrub.exempt(tbl regclass, col name, reason text) RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_key  record;
    v_type oid;
BEGIN
    PERFORM mastodon_ip_scrub._primary_only('exempt()');
    IF reason IS NULL OR btrim(reason) = '' THEN
        RAISE EXCEPTION 'mastodon_ip_scrub.exempt: give the reason column "%" of table % holds no client addresses', col, tbl
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = format('SELECT mastodon_ip_scrub.exempt(%L, %L, ''admin-entered ranges'');', tbl::text, col);
    END IF;
    SELECT a.atttypid INTO v_type
      FROM pg_attribute a
     WHERE a.attrelid = tbl AND a.attname = col AND a.attnum > 0 AND NOT a.attisdropped;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'mastodon_ip_scrub.exempt: column "%" of table % does not exist', col, tbl
            USING ERRCODE = 'undefined_column',
                  HINT = 'SELECT * FROM mastodon_ip_scrub.audit(); lists the address columns that need a decision.';
    END IF;
    IF NOT mastodon_ip_scrub._address_type(v_type) THEN
        RAISE EXCEPTION 'mastodon_ip_scrub.exempt: column "%" of table % has type %, which holds no IP address', col, tbl, format_type(v_type, NULL)
            USING ERRCODE = 'datatype_mismatch',
                  HINT = 'Only inet, cidr and inet[] columns need protecting or exempting.';
    END IF;
    SELECT * INTO v_key FROM mastodon_ip_scrub._table_key(tbl);
    IF EXISTS (SELECT FROM mastodon_ip_scrub.protection p
                WHERE p.schema_name = v_key.schema_name AND p.table_name = v_key.table_name AND p.column_name = col) THEN
        RAISE EXCEPTION 'mastodon_ip_scrub.exempt: column "%" of table % is protected', col, tbl
            USING ERRCODE = 'object_in_use',
                  HINT = format('Stop protecting it first: SELECT mastodon_ip_scrub.unprotect(%L, %L);', tbl::text, col);
    END IF;
    -- An exemption already there is replaced (sql/config_store.sql): the new reason, no longer builtin.
    INSERT INTO mastodon_ip_scrub.exemption (schema_name, table_name, column_name, reason)
    VALUES (v_key.schema_name, v_key.table_name, col, reason);
END
$$;
COMMENT ON FUNCTION mastodon_ip_scrub.exempt(regclass, name, text) IS
    'Record that an address column is deliberately left unprotected, and why; audit() then skips it.';

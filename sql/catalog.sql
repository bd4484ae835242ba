-- The catalog of protection: how the extension names a table (by schema and name), reads a scrub
-- trigger (its function, its arguments, how it fires), walks a table's partitions, inheritance
-- children and ancestors, recognises a column that holds addresses, and tells whether a table's
-- owner sees all its rows. Only catalogs are read here; what is protected is kept in
-- sql/config_store.sql.

-- The scrub trigger's name on every protected table: the one place the SQL spells it (the C side
-- has it as catalog::TRIGGER_NAME; a test checks they agree). `zz_` makes it the last BEFORE row
-- trigger to fire, as PostgreSQL fires them in name order.
CREATE FUNCTION mastodon_ip_scrub._trigger_name() RETURNS name
LANGUAGE sql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT 'zz_mastodon_ip_scrub'::name
$$;

-- How protection names a table: by schema and name, so a table dropped and created again
-- (a schema reload) or restored from a dump is still recognized.
CREATE FUNCTION mastodon_ip_scrub._table_key(tbl regclass, OUT schema_name name, OUT table_name name)
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT n.nspname, c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.oid = tbl
$$;

-- The column names a trigger passes its function (pg_trigger.tgargs: each NUL-terminated).
CREATE FUNCTION mastodon_ip_scrub._trigger_args(args bytea) RETURNS name[]
LANGUAGE plpgsql IMMUTABLE STRICT
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_names name[] := '{}';
    v_end   integer;
BEGIN
    LOOP
        v_end := position('\x00'::bytea IN args);
        EXIT WHEN v_end = 0;
        v_names := v_names || convert_from(substring(args FROM 1 FOR v_end - 1), current_setting('server_encoding'))::name;
        args := substring(args FROM v_end + 1);
    END LOOP;
    RETURN v_names;
END
$$;

-- The trigger function: what identifies a scrub trigger, whatever it is called.
CREATE FUNCTION mastodon_ip_scrub._scrub_function() RETURNS oid
LANGUAGE sql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT 'mastodon_ip_scrub.scrub_trigger()'::regprocedure::oid
$$;

-- The table that carries `rel`'s trigger: the root of its partition tree, else `rel` itself.
CREATE FUNCTION mastodon_ip_scrub._trigger_home(rel regclass) RETURNS regclass
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT CASE WHEN c.relispartition THEN pg_partition_root(rel) ELSE rel END
      FROM pg_class c WHERE c.oid = rel
$$;

-- The table and, when it is partitioned, every partition below it.
CREATE FUNCTION mastodon_ip_scrub._table_tree(tbl regclass, OUT relid regclass, OUT level integer)
RETURNS SETOF record
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT tbl, 0
    UNION
    SELECT t.relid, t.level FROM pg_partition_tree(tbl) t
$$;

-- The table and every table that inherits from it at any depth, partitions and inheritance
-- children alike: what a query on the table reads.
CREATE FUNCTION mastodon_ip_scrub._descendants(tbl regclass) RETURNS SETOF regclass
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    WITH RECURSIVE d (relid) AS (
        SELECT tbl::oid
        UNION
        SELECT i.inhrelid FROM pg_inherits i JOIN d ON i.inhparent = d.relid
    )
    SELECT relid::regclass FROM d
$$;

-- Whether trigger `trg` is exactly the scrub trigger for `cols`: BEFORE INSERT OR UPDATE FOR EACH
-- ROW, no WHEN, no UPDATE OF, not a constraint trigger, no transition tables, our function with
-- exactly those arguments. Anything else is replaced, whoever changed it.
CREATE FUNCTION mastodon_ip_scrub._is_exact_trigger(trg oid, cols name[]) RETURNS boolean
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT coalesce(bool_and(t.tgname = mastodon_ip_scrub._trigger_name()
                             AND t.tgfoid = mastodon_ip_scrub._scrub_function()
                             AND t.tgtype = 1 | 2 | 4 | 16   -- ROW, BEFORE, INSERT, UPDATE
                             AND t.tgqual IS NULL AND t.tgattr = ''::int2vector
                             AND t.tgconstraint = 0 AND NOT t.tgdeferrable
                             AND t.tgoldtable IS NULL AND t.tgnewtable IS NULL
                             AND mastodon_ip_scrub._trigger_args(t.tgargs) = cols), false)
      FROM pg_trigger t WHERE t.oid = trg
$$;

-- Whether the scrub trigger on table `relid` names `col`, and how it is enabled.
CREATE FUNCTION mastodon_ip_scrub._trigger_state(relid oid, col name,
    OUT present boolean, OUT enabled boolean, OUT always boolean)
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT count(t.oid) > 0,
           coalesce(bool_or(t.tgenabled IN ('O', 'A')), false),
           coalesce(bool_or(t.tgenabled = 'A'), false)
      FROM pg_trigger t
     WHERE t.tgrelid = relid AND t.tgname = mastodon_ip_scrub._trigger_name()
       AND t.tgfoid = mastodon_ip_scrub._scrub_function()
       AND col = ANY (mastodon_ip_scrub._trigger_args(t.tgargs))
$$;

-- The type under any domains over `typ`: what the trigger sees.
CREATE FUNCTION mastodon_ip_scrub._base_type(typ oid) RETURNS oid
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    WITH RECURSIVE base (oid, depth) AS (
        SELECT typ, 0
        UNION ALL
        SELECT t.typbasetype, b.depth + 1 FROM base b JOIN pg_type t ON t.oid = b.oid
         WHERE t.typtype = 'd' AND b.depth < 8
    )
    SELECT oid FROM base ORDER BY depth DESC LIMIT 1
$$;

-- Whether a column of type `typ` holds addresses the trigger scrubs: inet, cidr, or a domain over
-- either (not arrays).
CREATE FUNCTION mastodon_ip_scrub._address_base(typ oid) RETURNS boolean
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT mastodon_ip_scrub._base_type(typ) IN ('inet'::regtype, 'cidr'::regtype)
$$;

-- Whether a column of type `typ` holds addresses at all (what audit() reports): an address type,
-- or an array of one, seen through domains.
CREATE FUNCTION mastodon_ip_scrub._address_type(typ oid) RETURNS boolean
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT mastodon_ip_scrub._address_base(typ)
        OR coalesce((SELECT mastodon_ip_scrub._address_base(t.typelem) FROM pg_type t
                      WHERE t.oid = mastodon_ip_scrub._base_type(typ) AND t.typcategory = 'A'), false)
$$;

-- Whether `tbl` forces row-level security on its owner: its policies would then hide rows from
-- the owner, as which the extension reads and scrubs it.
CREATE FUNCTION mastodon_ip_scrub._owner_sees_all(tbl regclass) RETURNS boolean
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT NOT (c.relrowsecurity AND c.relforcerowsecurity) FROM pg_class c WHERE c.oid = tbl
$$;

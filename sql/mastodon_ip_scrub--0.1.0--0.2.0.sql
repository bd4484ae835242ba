-- mastodon_ip_scrub 0.1.0 -> 0.2.0, run by ALTER EXTENSION mastodon_ip_scrub UPDATE.
--
-- 0.2.0 is the security hardening (the application role can neither switch protection off nor gain
-- rights through the extension; DDL that writes without row triggers is scrubbed or refused). This
-- script brings a 0.1.0 installation to exactly what CREATE EXTENSION makes in 0.2.0, keeping the
-- protection and exemption tables, their rows, the scrub triggers and the settings as they are.
-- Everything happens in the one transaction ALTER EXTENSION runs: other sessions see 0.1.0 until it
-- commits, then 0.2.0, and the scrub triggers on the application's tables are never absent.
--
-- Both libraries serve both versions of the SQL: the 0.2.0 library still answers to every C symbol
-- 0.1.0's objects name, and 0.2.0's write path (scrub_trigger, _stored, _pending, _update_needed)
-- names only symbols 0.1.0 has, so sessions that loaded the old library before the package upgrade
-- keep scrubbing until they reconnect.
\echo Use "ALTER EXTENSION mastodon_ip_scrub UPDATE TO '0.2.0'" to load this file. \quit

-- As in CREATE EXTENSION (sql/bootstrap.sql): the schema must be a superuser's. A 0.1.0 installation
-- took a schema of that name as it found it.
DO $$
DECLARE
    v_owner name;
BEGIN
    SELECT r.rolname INTO v_owner
      FROM pg_catalog.pg_namespace n JOIN pg_catalog.pg_roles r ON r.oid = n.nspowner
     WHERE n.nspname = 'mastodon_ip_scrub' AND NOT r.rolsuper;
    IF FOUND THEN
        RAISE EXCEPTION 'mastodon_ip_scrub: schema mastodon_ip_scrub belongs to %, who is not a superuser', v_owner
            USING ERRCODE = 'insufficient_privilege',
                  HINT = 'Check the schema''s contents, give it to a superuser (ALTER SCHEMA mastodon_ip_scrub OWNER TO postgres), then ALTER EXTENSION mastodon_ip_scrub UPDATE again.';
    END IF;
END
$$;

-- This session must run the 0.2.0 library: a server that preloads the library for every session
-- (shared_preload_libraries) keeps the one it started with until it restarts, and a session keeps
-- the one it loaded until it ends. C functions are checked against the loaded library.
DO $$
BEGIN
    CREATE FUNCTION mastodon_ip_scrub._library_probe() RETURNS void
        LANGUAGE c AS 'MODULE_PATHNAME', 'internal_ddl_wrapper';
    DROP FUNCTION mastodon_ip_scrub._library_probe();
EXCEPTION WHEN undefined_function THEN
    RAISE EXCEPTION 'mastodon_ip_scrub: this session runs the library of an older version, not 0.2.0''s'
        USING ERRCODE = 'object_not_in_prerequisite_state',
              DETAIL = SQLERRM,
              HINT = 'If shared_preload_libraries names mastodon_ip_scrub, restart PostgreSQL; otherwise connect again. Then run ALTER EXTENSION mastodon_ip_scrub UPDATE.';
END
$$;

-- 0.1.0's event triggers go first: they would otherwise fire on this script's own commands while
-- the functions they call are being replaced. 0.2.0's are created at the end.
DROP EVENT TRIGGER mastodon_ip_scrub_before_create_trigger;
DROP EVENT TRIGGER mastodon_ip_scrub_after_ddl;
DROP EVENT TRIGGER mastodon_ip_scrub_after_drop;

-- Functions 0.2.0 no longer has, or has with other arguments (CREATE OR REPLACE cannot change
-- those). Nothing but functions of this extension calls them.
DROP FUNCTION mastodon_ip_scrub._before_create_trigger();
DROP FUNCTION mastodon_ip_scrub._check_protectable(regclass, name[]);
DROP FUNCTION mastodon_ip_scrub._follow_rename(regclass, name, name, name);
DROP FUNCTION mastodon_ip_scrub._protect_known(regclass, boolean, boolean);
DROP FUNCTION mastodon_ip_scrub._protected_table(regclass);
DROP FUNCTION mastodon_ip_scrub._scrub_range(text, tid, tid, text);
DROP FUNCTION mastodon_ip_scrub._sync_trigger(regclass);

-- 0.2.0's definitions, in the order CREATE EXTENSION creates them.
-- The row trigger is written in C-ABI Rust by hand (src/trigger.rs) so it can keep a per-statement
-- plan in fn_extra; pgrx's #[pg_trigger] wrapper does not expose the FmgrInfo.
CREATE OR REPLACE FUNCTION mastodon_ip_scrub.scrub_trigger() RETURNS trigger
LANGUAGE c
AS 'MODULE_PATHNAME', 'scrub_trigger';
COMMENT ON FUNCTION mastodon_ip_scrub.scrub_trigger() IS
    'BEFORE INSERT OR UPDATE FOR EACH ROW trigger; its arguments name the columns to anonymize.';

-- Which columns are protected, and the triggers that enforce it.
--
-- The protection table records what the admin (or auto-protection) asked for, by schema, table
-- and column name, so a table dropped and created again (`rails db:schema:load`) or restored from
-- a dump is protected again. It is kept by pg_dump.
--
-- What enforces it is the scrub trigger: zz_mastodon_ip_scrub, running
-- mastodon_ip_scrub.scrub_trigger() with the protected column names as arguments (the trigger
-- reads them from its own definition, so no write ever queries this table). A trigger belongs to
-- its table by OID and so follows every rename; the extension recognises its triggers by their
-- function, and refuses to let anyone but itself drop, rename, disable or redefine them.
-- The zz_ prefix makes it run after the application's BEFORE triggers (PostgreSQL fires them in
-- name order), so none of those can put a full address back. The trigger names columns, it does
-- not depend on them: a Mastodon migration can still DROP COLUMN, where an `UPDATE OF col`
-- trigger would make it fail.
--
-- Hierarchies: a partitioned table's trigger is cloned by PostgreSQL onto every partition, and
-- carries the protection of every member of the tree (partitions share the columns' names); an
-- inheritance child gets a trigger of its own with its ancestors' protection added to its own.

COMMENT ON TABLE mastodon_ip_scrub.protection IS
    'Columns whose written IP addresses are anonymized. Change with protect() / unprotect().';

-- How the protection table names a table: by schema and name, so a table dropped and created again
-- (a schema reload) or restored from a dump is still recognized.
CREATE OR REPLACE FUNCTION mastodon_ip_scrub._table_key(tbl regclass, OUT schema_name name, OUT table_name name)
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT n.nspname, c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.oid = tbl
$$;

-- The column names protected under `tbl`'s own name, sorted; NULL when none.
CREATE OR REPLACE FUNCTION mastodon_ip_scrub._protected_names(tbl regclass) RETURNS name[]
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT array_agg(p.column_name ORDER BY p.column_name)
      FROM mastodon_ip_scrub.protection p
      JOIN mastodon_ip_scrub._table_key(tbl) k USING (schema_name, table_name)
$$;

-- The column names a trigger passes its function (pg_trigger.tgargs: each NUL-terminated).
CREATE OR REPLACE FUNCTION mastodon_ip_scrub._trigger_args(args bytea) RETURNS name[]
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
CREATE OR REPLACE FUNCTION mastodon_ip_scrub._scrub_function() RETURNS oid
LANGUAGE sql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT 'mastodon_ip_scrub.scrub_trigger()'::regprocedure::oid
$$;

-- The table that carries `rel`'s trigger: the root of its partition tree, else `rel` itself.
CREATE OR REPLACE FUNCTION mastodon_ip_scrub._trigger_home(rel regclass) RETURNS regclass
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT CASE WHEN c.relispartition THEN pg_partition_root(rel) ELSE rel END
      FROM pg_class c WHERE c.oid = rel
$$;

-- The table and, when it is partitioned, every partition below it.
CREATE OR REPLACE FUNCTION mastodon_ip_scrub._table_tree(tbl regclass, OUT relid regclass, OUT level integer)
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
CREATE OR REPLACE FUNCTION mastodon_ip_scrub._descendants(tbl regclass) RETURNS SETOF regclass
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

-- What the trigger on `home` (a _trigger_home) must protect, and whether it fires on replicas:
-- the protection under its own name, under the name of every member of its partition tree, and
-- under the name of every table it inherits from.
CREATE OR REPLACE FUNCTION mastodon_ip_scrub._wanted(home regclass, OUT cols name[], OUT replicas boolean)
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    WITH RECURSIVE ancestors (relid) AS (
        SELECT home::oid
        UNION
        SELECT i.inhparent FROM pg_inherits i JOIN ancestors a ON i.inhrelid = a.relid
    ), members (relid) AS (
        SELECT relid FROM ancestors
        UNION
        SELECT t.relid::oid FROM mastodon_ip_scrub._table_tree(home) t
    )
    SELECT array_agg(DISTINCT p.column_name ORDER BY p.column_name), bool_or(p.replicas)
      FROM members m
      JOIN pg_class c ON c.oid = m.relid
      JOIN pg_namespace n ON n.oid = c.relnamespace
      JOIN mastodon_ip_scrub.protection p ON (p.schema_name, p.table_name) = (n.nspname, c.relname)
$$;

-- The columns the trigger of `tbl`'s home protects (see _trigger_home, _wanted); NULL when none.
CREATE OR REPLACE FUNCTION mastodon_ip_scrub._wanted_columns(tbl regclass) RETURNS name[]
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT (mastodon_ip_scrub._wanted(mastodon_ip_scrub._trigger_home(tbl))).cols
$$;

-- Whether trigger `trg` is exactly the scrub trigger for `cols`: BEFORE INSERT OR UPDATE FOR EACH
-- ROW, no WHEN, no UPDATE OF, not a constraint trigger, no transition tables, our function with
-- exactly those arguments. Anything else is replaced, whoever changed it.
CREATE OR REPLACE FUNCTION mastodon_ip_scrub._is_exact_trigger(trg oid, cols name[]) RETURNS boolean
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT coalesce(bool_and(t.tgname = 'zz_mastodon_ip_scrub'
                             AND t.tgfoid = mastodon_ip_scrub._scrub_function()
                             AND t.tgtype = 1 | 2 | 4 | 16   -- ROW, BEFORE, INSERT, UPDATE
                             AND t.tgqual IS NULL AND t.tgattr = ''::int2vector
                             AND t.tgconstraint = 0 AND NOT t.tgdeferrable
                             AND t.tgoldtable IS NULL AND t.tgnewtable IS NULL
                             AND mastodon_ip_scrub._trigger_args(t.tgargs) = cols), false)
      FROM pg_trigger t WHERE t.oid = trg
$$;

-- Whether the scrub trigger on table `relid` names `col`, and how it is enabled.
CREATE OR REPLACE FUNCTION mastodon_ip_scrub._trigger_state(relid oid, col name,
    OUT present boolean, OUT enabled boolean, OUT always boolean)
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT count(t.oid) > 0,
           coalesce(bool_or(t.tgenabled IN ('O', 'A')), false),
           coalesce(bool_or(t.tgenabled = 'A'), false)
      FROM pg_trigger t
     WHERE t.tgrelid = relid AND t.tgname = 'zz_mastodon_ip_scrub'
       AND t.tgfoid = mastodon_ip_scrub._scrub_function()
       AND col = ANY (mastodon_ip_scrub._trigger_args(t.tgargs))
$$;

-- Makes the trigger of `rel`'s home (see _trigger_home) match what is wanted (_wanted): created,
-- re-created exactly, enabled (ALWAYS when a row asks for replicas) on the home and every
-- partition, or dropped when nothing is protected there any more; then the same for every
-- inheritance child, whose protection includes the home's. Returns what it did on the home:
-- 'created', 'updated', 'enabled', 'dropped' or NULL. Refuses a table where another BEFORE row
-- trigger would run after ours, since it could write the full address back.
-- The DDL names the table; the table is then checked by OID, so a rename racing with this
-- function fails it instead of moving the trigger elsewhere.
CREATE OR REPLACE FUNCTION mastodon_ip_scrub._sync_trigger(rel regclass) RETURNS text
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_home    regclass := mastodon_ip_scrub._trigger_home(rel);
    v_want    record;
    v_state   "char";
    v_trigger oid;
    v_member  record;
    v_action  text;
    v_late    text;
    v_wrong   boolean;
BEGIN
    IF v_home IS NULL THEN
        RETURN NULL;
    END IF;
    SELECT * INTO v_want FROM mastodon_ip_scrub._wanted(v_home);
    v_state := CASE WHEN v_want.replicas THEN 'A' ELSE 'O' END;
    SELECT t.oid INTO v_trigger FROM pg_trigger t
     WHERE t.tgrelid = v_home AND t.tgname = 'zz_mastodon_ip_scrub';

    IF v_want.cols IS NULL THEN
        IF v_trigger IS NOT NULL AND EXISTS (SELECT FROM pg_trigger t WHERE t.oid = v_trigger
                                               AND t.tgfoid = mastodon_ip_scrub._scrub_function()) THEN
            PERFORM mastodon_ip_scrub._internal_ddl(format('DROP TRIGGER zz_mastodon_ip_scrub ON %s', v_home));
            v_action := 'dropped';
        END IF;
    ELSE
        -- PostgreSQL fires BEFORE row triggers in name order (byte-wise): ours must come last.
        SELECT string_agg(format('%I on %s', t.tgname, t.tgrelid::regclass), ', ') INTO v_late
          FROM mastodon_ip_scrub._table_tree(v_home) part
          JOIN pg_trigger t ON t.tgrelid = part.relid
         WHERE t.tgname > 'zz_mastodon_ip_scrub'::name AND t.tgenabled <> 'D' AND NOT t.tgisinternal
           AND t.tgtype::integer & 3 = 3             -- ROW, BEFORE
           AND t.tgtype::integer & 64 = 0            -- not INSTEAD OF
           AND t.tgtype::integer & (4 | 16) <> 0;    -- INSERT or UPDATE
        IF v_late IS NOT NULL THEN
            RAISE EXCEPTION 'mastodon_ip_scrub: trigger % would run after zz_mastodon_ip_scrub and could write full IP addresses back into %', v_late, v_home
                USING ERRCODE = 'object_not_in_prerequisite_state',
                      DETAIL = format('Protected columns of %s: %s.', v_home, array_to_string(v_want.cols, ', ')),
                      HINT = 'PostgreSQL fires BEFORE row triggers in name order: rename that trigger so it sorts before "zz_mastodon_ip_scrub".';
        END IF;

        IF NOT mastodon_ip_scrub._is_exact_trigger(v_trigger, v_want.cols) THEN
            v_action := CASE WHEN v_trigger IS NULL THEN 'created' ELSE 'updated' END;
            PERFORM mastodon_ip_scrub._internal_ddl(format(
                'CREATE OR REPLACE TRIGGER zz_mastodon_ip_scrub BEFORE INSERT OR UPDATE ON %s '
                'FOR EACH ROW EXECUTE FUNCTION mastodon_ip_scrub.scrub_trigger(%s)',
                v_home, (SELECT string_agg(quote_literal(c), ', ') FROM unnest(v_want.cols) AS c)));
        END IF;

        -- A partitioned table's trigger is cloned onto each partition, each with its own state.
        -- The state is read again per table: enabling the parent may already have enabled the rest.
        FOR v_member IN
            SELECT t.oid, t.tgrelid::regclass AS rel
              FROM mastodon_ip_scrub._table_tree(v_home) part
              JOIN pg_trigger t ON t.tgrelid = part.relid AND t.tgname = 'zz_mastodon_ip_scrub'
             ORDER BY part.level
        LOOP
            IF (SELECT t.tgenabled FROM pg_trigger t WHERE t.oid = v_member.oid) <> v_state THEN
                PERFORM mastodon_ip_scrub._internal_ddl(format(
                    'ALTER TABLE %s ENABLE %s TRIGGER zz_mastodon_ip_scrub',
                    v_member.rel, CASE WHEN v_state = 'A' THEN 'ALWAYS' ELSE '' END));
                v_action := coalesce(v_action, 'enabled');
            END IF;
        END LOOP;
    END IF;

    -- The result, checked by OID.
    SELECT t.oid INTO v_trigger FROM pg_trigger t
     WHERE t.tgrelid = v_home AND t.tgname = 'zz_mastodon_ip_scrub';
    IF v_want.cols IS NULL THEN
        v_wrong := v_trigger IS NOT NULL AND EXISTS (SELECT FROM pg_trigger t WHERE t.oid = v_trigger
                                                       AND t.tgfoid = mastodon_ip_scrub._scrub_function());
    ELSE
        v_wrong := NOT mastodon_ip_scrub._is_exact_trigger(v_trigger, v_want.cols)
                   OR EXISTS (SELECT FROM mastodon_ip_scrub._table_tree(v_home) part
                               WHERE NOT EXISTS (SELECT FROM pg_trigger t
                                                  WHERE t.tgrelid = part.relid AND t.tgname = 'zz_mastodon_ip_scrub'
                                                    AND t.tgfoid = mastodon_ip_scrub._scrub_function()
                                                    AND t.tgenabled = v_state));
    END IF;
    IF v_wrong THEN
        RAISE EXCEPTION 'mastodon_ip_scrub: the scrub trigger of % could not be brought in line', v_home
            USING ERRCODE = 'object_not_in_prerequisite_state',
                  HINT = 'Was the table or its schema renamed at the same moment? Try again.';
    END IF;

    -- Inheritance children (partitions are done above) carry a trigger of their own.
    PERFORM mastodon_ip_scrub._sync_trigger(i.inhrelid::regclass)
       FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
      WHERE i.inhparent = v_home AND NOT c.relispartition;
    RETURN v_action;
END
$$;

-- Brings in line the trigger of every table (and its hierarchy) named by protection rows with key
-- (schema_name, table_name): what the protection table's own triggers call.
CREATE OR REPLACE FUNCTION mastodon_ip_scrub._sync_named(schema_name name, table_name name) RETURNS void
LANGUAGE sql
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT mastodon_ip_scrub._sync_trigger(c.oid)
      FROM pg_namespace n JOIN pg_class c ON c.relnamespace = n.oid
     WHERE n.nspname = _sync_named.schema_name AND c.relname = _sync_named.table_name
       AND c.relkind IN ('r', 'p')
$$;

-- Validates the table and every named column; raises before anything is changed. A column must
-- hold addresses (inet, cidr, or a domain over them) unless `any_type`: auto-protection takes a
-- Mastodon IP column of any type, whose writes the trigger then turns into NULL.
CREATE OR REPLACE FUNCTION mastodon_ip_scrub._check_protectable(tbl regclass, cols name[], any_type boolean DEFAULT false) RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_relkind "char";
    v_relname name;
    v_part    boolean;
    v_col     name;
    v_type    oid;
    v_gen     "char";
BEGIN
    SELECT c.relkind, c.relname, c.relispartition INTO v_relkind, v_relname, v_part FROM pg_class c WHERE c.oid = tbl;
    IF v_relkind NOT IN ('r', 'p') THEN
        RAISE EXCEPTION 'mastodon_ip_scrub.protect: % is not a table', tbl
            USING ERRCODE = 'wrong_object_type',
                  HINT = 'Protect the table that stores the addresses, not a view or index.';
    END IF;
    IF v_part THEN
        RAISE EXCEPTION 'mastodon_ip_scrub.protect: % is a partition', tbl
            USING ERRCODE = 'wrong_object_type',
                  HINT = format('Protect the partitioned table: SELECT mastodon_ip_scrub.protect(%L, ...); covers every partition.',
                                mastodon_ip_scrub._trigger_home(tbl)::text);
    END IF;
    IF cols IS NULL OR cardinality(cols) = 0 THEN
        RAISE EXCEPTION 'mastodon_ip_scrub.protect: no column of table % named', tbl
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = format('Name the columns: SELECT mastodon_ip_scrub.protect(%L, ''ip'');', tbl::text);
    END IF;

    FOREACH v_col IN ARRAY cols LOOP
        SELECT a.atttypid, a.attgenerated INTO v_type, v_gen
          FROM pg_attribute a
         WHERE a.attrelid = tbl AND a.attname = v_col AND a.attnum > 0 AND NOT a.attisdropped;
        IF NOT FOUND THEN
            RAISE EXCEPTION 'mastodon_ip_scrub.protect: column "%" of table % does not exist', v_col, tbl
                USING ERRCODE = 'undefined_column',
                      HINT = coalesce(
                          'Address columns of ' || tbl::text || ': ' || (
                              SELECT string_agg(quote_ident(a.attname), ', ' ORDER BY a.attnum)
                                FROM pg_attribute a
                               WHERE a.attrelid = tbl AND mastodon_ip_scrub._address_base(a.atttypid)
                                 AND a.attnum > 0 AND NOT a.attisdropped) || '.',
                          'Table ' || tbl::text || ' has no column of type inet or cidr.');
        END IF;
        IF v_relname = 'ip_blocks' AND v_col = 'ip' THEN
            RAISE EXCEPTION 'mastodon_ip_scrub.protect: refusing to protect %.ip: it holds the IP ranges an admin blocked, not client addresses', tbl
                USING ERRCODE = 'invalid_parameter_value',
                      DETAIL = 'Truncating a blocked range to the configured prefix would widen the block to every address in that prefix.',
                      HINT = 'Leave ip_blocks.ip unprotected; Mastodon checks blocks against the live request address.';
        END IF;
        IF NOT any_type AND NOT mastodon_ip_scrub._address_base(v_type) THEN
            RAISE EXCEPTION 'mastodon_ip_scrub.protect: column "%" of table % has type %, which holds no IP address', v_col, tbl, format_type(v_type, NULL)
                USING ERRCODE = 'datatype_mismatch',
                      HINT = 'Only columns of type inet or cidr (or a domain over them) holding client addresses can be protected.';
        END IF;
        -- PostgreSQL computes a generated column after BEFORE triggers: no trigger can scrub it.
        IF v_gen <> '' THEN
            RAISE EXCEPTION 'mastodon_ip_scrub.protect: column "%" of table % is a generated column, which no trigger can change', v_col, tbl
                USING ERRCODE = 'feature_not_supported',
                      HINT = CASE v_gen
                                 WHEN 'v' THEN 'A virtual generated column stores nothing: the addresses are in the columns it is computed from.'
                                 ELSE format('Store the addresses in a plain column: ALTER TABLE %s ALTER COLUMN %I DROP EXPRESSION; then protect it.', tbl::text, v_col)
                             END;
        END IF;
    END LOOP;
END
$$;

-- A rule on a protected table rewrites Mastodon's own INSERT and UPDATE before any trigger sees
-- them (DO INSTEAD sends them elsewhere, DO ALSO copies NEW's full address): the event triggers
-- refuse new ones, protect() warns about existing ones, audit() lists them.
CREATE OR REPLACE FUNCTION mastodon_ip_scrub._rules_of(tbl regclass) RETURNS text
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT string_agg(format('%I on %s', r.rulename, r.ev_class::regclass), ', ' ORDER BY r.rulename)
      FROM mastodon_ip_scrub._descendants(tbl) d
      JOIN pg_rewrite r ON r.ev_class = d AND r.rulename <> '_RETURN'
$$;

-- protect() without what it tells the admin afterwards (_warn_protected); `any_type` as for
-- _check_protectable.
CREATE OR REPLACE FUNCTION mastodon_ip_scrub._protect(tbl regclass, cols name[], replicas boolean, any_type boolean DEFAULT false) RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    PERFORM mastodon_ip_scrub._check_protectable(tbl, cols, any_type);
    IF replicas IS NULL THEN
        RAISE EXCEPTION 'mastodon_ip_scrub.protect: replicas must be true or false'
            USING ERRCODE = 'null_value_not_allowed';
    END IF;
    -- Protecting a column settles an earlier decision to leave it alone.
    DELETE FROM mastodon_ip_scrub.exemption e
     USING mastodon_ip_scrub._table_key(tbl) k
     WHERE e.schema_name = k.schema_name AND e.table_name = k.table_name AND e.column_name = ANY (cols);
    -- Row triggers on the protection table bring the table's trigger in line.
    INSERT INTO mastodon_ip_scrub.protection (schema_name, table_name, column_name, replicas)
    SELECT k.schema_name, k.table_name, col, replicas
      FROM mastodon_ip_scrub._table_key(tbl) k CROSS JOIN unnest(cols) AS col;
    -- The choice applies to the table's one trigger, so to every column protected on it.
    UPDATE mastodon_ip_scrub.protection p SET replicas = _protect.replicas
      FROM mastodon_ip_scrub._table_key(tbl) k
     WHERE p.schema_name = k.schema_name AND p.table_name = k.table_name AND p.replicas <> _protect.replicas;
END
$$;

-- What an admin is told after protecting `tbl`: rules that defeat the trigger (see _rules_of),
-- and how many existing rows still hold full addresses.
CREATE OR REPLACE FUNCTION mastodon_ip_scrub._warn_protected(tbl regclass) RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_rules text := mastodon_ip_scrub._rules_of(tbl);
BEGIN
    IF v_rules IS NOT NULL THEN
        RAISE WARNING 'mastodon_ip_scrub: rules % rewrite writes to % before its trigger sees them', v_rules, tbl
            USING DETAIL = 'A rule can send the full address to another table, or copy it there.',
                  HINT = 'Drop the rules; SELECT * FROM mastodon_ip_scrub.audit(); lists them.';
    END IF;
    PERFORM mastodon_ip_scrub._warn_unscrubbed(tbl);
END
$$;

CREATE OR REPLACE FUNCTION mastodon_ip_scrub.protect(tbl regclass, cols name[], replicas boolean) RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    PERFORM mastodon_ip_scrub._protect(tbl, cols, replicas);
    PERFORM mastodon_ip_scrub._warn_protected(tbl);
END
$$;
COMMENT ON FUNCTION mastodon_ip_scrub.protect(regclass, name[], boolean) IS
    'protect() with a choice: replicas => false creates the trigger ENABLE ORIGIN, so logical-replication subscribers and replica-role sessions do not scrub.';

CREATE OR REPLACE FUNCTION mastodon_ip_scrub.protect(tbl regclass, VARIADIC cols name[]) RETURNS void
LANGUAGE sql
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT mastodon_ip_scrub.protect(tbl, cols, true)
$$;
COMMENT ON FUNCTION mastodon_ip_scrub.protect(regclass, name[]) IS
    'Anonymize every address written to these inet columns from now on, replicas included (existing rows: backfill()). Idempotent.';

CREATE OR REPLACE FUNCTION mastodon_ip_scrub.unprotect(tbl regclass, VARIADIC cols name[]) RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_schema name;
    v_table  name;
    v_col    name;
    v_known  text;
BEGIN
    SELECT k.schema_name, k.table_name INTO v_schema, v_table FROM mastodon_ip_scrub._table_key(tbl) k;
    IF cols IS NULL OR cardinality(cols) = 0 THEN
        RAISE EXCEPTION 'mastodon_ip_scrub.unprotect: no column of table % named', tbl
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    -- A dropped column can still be unprotected by name; a name that is neither is a typo.
    FOREACH v_col IN ARRAY cols LOOP
        IF v_col IS NULL
           OR NOT EXISTS (SELECT FROM mastodon_ip_scrub.protection p
                           WHERE p.schema_name = v_schema AND p.table_name = v_table AND p.column_name = v_col)
          AND NOT EXISTS (SELECT FROM pg_attribute a
                           WHERE a.attrelid = tbl AND a.attname = v_col AND a.attnum > 0 AND NOT a.attisdropped) THEN
            RAISE EXCEPTION 'mastodon_ip_scrub.unprotect: column "%" of table % does not exist and is not protected', v_col, tbl
                USING ERRCODE = 'undefined_column',
                      HINT = 'SELECT * FROM mastodon_ip_scrub.protected_columns; lists what is protected.';
        END IF;
    END LOOP;
    DELETE FROM mastodon_ip_scrub.protection p
     WHERE p.schema_name = v_schema AND p.table_name = v_table AND p.column_name = ANY (cols);
    SELECT string_agg(format('%I.%I', v_table, m.column_name), ', ') INTO v_known
      FROM mastodon_ip_scrub._mastodon_columns() m
     WHERE m.table_name = v_table AND m.column_name = ANY (cols);
    IF v_known IS NOT NULL THEN
        RAISE NOTICE 'mastodon_ip_scrub: % is a Mastodon IP column: a schema change to the table protects it again', v_known
            USING HINT = 'To keep it unprotected, record why with mastodon_ip_scrub.exempt(table, column, reason).';
    END IF;
END
$$;
COMMENT ON FUNCTION mastodon_ip_scrub.unprotect(regclass, name[]) IS
    'Stop anonymizing these columns; drops the trigger when nothing on the table stays protected. Idempotent.';

-- Every column in which Mastodon stores a user's IP address, current and historical
-- (see the README's "What is protected"). Never ip_blocks.ip: those are admin-entered block ranges.
CREATE OR REPLACE FUNCTION mastodon_ip_scrub._mastodon_columns(OUT table_name name, OUT column_name name)
RETURNS SETOF record
LANGUAGE sql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
    VALUES ('users'::name, 'sign_up_ip'::name),
           ('users', 'current_sign_in_ip'),
           ('users', 'last_sign_in_ip'),
           ('session_activations', 'ip'),
           ('login_activities', 'ip'),
           ('oauth_access_tokens', 'last_used_ip')
$$;

-- Protects the Mastodon user-IP columns of `tbl` that are not exempt and returns them; only those
-- not protected yet unless `all_known`. A column of a type that holds no address is protected too,
-- with a WARNING: the trigger stores NULL there. A generated one is skipped with a WARNING (the
-- event triggers refuse the DDL that makes one). With `warn`, says what protect() says afterwards.
CREATE OR REPLACE FUNCTION mastodon_ip_scrub._protect_known(tbl regclass, replicas boolean, all_known boolean,
                                                 warn boolean DEFAULT true) RETURNS name[]
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_cols      name[];
    v_generated text[];
    v_nulled    text[];
BEGIN
    SELECT array_agg(a.attname ORDER BY a.attname) FILTER (WHERE a.attgenerated = ''),
           array_agg(quote_ident(a.attname)) FILTER (WHERE a.attgenerated <> ''),
           array_agg(format('%I (%s)', a.attname, format_type(a.atttypid, NULL)))
               FILTER (WHERE a.attgenerated = '' AND NOT mastodon_ip_scrub._address_base(a.atttypid))
      INTO v_cols, v_generated, v_nulled
      FROM mastodon_ip_scrub._table_key(tbl) k
      JOIN mastodon_ip_scrub._mastodon_columns() m ON m.table_name = k.table_name
      JOIN pg_attribute a ON a.attrelid = tbl AND a.attname = m.column_name AND a.attnum > 0 AND NOT a.attisdropped
      JOIN pg_class c ON c.oid = tbl AND c.relkind IN ('r', 'p') AND NOT c.relispartition
     WHERE k.schema_name NOT IN ('information_schema', 'mastodon_ip_scrub') AND k.schema_name NOT LIKE 'pg\_%'
       AND NOT EXISTS (SELECT FROM mastodon_ip_scrub.exemption e
                        WHERE (e.schema_name, e.table_name, e.column_name) = (k.schema_name, k.table_name, a.attname))
       AND (all_known OR NOT EXISTS (SELECT FROM mastodon_ip_scrub.protection p
                        WHERE (p.schema_name, p.table_name, p.column_name) = (k.schema_name, k.table_name, a.attname)));
    IF v_generated IS NOT NULL THEN
        RAISE WARNING 'mastodon_ip_scrub: not protecting % column %: a generated column, which no trigger can change', tbl, array_to_string(v_generated, ', ')
            USING HINT = 'SELECT * FROM mastodon_ip_scrub.audit(); shows how to settle it.';
    END IF;
    IF v_nulled IS NOT NULL THEN
        RAISE WARNING 'mastodon_ip_scrub: % column % holds no IP address type: NULL is stored there instead of what is written', tbl, array_to_string(v_nulled, ', ')
            USING HINT = 'Mastodon declares it inet: ALTER TABLE ... ALTER COLUMN ... TYPE inet USING ...::inet;';
    END IF;
    IF v_cols IS NOT NULL THEN
        PERFORM mastodon_ip_scrub._protect(tbl, v_cols, replicas, any_type => true);
        IF warn THEN
            PERFORM mastodon_ip_scrub._warn_protected(tbl);
        END IF;
    END IF;
    RETURN v_cols;
END
$$;

-- replicas => false leaves the triggers ENABLE ORIGIN. The default fires them on logical-replication
-- subscribers and in session_replication_role = replica sessions too: a subscriber stores what it
-- receives, and an unscrubbing publisher would otherwise fill it with full addresses.
CREATE OR REPLACE FUNCTION mastodon_ip_scrub.protect_mastodon(replicas boolean DEFAULT true)
RETURNS TABLE (table_name regclass, column_name name)
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_tbl regclass;
BEGIN
    FOR v_tbl IN
        SELECT c.oid::regclass
          FROM mastodon_ip_scrub._mastodon_columns() m
          JOIN pg_class c ON c.relname = m.table_name AND c.relkind IN ('r', 'p') AND NOT c.relispartition
          JOIN pg_namespace n ON n.oid = c.relnamespace
         WHERE n.nspname NOT IN ('information_schema', 'mastodon_ip_scrub') AND n.nspname NOT LIKE 'pg\_%'
         GROUP BY c.oid, n.nspname, c.relname
         ORDER BY n.nspname, c.relname
    LOOP
        table_name := v_tbl;
        FOREACH column_name IN ARRAY coalesce(mastodon_ip_scrub._protect_known(v_tbl, replicas, true), '{}') LOOP
            RETURN NEXT;
        END LOOP;
    END LOOP;
END
$$;
COMMENT ON FUNCTION mastodon_ip_scrub.protect_mastodon(boolean) IS
    'Protect every Mastodon user-IP column present that is not exempt (never ip_blocks.ip); returns what it protected.';

CREATE OR REPLACE VIEW mastodon_ip_scrub.protected_columns AS
SELECT p.schema_name,
       p.table_name,
       p.column_name,
       a.attnum IS NOT NULL AS column_present,
       (mastodon_ip_scrub._trigger_state(c.oid, p.column_name)).enabled AS trigger_enabled
  FROM mastodon_ip_scrub.protection p
  LEFT JOIN pg_catalog.pg_namespace n ON n.nspname = p.schema_name
  LEFT JOIN pg_catalog.pg_class c ON c.relnamespace = n.oid AND c.relname = p.table_name AND c.relkind IN ('r', 'p')
  LEFT JOIN pg_catalog.pg_attribute a ON a.attrelid = c.oid AND a.attname = p.column_name
                                     AND a.attnum > 0 AND NOT a.attisdropped;
COMMENT ON VIEW mastodon_ip_scrub.protected_columns IS
    'Protected columns; trigger_enabled is true when writes to the column are being anonymized.';

-- The protection table drives the triggers, whoever writes to it: protect()/unprotect(), the
-- event triggers, or a restore's COPY. A restore also brings rows that auto-protection created a
-- moment earlier when the table was restored; the two are merged (privacy wins on `replicas`).
CREATE OR REPLACE FUNCTION mastodon_ip_scrub._merge_protection() RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    UPDATE mastodon_ip_scrub.protection p
       SET replicas = p.replicas OR NEW.replicas,
           protected_at = least(p.protected_at, NEW.protected_at)
     WHERE (p.schema_name, p.table_name, p.column_name) = (NEW.schema_name, NEW.table_name, NEW.column_name);
    IF FOUND THEN
        RETURN NULL;
    END IF;
    RETURN NEW;
END
$$;

CREATE OR REPLACE FUNCTION mastodon_ip_scrub._protection_changed() RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF TG_OP <> 'DELETE' THEN
        PERFORM mastodon_ip_scrub._sync_named(NEW.schema_name, NEW.table_name);
    END IF;
    IF TG_OP <> 'INSERT' AND (TG_OP = 'DELETE' OR (OLD.schema_name, OLD.table_name) <> (NEW.schema_name, NEW.table_name)) THEN
        PERFORM mastodon_ip_scrub._sync_named(OLD.schema_name, OLD.table_name);
    END IF;
    RETURN NULL;
END
$$;

CREATE OR REPLACE TRIGGER merge BEFORE INSERT ON mastodon_ip_scrub.protection
    FOR EACH ROW EXECUTE FUNCTION mastodon_ip_scrub._merge_protection();
CREATE OR REPLACE TRIGGER sync AFTER INSERT OR UPDATE OR DELETE ON mastodon_ip_scrub.protection
    FOR EACH ROW EXECUTE FUNCTION mastodon_ip_scrub._protection_changed();

-- What is protected, what is not, and what existing rows still hold: status(), audit(), exempt().

-- Address columns an admin has decided not to protect, and why. audit() leaves them out.
-- Rows the extension itself adds (builtin) are not dumped: CREATE EXTENSION adds them again.
COMMENT ON TABLE mastodon_ip_scrub.exemption IS
    'Address columns deliberately left unprotected; audit() does not report them. Add with exempt().';

-- The Mastodon user-IP column names for `tbl`'s name that are not exempt there.
CREATE OR REPLACE FUNCTION mastodon_ip_scrub._known_columns(tbl regclass) RETURNS SETOF name
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT m.column_name
      FROM mastodon_ip_scrub._table_key(tbl) k
      JOIN mastodon_ip_scrub._mastodon_columns() m ON m.table_name = k.table_name
     WHERE NOT EXISTS (SELECT FROM mastodon_ip_scrub.exemption e
                        WHERE (e.schema_name, e.table_name, e.column_name) = (k.schema_name, k.table_name, m.column_name))
$$;

-- exempt() refuses a protected column, but a restore's COPY does not ask: when the restored table
-- was auto-protected before its exemption row arrived, the exemption wins, as it did in the
-- dumped database.
CREATE OR REPLACE FUNCTION mastodon_ip_scrub._exemption_added() RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    DELETE FROM mastodon_ip_scrub.protection p
     WHERE (p.schema_name, p.table_name, p.column_name) = (NEW.schema_name, NEW.table_name, NEW.column_name);
    RETURN NULL;
END
$$;
CREATE OR REPLACE TRIGGER unprotect AFTER INSERT ON mastodon_ip_scrub.exemption
    FOR EACH ROW EXECUTE FUNCTION mastodon_ip_scrub._exemption_added();

-- How many rows of table `tbl` itself (ONLY: not its partitions or children) hold a value in each
-- of `cols` that the trigger would store differently now (unscrubbed), and how many hold one in
-- any of them (unscrubbed_rows). Read as the table's owner (_query_as_owner): the owner's index
-- expressions, policies and the like never run with our rights. Read in full when `exact` or when
-- the table is small (up to 2560 pages, 20 MB); otherwise a block sample of about 2560 pages is
-- scaled up (method 'sampled'), so the cost stays flat however large the table is. A column that
-- is gone or holds no address type counts NULL; so does every column of a table whose row-level
-- security is forced on its owner, from whom policies could hide rows.
CREATE OR REPLACE FUNCTION mastodon_ip_scrub._count_one(
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
CREATE OR REPLACE FUNCTION mastodon_ip_scrub._count_unscrubbed(
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
CREATE OR REPLACE FUNCTION mastodon_ip_scrub._warn_unscrubbed(tbl regclass) RETURNS void
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

CREATE OR REPLACE FUNCTION mastodon_ip_scrub.status(exact boolean DEFAULT false)
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

-- The type under any domains over `typ`: what the trigger sees.
CREATE OR REPLACE FUNCTION mastodon_ip_scrub._base_type(typ oid) RETURNS oid
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
CREATE OR REPLACE FUNCTION mastodon_ip_scrub._address_base(typ oid) RETURNS boolean
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT mastodon_ip_scrub._base_type(typ) IN ('inet'::regtype, 'cidr'::regtype)
$$;

-- Whether a column of type `typ` holds addresses at all (what audit() reports): an address type,
-- or an array of one, seen through domains.
CREATE OR REPLACE FUNCTION mastodon_ip_scrub._address_type(typ oid) RETURNS boolean
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT mastodon_ip_scrub._address_base(typ)
        OR coalesce((SELECT mastodon_ip_scrub._address_base(t.typelem) FROM pg_type t
                      WHERE t.oid = mastodon_ip_scrub._base_type(typ) AND t.typcategory = 'A'), false)
$$;

CREATE OR REPLACE FUNCTION mastodon_ip_scrub.audit()
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
    ) x
    ORDER BY x.nspname, x.relname, x.ord, x.data_type
$$;
COMMENT ON FUNCTION mastodon_ip_scrub.audit() IS
    'Every inet, cidr or inet[] column that is neither protected nor exempt, every protected column no longer a plain inet column, and every rule on a protected table, with the statement that settles it.';

CREATE OR REPLACE FUNCTION mastodon_ip_scrub.exempt(tbl regclass, col name, reason text) RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_key  record;
    v_type oid;
BEGIN
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
    INSERT INTO mastodon_ip_scrub.exemption (schema_name, table_name, column_name, reason)
    VALUES (v_key.schema_name, v_key.table_name, col, reason)
    ON CONFLICT (schema_name, table_name, column_name)
    DO UPDATE SET reason = excluded.reason, builtin = false, exempted_at = excluded.exempted_at;
END
$$;
COMMENT ON FUNCTION mastodon_ip_scrub.exempt(regclass, name, text) IS
    'Record that an address column is deliberately left unprotected, and why; audit() then skips it.';

-- backfill(): scrubs the rows written before a column was protected, in short transactions.
--
-- Each table is walked in ranges of heap blocks (a TID range scan, no index needed), and each
-- range's rows that still hold more than the trigger would store are updated and committed, so
-- locks are held for one batch and replicas receive the WAL in small steps. Rows that are already
-- scrubbed are never written again, which makes the procedure idempotent and resumable: after an
-- interruption, a new CALL skips everything done and finishes the rest.
--
-- It walks every table that carries a scrub trigger (a partitioned table's partitions, inheritance
-- children), each as that table's owner (owner.rs): the owner's triggers, index expressions and
-- the like run with the owner's rights, never the caller's.
--
-- Beside live writes: the UPDATE re-reads a row that another session changed meanwhile and keeps
-- that session's other columns. An application UPDATE that names no protected column skips the
-- trigger (untouched_updates.rs) and so carries an unscrubbed address along when it moves a row to
-- a block already walked; after the walk, sweeps over the whole table scrub such rows until one
-- finds none (each can only find rows moved during the one before). It never waits long for a row lock (lock_timeout below the
-- deadlock timeout), so when the application holds rows it is backfill that backs off and retries,
-- never the application's transaction that is chosen as a deadlock victim.
--
-- No SET search_path clause: a procedure with one cannot COMMIT. Every name is qualified instead,
-- and each transaction pins search_path locally.
-- Runs one backfill UPDATE of table `tbl` (`statement`, with the ctid range as $1 and $2) as the
-- table's owner, waiting at most `wait` for a row lock; returns the rows written, or NULL when a
-- row stayed locked (or PostgreSQL reported a deadlock), for the caller to retry. lock_timeout
-- ends with the function.
CREATE OR REPLACE FUNCTION mastodon_ip_scrub._scrub_range(tbl regclass, statement text, from_tid tid, to_tid tid, wait text)
RETURNS bigint
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    PERFORM set_config('lock_timeout', wait, true);
    RETURN mastodon_ip_scrub._write_as_owner(tbl, statement, ARRAY[from_tid::text, to_tid::text]);
EXCEPTION WHEN lock_not_available OR deadlock_detected THEN
    RETURN NULL;
END
$$;

-- The UPDATE that scrubs columns `cols` of table `tbl` itself (ONLY) for the rows where one holds
-- more than the trigger would store; `extra` is ANDed into the WHERE clause. An inet column gets
-- `_stored(<itself>, <NOT NULL or not>)`, the form the scrub trigger need not see
-- (untouched_updates.rs); a cidr column or a domain over an address type is scrubbed through
-- inet; any other type stores NULL, as the trigger does for it. NULL when none of `cols` is a
-- column of `tbl` (a NOT NULL column of another type, which the event triggers refuse, is left).
CREATE OR REPLACE FUNCTION mastodon_ip_scrub._scrub_statement(tbl regclass, cols name[], extra text DEFAULT 'true')
RETURNS text
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT format('UPDATE ONLY %s SET %s WHERE %s AND (%s)', tbl,
                  string_agg(format('%I = %s', c.attname, c.stored), ', ' ORDER BY c.attname),
                  extra,
                  string_agg(c.pending, ' OR ' ORDER BY c.attname))
      FROM (SELECT a.attname,
                   CASE WHEN a.atttypid = 'inet'::regtype
                        THEN format('mastodon_ip_scrub._stored(%I, %L)', a.attname, a.attnotnull)
                        WHEN b.address
                        THEN format('mastodon_ip_scrub._stored(%I::inet, %L)', a.attname, a.attnotnull)
                        ELSE 'NULL' END AS stored,
                   CASE WHEN b.address
                        THEN format('mastodon_ip_scrub._pending(%I::inet, %L)', a.attname, a.attnotnull)
                        ELSE format('%I IS NOT NULL', a.attname) END AS pending
              FROM pg_attribute a
             CROSS JOIN LATERAL (SELECT mastodon_ip_scrub._address_base(a.atttypid) AS address) b
             WHERE a.attrelid = tbl AND a.attname = ANY (cols) AND a.attnum > 0 AND NOT a.attisdropped
               AND (b.address OR NOT a.attnotnull)) c
    HAVING count(*) > 0
$$;

-- Whether `tbl` forces row-level security on its owner: its policies would then hide rows from
-- the owner, as which the extension reads and scrubs it.
CREATE OR REPLACE FUNCTION mastodon_ip_scrub._owner_sees_all(tbl regclass) RETURNS boolean
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT NOT (c.relrowsecurity AND c.relforcerowsecurity) FROM pg_class c WHERE c.oid = tbl
$$;

-- The tables backfill() walks: every one that stores rows and carries a scrub trigger (protected
-- tables, their partitions, inheritance children), with the columns that trigger protects.
CREATE OR REPLACE FUNCTION mastodon_ip_scrub._scrubbed_tables(OUT tbl regclass, OUT cols name[])
RETURNS SETOF record
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT t.tgrelid::regclass, mastodon_ip_scrub._trigger_args(t.tgargs)
      FROM pg_trigger t
      JOIN pg_class c ON c.oid = t.tgrelid
      JOIN pg_namespace n ON n.oid = c.relnamespace
     WHERE t.tgname = 'zz_mastodon_ip_scrub' AND t.tgfoid = mastodon_ip_scrub._scrub_function()
       AND c.relkind = 'r'
     ORDER BY n.nspname, c.relname
$$;

CREATE OR REPLACE PROCEDURE mastodon_ip_scrub.backfill(batch_size integer DEFAULT 10000, dry_run boolean DEFAULT false)
LANGUAGE plpgsql
AS $$
DECLARE
    c_retries constant integer := 10;
    v_settings record;
    v_tables   regclass[];
    v_tbl      regclass;
    v_cols     name[];
    v_count    record;
    v_sql      text;
    v_pages    bigint;
    v_step     bigint;
    v_from     bigint;
    v_to       bigint;
    v_rows     bigint;
    v_done     bigint;
    v_skipped  bigint;
    v_total    bigint := 0;
    v_todo     text;
    v_attempt  integer;
    v_timeout  text;
    v_started  timestamptz;
    v_reported timestamptz;
    v_seconds  float8;
    v_sweeps   integer;
BEGIN
    PERFORM pg_catalog.set_config('search_path', 'pg_catalog, pg_temp', true);
    IF batch_size IS NULL OR batch_size < 1 THEN
        RAISE EXCEPTION 'mastodon_ip_scrub.backfill: batch_size must be at least 1, got %', coalesce(batch_size::text, 'NULL')
            USING ERRCODE = 'invalid_parameter_value', HINT = 'CALL mastodon_ip_scrub.backfill(batch_size => 10000);';
    END IF;
    SELECT * INTO v_settings FROM mastodon_ip_scrub._settings();
    IF NOT v_settings.enabled THEN
        RAISE EXCEPTION 'mastodon_ip_scrub.backfill: scrubbing is switched off (mastodon_ip_scrub.enabled = off)'
            USING ERRCODE = 'object_not_in_prerequisite_state',
                  HINT = 'Switch it on for this session (SET mastodon_ip_scrub.enabled = on) or for the server, then run backfill again.';
    END IF;
    -- Wait at most half the deadlock timeout (and 100 ms) for a row the application holds.
    v_timeout := greatest(1, least(100, extract(epoch FROM current_setting('deadlock_timeout')::interval) * 500))::integer || 'ms';

    v_tables := ARRAY(SELECT s.tbl FROM mastodon_ip_scrub._scrubbed_tables() s);
    FOREACH v_tbl IN ARRAY v_tables LOOP
        -- Read again after each table's commits: the protected columns still present with an
        -- address type (the trigger stores NULL in any other on its next write).
        SELECT array_agg(a.attname ORDER BY a.attname) INTO v_cols
          FROM mastodon_ip_scrub._scrubbed_tables() s
          JOIN pg_attribute a ON a.attrelid = s.tbl AND a.attname = ANY (s.cols)
                             AND a.attnum > 0 AND NOT a.attisdropped AND mastodon_ip_scrub._address_base(a.atttypid)
         WHERE s.tbl = v_tbl;
        CONTINUE WHEN v_cols IS NULL;
        IF NOT mastodon_ip_scrub._owner_sees_all(v_tbl) THEN
            RAISE WARNING 'mastodon_ip_scrub.backfill: %: skipped, its row-level security is forced on its owner', v_tbl
                USING DETAIL = 'Backfill reads and writes a table as its owner, from whom the policies could hide rows.',
                      HINT = format('ALTER TABLE %s NO FORCE ROW LEVEL SECURITY; then run backfill again.', v_tbl);
            CONTINUE;
        END IF;
        v_sql := mastodon_ip_scrub._scrub_statement(v_tbl, v_cols, 'ctid >= $1::tid AND ctid < $2::tid');

        -- A dry run counts exactly. A real run walks the whole table anyway, so it only estimates
        -- (for progress and batch sizes) unless the table is small enough to count outright.
        SELECT * INTO v_count FROM mastodon_ip_scrub._count_one(v_tbl, v_cols, dry_run);
        IF v_count.method = 'exact' AND v_count.unscrubbed_rows = 0 THEN
            RAISE NOTICE 'mastodon_ip_scrub.backfill: %: nothing to scrub (% rows)', v_tbl, v_count.total;
            CONTINUE;
        END IF;
        IF dry_run THEN
            RAISE NOTICE 'mastodon_ip_scrub.backfill: %: would scrub % of % rows (%); dry run, nothing changed',
                v_tbl, v_count.unscrubbed_rows, v_count.total,
                (SELECT string_agg(format('%s: %s', quote_ident(c), u), ', ' ORDER BY ord)
                   FROM unnest(v_cols, v_count.unscrubbed) WITH ORDINALITY AS x (c, u, ord));
            CONTINUE;
        END IF;

        -- Ranges sized so that each holds about batch_size rows to scrub.
        v_pages := pg_relation_size(v_tbl) / current_setting('block_size')::bigint;
        v_todo := CASE v_count.method WHEN 'exact' THEN '' ELSE 'about ' END || v_count.unscrubbed_rows;
        v_step := CASE WHEN v_count.unscrubbed_rows > 0
                       THEN greatest(1, ceil(batch_size::numeric * v_pages / v_count.unscrubbed_rows))
                       ELSE greatest(1, v_pages) END::bigint;
        v_from := 0;
        v_done := 0;
        v_skipped := 0;
        v_attempt := 0;
        v_started := clock_timestamp();
        v_reported := v_started;
        -- Rows inserted beyond v_pages meanwhile went through the trigger; rows moved there are
        -- left to the sweeps below.
        WHILE v_from < v_pages LOOP
            v_to := least(v_from + v_step, v_pages);
            -- A batch lost in a crash is simply found again by the next run: no need to wait for
            -- each commit to reach the disk.
            PERFORM set_config('synchronous_commit', 'off', true);
            v_rows := mastodon_ip_scrub._scrub_range(v_tbl, v_sql, format('(%s,0)', v_from)::tid, format('(%s,0)', v_to)::tid, v_timeout);
            IF v_rows IS NOT NULL THEN
                v_done := v_done + v_rows;
                v_from := v_to;
                v_attempt := 0;
            ELSE
                v_attempt := v_attempt + 1;
                IF v_attempt >= c_retries THEN
                    RAISE WARNING 'mastodon_ip_scrub.backfill: %: rows in blocks % to % stayed locked by other sessions; left for the next run', v_tbl, v_from, v_to - 1;
                    v_skipped := v_skipped + 1;
                    v_from := v_to;
                    v_attempt := 0;
                ELSE
                    PERFORM pg_sleep(0.02 * v_attempt);
                END IF;
            END IF;
            COMMIT;
            PERFORM pg_catalog.set_config('search_path', 'pg_catalog, pg_temp', true);
            IF clock_timestamp() - v_reported >= interval '5 seconds' THEN
                v_reported := clock_timestamp();
                v_seconds := greatest(extract(epoch FROM v_reported - v_started), 0.001);
                RAISE NOTICE 'mastodon_ip_scrub.backfill: %: % of % rows scrubbed (% rows/s)',
                    v_tbl, v_done, v_todo, round(v_done / v_seconds);
            END IF;
        END LOOP;
        -- The sweeps: the same UPDATE over every block there is.
        v_sweeps := 0;
        LOOP
            PERFORM set_config('synchronous_commit', 'off', true);
            v_rows := mastodon_ip_scrub._scrub_range(v_tbl, v_sql, '(0,0)'::tid, '(4294967295,0)'::tid, v_timeout);
            v_done := v_done + coalesce(v_rows, 0);
            COMMIT;
            PERFORM pg_catalog.set_config('search_path', 'pg_catalog, pg_temp', true);
            v_sweeps := v_sweeps + 1;
            EXIT WHEN v_rows = 0;
            IF v_sweeps >= c_retries THEN
                RAISE WARNING 'mastodon_ip_scrub.backfill: %: rows kept being moved or locked by other sessions; left for the next run', v_tbl;
                v_skipped := v_skipped + 1;
                EXIT;
            END IF;
            IF v_rows IS NULL THEN
                PERFORM pg_sleep(0.02 * v_sweeps);
            END IF;
        END LOOP;
        v_total := v_total + v_done;
        v_seconds := greatest(extract(epoch FROM clock_timestamp() - v_started), 0.001);
        RAISE NOTICE 'mastodon_ip_scrub.backfill: %: % of % rows scrubbed in % s (% rows/s)%',
            v_tbl, v_done, v_todo, round(v_seconds::numeric, 1), round(v_done / v_seconds),
            CASE WHEN v_skipped > 0 THEN '; some rows were locked: run backfill again' ELSE '' END;
    END LOOP;
    IF v_total > 0 THEN
        RAISE NOTICE 'mastodon_ip_scrub.backfill: done. Old row versions keep the full addresses until VACUUM removes them'
            USING HINT = 'Run VACUUM on the scrubbed tables (VACUUM FULL to rewrite their files); WAL archives and backups still hold the old values.';
    END IF;
END
$$;
COMMENT ON PROCEDURE mastodon_ip_scrub.backfill(integer, boolean) IS
    'Scrub existing rows of every protected column in committed batches; resumable, idempotent; dry_run only reports.';

-- Protection that outlives the application's own DDL: Rails migrations, `db:schema:load`, and
-- whatever Mastodon's role, which owns every table, does to the tables and our triggers. Four
-- event triggers, members of the extension:
--   ddl_command_start, CREATE TRIGGER and DROP TRIGGER (src/ddl.rs): a dump's plain CREATE
--     TRIGGER zz_mastodon_ip_scrub replaces the trigger auto-protection already created; dropping
--     a scrub trigger is refused unless the extension itself does it;
--   table_rewrite: notes each table a command rewrites (ALTER COLUMN ... TYPE, ADD COLUMN with a
--     volatile default): its values were written without row triggers;
--   ddl_command_end, every command: known Mastodon IP columns and columns protected by name are
--     protected in the same transaction; renames of tables, columns and schemas carry protection
--     along; partitions and inheritance children are protected with their parents; the scrub
--     trigger is put back if the command disabled, limited or replaced it; commands that would
--     defeat it are refused; values a command wrote without row triggers are scrubbed;
--   sql_drop, DROP TRIGGER and DROP EXTENSION: a scrub trigger that disappeared while its table
--     stays (dropped along with another extension it was made to depend on) is refused.
-- They are ENABLE ALWAYS, so session_replication_role does not switch them off, and the
-- functions are SECURITY DEFINER: they run during the application role's DDL, and that role may
-- not write the protection table. They read and change catalogs and the extension's own tables;
-- rows of the application's tables are only ever touched as their owner (owner.rs).

CREATE OR REPLACE FUNCTION mastodon_ip_scrub._renamed_from(pg_ddl_command) RETURNS text
LANGUAGE c STRICT
AS 'MODULE_PATHNAME', 'renamed_from';
COMMENT ON FUNCTION mastodon_ip_scrub._renamed_from(pg_ddl_command) IS
    'The old name of the relation, column or schema a command renamed, else NULL.';

CREATE OR REPLACE FUNCTION mastodon_ip_scrub._command_targets(pg_ddl_command, text) RETURNS oid[]
LANGUAGE c STRICT
AS 'MODULE_PATHNAME', 'command_targets';
COMMENT ON FUNCTION mastodon_ip_scrub._command_targets(pg_ddl_command, text) IS
    'The tables an ALTER TABLE command attached (attach partition), detached (detach partition) or moved (set schema).';

CREATE OR REPLACE FUNCTION mastodon_ip_scrub._subcommand_columns(pg_ddl_command, text) RETURNS text[]
LANGUAGE c STRICT
AS 'MODULE_PATHNAME', 'subcommand_columns';
COMMENT ON FUNCTION mastodon_ip_scrub._subcommand_columns(pg_ddl_command, text) IS
    'The columns an ALTER TABLE adds (add column) or gives a new type (alter column type).';

CREATE OR REPLACE FUNCTION mastodon_ip_scrub._before_trigger_ddl() RETURNS event_trigger
LANGUAGE c
AS 'MODULE_PATHNAME', 'before_trigger_ddl';

-- After a rename, what was protected or exempt under the old name (table `old_table` in schema
-- `old_schema`, tbl's own unless it was moved, and column `old_column` if a column was renamed)
-- moves to the current one. A row the new name already has wins over the moved one.
CREATE OR REPLACE FUNCTION mastodon_ip_scrub._follow_rename(tbl regclass, old_table name,
                                                 old_column name DEFAULT NULL, new_column name DEFAULT NULL,
                                                 old_schema name DEFAULT NULL)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_key record;
    v_old name;
BEGIN
    SELECT * INTO v_key FROM mastodon_ip_scrub._table_key(tbl);
    v_old := coalesce(old_schema, v_key.schema_name);
    DELETE FROM mastodon_ip_scrub.protection p
     WHERE (p.schema_name, p.table_name) = (v_old, old_table)
       AND p.column_name = coalesce(old_column, p.column_name)
       AND EXISTS (SELECT FROM mastodon_ip_scrub.protection x
                    WHERE (x.schema_name, x.table_name, x.column_name)
                        = (v_key.schema_name, v_key.table_name, coalesce(new_column, p.column_name)));
    UPDATE mastodon_ip_scrub.protection p
       SET schema_name = v_key.schema_name, table_name = v_key.table_name,
           column_name = coalesce(new_column, p.column_name)
     WHERE (p.schema_name, p.table_name) = (v_old, old_table)
       AND p.column_name = coalesce(old_column, p.column_name);
    DELETE FROM mastodon_ip_scrub.exemption e
     WHERE (e.schema_name, e.table_name) = (v_old, old_table) AND NOT e.builtin
       AND e.column_name = coalesce(old_column, e.column_name)
       AND EXISTS (SELECT FROM mastodon_ip_scrub.exemption x
                    WHERE (x.schema_name, x.table_name, x.column_name)
                        = (v_key.schema_name, v_key.table_name, coalesce(new_column, e.column_name)));
    UPDATE mastodon_ip_scrub.exemption e
       SET schema_name = v_key.schema_name, table_name = v_key.table_name,
           column_name = coalesce(new_column, e.column_name)
     WHERE (e.schema_name, e.table_name) = (v_old, old_table) AND NOT e.builtin
       AND e.column_name = coalesce(old_column, e.column_name);
END
$$;

-- After ALTER SCHEMA ... RENAME, what was protected or exempt in the old schema moves along.
CREATE OR REPLACE FUNCTION mastodon_ip_scrub._follow_schema_rename(old_schema name, new_schema name) RETURNS void
LANGUAGE sql
SET search_path = pg_catalog, pg_temp
AS $$
    DELETE FROM mastodon_ip_scrub.protection p
     WHERE p.schema_name = old_schema
       AND EXISTS (SELECT FROM mastodon_ip_scrub.protection x
                    WHERE (x.schema_name, x.table_name, x.column_name) = (new_schema, p.table_name, p.column_name));
    UPDATE mastodon_ip_scrub.protection SET schema_name = new_schema WHERE schema_name = old_schema;
    DELETE FROM mastodon_ip_scrub.exemption e
     WHERE e.schema_name = old_schema AND NOT e.builtin
       AND EXISTS (SELECT FROM mastodon_ip_scrub.exemption x
                    WHERE (x.schema_name, x.table_name, x.column_name) = (new_schema, e.table_name, e.column_name));
    UPDATE mastodon_ip_scrub.exemption SET schema_name = new_schema WHERE schema_name = old_schema AND NOT builtin;
$$;

-- The scrub trigger on `tbl` names the columns protected on that very table. After a schema-only
-- restore (which brings the trigger but not the protection table's rows), those names are
-- recorded again under the table's current name.
-- Only address columns are taken over, and with replicas on: a trigger just created by a restore is
-- still ENABLE ORIGIN, whatever the dump's next statement sets. A partition's cloned trigger, and
-- what an inheritance child's trigger has from its parents, stay theirs.
CREATE OR REPLACE FUNCTION mastodon_ip_scrub._adopt(tbl regclass) RETURNS void
LANGUAGE sql
SET search_path = pg_catalog, pg_temp
AS $$
    INSERT INTO mastodon_ip_scrub.protection (schema_name, table_name, column_name, replicas)
    SELECT k.schema_name, k.table_name, a.attname, true
      FROM pg_trigger t
     CROSS JOIN mastodon_ip_scrub._table_key(tbl) k
     CROSS JOIN unnest(mastodon_ip_scrub._trigger_args(t.tgargs)) AS arg (name)
      JOIN pg_attribute a ON a.attrelid = tbl AND a.attname = arg.name AND mastodon_ip_scrub._address_base(a.atttypid)
                         AND a.attgenerated = '' AND a.attnum > 0 AND NOT a.attisdropped
     WHERE t.tgrelid = tbl AND t.tgname = 'zz_mastodon_ip_scrub' AND t.tgparentid = 0
       AND t.tgfoid = mastodon_ip_scrub._scrub_function()
       AND NOT a.attname = ANY (coalesce((mastodon_ip_scrub._wanted(tbl)).cols, '{}'))
       AND NOT EXISTS (SELECT FROM mastodon_ip_scrub.exemption e
                        WHERE (e.schema_name, e.table_name, e.column_name) = (k.schema_name, k.table_name, a.attname))
$$;

-- Refuses what the command left on table `tbl` (or on any table that inherits from it) that no
-- trigger can make safe: a foreign table as part of a protected table (its rows live elsewhere);
-- and, in a protected column or a Mastodon IP column that is not exempt, a generated column
-- (computed after every trigger), NOT NULL of a type that holds no address (nothing anonymized can
-- be stored there, and the write may not fail), or a constant default that is not what the trigger
-- would store (PostgreSQL keeps it in the catalog and every existing row reads it).
CREATE OR REPLACE FUNCTION mastodon_ip_scrub._check_protected_columns(tbl regclass) RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_wanted name[] := mastodon_ip_scrub._wanted_columns(tbl);
    v_cols   name[] := ARRAY(SELECT unnest(v_wanted) UNION SELECT mastodon_ip_scrub._known_columns(tbl));
    v_bad    record;
BEGIN
    -- A foreign table's rows live on another server: none that it holds can be scrubbed here.
    SELECT d AS rel INTO v_bad
      FROM mastodon_ip_scrub._descendants(tbl) d JOIN pg_class c ON c.oid = d AND c.relkind = 'f'
     WHERE v_wanted IS NOT NULL
     LIMIT 1;
    IF FOUND THEN
        RAISE EXCEPTION 'mastodon_ip_scrub: % cannot be part of protected table %: it is a foreign table', v_bad.rel, tbl
            USING ERRCODE = 'feature_not_supported',
                  DETAIL = 'Its rows live on another server, where their addresses cannot be scrubbed.',
                  HINT = 'Keep the rows in an ordinary table, or unprotect the columns first.';
    END IF;
    FOR v_bad IN
        SELECT a.attrelid::regclass AS rel, a.attname, a.attgenerated, a.attnotnull, a.atttypid,
               b.address, CASE WHEN a.atthasmissing AND b.address THEN (a.attmissingval::text::inet[])[1] END AS missing
          FROM mastodon_ip_scrub._descendants(tbl) d
          JOIN pg_attribute a ON a.attrelid = d AND a.attname = ANY (v_cols) AND a.attnum > 0 AND NOT a.attisdropped
         CROSS JOIN LATERAL (SELECT mastodon_ip_scrub._address_base(a.atttypid) AS address) b
    LOOP
        IF v_bad.attgenerated <> '' THEN
            RAISE EXCEPTION 'mastodon_ip_scrub: IP address column "%" of table % cannot be a generated column', v_bad.attname, v_bad.rel
                USING ERRCODE = 'feature_not_supported',
                      DETAIL = 'PostgreSQL computes a generated column after every trigger, so its addresses would be stored whole.',
                      HINT = 'Store the address in a plain inet column, or unprotect the column first: SELECT mastodon_ip_scrub.unprotect(...);';
        END IF;
        IF v_bad.attnotnull AND NOT v_bad.address THEN
            RAISE EXCEPTION 'mastodon_ip_scrub: IP address column "%" of table % cannot be NOT NULL of type %', v_bad.attname, v_bad.rel, format_type(v_bad.atttypid, NULL)
                USING ERRCODE = 'feature_not_supported',
                      DETAIL = 'No anonymized value of that type exists, and NULL would make every write fail.',
                      HINT = 'Keep the column inet, or drop NOT NULL, or unprotect the column first.';
        END IF;
        IF v_bad.missing IS NOT NULL AND mastodon_ip_scrub._pending(v_bad.missing, v_bad.attnotnull) THEN
            RAISE EXCEPTION 'mastodon_ip_scrub: IP address column "%" of table % cannot get the default %: every existing row would read it', v_bad.attname, v_bad.rel, host(v_bad.missing)
                USING ERRCODE = 'feature_not_supported',
                      HINT = format('Use the default the trigger would store, %s, or add the column without a default.',
                                    coalesce(quote_literal(host(mastodon_ip_scrub._stored(v_bad.missing, v_bad.attnotnull))), 'NULL'));
        END IF;
    END LOOP;
END
$$;

-- Refuses a view, materialized view or foreign table `rel` that takes the name of a protected
-- table, or of a Mastodon table with the IP column Mastodon would write through it: the rows would
-- reach a table the extension does not protect, and Mastodon would read them back.
CREATE OR REPLACE FUNCTION mastodon_ip_scrub._refuse_protected_name(rel regclass) RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_kind text;
    v_cols text;
BEGIN
    SELECT string_agg(k, ', ') INTO v_cols
      FROM mastodon_ip_scrub._known_columns(rel) k
     WHERE EXISTS (SELECT FROM pg_attribute a WHERE a.attrelid = rel AND a.attname = k
                                                AND a.attnum > 0 AND NOT a.attisdropped);
    v_cols := coalesce(array_to_string(mastodon_ip_scrub._protected_names(rel), ', '), v_cols);
    IF v_cols IS NOT NULL THEN
        SELECT CASE c.relkind WHEN 'v' THEN 'view' WHEN 'm' THEN 'materialized view' ELSE 'foreign table' END
          INTO v_kind FROM pg_class c WHERE c.oid = rel;
        RAISE EXCEPTION 'mastodon_ip_scrub: % takes the name of a table whose IP addresses are protected, and a % cannot be protected', rel, v_kind
            USING ERRCODE = 'insufficient_privilege',
                  DETAIL = format('Mastodon would write addresses to %s through it, into a table the extension does not protect.', v_cols),
                  HINT = 'Use another name, or have a superuser unprotect() those columns first.';
    END IF;
END
$$;

-- Refuses a rule on `tbl` when it is protected (see _rules_of).
CREATE OR REPLACE FUNCTION mastodon_ip_scrub._refuse_rules(tbl regclass) RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_rules text := mastodon_ip_scrub._rules_of(tbl);
BEGIN
    IF v_rules IS NOT NULL
       AND mastodon_ip_scrub._wanted_columns(tbl) IS NOT NULL THEN
        RAISE EXCEPTION 'mastodon_ip_scrub: protected table % cannot have rules (%)', tbl, v_rules
            USING ERRCODE = 'insufficient_privilege',
                  DETAIL = 'A rule rewrites Mastodon''s own writes before the trigger sees them: it could send or copy the full address elsewhere.',
                  HINT = 'Put the logic in a trigger that sorts before "zz_mastodon_ip_scrub", or in the application.';
    END IF;
END
$$;

-- Refuses what a command (tagged `tag`) did to trigger `trg` that would defeat protection: a scrub
-- trigger created by anyone but a superuser (a partition's clone of ours is PostgreSQL's, not a
-- command's), one renamed (its name makes it the last BEFORE trigger to run), or one made to
-- depend on an extension (dropping that extension would drop it). So the scrub triggers in place
-- always say what was protected before a command.
CREATE OR REPLACE FUNCTION mastodon_ip_scrub._check_scrub_trigger(trg oid, tag text) RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_trigger record;
BEGIN
    SELECT t.tgname, t.tgrelid::regclass AS rel, t.tgparentid INTO v_trigger
      FROM pg_trigger t WHERE t.oid = trg AND t.tgfoid = mastodon_ip_scrub._scrub_function();
    IF NOT FOUND THEN
        RETURN;
    END IF;
    IF tag <> 'ALTER TRIGGER' AND v_trigger.tgparentid = 0
       AND NOT (SELECT r.rolsuper FROM pg_roles r WHERE r.rolname = session_user) THEN
        RAISE EXCEPTION 'mastodon_ip_scrub: only the extension creates scrub triggers (on %)', v_trigger.rel
            USING ERRCODE = 'insufficient_privilege',
                  HINT = 'A superuser protects a column with SELECT mastodon_ip_scrub.protect(table, column);';
    END IF;
    IF v_trigger.tgname <> 'zz_mastodon_ip_scrub' THEN
        RAISE EXCEPTION 'mastodon_ip_scrub: the scrub trigger on % must be named zz_mastodon_ip_scrub', v_trigger.rel
            USING ERRCODE = 'insufficient_privilege',
                  DETAIL = 'Its name makes it the last BEFORE trigger to run, so no other trigger can write a full address back.',
                  HINT = 'To stop anonymizing, a superuser runs mastodon_ip_scrub.unprotect().';
    END IF;
    IF EXISTS (SELECT FROM pg_depend d
                WHERE d.classid = 'pg_trigger'::regclass AND d.objid = trg AND d.deptype = 'x') THEN
        RAISE EXCEPTION 'mastodon_ip_scrub: the scrub trigger on % cannot depend on an extension', v_trigger.rel
            USING ERRCODE = 'insufficient_privilege',
                  DETAIL = 'Dropping that extension would drop the trigger with it.',
                  HINT = 'To stop anonymizing, a superuser runs mastodon_ip_scrub.unprotect().';
    END IF;
END
$$;

-- What the scrub triggers protect, as one 'table-oid/column' entry per protected column of each
-- table that stores rows (_scrubbed_tables): compared before and after a command to see which
-- columns it brought under protection.
CREATE OR REPLACE FUNCTION mastodon_ip_scrub._scrubbed_columns() RETURNS text[]
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT ARRAY(SELECT s.tbl::oid || '/' || c FROM mastodon_ip_scrub._scrubbed_tables() s CROSS JOIN unnest(s.cols) AS c)
$$;

-- The same entries for what the trigger of `tbl`'s home protected before the command replaced it
-- (CREATE OR REPLACE TRIGGER zz_mastodon_ip_scrub with another function): between commands, a table
-- with protection wanted has exactly its scrub trigger, on every partition of its tree.
CREATE OR REPLACE FUNCTION mastodon_ip_scrub._replaced_columns(tbl regclass) RETURNS text[]
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT ARRAY(SELECT part.relid::oid || '/' || c
                   FROM mastodon_ip_scrub._table_tree(mastodon_ip_scrub._trigger_home(tbl)) part
                  CROSS JOIN unnest(mastodon_ip_scrub._wanted_columns(tbl)) AS c)
$$;

-- Scrubs, as the table's owner, the columns `cols` of table `tbl` itself (ONLY): for values a
-- command wrote without row triggers. Rows already scrubbed are not written.
CREATE OR REPLACE FUNCTION mastodon_ip_scrub._scrub_now(tbl regclass, cols name[]) RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_sql text := mastodon_ip_scrub._scrub_statement(tbl, cols);
BEGIN
    IF v_sql IS NOT NULL AND NOT mastodon_ip_scrub._owner_sees_all(tbl) THEN
        RAISE EXCEPTION 'mastodon_ip_scrub: % needs its protected columns scrubbed, and its row-level security is forced on its owner', tbl
            USING ERRCODE = 'insufficient_privilege',
                  DETAIL = 'This command may have stored addresses in it without its trigger; they are scrubbed as the owner, from whom the policies could hide rows.',
                  HINT = format('ALTER TABLE %s NO FORCE ROW LEVEL SECURITY; first.', tbl);
    END IF;
    IF v_sql IS NOT NULL THEN
        PERFORM mastodon_ip_scrub._write_as_owner(tbl, v_sql);
    END IF;
END
$$;

CREATE OR REPLACE FUNCTION mastodon_ip_scrub._after_ddl() RETURNS event_trigger
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_cmd      record;
    v_rel      oid;
    v_kind     "char";
    v_old      text;
    v_new      name;
    v_before   text[];
    v_affected oid[] := '{}';   -- tables whose protection is brought in line
    v_exposed  text[] := '{}';  -- 'table-oid/column' whose values a command wrote without triggers
    v_ruled    oid[] := '{}';   -- tables that got a rule
    v_adopt    oid[] := '{}';   -- tables given a scrub trigger by a restore
    v_added    text[] := '{}';  -- columns the command added
    v_retyped  text[] := '{}';  -- columns the command gave a new type
    v_rewritten oid[];          -- tables the command rewrote
    v_tbl      regclass;
    v_scrub    record;
BEGIN
    -- The extension's own trigger DDL (_sync_trigger) is already what it should be.
    IF mastodon_ip_scrub._in_internal_ddl() THEN
        RETURN;
    END IF;
    -- Protection as it stood before this command. Scrub triggers are written only by the
    -- extension, by a superuser (restoring a dump), and by PostgreSQL cloning one onto a partition
    -- (ATTACH PARTITION, handled below); a command of the role's that replaced one is accounted
    -- for with _replaced_columns.
    v_before := mastodon_ip_scrub._scrubbed_columns();
    FOR v_cmd IN SELECT * FROM pg_event_trigger_ddl_commands() LOOP
        v_added := v_added || mastodon_ip_scrub._subcommand_columns(v_cmd.command, 'add column');
        v_retyped := v_retyped || mastodon_ip_scrub._subcommand_columns(v_cmd.command, 'alter column type');
        CASE v_cmd.classid
        WHEN 'pg_class'::regclass THEN
            v_rel := v_cmd.objid;
            SELECT c.relkind INTO v_kind FROM pg_class c WHERE c.oid = v_rel;
            CONTINUE WHEN NOT FOUND;
            IF v_kind IN ('v', 'm', 'f') THEN
                PERFORM mastodon_ip_scrub._refuse_protected_name(v_rel);
            END IF;
            -- A foreign table made a partition: its tree is checked (_check_protected_columns).
            IF v_kind = 'f' THEN
                v_affected := v_affected || ARRAY(SELECT pg_partition_root(c.oid) FROM pg_class c
                                                   WHERE c.oid = v_rel AND c.relispartition);
            END IF;
            CONTINUE WHEN v_kind NOT IN ('r', 'p');
            v_affected := v_affected || v_rel
                          || mastodon_ip_scrub._command_targets(v_cmd.command, 'attach partition')
                          || mastodon_ip_scrub._command_targets(v_cmd.command, 'detach partition');
            -- An attached partition brings its rows, and PostgreSQL clones the trigger onto it
            -- within the command: every protected column of it is scrubbed.
            v_exposed := v_exposed || ARRAY(
                SELECT d::oid || '/' || a.attname
                  FROM unnest(mastodon_ip_scrub._command_targets(v_cmd.command, 'attach partition')) AS p (relid)
                 CROSS JOIN LATERAL mastodon_ip_scrub._descendants(p.relid) d
                  JOIN pg_attribute a ON a.attrelid = d AND a.attnum > 0 AND NOT a.attisdropped);
            -- A rename by any of the commands that can do it (ALTER TABLE, ALTER INDEX, ALTER VIEW,
            -- ALTER TYPE ... on a table): protection follows the table or the column.
            v_old := mastodon_ip_scrub._renamed_from(v_cmd.command);
            IF v_old IS NOT NULL AND v_rel = ANY (mastodon_ip_scrub._command_targets(v_cmd.command, 'set schema')) THEN
                PERFORM mastodon_ip_scrub._follow_rename(v_rel, (mastodon_ip_scrub._table_key(v_rel)).table_name,
                                                         old_schema => v_old::name);
            ELSIF v_old IS NOT NULL AND v_cmd.objsubid <> 0 THEN
                SELECT a.attname INTO v_new FROM pg_attribute a WHERE a.attrelid = v_rel AND a.attnum = v_cmd.objsubid;
                PERFORM mastodon_ip_scrub._follow_rename(v_rel, (mastodon_ip_scrub._table_key(v_rel)).table_name, v_old::name, v_new);
                -- Values may now sit under a protected name that was protected before, unused.
                v_exposed := v_exposed || ARRAY(SELECT d::oid || '/' || v_new FROM mastodon_ip_scrub._descendants(v_rel) d);
            ELSIF v_old IS NOT NULL THEN
                PERFORM mastodon_ip_scrub._follow_rename(v_rel, v_old::name);
            END IF;
        WHEN 'pg_trigger'::regclass THEN
            PERFORM mastodon_ip_scrub._check_scrub_trigger(v_cmd.objid, v_cmd.command_tag);
            v_affected := v_affected || ARRAY(SELECT t.tgrelid FROM pg_trigger t WHERE t.oid = v_cmd.objid);
            v_before := v_before || (SELECT mastodon_ip_scrub._replaced_columns(t.tgrelid) FROM pg_trigger t
                                      WHERE t.oid = v_cmd.objid AND t.tgname = 'zz_mastodon_ip_scrub'
                                        AND t.tgfoid <> mastodon_ip_scrub._scrub_function());
            v_adopt := v_adopt || ARRAY(SELECT t.tgrelid FROM pg_trigger t WHERE t.oid = v_cmd.objid);
        WHEN 'pg_type'::regclass THEN
            -- ALTER TYPE on a composite type changes the tables created OF that type too.
            v_affected := v_affected || ARRAY(SELECT c.oid FROM pg_class c
                                               WHERE c.reloftype = v_cmd.objid AND c.relkind IN ('r', 'p'));
        WHEN 'pg_rewrite'::regclass THEN
            v_ruled := v_ruled || ARRAY(SELECT r.ev_class FROM pg_rewrite r WHERE r.oid = v_cmd.objid);
        WHEN 'pg_namespace'::regclass THEN
            v_old := mastodon_ip_scrub._renamed_from(v_cmd.command);
            IF v_old IS NOT NULL THEN
                PERFORM mastodon_ip_scrub._follow_schema_rename(v_old::name,
                            (SELECT n.nspname FROM pg_namespace n WHERE n.oid = v_cmd.objid));
                v_affected := v_affected || ARRAY(SELECT c.oid FROM pg_class c
                                                   WHERE c.relnamespace = v_cmd.objid AND c.relkind IN ('r', 'p'));
            END IF;
        ELSE
            NULL;
        END CASE;
    END LOOP;
    -- Tables rewritten by this command (table_rewrite): the values of the columns it added or
    -- retyped (ADD COLUMN with a volatile default, ALTER COLUMN ... TYPE ... USING) were computed
    -- without triggers. The rewrite copies the other columns as they were.
    v_rewritten := mastodon_ip_scrub._rewritten_tables();
    v_affected := v_affected || v_rewritten;
    v_exposed := v_exposed || ARRAY(SELECT r || '/' || c FROM unnest(v_rewritten) AS r, unnest(v_added || v_retyped) AS c);

    FOR v_tbl IN
        SELECT DISTINCT c.oid::regclass FROM unnest(v_affected) AS x (relid)
          JOIN pg_class c ON c.oid = x.relid AND c.relkind IN ('r', 'p')
    LOOP
        IF v_tbl = ANY (v_adopt) THEN
            PERFORM mastodon_ip_scrub._adopt(v_tbl);
        END IF;
        PERFORM mastodon_ip_scrub._protect_known(v_tbl, true, false, warn => false);
        IF mastodon_ip_scrub._sync_trigger(v_tbl) = 'enabled' AND tg_tag = 'ALTER TABLE' THEN
            RAISE WARNING 'mastodon_ip_scrub: trigger zz_mastodon_ip_scrub on % stays enabled', v_tbl
                USING DETAIL = format('It anonymizes the IP addresses written to %s; ALTER TABLE cannot disable it or change when it fires.',
                                      array_to_string(mastodon_ip_scrub._wanted_columns(v_tbl), ', ')),
                      HINT = 'To stop anonymizing, a superuser runs mastodon_ip_scrub.unprotect(), or SET mastodon_ip_scrub.enabled = off for one maintenance session.';
        END IF;
        PERFORM mastodon_ip_scrub._check_protected_columns(v_tbl);
    END LOOP;

    -- Columns under protection now that were not before (a table renamed, moved, attached,
    -- inherited or created with rows), or whose values were rewritten: scrubbed now, as each
    -- table's owner, so that no full address stays behind the triggers' back.
    -- A column added without rewriting the table holds NULL, or the default that
    -- _check_protected_columns checked: nothing to scrub there.
    FOR v_scrub IN
        SELECT e.tbl::regclass AS tbl, array_agg(DISTINCT e.col) AS cols
          FROM (SELECT split_part(x, '/', 1)::oid AS tbl, substr(x, strpos(x, '/') + 1)::name AS col, x
                  FROM unnest(mastodon_ip_scrub._scrubbed_columns()) AS x
                 WHERE NOT x = ANY (v_before) OR x = ANY (v_exposed)) e
         WHERE x = ANY (v_exposed) OR NOT e.col = ANY (v_added) OR e.tbl = ANY (v_rewritten)
         GROUP BY e.tbl
    LOOP
        PERFORM mastodon_ip_scrub._refuse_rules(v_scrub.tbl);
        PERFORM mastodon_ip_scrub._scrub_now(v_scrub.tbl, v_scrub.cols);
    END LOOP;
    -- What remains unscrubbed on tables that gained protection (rows from before protection,
    -- left to backfill()): said as protect() says it.
    FOR v_tbl IN
        SELECT DISTINCT mastodon_ip_scrub._trigger_home(split_part(x, '/', 1)::oid)
          FROM unnest(mastodon_ip_scrub._scrubbed_columns()) AS x
         WHERE NOT x = ANY (v_before)
    LOOP
        PERFORM mastodon_ip_scrub._warn_unscrubbed(v_tbl);
    END LOOP;
    FOR v_tbl IN
        SELECT DISTINCT c.oid::regclass FROM unnest(v_ruled) AS x (relid)
          JOIN pg_class c ON c.oid = x.relid AND c.relkind IN ('r', 'p')
    LOOP
        PERFORM mastodon_ip_scrub._refuse_rules(v_tbl);
    END LOOP;
END
$$;

-- Backstop for the refusal in _before_trigger_ddl: a scrub trigger can also disappear as a
-- dependent object, after `ALTER TRIGGER ... DEPENDS ON EXTENSION` (refused by _check_scrub_trigger
-- since) and a DROP EXTENSION of that extension.
CREATE OR REPLACE FUNCTION mastodon_ip_scrub._after_drop() RETURNS event_trigger
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_obj  record;
    v_tbl  regclass;
    v_cols name[];
BEGIN
    IF mastodon_ip_scrub._in_internal_ddl() THEN
        RETURN;
    END IF;
    FOR v_obj IN
        SELECT d.address_names FROM pg_event_trigger_dropped_objects() d
         WHERE d.object_type = 'trigger' AND d.address_names[3] = 'zz_mastodon_ip_scrub'
    LOOP
        -- Dropped along with its table: nothing left to protect. (These names are the table's
        -- current ones: nothing can rename it within this command.)
        v_tbl := to_regclass(format('%I.%I', v_obj.address_names[1], v_obj.address_names[2]));
        CONTINUE WHEN v_tbl IS NULL;
        v_cols := mastodon_ip_scrub._wanted_columns(v_tbl);
        IF v_cols IS NOT NULL THEN
            RAISE EXCEPTION 'mastodon_ip_scrub: the scrub trigger on % cannot be dropped', v_tbl
                USING ERRCODE = 'insufficient_privilege',
                      DETAIL = format('It anonymizes the IP addresses written to %s.', array_to_string(v_cols, ', ')),
                      HINT = format('To stop anonymizing, a superuser runs SELECT mastodon_ip_scrub.unprotect(%L, %s);',
                                    v_tbl::text, (SELECT string_agg(quote_literal(c), ', ') FROM unnest(v_cols) AS c));
        END IF;
    END LOOP;
END
$$;

CREATE OR REPLACE FUNCTION mastodon_ip_scrub._on_table_rewrite() RETURNS event_trigger
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    PERFORM mastodon_ip_scrub._note_rewrite(pg_event_trigger_table_rewrite_oid());
END
$$;

-- mastodon_ip_scrub::ddl::_in_internal_ddl
CREATE OR REPLACE FUNCTION "_in_internal_ddl"() RETURNS bool /* bool */
STRICT STABLE PARALLEL UNSAFE 
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'in_internal_ddl_wrapper';

-- mastodon_ip_scrub::ddl::_internal_ddl
CREATE OR REPLACE FUNCTION "_internal_ddl"(
	"statement" TEXT /* & str */
) RETURNS void
STRICT VOLATILE PARALLEL UNSAFE 
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'internal_ddl_wrapper';

-- mastodon_ip_scrub::ddl::_note_rewrite
CREATE OR REPLACE FUNCTION "_note_rewrite"(
	"tbl" oid /* pg_sys :: Oid */
) RETURNS void
STRICT VOLATILE PARALLEL UNSAFE 
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'note_rewrite_wrapper';

-- mastodon_ip_scrub::functions::_pending
CREATE OR REPLACE FUNCTION "_pending"(
	"ip" inet, /* Option < Inet > */
	"not_null" bool DEFAULT false /* bool */
) RETURNS bool /* bool */
STABLE PARALLEL SAFE 
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'pending_wrapper';

-- mastodon_ip_scrub::owner::_query_as_owner
CREATE OR REPLACE FUNCTION "_query_as_owner"(
	"tbl" oid, /* pg_sys :: Oid */
	"query" TEXT /* & str */
) RETURNS bigint[] /* :: std :: option :: Option < Vec < Option < i64 > > > */
STRICT VOLATILE PARALLEL UNSAFE 
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'query_as_owner_wrapper';

-- mastodon_ip_scrub::ddl::_rewritten_tables
CREATE OR REPLACE FUNCTION "_rewritten_tables"() RETURNS oid[] /* Vec < pg_sys :: Oid > */
STRICT VOLATILE PARALLEL UNSAFE 
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'rewritten_tables_wrapper';

-- mastodon_ip_scrub::functions::_settings
CREATE OR REPLACE FUNCTION "_settings"() RETURNS TABLE (
	"enabled" bool,  /* bool */
	"mode" TEXT,  /* String */
	"ipv4_prefix" INT,  /* i32 */
	"ipv6_prefix" INT,  /* i32 */
	"skip_redundant_updates" bool  /* bool */
)
STRICT STABLE PARALLEL SAFE 
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'current_settings_wrapper';

-- mastodon_ip_scrub::functions::_stored
CREATE OR REPLACE FUNCTION "_stored"(
	"ip" inet, /* Inet */
	"not_null" bool /* bool */
) RETURNS inet /* Option < Inet > */
STRICT STABLE PARALLEL SAFE 
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'stored_wrapper';

-- mastodon_ip_scrub::functions::_update_needed
CREATE OR REPLACE FUNCTION "_update_needed"(
	"old" inet, /* Option < Inet > */
	"new" inet, /* Option < Inet > */
	"not_null" bool /* bool */
) RETURNS bool /* bool */
STABLE PARALLEL SAFE 
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'update_needed_wrapper';

-- mastodon_ip_scrub::owner::_write_as_owner
CREATE OR REPLACE FUNCTION "_write_as_owner"(
	"tbl" oid, /* pg_sys :: Oid */
	"statement" TEXT, /* & str */
	"args" TEXT[] DEFAULT '{}' /* Vec < String > */
) RETURNS bigint /* i64 */
STRICT VOLATILE PARALLEL UNSAFE 
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'write_as_owner_wrapper';

-- mastodon_ip_scrub::functions::scrub
CREATE OR REPLACE FUNCTION "scrub"(
	"ip" inet /* Inet */
) RETURNS inet /* Option < Inet > */
STRICT STABLE PARALLEL SAFE
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'scrub_wrapper';

-- mastodon_ip_scrub::functions::truncate
CREATE OR REPLACE FUNCTION "truncate"(
	"ip" inet, /* Inet */
	"ipv4_prefix" INT DEFAULT 24, /* i32 */
	"ipv6_prefix" INT DEFAULT 48 /* i32 */
) RETURNS inet /* Inet */
IMMUTABLE STRICT PARALLEL SAFE
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'truncate_wrapper';

-- Each protected table's scrub trigger as 0.2.0 makes it: a partition tree's or inheritance
-- child's trigger carries the protection of its ancestors too (sql/protection.sql, _wanted).
SELECT mastodon_ip_scrub._sync_named(p.schema_name, p.table_name)
  FROM (SELECT DISTINCT schema_name, table_name FROM mastodon_ip_scrub.protection) p;

-- Who may call what: as in 0.2.0's CREATE EXTENSION (sql/finalize.sql).
REVOKE ALL ON ALL FUNCTIONS IN SCHEMA mastodon_ip_scrub FROM PUBLIC;
REVOKE ALL ON ALL PROCEDURES IN SCHEMA mastodon_ip_scrub FROM PUBLIC;
GRANT USAGE ON SCHEMA mastodon_ip_scrub TO PUBLIC;
GRANT EXECUTE ON FUNCTION mastodon_ip_scrub.truncate(inet, integer, integer),
                          mastodon_ip_scrub.scrub(inet),
                          mastodon_ip_scrub._stored(inet, boolean),
                          mastodon_ip_scrub._pending(inet, boolean),
                          mastodon_ip_scrub._update_needed(inet, inet, boolean),
                          mastodon_ip_scrub.scrub_trigger()
   TO PUBLIC;

CREATE EVENT TRIGGER mastodon_ip_scrub_before_trigger_ddl ON ddl_command_start
    WHEN TAG IN ('CREATE TRIGGER', 'DROP TRIGGER')
    EXECUTE FUNCTION mastodon_ip_scrub._before_trigger_ddl();
CREATE EVENT TRIGGER mastodon_ip_scrub_table_rewrite ON table_rewrite
    EXECUTE FUNCTION mastodon_ip_scrub._on_table_rewrite();
CREATE EVENT TRIGGER mastodon_ip_scrub_after_ddl ON ddl_command_end
    EXECUTE FUNCTION mastodon_ip_scrub._after_ddl();
CREATE EVENT TRIGGER mastodon_ip_scrub_after_drop ON sql_drop
    WHEN TAG IN ('DROP TRIGGER', 'DROP EXTENSION')
    EXECUTE FUNCTION mastodon_ip_scrub._after_drop();
ALTER EVENT TRIGGER mastodon_ip_scrub_before_trigger_ddl ENABLE ALWAYS;
ALTER EVENT TRIGGER mastodon_ip_scrub_table_rewrite ENABLE ALWAYS;
ALTER EVENT TRIGGER mastodon_ip_scrub_after_ddl ENABLE ALWAYS;
ALTER EVENT TRIGGER mastodon_ip_scrub_after_drop ENABLE ALWAYS;

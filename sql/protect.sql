-- Which columns are protected, and the triggers that enforce it.
--
-- The protection view (sql/config_store.sql) records what the admin (or auto-protection) asked
-- for, by schema, table and column name, so a table dropped and created again
-- (`rails db:schema:load`) or restored from a dump is protected again.
--
-- What enforces it is the scrub trigger: zz_mastodon_ip_scrub, running
-- mastodon_ip_scrub.scrub_trigger() with the protected column names as arguments (the trigger
-- reads them from its own definition, so no write ever reads the store). A trigger belongs to
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

-- Makes the trigger of `rel`'s home (see _trigger_home) match what is wanted (_wanted): created,
-- re-created exactly, enabled (ALWAYS when a row asks for replicas) on the home and every
-- partition, or dropped when nothing is protected there any more; then the same for every
-- inheritance child, whose protection includes the home's. Returns what it did on the home:
-- 'created', 'updated', 'enabled', 'dropped' or NULL. Refuses a table where another BEFORE row
-- trigger would run after ours, since it could write the full address back.
-- The DDL names the table; the table is then checked by OID, so a rename racing with this
-- function fails it instead of moving the trigger elsewhere.
CREATE FUNCTION mastodon_ip_scrub._sync_trigger(rel regclass) RETURNS text
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
     WHERE t.tgrelid = v_home AND t.tgname = mastodon_ip_scrub._trigger_name();

    IF v_want.cols IS NULL THEN
        IF v_trigger IS NOT NULL AND EXISTS (SELECT FROM pg_trigger t WHERE t.oid = v_trigger
                                               AND t.tgfoid = mastodon_ip_scrub._scrub_function()) THEN
            PERFORM mastodon_ip_scrub._internal_ddl(format('DROP TRIGGER %I ON %s', mastodon_ip_scrub._trigger_name(), v_home));
            v_action := 'dropped';
        END IF;
    ELSE
        -- PostgreSQL fires BEFORE row triggers in name order (byte-wise): ours must come last.
        SELECT string_agg(format('%I on %s', t.tgname, t.tgrelid::regclass), ', ') INTO v_late
          FROM mastodon_ip_scrub._table_tree(v_home) part
          JOIN pg_trigger t ON t.tgrelid = part.relid
         WHERE t.tgname > mastodon_ip_scrub._trigger_name() AND t.tgenabled <> 'D' AND NOT t.tgisinternal
           AND t.tgtype::integer & 3 = 3             -- ROW, BEFORE
           AND t.tgtype::integer & 64 = 0            -- not INSTEAD OF
           AND t.tgtype::integer & (4 | 16) <> 0;    -- INSERT or UPDATE
        IF v_late IS NOT NULL THEN
            RAISE EXCEPTION 'mastodon_ip_scrub: trigger % would run after % and could write full IP addresses back into %', v_late, mastodon_ip_scrub._trigger_name(), v_home
                USING ERRCODE = 'object_not_in_prerequisite_state',
                      DETAIL = format('Protected columns of %s: %s.', v_home, array_to_string(v_want.cols, ', ')),
                      HINT = format('PostgreSQL fires BEFORE row triggers in name order: rename that trigger so it sorts before "%s".', mastodon_ip_scrub._trigger_name());
        END IF;

        IF NOT mastodon_ip_scrub._is_exact_trigger(v_trigger, v_want.cols) THEN
            v_action := CASE WHEN v_trigger IS NULL THEN 'created' ELSE 'updated' END;
            PERFORM mastodon_ip_scrub._internal_ddl(format(
                'CREATE OR REPLACE TRIGGER %I BEFORE INSERT OR UPDATE ON %s '
                'FOR EACH ROW EXECUTE FUNCTION mastodon_ip_scrub.scrub_trigger(%s)',
                mastodon_ip_scrub._trigger_name(), v_home, (SELECT string_agg(quote_literal(c), ', ') FROM unnest(v_want.cols) AS c)));
        END IF;

        -- A partitioned table's trigger is cloned onto each partition, each with its own state.
        -- The state is read again per table: enabling the parent may already have enabled the rest.
        FOR v_member IN
            SELECT t.oid, t.tgrelid::regclass AS rel
              FROM mastodon_ip_scrub._table_tree(v_home) part
              JOIN pg_trigger t ON t.tgrelid = part.relid AND t.tgname = mastodon_ip_scrub._trigger_name()
             ORDER BY part.level
        LOOP
            IF (SELECT t.tgenabled FROM pg_trigger t WHERE t.oid = v_member.oid) <> v_state THEN
                PERFORM mastodon_ip_scrub._internal_ddl(format(
                    'ALTER TABLE %s ENABLE %s TRIGGER %I',
                    v_member.rel, CASE WHEN v_state = 'A' THEN 'ALWAYS' ELSE '' END, mastodon_ip_scrub._trigger_name()));
                v_action := coalesce(v_action, 'enabled');
            END IF;
        END LOOP;
    END IF;

    -- The result, checked by OID.
    SELECT t.oid INTO v_trigger FROM pg_trigger t
     WHERE t.tgrelid = v_home AND t.tgname = mastodon_ip_scrub._trigger_name();
    IF v_want.cols IS NULL THEN
        v_wrong := v_trigger IS NOT NULL AND EXISTS (SELECT FROM pg_trigger t WHERE t.oid = v_trigger
                                                       AND t.tgfoid = mastodon_ip_scrub._scrub_function());
    ELSE
        v_wrong := NOT mastodon_ip_scrub._is_exact_trigger(v_trigger, v_want.cols)
                   OR EXISTS (SELECT FROM mastodon_ip_scrub._table_tree(v_home) part
                               WHERE NOT EXISTS (SELECT FROM pg_trigger t
                                                  WHERE t.tgrelid = part.relid AND t.tgname = mastodon_ip_scrub._trigger_name()
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
CREATE FUNCTION mastodon_ip_scrub._sync_named(schema_name name, table_name name) RETURNS void
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
CREATE FUNCTION mastodon_ip_scrub._check_protectable(tbl regclass, cols name[], any_type boolean DEFAULT false) RETURNS void
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
CREATE FUNCTION mastodon_ip_scrub._rules_of(tbl regclass) RETURNS text
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT string_agg(format('%I on %s', r.rulename, r.ev_class::regclass), ', ' ORDER BY r.rulename)
      FROM mastodon_ip_scrub._descendants(tbl) d
      JOIN pg_rewrite r ON r.ev_class = d AND r.rulename <> '_RETURN'
$$;

-- protect() without what it tells the admin afterwards (_warn_protected); `any_type` as for
-- _check_protectable.
CREATE FUNCTION mastodon_ip_scrub._protect(tbl regclass, cols name[], replicas boolean, any_type boolean DEFAULT false) RETURNS void
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
CREATE FUNCTION mastodon_ip_scrub._warn_protected(tbl regclass) RETURNS void
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

CREATE FUNCTION mastodon_ip_scrub.protect(tbl regclass, cols name[], replicas boolean) RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    PERFORM mastodon_ip_scrub._primary_only('protect()');
    PERFORM mastodon_ip_scrub._protect(tbl, cols, replicas);
    PERFORM mastodon_ip_scrub._warn_protected(tbl);
END
$$;
COMMENT ON FUNCTION mastodon_ip_scrub.protect(regclass, name[], boolean) IS
    'protect() with a choice: replicas => false creates the trigger ENABLE ORIGIN, so logical-replication subscribers and replica-role sessions do not scrub.';

CREATE FUNCTION mastodon_ip_scrub.protect(tbl regclass, VARIADIC cols name[]) RETURNS void
LANGUAGE sql
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT mastodon_ip_scrub.protect(tbl, cols, true)
$$;
COMMENT ON FUNCTION mastodon_ip_scrub.protect(regclass, name[]) IS
    'Anonymize every address written to these inet columns from now on, replicas included (existing rows: backfill()). Idempotent.';

CREATE FUNCTION mastodon_ip_scrub.unprotect(tbl regclass, VARIADIC cols name[]) RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_schema name;
    v_table  name;
    v_col    name;
    v_known  text;
BEGIN
    PERFORM mastodon_ip_scrub._primary_only('unprotect()');
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

-- Protects the Mastodon user-IP columns of `tbl` that are not exempt and returns them; only those
-- not protected yet unless `all_known`. A column of a type that holds no address is protected too,
-- with a WARNING: the trigger stores NULL there. A generated one is skipped with a WARNING (the
-- event triggers refuse the DDL that makes one). With `warn`, says what protect() says afterwards.
CREATE FUNCTION mastodon_ip_scrub._protect_known(tbl regclass, replicas boolean, all_known boolean,
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
CREATE FUNCTION mastodon_ip_scrub.protect_mastodon(replicas boolean DEFAULT true)
RETURNS TABLE (table_name regclass, column_name name)
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_tbl regclass;
BEGIN
    PERFORM mastodon_ip_scrub._primary_only('protect_mastodon()');
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

CREATE VIEW mastodon_ip_scrub.protected_columns AS
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

-- Writing protection or exemptions: the views of sql/config_store.sql store what is written here,
-- and the scrub triggers follow.

-- Every table that is protected or carries a scrub trigger, brought in line: after stores were
-- merged, the triggers were made from one of them and may not match the union (a restore's
-- auto-protection of a column the dumped database had exempt).
CREATE FUNCTION mastodon_ip_scrub._sync_all() RETURNS void
LANGUAGE sql
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT count(mastodon_ip_scrub._sync_trigger(t.relid::regclass))
      FROM (SELECT c.oid
              FROM mastodon_ip_scrub.protection p
              JOIN pg_namespace n ON n.nspname = p.schema_name
              JOIN pg_class c ON c.relnamespace = n.oid AND c.relname = p.table_name AND c.relkind IN ('r', 'p')
            UNION
            SELECT t.tgrelid FROM pg_trigger t
             WHERE t.tgfoid = mastodon_ip_scrub._scrub_function() AND t.tgparentid = 0) AS t (relid);
$$;

-- _store_save, and when that merged stores, _sync_all.
CREATE FUNCTION mastodon_ip_scrub._store_and_sync(protection jsonb, exemption jsonb) RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF mastodon_ip_scrub._store_save(protection, exemption) THEN
        PERFORM mastodon_ip_scrub._sync_all();
    END IF;
END
$$;

-- A row written to the protection view: a new row is merged into one with the same column (the
-- earlier protected_at, and replicas when either asks for it: a restore's rows meet those that
-- auto-protection made a moment earlier), and settles an exemption of that column. The tables
-- named before and after are then brought in line (_sync_named).
CREATE FUNCTION mastodon_ip_scrub._protection_written() RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_same record;
    v_old  jsonb;
    v_new  jsonb;
BEGIN
    PERFORM mastodon_ip_scrub._store_lock();
    IF TG_OP <> 'INSERT' THEN
        v_old := mastodon_ip_scrub._store_key(OLD.schema_name, OLD.table_name, OLD.column_name);
    END IF;
    IF TG_OP <> 'DELETE' THEN
        PERFORM mastodon_ip_scrub._store_check('a protection', NEW.schema_name, NEW.table_name, NEW.column_name);
        v_new := mastodon_ip_scrub._store_key(NEW.schema_name, NEW.table_name, NEW.column_name);
        NEW.replicas := coalesce(NEW.replicas, true);
        NEW.protected_at := coalesce(NEW.protected_at, now());
    END IF;
    IF TG_OP = 'INSERT' THEN
        SELECT * INTO v_same FROM mastodon_ip_scrub.protection p
         WHERE (p.schema_name, p.table_name, p.column_name) = (NEW.schema_name, NEW.table_name, NEW.column_name);
        IF FOUND THEN
            NEW.replicas := NEW.replicas OR v_same.replicas;
            NEW.protected_at := least(NEW.protected_at, v_same.protected_at);
        END IF;
    END IF;
    PERFORM mastodon_ip_scrub._store_and_sync(
        mastodon_ip_scrub._store_without((SELECT jsonb_agg(to_jsonb(p)) FROM mastodon_ip_scrub.protection p), v_old, v_new)
            || CASE WHEN TG_OP = 'DELETE' THEN '[]' ELSE jsonb_build_array(to_jsonb(NEW)) END,
        mastodon_ip_scrub._store_without((SELECT jsonb_agg(to_jsonb(e)) FROM mastodon_ip_scrub.exemption e), v_new));

    IF TG_OP <> 'DELETE' THEN
        PERFORM mastodon_ip_scrub._sync_named(NEW.schema_name, NEW.table_name);
    END IF;
    IF TG_OP <> 'INSERT' AND (TG_OP = 'DELETE' OR (OLD.schema_name, OLD.table_name) <> (NEW.schema_name, NEW.table_name)) THEN
        PERFORM mastodon_ip_scrub._sync_named(OLD.schema_name, OLD.table_name);
    END IF;
    RETURN CASE WHEN TG_OP = 'DELETE' THEN OLD ELSE NEW END;
END
$$;

CREATE TRIGGER store INSTEAD OF INSERT OR UPDATE OR DELETE ON mastodon_ip_scrub.protection
    FOR EACH ROW EXECUTE FUNCTION mastodon_ip_scrub._protection_written();

-- A row written to the exemption view: one for a column already exempt replaces it (exempt()
-- gives a new reason that way), and the column stops being protected: exempt() refuses a
-- protected column, but a restore merges what the dumped database decided, where the exemption
-- won.
CREATE FUNCTION mastodon_ip_scrub._exemption_written() RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_protected boolean := false;
    v_old       jsonb;
    v_new       jsonb;
BEGIN
    PERFORM mastodon_ip_scrub._store_lock();
    IF TG_OP <> 'INSERT' THEN
        v_old := mastodon_ip_scrub._store_key(OLD.schema_name, OLD.table_name, OLD.column_name);
    END IF;
    IF TG_OP <> 'DELETE' THEN
        PERFORM mastodon_ip_scrub._store_check('an exemption', NEW.schema_name, NEW.table_name, NEW.column_name);
        IF NEW.reason IS NULL OR NEW.reason = '' THEN
            RAISE EXCEPTION 'mastodon_ip_scrub: an exemption needs a reason'
                USING ERRCODE = 'check_violation';
        END IF;
        v_new := mastodon_ip_scrub._store_key(NEW.schema_name, NEW.table_name, NEW.column_name);
        NEW.builtin := coalesce(NEW.builtin, false);
        NEW.exempted_at := coalesce(NEW.exempted_at, now());
        v_protected := EXISTS (SELECT FROM mastodon_ip_scrub.protection p
                                WHERE (p.schema_name, p.table_name, p.column_name) = (NEW.schema_name, NEW.table_name, NEW.column_name));
    END IF;
    PERFORM mastodon_ip_scrub._store_and_sync(
        mastodon_ip_scrub._store_without((SELECT jsonb_agg(to_jsonb(p)) FROM mastodon_ip_scrub.protection p), v_new),
        mastodon_ip_scrub._store_without((SELECT jsonb_agg(to_jsonb(e)) FROM mastodon_ip_scrub.exemption e), v_old, v_new)
            || CASE WHEN TG_OP = 'DELETE' THEN '[]' ELSE jsonb_build_array(to_jsonb(NEW)) END);
    IF v_protected THEN
        PERFORM mastodon_ip_scrub._sync_named(NEW.schema_name, NEW.table_name);
    END IF;
    RETURN CASE WHEN TG_OP = 'DELETE' THEN OLD ELSE NEW END;
END
$$;

CREATE TRIGGER store INSTEAD OF INSERT OR UPDATE OR DELETE ON mastodon_ip_scrub.exemption
    FOR EACH ROW EXECUTE FUNCTION mastodon_ip_scrub._exemption_written();

-- After a restore, the dumped store and the restoring database's own become one (_store_save
-- merges them): the DDL event trigger calls this after every command. Nothing to do while at most
-- one store holds a document.
CREATE FUNCTION mastodon_ip_scrub._store_merge() RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    -- Runs after every DDL command: the catalog alone rules out the usual single store.
    IF (SELECT count(*) FROM mastodon_ip_scrub._stores()) < 2
       OR (SELECT count(*) FROM mastodon_ip_scrub._store_documents()) < 2 THEN
        RETURN;
    END IF;
    PERFORM mastodon_ip_scrub._store_lock();
    PERFORM mastodon_ip_scrub._store_and_sync(
        (SELECT coalesce(jsonb_agg(to_jsonb(p)), '[]') FROM mastodon_ip_scrub.protection p),
        (SELECT coalesce(jsonb_agg(to_jsonb(e)), '[]') FROM mastodon_ip_scrub.exemption e));
END
$$;

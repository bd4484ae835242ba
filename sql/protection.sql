-- Which columns are protected, and the triggers that enforce it.
--
-- The protection table is the source of truth and is kept by pg_dump. Each protected table has
-- one trigger, zz_mastodon_ip_scrub, whose arguments are the table's protected column names:
-- the trigger reads them from its own definition, so no write ever queries this table.
-- The zz_ prefix makes it run after the application's BEFORE triggers (PostgreSQL fires them in
-- name order), so none of those can put a full address back.
-- The trigger names columns, it does not depend on them: a Mastodon migration can still
-- DROP COLUMN, where an `UPDATE OF col` trigger would make it fail.

CREATE TABLE mastodon_ip_scrub.protection (
    schema_name  name        NOT NULL,
    table_name   name        NOT NULL,
    column_name  name        NOT NULL,
    protected_at timestamptz NOT NULL DEFAULT pg_catalog.now(),
    PRIMARY KEY (schema_name, table_name, column_name)
);
COMMENT ON TABLE mastodon_ip_scrub.protection IS
    'Columns whose written IP addresses are anonymized. Change with protect() / unprotect().';
SELECT pg_catalog.pg_extension_config_dump('mastodon_ip_scrub.protection', '');

-- How the protection table names a table: by schema and name, so a table dropped and created again
-- (a schema reload) or restored from a dump is still recognized.
CREATE FUNCTION mastodon_ip_scrub._table_key(tbl regclass, OUT schema_name name, OUT table_name name)
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT n.nspname, c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.oid = tbl
$$;

-- The protected column names of `tbl`, sorted (the trigger's arguments); NULL when none.
CREATE FUNCTION mastodon_ip_scrub._protected_names(tbl regclass) RETURNS name[]
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT array_agg(p.column_name ORDER BY p.column_name)
      FROM mastodon_ip_scrub.protection p
      JOIN mastodon_ip_scrub._table_key(tbl) k USING (schema_name, table_name)
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
     WHERE t.tgrelid = relid AND t.tgname = 'zz_mastodon_ip_scrub'
       AND t.tgfoid = 'mastodon_ip_scrub.scrub_trigger()'::regprocedure
       AND position('\x00'::bytea || convert_to(col, current_setting('server_encoding')) || '\x00'::bytea
                    IN '\x00'::bytea || t.tgargs) > 0
$$;

-- Makes the table's trigger match the protection table: created, re-created with the current
-- column list, re-enabled, or dropped when nothing on the table is protected any more.
CREATE FUNCTION mastodon_ip_scrub._sync_trigger(tbl regclass) RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_cols    name[];
    v_args    bytea := '';
    v_col     name;
    v_trigger record;
    v_exists  boolean;
BEGIN
    v_cols := mastodon_ip_scrub._protected_names(tbl);

    SELECT t.tgargs, t.tgenabled, t.tgfoid INTO v_trigger
      FROM pg_trigger t
     WHERE t.tgrelid = tbl AND t.tgname = 'zz_mastodon_ip_scrub';
    v_exists := FOUND;

    IF v_cols IS NULL THEN
        IF v_exists THEN
            EXECUTE format('DROP TRIGGER zz_mastodon_ip_scrub ON %s', tbl);
        END IF;
        RETURN;
    END IF;

    -- pg_trigger.tgargs is each argument in the server encoding, NUL-terminated.
    FOREACH v_col IN ARRAY v_cols LOOP
        v_args := v_args || convert_to(v_col, current_setting('server_encoding')) || '\x00'::bytea;
    END LOOP;

    IF NOT v_exists
       OR v_trigger.tgargs IS DISTINCT FROM v_args
       OR v_trigger.tgfoid <> 'mastodon_ip_scrub.scrub_trigger()'::regprocedure THEN
        EXECUTE format(
            'CREATE OR REPLACE TRIGGER zz_mastodon_ip_scrub BEFORE INSERT OR UPDATE ON %s '
            'FOR EACH ROW EXECUTE FUNCTION mastodon_ip_scrub.scrub_trigger(%s)',
            tbl, (SELECT string_agg(quote_literal(c), ', ') FROM unnest(v_cols) AS c));
    ELSIF v_trigger.tgenabled = 'D' THEN
        EXECUTE format('ALTER TABLE %s ENABLE TRIGGER zz_mastodon_ip_scrub', tbl);
    END IF;
END
$$;

-- Validates the table and every named column; raises before anything is changed.
CREATE FUNCTION mastodon_ip_scrub._check_protectable(tbl regclass, cols name[]) RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_relkind "char";
    v_relname name;
    v_col     name;
    v_type    oid;
BEGIN
    SELECT c.relkind, c.relname INTO v_relkind, v_relname FROM pg_class c WHERE c.oid = tbl;
    IF v_relkind NOT IN ('r', 'p') THEN
        RAISE EXCEPTION 'mastodon_ip_scrub.protect: % is not a table', tbl
            USING ERRCODE = 'wrong_object_type',
                  HINT = 'Protect the table that stores the addresses, not a view or index.';
    END IF;
    IF cols IS NULL OR cardinality(cols) = 0 THEN
        RAISE EXCEPTION 'mastodon_ip_scrub.protect: no column of table % named', tbl
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = format('Name the columns: SELECT mastodon_ip_scrub.protect(%L, ''ip'');', tbl::text);
    END IF;

    FOREACH v_col IN ARRAY cols LOOP
        SELECT a.atttypid INTO v_type
          FROM pg_attribute a
         WHERE a.attrelid = tbl AND a.attname = v_col AND a.attnum > 0 AND NOT a.attisdropped;
        IF NOT FOUND THEN
            RAISE EXCEPTION 'mastodon_ip_scrub.protect: column "%" of table % does not exist', v_col, tbl
                USING ERRCODE = 'undefined_column',
                      HINT = coalesce(
                          'Columns of type inet in ' || tbl::text || ': ' || (
                              SELECT string_agg(quote_ident(a.attname), ', ' ORDER BY a.attnum)
                                FROM pg_attribute a
                               WHERE a.attrelid = tbl AND a.atttypid = 'inet'::regtype
                                 AND a.attnum > 0 AND NOT a.attisdropped) || '.',
                          'Table ' || tbl::text || ' has no column of type inet.');
        END IF;
        IF v_relname = 'ip_blocks' AND v_col = 'ip' THEN
            RAISE EXCEPTION 'mastodon_ip_scrub.protect: refusing to protect %.ip: it holds the IP ranges an admin blocked, not client addresses', tbl
                USING ERRCODE = 'invalid_parameter_value',
                      DETAIL = 'Truncating a blocked range to the configured prefix would widen the block to every address in that prefix.',
                      HINT = 'Leave ip_blocks.ip unprotected; Mastodon checks blocks against the live request address.';
        END IF;
        IF v_type <> 'inet'::regtype THEN
            RAISE EXCEPTION 'mastodon_ip_scrub.protect: column "%" of table % has type %, not inet', v_col, tbl, format_type(v_type, NULL)
                USING ERRCODE = 'datatype_mismatch',
                      HINT = 'Only inet columns holding client addresses can be protected.';
        END IF;
    END LOOP;
END
$$;

CREATE FUNCTION mastodon_ip_scrub.protect(tbl regclass, VARIADIC cols name[]) RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    PERFORM mastodon_ip_scrub._check_protectable(tbl, cols);
    INSERT INTO mastodon_ip_scrub.protection (schema_name, table_name, column_name)
    SELECT k.schema_name, k.table_name, col
      FROM mastodon_ip_scrub._table_key(tbl) k CROSS JOIN unnest(cols) AS col
    ON CONFLICT DO NOTHING;
    -- Protecting a column settles an earlier decision to leave it alone.
    DELETE FROM mastodon_ip_scrub.exemption e
     USING mastodon_ip_scrub._table_key(tbl) k
     WHERE e.schema_name = k.schema_name AND e.table_name = k.table_name AND e.column_name = ANY (cols);
    PERFORM mastodon_ip_scrub._sync_trigger(tbl);
    PERFORM mastodon_ip_scrub._warn_unscrubbed(tbl);
END
$$;
COMMENT ON FUNCTION mastodon_ip_scrub.protect(regclass, name[]) IS
    'Anonymize every address written to these inet columns from now on (existing rows: backfill()). Idempotent.';

CREATE FUNCTION mastodon_ip_scrub.unprotect(tbl regclass, VARIADIC cols name[]) RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_schema name;
    v_table  name;
    v_col    name;
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
    PERFORM mastodon_ip_scrub._sync_trigger(tbl);
END
$$;
COMMENT ON FUNCTION mastodon_ip_scrub.unprotect(regclass, name[]) IS
    'Stop anonymizing these columns; drops the trigger when nothing on the table stays protected. Idempotent.';

-- Every column in which Mastodon stores a user's IP address, current and historical
-- (see MASTODON.md). Never ip_blocks.ip: those are admin-entered block ranges.
CREATE FUNCTION mastodon_ip_scrub.protect_mastodon()
RETURNS TABLE (table_name regclass, column_name name)
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    r record;
BEGIN
    FOR r IN
        SELECT c.oid::regclass AS tbl,
               array_agg(a.attname ORDER BY a.attname) FILTER (WHERE a.atttypid = 'inet'::regtype) AS cols,
               array_agg(format('%I (%s)', a.attname, format_type(a.atttypid, NULL)))
                   FILTER (WHERE a.atttypid <> 'inet'::regtype) AS skipped
          FROM (VALUES ('users', 'sign_up_ip'),
                       ('users', 'current_sign_in_ip'),
                       ('users', 'last_sign_in_ip'),
                       ('session_activations', 'ip'),
                       ('login_activities', 'ip'),
                       ('oauth_access_tokens', 'last_used_ip')) AS known (relname, attname)
          JOIN pg_class c ON c.relname = known.relname AND c.relkind IN ('r', 'p')
          JOIN pg_namespace n ON n.oid = c.relnamespace
          JOIN pg_attribute a ON a.attrelid = c.oid AND a.attname = known.attname
                             AND a.attnum > 0 AND NOT a.attisdropped
         WHERE n.nspname NOT IN ('pg_catalog', 'information_schema', 'mastodon_ip_scrub')
           AND n.nspname NOT LIKE 'pg\_%'
         GROUP BY c.oid, n.nspname, c.relname
         ORDER BY n.nspname, c.relname
    LOOP
        IF r.skipped IS NOT NULL THEN
            RAISE WARNING 'mastodon_ip_scrub: not protecting % column %: not of type inet', r.tbl, array_to_string(r.skipped, ', ');
        END IF;
        CONTINUE WHEN r.cols IS NULL;
        PERFORM mastodon_ip_scrub.protect(r.tbl, VARIADIC r.cols);
        table_name := r.tbl;
        FOREACH column_name IN ARRAY r.cols LOOP
            RETURN NEXT;
        END LOOP;
    END LOOP;
END
$$;
COMMENT ON FUNCTION mastodon_ip_scrub.protect_mastodon() IS
    'Protect every Mastodon user-IP column present (never ip_blocks.ip); returns what is protected.';

CREATE VIEW mastodon_ip_scrub.protected_columns AS
SELECT p.schema_name,
       p.table_name,
       p.column_name,
       a.attnum IS NOT NULL AS column_present,
       (mastodon_ip_scrub._trigger_state(c.oid, p.column_name)).enabled AS trigger_enabled
  FROM mastodon_ip_scrub.protection p
  LEFT JOIN pg_catalog.pg_namespace n ON n.nspname = p.schema_name
  LEFT JOIN pg_catalog.pg_class c ON c.relnamespace = n.oid AND c.relname = p.table_name
  LEFT JOIN pg_catalog.pg_attribute a ON a.attrelid = c.oid AND a.attname = p.column_name
                                     AND a.attnum > 0 AND NOT a.attisdropped;
COMMENT ON VIEW mastodon_ip_scrub.protected_columns IS
    'Protected columns; trigger_enabled is true when writes to the column are being anonymized.';

-- Only superusers (or roles an admin grants) may change what is protected.
REVOKE ALL ON FUNCTION mastodon_ip_scrub._table_key(regclass) FROM PUBLIC;
REVOKE ALL ON FUNCTION mastodon_ip_scrub._protected_names(regclass) FROM PUBLIC;
REVOKE ALL ON FUNCTION mastodon_ip_scrub._sync_trigger(regclass) FROM PUBLIC;
REVOKE ALL ON FUNCTION mastodon_ip_scrub._check_protectable(regclass, name[]) FROM PUBLIC;
REVOKE ALL ON FUNCTION mastodon_ip_scrub.protect(regclass, name[]) FROM PUBLIC;
REVOKE ALL ON FUNCTION mastodon_ip_scrub.unprotect(regclass, name[]) FROM PUBLIC;
REVOKE ALL ON FUNCTION mastodon_ip_scrub.protect_mastodon() FROM PUBLIC;

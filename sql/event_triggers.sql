-- Protection that outlives the application's own DDL: Rails migrations, `db:schema:load`, and
-- whatever Mastodon's role, which owns every table, does to our triggers. Three event triggers,
-- members of the extension:
--   ddl_command_start, CREATE TRIGGER: a dump's plain CREATE TRIGGER zz_mastodon_ip_scrub
--     replaces the trigger that auto-protection created while the table was being restored;
--   ddl_command_end, table and trigger DDL: known Mastodon IP columns and columns protected by
--     name are protected in the same transaction; renames carry protection along; the scrub
--     trigger is put back if the command disabled, limited or replaced it; a BEFORE trigger
--     that would run after ours is refused;
--   sql_drop, DROP TRIGGER: dropping the scrub trigger of a protected table is refused.
-- They are ENABLE ALWAYS, so session_replication_role does not switch them off, and the
-- functions are SECURITY DEFINER: they run during the application role's DDL, and that role may
-- not write the protection table.

CREATE FUNCTION mastodon_ip_scrub._renamed_from(pg_ddl_command) RETURNS text
LANGUAGE c STRICT
AS 'MODULE_PATHNAME', 'renamed_from';
COMMENT ON FUNCTION mastodon_ip_scrub._renamed_from(pg_ddl_command) IS
    'The old name in an ALTER TABLE ... RENAME [COLUMN] command, else NULL.';

CREATE FUNCTION mastodon_ip_scrub._before_create_trigger() RETURNS event_trigger
LANGUAGE c
AS 'MODULE_PATHNAME', 'before_create_trigger';

-- After ALTER TABLE ... RENAME [COLUMN], what was protected or exempt under the old name (table
-- `old_table` in tbl's schema, and column `old_column` if a column was renamed) moves to the
-- current one. A row the new name already has wins over the moved one.
CREATE FUNCTION mastodon_ip_scrub._follow_rename(tbl regclass, old_table name,
                                                 old_column name DEFAULT NULL, new_column name DEFAULT NULL)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_key record;
BEGIN
    SELECT * INTO v_key FROM mastodon_ip_scrub._table_key(tbl);
    DELETE FROM mastodon_ip_scrub.protection p
     WHERE (p.schema_name, p.table_name) = (v_key.schema_name, old_table)
       AND p.column_name = coalesce(old_column, p.column_name)
       AND EXISTS (SELECT FROM mastodon_ip_scrub.protection x
                    WHERE (x.schema_name, x.table_name, x.column_name)
                        = (v_key.schema_name, v_key.table_name, coalesce(new_column, p.column_name)));
    UPDATE mastodon_ip_scrub.protection p
       SET table_name = v_key.table_name, column_name = coalesce(new_column, p.column_name)
     WHERE (p.schema_name, p.table_name) = (v_key.schema_name, old_table)
       AND p.column_name = coalesce(old_column, p.column_name);
    DELETE FROM mastodon_ip_scrub.exemption e
     WHERE (e.schema_name, e.table_name) = (v_key.schema_name, old_table) AND NOT e.builtin
       AND e.column_name = coalesce(old_column, e.column_name)
       AND EXISTS (SELECT FROM mastodon_ip_scrub.exemption x
                    WHERE (x.schema_name, x.table_name, x.column_name)
                        = (v_key.schema_name, v_key.table_name, coalesce(new_column, e.column_name)));
    UPDATE mastodon_ip_scrub.exemption e
       SET table_name = v_key.table_name, column_name = coalesce(new_column, e.column_name)
     WHERE (e.schema_name, e.table_name) = (v_key.schema_name, old_table) AND NOT e.builtin
       AND e.column_name = coalesce(old_column, e.column_name);
END
$$;

-- The scrub trigger on `tbl` names the columns protected on that very table. After ALTER TABLE
-- ... SET SCHEMA, and after a schema-only restore (which brings the trigger but not
-- the protection table's rows), those names are recorded again under the table's current name.
-- Only inet columns are taken over, and with replicas on: a trigger just created by a restore is
-- still ENABLE ORIGIN, whatever the dump's next statement sets.
CREATE FUNCTION mastodon_ip_scrub._adopt(tbl regclass) RETURNS void
LANGUAGE sql
SET search_path = pg_catalog, pg_temp
AS $$
    INSERT INTO mastodon_ip_scrub.protection (schema_name, table_name, column_name, replicas)
    SELECT k.schema_name, k.table_name, a.attname, true
      FROM pg_trigger t
     CROSS JOIN mastodon_ip_scrub._table_key(tbl) k
     CROSS JOIN unnest(mastodon_ip_scrub._trigger_args(t.tgargs)) AS arg (name)
      JOIN pg_attribute a ON a.attrelid = tbl AND a.attname = arg.name AND a.atttypid = 'inet'::regtype
                         AND a.attgenerated = '' AND a.attnum > 0 AND NOT a.attisdropped
     WHERE t.tgrelid = tbl AND t.tgname = 'zz_mastodon_ip_scrub'
       AND t.tgfoid = 'mastodon_ip_scrub.scrub_trigger()'::regprocedure
       AND NOT EXISTS (SELECT FROM mastodon_ip_scrub.protection p
                        WHERE (p.schema_name, p.table_name, p.column_name) = (k.schema_name, k.table_name, a.attname))
       AND NOT EXISTS (SELECT FROM mastodon_ip_scrub.exemption e
                        WHERE (e.schema_name, e.table_name, e.column_name) = (k.schema_name, k.table_name, a.attname))
$$;

CREATE FUNCTION mastodon_ip_scrub._after_ddl() RETURNS event_trigger
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_cmd    record;
    v_tbl    regclass;
    v_tables oid[] := '{}';
    v_old    text;
    v_new    name;
BEGIN
    FOR v_cmd IN SELECT * FROM pg_event_trigger_ddl_commands() LOOP
        IF v_cmd.classid = 'pg_trigger'::regclass THEN
            SELECT t.tgrelid INTO v_tbl FROM pg_trigger t WHERE t.oid = v_cmd.objid;
        ELSIF v_cmd.classid = 'pg_class'::regclass THEN
            v_tbl := v_cmd.objid;
        ELSE
            CONTINUE;
        END IF;
        CONTINUE WHEN NOT EXISTS (SELECT FROM pg_class c WHERE c.oid = v_tbl AND c.relkind IN ('r', 'p'));
        v_tbl := mastodon_ip_scrub._protected_table(v_tbl);

        v_old := CASE WHEN v_cmd.object_type IN ('table', 'table column')
                      THEN mastodon_ip_scrub._renamed_from(v_cmd.command) END;
        IF v_old IS NOT NULL AND v_cmd.object_type = 'table column' THEN
            SELECT a.attname INTO v_new FROM pg_attribute a WHERE a.attrelid = v_cmd.objid AND a.attnum = v_cmd.objsubid;
            PERFORM mastodon_ip_scrub._follow_rename(v_tbl, (mastodon_ip_scrub._table_key(v_tbl)).table_name, v_old::name, v_new);
        ELSIF v_old IS NOT NULL THEN
            PERFORM mastodon_ip_scrub._follow_rename(v_tbl, v_old::name);
        END IF;

        IF v_cmd.command_tag = 'ALTER TRIGGER'
           AND EXISTS (SELECT FROM pg_trigger t
                        WHERE t.oid = v_cmd.objid AND t.tgname <> 'zz_mastodon_ip_scrub'
                          AND t.tgfoid = 'mastodon_ip_scrub.scrub_trigger()'::regprocedure)
           AND mastodon_ip_scrub._protected_names(v_tbl) IS NOT NULL THEN
            RAISE EXCEPTION 'mastodon_ip_scrub: the trigger zz_mastodon_ip_scrub on % cannot be renamed', v_tbl
                USING ERRCODE = 'insufficient_privilege',
                      DETAIL = 'Its name makes it the last BEFORE trigger to run, so no other trigger can write a full address back.',
                      HINT = 'To stop anonymizing, a superuser runs mastodon_ip_scrub.unprotect().';
        END IF;
        v_tables := v_tables || v_tbl::oid;
    END LOOP;

    FOR v_tbl IN SELECT DISTINCT rel FROM unnest(v_tables) AS rel LOOP
        PERFORM mastodon_ip_scrub._adopt(v_tbl);
        PERFORM mastodon_ip_scrub._protect_known(v_tbl, true, false);
        IF mastodon_ip_scrub._sync_trigger(v_tbl) = 'enabled' AND tg_tag = 'ALTER TABLE' THEN
            RAISE WARNING 'mastodon_ip_scrub: trigger zz_mastodon_ip_scrub on % stays enabled', v_tbl
                USING DETAIL = format('It anonymizes the IP addresses written to %s; ALTER TABLE cannot disable it or change when it fires.',
                                      array_to_string(mastodon_ip_scrub._protected_names(v_tbl), ', ')),
                      HINT = 'To stop anonymizing, a superuser runs mastodon_ip_scrub.unprotect(), or SET mastodon_ip_scrub.enabled = off for one maintenance session.';
        END IF;
    END LOOP;
END
$$;

CREATE FUNCTION mastodon_ip_scrub._after_drop() RETURNS event_trigger
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_obj  record;
    v_tbl  regclass;
    v_cols name[];
BEGIN
    FOR v_obj IN
        SELECT d.address_names FROM pg_event_trigger_dropped_objects() d
         WHERE d.object_type = 'trigger' AND d.address_names[3] = 'zz_mastodon_ip_scrub'
    LOOP
        -- Dropped along with its table: nothing left to protect.
        v_tbl := to_regclass(format('%I.%I', v_obj.address_names[1], v_obj.address_names[2]));
        CONTINUE WHEN v_tbl IS NULL;
        v_cols := mastodon_ip_scrub._protected_names(mastodon_ip_scrub._protected_table(v_tbl));
        IF v_cols IS NOT NULL THEN
            RAISE EXCEPTION 'mastodon_ip_scrub: the trigger zz_mastodon_ip_scrub on % cannot be dropped', v_tbl
                USING ERRCODE = 'insufficient_privilege',
                      DETAIL = format('It anonymizes the IP addresses written to %s.', array_to_string(v_cols, ', ')),
                      HINT = format('To stop anonymizing, a superuser runs SELECT mastodon_ip_scrub.unprotect(%L, %s);',
                                    v_tbl::text, (SELECT string_agg(quote_literal(c), ', ') FROM unnest(v_cols) AS c));
        END IF;
    END LOOP;
END
$$;

REVOKE ALL ON FUNCTION mastodon_ip_scrub._renamed_from(pg_ddl_command) FROM PUBLIC;
REVOKE ALL ON FUNCTION mastodon_ip_scrub._before_create_trigger() FROM PUBLIC;
REVOKE ALL ON FUNCTION mastodon_ip_scrub._follow_rename(regclass, name, name, name) FROM PUBLIC;
REVOKE ALL ON FUNCTION mastodon_ip_scrub._adopt(regclass) FROM PUBLIC;
REVOKE ALL ON FUNCTION mastodon_ip_scrub._after_ddl() FROM PUBLIC;
REVOKE ALL ON FUNCTION mastodon_ip_scrub._after_drop() FROM PUBLIC;

CREATE EVENT TRIGGER mastodon_ip_scrub_before_create_trigger ON ddl_command_start
    WHEN TAG IN ('CREATE TRIGGER')
    EXECUTE FUNCTION mastodon_ip_scrub._before_create_trigger();
CREATE EVENT TRIGGER mastodon_ip_scrub_after_ddl ON ddl_command_end
    WHEN TAG IN ('CREATE TABLE', 'CREATE TABLE AS', 'SELECT INTO', 'ALTER TABLE', 'CREATE TRIGGER', 'ALTER TRIGGER')
    EXECUTE FUNCTION mastodon_ip_scrub._after_ddl();
CREATE EVENT TRIGGER mastodon_ip_scrub_after_drop ON sql_drop
    WHEN TAG IN ('DROP TRIGGER')
    EXECUTE FUNCTION mastodon_ip_scrub._after_drop();
ALTER EVENT TRIGGER mastodon_ip_scrub_before_create_trigger ENABLE ALWAYS;
ALTER EVENT TRIGGER mastodon_ip_scrub_after_ddl ENABLE ALWAYS;
ALTER EVENT TRIGGER mastodon_ip_scrub_after_drop ENABLE ALWAYS;

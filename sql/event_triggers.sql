-- Protection that outlives the application's own DDL: Rails migrations, `db:schema:load`, and
-- whatever Mastodon's role, which owns every table, does to the tables and our triggers. Four
-- event triggers, members of the extension:
--   ddl_command_start, CREATE TRIGGER and DROP TRIGGER (src/event_triggers.rs): a dump's plain CREATE
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

CREATE FUNCTION mastodon_ip_scrub._renamed_from(pg_ddl_command) RETURNS text
LANGUAGE c STRICT
AS 'MODULE_PATHNAME', 'renamed_from';
COMMENT ON FUNCTION mastodon_ip_scrub._renamed_from(pg_ddl_command) IS
    'The old name of the relation, column or schema a command renamed, else NULL.';

CREATE FUNCTION mastodon_ip_scrub._command_targets(pg_ddl_command, text) RETURNS oid[]
LANGUAGE c STRICT
AS 'MODULE_PATHNAME', 'command_targets';
COMMENT ON FUNCTION mastodon_ip_scrub._command_targets(pg_ddl_command, text) IS
    'The tables an ALTER TABLE command attached (attach partition), detached (detach partition) or moved (set schema).';

CREATE FUNCTION mastodon_ip_scrub._subcommand_columns(pg_ddl_command, text) RETURNS text[]
LANGUAGE c STRICT
AS 'MODULE_PATHNAME', 'subcommand_columns';
COMMENT ON FUNCTION mastodon_ip_scrub._subcommand_columns(pg_ddl_command, text) IS
    'The columns an ALTER TABLE adds (add column) or gives a new type (alter column type).';

CREATE FUNCTION mastodon_ip_scrub._before_trigger_ddl() RETURNS event_trigger
LANGUAGE c
AS 'MODULE_PATHNAME', 'before_trigger_ddl';

-- After a rename, what was protected or exempt under the old name (table `old_table` in schema
-- `old_schema`, tbl's own unless it was moved, and column `old_column` if a column was renamed)
-- moves to the current one. A row the new name already has wins over the moved one.
CREATE FUNCTION mastodon_ip_scrub._follow_rename(tbl regclass, old_table name,
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
CREATE FUNCTION mastodon_ip_scrub._follow_schema_rename(old_schema name, new_schema name) RETURNS void
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
CREATE FUNCTION mastodon_ip_scrub._adopt(tbl regclass) RETURNS void
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
     WHERE t.tgrelid = tbl AND t.tgname = mastodon_ip_scrub._trigger_name() AND t.tgparentid = 0
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
CREATE FUNCTION mastodon_ip_scrub._check_protected_columns(tbl regclass) RETURNS void
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
CREATE FUNCTION mastodon_ip_scrub._refuse_protected_name(rel regclass) RETURNS void
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
CREATE FUNCTION mastodon_ip_scrub._refuse_rules(tbl regclass) RETURNS void
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
                  HINT = format('Put the logic in a trigger that sorts before "%s", or in the application.', mastodon_ip_scrub._trigger_name());
    END IF;
END
$$;

-- Refuses what a command (tagged `tag`) did to trigger `trg` that would defeat protection: a scrub
-- trigger created by anyone but a superuser (a partition's clone of ours is PostgreSQL's, not a
-- command's), one renamed (its name makes it the last BEFORE trigger to run), or one made to
-- depend on an extension (dropping that extension would drop it). So the scrub triggers in place
-- always say what was protected before a command.
CREATE FUNCTION mastodon_ip_scrub._check_scrub_trigger(trg oid, tag text) RETURNS void
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
    IF v_trigger.tgname <> mastodon_ip_scrub._trigger_name() THEN
        RAISE EXCEPTION 'mastodon_ip_scrub: the scrub trigger on % must be named %', v_trigger.rel, mastodon_ip_scrub._trigger_name()
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
CREATE FUNCTION mastodon_ip_scrub._scrubbed_columns() RETURNS text[]
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT ARRAY(SELECT s.tbl::oid || '/' || c FROM mastodon_ip_scrub._scrubbed_tables() s CROSS JOIN unnest(s.cols) AS c)
$$;

-- The same entries for what the trigger of `tbl`'s home protected before the command replaced it
-- (CREATE OR REPLACE TRIGGER zz_mastodon_ip_scrub with another function): between commands, a table
-- with protection wanted has exactly its scrub trigger, on every partition of its tree.
CREATE FUNCTION mastodon_ip_scrub._replaced_columns(tbl regclass) RETURNS text[]
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT ARRAY(SELECT part.relid::oid || '/' || c
                   FROM mastodon_ip_scrub._table_tree(mastodon_ip_scrub._trigger_home(tbl)) part
                  CROSS JOIN unnest(mastodon_ip_scrub._wanted_columns(tbl)) AS c)
$$;

-- Scrubs, as the table's owner, the columns `cols` of table `tbl` itself (ONLY): for values a
-- command wrote without row triggers. Rows already scrubbed are not written.
CREATE FUNCTION mastodon_ip_scrub._scrub_now(tbl regclass, cols name[]) RETURNS void
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

CREATE FUNCTION mastodon_ip_scrub._after_ddl() RETURNS event_trigger
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
    -- A restore brings the dumped store of protection next to the database's own.
    PERFORM mastodon_ip_scrub._store_merge();
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
                                      WHERE t.oid = v_cmd.objid AND t.tgname = mastodon_ip_scrub._trigger_name()
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
            RAISE WARNING 'mastodon_ip_scrub: trigger % on % stays enabled', mastodon_ip_scrub._trigger_name(), v_tbl
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
    IF mastodon_ip_scrub._in_internal_ddl() THEN
        RETURN;
    END IF;
    FOR v_obj IN
        SELECT d.address_names FROM pg_event_trigger_dropped_objects() d
         WHERE d.object_type = 'trigger' AND d.address_names[3] = mastodon_ip_scrub._trigger_name()
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

CREATE FUNCTION mastodon_ip_scrub._on_table_rewrite() RETURNS event_trigger
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    PERFORM mastodon_ip_scrub._note_rewrite(pg_event_trigger_table_rewrite_oid());
END
$$;

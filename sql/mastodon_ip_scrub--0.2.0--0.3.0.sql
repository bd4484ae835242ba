-- mastodon_ip_scrub 0.2.0 -> 0.3.0, run by ALTER EXTENSION mastodon_ip_scrub UPDATE.
--
-- 0.3.0 is about where Mastodon runs: standbys, logical replication and the privacy policy.
--  - backfill(), protect(), unprotect(), exempt() and protect_mastodon() refuse on a standby with
--    a message saying so (_primary_only);
--  - protection and exemption are kept in a large object instead of two tables, behind views of
--    the same names (sql/config_store.sql): a FOR ALL TABLES publication publishes every table,
--    and subscribers with or without the extension failed on these two;
--  - privacy_policy() writes the paragraph for the instance's privacy policy;
--  - backfill() writes each range in 8 passes, so that most rows are rewritten on their own page
--    (HOT updates, no new index entries).
-- No C function changes: both libraries serve both versions of the SQL.
\echo Use "ALTER EXTENSION mastodon_ip_scrub UPDATE TO '0.3.0'" to load this file. \quit

-- The event triggers stay, switched off while this script changes the functions they call.
ALTER EVENT TRIGGER mastodon_ip_scrub_before_trigger_ddl DISABLE;
ALTER EVENT TRIGGER mastodon_ip_scrub_table_rewrite DISABLE;
ALTER EVENT TRIGGER mastodon_ip_scrub_after_ddl DISABLE;
ALTER EVENT TRIGGER mastodon_ip_scrub_after_drop DISABLE;

-- sql/replication.sql, whole.
-- What changes protection refuses on a standby (a server in recovery) with a message that says
-- so: PostgreSQL would refuse it too, but only at the first write, with "cannot execute ... in a
-- read-only transaction", or not at all when there happens to be nothing to write.
CREATE FUNCTION mastodon_ip_scrub._primary_only(what text) RETURNS void
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF pg_is_in_recovery() THEN
        RAISE EXCEPTION 'mastodon_ip_scrub.%: this server is a standby (in recovery), where nothing can be changed', what
            USING ERRCODE = 'read_only_sql_transaction',
                  HINT = 'Run it on the primary: the standby replays what it changes.';
    END IF;
END
$$;

-- sql/catalog.sql: the scrub trigger's name, which the functions replaced below now read.
-- The scrub trigger's name on every protected table: the one place the SQL spells it (the C side
-- has it as catalog::TRIGGER_NAME; a test checks they agree). `zz_` makes it the last BEFORE row
-- trigger to fire, as PostgreSQL fires them in name order.
CREATE FUNCTION mastodon_ip_scrub._trigger_name() RETURNS name
LANGUAGE sql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT 'zz_mastodon_ip_scrub'::name
$$;

-- sql/config_store.sql: its functions first, while the tables are still there.
-- Where the admin's decisions are kept: which columns are protected (protection) and which are
-- deliberately left alone (exemption).
--
-- Not in tables: PostgreSQL publishes every table in a FOR ALL TABLES publication, the usual way
-- to move a Mastodon database to a new server or major, and no publication can leave one out. A
-- subscriber without the extension then cannot subscribe at all (schema "mastodon_ip_scrub" does
-- not exist), and one with it collides with its own rows. A large object is not published, yet it
-- is streamed to standbys, kept by pg_upgrade and by a full pg_dump, and can be written only by
-- its owner.
--
-- The store is a large object owned by a superuser whose comment is _store_marker(), holding one
-- JSON document: {"protection": [row, ...], "exemption": [row, ...]}. Only such objects count:
-- the application role can create large objects and comment on them, but not give one to a
-- superuser. The views protection and exemption read the store and write it through INSTEAD OF
-- triggers (sql/protect.sql, which brings the scrub triggers in line with what is written), so the
-- rest of the extension uses them as it would tables.
--
-- A full restore brings the dumped store next to the one the restored CREATE EXTENSION made: the
-- views read both (an exemption outweighs a protection of the same column, as it did in the
-- dumped database), and the next write, or the next DDL command, merges them into one
-- (_store_merge in sql/protect.sql). An empty store is left alone: it may be one whose data a
-- restore is still writing.

-- The comment that marks a store.
CREATE FUNCTION mastodon_ip_scrub._store_marker() RETURNS text
LANGUAGE sql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT 'mastodon_ip_scrub: protected and exempt columns. Change them with protect(), unprotect() and exempt(), not by hand.'::text
$$;

-- The stores: large objects with the marker, owned by a superuser.
CREATE FUNCTION mastodon_ip_scrub._stores() RETURNS SETOF oid
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT m.oid
      FROM pg_largeobject_metadata m
      JOIN pg_roles r ON r.oid = m.lomowner AND r.rolsuper
      JOIN pg_description d ON d.objoid = m.oid AND d.classoid = 'pg_largeobject'::regclass AND d.objsubid = 0
     WHERE d.description = mastodon_ip_scrub._store_marker()
     ORDER BY m.oid
$$;

-- Each store that holds a document, with it.
CREATE FUNCTION mastodon_ip_scrub._store_documents(OUT store oid, OUT document jsonb)
RETURNS SETOF record
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_text text;
BEGIN
    FOR store IN SELECT s FROM mastodon_ip_scrub._stores() s LOOP
        v_text := convert_from(lo_get(store), 'UTF8');
        CONTINUE WHEN v_text = '';
        BEGIN
            document := v_text::jsonb;
        EXCEPTION WHEN invalid_text_representation THEN
            RAISE EXCEPTION 'mastodon_ip_scrub: large object % (where the extension keeps what is protected) does not hold valid JSON', store
                USING ERRCODE = 'data_corrupted',
                      HINT = 'Restore it from a backup, or remove it (SELECT lo_unlink(' || store || ');) and protect again with protect_mastodon() and protect().';
        END;
        RETURN NEXT;
    END LOOP;
END
$$;

-- The rows of part `part` ('protection' or 'exemption') of every store.
CREATE FUNCTION mastodon_ip_scrub._store_rows(part text) RETURNS SETOF jsonb
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT r FROM mastodon_ip_scrub._store_documents() d, jsonb_array_elements(coalesce(d.document -> part, '[]')) r
$$;

-- Writes the document {protection, exemption} (two JSON arrays) into the newest store that holds
-- one, or into a new store; then removes the other stores that held one, whose rows the caller
-- has read through the views (under _store_lock). Returns whether it removed any: stores were
-- then merged, and the triggers must be brought in line with the result (_store_and_sync in
-- sql/protect.sql).
-- The newest store, because in a restore that is the dumped one, which the dump's last entry (its
-- GRANT) still names. A new store gets a random OID: one taken from the counter would often be
-- the same in the dumped and the restoring database, and the restore's lo_create of the dumped
-- store would then fail. Everyone may read a store (it holds table and column names), so that
-- Mastodon's role can pg_dump its database.
CREATE FUNCTION mastodon_ip_scrub._store_save(protection jsonb, exemption jsonb) RETURNS boolean
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_store oid;
    v_fd    integer;
BEGIN
    SELECT d.store INTO v_store
      FROM mastodon_ip_scrub._store_documents() d
      JOIN pg_largeobject_metadata m ON m.oid = d.store
     ORDER BY age(m.xmin), d.store
     LIMIT 1;
    WHILE v_store IS NULL LOOP
        v_store := (16384 + floor(random() * (4294967295 - 16384)))::bigint::oid;
        IF EXISTS (SELECT FROM pg_largeobject_metadata m WHERE m.oid = v_store) THEN
            v_store := NULL;
        ELSE
            PERFORM lo_create(v_store);
            EXECUTE format('COMMENT ON LARGE OBJECT %s IS %L', v_store, mastodon_ip_scrub._store_marker());
            EXECUTE format('GRANT SELECT ON LARGE OBJECT %s TO PUBLIC', v_store);
            -- Within an extension script (CREATE EXTENSION, ALTER EXTENSION UPDATE) PostgreSQL
            -- records that grant as the object's initial privileges, which pg_dump does not
            -- support for large objects and warns about on every dump. The store is no part of
            -- the extension: its grant is dumped as any other.
            DELETE FROM pg_init_privs i WHERE i.classoid = 'pg_largeobject'::regclass AND i.objoid = v_store;
        END IF;
    END LOOP;
    v_fd := lo_open(v_store, x'60000'::integer);   -- INV_READ | INV_WRITE
    PERFORM lo_truncate(v_fd, 0);
    PERFORM lowrite(v_fd, convert_to(jsonb_build_object('protection', coalesce(protection, '[]'),
                                                        'exemption', coalesce(exemption, '[]'))::text, 'UTF8'));
    PERFORM lo_close(v_fd);
    PERFORM lo_unlink(d.store) FROM mastodon_ip_scrub._store_documents() d WHERE d.store <> v_store;
    RETURN FOUND;
END
$$;

-- A store left by an earlier installation (DROP EXTENSION leaves large objects alone) would
-- bring back what was protected and exempt then.
SELECT pg_catalog.lo_unlink(s) FROM mastodon_ip_scrub._stores() s;

-- What the tables hold moves into a store; then the tables, and what depended on them, go.
SELECT mastodon_ip_scrub._store_save(
    (SELECT coalesce(jsonb_agg(to_jsonb(p)), '[]') FROM mastodon_ip_scrub.protection p),
    (SELECT coalesce(jsonb_agg(to_jsonb(e)), '[]') FROM mastodon_ip_scrub.exemption e));
DROP VIEW mastodon_ip_scrub.protected_columns;
-- Leaving the extension first also takes them off its list of tables pg_dump dumps.
ALTER EXTENSION mastodon_ip_scrub DROP TABLE mastodon_ip_scrub.protection;
ALTER EXTENSION mastodon_ip_scrub DROP TABLE mastodon_ip_scrub.exemption;
DROP TABLE mastodon_ip_scrub.protection;
DROP TABLE mastodon_ip_scrub.exemption;
DROP FUNCTION mastodon_ip_scrub._merge_protection();
DROP FUNCTION mastodon_ip_scrub._protection_changed();
DROP FUNCTION mastodon_ip_scrub._exemption_added();

-- The rest of sql/config_store.sql: the views in the tables' place.
CREATE VIEW mastodon_ip_scrub.exemption AS
SELECT DISTINCT ON (e.schema_name, e.table_name, e.column_name)
       e.schema_name, e.table_name, e.column_name, e.reason, e.builtin, e.exempted_at
  FROM mastodon_ip_scrub._store_rows('exemption') r,
       jsonb_to_record(r) AS e (schema_name name, table_name name, column_name name,
                                reason text, builtin boolean, exempted_at timestamptz)
 ORDER BY e.schema_name, e.table_name, e.column_name, e.builtin, e.exempted_at DESC;
COMMENT ON VIEW mastodon_ip_scrub.exemption IS
    'Address columns deliberately left unprotected; audit() does not report them. Add with exempt().';
ALTER VIEW mastodon_ip_scrub.exemption ALTER COLUMN builtin SET DEFAULT false;
ALTER VIEW mastodon_ip_scrub.exemption ALTER COLUMN exempted_at SET DEFAULT pg_catalog.now();

CREATE VIEW mastodon_ip_scrub.protection AS
SELECT p.schema_name, p.table_name, p.column_name,
       min(p.protected_at) AS protected_at, bool_or(p.replicas) AS replicas
  FROM mastodon_ip_scrub._store_rows('protection') r,
       jsonb_to_record(r) AS p (schema_name name, table_name name, column_name name,
                                protected_at timestamptz, replicas boolean)
 WHERE NOT EXISTS (SELECT FROM mastodon_ip_scrub.exemption e
                    WHERE (e.schema_name, e.table_name, e.column_name) = (p.schema_name, p.table_name, p.column_name))
 GROUP BY p.schema_name, p.table_name, p.column_name;
COMMENT ON VIEW mastodon_ip_scrub.protection IS
    'Columns whose written IP addresses are anonymized. Change with protect() / unprotect().';
ALTER VIEW mastodon_ip_scrub.protection ALTER COLUMN protected_at SET DEFAULT pg_catalog.now();
ALTER VIEW mastodon_ip_scrub.protection ALTER COLUMN replicas SET DEFAULT true;

-- Serializes changes of the store, each of which reads all of it and writes it back: a lock on the
-- protection view, which readers (ACCESS SHARE) pass and Mastodon's role, having no right on the
-- view, cannot take. (It could take an advisory lock and hold it, stalling every protect().)
CREATE FUNCTION mastodon_ip_scrub._store_lock() RETURNS void
LANGUAGE sql
SET search_path = pg_catalog, pg_temp
AS $$
    LOCK TABLE mastodon_ip_scrub.protection IN EXCLUSIVE MODE
$$;

-- A row's key (schema, table and column name) as JSON, which _store_without matches.
CREATE FUNCTION mastodon_ip_scrub._store_key(schema_name name, table_name name, column_name name) RETURNS jsonb
LANGUAGE sql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT jsonb_build_object('schema_name', schema_name, 'table_name', table_name, 'column_name', column_name)
$$;

-- The rows of `part` (a JSON array of one view's rows) whose key is none of `keys` (NULLs skipped).
CREATE FUNCTION mastodon_ip_scrub._store_without(part jsonb, VARIADIC keys jsonb[]) RETURNS jsonb
LANGUAGE sql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT coalesce(jsonb_agg(r), '[]')
      FROM jsonb_array_elements(coalesce(part, '[]')) r
     WHERE NOT EXISTS (SELECT FROM unnest(keys) k WHERE r @> k)
$$;

-- What the tables' constraints checked: a whole key, and for an exemption, a reason.
CREATE FUNCTION mastodon_ip_scrub._store_check(what text, schema_name name, table_name name, column_name name) RETURNS void
LANGUAGE plpgsql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF schema_name IS NULL OR table_name IS NULL OR column_name IS NULL THEN
        RAISE EXCEPTION 'mastodon_ip_scrub: % needs a schema, table and column name', what
            USING ERRCODE = 'not_null_violation';
    END IF;
END
$$;

-- What the store means for one table.

-- The column names protected under `tbl`'s own name, sorted; NULL when none.
CREATE OR REPLACE FUNCTION mastodon_ip_scrub._protected_names(tbl regclass) RETURNS name[]
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT array_agg(p.column_name ORDER BY p.column_name)
      FROM mastodon_ip_scrub.protection p
      JOIN mastodon_ip_scrub._table_key(tbl) k USING (schema_name, table_name)
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

-- From sql/protect.sql: what a write to the views does.
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

-- protected_columns, as in sql/protect.sql, now over the view.
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

-- sql/mastodon.sql's _column_purpose, and sql/privacy_policy.sql, whole.
CREATE FUNCTION mastodon_ip_scrub._column_purpose(table_name name, column_name name) RETURNS text
LANGUAGE sql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT CASE table_name::text || '.' || column_name::text
        WHEN 'users.sign_up_ip' THEN 'the address you signed up from'
        WHEN 'users.current_sign_in_ip' THEN 'the address of your latest sign-in'
        WHEN 'users.last_sign_in_ip' THEN 'the address of your sign-in before that'
        WHEN 'session_activations.ip' THEN 'the address each signed-in browser session was last used from'
        WHEN 'login_activities.ip' THEN 'the address of each sign-in and each failed second-factor attempt'
        WHEN 'oauth_access_tokens.last_used_ip' THEN 'the address an app last used your access token from'
    END
$$;

-- A paragraph for the instance's privacy policy, from the settings in force and what is protected:
-- what is kept of each address, where, since when, and Mastodon's own retention on top
-- (`ip_retention`: Mastodon's IP_RETENTION_PERIOD, one year unless the admin changed it).
CREATE FUNCTION mastodon_ip_scrub.privacy_policy(ip_retention interval DEFAULT interval '1 year') RETURNS text
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
SET IntervalStyle = postgres
AS $$
DECLARE
    v_settings record;
    v_where    text;
    v_others   bigint;
    v_full     text;
    v_since    timestamptz;
    v_kept     text;
    v_old      bigint;
    v_v4       integer;
    v_v6       integer;
    v_result   text;
BEGIN
    SELECT * INTO v_settings FROM mastodon_ip_scrub._settings();
    SELECT string_agg(DISTINCT mastodon_ip_scrub._column_purpose(p.table_name, p.column_name), '; '),
           count(*) FILTER (WHERE mastodon_ip_scrub._column_purpose(p.table_name, p.column_name) IS NULL),
           min(p.protected_at)
      INTO v_where, v_others, v_since
      FROM mastodon_ip_scrub.protection p
      JOIN mastodon_ip_scrub.protected_columns c USING (schema_name, table_name, column_name)
     WHERE c.trigger_enabled;
    -- Mastodon's own address columns that are present and yet stored whole (unprotected or exempt).
    SELECT string_agg(DISTINCT mastodon_ip_scrub._column_purpose(m.table_name, m.column_name), '; ')
      INTO v_full
      FROM mastodon_ip_scrub._mastodon_columns() m
      JOIN pg_class c ON c.relname = m.table_name AND c.relkind IN ('r', 'p') AND NOT c.relispartition
      JOIN pg_namespace n ON n.oid = c.relnamespace
      JOIN pg_attribute a ON a.attrelid = c.oid AND a.attname = m.column_name AND a.attnum > 0 AND NOT a.attisdropped
     WHERE n.nspname NOT IN ('information_schema', 'mastodon_ip_scrub') AND n.nspname NOT LIKE 'pg\_%'
       AND NOT EXISTS (SELECT FROM mastodon_ip_scrub.protected_columns p
                        WHERE (p.schema_name, p.table_name, p.column_name) = (n.nspname, m.table_name, m.column_name)
                          AND p.trigger_enabled);
    IF v_since IS NULL OR NOT v_settings.enabled
       OR (v_settings.mode = 'truncate' AND v_settings.ipv4_prefix >= 32 AND v_settings.ipv6_prefix >= 128) THEN
        RETURN 'IP addresses: this server''s database stores the IP address you connect from in full '
            || '(when you sign up, sign in, use the web interface and use apps). '
            || format('Mastodon deletes them after %s.', ip_retention);
    END IF;
    -- Sampled on large tables, like status(): enough to tell whether a backfill has been run.
    SELECT coalesce(sum(s.unscrubbed_rows), 0) INTO v_old FROM mastodon_ip_scrub.status() s;
    v_v4 := v_settings.ipv4_prefix;
    v_v6 := v_settings.ipv6_prefix;
    v_kept := CASE v_settings.mode
        WHEN 'null' THEN 'It does not store the address itself: nothing is kept of it.'
        WHEN 'loopback' THEN 'It does not store the address itself: a placeholder (127.0.0.1 or ::1) is kept in its place.'
        ELSE format('It stores only the beginning of each address, the network it belongs to: of an IPv4 address the first %s bits '
                    '(%s is stored as %s, a range %s), of an IPv6 address the first %s bits (%s is stored as %s, %s).',
                    v_v4, '203.0.113.77', host(mastodon_ip_scrub.scrub('203.0.113.77')),
                    CASE WHEN v_v4 >= 32 THEN 'of one address: the whole address is kept'
                         ELSE format('shared by up to %s addresses', to_char(2::numeric ^ (32 - v_v4), 'FM999,999,999,999')) END,
                    v_v6, '2001:db8:1234:5678::1', host(mastodon_ip_scrub.scrub('2001:db8:1234:5678::1')),
                    CASE WHEN v_v6 >= 128 THEN 'the whole address'
                         WHEN v_v6 >= 64 THEN 'which usually identifies a single home or office network'
                         WHEN v_v6 >= 48 THEN 'a range an internet provider often gives to a single customer, so it may identify one household'
                         ELSE 'a range an internet provider shares among many customers' END)
    END;
    v_result := format('IP addresses: when you use this server, its database records the IP address you connect from: %s%s. ',
                       coalesce(v_where, 'in tables of the administrator''s choosing'),
                       CASE WHEN v_where IS NOT NULL AND v_others > 0 THEN ', and in some of the administrator''s own records' ELSE '' END)
        || v_kept
        || CASE WHEN v_full IS NOT NULL THEN format(' It also records %s, and keeps that address whole.', v_full) ELSE '' END
        || format(' %s full address is never written to the database; this has been so since %s',
                  CASE WHEN v_full IS NOT NULL THEN 'Apart from that, the' ELSE 'The' END, to_char(v_since, 'FMMonth FMDD, YYYY'))
        || CASE WHEN v_old = 0 THEN ', and addresses recorded before then have been shortened the same way. '
                ELSE ', but some addresses recorded before then still keep more than that, until they are shortened or deleted. ' END
        || format('Mastodon deletes these records after %s. ', ip_retention)
        || 'This does not cover copies outside the database: the web server''s logs, and backups made before that date, until they expire.';
    RETURN v_result;
END
$$;
COMMENT ON FUNCTION mastodon_ip_scrub.privacy_policy(interval) IS
    'A paragraph for the instance''s privacy policy: what is kept of each IP address, where, since when, and Mastodon''s retention (IP_RETENTION_PERIOD, default 1 year).';

-- What refuses on a standby now, as in 0.3.0's sql/backfill.sql, protect.sql and status.sql;
-- exempt(), which can no longer use ON CONFLICT; audit(), which reports lo_compat_privileges;
-- _after_ddl, which merges a restored store; and every function that names the scrub trigger,
-- now through _trigger_name().
CREATE OR REPLACE PROCEDURE mastodon_ip_scrub.backfill(batch_size integer DEFAULT 10000, dry_run boolean DEFAULT false)
LANGUAGE plpgsql
AS $$
DECLARE
    c_retries constant integer := 10;
    c_passes  constant integer := 8;  -- passes over a range where most rows are pending
    v_settings record;
    v_tables   regclass[];
    v_tbl      regclass;
    v_cols     name[];
    v_count    record;
    v_sql      text[];      -- the UPDATE of each pass over a range; the last one takes all rows
    v_passes   integer;
    v_pass     integer;
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
    PERFORM mastodon_ip_scrub._primary_only('backfill()');
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

        -- Ranges sized so that each holds about batch_size rows to scrub, each written in v_passes
        -- transactions. A tid's line pointer number is the second coordinate of its text form read
        -- as a point.
        v_passes := CASE WHEN v_count.unscrubbed_rows * 4 >= v_count.total THEN c_passes ELSE 1 END;
        v_sql := ARRAY(SELECT mastodon_ip_scrub._scrub_statement(v_tbl, v_cols, 'ctid >= $1::tid AND ctid < $2::tid'
                                  || CASE WHEN p < v_passes
                                          THEN format(' AND ((ctid::text)::point)[1]::integer %% %s = %s', v_passes, p)
                                          ELSE '' END)
                         FROM generate_series(1, v_passes) AS p ORDER BY p);
        v_pages := pg_relation_size(v_tbl) / current_setting('block_size')::bigint;
        v_todo := CASE v_count.method WHEN 'exact' THEN '' ELSE 'about ' END || v_count.unscrubbed_rows;
        v_step := CASE WHEN v_count.unscrubbed_rows > 0
                       THEN greatest(1, ceil(batch_size::numeric * v_pages / v_count.unscrubbed_rows))
                       ELSE greatest(1, v_pages) END::bigint;
        v_from := 0;
        v_pass := 1;
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
            v_rows := mastodon_ip_scrub._scrub_range(v_tbl, v_sql[v_pass], format('(%s,0)', v_from)::tid, format('(%s,0)', v_to)::tid, v_timeout);
            IF v_rows IS NOT NULL THEN
                v_done := v_done + v_rows;
                v_attempt := 0;
                IF v_pass < v_passes THEN
                    v_pass := v_pass + 1;
                ELSE
                    v_pass := 1;
                    v_from := v_to;
                END IF;
            ELSE
                v_attempt := v_attempt + 1;
                IF v_attempt >= c_retries THEN
                    RAISE WARNING 'mastodon_ip_scrub.backfill: %: rows in blocks % to % stayed locked by other sessions; left for the next run', v_tbl, v_from, v_to - 1;
                    v_skipped := v_skipped + 1;
                    v_pass := 1;
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
            v_rows := mastodon_ip_scrub._scrub_range(v_tbl, v_sql[v_passes], '(0,0)'::tid, '(4294967295,0)'::tid, v_timeout);
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

CREATE OR REPLACE FUNCTION mastodon_ip_scrub.protect(tbl regclass, cols name[], replicas boolean) RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    PERFORM mastodon_ip_scrub._primary_only('protect()');
    PERFORM mastodon_ip_scrub._protect(tbl, cols, replicas);
    PERFORM mastodon_ip_scrub._warn_protected(tbl);
END
$$;

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

CREATE OR REPLACE FUNCTION mastodon_ip_scrub.protect_mastodon(replicas boolean DEFAULT true)
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

CREATE OR REPLACE FUNCTION mastodon_ip_scrub.exempt(tbl regclass, col name, reason text) RETURNS void
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

CREATE OR REPLACE FUNCTION mastodon_ip_scrub._scrubbed_tables(OUT tbl regclass, OUT cols name[])
RETURNS SETOF record
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT t.tgrelid::regclass, mastodon_ip_scrub._trigger_args(t.tgargs)
      FROM pg_trigger t
      JOIN pg_class c ON c.oid = t.tgrelid
      JOIN pg_namespace n ON n.oid = c.relnamespace
     WHERE t.tgname = mastodon_ip_scrub._trigger_name() AND t.tgfoid = mastodon_ip_scrub._scrub_function()
       AND c.relkind = 'r'
     ORDER BY n.nspname, c.relname
$$;

CREATE OR REPLACE FUNCTION mastodon_ip_scrub._is_exact_trigger(trg oid, cols name[]) RETURNS boolean
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

CREATE OR REPLACE FUNCTION mastodon_ip_scrub._trigger_state(relid oid, col name,
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
     WHERE t.tgrelid = tbl AND t.tgname = mastodon_ip_scrub._trigger_name() AND t.tgparentid = 0
       AND t.tgfoid = mastodon_ip_scrub._scrub_function()
       AND NOT a.attname = ANY (coalesce((mastodon_ip_scrub._wanted(tbl)).cols, '{}'))
       AND NOT EXISTS (SELECT FROM mastodon_ip_scrub.exemption e
                        WHERE (e.schema_name, e.table_name, e.column_name) = (k.schema_name, k.table_name, a.attname))
$$;

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
                  HINT = format('Put the logic in a trigger that sorts before "%s", or in the application.', mastodon_ip_scrub._trigger_name());
    END IF;
END
$$;

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

-- New functions are private, as in CREATE EXTENSION (sql/finalize.sql).
REVOKE ALL ON FUNCTION mastodon_ip_scrub._primary_only(text),
                       mastodon_ip_scrub._trigger_name(),
                       mastodon_ip_scrub._store_marker(),
                       mastodon_ip_scrub._stores(),
                       mastodon_ip_scrub._store_documents(),
                       mastodon_ip_scrub._store_rows(text),
                       mastodon_ip_scrub._store_lock(),
                       mastodon_ip_scrub._store_save(jsonb, jsonb),
                       mastodon_ip_scrub._store_key(name, name, name),
                       mastodon_ip_scrub._store_without(jsonb, jsonb[]),
                       mastodon_ip_scrub._store_check(text, name, name, name),
                       mastodon_ip_scrub._protection_written(),
                       mastodon_ip_scrub._exemption_written(),
                       mastodon_ip_scrub._store_merge(),
                       mastodon_ip_scrub._sync_all(),
                       mastodon_ip_scrub._store_and_sync(jsonb, jsonb),
                       mastodon_ip_scrub._column_purpose(name, name),
                       mastodon_ip_scrub.privacy_policy(interval)
   FROM PUBLIC;

ALTER EVENT TRIGGER mastodon_ip_scrub_before_trigger_ddl ENABLE ALWAYS;
ALTER EVENT TRIGGER mastodon_ip_scrub_table_rewrite ENABLE ALWAYS;
ALTER EVENT TRIGGER mastodon_ip_scrub_after_ddl ENABLE ALWAYS;
ALTER EVENT TRIGGER mastodon_ip_scrub_after_drop ENABLE ALWAYS;

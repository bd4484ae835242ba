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
CREATE FUNCTION mastodon_ip_scrub._protected_names(tbl regclass) RETURNS name[]
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
CREATE FUNCTION mastodon_ip_scrub._wanted(home regclass, OUT cols name[], OUT replicas boolean)
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
CREATE FUNCTION mastodon_ip_scrub._wanted_columns(tbl regclass) RETURNS name[]
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT (mastodon_ip_scrub._wanted(mastodon_ip_scrub._trigger_home(tbl))).cols
$$;

-- A store left by an earlier installation (DROP EXTENSION leaves large objects alone) would
-- bring back what was protected and exempt then.
SELECT pg_catalog.lo_unlink(s) FROM mastodon_ip_scrub._stores() s;

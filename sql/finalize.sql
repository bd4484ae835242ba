-- ip_blocks.ip holds the ranges an admin blocked: exempt from the start, wherever Mastodon's
-- tables live (public unless configured otherwise).
INSERT INTO mastodon_ip_scrub.exemption (schema_name, table_name, column_name, reason, builtin)
SELECT DISTINCT nsp, 'ip_blocks', 'ip',
       'Admin-entered IP ranges to block, not client addresses: truncating them would widen each block.', true
  FROM (SELECT 'public'::name AS nsp
        UNION
        SELECT n.nspname FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
         WHERE c.relname = 'ip_blocks' AND c.relkind IN ('r', 'p')) s;

-- Who may call what. Only superusers (or roles an admin grants) may change or inspect protection:
-- every function and procedure here is private unless listed below. Mastodon's role may look up
-- names in this schema and call truncate(), scrub() and what its own statements need: the update
-- guard (_update_needed), and _stored() and _pending(), which the extension's counts and scrubbing
-- UPDATEs call when they run as each table's owner (src/owner.rs). scrub_trigger() too, because
-- PostgreSQL checks that right when it clones a partitioned table's trigger onto a partition the
-- role creates or attaches; a scrub trigger created by anyone but a superuser is refused
-- (_check_scrub_trigger).
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

-- The event triggers (sql/event_triggers.sql) start firing once everything they call exists.
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

-- CREATE EXTENSION on an existing Mastodon database protects every user-IP column at once, and
-- warns about existing rows that still hold full addresses. Those are not rewritten here: a
-- multi-million-row UPDATE does not belong in one DDL transaction; backfill() does it in batches.
SELECT mastodon_ip_scrub.protect_mastodon();

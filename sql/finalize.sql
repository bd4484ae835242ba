-- ip_blocks.ip holds the ranges an admin blocked: exempt from the start, wherever Mastodon's
-- tables live (public unless configured otherwise).
INSERT INTO mastodon_ip_scrub.exemption (schema_name, table_name, column_name, reason, builtin)
SELECT DISTINCT nsp, 'ip_blocks', 'ip',
       'Admin-entered IP ranges to block, not client addresses: truncating them would widen each block.', true
  FROM (SELECT 'public'::name AS nsp
        UNION
        SELECT n.nspname FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
         WHERE c.relname = 'ip_blocks' AND c.relkind IN ('r', 'p')) s;

-- CREATE EXTENSION on an existing Mastodon database protects every user-IP column at once, and
-- warns about existing rows that still hold full addresses. Those are not rewritten here: a
-- multi-million-row UPDATE does not belong in one DDL transaction; backfill() does it in batches.
SELECT mastodon_ip_scrub.protect_mastodon();

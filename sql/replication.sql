-- Standbys: what the extension refuses on a server in recovery.

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

-- Standbys and logical replication.

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

-- A FOR ALL TABLES publication on a server with the extension publishes its protection and
-- exemption tables too (PostgreSQL cannot leave a table out of one). A subscriber's own protection
-- follows its own triggers, which logical replication does not carry, and its own CREATE
-- EXTENSION, protect() and exempt(). So a row arriving through a subscription is dropped: the
-- initial copy would otherwise collide with the subscriber's own rows (a duplicate key, retried
-- every few seconds forever), and a publisher's change would claim a protection whose trigger the
-- subscriber lacks. Only logical replication workers are affected: the trigger fires in
-- session_replication_role = replica, and a session of that role (a bulk load, a restore) that is
-- not a replication worker writes as usual.
CREATE FUNCTION mastodon_ip_scrub._drop_replicated() RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF (SELECT a.backend_type LIKE 'logical replication %' FROM pg_stat_get_activity(pg_backend_pid()) a) THEN
        RETURN NULL;
    END IF;
    IF TG_OP = 'DELETE' THEN
        RETURN OLD;
    END IF;
    RETURN NEW;
END
$$;

CREATE TRIGGER drop_replicated BEFORE INSERT OR UPDATE OR DELETE ON mastodon_ip_scrub.protection
    FOR EACH ROW EXECUTE FUNCTION mastodon_ip_scrub._drop_replicated();
ALTER TABLE mastodon_ip_scrub.protection ENABLE REPLICA TRIGGER drop_replicated;
CREATE TRIGGER drop_replicated BEFORE INSERT OR UPDATE OR DELETE ON mastodon_ip_scrub.exemption
    FOR EACH ROW EXECUTE FUNCTION mastodon_ip_scrub._drop_replicated();
ALTER TABLE mastodon_ip_scrub.exemption ENABLE REPLICA TRIGGER drop_replicated;

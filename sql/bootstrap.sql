-- The extension's schema must be its own. CREATE EXTENSION takes an existing schema of that name as
-- it finds it, and whoever owns a schema can drop or replace what is in it: a schema Mastodon's
-- role (which may create schemas in its database) made beforehand would hand it the extension.
DO $$
DECLARE
    v_owner name;
BEGIN
    SELECT r.rolname INTO v_owner
      FROM pg_catalog.pg_namespace n JOIN pg_catalog.pg_roles r ON r.oid = n.nspowner
     WHERE n.nspname = 'mastodon_ip_scrub' AND NOT r.rolsuper;
    IF FOUND THEN
        RAISE EXCEPTION 'mastodon_ip_scrub: schema mastodon_ip_scrub already exists and belongs to %, who is not a superuser', v_owner
            USING ERRCODE = 'insufficient_privilege',
                  HINT = 'Drop that schema or give it to a superuser (ALTER SCHEMA mastodon_ip_scrub OWNER TO postgres), then CREATE EXTENSION again.';
    END IF;
END
$$;

-- CREATE EXTENSION on an existing Mastodon database: Mastodon's role owns the database and
-- every table (its migrations created them), a superuser installs the extension.
CREATE ROLE mastodon LOGIN;
ALTER DATABASE :"DBNAME" OWNER TO mastodon;
SET ROLE mastodon;
\set ECHO none
\i ../fixtures/mastodon_schema.sql
\set ECHO all
-- Rows from before the extension, and an admin's IP block.
INSERT INTO accounts (username, created_at, updated_at) VALUES ('alice', now(), now());
INSERT INTO users (email, created_at, updated_at, account_id, sign_up_ip)
     VALUES ('alice@example.org', now(), now(), 1, '203.0.113.77');
INSERT INTO ip_blocks (ip, severity, created_at, updated_at) VALUES ('198.51.100.0/24', 2, now(), now());
RESET ROLE;

CREATE EXTENSION mastodon_ip_scrub;
SELECT * FROM mastodon_ip_scrub.protected_columns ORDER BY table_name, column_name;
SELECT tgrelid::regclass AS "table", tgname, tgenabled, pg_get_triggerdef(oid) LIKE '%BEFORE INSERT OR UPDATE%FOR EACH ROW%' AS row_trigger
  FROM pg_trigger WHERE tgname = 'zz_mastodon_ip_scrub' ORDER BY tgrelid::regclass::text;

-- Installing rewrote no existing row; new writes are scrubbed.
SELECT email, sign_up_ip FROM users;
SET ROLE mastodon;
INSERT INTO users (email, created_at, updated_at, account_id, sign_up_ip)
     VALUES ('bob@example.org', now(), now(), 1, '2001:db8:1234:5678::9') RETURNING email, sign_up_ip;
SELECT ip, severity FROM ip_blocks;
RESET ROLE;

-- Only the extension's own schema holds its objects; nothing lands in public. (PostgreSQL 17 and
-- later also list the row types of the extension's tables and view, which come with them.)
SELECT pg_describe_object(classid, objid, objsubid) AS member
  FROM pg_depend d WHERE refclassid = 'pg_extension'::regclass AND deptype = 'e'
   AND refobjid = (SELECT oid FROM pg_extension WHERE extname = 'mastodon_ip_scrub')
   AND NOT EXISTS (SELECT FROM pg_type t LEFT JOIN pg_type e ON e.oid = t.typelem
                    WHERE d.classid = 'pg_type'::regclass AND t.oid = d.objid
                      AND (t.typrelid <> 0 OR e.typrelid <> 0))
 ORDER BY 1;

-- An exemption, to show that a new installation does not take it over.
SELECT mastodon_ip_scrub.unprotect('oauth_access_tokens', 'last_used_ip');
SELECT mastodon_ip_scrub.exempt('oauth_access_tokens', 'last_used_ip', 'kept while we test');

-- DROP EXTENSION needs CASCADE: the triggers on Mastodon's tables depend on its trigger function.
-- CASCADE drops exactly those triggers and the extension's event triggers, never a table or a row.
DROP EXTENSION mastodon_ip_scrub;
DROP EXTENSION mastodon_ip_scrub CASCADE;
SELECT count(*) AS triggers_left FROM pg_trigger WHERE NOT tgisinternal;
SELECT count(*) AS event_triggers_left FROM pg_event_trigger;
SELECT count(*) AS users_kept FROM users;
-- The large object that kept protection stays (DROP EXTENSION leaves large objects alone)...
SELECT count(*) AS stores_left FROM pg_largeobject_metadata;
INSERT INTO login_activities (user_id, success, ip, created_at) VALUES (1, true, '192.0.2.10', now()) RETURNING ip;

-- Installing again protects everything again: the old store is removed, not taken over.
CREATE EXTENSION mastodon_ip_scrub;
SELECT count(*) AS stores FROM pg_largeobject_metadata;
SELECT table_name, column_name, builtin FROM mastodon_ip_scrub.exemption ORDER BY 1, 2;
SELECT evtname, evtevent, evtenabled FROM pg_event_trigger ORDER BY 1;
SELECT table_name, column_name, trigger_enabled FROM mastodon_ip_scrub.protected_columns ORDER BY 1, 2;
INSERT INTO login_activities (user_id, success, ip, created_at) VALUES (1, true, '192.0.2.10', now()) RETURNING ip;

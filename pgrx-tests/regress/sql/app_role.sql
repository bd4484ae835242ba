-- Nothing Mastodon's role does in its own sessions switches scrubbing off.
\c - mastodon
-- A fresh session: the library is not loaded yet, so PostgreSQL accepts this as a placeholder...
SET mastodon_ip_scrub.enabled = off;
-- ...and discards it, with a WARNING, when the first protected write loads the library.
INSERT INTO login_activities (user_id, success, ip, created_at) VALUES (1, true, '203.0.113.5', now()) RETURNING ip;
SHOW mastodon_ip_scrub.enabled;
-- Once loaded, every way of changing a setting is refused.
SET mastodon_ip_scrub.enabled = off;
SET mastodon_ip_scrub.ipv4_prefix = 32;
BEGIN;
SET LOCAL mastodon_ip_scrub.mode = 'truncate';
ROLLBACK;
SELECT set_config('mastodon_ip_scrub.ipv6_prefix', '128', false);
ALTER ROLE mastodon SET mastodon_ip_scrub.enabled = off;
ALTER DATABASE :"DBNAME" SET mastodon_ip_scrub.enabled = off;
INSERT INTO login_activities (user_id, success, ip, created_at) VALUES (1, true, '2001:db8:aa:bb::5', now()) RETURNING ip;

-- The admin's ALTER DATABASE ... SET applies to every new session of the application.
\c - postgres
ALTER DATABASE :"DBNAME" SET mastodon_ip_scrub.ipv4_prefix = 16;
\c - mastodon
SHOW mastodon_ip_scrub.ipv4_prefix;
INSERT INTO login_activities (user_id, success, ip, created_at) VALUES (1, true, '203.0.113.5', now()) RETURNING ip;
\c - postgres
ALTER DATABASE :"DBNAME" RESET mastodon_ip_scrub.ipv4_prefix;

-- A superuser can switch it off for maintenance, in their own session only.
SET mastodon_ip_scrub.enabled = off;
INSERT INTO login_activities (user_id, success, ip, created_at) VALUES (1, true, '203.0.113.5', now()) RETURNING ip;
RESET mastodon_ip_scrub.enabled;
DELETE FROM login_activities WHERE ip = '203.0.113.5';

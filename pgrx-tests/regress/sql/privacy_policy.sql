-- privacy_policy(): the paragraph an admin pastes into the instance's privacy policy, written from
-- the settings in force and what is protected. Protection dates are pinned so the text is stable.
UPDATE mastodon_ip_scrub.protection SET protected_at = '2026-03-01 12:00+00';
SET TimeZone = 'UTC';
\pset format unaligned

-- The defaults (/24, /48), after the backfill of the previous file: every stored row is scrubbed.
SELECT mastodon_ip_scrub.privacy_policy();

-- Mastodon's IP_RETENTION_PERIOD as the instance sets it, and wider prefixes.
SET mastodon_ip_scrub.ipv4_prefix = 16;
SET mastodon_ip_scrub.ipv6_prefix = 64;
SELECT mastodon_ip_scrub.privacy_policy(interval '90 days');
RESET mastodon_ip_scrub.ipv4_prefix;
RESET mastodon_ip_scrub.ipv6_prefix;

-- The other modes keep nothing of the address.
SET mastodon_ip_scrub.mode = 'null';
SELECT mastodon_ip_scrub.privacy_policy();
SET mastodon_ip_scrub.mode = 'loopback';
SELECT mastodon_ip_scrub.privacy_policy();
RESET mastodon_ip_scrub.mode;

-- Rows written while scrubbing was off keep more than the settings allow: the text says so.
SET mastodon_ip_scrub.enabled = off;
INSERT INTO login_activities (user_id, success, ip, created_at) VALUES (1, true, '192.0.2.77', now());
RESET mastodon_ip_scrub.enabled;
SELECT mastodon_ip_scrub.privacy_policy() LIKE '%still keep more than that%' AS admits_older_rows;
DELETE FROM login_activities WHERE ip = '192.0.2.77';

-- Scrubbing switched off: the text says full addresses are stored.
SET mastodon_ip_scrub.enabled = off;
SELECT mastodon_ip_scrub.privacy_policy();
RESET mastodon_ip_scrub.enabled;

-- A Mastodon column kept whole on purpose is named as such.
SELECT mastodon_ip_scrub.unprotect('session_activations', 'ip');
SELECT mastodon_ip_scrub.privacy_policy();
SELECT mastodon_ip_scrub.protect('session_activations', 'ip');

-- Prefixes that keep every bit are no anonymization: the text says addresses are stored in full.
SET mastodon_ip_scrub.ipv4_prefix = 32;
SET mastodon_ip_scrub.ipv6_prefix = 128;
SELECT mastodon_ip_scrub.privacy_policy();
RESET mastodon_ip_scrub.ipv4_prefix;
RESET mastodon_ip_scrub.ipv6_prefix;

-- Mastodon's role cannot call it (nor status()): an admin's function.
SET ROLE mastodon;
SELECT mastodon_ip_scrub.privacy_policy();
RESET ROLE;

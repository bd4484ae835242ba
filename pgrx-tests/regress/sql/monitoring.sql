-- The admin guide's alert query (docs/admin-guide.md, "An alert for your monitoring system"): one
-- number, zero when all is well.
\set alert 'SELECT (SELECT count(*) FILTER (WHERE column_present AND NOT trigger_enabled) + coalesce(sum(unscrubbed_rows), 0) FROM mastodon_ip_scrub.status()) + (SELECT count(*) FROM mastodon_ip_scrub.audit()) AS mastodon_ip_scrub_problems'

-- After the backfill of the earlier files: nothing to report.
:alert;

-- A row written while scrubbing was switched off.
SET mastodon_ip_scrub.enabled = off;
INSERT INTO login_activities (user_id, success, ip, created_at) VALUES (1, true, '192.0.2.78', now());
RESET mastodon_ip_scrub.enabled;
:alert;

-- And a new address column nobody decided about (a Mastodon upgrade adding one).
CREATE TABLE webhook_deliveries (id bigserial PRIMARY KEY, source_ip inet);
:alert;

-- Settled: scrubbed (backfill's NOTICEs carry timings), and the column protected.
SET client_min_messages = warning;
CALL mastodon_ip_scrub.backfill();
RESET client_min_messages;
SELECT mastodon_ip_scrub.protect('webhook_deliveries', 'source_ip');
:alert;
SELECT mastodon_ip_scrub.unprotect('webhook_deliveries', 'source_ip');
DROP TABLE webhook_deliveries;

-- No valid write fails: every form an UPDATE's SET list can take, on a protected column, with the
-- library preloaded as the README recommends (so the parse-time guard of skip_redundant_updates
-- sees every statement), with skip_redundant_updates on and off, as Mastodon's role and as a
-- superuser. Each stores the scrubbed address. The guard copies only a constant or a bound
-- parameter into the WHERE clause; every other form (DEFAULT, multi-assignment, sub-SELECT,
-- subscripts, expressions) is left to the trigger.
\set SHOW_CONTEXT never
\set main_db :DBNAME
ALTER DATABASE :"main_db" SET session_preload_libraries = 'mastodon_ip_scrub';
CREATE SCHEMA forms AUTHORIZATION mastodon;
CREATE TYPE forms.hostport AS (host inet, port int);

\c - mastodon
-- Loaded at connection (the settings exist before any write):
SELECT current_user, current_setting('mastodon_ip_scrub.skip_redundant_updates') AS skipping;
\i sql/update_forms_cases.inc
\c - postgres
ALTER ROLE mastodon IN DATABASE :"main_db" SET mastodon_ip_scrub.skip_redundant_updates = off;
\c - mastodon
SELECT current_user;
\i sql/update_forms_cases.inc
\c - postgres
ALTER ROLE mastodon IN DATABASE :"main_db" RESET mastodon_ip_scrub.skip_redundant_updates;
SELECT current_user;
\i sql/update_forms_cases.inc
SET mastodon_ip_scrub.skip_redundant_updates = off;
\i sql/update_forms_cases.inc

RESET mastodon_ip_scrub.skip_redundant_updates;
ALTER DATABASE :"main_db" RESET session_preload_libraries;
DROP SCHEMA forms CASCADE;
DELETE FROM mastodon_ip_scrub.protection WHERE schema_name = 'forms';

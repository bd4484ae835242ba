-- The row trigger is written in C-ABI Rust by hand (src/trigger/) so it can keep a per-statement
-- plan in fn_extra; pgrx's #[pg_trigger] wrapper does not expose the FmgrInfo.
CREATE FUNCTION mastodon_ip_scrub.scrub_trigger() RETURNS trigger
LANGUAGE c
AS 'MODULE_PATHNAME', 'scrub_trigger';
COMMENT ON FUNCTION mastodon_ip_scrub.scrub_trigger() IS
    'BEFORE INSERT OR UPDATE FOR EACH ROW trigger; its arguments name the columns to anonymize.';

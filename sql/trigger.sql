-- The row trigger is written in C-ABI Rust by hand (src/trigger.rs) so it can keep a per-statement
-- plan in fn_extra; pgrx's #[pg_trigger] wrapper does not expose the FmgrInfo.
CREATE FUNCTION mastodon_ip_scrub.scrub_trigger() RETURNS trigger
LANGUAGE c
AS 'MODULE_PATHNAME', 'scrub_trigger';
COMMENT ON FUNCTION mastodon_ip_scrub.scrub_trigger() IS
    'BEFORE INSERT OR UPDATE FOR EACH ROW trigger; its arguments name the columns to anonymize.';

-- What the trigger stores for one value in a column that is (or is not) NOT NULL, under the
-- settings in force when it runs. The planner wraps each protected value of an INSERT in it
-- (src/scrubbed_inserts.rs); backfill() and status() use it too. Hand-written for the same reason
-- (src/functions.rs): it runs once per protected value written. STABLE, not IMMUTABLE, so that a
-- plan never folds a call into a constant computed under other settings.
CREATE FUNCTION mastodon_ip_scrub._stored(ip inet, not_null boolean) RETURNS inet
LANGUAGE c STABLE STRICT PARALLEL SAFE
AS 'MODULE_PATHNAME', 'stored_value';

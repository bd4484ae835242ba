//! skip_redundant_updates: Mastodon's per-request session UPDATE writes nothing once the stored
//! address is scrubbed, while every real change (and Mastodon's daily touch) is still written.

#[pgrx::pg_schema]
mod tests {
    use crate::pgrx_tests::support::{mastodon, run, text};
    use pgrx::prelude::*;

    /// One session whose stored address is already scrubbed, and Mastodon's prepared UPDATE.
    fn session() {
        mastodon();
        run("INSERT INTO session_activations (id, session_id, user_agent, ip, user_id, created_at, updated_at)
                  VALUES (1, 's1', 'Firefox', '203.0.113.77', 1, now(), '2026-01-01');
             PREPARE request(inet, timestamp, bigint) AS
                  UPDATE session_activations SET ip = $1, updated_at = $2 WHERE id = $3;");
    }

    /// Row versions written to session_activations in this transaction so far.
    fn updates() -> i64 {
        Spi::get_one::<i64>(
            "SELECT n_tup_upd FROM pg_stat_xact_user_tables WHERE relid = 'session_activations'::regclass",
        )
        .unwrap()
        .unwrap()
    }

    /// The verbose plan of a prepared statement's execution (plain EXPLAIN would analyse the
    /// statement without the parse hook).
    fn plan_of(execute: &str) -> String {
        Spi::connect(|client| {
            client
                .select(
                    &format!("EXPLAIN (VERBOSE, COSTS OFF) {execute}"),
                    None,
                    &[],
                )
                .unwrap()
                .map(|row| row.get::<String>(1).unwrap().unwrap_or_default())
                .collect::<Vec<_>>()
                .join("\n")
        })
    }

    fn row() -> Option<String> {
        text("SELECT format('%s %s %s', abbrev(ip), user_agent, updated_at) FROM session_activations WHERE id = 1")
    }

    #[pg_test]
    fn a_request_from_the_same_network_writes_nothing() {
        session();
        let before = updates();
        run(
            "EXECUTE request('203.0.113.5', now(), 1); EXECUTE request('203.0.113.200', now(), 1);",
        );
        assert_eq!(updates(), before);
        assert_eq!(
            row().as_deref(),
            Some("203.0.113.0 Firefox 2026-01-01 00:00:00")
        );
    }

    #[pg_test]
    fn the_guard_is_in_the_plan_so_the_row_is_never_locked() {
        session();
        let plan = Spi::connect(|client| {
            client
                .select(
                    "EXPLAIN (VERBOSE, COSTS OFF) EXECUTE request('203.0.113.5', now(), 1)",
                    None,
                    &[],
                )
                .unwrap()
                .map(|row| row.get::<String>(1).unwrap().unwrap_or_default())
                .collect::<Vec<_>>()
                .join("\n")
        });
        assert!(
            plan.contains("Filter: mastodon_ip_scrub._update_needed(session_activations.ip, '203.0.113.5'::inet, false)"),
            "{plan}"
        );
    }

    #[pg_test]
    fn real_changes_are_written() {
        session();
        let before = updates();
        // Another network.
        run("EXECUTE request('198.51.100.7', now(), 1)");
        assert_eq!(updates(), before + 1);
        assert_eq!(
            text("SELECT abbrev(ip) FROM session_activations WHERE id = 1").as_deref(),
            Some("198.51.100.0")
        );
        // The same network, but another column changes too.
        run("UPDATE session_activations SET ip = '198.51.100.9', user_agent = 'Safari', updated_at = now() WHERE id = 1");
        assert_eq!(updates(), before + 2);
        assert_eq!(
            text("SELECT user_agent FROM session_activations WHERE id = 1").as_deref(),
            Some("Safari")
        );
    }

    #[pg_test]
    fn mastodons_daily_touch_is_written() {
        session();
        let before = updates();
        run("UPDATE session_activations SET updated_at = '2026-06-01' WHERE id = 1");
        // Writing the stored value itself is a touch too.
        run("UPDATE session_activations SET ip = '203.0.113.0', updated_at = '2026-07-01' WHERE id = 1");
        assert_eq!(updates(), before + 2);
        assert_eq!(
            row().as_deref(),
            Some("203.0.113.0 Firefox 2026-07-01 00:00:00")
        );
    }

    #[pg_test]
    fn a_full_address_stored_before_protection_is_scrubbed_not_skipped() {
        session();
        run("SET mastodon_ip_scrub.enabled = off;
             UPDATE session_activations SET ip = '203.0.113.77' WHERE id = 1;
             RESET mastodon_ip_scrub.enabled;");
        let before = updates();
        run("EXECUTE request('203.0.113.5', '2026-02-01', 1)");
        assert_eq!(updates(), before + 1);
        assert_eq!(
            row().as_deref(),
            Some("203.0.113.0 Firefox 2026-02-01 00:00:00")
        );
    }

    #[pg_test]
    fn switched_off_every_update_is_written() {
        session();
        run("SET mastodon_ip_scrub.skip_redundant_updates = off");
        let before = updates();
        run("EXECUTE request('203.0.113.5', '2026-02-01', 1)");
        assert_eq!(updates(), before + 1);
        assert_eq!(
            row().as_deref(),
            Some("203.0.113.0 Firefox 2026-02-01 00:00:00")
        );
    }

    #[pg_test]
    fn the_trigger_skips_what_the_guard_cannot_see() {
        session();
        let before = updates();
        // A volatile expression is not duplicated into a guard; the trigger compares the rows.
        run("UPDATE session_activations SET ip = ('203.0.113.' || (4 + random() * 0)::int)::inet, updated_at = now() WHERE id = 1");
        assert_eq!(
            row().as_deref(),
            Some("203.0.113.0 Firefox 2026-01-01 00:00:00")
        );
        assert_eq!(updates(), before);
        // A column the trigger does not know about makes the row different: written.
        run("ALTER TABLE session_activations ADD COLUMN note text");
        run("UPDATE session_activations SET ip = ('203.0.113.' || (4 + random() * 0)::int)::inet, note = 'n' WHERE id = 1");
        assert_eq!(updates(), before + 1);
        assert_eq!(
            text("SELECT note FROM session_activations WHERE id = 1").as_deref(),
            Some("n")
        );
    }

    #[pg_test]
    fn a_role_that_cannot_read_the_address_gets_no_guard() {
        session();
        // The guard reads the stored address; a role without SELECT on it must not learn it from
        // row counts, so its statement is left as written (the trigger still skips the row).
        run("CREATE ROLE ip_writer;
             GRANT USAGE ON SCHEMA tests TO ip_writer;
             GRANT SELECT (id), UPDATE (ip, updated_at) ON session_activations TO ip_writer;
             SET ROLE ip_writer;
             PREPARE writer_request(inet, bigint) AS UPDATE session_activations SET ip = $1, updated_at = now() WHERE id = $2;");
        let plan = Spi::connect(|client| {
            client
                .select(
                    "EXPLAIN (VERBOSE, COSTS OFF) EXECUTE writer_request('203.0.113.5', 1)",
                    None,
                    &[],
                )
                .unwrap()
                .map(|row| row.get::<String>(1).unwrap().unwrap_or_default())
                .collect::<Vec<_>>()
                .join("\n")
        });
        run("EXECUTE writer_request('203.0.113.5', 1); RESET ROLE;");
        assert!(!plan.contains("_update_needed"), "{plan}");
        assert_eq!(
            row().as_deref(),
            Some("203.0.113.0 Firefox 2026-01-01 00:00:00")
        );
    }

    #[pg_test]
    fn only_statements_writing_a_requests_address_get_the_guard() {
        session();
        // Computed from the row itself (as backfill does), or assigning another column too.
        run("PREPARE from_row AS UPDATE session_activations SET ip = mastodon_ip_scrub._stored(ip, false);
             PREPARE with_agent(inet) AS UPDATE session_activations SET ip = $1, user_agent = 'x' WHERE id = 1;
             PREPARE guarded(inet) AS UPDATE session_activations SET ip = $1 WHERE id = 1;");
        assert!(!plan_of("EXECUTE from_row").contains("_update_needed"));
        assert!(!plan_of("EXECUTE with_agent('203.0.113.5')").contains("_update_needed"));
        assert!(plan_of("EXECUTE guarded('203.0.113.5')").contains("_update_needed"));
    }

    #[pg_test]
    fn a_revoked_guard_function_never_fails_the_applications_update() {
        session();
        run("REVOKE EXECUTE ON FUNCTION mastodon_ip_scrub._update_needed(inet, inet, boolean) FROM PUBLIC;
             CREATE ROLE app_without_execute;
             GRANT SELECT, UPDATE ON session_activations TO app_without_execute;
             SET ROLE app_without_execute;
             PREPARE app_request(inet) AS UPDATE session_activations SET ip = $1, updated_at = now() WHERE id = 1;");
        let plan = plan_of("EXECUTE app_request('198.51.100.3')");
        run("EXECUTE app_request('198.51.100.3'); RESET ROLE;");
        assert!(!plan.contains("_update_needed"), "{plan}");
        assert_eq!(
            text("SELECT abbrev(ip) FROM session_activations WHERE id = 1").as_deref(),
            Some("198.51.100.0")
        );
    }
}

//! An INSERT whose plan scrubs every protected value (scrubbed_inserts.rs) does not call the scrub
//! trigger, and stores exactly what the trigger would have stored; every INSERT whose plan does not
//! show that still calls it.

#[pgrx::pg_schema]
mod tests {
    use crate::pgrx_tests::support::{mastodon, run, text, texts};
    use pgrx::prelude::*;

    /// Calls of the scrub trigger in this transaction (needs track_functions = all).
    fn calls() -> i64 {
        Spi::get_one::<i64>(
            "SELECT coalesce(sum(calls), 0)::bigint FROM pg_stat_xact_user_functions
              WHERE schemaname = 'mastodon_ip_scrub' AND funcname = 'scrub_trigger'",
        )
        .unwrap()
        .unwrap_or(0)
    }

    fn setup() {
        mastodon();
        run("SET track_functions = 'all'");
    }

    fn login_ips() -> Vec<Option<String>> {
        texts("SELECT abbrev(ip) FROM login_activities ORDER BY id")
    }

    #[pg_test]
    fn inserts_of_values_skip_the_trigger_and_store_scrubbed_addresses() {
        setup();
        let before = calls();
        run(
            "INSERT INTO login_activities (id, user_id, ip) VALUES (1, 1, '203.0.113.77');
             INSERT INTO login_activities (id, user_id, ip)
                  VALUES (2, 1, '2001:db8:1:2::9'), (3, 1, NULL), (4, 1, '198.51.100.7/20');
             INSERT INTO login_activities (id, user_id, ip)
                  SELECT 4 + g, 1, ('192.0.2.' || g)::inet FROM generate_series(1, 2) g;
             PREPARE sign_in(bigint, inet) AS
                  INSERT INTO login_activities (id, user_id, ip) VALUES ($1, 1, $2);
             EXECUTE sign_in(7, '198.51.100.200');",
        );
        // Generic plans too (what a prepared statement uses after five executions).
        run("SET plan_cache_mode = force_generic_plan; EXECUTE sign_in(8, '203.0.113.1');");
        assert_eq!(calls(), before, "no INSERT above needs the trigger");
        assert_eq!(
            login_ips(),
            [
                Some("203.0.113.0"),
                Some("2001:db8:1::"),
                None,
                Some("198.51.100.0"),
                Some("192.0.2.0"),
                Some("192.0.2.0"),
                Some("198.51.100.0"),
                Some("203.0.113.0"),
            ]
            .map(|s| s.map(String::from))
        );
        let returned = text(
            "INSERT INTO login_activities (id, user_id, ip) VALUES (9, 1, '10.9.8.7')
             RETURNING abbrev(ip)",
        );
        assert_eq!(returned.as_deref(), Some("10.9.8.0"));
    }

    #[pg_test]
    fn settings_are_read_when_the_row_is_written_not_when_it_is_planned() {
        setup();
        run("PREPARE sign_in(bigint, inet) AS
                  INSERT INTO login_activities (id, user_id, ip) VALUES ($1, 1, $2);
             SET plan_cache_mode = force_generic_plan;
             EXECUTE sign_in(1, '203.0.113.77');
             SET mastodon_ip_scrub.ipv4_prefix = 16;
             EXECUTE sign_in(2, '203.0.113.77');
             SET mastodon_ip_scrub.mode = 'null';
             EXECUTE sign_in(3, '203.0.113.77');
             SET mastodon_ip_scrub.enabled = off;
             EXECUTE sign_in(4, '203.0.113.77');");
        assert_eq!(
            login_ips(),
            [
                Some("203.0.113.0"),
                Some("203.0.0.0"),
                None,
                Some("203.0.113.77")
            ]
            .map(|s| s.map(String::from))
        );
    }

    #[pg_test]
    fn inserts_the_plan_cannot_vouch_for_keep_the_trigger() {
        setup();
        let mut before = calls();
        // The application's own BEFORE INSERT trigger could put an address into NEW.
        run(
            "CREATE FUNCTION app_sets_ip() RETURNS trigger LANGUAGE plpgsql AS $$
             BEGIN NEW.ip := '198.51.100.99'; RETURN NEW; END $$;
             CREATE TRIGGER app_sets_ip BEFORE INSERT ON login_activities
                FOR EACH ROW EXECUTE FUNCTION app_sets_ip();
             INSERT INTO login_activities (id, user_id, ip) VALUES (1, 1, '203.0.113.77');",
        );
        assert_eq!(calls(), before + 1);
        assert_eq!(login_ips(), [Some("198.51.100.0".to_string())]);

        // Rows copied as they are from a table of the same shape: the trigger changes each copy in
        // place, which costs less than forming every row anew around the calls...
        run("DROP TRIGGER app_sets_ip ON login_activities;
             CREATE TABLE imported (LIKE login_activities);
             INSERT INTO imported (id, user_id, ip) VALUES (2, 1, '192.0.2.7'), (3, 1, '2001:db8:5:6::7');");
        before = calls();
        run("INSERT INTO login_activities SELECT * FROM imported");
        assert_eq!(calls(), before + 2);
        // ...while rows computed anyway get the calls.
        run(
            "INSERT INTO login_activities SELECT id + 2, user_id, authentication_method, provider,
                    success, failure_reason, ip, user_agent, created_at FROM imported",
        );
        assert_eq!(calls(), before + 2);
        assert_eq!(
            login_ips(),
            [
                Some("198.51.100.0"),
                Some("192.0.2.0"),
                Some("2001:db8:5::"),
                Some("192.0.2.0"),
                Some("2001:db8:5::")
            ]
            .map(|s| s.map(String::from))
        );

        // A partitioned table: each row is routed to a partition, whose trigger scrubs it.
        before = calls();
        run("CREATE TABLE hits (at date NOT NULL, ip inet) PARTITION BY RANGE (at);
             CREATE TABLE hits_2026 PARTITION OF hits FOR VALUES FROM ('2026-01-01') TO ('2027-01-01');
             SELECT mastodon_ip_scrub.protect('hits', 'ip');
             INSERT INTO hits VALUES ('2026-05-01', '203.0.113.1');");
        assert_eq!(calls(), before + 1);
        assert_eq!(
            text("SELECT abbrev(ip) FROM hits").as_deref(),
            Some("203.0.113.0")
        );

        // A protected column that is no longer inet: the trigger stores NULL (and warns).
        before = calls();
        run("CREATE TABLE notes (id int, ip inet);
             SELECT mastodon_ip_scrub.protect('notes', 'ip');
             ALTER TABLE notes ALTER COLUMN ip TYPE text;
             INSERT INTO notes VALUES (1, '203.0.113.77');");
        assert_eq!(calls(), before + 1);
        assert_eq!(text("SELECT ip FROM notes"), None);
    }

    #[pg_test]
    fn columns_left_to_their_default_are_scrubbed() {
        setup();
        let before = calls();
        run("ALTER TABLE login_activities ALTER COLUMN ip SET DEFAULT '203.0.113.77';
             INSERT INTO login_activities (id, user_id) VALUES (1, 1);
             INSERT INTO login_activities (id, user_id, ip) VALUES (2, 1, DEFAULT);
             INSERT INTO login_activities (id, user_id, ip) VALUES (3, 1, DEFAULT), (4, 1, '10.1.2.3');");
        assert_eq!(calls(), before);
        assert_eq!(
            login_ips(),
            [
                Some("203.0.113.0"),
                Some("203.0.113.0"),
                Some("203.0.113.0"),
                Some("10.1.2.0")
            ]
            .map(|s| s.map(String::from))
        );
    }

    #[pg_test]
    fn a_column_protected_after_planning_is_scrubbed() {
        setup();
        run(
            "CREATE TABLE visits (id int PRIMARY KEY, ip inet, seen inet);
             SELECT mastodon_ip_scrub.protect('visits', 'ip');
             PREPARE visit(int, inet) AS INSERT INTO visits VALUES ($1, $2, $2);
             SET plan_cache_mode = force_generic_plan;
             EXECUTE visit(1, '203.0.113.77');
             SELECT mastodon_ip_scrub.protect('visits', 'seen');
             EXECUTE visit(2, '203.0.113.77');",
        );
        assert_eq!(
            texts("SELECT abbrev(ip) || ' ' || abbrev(seen) FROM visits ORDER BY id"),
            [
                Some("203.0.113.0 203.0.113.77"),
                Some("203.0.113.0 203.0.113.0")
            ]
            .map(|s| s.map(String::from))
        );
    }

    /// The same values through the plan and through the trigger (kept firing by a do-nothing
    /// trigger beside it), under every mode, into a nullable and a NOT NULL column.
    #[pg_test]
    fn the_plan_stores_what_the_trigger_stores() {
        setup();
        run(
            "CREATE TABLE planned (id int, ip inet, required inet NOT NULL DEFAULT '::1');
             CREATE TABLE triggered (LIKE planned INCLUDING DEFAULTS);
             SELECT mastodon_ip_scrub.protect('planned', 'ip', 'required');
             SELECT mastodon_ip_scrub.protect('triggered', 'ip', 'required');
             CREATE FUNCTION pass() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RETURN NEW; END $$;
             CREATE TRIGGER pass BEFORE INSERT ON triggered FOR EACH ROW EXECUTE FUNCTION pass();
             CREATE TABLE written (ip inet);
             INSERT INTO written VALUES ('203.0.113.77'), ('203.0.113.77/8'), ('10.0.0.0/8'),
                 ('127.0.0.1'), ('::1'), ('2001:db8:1:2:3:4:5:6'), ('2001:db8::/32'),
                 ('::ffff:198.51.100.7'), ('0.0.0.0'), ('255.255.255.255/0');",
        );
        for mode in ["truncate", "loopback", "null"] {
            let before = calls();
            run(&format!(
                "SET mastodon_ip_scrub.mode = '{mode}';
                 TRUNCATE planned, triggered;
                 INSERT INTO planned (id, ip, required) SELECT 1, ip, ip FROM written;
                 INSERT INTO triggered (id, ip, required) SELECT 1, ip, ip FROM written;"
            ));
            let rows = Spi::get_one::<i64>("SELECT count(*) FROM written").unwrap();
            assert_eq!(
                calls(),
                before + rows.unwrap_or(0),
                "only `triggered` fires"
            );
            let stored = |table: &str| {
                texts(&format!(
                    "SELECT coalesce(ip::text, 'NULL') || ' ' || required::text FROM {table} ORDER BY 1"
                ))
            };
            assert_eq!(stored("planned"), stored("triggered"), "mode {mode}");
            assert!(!stored("planned").is_empty());
        }
    }

    #[pg_test]
    fn a_role_without_execute_on_the_helper_still_inserts_scrubbed_addresses() {
        setup();
        run(
            "REVOKE EXECUTE ON FUNCTION mastodon_ip_scrub._stored(inet, boolean) FROM PUBLIC;
             CREATE ROLE scrub_test_app;
             GRANT INSERT, SELECT ON login_activities TO scrub_test_app;
             SET ROLE scrub_test_app;
             INSERT INTO login_activities (id, user_id, ip) VALUES (1, 1, '203.0.113.77');
             RESET ROLE;",
        );
        assert_eq!(login_ips(), [Some("203.0.113.0".to_string())]);
    }
}

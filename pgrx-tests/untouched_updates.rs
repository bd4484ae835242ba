//! An UPDATE that assigns no protected column does not call the scrub trigger (so PostgreSQL does
//! not lock and re-read each old row for it), while every UPDATE that could store an address does.

#[pgrx::pg_schema]
mod tests {
    use crate::pgrx_tests::support::{mastodon, run, text};
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

    fn login_ip() -> Option<String> {
        text("SELECT abbrev(ip) FROM login_activities WHERE id = 1")
    }

    fn setup() {
        mastodon();
        run("SET track_functions = 'all';
             INSERT INTO login_activities (id, user_id, success, ip, created_at)
                  VALUES (1, 1, true, '203.0.113.77', now());");
    }

    #[pg_test]
    fn only_updates_that_assign_a_protected_column_call_the_trigger() {
        setup();
        let before = calls();
        run("UPDATE login_activities SET success = false WHERE id = 1");
        assert_eq!(calls(), before);
        run("UPDATE login_activities SET ip = '198.51.100.7' WHERE id = 1");
        assert_eq!(calls(), before + 1);
        assert_eq!(login_ip().as_deref(), Some("198.51.100.0"));
        // Naming the column is enough, whatever the value.
        run("UPDATE login_activities SET ip = ip, success = true WHERE id = 1");
        assert_eq!(calls(), before + 2);
    }

    #[pg_test]
    fn another_before_update_trigger_keeps_the_scrub_trigger_running() {
        setup();
        // The application's own trigger could put an address into NEW on any UPDATE.
        run(
            "CREATE FUNCTION app_sets_ip() RETURNS trigger LANGUAGE plpgsql AS $$
             BEGIN NEW.ip := '192.0.2.99'; RETURN NEW; END $$;
             CREATE TRIGGER app_sets_ip BEFORE UPDATE ON login_activities
                FOR EACH ROW EXECUTE FUNCTION app_sets_ip();",
        );
        run("UPDATE login_activities SET success = false WHERE id = 1");
        assert_eq!(login_ip().as_deref(), Some("192.0.2.0"));
    }

    #[pg_test]
    fn renamed_columns_and_partitions_are_followed() {
        setup();
        run("ALTER TABLE login_activities RENAME COLUMN ip TO address");
        let before = calls();
        run("UPDATE login_activities SET success = false WHERE id = 1");
        assert_eq!(calls(), before);
        run("UPDATE login_activities SET address = '2001:db8:1:2::3' WHERE id = 1");
        assert_eq!(
            text("SELECT abbrev(address) FROM login_activities WHERE id = 1").as_deref(),
            Some("2001:db8:1::")
        );

        run("CREATE TABLE hits (at date NOT NULL, ip inet, n int) PARTITION BY RANGE (at);
             CREATE TABLE hits_2026 PARTITION OF hits FOR VALUES FROM ('2026-01-01') TO ('2027-01-01');
             SELECT mastodon_ip_scrub.protect('hits', 'ip');
             INSERT INTO hits VALUES ('2026-05-01', '203.0.113.1', 0);");
        let before = calls();
        run("UPDATE hits SET n = n + 1");
        assert_eq!(calls(), before);
        run("UPDATE hits SET ip = '198.51.100.99'");
        assert_eq!(calls(), before + 1);
        assert_eq!(
            text("SELECT abbrev(ip) FROM hits").as_deref(),
            Some("198.51.100.0")
        );
    }

    #[pg_test]
    fn upserts_and_merges_still_scrub() {
        setup();
        run(
            "INSERT INTO login_activities (id, user_id, success, ip, created_at)
                  VALUES (1, 1, true, '198.51.100.5', now())
             ON CONFLICT (id) DO UPDATE SET ip = EXCLUDED.ip",
        );
        assert_eq!(login_ip().as_deref(), Some("198.51.100.0"));
        // A statement whose UPDATE sits in a CTE is still checked per result relation.
        run("WITH moved AS (UPDATE login_activities SET ip = '192.0.2.200' WHERE id = 1 RETURNING id)
             SELECT count(*) FROM moved");
        assert_eq!(login_ip().as_deref(), Some("192.0.2.0"));
    }
}

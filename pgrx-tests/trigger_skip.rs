//! An UPDATE that assigns no protected column, or assigns one its own stored form (backfill's),
//! does not call the scrub trigger (so PostgreSQL does not lock and re-read each old row for it),
//! while every UPDATE that could store an address does.

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

    /// Row 1 of login_activities holding a full address, as rows written before protection do.
    fn unscrubbed_login() {
        run("SET mastodon_ip_scrub.enabled = off;
             UPDATE login_activities SET ip = '203.0.113.77' WHERE id = 1;
             RESET mastodon_ip_scrub.enabled;");
        assert_eq!(login_ip().as_deref(), Some("203.0.113.77"));
    }

    #[pg_test]
    fn backfills_update_scrubs_without_calling_the_trigger() {
        setup();
        unscrubbed_login();
        let before = calls();
        // The statement backfill() runs for each range of blocks, through the same function.
        run(r#"SELECT mastodon_ip_scrub._scrub_range('login_activities',
                   mastodon_ip_scrub._scrub_statement('login_activities', '{ip}',
                                                      'ctid >= $1::tid AND ctid < $2::tid'),
                   '(0,0)', '(100,0)', '100ms')"#);
        assert_eq!(calls(), before);
        assert_eq!(login_ip().as_deref(), Some("203.0.113.0"));

        // So does the statement of each earlier pass over a range, which takes the rows whose line
        // pointer number is the pass's (modulo the passes): here the row's own.
        unscrubbed_login();
        let before = calls();
        run(r#"SELECT mastodon_ip_scrub._scrub_range('login_activities',
                   mastodon_ip_scrub._scrub_statement('login_activities', '{ip}',
                       format('ctid >= $1::tid AND ctid < $2::tid AND ((ctid::text)::point)[1]::integer %% 8 = %s',
                              (SELECT ((ctid::text)::point)[1]::integer % 8 FROM login_activities WHERE id = 1))),
                   '(0,0)', '(100,0)', '100ms')"#);
        assert_eq!(calls(), before);
        assert_eq!(login_ip().as_deref(), Some("203.0.113.0"));

        // A NOT NULL column, and one of two protected columns.
        run("CREATE TABLE hits (id int, a inet NOT NULL, b inet);
             SELECT mastodon_ip_scrub.protect('hits', 'a', 'b');
             SET mastodon_ip_scrub.enabled = off;
             INSERT INTO hits VALUES (1, '192.0.2.77', '198.51.100.77');
             RESET mastodon_ip_scrub.enabled;");
        let before = calls();
        run("UPDATE hits SET a = mastodon_ip_scrub._stored(a, true)");
        assert_eq!(calls(), before);
        assert_eq!(
            text("SELECT abbrev(a) || ' ' || abbrev(b) FROM hits").as_deref(),
            Some("192.0.2.0 198.51.100.77")
        );
    }

    #[pg_test]
    fn any_other_value_for_the_column_calls_the_trigger() {
        setup();
        run("CREATE TABLE hits (id int, a inet NOT NULL, b inet);
             SELECT mastodon_ip_scrub.protect('hits', 'a', 'b');
             INSERT INTO hits VALUES (1, '192.0.2.77', '198.51.100.77');
             CREATE TABLE elsewhere AS SELECT '192.0.2.200'::inet AS ip;");
        const LOGIN_IP: &str = "SELECT abbrev(ip) FROM login_activities";
        // Each statement, and what is stored afterwards where its value is known.
        for (sql, stored) in [
            // A value that is not the row's own.
            (
                "UPDATE login_activities SET ip = mastodon_ip_scrub._stored('198.51.100.7', false)",
                Some((LOGIN_IP, "198.51.100.0")),
            ),
            // The stored form of another column.
            (
                "UPDATE hits SET b = mastodon_ip_scrub._stored(a, false)",
                Some(("SELECT abbrev(b) FROM hits", "192.0.2.0")),
            ),
            // The wrong NOT NULL flag: the trigger's fallback for NULL differs.
            (
                "UPDATE login_activities SET ip = mastodon_ip_scrub._stored(ip, true)",
                None,
            ),
            // Another function.
            (
                "UPDATE login_activities SET ip = mastodon_ip_scrub.scrub(ip)",
                None,
            ),
            // Another row's address, through a join.
            (
                "UPDATE login_activities l SET ip = mastodon_ip_scrub._stored(o.ip, false)
                   FROM elsewhere o",
                Some((LOGIN_IP, "192.0.2.0")),
            ),
        ] {
            let before = calls();
            run(sql);
            assert_eq!(calls(), before + 1, "{sql}");
            if let Some((query, value)) = stored {
                assert_eq!(text(query).as_deref(), Some(value), "{sql}");
            }
        }
    }
}

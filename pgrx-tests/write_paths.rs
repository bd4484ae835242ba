//! Every way a row reaches a protected column stores the scrubbed value (default settings:
//! mode truncate, IPv4 /24, IPv6 /48).

#[pgrx::pg_schema]
mod tests {
    use crate::pgrx_tests::support::{mastodon, run, text, texts};
    use pgrx::prelude::*;

    #[pg_test]
    fn insert_scrubs_every_mastodon_ip_column() {
        mastodon();
        run("INSERT INTO accounts (id, username, created_at, updated_at) VALUES (2, 'bob', now(), now());
             INSERT INTO users (id, email, created_at, updated_at, account_id, sign_up_ip)
                  VALUES (2, 'bob@example.org', now(), now(), 2, '203.0.113.77');
             INSERT INTO session_activations (session_id, user_agent, ip, user_id, created_at, updated_at)
                  VALUES ('s1', 'Firefox', '2001:db8:abcd:12::7', 2, now(), now());
             INSERT INTO login_activities (user_id, authentication_method, success, ip, user_agent, created_at)
                  VALUES (2, 'password', true, '198.51.100.23', 'Firefox', now());
             INSERT INTO oauth_access_tokens (token, created_at, resource_owner_id, last_used_at, last_used_ip)
                  VALUES ('tok', now(), 2, now(), '192.0.2.200');");
        assert_eq!(
            text("SELECT abbrev(sign_up_ip) FROM users WHERE id = 2").as_deref(),
            Some("203.0.113.0")
        );
        assert_eq!(
            text("SELECT abbrev(ip) FROM session_activations").as_deref(),
            Some("2001:db8:abcd::")
        );
        assert_eq!(
            text("SELECT abbrev(ip) FROM login_activities").as_deref(),
            Some("198.51.100.0")
        );
        assert_eq!(
            text("SELECT abbrev(last_used_ip) FROM oauth_access_tokens").as_deref(),
            Some("192.0.2.0")
        );
    }

    #[pg_test]
    fn insert_handles_every_address_form() {
        mastodon();
        run(
            "INSERT INTO login_activities (user_id, success, ip, created_at) VALUES
                 (1, true, '203.0.113.77', now()),
                 (1, true, '2001:db8:abcd:1234:5678:9abc:def0:1', now()),
                 (1, true, '::ffff:198.51.100.42', now()),
                 (1, true, '10.1.2.3/8', now()),
                 (1, true, '2001:db8:1:2::1/16', now()),
                 (1, true, NULL, now())",
        );
        assert_eq!(
            texts("SELECT abbrev(ip) FROM login_activities ORDER BY id"),
            vec![
                Some("203.0.113.0".into()),
                Some("2001:db8:abcd::".into()),
                Some("::ffff:198.51.100.0".into()),
                Some("10.1.2.0".into()),
                Some("2001:db8:1::".into()),
                None,
            ]
        );
    }

    #[pg_test]
    fn multi_row_and_insert_select_are_scrubbed_row_by_row() {
        mastodon();
        run(
            "INSERT INTO login_activities (user_id, success, ip, created_at)
             SELECT 1, true, '198.51.100.0'::inet + i, now() FROM generate_series(1, 500) AS i",
        );
        assert_eq!(
            text("SELECT string_agg(DISTINCT abbrev(ip), ',') FROM login_activities").as_deref(),
            Some("198.51.100.0,198.51.101.0")
        );
        assert_eq!(
            text("SELECT count(*)::text FROM login_activities WHERE masklen(ip) <> 32").as_deref(),
            Some("0")
        );
    }

    /// INSERT ... SELECT * hands the trigger the scan's own slot, described by the source table.
    /// Rows with NULLs and text before the address, a source whose rows predate its address
    /// column (the value is the column's default, not in the row), and both sources alternating
    /// within one statement: every row is scrubbed, and an index on the address agrees with the
    /// rows, which the trigger changed after reading them through the slot.
    #[pg_test]
    fn insert_select_of_whole_rows_is_scrubbed_whatever_the_source() {
        mastodon();
        run("CREATE INDEX ON login_activities (ip);
             CREATE TABLE old_logins (LIKE login_activities);
             INSERT INTO old_logins
             SELECT i, 1, 'password', CASE WHEN i % 2 = 0 THEN 'github' END, i % 3 <> 0, NULL,
                    CASE WHEN i % 4 = 0 THEN '2001:db8:7:8::'::inet + i ELSE '198.51.100.0'::inet + i END,
                    'Firefox', now()
               FROM generate_series(1, 200) AS i;
             CREATE TABLE older_logins (id bigint NOT NULL, user_id bigint NOT NULL,
                                        authentication_method varchar, provider varchar,
                                        success boolean, failure_reason varchar);
             INSERT INTO older_logins SELECT 1000 + i, 1, 'password', NULL, true, NULL
               FROM generate_series(1, 50) AS i;
             ALTER TABLE older_logins ADD COLUMN ip inet DEFAULT '192.0.2.200',
                                      ADD COLUMN user_agent varchar, ADD COLUMN created_at timestamp;
             CREATE TABLE more_logins (LIKE login_activities);
             INSERT INTO more_logins SELECT id + 300, user_id, authentication_method, provider, success,
                                            failure_reason, ip, user_agent, created_at
               FROM old_logins WHERE id % 10 = 0;
             INSERT INTO login_activities SELECT * FROM old_logins;
             INSERT INTO login_activities SELECT * FROM more_logins UNION ALL SELECT * FROM older_logins;");
        assert_eq!(
            text("SELECT count(*)::text FROM login_activities").as_deref(),
            Some("270")
        );
        assert_eq!(
            texts(
                "SELECT abbrev(ip) || ' ' || count(*) FROM login_activities
                  GROUP BY ip ORDER BY ip"
            ),
            [
                Some("192.0.2.0 50"),
                Some("198.51.100.0 160"),
                Some("2001:db8:7:: 60"),
            ]
            .map(|s| s.map(String::from))
        );
        // Looked up through the index only: each entry matches its row's scrubbed address.
        run("SET LOCAL enable_seqscan = off; SET LOCAL enable_bitmapscan = off;");
        assert_eq!(
            texts(
                "SELECT count(*)::text FROM login_activities WHERE ip = '198.51.100.0'
                 UNION ALL SELECT count(*)::text FROM login_activities WHERE ip = '192.0.2.0'
                 UNION ALL SELECT count(*)::text FROM login_activities WHERE ip > '198.51.100.0' AND ip < '198.51.101.0'"
            ),
            [Some("160"), Some("50"), Some("0")].map(|s| s.map(String::from))
        );
    }

    #[pg_test]
    fn update_of_the_ip_column_is_scrubbed() {
        mastodon();
        run("INSERT INTO session_activations (session_id, ip, user_id, created_at, updated_at)
                  VALUES ('s1', '203.0.113.5', 1, now(), now());
             INSERT INTO oauth_access_tokens (token, created_at, resource_owner_id) VALUES ('tok', now(), 1);");
        // Mastodon's per-request session refresh and its API token bookkeeping.
        run("UPDATE session_activations SET ip = '198.51.100.99', updated_at = now() WHERE session_id = 's1';
             UPDATE oauth_access_tokens SET last_used_at = now(), last_used_ip = '2001:db8:ffff:1::9' WHERE token = 'tok';");
        assert_eq!(
            text("SELECT abbrev(ip) FROM session_activations").as_deref(),
            Some("198.51.100.0")
        );
        assert_eq!(
            text("SELECT abbrev(last_used_ip) FROM oauth_access_tokens").as_deref(),
            Some("2001:db8:ffff::")
        );
        // An expression, not only a literal.
        run("UPDATE session_activations SET ip = ip + 300");
        assert_eq!(
            text("SELECT abbrev(ip) FROM session_activations").as_deref(),
            Some("198.51.101.0")
        );
    }

    #[pg_test]
    fn copy_from_is_scrubbed() {
        mastodon();
        run(
            r#"COPY login_activities (user_id, success, ip, created_at) FROM PROGRAM
                 'printf "1,t,203.0.113.9,2025-01-01\n1,f,2001:db8:77:1::5,2025-01-01\n1,t,,2025-01-01\n"'
                 WITH (FORMAT csv)"#,
        );
        assert_eq!(
            texts("SELECT abbrev(ip) FROM login_activities ORDER BY id"),
            vec![
                Some("203.0.113.0".into()),
                Some("2001:db8:77::".into()),
                None
            ]
        );
    }

    /// MERGE (PostgreSQL 15+) fires the same row triggers for the rows it inserts and updates.
    #[cfg(not(feature = "pg14"))]
    #[pg_test]
    fn merge_inserts_and_updates_are_scrubbed() {
        mastodon();
        run(
            "INSERT INTO session_activations (session_id, ip, user_id, created_at, updated_at)
                  VALUES ('s1', '203.0.113.5', 1, now(), now())",
        );
        run("MERGE INTO session_activations s
             USING (VALUES ('s1', '198.51.100.77'::inet), ('s2', '2001:db8:aa:bb::1'::inet)) AS v (sid, ip)
                ON s.session_id = v.sid
              WHEN MATCHED THEN UPDATE SET ip = v.ip, updated_at = now()
              WHEN NOT MATCHED THEN INSERT (session_id, ip, user_id, created_at, updated_at)
                                    VALUES (v.sid, v.ip, 1, now(), now())");
        assert_eq!(
            texts("SELECT session_id || ' ' || abbrev(ip) FROM session_activations ORDER BY session_id"),
            vec![Some("s1 198.51.100.0".into()), Some("s2 2001:db8:aa::".into())]
        );
    }

    #[pg_test]
    fn insert_on_conflict_do_update_is_scrubbed() {
        mastodon();
        run(
            "INSERT INTO session_activations (session_id, ip, user_id, created_at, updated_at)
                  VALUES ('s1', '203.0.113.5', 1, now(), now())",
        );
        // EXCLUDED carries what the BEFORE INSERT trigger made of the row.
        run("INSERT INTO session_activations (session_id, ip, user_id, created_at, updated_at)
                  VALUES ('s1', '198.51.100.77', 1, now(), now())
             ON CONFLICT (session_id) DO UPDATE SET ip = EXCLUDED.ip, updated_at = EXCLUDED.updated_at");
        assert_eq!(
            text("SELECT abbrev(ip) FROM session_activations").as_deref(),
            Some("198.51.100.0")
        );
        // A value set directly in DO UPDATE goes through the BEFORE UPDATE trigger.
        run(
            "INSERT INTO session_activations (session_id, ip, user_id, created_at, updated_at)
                  VALUES ('s1', NULL, 1, now(), now())
             ON CONFLICT (session_id) DO UPDATE SET ip = '192.0.2.55'",
        );
        assert_eq!(
            text("SELECT abbrev(ip) FROM session_activations").as_deref(),
            Some("192.0.2.0")
        );
        assert_eq!(
            text("SELECT count(*)::text FROM session_activations").as_deref(),
            Some("1")
        );
    }

    #[pg_test]
    fn scrubbing_is_idempotent() {
        mastodon();
        run("INSERT INTO login_activities (user_id, success, ip, created_at) VALUES (1, true, '203.0.113.77', now())");
        let once = text("SELECT abbrev(ip) FROM login_activities");
        run("UPDATE login_activities SET ip = ip");
        run("UPDATE login_activities SET ip = mastodon_ip_scrub.scrub(ip)");
        assert_eq!(text("SELECT abbrev(ip) FROM login_activities"), once);
        assert_eq!(
            text(
                "SELECT (mastodon_ip_scrub.scrub(mastodon_ip_scrub.scrub('2001:db8:1:2:3::4'))
                          = mastodon_ip_scrub.scrub('2001:db8:1:2:3::4'))::text"
            )
            .as_deref(),
            Some("true")
        );
    }

    #[pg_test]
    fn update_of_other_columns_leaves_a_scrubbed_address_alone() {
        mastodon();
        run("UPDATE users SET sign_up_ip = '203.0.113.77' WHERE id = 1");
        let before = text("SELECT abbrev(sign_up_ip) FROM users WHERE id = 1");
        run("UPDATE users SET locale = 'de', updated_at = now() WHERE id = 1");
        assert_eq!(
            text("SELECT abbrev(sign_up_ip) FROM users WHERE id = 1"),
            before
        );
        assert_eq!(
            text("SELECT locale FROM users WHERE id = 1").as_deref(),
            Some("de")
        );
    }

    #[pg_test]
    fn an_address_stored_while_disabled_waits_for_backfill_or_its_next_write() {
        mastodon();
        run("SET mastodon_ip_scrub.enabled = off;
             UPDATE users SET sign_up_ip = '203.0.113.77' WHERE id = 1;
             RESET mastodon_ip_scrub.enabled;");
        // An UPDATE that does not name the column skips the trigger (hooks/trigger_skip.rs) and
        // carries the stored value over, as every untouched row keeps it until backfill().
        run("UPDATE users SET locale = 'fr' WHERE id = 1");
        assert_eq!(
            text("SELECT abbrev(sign_up_ip) FROM users WHERE id = 1").as_deref(),
            Some("203.0.113.77")
        );
        assert_eq!(
            text(
                "SELECT unscrubbed_rows::text FROM mastodon_ip_scrub.status(exact => true)
                  WHERE table_name = 'users' AND column_name = 'sign_up_ip'"
            )
            .as_deref(),
            Some("1")
        );
        // Any UPDATE that names it stores the scrubbed value, even one writing the value back.
        run("UPDATE users SET sign_up_ip = sign_up_ip WHERE id = 1");
        assert_eq!(
            text("SELECT abbrev(sign_up_ip) FROM users WHERE id = 1").as_deref(),
            Some("203.0.113.0")
        );
    }

    #[pg_test]
    fn ip_blocks_are_never_touched() {
        mastodon();
        run(
            "INSERT INTO ip_blocks (ip, severity, created_at, updated_at) VALUES
                 ('203.0.113.77', 1, now(), now()),
                 ('10.0.0.0/8', 2, now(), now()),
                 ('2001:db8:abcd:12::/64', 3, now(), now())",
        );
        assert_eq!(
            texts("SELECT abbrev(ip) FROM ip_blocks ORDER BY id"),
            vec![
                Some("203.0.113.77".into()),
                Some("10.0.0.0/8".into()),
                Some("2001:db8:abcd:12::/64".into())
            ]
        );
        assert_eq!(
            text("SELECT count(*)::text FROM pg_trigger WHERE tgrelid = 'ip_blocks'::regclass")
                .as_deref(),
            Some("0")
        );
    }

    #[pg_test]
    fn user_ips_view_shows_only_scrubbed_addresses() {
        mastodon();
        run("UPDATE users SET sign_up_ip = '203.0.113.77' WHERE id = 1;
             INSERT INTO session_activations (session_id, ip, user_id, created_at, updated_at)
                  VALUES ('s1', '203.0.113.80', 1, now(), now());
             INSERT INTO login_activities (user_id, success, ip, created_at) VALUES (1, true, '2001:db8:5:6::1', now());");
        assert_eq!(
            texts("SELECT abbrev(ip) FROM user_ips ORDER BY ip"),
            vec![Some("203.0.113.0".into()), Some("2001:db8:5::".into())]
        );
        // Mastodon's admin search by a range at least as wide as the prefix still matches.
        assert_eq!(
            text("SELECT count(*)::text FROM user_ips WHERE ip <<= '203.0.113.0/24'").as_deref(),
            Some("1")
        );
    }
}

//! The mastodon_ip_scrub.* settings: modes, switching off, prefixes, and who may change them.

#[pgrx::pg_schema]
mod tests {
    use crate::pgrx_tests::support::{error_of, mastodon, run, text, texts};
    use pgrx::prelude::*;

    fn insert_login(ip: &str) {
        run(&format!(
            "INSERT INTO login_activities (user_id, success, ip, created_at) VALUES (1, true, '{ip}', now())"
        ));
    }

    fn stored_logins() -> Vec<Option<String>> {
        texts("SELECT abbrev(ip) FROM login_activities ORDER BY id")
    }

    #[pg_test]
    fn defaults_are_on_truncate_24_48() {
        assert_eq!(
            texts(
                "SELECT name || '=' || setting || ' ' || context FROM pg_settings
                  WHERE name LIKE 'mastodon_ip_scrub.%' ORDER BY name"
            ),
            vec![
                Some("mastodon_ip_scrub.enabled=on superuser".into()),
                Some("mastodon_ip_scrub.ipv4_prefix=24 superuser".into()),
                Some("mastodon_ip_scrub.ipv6_prefix=48 superuser".into()),
                Some("mastodon_ip_scrub.mode=truncate superuser".into()),
                Some("mastodon_ip_scrub.skip_redundant_updates=on superuser".into()),
            ]
        );
    }

    #[pg_test]
    fn mode_loopback_stores_the_loopback_address_of_each_family() {
        mastodon();
        run("SET mastodon_ip_scrub.mode = 'loopback'");
        insert_login("203.0.113.77");
        insert_login("2001:db8::77");
        insert_login("::ffff:203.0.113.77");
        assert_eq!(
            stored_logins(),
            vec![
                Some("127.0.0.1".into()),
                Some("::1".into()),
                Some("::ffff:127.0.0.1".into())
            ]
        );
    }

    #[pg_test]
    fn mode_null_stores_null() {
        mastodon();
        run("SET mastodon_ip_scrub.mode = 'null'");
        insert_login("203.0.113.77");
        insert_login("2001:db8::77");
        run("UPDATE users SET sign_up_ip = '203.0.113.77' WHERE id = 1");
        assert_eq!(stored_logins(), vec![None, None]);
        assert_eq!(
            text("SELECT abbrev(sign_up_ip) FROM users WHERE id = 1"),
            None
        );
    }

    #[pg_test]
    fn disabled_passes_values_through_unchanged() {
        mastodon();
        run("SET mastodon_ip_scrub.enabled = off");
        insert_login("203.0.113.77");
        insert_login("10.1.2.3/8");
        run("RESET mastodon_ip_scrub.enabled");
        insert_login("203.0.113.77");
        assert_eq!(
            stored_logins(),
            vec![
                Some("203.0.113.77".into()),
                Some("10.1.2.3/8".into()),
                Some("203.0.113.0".into())
            ]
        );
    }

    #[pg_test]
    fn prefix_changes_apply_to_the_next_write_in_the_same_session() {
        mastodon();
        insert_login("203.0.113.77");
        run("SET mastodon_ip_scrub.ipv4_prefix = 16");
        insert_login("203.0.113.77");
        run("SET LOCAL mastodon_ip_scrub.ipv4_prefix = 8");
        insert_login("203.0.113.77");
        run("SET mastodon_ip_scrub.ipv6_prefix = 32");
        insert_login("2001:db8:abcd::1");
        run("SET mastodon_ip_scrub.ipv6_prefix = 64");
        insert_login("2001:db8:abcd:1234::1");
        assert_eq!(
            stored_logins(),
            vec![
                Some("203.0.113.0".into()),
                Some("203.0.0.0".into()),
                Some("203.0.0.0".into()),
                Some("2001:db8::".into()),
                Some("2001:db8:abcd:1234::".into()),
            ]
        );
    }

    #[pg_test]
    fn a_setting_changed_mid_statement_applies_from_the_next_row() {
        // The plan cached per statement holds no setting: every row reads the current values.
        // INSERT ... SELECT computes each row just before inserting it, so row 2 sets /16 for itself.
        mastodon();
        run("INSERT INTO login_activities (user_id, success, ip, user_agent, created_at)
             SELECT 1, true, '203.0.113.77',
                    CASE WHEN i = 2 THEN set_config('mastodon_ip_scrub.ipv4_prefix', '16', true) END, now()
               FROM generate_series(1, 3) AS i");
        assert_eq!(
            stored_logins(),
            vec![
                Some("203.0.113.0".into()),
                Some("203.0.0.0".into()),
                Some("203.0.0.0".into())
            ]
        );
    }

    #[pg_test]
    fn out_of_range_and_unknown_settings_are_refused() {
        assert_eq!(
            error_of("SET mastodon_ip_scrub.ipv4_prefix = 33").as_deref(),
            Some("33 is outside the valid range for parameter \"mastodon_ip_scrub.ipv4_prefix\" (0 .. 32)")
        );
        assert_eq!(
            error_of("SET mastodon_ip_scrub.ipv6_prefix = -1").as_deref(),
            Some("-1 is outside the valid range for parameter \"mastodon_ip_scrub.ipv6_prefix\" (0 .. 128)")
        );
        assert_eq!(
            error_of("SET mastodon_ip_scrub.mode = 'hash'").as_deref(),
            Some("invalid value for parameter \"mastodon_ip_scrub.mode\": \"hash\"")
        );
        // 15+ reserves the prefix, so a typo is an error. 14 cannot: the typo becomes a harmless
        // placeholder that nothing reads, and the real setting keeps its value.
        #[cfg(not(feature = "pg14"))]
        assert_eq!(
            error_of("SET mastodon_ip_scrub.enable = off").as_deref(),
            Some("invalid configuration parameter name \"mastodon_ip_scrub.enable\"")
        );
        #[cfg(feature = "pg14")]
        assert_eq!(error_of("SET mastodon_ip_scrub.enable = off"), None);
        assert_eq!(
            text("SHOW mastodon_ip_scrub.enabled").as_deref(),
            Some("on")
        );
    }

    #[pg_test]
    fn the_table_owning_application_role_cannot_change_settings() {
        mastodon();
        run("CREATE ROLE mastodon_app LOGIN NOSUPERUSER;
             ALTER TABLE users OWNER TO mastodon_app;
             ALTER TABLE login_activities OWNER TO mastodon_app;
             ALTER TABLE session_activations OWNER TO mastodon_app;
             ALTER TABLE accounts OWNER TO mastodon_app;
             SET ROLE mastodon_app;");
        for attempt in [
            "SET mastodon_ip_scrub.enabled = off",
            "SET LOCAL mastodon_ip_scrub.enabled = off",
            "SET mastodon_ip_scrub.mode = 'truncate'",
            "SET mastodon_ip_scrub.ipv4_prefix = 32",
            "SET mastodon_ip_scrub.ipv6_prefix = 128",
            "SELECT set_config('mastodon_ip_scrub.enabled', 'off', false)",
            "RESET mastodon_ip_scrub.ipv4_prefix",
        ] {
            let name = attempt
                .split(['\'', ' ', '='])
                .find(|w| w.starts_with("mastodon_ip_scrub."))
                .unwrap();
            assert_eq!(
                error_of(attempt),
                Some(format!("permission denied to set parameter \"{name}\"")),
                "{attempt}"
            );
        }
        // Its own writes are scrubbed, and as the owner it still runs every normal write.
        insert_login("198.51.100.99");
        run("UPDATE users SET sign_up_ip = '2001:db8:9:8::7' WHERE id = 1");
        run("RESET ROLE");
        assert_eq!(stored_logins(), vec![Some("198.51.100.0".into())]);
        assert_eq!(
            text("SELECT abbrev(sign_up_ip) FROM users WHERE id = 1").as_deref(),
            Some("2001:db8:9::")
        );
        assert_eq!(
            text("SHOW mastodon_ip_scrub.enabled").as_deref(),
            Some("on")
        );
    }

    /// PostgreSQL 15+ can hand one setting to a non-superuser; 14 has no GRANT SET ON PARAMETER.
    #[cfg(not(feature = "pg14"))]
    #[pg_test]
    fn a_granted_role_may_set_only_the_parameter_it_was_granted() {
        mastodon();
        run("CREATE ROLE scrub_admin NOSUPERUSER;
             GRANT SET ON PARAMETER mastodon_ip_scrub.mode TO scrub_admin;
             GRANT INSERT, SELECT ON login_activities TO scrub_admin;
             GRANT USAGE ON SEQUENCE login_activities_id_seq TO scrub_admin;
             SET ROLE scrub_admin;
             SET mastodon_ip_scrub.mode = 'loopback';");
        assert_eq!(
            error_of("SET mastodon_ip_scrub.enabled = off").as_deref(),
            Some("permission denied to set parameter \"mastodon_ip_scrub.enabled\"")
        );
        insert_login("203.0.113.77");
        run("RESET ROLE");
        assert_eq!(stored_logins(), vec![Some("127.0.0.1".into())]);
    }
}

//! Schema changes and odd values never make an application write fail; where privacy and
//! availability conflict, the most anonymized value is stored.

#[pgrx::pg_schema]
mod tests {
    use crate::pgrx_tests::support::{error_of, mastodon, run, text, texts};
    use pgrx::prelude::*;

    #[pg_test]
    fn a_dropped_protected_column_does_not_break_writes() {
        mastodon();
        run("ALTER TABLE users ADD COLUMN current_sign_in_ip inet;
             SELECT mastodon_ip_scrub.protect_mastodon();");
        // The 3.5 post-deployment migration: a plain DROP COLUMN, no CASCADE.
        run("ALTER TABLE users DROP COLUMN current_sign_in_ip");
        run("ALTER TABLE oauth_access_tokens DROP COLUMN last_used_ip");
        run(
            "UPDATE users SET sign_up_ip = '203.0.113.77', locale = 'en' WHERE id = 1;
             INSERT INTO oauth_access_tokens (token, created_at, resource_owner_id, last_used_at)
                  VALUES ('tok', now(), 1, now());
             UPDATE oauth_access_tokens SET last_used_at = now();",
        );
        assert_eq!(
            text("SELECT abbrev(sign_up_ip) FROM users").as_deref(),
            Some("203.0.113.0")
        );
        assert_eq!(
            texts(
                "SELECT format('%s.%s present=%s', table_name, column_name, column_present)
                   FROM mastodon_ip_scrub.protected_columns
                  WHERE NOT column_present ORDER BY 1"
            ),
            vec![
                Some("oauth_access_tokens.last_used_ip present=f".into()),
                Some("users.current_sign_in_ip present=f".into()),
            ]
        );
    }

    #[pg_test]
    fn a_dropped_column_added_back_is_protected_again() {
        mastodon();
        run("ALTER TABLE oauth_access_tokens DROP COLUMN last_used_ip;
             ALTER TABLE oauth_access_tokens ADD COLUMN last_used_ip inet;
             INSERT INTO oauth_access_tokens (token, created_at, last_used_ip) VALUES ('t', now(), '198.51.100.7');");
        assert_eq!(
            text("SELECT abbrev(last_used_ip) FROM oauth_access_tokens").as_deref(),
            Some("198.51.100.0")
        );
    }

    #[pg_test]
    fn dropped_columns_before_the_protected_one_do_not_shift_it() {
        mastodon();
        run(
            "CREATE TABLE visits (a int, b text, c int, ip inet, d text);
             ALTER TABLE visits DROP COLUMN b;
             ALTER TABLE visits DROP COLUMN c;
             SELECT mastodon_ip_scrub.protect('visits', 'ip');
             INSERT INTO visits VALUES (1, '203.0.113.77', 'x');",
        );
        assert_eq!(
            text("SELECT format('%s %s %s', a, ip, d) FROM visits").as_deref(),
            Some("1 203.0.113.0 x")
        );
    }

    #[pg_test]
    fn a_renamed_protected_column_does_not_break_writes() {
        mastodon();
        run("ALTER TABLE login_activities RENAME COLUMN ip TO remote_ip");
        run("INSERT INTO login_activities (user_id, success, remote_ip, created_at) VALUES (1, true, NULL, now())");
        assert_eq!(
            text("SELECT count(*)::text FROM login_activities").as_deref(),
            Some("1")
        );
    }

    #[pg_test]
    fn a_protected_column_turned_text_stores_null_not_the_address() {
        mastodon();
        run("CREATE TABLE visits (id serial, ip inet);
             SELECT mastodon_ip_scrub.protect('visits', 'ip');
             ALTER TABLE visits ALTER COLUMN ip TYPE text;
             INSERT INTO visits (ip) VALUES ('203.0.113.77');");
        assert_eq!(text("SELECT ip FROM visits"), None);
        assert_eq!(
            text("SELECT count(*)::text FROM visits").as_deref(),
            Some("1")
        );
    }

    #[pg_test]
    fn a_protected_column_cannot_become_not_null_of_a_type_that_holds_no_address() {
        // Nothing anonymized can be stored there, and a write must not fail: the DDL is refused,
        // whichever of the two changes comes last.
        mastodon();
        run("CREATE TABLE visits (id serial, ip inet NOT NULL);
             SELECT mastodon_ip_scrub.protect('visits', 'ip');");
        let refused = Some(
            "mastodon_ip_scrub: IP address column \"ip\" of table public.visits cannot be NOT NULL of type character varying",
        );
        assert_eq!(
            error_of("ALTER TABLE visits ALTER COLUMN ip TYPE varchar").as_deref(),
            refused
        );
        run("ALTER TABLE visits ALTER COLUMN ip DROP NOT NULL;
             ALTER TABLE visits ALTER COLUMN ip TYPE varchar;");
        assert_eq!(
            error_of("ALTER TABLE visits ALTER COLUMN ip SET NOT NULL").as_deref(),
            refused
        );
        run("INSERT INTO visits (ip) VALUES ('203.0.113.77')");
        assert_eq!(text("SELECT ip FROM visits"), None);
    }

    #[pg_test]
    fn mode_null_on_a_not_null_column_stores_loopback() {
        mastodon();
        run("CREATE TABLE visits (ip inet NOT NULL);
             SELECT mastodon_ip_scrub.protect('visits', 'ip');
             SET mastodon_ip_scrub.mode = 'null';
             INSERT INTO visits VALUES ('203.0.113.77'), ('2001:db8::1');");
        assert_eq!(
            texts("SELECT abbrev(ip) FROM visits"),
            vec![Some("127.0.0.1".into()), Some("::1".into())]
        );
    }

    #[pg_test]
    fn a_domain_over_inet_is_scrubbed() {
        mastodon();
        run("CREATE DOMAIN client_ip AS inet;
             CREATE TABLE visits (ip inet);
             SELECT mastodon_ip_scrub.protect('visits', 'ip');
             ALTER TABLE visits ALTER COLUMN ip TYPE client_ip;
             INSERT INTO visits VALUES ('203.0.113.77');");
        assert_eq!(
            text("SELECT abbrev(ip) FROM visits").as_deref(),
            Some("203.0.113.0")
        );
    }

    #[pg_test]
    fn an_earlier_before_trigger_cannot_put_the_full_address_back() {
        mastodon();
        // The application's own BEFORE trigger runs first (name order): ours sees its result.
        run(
            "CREATE FUNCTION pg_temp.restore_ip() RETURNS trigger LANGUAGE plpgsql AS $$
                 BEGIN NEW.ip := '198.51.100.77'; RETURN NEW; END $$;
             CREATE TRIGGER a_restore_ip BEFORE INSERT OR UPDATE ON session_activations
                 FOR EACH ROW EXECUTE FUNCTION pg_temp.restore_ip();
             INSERT INTO session_activations (session_id, user_id, created_at, updated_at)
                  VALUES ('s', 1, now(), now());
             UPDATE session_activations SET updated_at = now();",
        );
        assert_eq!(
            text("SELECT abbrev(ip) FROM session_activations").as_deref(),
            Some("198.51.100.0")
        );
    }

    #[pg_test]
    fn a_partitioned_table_is_scrubbed_in_every_partition() {
        mastodon();
        run("CREATE TABLE hits (at date NOT NULL, ip inet) PARTITION BY RANGE (at);
             CREATE TABLE hits_2025 PARTITION OF hits FOR VALUES FROM ('2025-01-01') TO ('2026-01-01');
             CREATE TABLE hits_2026 PARTITION OF hits FOR VALUES FROM ('2026-01-01') TO ('2027-01-01');
             SELECT mastodon_ip_scrub.protect('hits', 'ip');
             INSERT INTO hits VALUES ('2025-06-01', '203.0.113.77'), ('2026-06-01', '2001:db8:7:7::7');
             INSERT INTO hits_2026 VALUES ('2026-07-01', '198.51.100.77');");
        assert_eq!(
            texts("SELECT abbrev(ip) FROM hits ORDER BY at"),
            vec![
                Some("203.0.113.0".into()),
                Some("2001:db8:7::".into()),
                Some("198.51.100.0".into())
            ]
        );
    }

    #[pg_test]
    fn a_partition_created_later_is_protected_and_cannot_be_switched_off() {
        mastodon();
        run("CREATE TABLE hits (at date NOT NULL, ip inet, via inet) PARTITION BY RANGE (at);
             SELECT mastodon_ip_scrub.protect('hits', 'ip', 'via');
             CREATE TABLE hits_2027 PARTITION OF hits FOR VALUES FROM ('2027-01-01') TO ('2028-01-01');
             ALTER TABLE hits_2027 DISABLE TRIGGER zz_mastodon_ip_scrub;
             INSERT INTO hits VALUES ('2027-06-01', '203.0.113.77', '2001:db8:7:7::7');");
        assert_eq!(
            texts("SELECT abbrev(ip) || ' ' || abbrev(via) FROM hits"),
            vec![Some("203.0.113.0 2001:db8:7::".into())]
        );
        assert_eq!(
            error_of("SELECT mastodon_ip_scrub.protect('hits_2027', 'ip')").as_deref(),
            Some("mastodon_ip_scrub.protect: public.hits_2027 is a partition")
        );
    }

    #[pg_test]
    fn the_trigger_function_refuses_to_run_outside_a_row_trigger() {
        mastodon();
        run("CREATE TABLE visits (ip inet)");
        // The event triggers refuse such a trigger; only the extension's own DDL gets past them.
        run(
            "SELECT mastodon_ip_scrub._internal_ddl('CREATE TRIGGER misused AFTER INSERT ON visits
                 FOR EACH ROW EXECUTE FUNCTION mastodon_ip_scrub.scrub_trigger(''ip'')')",
        );
        assert_eq!(
            error_of("INSERT INTO visits VALUES ('203.0.113.77')").as_deref(),
            Some(
                "mastodon_ip_scrub.scrub_trigger() must be fired BEFORE INSERT OR UPDATE FOR EACH ROW; \
                 recreate it with mastodon_ip_scrub.protect()"
            )
        );
    }
}

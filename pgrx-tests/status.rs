//! status(), audit() and exempt(): what admins see, checked against what the tables hold.

#[pgrx::pg_schema]
mod tests {
    use crate::pgrx_tests::support::{error_of, mastodon, run, text, texts};
    use pgrx::prelude::*;

    /// Rows written while scrubbing was off, as on an instance before the extension.
    fn unscrubbed_rows() {
        run("SET mastodon_ip_scrub.enabled = off;
             INSERT INTO login_activities (user_id, success, ip, created_at)
                  SELECT 1, true, format('198.51.100.%s', g)::inet, now() FROM generate_series(1, 40) g;
             INSERT INTO login_activities (user_id, success, ip, created_at) VALUES (1, true, '198.51.100.0', now()),
                  (1, false, NULL, now());
             INSERT INTO session_activations (session_id, ip, user_id, created_at, updated_at)
                  VALUES ('s1', '2001:db8:1:2::3', 1, now(), now());
             RESET mastodon_ip_scrub.enabled;");
    }

    fn status_line(table: &str) -> Option<String> {
        text(&format!(
            "SELECT format('%s.%s present=%s trigger=%s/%s/%s rows=%s unscrubbed=%s counted=%s mode=%s/%s/%s',
                           table_name, column_name, column_present, trigger_present, trigger_enabled,
                           trigger_always, rows, unscrubbed_rows, counted, mode, ipv4_prefix, ipv6_prefix)
               FROM mastodon_ip_scrub.status() WHERE table_name = '{table}'"
        ))
    }

    /// present/enabled/always, as status() reports the table's trigger.
    fn trigger_flags(table: &str) -> Option<String> {
        text(&format!(
            "SELECT format('%s/%s/%s', trigger_present, trigger_enabled, trigger_always)
               FROM mastodon_ip_scrub.status() WHERE table_name = '{table}'"
        ))
    }

    #[pg_test]
    fn status_counts_exactly_what_the_table_holds() {
        mastodon();
        unscrubbed_rows();
        // The independent count: values whose bits past /24 are not all zero.
        assert_eq!(
            text("SELECT count(*)::text FROM login_activities WHERE ip <> set_masklen(network(set_masklen(ip, 24)), 32)")
                .as_deref(),
            Some("40")
        );
        assert_eq!(
            status_line("login_activities").as_deref(),
            Some("login_activities.ip present=t trigger=t/t/t rows=42 unscrubbed=40 counted=exact mode=truncate/24/48")
        );
        assert_eq!(
            status_line("session_activations").as_deref(),
            Some("session_activations.ip present=t trigger=t/t/t rows=1 unscrubbed=1 counted=exact mode=truncate/24/48")
        );
    }

    #[pg_test]
    fn status_follows_the_settings_and_the_trigger_state() {
        mastodon();
        unscrubbed_rows();
        // Under /16, the already-/24 row is not scrubbed enough either.
        run("SET mastodon_ip_scrub.ipv4_prefix = 16");
        assert_eq!(
            text("SELECT unscrubbed_rows::text FROM mastodon_ip_scrub.status() WHERE table_name = 'login_activities'")
                .as_deref(),
            Some("41")
        );
        run("RESET mastodon_ip_scrub.ipv4_prefix");
        assert_eq!(trigger_flags("login_activities").as_deref(), Some("t/t/t"));
        run("SELECT mastodon_ip_scrub.protect('login_activities', '{ip}', replicas => false)");
        assert_eq!(trigger_flags("login_activities").as_deref(), Some("t/t/f"));
        // Only with the event triggers out of the way (a superuser's doing) can the trigger be off.
        run("ALTER EVENT TRIGGER mastodon_ip_scrub_after_ddl DISABLE;
             ALTER TABLE login_activities DISABLE TRIGGER zz_mastodon_ip_scrub");
        assert_eq!(trigger_flags("login_activities").as_deref(), Some("t/f/f"));
        run("ALTER TABLE oauth_access_tokens DROP COLUMN last_used_ip");
        assert_eq!(
            status_line("oauth_access_tokens").as_deref(),
            Some("oauth_access_tokens.last_used_ip present=f trigger=t/t/t rows=0 unscrubbed= counted=exact mode=truncate/24/48")
        );
    }

    #[pg_test]
    fn status_samples_large_tables_and_counts_exactly_on_request() {
        mastodon();
        // Over 2560 pages (20 MB): rows padded with a wide user_agent, every one unscrubbed.
        run("SET mastodon_ip_scrub.enabled = off;
             INSERT INTO login_activities (user_id, success, ip, user_agent, created_at)
                  SELECT 1, true, '203.0.113.9', repeat('x', 1800), now() FROM generate_series(1, 12000) g;
             RESET mastodon_ip_scrub.enabled;
             ANALYZE login_activities;");
        let sampled = text(
            "SELECT format('%s %s', counted, unscrubbed_rows = rows) FROM mastodon_ip_scrub.status()
              WHERE table_name = 'login_activities'",
        );
        assert_eq!(sampled.as_deref(), Some("sampled t"));
        assert_eq!(
            text("SELECT format('%s %s %s', counted, rows, unscrubbed_rows) FROM mastodon_ip_scrub.status(exact => true)
                   WHERE table_name = 'login_activities'")
            .as_deref(),
            Some("exact 12000 12000")
        );
    }

    #[pg_test]
    fn audit_lists_unprotected_address_columns_with_the_call_that_settles_them() {
        mastodon();
        run("CREATE TABLE public.web_hits (id bigint, client inet, network cidr, seen inet[], note text);
             CREATE DOMAIN public.client_ip AS inet;
             ALTER TABLE public.web_hits ADD COLUMN via public.client_ip;");
        let listed = texts(
            "SELECT format('%s.%s %s: %s', table_name, column_name, data_type, suggestion)
               FROM mastodon_ip_scrub.audit() WHERE table_name <> 'ip_blocks'",
        );
        assert_eq!(
            listed,
            vec![
                Some("web_hits.client inet: SELECT mastodon_ip_scrub.protect('public.web_hits', 'client');".into()),
                Some("web_hits.network cidr: SELECT mastodon_ip_scrub.protect('public.web_hits', 'network');".into()),
                Some("web_hits.seen inet[]: SELECT mastodon_ip_scrub.exempt('public.web_hits', 'seen', 'why it holds no client addresses');".into()),
                Some("web_hits.via public.client_ip: SELECT mastodon_ip_scrub.protect('public.web_hits', 'via');".into()),
            ]
        );
        // The suggested calls work, and settle the column.
        run(
            "SELECT mastodon_ip_scrub.protect('public.web_hits', 'client');
             SELECT mastodon_ip_scrub.exempt('public.web_hits', 'network', 'our own subnets');
             SELECT mastodon_ip_scrub.exempt('public.web_hits', 'seen', 'crawler ranges');
             SELECT mastodon_ip_scrub.protect('public.web_hits', 'via');",
        );
        assert_eq!(
            texts("SELECT column_name::text FROM mastodon_ip_scrub.audit() WHERE table_name <> 'ip_blocks'"),
            Vec::<Option<String>>::new()
        );
    }

    #[pg_test]
    fn ip_blocks_is_exempt_from_the_start_with_its_reason() {
        // CREATE EXTENSION (run before this test) exempts public.ip_blocks.ip.
        assert_eq!(
            text("SELECT format('%s.%s.%s builtin=%s: %s', schema_name, table_name, column_name, builtin, reason)
                    FROM mastodon_ip_scrub.exemption")
            .as_deref(),
            Some("public.ip_blocks.ip builtin=t: Admin-entered IP ranges to block, not client addresses: truncating them would widen each block.")
        );
        run("CREATE TABLE public.ip_blocks (id bigserial PRIMARY KEY, ip inet NOT NULL DEFAULT '0.0.0.0', severity integer)");
        assert_eq!(
            texts("SELECT column_name::text FROM mastodon_ip_scrub.audit() WHERE schema_name = 'public'"),
            Vec::<Option<String>>::new()
        );
    }

    #[pg_test]
    fn exempt_rejects_bad_input_with_the_fix() {
        mastodon();
        run("CREATE TABLE public.web_hits (id bigint, client inet, note text)");
        assert_eq!(
            error_of("SELECT mastodon_ip_scrub.exempt('public.web_hits', 'client', '  ')").as_deref(),
            Some("mastodon_ip_scrub.exempt: give the reason column \"client\" of table public.web_hits holds no client addresses")
        );
        assert_eq!(
            error_of("SELECT mastodon_ip_scrub.exempt('public.web_hits', 'clinet', 'typo')")
                .as_deref(),
            Some("mastodon_ip_scrub.exempt: column \"clinet\" of table public.web_hits does not exist")
        );
        assert_eq!(
            error_of("SELECT mastodon_ip_scrub.exempt('public.web_hits', 'note', 'text')").as_deref(),
            Some("mastodon_ip_scrub.exempt: column \"note\" of table public.web_hits has type text, which holds no IP address")
        );
        assert_eq!(
            error_of("SELECT mastodon_ip_scrub.exempt('login_activities', 'ip', 'why not')")
                .as_deref(),
            Some("mastodon_ip_scrub.exempt: column \"ip\" of table public.login_activities is protected")
        );
        assert_eq!(
            text("SELECT count(*)::text FROM mastodon_ip_scrub.exemption WHERE NOT builtin")
                .as_deref(),
            Some("0")
        );
        // Protecting an exempt column replaces the exemption.
        run(
            "SELECT mastodon_ip_scrub.exempt('public.web_hits', 'client', 'test data');
             SELECT mastodon_ip_scrub.protect('public.web_hits', 'client');",
        );
        assert_eq!(
            text("SELECT count(*)::text FROM mastodon_ip_scrub.exemption WHERE NOT builtin")
                .as_deref(),
            Some("0")
        );
    }
}

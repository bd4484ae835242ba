//! protect(), unprotect(), protect_mastodon() and the protected_columns view.

#[pgrx::pg_schema]
mod tests {
    use crate::pgrx_tests::support::{error_of, mastodon, run, text, texts};
    use pgrx::prelude::*;

    fn protected() -> Vec<Option<String>> {
        texts(
            "SELECT format('%s.%s present=%s enabled=%s', table_name, column_name, column_present, trigger_enabled)
               FROM mastodon_ip_scrub.protected_columns ORDER BY 1",
        )
    }

    fn trigger_oid(table: &str) -> Option<String> {
        text(&format!(
            "SELECT oid::text FROM pg_trigger WHERE tgrelid = '{table}'::regclass AND tgname = 'zz_mastodon_ip_scrub'"
        ))
    }

    #[pg_test]
    fn protect_mastodon_protects_every_user_ip_column_and_never_ip_blocks() {
        run(include_str!("fixtures/mastodon_schema.sql"));
        assert_eq!(
            texts("SELECT format('%s.%s', table_name, column_name) FROM mastodon_ip_scrub.protect_mastodon()"),
            vec![
                Some("login_activities.ip".into()),
                Some("oauth_access_tokens.last_used_ip".into()),
                Some("session_activations.ip".into()),
                Some("users.sign_up_ip".into()),
            ]
        );
        assert_eq!(
            protected(),
            vec![
                Some("login_activities.ip present=t enabled=t".into()),
                Some("oauth_access_tokens.last_used_ip present=t enabled=t".into()),
                Some("session_activations.ip present=t enabled=t".into()),
                Some("users.sign_up_ip present=t enabled=t".into()),
            ]
        );
        assert_eq!(trigger_oid("ip_blocks"), None);
    }

    #[pg_test]
    fn protect_mastodon_includes_historical_devise_columns() {
        run(include_str!("fixtures/mastodon_schema.sql"));
        // Instances that never ran the 3.5 post-deployment migrations still have these.
        run(
            "ALTER TABLE users ADD COLUMN current_sign_in_ip inet, ADD COLUMN last_sign_in_ip inet",
        );
        assert_eq!(
            texts(
                "SELECT column_name::text FROM mastodon_ip_scrub.protect_mastodon()
                  WHERE table_name = 'users'::regclass"
            ),
            vec![
                Some("current_sign_in_ip".into()),
                Some("last_sign_in_ip".into()),
                Some("sign_up_ip".into())
            ]
        );
        run("INSERT INTO accounts (id, username, created_at, updated_at) VALUES (1, 'a', now(), now());
             INSERT INTO users (email, created_at, updated_at, account_id, sign_up_ip, current_sign_in_ip, last_sign_in_ip)
                  VALUES ('a@example.org', now(), now(), 1, '203.0.113.1', '198.51.100.2', '2001:db8:1:2::3')");
        assert_eq!(
            text(
                "SELECT concat_ws(' ', sign_up_ip, current_sign_in_ip, last_sign_in_ip) FROM users"
            )
            .as_deref(),
            Some("203.0.113.0 198.51.100.0 2001:db8:1::")
        );
    }

    #[pg_test]
    fn protect_mastodon_is_idempotent_and_rewrites_no_trigger() {
        mastodon();
        let before = trigger_oid("users");
        let first = texts("SELECT table_name::text || '.' || column_name FROM mastodon_ip_scrub.protect_mastodon()");
        let second = texts("SELECT table_name::text || '.' || column_name FROM mastodon_ip_scrub.protect_mastodon()");
        assert_eq!(first, second);
        assert_eq!(first.len(), 4);
        assert_eq!(trigger_oid("users"), before);
        assert_eq!(
            text("SELECT count(*)::text FROM mastodon_ip_scrub.protection").as_deref(),
            Some("4")
        );
    }

    #[pg_test]
    fn the_trigger_fires_before_insert_or_update_for_each_row_without_column_dependency() {
        mastodon();
        assert_eq!(
            text("SELECT pg_get_triggerdef(oid) FROM pg_trigger
                   WHERE tgrelid = 'session_activations'::regclass AND tgname = 'zz_mastodon_ip_scrub'")
                .as_deref(),
            Some(
                "CREATE TRIGGER zz_mastodon_ip_scrub BEFORE INSERT OR UPDATE ON public.session_activations \
                 FOR EACH ROW EXECUTE FUNCTION mastodon_ip_scrub.scrub_trigger('ip')"
            )
        );
        // No UPDATE OF column, so the trigger records no dependency on the column.
        assert_eq!(
            text(
                "SELECT count(*)::text FROM pg_depend d JOIN pg_trigger t ON d.classid = 'pg_trigger'::regclass
                                                      AND d.objid = t.oid
                  WHERE t.tgname = 'zz_mastodon_ip_scrub' AND d.refobjsubid <> 0"
            )
            .as_deref(),
            Some("0")
        );
    }

    #[pg_test]
    fn protect_and_unprotect_any_inet_column() {
        mastodon();
        run("CREATE TABLE audit_log (id serial, ip inet, forwarded_for inet, note text)");
        run("SELECT mastodon_ip_scrub.protect('audit_log', 'ip')");
        let trigger = trigger_oid("audit_log");
        run("SELECT mastodon_ip_scrub.protect('audit_log', 'ip')");
        assert_eq!(
            trigger_oid("audit_log"),
            trigger,
            "protecting twice changes nothing"
        );
        run("SELECT mastodon_ip_scrub.protect('audit_log', 'forwarded_for', 'ip')");
        run("INSERT INTO audit_log (ip, forwarded_for) VALUES ('203.0.113.77', '198.51.100.23')");
        assert_eq!(
            text("SELECT concat_ws(' ', ip, forwarded_for) FROM audit_log").as_deref(),
            Some("203.0.113.0 198.51.100.0")
        );

        run("SELECT mastodon_ip_scrub.unprotect('audit_log', 'ip')");
        run("SELECT mastodon_ip_scrub.unprotect('audit_log', 'ip')");
        run("INSERT INTO audit_log (ip, forwarded_for) VALUES ('203.0.113.77', '198.51.100.23')");
        assert_eq!(
            text(
                "SELECT concat_ws(' ', ip, forwarded_for) FROM audit_log ORDER BY id DESC LIMIT 1"
            )
            .as_deref(),
            Some("203.0.113.77 198.51.100.0")
        );
        run("SELECT mastodon_ip_scrub.unprotect('audit_log', 'forwarded_for')");
        assert_eq!(
            trigger_oid("audit_log"),
            None,
            "no protected column left, no trigger"
        );
        assert_eq!(
            text("SELECT count(*)::text FROM mastodon_ip_scrub.protected_columns WHERE table_name = 'audit_log'")
                .as_deref(),
            Some("0")
        );
    }

    #[pg_test]
    fn protect_errors_name_the_object_and_the_fix() {
        mastodon();
        run("CREATE TABLE audit_log (ip inet, ip_text text, net cidr)");
        assert_eq!(
            error_of("SELECT mastodon_ip_scrub.protect('audit_log', 'nope')").as_deref(),
            Some("mastodon_ip_scrub.protect: column \"nope\" of table public.audit_log does not exist")
        );
        assert_eq!(
            error_of("SELECT mastodon_ip_scrub.protect('audit_log', 'ip_text')").as_deref(),
            Some("mastodon_ip_scrub.protect: column \"ip_text\" of table public.audit_log has type text, which holds no IP address")
        );
        // cidr holds addresses as inet does: the trigger scrubs it.
        assert_eq!(
            error_of("SELECT mastodon_ip_scrub.protect('audit_log', 'net')"),
            None
        );
        assert_eq!(
            error_of("SELECT mastodon_ip_scrub.protect('ip_blocks', 'ip')").as_deref(),
            Some(
                "mastodon_ip_scrub.protect: refusing to protect public.ip_blocks.ip: \
                 it holds the IP ranges an admin blocked, not client addresses"
            )
        );
        assert_eq!(
            error_of("SELECT mastodon_ip_scrub.protect('user_ips', 'ip')").as_deref(),
            Some("mastodon_ip_scrub.protect: public.user_ips is not a table")
        );
        assert_eq!(
            error_of("SELECT mastodon_ip_scrub.protect('audit_log', VARIADIC '{}'::name[])")
                .as_deref(),
            Some("mastodon_ip_scrub.protect: no column of table public.audit_log named")
        );
        assert_eq!(
            error_of("SELECT mastodon_ip_scrub.protect('no_such_table', 'ip')").as_deref(),
            Some("relation \"no_such_table\" does not exist")
        );
        // PostgreSQL computes generated columns after BEFORE triggers; protecting one would be a lie.
        run("CREATE TABLE derived (raw text, ip inet GENERATED ALWAYS AS (raw::inet) STORED)");
        assert_eq!(
            error_of("SELECT mastodon_ip_scrub.protect('derived', 'ip')").as_deref(),
            Some("mastodon_ip_scrub.protect: column \"ip\" of table public.derived is a generated column, which no trigger can change")
        );
        assert_eq!(
            text("SELECT count(*)::text FROM mastodon_ip_scrub.protection WHERE table_name = 'derived'")
                .as_deref(),
            Some("0")
        );
        assert_eq!(
            text("SELECT suggestion FROM mastodon_ip_scrub.audit() WHERE table_name = 'derived'").as_deref(),
            Some("ALTER TABLE public.derived ALTER COLUMN ip DROP EXPRESSION;  -- generated: no trigger can scrub it")
        );
        assert_eq!(
            error_of("SELECT mastodon_ip_scrub.unprotect('audit_log', 'nope')").as_deref(),
            Some("mastodon_ip_scrub.unprotect: column \"nope\" of table public.audit_log does not exist and is not protected")
        );
    }

    /// A virtual generated column (PostgreSQL 18+) stores nothing; audit() settles it with exempt().
    #[cfg(feature = "pg18")]
    #[pg_test]
    fn a_virtual_generated_column_is_refused_and_audit_suggests_exempting_it() {
        mastodon();
        run("CREATE TABLE derived (raw text, ip inet GENERATED ALWAYS AS (raw::inet) VIRTUAL)");
        assert_eq!(
            error_of("SELECT mastodon_ip_scrub.protect('derived', 'ip')").as_deref(),
            Some("mastodon_ip_scrub.protect: column \"ip\" of table public.derived is a generated column, which no trigger can change")
        );
        let suggestion =
            text("SELECT suggestion FROM mastodon_ip_scrub.audit() WHERE table_name = 'derived'");
        assert_eq!(
            suggestion.as_deref(),
            Some("SELECT mastodon_ip_scrub.exempt('public.derived', 'ip', 'virtual generated column: stores nothing');")
        );
        run(&suggestion.unwrap_or_default());
        assert_eq!(
            text(
                "SELECT count(*)::text FROM mastodon_ip_scrub.audit() WHERE table_name = 'derived'"
            )
            .as_deref(),
            Some("0")
        );
    }

    #[pg_test]
    fn a_generated_known_column_is_refused_by_the_ddl_that_makes_it() {
        // PostgreSQL computes a generated column after every trigger: its addresses would be
        // stored whole, so no migration may give a Mastodon IP column that form.
        mastodon();
        run(
            "SELECT mastodon_ip_scrub.unprotect('login_activities', 'ip');
             DROP TABLE login_activities CASCADE;",
        );
        assert_eq!(
            error_of(
                "CREATE TABLE login_activities (id bigserial, raw text,
                                                ip inet GENERATED ALWAYS AS (raw::inet) STORED)"
            )
            .as_deref(),
            Some(
                "mastodon_ip_scrub: IP address column \"ip\" of table public.login_activities cannot be a generated column"
            )
        );
        assert_eq!(text("SELECT to_regclass('login_activities')::text"), None);
    }

    #[pg_test]
    fn protect_hint_lists_the_tables_address_columns() {
        mastodon();
        let hint = text(
            "DO $$ BEGIN PERFORM mastodon_ip_scrub.protect('users', 'signup_ip');
               EXCEPTION WHEN undefined_column THEN
                   DECLARE h text; BEGIN GET STACKED DIAGNOSTICS h = PG_EXCEPTION_HINT;
                   PERFORM set_config('test.hint', h, true); END;
             END $$;
             SELECT current_setting('test.hint')",
        );
        assert_eq!(
            hint.as_deref(),
            Some("Address columns of public.users: sign_up_ip.")
        );
    }

    #[pg_test]
    fn a_failed_protect_changes_nothing() {
        mastodon();
        run("CREATE TABLE audit_log (ip inet, note text)");
        assert!(error_of("SELECT mastodon_ip_scrub.protect('audit_log', 'ip', 'note')").is_some());
        assert_eq!(trigger_oid("audit_log"), None);
        assert_eq!(
            text("SELECT count(*)::text FROM mastodon_ip_scrub.protection WHERE table_name = 'audit_log'").as_deref(),
            Some("0")
        );
    }

    #[pg_test]
    fn the_view_shows_a_disabled_trigger_and_protect_re_enables_it() {
        mastodon();
        // ALTER TABLE alone cannot disable it (see regress/hostile.sql); a superuser who first
        // switched the event triggers off can.
        run("ALTER EVENT TRIGGER mastodon_ip_scrub_after_ddl DISABLE;
             ALTER TABLE login_activities DISABLE TRIGGER zz_mastodon_ip_scrub");
        assert!(protected().contains(&Some("login_activities.ip present=t enabled=f".into())));
        run("SELECT mastodon_ip_scrub.protect('login_activities', 'ip')");
        assert!(protected().contains(&Some("login_activities.ip present=t enabled=t".into())));
        run("INSERT INTO login_activities (user_id, ip) VALUES (1, '203.0.113.77')");
        assert_eq!(
            text("SELECT abbrev(ip) FROM login_activities").as_deref(),
            Some("203.0.113.0")
        );
    }

    #[pg_test]
    fn only_superusers_may_change_protection() {
        mastodon();
        run("CREATE ROLE mastodon_app NOSUPERUSER;
             ALTER TABLE users OWNER TO mastodon_app;
             GRANT USAGE ON SCHEMA mastodon_ip_scrub TO mastodon_app;
             SET ROLE mastodon_app;");
        for call in [
            "SELECT mastodon_ip_scrub.unprotect('users', 'sign_up_ip')",
            "SELECT mastodon_ip_scrub.protect('users', 'sign_up_ip')",
            "SELECT mastodon_ip_scrub.protect_mastodon()",
        ] {
            let err = error_of(call).unwrap_or_default();
            assert!(
                err.starts_with("permission denied for function"),
                "{call}: {err}"
            );
        }
        run("RESET ROLE");
        assert!(protected().contains(&Some("users.sign_up_ip present=t enabled=t".into())));
    }
}

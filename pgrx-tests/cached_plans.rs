//! What the trigger keeps between statements (each protected column's position, type and
//! nullability, per table) follows every change of the table, and the
//! settings are read on every row. Each test writes once, so that the plan is cached in this
//! backend, changes something, and writes again.

#[pgrx::pg_schema]
mod tests {
    use crate::pgrx_tests::support::{mastodon, run, text, texts};
    use pgrx::prelude::*;

    fn visits() {
        mastodon();
        run("CREATE TABLE visits (id serial, note text, ip inet);
             SELECT mastodon_ip_scrub.protect('visits', 'ip');
             INSERT INTO visits (ip) VALUES ('203.0.113.77');");
    }

    #[pg_test]
    fn a_column_dropped_and_added_again_is_found_at_its_new_position() {
        visits();
        // A migration that recreates the column: the old attribute stays behind, dropped.
        run("ALTER TABLE visits DROP COLUMN ip;
             ALTER TABLE visits ADD COLUMN ip inet;
             INSERT INTO visits (note, ip) VALUES ('second', '198.51.100.77');");
        assert_eq!(
            text("SELECT abbrev(ip) FROM visits WHERE note = 'second'").as_deref(),
            Some("198.51.100.0")
        );
    }

    #[pg_test]
    fn a_column_turned_text_after_a_write_stores_null() {
        visits();
        run("ALTER TABLE visits ALTER COLUMN ip TYPE text;
             INSERT INTO visits (ip) VALUES ('198.51.100.77');");
        assert_eq!(text("SELECT ip FROM visits WHERE id = 2"), None);
        assert_eq!(
            text("SELECT count(*)::text FROM visits").as_deref(),
            Some("2")
        );
    }

    #[pg_test]
    fn a_column_made_not_null_after_a_write_gets_loopback_instead_of_null() {
        visits();
        run("SET LOCAL mastodon_ip_scrub.mode = 'null';
             DELETE FROM visits;
             ALTER TABLE visits ALTER COLUMN ip SET NOT NULL;
             INSERT INTO visits (ip) VALUES ('198.51.100.77');");
        assert_eq!(
            text("SELECT abbrev(ip) FROM visits").as_deref(),
            Some("127.0.0.1")
        );
    }

    #[pg_test]
    fn a_changed_column_list_applies_to_the_next_write() {
        visits();
        run("ALTER TABLE visits ADD COLUMN proxy_ip inet;
             SELECT mastodon_ip_scrub.protect('visits', 'proxy_ip');
             INSERT INTO visits (ip, proxy_ip) VALUES ('198.51.100.77', '192.0.2.77');
             SELECT mastodon_ip_scrub.unprotect('visits', 'ip');
             INSERT INTO visits (ip, proxy_ip) VALUES ('198.51.100.77', '192.0.2.77');");
        assert_eq!(
            texts(
                "SELECT abbrev(ip) || ' ' || abbrev(proxy_ip) FROM visits WHERE id > 1 ORDER BY id"
            ),
            vec![
                Some("198.51.100.0 192.0.2.0".into()),
                Some("198.51.100.77 192.0.2.0".into())
            ]
        );
    }

    #[pg_test]
    fn a_changed_setting_applies_to_the_next_write() {
        visits();
        run("SET LOCAL mastodon_ip_scrub.ipv4_prefix = 16;
             INSERT INTO visits (ip) VALUES ('198.51.100.77');
             SET LOCAL mastodon_ip_scrub.enabled = off;
             INSERT INTO visits (ip) VALUES ('192.0.2.77');");
        assert_eq!(
            texts("SELECT abbrev(ip) FROM visits ORDER BY id"),
            vec![
                Some("203.0.113.0".into()),
                Some("198.51.0.0".into()),
                Some("192.0.2.77".into())
            ]
        );
    }
}

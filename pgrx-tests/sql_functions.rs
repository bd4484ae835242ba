//! truncate() and scrub(), called from SQL; and what the SQL and C sides must agree on.

#[pgrx::pg_schema]
mod tests {
    use crate::pgrx_tests::support::{error_of, run, text, texts};
    use pgrx::prelude::*;

    /// The SQL that creates and checks scrub triggers and the C side that recognises them spell
    /// the trigger's name in one place each; they must agree.
    #[pg_test]
    fn sql_and_c_agree_on_the_trigger_name() {
        assert_eq!(
            text("SELECT mastodon_ip_scrub._trigger_name()::text").as_deref(),
            crate::catalog::TRIGGER_NAME.to_str().ok()
        );
    }

    #[pg_test]
    fn truncate_ipv4_defaults_to_24_bits() {
        assert_eq!(
            text("SELECT abbrev(mastodon_ip_scrub.truncate('203.0.113.77'))").as_deref(),
            Some("203.0.113.0")
        );
        assert_eq!(
            text("SELECT abbrev(mastodon_ip_scrub.truncate('203.0.113.77', 16))").as_deref(),
            Some("203.0.0.0")
        );
        assert_eq!(
            text("SELECT abbrev(mastodon_ip_scrub.truncate('203.0.113.77', 0))").as_deref(),
            Some("0.0.0.0")
        );
        assert_eq!(
            text("SELECT abbrev(mastodon_ip_scrub.truncate('203.0.113.77', 32))").as_deref(),
            Some("203.0.113.77")
        );
    }

    #[pg_test]
    fn truncate_ipv6_defaults_to_48_bits() {
        assert_eq!(
            text("SELECT abbrev(mastodon_ip_scrub.truncate('2001:db8:abcd:1234:5678:9abc:def0:1234'))").as_deref(),
            Some("2001:db8:abcd::")
        );
        assert_eq!(
            text("SELECT abbrev(mastodon_ip_scrub.truncate('2001:db8:abcd:1234:5678::1', ipv6_prefix => 64))")
                .as_deref(),
            Some("2001:db8:abcd:1234::")
        );
    }

    #[pg_test]
    fn truncate_returns_plain_host_addresses() {
        // /32 and /128 netmasks: host(), the inet output and Ruby's IPAddr read an ordinary address.
        let rows = texts(
            "SELECT format('%s %s %s', masklen(t), family(t), host(t))
               FROM (VALUES (mastodon_ip_scrub.truncate('10.1.2.3')),
                            (mastodon_ip_scrub.truncate('2001:db8::1')),
                            (mastodon_ip_scrub.truncate('::ffff:10.1.2.3'))) AS v (t)",
        );
        assert_eq!(
            rows,
            vec![
                Some("32 4 10.1.2.0".into()),
                Some("128 6 2001:db8::".into()),
                Some("128 6 ::ffff:10.1.2.0".into())
            ]
        );
    }

    #[pg_test]
    fn truncate_masks_ipv4_mapped_addresses_as_ipv4() {
        // As plain IPv6, /48 would erase the address and a prefix >= 96 would keep all of it.
        assert_eq!(
            text("SELECT abbrev(mastodon_ip_scrub.truncate('::ffff:198.51.100.42'))").as_deref(),
            Some("::ffff:198.51.100.0")
        );
        assert_eq!(
            text("SELECT abbrev(mastodon_ip_scrub.truncate('::ffff:198.51.100.42', 24, 128))")
                .as_deref(),
            Some("::ffff:198.51.100.0")
        );
        assert_eq!(
            text("SELECT abbrev(mastodon_ip_scrub.truncate('::ffff:198.51.100.42', 8, 0))")
                .as_deref(),
            Some("::ffff:198.0.0.0")
        );
    }

    #[pg_test]
    fn truncate_ignores_the_input_netmask() {
        assert_eq!(
            text("SELECT abbrev(mastodon_ip_scrub.truncate('10.1.2.3/8'))").as_deref(),
            Some("10.1.2.0")
        );
        assert_eq!(
            text("SELECT abbrev(mastodon_ip_scrub.truncate('10.1.2.3/30'))").as_deref(),
            Some("10.1.2.0")
        );
        assert_eq!(
            text("SELECT abbrev(mastodon_ip_scrub.truncate('2001:db8:1:2::1/16'))").as_deref(),
            Some("2001:db8:1::")
        );
        // cidr converts to inet implicitly.
        assert_eq!(
            text("SELECT abbrev(mastodon_ip_scrub.truncate('192.168.77.0/24'::cidr, 16))")
                .as_deref(),
            Some("192.168.0.0")
        );
    }

    #[pg_test]
    fn truncate_agrees_with_builtin_network_functions() {
        // An independent implementation: PostgreSQL's own network()/set_masklen(), with the
        // embedded IPv4 address of a mapped address masked as IPv4.
        let mismatches = text(
            "WITH r AS (
                 SELECT i % 3 AS kind,
                        '0.0.0.0'::inet + (random() * 4294967295)::bigint AS v4,
                        -- Plain IPv6 (first group 2400-27ff): no form that embeds an IPv4 address.
                        (to_hex(9216 + (random() * 1023)::int) || ':' ||
                         array_to_string(ARRAY(SELECT to_hex((random() * 65535)::int)
                                                 FROM generate_series(1, 7) WHERE i > 0), ':'))::inet AS v6,
                        (random() * 32)::int AS p4,
                        (random() * 128)::int AS p6
                   FROM generate_series(1, 6000) AS i),
             a AS (
                 SELECT CASE kind WHEN 0 THEN v4 WHEN 1 THEN v6 ELSE ('::ffff:' || host(v4))::inet END AS ip,
                        CASE kind WHEN 0 THEN set_masklen(network(set_masklen(v4, p4)), 32)
                                  WHEN 1 THEN set_masklen(network(set_masklen(v6, p6)), 128)
                                  ELSE ('::ffff:' || host(network(set_masklen(v4, p4))))::inet END AS expected,
                        p4, p6
                   FROM r)
             SELECT format('%s of %s', count(*) FILTER (WHERE mastodon_ip_scrub.truncate(ip, p4, p6)
                                                              IS DISTINCT FROM expected), count(*))
               FROM a",
        );
        assert_eq!(mismatches.as_deref(), Some("0 of 6000"));
    }

    #[pg_test]
    fn truncate_keeps_no_more_of_an_embedded_ipv4_address_than_the_ipv4_prefix() {
        // 203.0.113.77 inside 6to4, NAT64, Teredo (inverted) and ISATAP addresses.
        assert_eq!(
            texts(
                "SELECT abbrev(mastodon_ip_scrub.truncate(ip::inet, 24, 128))
                   FROM unnest(ARRAY['2002:cb00:714d::1', '64:ff9b::cb00:714d',
                                     '2001:0:4136:e378:8000:63bf:34ff:8eb2',
                                     '2001:db8:1:2:0:5efe:cb00:714d']) WITH ORDINALITY AS a (ip, n)
                  ORDER BY n"
            ),
            vec![
                Some("2002:cb00:7100::".into()),
                Some("64:ff9b::cb00:7100".into()),
                Some("2001:0:4136:e378:8000:63bf:34ff:8e00".into()),
                Some("2001:db8:1:2:0:5efe:cb00:7100".into()),
            ]
        );
        // The default /48 of a 6to4 address would be the whole IPv4 address: /40 is kept.
        assert_eq!(
            text("SELECT abbrev(mastodon_ip_scrub.truncate('2002:cb00:714d::1'))").as_deref(),
            Some("2002:cb00:7100::")
        );
    }

    #[pg_test]
    fn truncate_rejects_prefixes_out_of_range_naming_the_argument() {
        assert_eq!(
            error_of("SELECT mastodon_ip_scrub.truncate('10.0.0.1', 33)").as_deref(),
            Some("mastodon_ip_scrub.truncate: ipv4_prefix must be between 0 and 32, got 33")
        );
        assert_eq!(
            error_of("SELECT mastodon_ip_scrub.truncate('10.0.0.1', -1)").as_deref(),
            Some("mastodon_ip_scrub.truncate: ipv4_prefix must be between 0 and 32, got -1")
        );
        // Checked whatever the address family, so a bad call never succeeds by luck.
        assert_eq!(
            error_of("SELECT mastodon_ip_scrub.truncate('10.0.0.1', 24, 129)").as_deref(),
            Some("mastodon_ip_scrub.truncate: ipv6_prefix must be between 0 and 128, got 129")
        );
    }

    #[pg_test]
    fn truncate_is_strict_immutable_and_parallel_safe() {
        assert_eq!(
            text("SELECT abbrev(mastodon_ip_scrub.truncate(NULL))"),
            None
        );
        assert_eq!(
            text("SELECT abbrev(mastodon_ip_scrub.truncate('10.0.0.1', NULL))"),
            None
        );
        assert_eq!(
            text(
                "SELECT format('%s %s %s', provolatile, proisstrict, proparallel) FROM pg_proc
                  WHERE oid = 'mastodon_ip_scrub.truncate(inet, int, int)'::regprocedure"
            )
            .as_deref(),
            Some("i t s")
        );
        // Usable in an index expression, which requires IMMUTABLE.
        run("CREATE TEMP TABLE t (ip inet); CREATE INDEX ON t (mastodon_ip_scrub.truncate(ip));");
    }

    #[pg_test]
    fn scrub_follows_the_current_settings() {
        assert_eq!(
            text("SELECT abbrev(mastodon_ip_scrub.scrub('198.51.100.42'))").as_deref(),
            Some("198.51.100.0")
        );
        run("SET mastodon_ip_scrub.ipv4_prefix = 16");
        assert_eq!(
            text("SELECT abbrev(mastodon_ip_scrub.scrub('198.51.100.42'))").as_deref(),
            Some("198.51.0.0")
        );
        run("SET mastodon_ip_scrub.mode = 'loopback'");
        assert_eq!(
            text("SELECT abbrev(mastodon_ip_scrub.scrub('2001:db8::1'))").as_deref(),
            Some("::1")
        );
        run("SET mastodon_ip_scrub.mode = 'null'");
        assert_eq!(
            text("SELECT abbrev(mastodon_ip_scrub.scrub('198.51.100.42'))"),
            None
        );
        run("SET mastodon_ip_scrub.enabled = off");
        // Disabled: passed through exactly, netmask included.
        assert_eq!(
            text("SELECT abbrev(mastodon_ip_scrub.scrub('198.51.100.42/20'))").as_deref(),
            Some("198.51.100.42/20")
        );
        assert_eq!(
            text(
                "SELECT provolatile::text FROM pg_proc WHERE oid = 'mastodon_ip_scrub.scrub(inet)'::regprocedure"
            )
            .as_deref(),
            Some("s")
        );
    }
}

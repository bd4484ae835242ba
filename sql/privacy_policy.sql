-- What the instance tells its users it keeps (GDPR; Mastodon issue 22977 asks to show retention).

-- A paragraph for the instance's privacy policy, from the settings in force and what is protected:
-- what is kept of each address, where, since when, and Mastodon's own retention on top
-- (`ip_retention`: Mastodon's IP_RETENTION_PERIOD, one year unless the admin changed it).
CREATE FUNCTION mastodon_ip_scrub.privacy_policy(ip_retention interval DEFAULT interval '1 year') RETURNS text
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
SET IntervalStyle = postgres
AS $$
DECLARE
    v_settings record;
    v_where    text;
    v_others   bigint;
    v_full     text;
    v_since    timestamptz;
    v_kept     text;
    v_old      bigint;
    v_v4       integer;
    v_v6       integer;
    v_result   text;
BEGIN
    SELECT * INTO v_settings FROM mastodon_ip_scrub._settings();
    SELECT string_agg(DISTINCT mastodon_ip_scrub._column_purpose(p.table_name, p.column_name), '; '),
           count(*) FILTER (WHERE mastodon_ip_scrub._column_purpose(p.table_name, p.column_name) IS NULL),
           min(p.protected_at)
      INTO v_where, v_others, v_since
      FROM mastodon_ip_scrub.protection p
      JOIN mastodon_ip_scrub.protected_columns c USING (schema_name, table_name, column_name)
     WHERE c.trigger_enabled;
    -- Mastodon's own address columns that are present and yet stored whole (unprotected or exempt).
    SELECT string_agg(DISTINCT mastodon_ip_scrub._column_purpose(m.table_name, m.column_name), '; ')
      INTO v_full
      FROM mastodon_ip_scrub._mastodon_columns() m
      JOIN pg_class c ON c.relname = m.table_name AND c.relkind IN ('r', 'p') AND NOT c.relispartition
      JOIN pg_namespace n ON n.oid = c.relnamespace
      JOIN pg_attribute a ON a.attrelid = c.oid AND a.attname = m.column_name AND a.attnum > 0 AND NOT a.attisdropped
     WHERE n.nspname NOT IN ('information_schema', 'mastodon_ip_scrub') AND n.nspname NOT LIKE 'pg\_%'
       AND NOT EXISTS (SELECT FROM mastodon_ip_scrub.protected_columns p
                        WHERE (p.schema_name, p.table_name, p.column_name) = (n.nspname, m.table_name, m.column_name)
                          AND p.trigger_enabled);
    IF v_since IS NULL OR NOT v_settings.enabled
       OR (v_settings.mode = 'truncate' AND v_settings.ipv4_prefix >= 32 AND v_settings.ipv6_prefix >= 128) THEN
        RETURN 'IP addresses: this server''s database stores the IP address you connect from in full '
            || '(when you sign up, sign in, use the web interface and use apps). '
            || format('Mastodon deletes them after %s.', ip_retention);
    END IF;
    -- Sampled on large tables, like status(): enough to tell whether a backfill has been run.
    SELECT coalesce(sum(s.unscrubbed_rows), 0) INTO v_old FROM mastodon_ip_scrub.status() s;
    v_v4 := v_settings.ipv4_prefix;
    v_v6 := v_settings.ipv6_prefix;
    v_kept := CASE v_settings.mode
        WHEN 'null' THEN 'It does not store the address itself: nothing is kept of it.'
        WHEN 'loopback' THEN 'It does not store the address itself: a placeholder (127.0.0.1 or ::1) is kept in its place.'
        ELSE format('It stores only the beginning of each address, the network it belongs to: of an IPv4 address the first %s bits '
                    '(%s is stored as %s, a range %s), of an IPv6 address the first %s bits (%s is stored as %s, %s).',
                    v_v4, '203.0.113.77', host(mastodon_ip_scrub.scrub('203.0.113.77')),
                    CASE WHEN v_v4 >= 32 THEN 'of one address: the whole address is kept'
                         ELSE format('shared by up to %s addresses', to_char(2::numeric ^ (32 - v_v4), 'FM999,999,999,999')) END,
                    v_v6, '2001:db8:1234:5678::1', host(mastodon_ip_scrub.scrub('2001:db8:1234:5678::1')),
                    CASE WHEN v_v6 >= 128 THEN 'the whole address'
                         WHEN v_v6 >= 64 THEN 'which usually identifies a single home or office network'
                         WHEN v_v6 >= 48 THEN 'a range an internet provider often gives to a single customer, so it may identify one household'
                         ELSE 'a range an internet provider shares among many customers' END)
    END;
    v_result := format('IP addresses: when you use this server, its database records the IP address you connect from: %s%s. ',
                       coalesce(v_where, 'in tables of the administrator''s choosing'),
                       CASE WHEN v_where IS NOT NULL AND v_others > 0 THEN ', and in some of the administrator''s own records' ELSE '' END)
        || v_kept
        || CASE WHEN v_full IS NOT NULL THEN format(' It also records %s, and keeps that address whole.', v_full) ELSE '' END
        || format(' %s full address is never written to the database; this has been so since %s',
                  CASE WHEN v_full IS NOT NULL THEN 'Apart from that, the' ELSE 'The' END, to_char(v_since, 'FMMonth FMDD, YYYY'))
        || CASE WHEN v_old = 0 THEN ', and addresses recorded before then have been shortened the same way. '
                ELSE ', but some addresses recorded before then still keep more than that, until they are shortened or deleted. ' END
        || format('Mastodon deletes these records after %s. ', ip_retention)
        || 'This does not cover copies outside the database: the web server''s logs, and backups made before that date, until they expire.';
    RETURN v_result;
END
$$;
COMMENT ON FUNCTION mastodon_ip_scrub.privacy_policy(interval) IS
    'A paragraph for the instance''s privacy policy: what is kept of each IP address, where, since when, and Mastodon''s retention (IP_RETENTION_PERIOD, default 1 year).';

-- The database of the pgbench write mix: Mastodon's schema, :users users (each with an account, a
-- web session, an API token and a past sign-in), and the addresses requests come from. Loaded
-- after CREATE EXTENSION where the extension is measured, so there the stored addresses are scrubbed.
\ir ../../pgrx-tests/fixtures/mastodon_schema.sql

-- The address user :uid usually comes from: IPv4 for three users in four, IPv6 for the fourth.
CREATE FUNCTION home_address(uid bigint) RETURNS inet LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT CASE WHEN uid % 4 = 0 THEN '2001:db8::'::inet + uid * 65537 * 65536
                ELSE '0.0.0.0'::inet + (uid * 2654435761 % 4294967296) END
$$;
-- Where a request of user :uid comes from, for a request whose address differs from the last one
-- (the only requests on which Mastodon writes the session): five times in six another host of the
-- same network (a phone's changing address), once in six another network. :r is random.
CREATE FUNCTION request_address(uid bigint, r bigint) RETURNS inet LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT CASE WHEN r % 6 = 0 THEN home_address(r)
                ELSE set_masklen(network(set_masklen(home_address(uid), CASE family(home_address(uid)) WHEN 4 THEN 24 ELSE 48 END)),
                                 CASE family(home_address(uid)) WHEN 4 THEN 32 ELSE 128 END) + (r % 250 + 1) END
$$;

INSERT INTO accounts (id, username, created_at, updated_at)
SELECT i, 'user' || i, now(), now() FROM generate_series(1, :users) AS i;
INSERT INTO users (id, email, created_at, updated_at, encrypted_password, current_sign_in_at, confirmed_at,
                   locale, account_id, sign_up_ip)
SELECT i, 'user' || i || '@example.com', now(), now(), '$2a$10$' || md5(i::text) || 'abcdefghijklmnopqrstu',
       now(), now(), 'en', i, home_address(i)
  FROM generate_series(1, :users) AS i;
INSERT INTO session_activations (id, session_id, created_at, updated_at, user_agent, ip, user_id)
SELECT i, md5('session' || i), now(), now(), 'Mozilla/5.0 (X11; Linux x86_64; rv:145.0) Gecko/20100101 Firefox/145.0',
       home_address(i), i
  FROM generate_series(1, :users) AS i;
INSERT INTO oauth_access_tokens (id, token, created_at, scopes, application_id, resource_owner_id, last_used_at, last_used_ip)
SELECT i, md5('token' || i), now(), 'read write follow', 1, i, now(), home_address(i)
  FROM generate_series(1, :users) AS i;
INSERT INTO login_activities (user_id, authentication_method, success, ip, user_agent, created_at)
SELECT i, 'password', true, home_address(i), 'Mozilla/5.0 (X11; Linux x86_64; rv:145.0) Gecko/20100101 Firefox/145.0', now()
  FROM generate_series(1, :users) AS i;
SELECT setval(pg_get_serial_sequence(t, 'id'), :users) FROM unnest(ARRAY['accounts', 'users', 'session_activations', 'oauth_access_tokens']) AS t;
VACUUM ANALYZE;

-- The SQL Mastodon (Rails / ActiveRecord, extended protocol) sends on sign-up, sign-in, session
-- refresh and API token use, replayed as Mastodon's own role. Parameters arrive as bound values,
-- exactly as here with PREPARE/EXECUTE.
\c - mastodon

-- Sign-up (Auth::RegistrationsController#create / POST /api/v1/accounts)
PREPARE create_account AS
  INSERT INTO "accounts" ("username", "created_at", "updated_at") VALUES ($1, $2, $3) RETURNING "id";
PREPARE create_user AS
  INSERT INTO "users" ("email", "created_at", "updated_at", "encrypted_password", "locale", "account_id",
                       "approved", "sign_up_ip", "settings", "time_zone")
  VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) RETURNING "id";
EXECUTE create_account('carol', '2025-11-20 10:00:00', '2025-11-20 10:00:00');
EXECUTE create_user('carol@example.org', '2025-11-20 10:00:00', '2025-11-20 10:00:00', '$2a$10$x', 'en',
                    currval('accounts_id_seq'), true, '2001:db8:ca:fe:1:2:3:4', NULL, 'Europe/Berlin');

-- Sign-in: Devise's session activation and the login activity record
PREPARE activate_session AS
  INSERT INTO "session_activations" ("session_id", "created_at", "updated_at", "user_agent", "ip",
                                     "access_token_id", "user_id")
  VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING "id";
PREPARE log_login AS
  INSERT INTO "login_activities" ("user_id", "authentication_method", "provider", "success",
                                  "failure_reason", "ip", "user_agent", "created_at")
  VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING "id";
PREPARE track_sign_in AS
  UPDATE "users" SET "current_sign_in_at" = $1, "updated_at" = $2 WHERE "users"."id" = $3;
EXECUTE activate_session('4a1f9e', '2025-11-20 10:01:00', '2025-11-20 10:01:00', 'Mozilla/5.0', '198.51.100.201',
                         NULL, currval('users_id_seq'));
EXECUTE log_login(currval('users_id_seq'), 'password', NULL, true, NULL, '198.51.100.201', 'Mozilla/5.0',
                  '2025-11-20 10:01:00');
EXECUTE log_login(currval('users_id_seq'), 'otp', NULL, false, 'invalid', '::ffff:203.0.113.44', 'curl/8.0',
                  '2025-11-20 10:02:00');
EXECUTE track_sign_in('2025-11-20 10:01:00', '2025-11-20 10:01:00', currval('users_id_seq'));

-- Every authenticated web request: Devise's after_fetch hook rewrites the session IP when it differs.
PREPARE refresh_session AS
  UPDATE "session_activations" SET "ip" = $1, "updated_at" = $2 WHERE "session_activations"."id" = $3;
EXECUTE refresh_session('198.51.100.77', '2025-11-20 10:05:00', currval('session_activations_id_seq'));

-- API token use (at most once a day per token)
PREPARE create_token AS
  INSERT INTO "oauth_access_tokens" ("token", "created_at", "scopes", "resource_owner_id") VALUES ($1, $2, $3, $4)
  RETURNING "id";
PREPARE use_token AS
  UPDATE "oauth_access_tokens" SET "last_used_at" = $1, "last_used_ip" = $2 WHERE "oauth_access_tokens"."id" = $3;
EXECUTE create_token('c0ffee', '2025-11-20 10:00:00', 'read write', currval('users_id_seq'));
EXECUTE use_token('2025-11-20 11:00:00', '2001:db8:ca:fe:99::1', currval('oauth_access_tokens_id_seq'));

-- What the database now holds for carol.
SELECT sign_up_ip FROM users WHERE email = 'carol@example.org';
SELECT session_id, ip FROM session_activations ORDER BY id;
SELECT authentication_method, success, ip FROM login_activities WHERE user_id = currval('users_id_seq') ORDER BY id;
SELECT token, last_used_ip FROM oauth_access_tokens;

-- Mastodon's reads keep working at the kept prefix: admin IP search by range, and the
-- SuspiciousSignInDetector's "seen before" test (request IP masked to /16).
SELECT user_id, ip FROM user_ips WHERE ip <<= '198.51.100.0/24' ORDER BY 1, 2;
SELECT EXISTS (SELECT 1 FROM user_ips WHERE user_id = currval('users_id_seq')
                                     AND ip <<= network(set_masklen('198.51.100.150'::inet, 16))) AS seen_before;

-- Mastodon's daily IP retention job still runs as before.
UPDATE session_activations SET ip = NULL WHERE updated_at < '2025-11-20 10:10:00';
UPDATE users SET sign_up_ip = NULL WHERE current_sign_in_at < '2025-11-20 10:10:00';
SELECT count(*) FILTER (WHERE ip IS NOT NULL) AS session_ips_left FROM session_activations;

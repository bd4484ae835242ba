-- A password sign-in: the user's sign-in time, the login activity and the new web session.
\set uid random(1, :users)
\set r random(1, 1000000000)
BEGIN;
UPDATE users SET current_sign_in_at = now(), updated_at = now() WHERE id = :uid;
INSERT INTO login_activities (user_id, authentication_method, provider, success, failure_reason, ip, user_agent, created_at)
VALUES (:uid, 'password', NULL, true, NULL, request_address(:uid, :r), 'Mozilla/5.0 (X11; Linux x86_64; rv:145.0) Gecko/20100101 Firefox/145.0', now());
INSERT INTO session_activations (session_id, created_at, updated_at, user_agent, ip, user_id)
VALUES (md5(:uid || '-' || :r || '-' || clock_timestamp()), now(), now(), 'Mozilla/5.0 (X11; Linux x86_64; rv:145.0) Gecko/20100101 Firefox/145.0',
        request_address(:uid, :r), :uid);
COMMIT;

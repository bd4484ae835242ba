-- Registration: the account, then the user with the address it signed up from, in one transaction.
\set r random(1, 1000000000)
BEGIN;
INSERT INTO accounts (username, created_at, updated_at) VALUES ('new' || :r, now(), now()) RETURNING id AS account_id \gset
INSERT INTO users (email, created_at, updated_at, encrypted_password, locale, account_id, sign_up_ip)
VALUES ('new' || :account_id || '@example.com', now(), now(), '$2a$10$abcdefghijklmnopqrstuvwxyz0123456789abcdefghijklmnopq',
        'en', :account_id, home_address(:r));
COMMIT;

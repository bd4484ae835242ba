-- CREATE EXTENSION on an existing Mastodon database protects every user-IP column at once.
-- Existing rows are not rewritten here: a multi-million-row UPDATE does not belong in one DDL
-- transaction.
SELECT mastodon_ip_scrub.protect_mastodon();

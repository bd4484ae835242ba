-- An API token used from an address (Mastodon records it at most once a day per token).
\set uid random(1, :users)
\set r random(1, 1000000000)
UPDATE oauth_access_tokens SET last_used_at = now(), last_used_ip = request_address(:uid, :r) WHERE id = :uid;

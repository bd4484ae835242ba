-- A web request from another address than the session's stored one: Devise's
-- session.update(ip: request.remote_ip), with the address as a bound parameter as Rails sends it.
-- (pgbench -M prepared binds :address as a parameter.)
\set uid random(1, :users)
\set r random(1, 1000000000)
SELECT request_address(:uid, :r) AS address \gset
UPDATE session_activations SET ip = :address, updated_at = now() WHERE id = :uid;

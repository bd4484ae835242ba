-- Mastodon's per-request session write, replayed (see session_requests.sh).
-- psql -v sessions=N -v requests=M, in a database holding the Mastodon-shaped schema.

-- The request log: each session has a current address, which before a request may move to
-- another host of the same network (a new DHCP lease, a new IPv6 privacy address: 1 request in
-- 20) or to another network (roaming: 1 in 100). A fixed seed makes every configuration replay
-- exactly the same requests.
CREATE FUNCTION generate_requests(sessions integer, requests integer) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    v_ip   inet[];
    v_s    integer;
    v_roll float8;
BEGIN
    PERFORM setseed(0.42);
    v_ip := ARRAY(SELECT CASE WHEN s % 4 = 0 THEN format('2001:db8:%s:%s::%s', to_hex(s), to_hex(s % 7), to_hex(s))::inet
                              ELSE '0.0.0.0'::inet + (s::bigint * 2654435761 % 4294967296) END
                    FROM generate_series(1, sessions) s);
    INSERT INTO session_activations (id, session_id, user_agent, ip, user_id, created_at, updated_at)
    SELECT s, md5(s::text), 'Firefox', v_ip[s], 1, now(), now() FROM generate_series(1, sessions) s;
    FOR i IN 1 .. requests LOOP
        v_s := 1 + floor(random() * sessions)::integer;
        v_roll := random();
        IF v_roll < 0.01 THEN
            v_ip[v_s] := CASE family(v_ip[v_s])
                             WHEN 4 THEN '0.0.0.0'::inet + floor(random() * 4294967296)::bigint
                             ELSE format('2001:db8:%s::%s', to_hex(floor(random() * 65536)::integer),
                                         to_hex(floor(random() * 65536)::integer))::inet END;
        ELSIF v_roll < 0.06 THEN
            v_ip[v_s] := CASE family(v_ip[v_s])
                             WHEN 4 THEN set_masklen(network(set_masklen(v_ip[v_s], 24)), 32) + floor(random() * 256)::bigint
                             ELSE set_masklen(network(set_masklen(v_ip[v_s], 64)), 128) + floor(random() * 4294967296)::bigint END;
        END IF;
        INSERT INTO requests VALUES (i, v_s, v_ip[v_s]);
    END LOOP;
END
$$;
CREATE TABLE requests (n integer PRIMARY KEY, session_id bigint NOT NULL, ip inet NOT NULL);
INSERT INTO accounts (id, username, created_at, updated_at) VALUES (1, 'alice', now(), now());
INSERT INTO users (id, email, created_at, updated_at, account_id) VALUES (1, 'alice@example.org', now(), now(), 1);
SELECT generate_requests(:sessions, :requests);

-- What Devise's after_fetch hook does on each request, each request its own transaction:
-- `session.update(ip: request.remote_ip) if session.ip != request.remote_ip`, through a prepared
-- statement as Rails sends it.
CREATE PROCEDURE replay() LANGUAGE plpgsql AS $$
DECLARE
    r        record;
    v_stored inet;
    v_issued integer := 0;
BEGIN
    FOR r IN SELECT * FROM requests ORDER BY n LOOP
        SELECT ip INTO v_stored FROM session_activations WHERE id = r.session_id;
        IF v_stored IS DISTINCT FROM r.ip THEN
            UPDATE session_activations SET ip = r.ip, updated_at = now() WHERE id = r.session_id;
            v_issued := v_issued + 1;
        END IF;
        COMMIT;
    END LOOP;
    RAISE NOTICE 'issued % UPDATEs', v_issued;
END
$$;
VACUUM ANALYZE session_activations;

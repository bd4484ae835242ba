# The pgbench write mix (bench/write_mix/*.sql, same statements, weights and addresses) as a
# script for a single-user backend, which has no pgbench: n transactions, from a fixed seed so
# that every database replays the same ones. awk -v n=N -v users=U -f replay.awk
BEGIN {
    srand(1)
    print "PREPARE sign_up(bigint, bigint) AS INSERT INTO users (email, created_at, updated_at, encrypted_password, locale, account_id, sign_up_ip) VALUES ('new' || $1 || '@example.com', now(), now(), '$2a$10$abcdefghijklmnopqrstuvwxyz0123456789abcdefghijklmnopq', 'en', $1, home_address($2));"
    print "PREPARE sign_in_user(bigint) AS UPDATE users SET current_sign_in_at = now(), updated_at = now() WHERE id = $1;"
    print "PREPARE sign_in_login(bigint, bigint) AS INSERT INTO login_activities (user_id, authentication_method, provider, success, failure_reason, ip, user_agent, created_at) VALUES ($1, 'password', NULL, true, NULL, request_address($1, $2), 'Mozilla/5.0 (X11; Linux x86_64; rv:145.0) Gecko/20100101 Firefox/145.0', now());"
    print "PREPARE sign_in_session(bigint, bigint) AS INSERT INTO session_activations (session_id, created_at, updated_at, user_agent, ip, user_id) VALUES (md5($1 || '-' || $2 || '-' || clock_timestamp()), now(), now(), 'Mozilla/5.0 (X11; Linux x86_64; rv:145.0) Gecko/20100101 Firefox/145.0', request_address($1, $2), $1);"
    print "PREPARE token_use(bigint, bigint) AS UPDATE oauth_access_tokens SET last_used_at = now(), last_used_ip = request_address($1, $2) WHERE id = $1;"
    print "PREPARE request_address(bigint, bigint) AS SELECT request_address($1, $2);"
    print "PREPARE session_request(inet, bigint) AS UPDATE session_activations SET ip = $1, updated_at = now() WHERE id = $2;"
    for (i = 1; i <= n; i++) {
        uid = int(rand() * users) + 1
        r = int(rand() * 1000000000) + 1
        w = rand() * 100
        if (w < 5) {
            account = 100000000 + i
            print "BEGIN;"
            print "INSERT INTO accounts (id, username, created_at, updated_at) VALUES (" account ", 'new" r "', now(), now());"
            print "EXECUTE sign_up(" account ", " r ");"
            print "COMMIT;"
        } else if (w < 20) {
            print "BEGIN;"
            print "EXECUTE sign_in_user(" uid ");"
            print "EXECUTE sign_in_login(" uid ", " r ");"
            print "EXECUTE sign_in_session(" uid ", " r ");"
            print "COMMIT;"
        } else if (w < 50) {
            print "EXECUTE token_use(" uid ", " r ");"
        } else {
            print "EXECUTE request_address(" uid ", " r ");"
            print "EXECUTE session_request(request_address(" uid ", " r "), " uid ");"
        }
    }
}

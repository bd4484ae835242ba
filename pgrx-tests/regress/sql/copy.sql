-- COPY FROM STDIN, as a restore or an import by Mastodon's role would send it.
\c - mastodon
COPY login_activities (user_id, authentication_method, success, ip, user_agent, created_at) FROM STDIN;
1	password	t	203.0.113.201	Firefox	2025-11-20 12:00:00
1	password	f	2001:db8:77:88:99::1	Firefox	2025-11-20 12:01:00
1	webauthn	t	::ffff:198.51.100.7	Safari	2025-11-20 12:02:00
1	password	t	\N	Safari	2025-11-20 12:03:00
\.
SELECT authentication_method, success, ip FROM login_activities WHERE created_at BETWEEN '2025-11-20 12:00' AND '2025-11-20 13:00' ORDER BY created_at;
COPY session_activations (session_id, user_agent, ip, user_id, created_at, updated_at) FROM STDIN WITH (FORMAT csv);
copy1,Firefox,192.0.2.99,1,2025-11-20 12:00:00,2025-11-20 12:00:00
copy2,Firefox,10.20.30.40/8,1,2025-11-20 12:00:00,2025-11-20 12:00:00
\.
SELECT session_id, ip FROM session_activations WHERE session_id LIKE 'copy%' ORDER BY 1;

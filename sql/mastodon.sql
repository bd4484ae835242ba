-- What the extension knows of Mastodon: the columns in which it stores users' IP addresses (see
-- "What is protected" in docs/reference.md), which of them a table has that are not exempt, and
-- how a user would name what each records. protect_mastodon() (sql/protect.sql) protects them.

-- Every column in which Mastodon stores a user's IP address, current and historical
-- (see "What is protected" in docs/reference.md). Never ip_blocks.ip: those are admin-entered block ranges.
CREATE FUNCTION mastodon_ip_scrub._mastodon_columns(OUT table_name name, OUT column_name name)
RETURNS SETOF record
LANGUAGE sql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
    VALUES ('users'::name, 'sign_up_ip'::name),
           ('users', 'current_sign_in_ip'),
           ('users', 'last_sign_in_ip'),
           ('session_activations', 'ip'),
           ('login_activities', 'ip'),
           ('oauth_access_tokens', 'last_used_ip')
$$;

-- The Mastodon user-IP column names for `tbl`'s name that are not exempt there.
CREATE FUNCTION mastodon_ip_scrub._known_columns(tbl regclass) RETURNS SETOF name
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT m.column_name
      FROM mastodon_ip_scrub._table_key(tbl) k
      JOIN mastodon_ip_scrub._mastodon_columns() m ON m.table_name = k.table_name
     WHERE NOT EXISTS (SELECT FROM mastodon_ip_scrub.exemption e
                        WHERE (e.schema_name, e.table_name, e.column_name) = (k.schema_name, k.table_name, m.column_name))
$$;

-- How a Mastodon user would name what a protected column records; NULL for a column of the admin's.
CREATE FUNCTION mastodon_ip_scrub._column_purpose(table_name name, column_name name) RETURNS text
LANGUAGE sql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT CASE table_name::text || '.' || column_name::text
        WHEN 'users.sign_up_ip' THEN 'the address you signed up from'
        WHEN 'users.current_sign_in_ip' THEN 'the address of your latest sign-in'
        WHEN 'users.last_sign_in_ip' THEN 'the address of your sign-in before that'
        WHEN 'session_activations.ip' THEN 'the address each signed-in browser session was last used from'
        WHEN 'login_activities.ip' THEN 'the address of each sign-in and each failed second-factor attempt'
        WHEN 'oauth_access_tokens.last_used_ip' THEN 'the address an app last used your access token from'
    END
$$;

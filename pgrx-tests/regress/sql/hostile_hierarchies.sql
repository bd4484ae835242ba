-- Hostile role, class "hierarchies": a protected table keeps all of its protection as a partition
-- of a root of the role's, or as an inheritance child; tables that inherit from a protected table
-- are protected as partitions are; rules, views and foreign tables cannot take Mastodon's writes
-- or reads away from a protected table.
\set SHOW_CONTEXT never
\c - mastodon
\set SHOW_CONTEXT never
CREATE SCHEMA h;
CREATE TABLE h.login_activities (id bigint, user_id bigint, ip inet);   -- protected: a Mastodon name

-- Under a partitioned root of the role's: the table's trigger cannot be dropped, disabled or
-- replaced through either name; detached again, it is still protected on its own.
CREATE TABLE h.evil_root (id bigint, user_id bigint, ip inet) PARTITION BY RANGE (id);
ALTER TABLE h.evil_root ATTACH PARTITION h.login_activities FOR VALUES FROM (0) TO (1000);
DROP TRIGGER zz_mastodon_ip_scrub ON h.login_activities;
DROP TRIGGER zz_mastodon_ip_scrub ON h.evil_root;
ALTER TABLE h.login_activities DISABLE TRIGGER zz_mastodon_ip_scrub;
ALTER TABLE h.evil_root DISABLE TRIGGER USER;
SELECT tgrelid::regclass AS "table", tgenabled FROM pg_trigger
 WHERE tgname = 'zz_mastodon_ip_scrub' AND tgrelid IN ('h.login_activities'::regclass, 'h.evil_root'::regclass) ORDER BY 1;
INSERT INTO h.evil_root VALUES (1, 1, '203.0.113.31');
INSERT INTO h.login_activities VALUES (2, 1, '203.0.113.32');
ALTER TABLE h.evil_root DETACH PARTITION h.login_activities;
INSERT INTO h.login_activities VALUES (3, 1, '203.0.113.33');
SELECT id, ip FROM h.login_activities ORDER BY id;
DROP TRIGGER zz_mastodon_ip_scrub ON h.login_activities;

-- Made an inheritance child of a table of the role's: the same.
CREATE TABLE h.evil_parent (id bigint, user_id bigint, ip inet);
ALTER TABLE h.login_activities INHERIT h.evil_parent;
DROP TRIGGER zz_mastodon_ip_scrub ON h.login_activities;
INSERT INTO h.login_activities VALUES (4, 1, '203.0.113.34') RETURNING ip;
ALTER TABLE h.login_activities NO INHERIT h.evil_parent;

-- Tables that inherit from a protected table are protected as its partitions are, also when the
-- child has columns of its own, and also a grandchild; a row written to any of them is scrubbed,
-- and none of their triggers can be dropped.
CREATE TABLE h.login_child (note text) INHERITS (h.login_activities);
CREATE TABLE h.login_grandchild () INHERITS (h.login_child);
INSERT INTO h.login_child VALUES (5, 1, '203.0.113.35', 'child');
INSERT INTO h.login_grandchild VALUES (6, 1, '2001:db8:ab:cd::6', 'grandchild');
SELECT tableoid::regclass AS "table", id, ip FROM h.login_activities ORDER BY id;
DROP TRIGGER zz_mastodon_ip_scrub ON h.login_grandchild;
-- Leaving the hierarchy, a child leaves its parent's protection behind.
ALTER TABLE h.login_grandchild NO INHERIT h.login_child;
SELECT count(*) AS scrub_triggers FROM pg_trigger WHERE tgrelid = 'h.login_grandchild'::regclass;

-- Rules: refused on a protected table, on its partitions and on its children, whatever they do.
CREATE TABLE h.sink (ip inet);
CREATE RULE away AS ON INSERT TO h.login_activities DO INSTEAD INSERT INTO h.sink VALUES (NEW.ip);
CREATE RULE copy AS ON INSERT TO h.login_activities DO ALSO INSERT INTO h.sink VALUES (NEW.ip);
CREATE RULE away AS ON UPDATE TO h.login_child DO INSTEAD NOTHING;
CREATE TABLE h.session_activations (id bigint, ip inet) PARTITION BY RANGE (id);
CREATE TABLE h.session_activations_1 PARTITION OF h.session_activations FOR VALUES FROM (0) TO (100);
CREATE RULE away AS ON INSERT TO h.session_activations_1 DO INSTEAD NOTHING;
-- A rule made before the table was protected stays, with a WARNING and a line in audit().
CREATE TABLE h.reports (id bigint, reporter_ip inet);
CREATE RULE copy AS ON INSERT TO h.reports DO ALSO INSERT INTO h.sink VALUES (NEW.reporter_ip);
\c - postgres
SELECT mastodon_ip_scrub.protect('h.reports', 'reporter_ip');
SELECT table_name, column_name, data_type, suggestion FROM mastodon_ip_scrub.audit() WHERE schema_name = 'h' ORDER BY 1, 3;
-- A table renamed to a protected name brings no rule along either.
\c - mastodon
\set SHOW_CONTEXT never
DROP RULE copy ON h.reports;
CREATE TABLE h.oauth_staging (id bigint, last_used_ip inet);
CREATE RULE away AS ON INSERT TO h.oauth_staging DO INSTEAD NOTHING;
ALTER TABLE h.oauth_staging RENAME TO oauth_access_tokens;

-- Views, materialized views and foreign tables cannot take a protected table's name: Mastodon
-- would write through them into a table the extension does not protect, and read it back.
DROP TABLE h.login_grandchild, h.login_child;
ALTER TABLE h.login_activities RENAME TO logins_old;
CREATE VIEW h.login_activities AS SELECT * FROM h.sink;
CREATE MATERIALIZED VIEW h.login_activities AS SELECT * FROM h.sink;
CREATE VIEW h.v AS SELECT * FROM h.sink;
ALTER VIEW h.v RENAME TO login_activities;
\c - postgres
CREATE FOREIGN DATA WRAPPER nowhere;
CREATE SERVER nowhere FOREIGN DATA WRAPPER nowhere;
GRANT USAGE ON FOREIGN SERVER nowhere TO mastodon;
\c - mastodon
\set SHOW_CONTEXT never
CREATE FOREIGN TABLE h.login_activities (id bigint, ip inet) SERVER nowhere;
-- Nor be partitions of one: their rows would stay on the other server, unscrubbed.
CREATE FOREIGN TABLE h.sessions_remote PARTITION OF h.session_activations FOR VALUES FROM (100) TO (200) SERVER nowhere;
CREATE FOREIGN TABLE h.sessions_remote (id bigint, ip inet) SERVER nowhere;
ALTER TABLE h.session_activations ATTACH PARTITION h.sessions_remote FOR VALUES FROM (100) TO (200);
ALTER TABLE h.logins_old RENAME TO login_activities;

\c - postgres
SELECT table_name, column_name, column_present, trigger_enabled FROM mastodon_ip_scrub.protected_columns
 WHERE schema_name = 'h' ORDER BY 1, 2;
SELECT count(*) AS full_addresses FROM h.login_activities WHERE mastodon_ip_scrub._pending(ip);
SELECT mastodon_ip_scrub.unprotect('h.reports', 'reporter_ip');
DROP SCHEMA h CASCADE;
DROP SERVER nowhere CASCADE;
DROP FOREIGN DATA WRAPPER nowhere;
DELETE FROM mastodon_ip_scrub.protection WHERE schema_name = 'h';

-- Every catalog fact about the installed mastodon_ip_scrub, one line per fact, in a stable order and
-- free of OIDs: two databases print the same lines exactly when the extension is the same in both.
-- upgrade.sh compares a database upgraded from an older release with a fresh install this way.
-- Covers each member object (whatever its kind, by pg_describe_object) and, per kind, what
-- defines it: functions and procedures (whole definition, comment, grants), tables (columns,
-- constraints, indexes, triggers, policies, grants, comment), views (definition, grants),
-- event triggers (event, tags, function, enabled state), the schema (owner's rights, grants),
-- the configuration-dump registration, initial privileges, and the scrub triggers on the
-- application's tables.
\pset format unaligned
\pset tuples_only on
\pset footer off

WITH ext AS (
    SELECT e.oid, e.extnamespace FROM pg_catalog.pg_extension e WHERE e.extname = 'mastodon_ip_scrub'
), member AS (
    SELECT d.classid, d.objid
      FROM pg_catalog.pg_depend d, ext
     WHERE d.refclassid = 'pg_catalog.pg_extension'::regclass AND d.refobjid = ext.oid AND d.deptype = 'e'
), facts(fact) AS (
    -- Every member, whatever its kind.
    SELECT 'member ' || pg_catalog.pg_describe_object(m.classid, m.objid, 0) FROM member m
    UNION ALL
    -- Functions and procedures: the definition as pg_dump would write it, which carries the
    -- arguments with their defaults, result, language, volatility, strictness, security,
    -- parallel safety, cost, rows, SET clauses and the source (or C symbol and library).
    SELECT 'function ' || p.oid::regprocedure || E'\n' || pg_catalog.pg_get_functiondef(p.oid)
      FROM member m JOIN pg_catalog.pg_proc p ON m.classid = 'pg_catalog.pg_proc'::regclass AND p.oid = m.objid
    UNION ALL
    SELECT 'function ' || p.oid::regprocedure || ' grant ' || coalesce(
               (SELECT string_agg(format('%s:%s:%s', CASE WHEN x.grantee = 0 THEN 'PUBLIC' ELSE x.grantee::regrole::text END, x.privilege_type, x.is_grantable), ' ' ORDER BY 1)
                  FROM pg_catalog.aclexplode(p.proacl) x), 'default')
      FROM member m JOIN pg_catalog.pg_proc p ON m.classid = 'pg_catalog.pg_proc'::regclass AND p.oid = m.objid
    UNION ALL
    SELECT 'function ' || p.oid::regprocedure || ' comment ' || coalesce(pg_catalog.obj_description(p.oid, 'pg_proc'), '(none)')
      FROM member m JOIN pg_catalog.pg_proc p ON m.classid = 'pg_catalog.pg_proc'::regclass AND p.oid = m.objid
    UNION ALL
    -- Relations: kind, persistence, row security, options, grants, comment.
    SELECT format('relation %s kind %s persistence %s rls %s/%s options %s comment %s', c.oid::regclass,
                  c.relkind, c.relpersistence, c.relrowsecurity, c.relforcerowsecurity,
                  coalesce(c.reloptions::text, '-'), coalesce(pg_catalog.obj_description(c.oid, 'pg_class'), '(none)'))
      FROM member m JOIN pg_catalog.pg_class c ON m.classid = 'pg_catalog.pg_class'::regclass AND c.oid = m.objid
    UNION ALL
    SELECT 'relation ' || c.oid::regclass || ' grant ' || coalesce(
               (SELECT string_agg(format('%s:%s:%s', CASE WHEN x.grantee = 0 THEN 'PUBLIC' ELSE x.grantee::regrole::text END, x.privilege_type, x.is_grantable), ' ' ORDER BY 1)
                  FROM pg_catalog.aclexplode(c.relacl) x), 'default')
      FROM member m JOIN pg_catalog.pg_class c ON m.classid = 'pg_catalog.pg_class'::regclass AND c.oid = m.objid
    UNION ALL
    SELECT format('relation %s column %s %s %s notnull=%s default=%s identity=%s generated=%s collation=%s comment=%s',
                  c.oid::regclass, a.attnum, a.attname, pg_catalog.format_type(a.atttypid, a.atttypmod),
                  a.attnotnull, coalesce(pg_catalog.pg_get_expr(ad.adbin, ad.adrelid), '-'), a.attidentity,
                  a.attgenerated, coalesce(a.attcollation::regcollation::text, '-'),
                  coalesce(pg_catalog.col_description(c.oid, a.attnum), '(none)'))
      FROM member m JOIN pg_catalog.pg_class c ON m.classid = 'pg_catalog.pg_class'::regclass AND c.oid = m.objid
      JOIN pg_catalog.pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
      LEFT JOIN pg_catalog.pg_attrdef ad ON ad.adrelid = c.oid AND ad.adnum = a.attnum
    UNION ALL
    SELECT format('relation %s constraint %s %s', con.conrelid::regclass, con.conname, pg_catalog.pg_get_constraintdef(con.oid))
      FROM member m JOIN pg_catalog.pg_constraint con ON m.classid = 'pg_catalog.pg_class'::regclass AND con.conrelid = m.objid
    UNION ALL
    SELECT format('relation %s index %s', i.indrelid::regclass, pg_catalog.pg_get_indexdef(i.indexrelid))
      FROM member m JOIN pg_catalog.pg_index i ON m.classid = 'pg_catalog.pg_class'::regclass AND i.indrelid = m.objid
    UNION ALL
    SELECT format('relation %s trigger %s enabled %s', t.tgrelid::regclass, pg_catalog.pg_get_triggerdef(t.oid), t.tgenabled)
      FROM member m JOIN pg_catalog.pg_trigger t ON m.classid = 'pg_catalog.pg_class'::regclass AND t.tgrelid = m.objid
    UNION ALL
    SELECT format('relation %s policy %s %s %s %s', pol.polrelid::regclass, pol.polname, pol.polcmd,
                  pg_catalog.pg_get_expr(pol.polqual, pol.polrelid), pg_catalog.pg_get_expr(pol.polwithcheck, pol.polrelid))
      FROM member m JOIN pg_catalog.pg_policy pol ON m.classid = 'pg_catalog.pg_class'::regclass AND pol.polrelid = m.objid
    UNION ALL
    SELECT format('relation %s rule %s', r.ev_class::regclass, pg_catalog.pg_get_ruledef(r.oid))
      FROM member m JOIN pg_catalog.pg_rewrite r ON m.classid = 'pg_catalog.pg_class'::regclass AND r.ev_class = m.objid
    UNION ALL
    -- Event triggers.
    SELECT format('event trigger %s on %s tags %s function %s enabled %s', e.evtname, e.evtevent,
                  coalesce((SELECT string_agg(t, ', ' ORDER BY t) FROM unnest(e.evttags) t), '(all)'),
                  e.evtfoid::regprocedure, e.evtenabled)
      FROM member m JOIN pg_catalog.pg_event_trigger e ON m.classid = 'pg_catalog.pg_event_trigger'::regclass AND e.oid = m.objid
    UNION ALL
    -- Types other than the row types of member relations.
    SELECT format('type %s kind %s', t.oid::regtype, t.typtype)
      FROM member m JOIN pg_catalog.pg_type t ON m.classid = 'pg_catalog.pg_type'::regclass AND t.oid = m.objid
    UNION ALL
    -- The schema and the extension itself.
    SELECT format('schema %s owner-is-superuser %s grant %s', n.nspname, r.rolsuper, coalesce(
               (SELECT string_agg(format('%s:%s:%s', CASE WHEN x.grantee = n.nspowner THEN 'owner' WHEN x.grantee = 0 THEN 'PUBLIC' ELSE x.grantee::regrole::text END,
                                         x.privilege_type, x.is_grantable), ' ' ORDER BY 1)
                  FROM pg_catalog.aclexplode(n.nspacl) x), 'default'))
      FROM ext JOIN pg_catalog.pg_namespace n ON n.oid = ext.extnamespace JOIN pg_catalog.pg_roles r ON r.oid = n.nspowner
    UNION ALL
    SELECT format('extension relocatable %s config %s', e.extrelocatable, coalesce(
               (SELECT string_agg(format('%s %L', c::regclass, w), ', ' ORDER BY c::regclass::text)
                  FROM unnest(e.extconfig, e.extcondition) AS x (c, w)), '(none)'))
      FROM ext JOIN pg_catalog.pg_extension e ON e.oid = ext.oid
    UNION ALL
    -- The privileges pg_dump treats as the extension's own (recorded by its scripts).
    SELECT format('initial privileges %s %s %s', pg_catalog.pg_describe_object(ip.classoid, ip.objoid, ip.objsubid),
                  ip.privtype, (SELECT string_agg(format('%s:%s:%s',
                                    CASE WHEN x.grantee = 0 THEN 'PUBLIC' ELSE x.grantee::regrole::text END,
                                    x.privilege_type, x.is_grantable), ' ' ORDER BY 1)
                                  FROM pg_catalog.aclexplode(ip.initprivs) x))
      FROM pg_catalog.pg_init_privs ip
     WHERE ip.privtype = 'e'
       AND (EXISTS (SELECT FROM member m WHERE m.classid = ip.classoid AND m.objid = ip.objoid)
            OR (ip.classoid = 'pg_catalog.pg_namespace'::regclass AND ip.objoid = (SELECT extnamespace FROM ext)))
    UNION ALL
    -- The scrub triggers on the application's tables (not members: they belong to those tables).
    SELECT format('scrub trigger %s enabled %s', pg_catalog.pg_get_triggerdef(t.oid), t.tgenabled)
      FROM pg_catalog.pg_trigger t JOIN pg_catalog.pg_proc p ON p.oid = t.tgfoid, ext
     WHERE p.pronamespace = ext.extnamespace
       AND NOT EXISTS (SELECT FROM member m WHERE m.classid = 'pg_catalog.pg_class'::regclass AND m.objid = t.tgrelid)
)
SELECT fact FROM facts ORDER BY fact COLLATE "C";

-- backfill(): scrubs the rows written before a column was protected, in short transactions.
--
-- Each table is walked in ranges of heap blocks (a TID range scan, no index needed), and each
-- range's rows that still hold more than the trigger would store are updated and committed, so
-- locks are held for one batch and replicas receive the WAL in small steps. Rows that are already
-- scrubbed are never written again, which makes the procedure idempotent and resumable: after an
-- interruption, a new CALL skips everything done and finishes the rest.
--
-- Each range is written in c_passes transactions, one share of each page's rows at a time, so that
-- most new row versions land on their own page. The pages of a table that is only appended to
-- (login_activities, or any freshly restored table) are full, so an UPDATE must put each new
-- version on another page, with a new entry in every index; and once earlier batches have
-- committed, PostgreSQL's bottom-up index deletion reads heap pages from all over the table to
-- remove the old entries, a cost that grows with the table. Instead the first transaction moves
-- one row in c_passes off each page (by line pointer number); once it has committed, the next
-- transaction's scan prunes those dead versions, and its share fits in the room they left: HOT
-- updates, with no index entry. So does each later share; the last transaction takes whatever is
-- left. On 4 million rows (bench/backfill.sh's table), 4, 8 and 16 passes took 42, 36 and 41 s, one
-- UPDATE 86 s: more passes mean more scans and commits. Where fewer than a quarter of the rows are
-- pending (a run resumed near its end, a column mostly NULL) a range spans many times batch_size
-- rows, and scanning it c_passes times would cost more than the HOT updates save: one pass.
--
-- It walks every table that carries a scrub trigger (a partitioned table's partitions, inheritance
-- children), each as that table's owner (owner.rs): the owner's triggers, index expressions and
-- the like run with the owner's rights, never the caller's.
--
-- Beside live writes: the UPDATE re-reads a row that another session changed meanwhile and keeps
-- that session's other columns. An application UPDATE that names no protected column skips the
-- trigger (src/hooks/trigger_skip.rs) and so carries an unscrubbed address along when it moves a row to
-- a block already walked; after the walk, sweeps over the whole table scrub such rows until one
-- finds none (each can only find rows moved during the one before). It never waits long for a row lock (lock_timeout below the
-- deadlock timeout), so when the application holds rows it is backfill that backs off and retries,
-- never the application's transaction that is chosen as a deadlock victim.
--
-- No SET search_path clause: a procedure with one cannot COMMIT. Every name is qualified instead,
-- and each transaction pins search_path locally.
-- Runs one backfill UPDATE of table `tbl` (`statement`, with the ctid range as $1 and $2) as the
-- table's owner, waiting at most `wait` for a row lock; returns the rows written, or NULL when a
-- row stayed locked (or PostgreSQL reported a deadlock), for the caller to retry. lock_timeout
-- ends with the function.
CREATE FUNCTION mastodon_ip_scrub._scrub_range(tbl regclass, statement text, from_tid tid, to_tid tid, wait text)
RETURNS bigint
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    PERFORM set_config('lock_timeout', wait, true);
    RETURN mastodon_ip_scrub._write_as_owner(tbl, statement, ARRAY[from_tid::text, to_tid::text]);
EXCEPTION WHEN lock_not_available OR deadlock_detected THEN
    RETURN NULL;
END
$$;

-- The UPDATE that scrubs columns `cols` of table `tbl` itself (ONLY) for the rows where one holds
-- more than the trigger would store; `extra` is ANDed into the WHERE clause. An inet column gets
-- `_stored(<itself>, <NOT NULL or not>)`, the form the scrub trigger need not see
-- (src/hooks/trigger_skip.rs); a cidr column or a domain over an address type is scrubbed through
-- inet; any other type stores NULL, as the trigger does for it. NULL when none of `cols` is a
-- column of `tbl` (a NOT NULL column of another type, which the event triggers refuse, is left).
CREATE FUNCTION mastodon_ip_scrub._scrub_statement(tbl regclass, cols name[], extra text DEFAULT 'true')
RETURNS text
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT format('UPDATE ONLY %s SET %s WHERE %s AND (%s)', tbl,
                  string_agg(format('%I = %s', c.attname, c.stored), ', ' ORDER BY c.attname),
                  extra,
                  string_agg(c.pending, ' OR ' ORDER BY c.attname))
      FROM (SELECT a.attname,
                   CASE WHEN a.atttypid = 'inet'::regtype
                        THEN format('mastodon_ip_scrub._stored(%I, %L)', a.attname, a.attnotnull)
                        WHEN b.address
                        THEN format('mastodon_ip_scrub._stored(%I::inet, %L)', a.attname, a.attnotnull)
                        ELSE 'NULL' END AS stored,
                   CASE WHEN b.address
                        THEN format('mastodon_ip_scrub._pending(%I::inet, %L)', a.attname, a.attnotnull)
                        ELSE format('%I IS NOT NULL', a.attname) END AS pending
              FROM pg_attribute a
             CROSS JOIN LATERAL (SELECT mastodon_ip_scrub._address_base(a.atttypid) AS address) b
             WHERE a.attrelid = tbl AND a.attname = ANY (cols) AND a.attnum > 0 AND NOT a.attisdropped
               AND (b.address OR NOT a.attnotnull)) c
    HAVING count(*) > 0
$$;

-- The tables backfill() walks: every one that stores rows and carries a scrub trigger (protected
-- tables, their partitions, inheritance children), with the columns that trigger protects.
CREATE FUNCTION mastodon_ip_scrub._scrubbed_tables(OUT tbl regclass, OUT cols name[])
RETURNS SETOF record
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT t.tgrelid::regclass, mastodon_ip_scrub._trigger_args(t.tgargs)
      FROM pg_trigger t
      JOIN pg_class c ON c.oid = t.tgrelid
      JOIN pg_namespace n ON n.oid = c.relnamespace
     WHERE t.tgname = mastodon_ip_scrub._trigger_name() AND t.tgfoid = mastodon_ip_scrub._scrub_function()
       AND c.relkind = 'r'
     ORDER BY n.nspname, c.relname
$$;

CREATE PROCEDURE mastodon_ip_scrub.backfill(batch_size integer DEFAULT 10000, dry_run boolean DEFAULT false)
LANGUAGE plpgsql
AS $$
DECLARE
    c_retries constant integer := 10;
    c_passes  constant integer := 8;  -- passes over a range where most rows are pending
    v_settings record;
    v_tables   regclass[];
    v_tbl      regclass;
    v_cols     name[];
    v_count    record;
    v_sql      text[];      -- the UPDATE of each pass over a range; the last one takes all rows
    v_passes   integer;
    v_pass     integer;
    v_pages    bigint;
    v_step     bigint;
    v_from     bigint;
    v_to       bigint;
    v_rows     bigint;
    v_done     bigint;
    v_skipped  bigint;
    v_total    bigint := 0;
    v_todo     text;
    v_attempt  integer;
    v_timeout  text;
    v_started  timestamptz;
    v_reported timestamptz;
    v_seconds  float8;
    v_sweeps   integer;
BEGIN
    PERFORM pg_catalog.set_config('search_path', 'pg_catalog, pg_temp', true);
    PERFORM mastodon_ip_scrub._primary_only('backfill()');
    IF batch_size IS NULL OR batch_size < 1 THEN
        RAISE EXCEPTION 'mastodon_ip_scrub.backfill: batch_size must be at least 1, got %', coalesce(batch_size::text, 'NULL')
            USING ERRCODE = 'invalid_parameter_value', HINT = 'CALL mastodon_ip_scrub.backfill(batch_size => 10000);';
    END IF;
    SELECT * INTO v_settings FROM mastodon_ip_scrub._settings();
    IF NOT v_settings.enabled THEN
        RAISE EXCEPTION 'mastodon_ip_scrub.backfill: scrubbing is switched off (mastodon_ip_scrub.enabled = off)'
            USING ERRCODE = 'object_not_in_prerequisite_state',
                  HINT = 'Switch it on for this session (SET mastodon_ip_scrub.enabled = on) or for the server, then run backfill again.';
    END IF;
    -- Wait at most half the deadlock timeout (and 100 ms) for a row the application holds.
    v_timeout := greatest(1, least(100, extract(epoch FROM current_setting('deadlock_timeout')::interval) * 500))::integer || 'ms';

    v_tables := ARRAY(SELECT s.tbl FROM mastodon_ip_scrub._scrubbed_tables() s);
    FOREACH v_tbl IN ARRAY v_tables LOOP
        -- Read again after each table's commits: the protected columns still present with an
        -- address type (the trigger stores NULL in any other on its next write).
        SELECT array_agg(a.attname ORDER BY a.attname) INTO v_cols
          FROM mastodon_ip_scrub._scrubbed_tables() s
          JOIN pg_attribute a ON a.attrelid = s.tbl AND a.attname = ANY (s.cols)
                             AND a.attnum > 0 AND NOT a.attisdropped AND mastodon_ip_scrub._address_base(a.atttypid)
         WHERE s.tbl = v_tbl;
        CONTINUE WHEN v_cols IS NULL;
        IF NOT mastodon_ip_scrub._owner_sees_all(v_tbl) THEN
            RAISE WARNING 'mastodon_ip_scrub.backfill: %: skipped, its row-level security is forced on its owner', v_tbl
                USING DETAIL = 'Backfill reads and writes a table as its owner, from whom the policies could hide rows.',
                      HINT = format('ALTER TABLE %s NO FORCE ROW LEVEL SECURITY; then run backfill again.', v_tbl);
            CONTINUE;
        END IF;
        -- A dry run counts exactly. A real run walks the whole table anyway, so it only estimates
        -- (for progress and batch sizes) unless the table is small enough to count outright.
        SELECT * INTO v_count FROM mastodon_ip_scrub._count_one(v_tbl, v_cols, dry_run);
        IF v_count.method = 'exact' AND v_count.unscrubbed_rows = 0 THEN
            RAISE NOTICE 'mastodon_ip_scrub.backfill: %: nothing to scrub (% rows)', v_tbl, v_count.total;
            CONTINUE;
        END IF;
        IF dry_run THEN
            RAISE NOTICE 'mastodon_ip_scrub.backfill: %: would scrub % of % rows (%); dry run, nothing changed',
                v_tbl, v_count.unscrubbed_rows, v_count.total,
                (SELECT string_agg(format('%s: %s', quote_ident(c), u), ', ' ORDER BY ord)
                   FROM unnest(v_cols, v_count.unscrubbed) WITH ORDINALITY AS x (c, u, ord));
            CONTINUE;
        END IF;

        -- Ranges sized so that each holds about batch_size rows to scrub, each written in v_passes
        -- transactions. A tid's line pointer number is the second coordinate of its text form read
        -- as a point.
        v_passes := CASE WHEN v_count.unscrubbed_rows * 4 >= v_count.total THEN c_passes ELSE 1 END;
        v_sql := ARRAY(SELECT mastodon_ip_scrub._scrub_statement(v_tbl, v_cols, 'ctid >= $1::tid AND ctid < $2::tid'
                                  || CASE WHEN p < v_passes
                                          THEN format(' AND ((ctid::text)::point)[1]::integer %% %s = %s', v_passes, p)
                                          ELSE '' END)
                         FROM generate_series(1, v_passes) AS p ORDER BY p);
        v_pages := pg_relation_size(v_tbl) / current_setting('block_size')::bigint;
        v_todo := CASE v_count.method WHEN 'exact' THEN '' ELSE 'about ' END || v_count.unscrubbed_rows;
        v_step := CASE WHEN v_count.unscrubbed_rows > 0
                       THEN greatest(1, ceil(batch_size::numeric * v_pages / v_count.unscrubbed_rows))
                       ELSE greatest(1, v_pages) END::bigint;
        v_from := 0;
        v_pass := 1;
        v_done := 0;
        v_skipped := 0;
        v_attempt := 0;
        v_started := clock_timestamp();
        v_reported := v_started;
        -- Rows inserted beyond v_pages meanwhile went through the trigger; rows moved there are
        -- left to the sweeps below.
        WHILE v_from < v_pages LOOP
            v_to := least(v_from + v_step, v_pages);
            -- A batch lost in a crash is simply found again by the next run: no need to wait for
            -- each commit to reach the disk.
            PERFORM set_config('synchronous_commit', 'off', true);
            v_rows := mastodon_ip_scrub._scrub_range(v_tbl, v_sql[v_pass], format('(%s,0)', v_from)::tid, format('(%s,0)', v_to)::tid, v_timeout);
            IF v_rows IS NOT NULL THEN
                v_done := v_done + v_rows;
                v_attempt := 0;
                IF v_pass < v_passes THEN
                    v_pass := v_pass + 1;
                ELSE
                    v_pass := 1;
                    v_from := v_to;
                END IF;
            ELSE
                v_attempt := v_attempt + 1;
                IF v_attempt >= c_retries THEN
                    RAISE WARNING 'mastodon_ip_scrub.backfill: %: rows in blocks % to % stayed locked by other sessions; left for the next run', v_tbl, v_from, v_to - 1;
                    v_skipped := v_skipped + 1;
                    v_pass := 1;
                    v_from := v_to;
                    v_attempt := 0;
                ELSE
                    PERFORM pg_sleep(0.02 * v_attempt);
                END IF;
            END IF;
            COMMIT;
            PERFORM pg_catalog.set_config('search_path', 'pg_catalog, pg_temp', true);
            IF clock_timestamp() - v_reported >= interval '5 seconds' THEN
                v_reported := clock_timestamp();
                v_seconds := greatest(extract(epoch FROM v_reported - v_started), 0.001);
                RAISE NOTICE 'mastodon_ip_scrub.backfill: %: % of % rows scrubbed (% rows/s)',
                    v_tbl, v_done, v_todo, round(v_done / v_seconds);
            END IF;
        END LOOP;
        -- The sweeps: the same UPDATE over every block there is.
        v_sweeps := 0;
        LOOP
            PERFORM set_config('synchronous_commit', 'off', true);
            v_rows := mastodon_ip_scrub._scrub_range(v_tbl, v_sql[v_passes], '(0,0)'::tid, '(4294967295,0)'::tid, v_timeout);
            v_done := v_done + coalesce(v_rows, 0);
            COMMIT;
            PERFORM pg_catalog.set_config('search_path', 'pg_catalog, pg_temp', true);
            v_sweeps := v_sweeps + 1;
            EXIT WHEN v_rows = 0;
            IF v_sweeps >= c_retries THEN
                RAISE WARNING 'mastodon_ip_scrub.backfill: %: rows kept being moved or locked by other sessions; left for the next run', v_tbl;
                v_skipped := v_skipped + 1;
                EXIT;
            END IF;
            IF v_rows IS NULL THEN
                PERFORM pg_sleep(0.02 * v_sweeps);
            END IF;
        END LOOP;
        v_total := v_total + v_done;
        v_seconds := greatest(extract(epoch FROM clock_timestamp() - v_started), 0.001);
        RAISE NOTICE 'mastodon_ip_scrub.backfill: %: % of % rows scrubbed in % s (% rows/s)%',
            v_tbl, v_done, v_todo, round(v_seconds::numeric, 1), round(v_done / v_seconds),
            CASE WHEN v_skipped > 0 THEN '; some rows were locked: run backfill again' ELSE '' END;
    END LOOP;
    IF v_total > 0 THEN
        RAISE NOTICE 'mastodon_ip_scrub.backfill: done. Old row versions keep the full addresses until VACUUM removes them'
            USING HINT = 'Run VACUUM on the scrubbed tables (VACUUM FULL to rewrite their files); WAL archives and backups still hold the old values.';
    END IF;
END
$$;
COMMENT ON PROCEDURE mastodon_ip_scrub.backfill(integer, boolean) IS
    'Scrub existing rows of every protected column in committed batches; resumable, idempotent; dry_run only reports.';

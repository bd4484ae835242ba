//! Queries and DML on a table the extension does not own run as that table's owner, under
//! `SECURITY_RESTRICTED_OPERATION`, as PostgreSQL's own VACUUM, ANALYZE and REFRESH MATERIALIZED
//! VIEW do since CVE-2022-1552.
//!
//! Mastodon's role owns Mastodon's tables, so it owns the code that runs when anyone reads or
//! writes them: index expressions (the planner folds them), partial-index predicates, triggers,
//! rules, defaults, check constraints, policies. The extension's entry points are run by a
//! superuser (`status()`, `backfill()`, `CREATE EXTENSION`) or as the extension's owner (the
//! SECURITY DEFINER event triggers), so that code would run as a superuser. Switched to the
//! owner, it gets exactly the rights it has anyway. Serves sql/status.sql (counting rows),
//! sql/backfill.sql and sql/event_triggers.sql (scrubbing rows).
//!
//! Inside, search_path is pinned to `pg_catalog, pg_temp`, row security is off (a policy forced
//! on the owner makes the statement fail rather than hide rows from it), and every setting the
//! role's code changes is discarded on the way out. `SECURITY_RESTRICTED_OPERATION` makes
//! PostgreSQL refuse what would outlive the statement: SET ROLE, temporary objects, cursors WITH
//! HOLD, LISTEN, and deferred triggers that would fire at commit as the caller.

use std::ffi::{c_int, CString};

use pgrx::pg_sys;
use pgrx::prelude::*;
use pgrx::PgSqlErrorCode;

use crate::catalog::relation_name;

/// Runs `work` as the owner of table `relid`, in a security-restricted operation. The caller must
/// hold the privileges of that owner already (superusers hold every role's), so this only ever
/// lowers rights.
fn as_owner<R>(relid: pg_sys::Oid, work: impl FnOnce() -> R) -> R {
    let owner = table_owner(relid);
    let (mut caller, mut context) = (pg_sys::InvalidOid, 0);
    // SAFETY: reads the current user and security context; has_privs_of_role reads the catalogs.
    let may = unsafe {
        pg_sys::GetUserIdAndSecContext(&mut caller, &mut context);
        pg_sys::has_privs_of_role(caller, owner)
    };
    if !may {
        ereport!(
            ERROR,
            PgSqlErrorCode::ERRCODE_INSUFFICIENT_PRIVILEGE,
            format!(
                "mastodon_ip_scrub: permission denied to act as the owner of table {}",
                relation_name(relid)
            )
        );
    }
    let _extension = ExtensionMembershipPaused::new();
    // SAFETY: the same switch VACUUM makes (vacuum_rel). If `work` raises an error, the
    // (sub)transaction abort that catches it restores the user, the security context and the GUC
    // nest level, as it does for VACUUM.
    let level = unsafe {
        pg_sys::SetUserIdAndSecContext(
            owner,
            context | pg_sys::SECURITY_RESTRICTED_OPERATION as i32,
        );
        let level = pg_sys::NewGUCNestLevel();
        set_local(c"search_path", c"pg_catalog, pg_temp");
        set_local(c"row_security", c"off");
        level
    };
    let result = work();
    // SAFETY: undoes the switch above, in reverse order.
    unsafe {
        pg_sys::AtEOXact_GUC(false, level);
        pg_sys::SetUserIdAndSecContext(caller, context);
    }
    result
}

/// Sets `name` for the current GUC nest level only.
///
/// # Safety
/// Must run inside a nest level opened with NewGUCNestLevel.
unsafe fn set_local(name: &std::ffi::CStr, value: &std::ffi::CStr) {
    // SAFETY: both are valid C strings; GUC_ACTION_SAVE ties the value to the nest level.
    unsafe {
        pg_sys::set_config_option(
            name.as_ptr(),
            value.as_ptr(),
            pg_sys::GucContext::PGC_USERSET,
            pg_sys::GucSource::PGC_S_SESSION,
            pg_sys::GucAction::GUC_ACTION_SAVE,
            true,
            0,
            false,
        );
    }
}

/// While CREATE EXTENSION runs, PostgreSQL makes every object created a member of the extension.
/// Objects the role's code creates while we run it must stay the role's own, so membership
/// recording is paused for that while, and restored however the work ends (a Rust panic carrying
/// a PostgreSQL error unwinds through this guard).
struct ExtensionMembershipPaused {
    creating: bool,
    extension: pg_sys::Oid,
}

impl ExtensionMembershipPaused {
    fn new() -> Self {
        // SAFETY: plain backend-local globals, read and written by this backend's one thread.
        unsafe {
            let saved = ExtensionMembershipPaused {
                creating: pg_sys::creating_extension,
                extension: pg_sys::CurrentExtensionObject,
            };
            pg_sys::creating_extension = false;
            pg_sys::CurrentExtensionObject = pg_sys::InvalidOid;
            saved
        }
    }
}

impl Drop for ExtensionMembershipPaused {
    fn drop(&mut self) {
        // SAFETY: as in `new`.
        unsafe {
            pg_sys::creating_extension = self.creating;
            pg_sys::CurrentExtensionObject = self.extension;
        }
    }
}

/// The owner of ordinary or partitioned table `relid`; an error for anything else.
fn table_owner(relid: pg_sys::Oid) -> pg_sys::Oid {
    // SAFETY: the lock keeps the owner from changing under us; the cache entry is released
    // before returning.
    unsafe {
        pg_sys::LockRelationOid(relid, pg_sys::AccessShareLock as pg_sys::LOCKMODE);
        let tuple = pg_sys::SearchSysCache1(
            pg_sys::SysCacheIdentifier::RELOID as _,
            pg_sys::Datum::from(relid),
        );
        if tuple.is_null() {
            ereport!(
                ERROR,
                PgSqlErrorCode::ERRCODE_UNDEFINED_TABLE,
                format!("mastodon_ip_scrub: no table with OID {}", relid.to_u32())
            );
        }
        let form = &*pg_sys::GETSTRUCT(tuple).cast::<pg_sys::FormData_pg_class>();
        let (owner, kind) = (form.relowner, form.relkind as u8);
        pg_sys::ReleaseSysCache(tuple);
        if kind != pg_sys::RELKIND_RELATION && kind != pg_sys::RELKIND_PARTITIONED_TABLE {
            ereport!(
                ERROR,
                PgSqlErrorCode::ERRCODE_WRONG_OBJECT_TYPE,
                format!("mastodon_ip_scrub: {} is not a table", relation_name(relid))
            );
        }
        owner
    }
}

/// SQL `mastodon_ip_scrub._query_as_owner(tbl regclass, query text) RETURNS bigint[]`: the first
/// column of the first row of the read-only `query`, run as `tbl`'s owner. For counts.
#[pg_extern(volatile, parallel_unsafe, name = "_query_as_owner")]
fn query_as_owner(tbl: pg_sys::Oid, query: &str) -> Option<Vec<Option<i64>>> {
    as_owner(tbl, || {
        Spi::connect(|client| {
            client
                .select(query, Some(1), &[])?
                .first()
                .get_one::<Vec<Option<i64>>>()
        })
    })
    .unwrap_or_else(|e| error!("mastodon_ip_scrub: {e}"))
}

/// SQL `mastodon_ip_scrub._write_as_owner(tbl regclass, statement text, args text[]) RETURNS
/// bigint`: runs the DML `statement`, with `args` as its text parameters $1, $2, ..., as `tbl`'s
/// owner; returns the number of rows it processed.
#[pg_extern(volatile, parallel_unsafe, name = "_write_as_owner")]
fn write_as_owner(tbl: pg_sys::Oid, statement: &str, args: default!(Vec<String>, "'{}'")) -> i64 {
    let statement = CString::new(statement).unwrap_or_else(|_| {
        error!("mastodon_ip_scrub._write_as_owner: the statement contains a NUL byte")
    });
    let mut types = vec![pg_sys::TEXTOID; args.len()];
    let mut values: Vec<pg_sys::Datum> = args
        .into_iter()
        .map(|a| a.into_datum().unwrap_or(pg_sys::Datum::from(0)))
        .collect();
    let nargs = c_int::try_from(values.len())
        .unwrap_or_else(|_| error!("mastodon_ip_scrub._write_as_owner: too many parameters"));
    // pgrx's SPI client assigns a transaction id before any statement that may write; a scrubbing
    // UPDATE that finds nothing to do must not (backfill's sweeps and second runs write no WAL).
    let rows = as_owner(tbl, || {
        // SAFETY: SPI is connected and finished around the one statement; the parameter arrays
        // hold `nargs` text datums allocated above, none NULL; an error unwinds through here and
        // the (sub)transaction abort that catches it cleans SPI up.
        unsafe {
            pg_sys::SPI_connect();
            let status = pg_sys::SPI_execute_with_args(
                statement.as_ptr(),
                nargs,
                types.as_mut_ptr(),
                values.as_mut_ptr(),
                std::ptr::null(),
                false,
                0,
            );
            let rows = pg_sys::SPI_processed;
            pg_sys::SPI_finish();
            if status < 0 {
                error!("mastodon_ip_scrub._write_as_owner: SPI error {status}");
            }
            rows
        }
    });
    i64::try_from(rows).unwrap_or(i64::MAX)
}

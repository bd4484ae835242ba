//! Everything that differs between the PostgreSQL majors we build for (14 to 18), in one place,
//! so the rest of the crate reads the same on each.
//!
//! - PostgreSQL 18 stores a tuple descriptor's `pg_attribute` forms after its new compact
//!   attributes, so `attrs` is gone: [`attribute`] finds the form on every major.
//! - PostgreSQL 16 replaced the per-object ACL checks with `object_aclcheck`: [`may_execute`].
//! - PostgreSQL 15 added `MarkGUCPrefixReserved`; 14 can only warn: [`reserve_guc_prefix`].
//! - PostgreSQL 14 and 15 record `ALTER TABLE ... ADD COLUMN` on a table with children as a
//!   separate recursing subcommand, which 16 folded into the one: [`is_add_column`].

use std::ffi::CStr;

use pgrx::pg_sys;

/// The `pg_attribute` form of zero-based attribute `index` of `tupdesc`.
///
/// # Safety
/// `tupdesc` must be a valid tuple descriptor and `index` less than its `natts`.
#[inline]
pub unsafe fn attribute<'a>(
    tupdesc: *const pg_sys::TupleDescData,
    index: usize,
) -> &'a pg_sys::FormData_pg_attribute {
    #[cfg(not(feature = "pg18"))]
    // SAFETY: per the contract, `attrs` holds `natts` forms.
    unsafe {
        &*(*tupdesc).attrs.as_ptr().add(index)
    }
    #[cfg(feature = "pg18")]
    // SAFETY: per the contract; PostgreSQL 18 lays the `natts` forms out right after the `natts`
    // compact attributes (what its inline TupleDescAttr() computes).
    unsafe {
        let forms = (*tupdesc)
            .compact_attrs
            .as_ptr()
            .add(usize::try_from((*tupdesc).natts).unwrap_or(0))
            .cast::<pg_sys::FormData_pg_attribute>();
        &*forms.add(index)
    }
}

/// Whether the current role may execute `function`, an existing function's OID.
pub fn may_execute(function: pg_sys::Oid) -> bool {
    let (user, execute) = (
        // SAFETY: reads the current user id.
        unsafe { pg_sys::GetUserId() },
        pg_sys::ACL_EXECUTE as pg_sys::AclMode,
    );
    #[cfg(any(feature = "pg14", feature = "pg15"))]
    // SAFETY: an ACL lookup on an existing function, as the contract requires.
    let result = unsafe { pg_sys::pg_proc_aclcheck(function, user, execute) };
    #[cfg(not(any(feature = "pg14", feature = "pg15")))]
    // SAFETY: as above.
    let result =
        unsafe { pg_sys::object_aclcheck(pg_sys::ProcedureRelationId, function, user, execute) };
    result == pg_sys::AclResult::ACLCHECK_OK
}

/// Makes `SET <prefix>.<typo>` an error instead of a silently created placeholder (15+). On 14,
/// placeholders set before the library loaded only get a WARNING, and later typos pass silently.
///
/// Must be called from `_PG_init`, after the prefix's settings are defined.
pub fn reserve_guc_prefix(prefix: &'static CStr) {
    #[cfg(not(feature = "pg14"))]
    // SAFETY: called from _PG_init with a 'static C string, as PostgreSQL requires.
    unsafe {
        pg_sys::MarkGUCPrefixReserved(prefix.as_ptr())
    };
    #[cfg(feature = "pg14")]
    // SAFETY: as above.
    unsafe {
        pg_sys::EmitWarningsOnPlaceholders(prefix.as_ptr())
    };
}

/// Whether the ALTER TABLE subcommand `cmd` adds a column.
pub fn is_add_column(cmd: &pg_sys::AlterTableCmd) -> bool {
    #[cfg(any(feature = "pg14", feature = "pg15"))]
    let recursing = cmd.subtype == pg_sys::AlterTableType::AT_AddColumnRecurse;
    #[cfg(not(any(feature = "pg14", feature = "pg15")))]
    let recursing = false;
    cmd.subtype == pg_sys::AlterTableType::AT_AddColumn || recursing
}

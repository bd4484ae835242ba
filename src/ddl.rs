//! The two details of a DDL command that the event triggers (sql/event_triggers.sql) need and
//! PostgreSQL only exposes to C: the old name in a rename, and a way to let a dump's
//! `CREATE TRIGGER zz_mastodon_ip_scrub` replace the trigger auto-protection already created.

use std::ffi::CStr;

use pgrx::pg_sys;
use pgrx::prelude::*;

use crate::trigger::TRIGGER_NAME;

#[no_mangle]
#[doc(hidden)]
pub extern "C" fn pg_finfo_renamed_from() -> &'static pg_sys::Pg_finfo_record {
    const V1: pg_sys::Pg_finfo_record = pg_sys::Pg_finfo_record { api_version: 1 };
    &V1
}

/// SQL `mastodon_ip_scrub._renamed_from(pg_ddl_command) RETURNS text` (STRICT): the name a
/// column or table had before `ALTER TABLE ... RENAME [COLUMN]`, NULL for any other command.
///
/// # Safety
/// Called only by the function manager, with the pg_ddl_command that
/// pg_event_trigger_ddl_commands() returned in this ddl_command_end trigger.
#[pg_guard]
#[no_mangle]
pub unsafe extern "C-unwind" fn renamed_from(fcinfo: pg_sys::FunctionCallInfo) -> pg_sys::Datum {
    // SAFETY: the argument is a pg_ddl_command, a pointer to a CollectedCommand that lives until
    // the command ends; its parse tree is a Node whose tag says which struct it is.
    let old = unsafe {
        let cmd =
            pgrx::fcinfo::pg_getarg_datum_raw(fcinfo, 0).cast_mut_ptr::<pg_sys::CollectedCommand>();
        if cmd.is_null() || (*cmd).type_ != pg_sys::CollectedCommandType::SCT_Simple {
            None
        } else {
            let tree = (*cmd).parsetree;
            if tree.is_null() || (*tree).type_ != pg_sys::NodeTag::T_RenameStmt {
                None
            } else {
                let stmt = &*tree.cast::<pg_sys::RenameStmt>();
                let old = match stmt.renameType {
                    pg_sys::ObjectType::OBJECT_COLUMN => stmt.subname,
                    pg_sys::ObjectType::OBJECT_TABLE if !stmt.relation.is_null() => {
                        (*stmt.relation).relname
                    }
                    _ => std::ptr::null_mut(),
                };
                (!old.is_null()).then(|| CStr::from_ptr(old).to_string_lossy().into_owned())
            }
        }
    };
    match old {
        // SAFETY: fcinfo is valid for this call.
        None => unsafe { pgrx::fcinfo::pg_return_null(fcinfo) },
        Some(name) => name.into_datum().unwrap_or_else(|| {
            // SAFETY: as above.
            unsafe { pgrx::fcinfo::pg_return_null(fcinfo) }
        }),
    }
}

#[no_mangle]
#[doc(hidden)]
pub extern "C" fn pg_finfo_before_create_trigger() -> &'static pg_sys::Pg_finfo_record {
    const V1: pg_sys::Pg_finfo_record = pg_sys::Pg_finfo_record { api_version: 1 };
    &V1
}

/// ddl_command_start event trigger for CREATE TRIGGER: a plain `CREATE TRIGGER
/// zz_mastodon_ip_scrub` on a table that already has one becomes `CREATE OR REPLACE`.
///
/// pg_dump writes the scrub trigger into its post-data section; by then, restoring the table
/// has already auto-protected it, and a plain CREATE would fail the restore. What the statement
/// leaves behind is corrected at ddl_command_end either way, from the protection table.
///
/// # Safety
/// Called only by the function manager as an event trigger.
#[pg_guard]
#[no_mangle]
pub unsafe extern "C-unwind" fn before_create_trigger(
    fcinfo: pg_sys::FunctionCallInfo,
) -> pg_sys::Datum {
    // SAFETY: context is checked to be EventTriggerData and the parse tree to be a
    // CreateTrigStmt before either is read; the statement is the one about to be executed.
    unsafe {
        let context = (*fcinfo).context;
        if context.is_null() || (*context).type_ != pg_sys::NodeTag::T_EventTriggerData {
            error!(
                "mastodon_ip_scrub._before_create_trigger() can only be called as an event trigger"
            );
        }
        let tree = (*context.cast::<pg_sys::EventTriggerData>()).parsetree;
        if tree.is_null() || (*tree).type_ != pg_sys::NodeTag::T_CreateTrigStmt {
            return pg_sys::Datum::from(0);
        }
        let stmt = &mut *tree.cast::<pg_sys::CreateTrigStmt>();
        if stmt.replace
            || stmt.isconstraint
            || stmt.trigname.is_null()
            || stmt.relation.is_null()
            || CStr::from_ptr(stmt.trigname) != TRIGGER_NAME
        {
            return pg_sys::Datum::from(0);
        }
        let relid = pg_sys::RangeVarGetRelidExtended(
            stmt.relation,
            pg_sys::NoLock as pg_sys::LOCKMODE,
            pg_sys::RVROption::RVR_MISSING_OK,
            None,
            std::ptr::null_mut(),
        );
        if relid != pg_sys::InvalidOid
            && pg_sys::get_trigger_oid(relid, stmt.trigname, true) != pg_sys::InvalidOid
        {
            stmt.replace = true;
        }
    }
    pg_sys::Datum::from(0)
}

//! UPDATEs that assign no protected column do not pay for the scrub trigger.
//!
//! Any `BEFORE UPDATE` row trigger makes PostgreSQL lock and re-read each old row before the
//! update (about 9% more work per row for Mastodon's frequent `UPDATE users SET ...`), even when
//! the trigger has nothing to do. An UPDATE that assigns none of the protected columns cannot
//! change them, so once the executor has set the statement up, this hook clears "has BEFORE UPDATE
//! row triggers" in the statement's private copy of the table's trigger list.
//!
//! Only when the scrub trigger is the table's one BEFORE UPDATE row trigger: another one (the
//! application's) could write an address into NEW, and ours must then see it. When any protected
//! name does not resolve to a column, or the library is not loaded yet, the trigger simply fires.
//! Nothing is cached: the check runs per statement, on that statement's catalog state.

use pgrx::pg_sys;
use pgrx::prelude::*;
use pgrx::PgList;

use crate::trigger::{is_scrub_trigger, trigger_args, triggers};

static mut PREVIOUS_HOOK: pg_sys::ExecutorStart_hook_type = None;

/// Installs the hook; called once from `_PG_init`.
pub fn install() {
    // SAFETY: _PG_init runs once per backend (possibly during a statement, which then simply
    // keeps its trigger lists); chaining keeps other libraries' hooks (pg_stat_statements,
    // auto_explain) working.
    unsafe {
        PREVIOUS_HOOK = pg_sys::ExecutorStart_hook;
        pg_sys::ExecutorStart_hook = Some(executor_start);
    }
}

#[pg_guard]
unsafe extern "C-unwind" fn executor_start(query_desc: *mut pg_sys::QueryDesc, eflags: i32) {
    // SAFETY: PostgreSQL's arguments, passed on unchanged; after ExecutorStart the estate and its
    // opened result relations are set up, each with its own copy of the trigger list.
    unsafe {
        match PREVIOUS_HOOK {
            Some(previous) => previous(query_desc, eflags),
            None => pg_sys::standard_ExecutorStart(query_desc, eflags),
        }
        if (*query_desc).operation != pg_sys::CmdType::CMD_UPDATE {
            return;
        }
        let estate = (*query_desc).estate;
        if estate.is_null() {
            return;
        }
        for relinfo in
            PgList::<pg_sys::ResultRelInfo>::from_pg((*estate).es_opened_result_relations)
                .iter_ptr()
        {
            if !relinfo.is_null() && trigger_is_idle(relinfo, estate) {
                (*(*relinfo).ri_TrigDesc).trig_update_before_row = false;
            }
        }
    }
}

/// Whether this statement's UPDATE of `relinfo` leaves every column the scrub trigger protects
/// untouched, with the scrub trigger the only BEFORE UPDATE row trigger there.
///
/// # Safety
/// `relinfo` must be a result relation of `estate`, opened by ExecutorStart.
unsafe fn trigger_is_idle(
    relinfo: *mut pg_sys::ResultRelInfo,
    estate: *mut pg_sys::EState,
) -> bool {
    // SAFETY: per the contract; the trigger list is the statement's copy, read only here.
    unsafe {
        let Some(trigdesc) = (*relinfo).ri_TrigDesc.as_ref() else {
            return false;
        };
        if !trigdesc.trig_update_before_row {
            return false;
        }
        let mut before_update_row = triggers(trigdesc).iter().filter(|t| {
            let kind = u32::from(t.tgtype as u16);
            kind & pg_sys::TRIGGER_TYPE_ROW != 0
                && kind & (pg_sys::TRIGGER_TYPE_BEFORE | pg_sys::TRIGGER_TYPE_INSTEAD)
                    == pg_sys::TRIGGER_TYPE_BEFORE
                && kind & pg_sys::TRIGGER_TYPE_UPDATE != 0
        });
        let (Some(ours), None) = (before_update_row.next(), before_update_row.next()) else {
            return false;
        };
        if !is_scrub_trigger(ours) {
            return false;
        }
        let updated = pg_sys::ExecGetUpdatedCols(relinfo, estate);
        let relid = (*(*relinfo).ri_RelationDesc).rd_id;
        trigger_args(ours).all(|name| {
            let attnum = pg_sys::get_attnum(relid, name.as_ptr());
            // A name the trigger looks for in vain: let it fire and report that itself.
            attnum != pg_sys::InvalidAttrNumber as pg_sys::AttrNumber
                && !pg_sys::bms_is_member(
                    i32::from(attnum) - pg_sys::FirstLowInvalidHeapAttributeNumber,
                    updated,
                )
        })
    }
}

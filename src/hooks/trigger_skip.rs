//! UPDATEs that cannot change what a protected column stores do not pay for the scrub trigger.
//!
//! Any `BEFORE UPDATE` row trigger makes PostgreSQL lock and re-read each old row before the
//! update (about 9% more work per row for Mastodon's frequent `UPDATE users SET ...`), even when
//! the trigger has nothing to do. Two kinds of UPDATE give it nothing to do:
//! - one that assigns none of the protected columns, so it cannot change them;
//! - one that assigns each protected column it names that column's own stored form,
//!   `col = mastodon_ip_scrub._stored(col, <col is NOT NULL>)`, which the trigger would keep as it
//!   is (backfill's UPDATE; the lock alone cost it a WAL record per row). The plan must be a scan
//!   of the table itself, so the value is read from the row being updated.
//!
//! For those, once the executor has set the statement up, this hook clears "has BEFORE UPDATE row
//! triggers" in the statement's private copy of the table's trigger list.
//!
//! Only when the scrub trigger is the table's one BEFORE UPDATE row trigger: another one (the
//! application's) could write an address into NEW, and ours must then see it. When any protected
//! name does not resolve to a column, or the library is not loaded yet, the trigger simply fires.
//! Nothing is cached: the check runs per statement, on that statement's catalog state.

use pgrx::pg_sys;
use pgrx::prelude::*;
use pgrx::PgList;

use crate::catalog::{
    extension_function, is_scrub_trigger, protected_column, trigger_args, triggers,
};

const STORED_FUNCTION: &std::ffi::CStr = c"_stored";

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
            if !relinfo.is_null() && trigger_is_idle(relinfo, estate, (*query_desc).plannedstmt) {
                (*(*relinfo).ri_TrigDesc).trig_update_before_row = false;
            }
        }
    }
}

/// Whether this statement's UPDATE of `relinfo` leaves every column the scrub trigger protects
/// untouched or assigns it its own stored form, with the scrub trigger the only BEFORE UPDATE row
/// trigger there.
///
/// # Safety
/// `relinfo` must be a result relation of `estate`, opened by ExecutorStart for `statement`.
unsafe fn trigger_is_idle(
    relinfo: *mut pg_sys::ResultRelInfo,
    estate: *mut pg_sys::EState,
    statement: *mut pg_sys::PlannedStmt,
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
        let relation = (*relinfo).ri_RelationDesc;
        let mut stored = None;
        trigger_args(ours).all(|name| {
            // A name the trigger looks for in vain: let it fire and report that itself.
            let Some((attnum, attr)) = protected_column((*relation).rd_att, name) else {
                return false;
            };
            if !pg_sys::bms_is_member(
                i32::from(attnum) - pg_sys::FirstLowInvalidHeapAttributeNumber,
                updated,
            ) {
                return true;
            }
            let Some(expr) = assigned_value(statement, (*relinfo).ri_RangeTableIndex, attnum)
            else {
                return false;
            };
            is_own_stored_form(
                expr,
                (*relinfo).ri_RangeTableIndex,
                attnum,
                attr.attnotnull,
                &mut stored,
            )
        })
    }
}

/// The expression `statement` assigns to column `attnum` of range table entry `rti`, when the
/// plan is a ModifyTable over a single scan of that table (so Vars in it read the old row).
///
/// # Safety
/// `statement` must be the plan being started, `rti` one of its result relations.
unsafe fn assigned_value(
    statement: *mut pg_sys::PlannedStmt,
    rti: pg_sys::Index,
    attnum: pg_sys::AttrNumber,
) -> Option<*mut pg_sys::Expr> {
    // SAFETY: per the contract; the plan tree is only read. Each tag is checked before its
    // node is cast, and every scan node starts with a Scan.
    unsafe {
        let top = statement.as_ref()?.planTree;
        if !pgrx::is_a(top.cast(), pg_sys::NodeTag::T_ModifyTable) {
            return None;
        }
        let modify = &*top.cast::<pg_sys::ModifyTable>();
        let results = PgList::<pg_sys::Node>::from_pg(modify.resultRelations);
        if results.len() != 1 || results.get_int(0) != i32::try_from(rti).ok() {
            return None;
        }
        let scan = modify.plan.lefttree;
        let scans = [
            pg_sys::NodeTag::T_SeqScan,
            pg_sys::NodeTag::T_SampleScan,
            pg_sys::NodeTag::T_IndexScan,
            pg_sys::NodeTag::T_BitmapHeapScan,
            pg_sys::NodeTag::T_TidScan,
            pg_sys::NodeTag::T_TidRangeScan,
        ];
        if scan.is_null()
            || !scans.iter().any(|&tag| pgrx::is_a(scan.cast(), tag))
            || (*scan.cast::<pg_sys::Scan>()).scanrelid != rti
        {
            return None;
        }
        // The scan's first target entries are the new values, in the order of updateColnos
        // (ExecInitModifyTable relies on the same); its junk entries (ctid) come after them.
        let colnos = PgList::<pg_sys::Node>::from_pg(
            PgList::<pg_sys::List>::from_pg(modify.updateColnosLists).get_ptr(0)?,
        );
        let position = colnos.iter_int().position(|c| c == i32::from(attnum))?;
        let entry = PgList::<pg_sys::TargetEntry>::from_pg((*scan).targetlist)
            .get_ptr(position)?
            .as_ref()?;
        (!entry.resjunk).then_some(entry.expr)
    }
}

/// Whether `expr` is `mastodon_ip_scrub._stored(<column attnum of table rti>, not_null)`: what
/// the trigger stores for that column's old value, which it would keep as it is. `stored` caches
/// the function's OID for the statement.
///
/// # Safety
/// `expr` must be a valid expression from the target list of a scan of range table entry `rti`.
unsafe fn is_own_stored_form(
    expr: *mut pg_sys::Expr,
    rti: pg_sys::Index,
    attnum: pg_sys::AttrNumber,
    not_null: bool,
    stored: &mut Option<Option<pg_sys::Oid>>,
) -> bool {
    // SAFETY: per the contract; each node's tag is checked before it is cast, and only read.
    unsafe {
        if !pgrx::is_a(expr.cast(), pg_sys::NodeTag::T_FuncExpr) {
            return false;
        }
        let call = &*expr.cast::<pg_sys::FuncExpr>();
        let args = PgList::<pg_sys::Node>::from_pg(call.args);
        let (Some(column), Some(flag), 2) = (args.get_ptr(0), args.get_ptr(1), args.len()) else {
            return false;
        };
        if !pgrx::is_a(column, pg_sys::NodeTag::T_Var)
            || !pgrx::is_a(flag, pg_sys::NodeTag::T_Const)
        {
            return false;
        }
        let (column, flag) = (
            &*column.cast::<pg_sys::Var>(),
            &*flag.cast::<pg_sys::Const>(),
        );
        // In a scan's target list a Var of the scanned table carries its range table index.
        let own_column = i64::from(column.varno) == i64::from(rti)
            && column.varattno == attnum
            && column.varlevelsup == 0;
        let flag_matches = flag.consttype == pg_sys::BOOLOID
            && !flag.constisnull
            && (flag.constvalue.value() != 0) == not_null;
        own_column
            && flag_matches
            && Some(call.funcid)
                == *stored.get_or_insert_with(|| {
                    extension_function(STORED_FUNCTION, &[pg_sys::INETOID, pg_sys::BOOLOID])
                })
    }
}

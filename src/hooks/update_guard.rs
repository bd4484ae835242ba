//! `skip_redundant_updates`, before the row is touched: a parse-analysis hook that adds a qual to
//! Mastodon's per-request `UPDATE session_activations SET ip = $1, updated_at = $2 WHERE id = $3`.
//!
//! Once stored addresses are scrubbed they never equal the request's, so Mastodon sends that
//! UPDATE on every authenticated page view. The row trigger can skip such a row (it returns NULL),
//! but by then PostgreSQL has already locked the old row version for the trigger, which writes WAL
//! and takes a transaction id. Filtering the row out in the scan costs nothing of the kind: the
//! statement becomes `... WHERE id = $3 AND mastodon_ip_scrub._update_needed(ip, $1, false)`.
//!
//! Only a statement that assigns nothing but protected inet columns and `updated_at` is changed,
//! each protected column a constant or a bound parameter (what Rails sends, with or without
//! prepared statements), and only when the table's scrub trigger is enabled. Anything else (a
//! `DEFAULT`, a multi-assignment from a sub-SELECT, a subscript, an expression) is left alone: the
//! guard copies the value into the WHERE clause, which only a plain value survives.
//! `_update_needed` reads the settings when it runs, so a prepared statement follows later changes
//! of them. Statements parsed before the library was loaded are re-analysed: loading resets the
//! session's plan cache.

use std::ffi::CStr;

use pgrx::pg_sys;
use pgrx::prelude::*;
use pgrx::PgList;

use crate::catalog::{
    extension_function, is_scrub_trigger, protected_column, trigger_args, triggers,
};
use crate::compat;
use crate::trigger::UPDATED_AT;

const GUARD_FUNCTION: &CStr = c"_update_needed";

static mut PREVIOUS_HOOK: pg_sys::post_parse_analyze_hook_type = None;

/// Installs the hook; called once from `_PG_init`.
pub fn install() {
    // SAFETY: _PG_init runs once per backend, before any query this library could see; chaining
    // keeps hooks installed by other libraries working. ResetPlanCache only marks cached plans
    // for re-analysis, so statements prepared before the library was loaded get the hook too.
    unsafe {
        PREVIOUS_HOOK = pg_sys::post_parse_analyze_hook;
        pg_sys::post_parse_analyze_hook = Some(guard_redundant_updates);
        pg_sys::ResetPlanCache();
    }
}

#[pg_guard]
unsafe extern "C-unwind" fn guard_redundant_updates(
    pstate: *mut pg_sys::ParseState,
    query: *mut pg_sys::Query,
    jstate: *mut pg_sys::JumbleState,
) {
    // SAFETY: the arguments are PostgreSQL's, passed on unchanged; the previous hook (if any)
    // sees the query as written, so query fingerprints (pg_stat_statements) do not change.
    unsafe {
        if let Some(previous) = PREVIOUS_HOOK {
            previous(pstate, query, jstate);
        }
        if let Some(query) = query.as_mut() {
            if query.commandType == pg_sys::CmdType::CMD_UPDATE {
                add_guard(query);
            }
        }
    }
}

/// A protected column the statement assigns.
struct Assignment {
    attnum: i16,
    not_null: bool,
    expr: *mut pg_sys::Expr,
}

/// ANDs `_update_needed(col, <new value>, not_null) OR ...` into an eligible UPDATE's qual.
/// Leaves any other statement alone and never raises an error: the application's write goes on
/// either way, at worst through the trigger's own check.
///
/// # Safety
/// `query` must be an analysed UPDATE whose result relation the parser has locked.
unsafe fn add_guard(query: &mut pg_sys::Query) {
    // SAFETY: per the contract; every pointer below comes from the analysed query or the
    // relation cache and is only read, except the new qual, built in the current memory context.
    unsafe {
        let rtable = PgList::<pg_sys::RangeTblEntry>::from_pg(query.rtable);
        let Some(rte) = usize::try_from(query.resultRelation - 1)
            .ok()
            .and_then(|i| rtable.get_ptr(i))
            .and_then(|rte| rte.as_ref())
        else {
            return;
        };
        let relkind = rte.relkind as u8;
        if rte.rtekind != pg_sys::RTEKind::RTE_RELATION
            || (relkind != pg_sys::RELKIND_RELATION && relkind != pg_sys::RELKIND_PARTITIONED_TABLE)
            || query.hasSubLinks
        {
            return;
        }
        let Some(assignments) = protected_assignments(query, rte.relid) else {
            return;
        };
        // The executor checks EXECUTE on the guard: an admin who revoked it from PUBLIC must not
        // make the application's UPDATEs fail.
        let Some(guard) = guard_function().filter(|&f| compat::may_execute(f)) else {
            return;
        };
        let mut checks = PgList::<pg_sys::Node>::new();
        for a in &assignments {
            let old = pg_sys::makeVar(
                query.resultRelation as _,
                a.attnum,
                pg_sys::INETOID,
                -1,
                pg_sys::InvalidOid,
                0,
            );
            let not_null = pg_sys::makeConst(
                pg_sys::BOOLOID,
                -1,
                pg_sys::InvalidOid,
                1,
                pg_sys::Datum::from(a.not_null),
                false,
                true,
            );
            let mut args = PgList::<pg_sys::Node>::new();
            args.push(old.cast());
            args.push(pg_sys::copyObjectImpl(a.expr.cast()).cast());
            args.push(not_null.cast());
            let call = pg_sys::makeFuncExpr(
                guard,
                pg_sys::BOOLOID,
                args.into_pg(),
                pg_sys::InvalidOid,
                pg_sys::InvalidOid,
                pg_sys::CoercionForm::COERCE_EXPLICIT_CALL,
            );
            checks.push(call.cast());
        }
        // protected_assignments returns at least one, so `checks` is never empty.
        let guard_qual: *mut pg_sys::Node = match checks.head() {
            Some(only) if checks.len() == 1 => only,
            _ => pg_sys::makeBoolExpr(pg_sys::BoolExprType::OR_EXPR, checks.into_pg(), -1).cast(),
        };
        if let Some(jointree) = query.jointree.as_mut() {
            jointree.quals = pg_sys::make_and_qual(jointree.quals, guard_qual);
        }
    }
}

/// The protected columns an UPDATE assigns, when it assigns nothing else but `updated_at`, the
/// table's scrub trigger is enabled and the current user may read those columns (the guard reads
/// them; without SELECT rights the trigger's check alone applies).
///
/// # Safety
/// As [`add_guard`]; `relid` is the locked result relation.
unsafe fn protected_assignments(
    query: &pg_sys::Query,
    relid: pg_sys::Oid,
) -> Option<Vec<Assignment>> {
    // SAFETY: the parser holds a lock on the relation; we read its cached descriptor and trigger
    // list, and close it again without releasing the lock.
    unsafe {
        let relation = pg_sys::relation_open(relid, pg_sys::NoLock as _);
        let assignments = assignments_of(query, relation);
        pg_sys::relation_close(relation, pg_sys::NoLock as _);
        assignments.filter(|a| !a.is_empty())
    }
}

/// See [`protected_assignments`]; `None` as soon as one assignment makes the statement ineligible.
///
/// # Safety
/// `relation` must be the open result relation of `query`.
unsafe fn assignments_of(
    query: &pg_sys::Query,
    relation: pg_sys::Relation,
) -> Option<Vec<Assignment>> {
    // SAFETY: per the contract; target entries and attributes are read only.
    unsafe {
        let tupdesc = (*relation).rd_att;
        let protected: Vec<pg_sys::AttrNumber> = enabled_trigger_columns(relation)
            .iter()
            .filter_map(|name| protected_column(tupdesc, name).map(|(attnum, _)| attnum))
            .collect();
        if protected.is_empty() {
            return None;
        }
        let natts = usize::try_from((*tupdesc).natts).unwrap_or(0);
        let mut assignments = Vec::new();
        for te in PgList::<pg_sys::TargetEntry>::from_pg(query.targetList).iter_ptr() {
            let te = te.as_ref()?;
            if te.resjunk {
                continue;
            }
            let index = usize::try_from(te.resno - 1).ok().filter(|&i| i < natts)?;
            let attr = compat::attribute(tupdesc, index);
            let name = CStr::from_ptr(attr.attname.data.as_ptr());
            if name == UPDATED_AT {
                continue;
            }
            // Table-level SELECT, or SELECT on the column (the column check alone ignores the
            // table's grants and superuser).
            let (user, select) = (pg_sys::GetUserId(), pg_sys::ACL_SELECT as pg_sys::AclMode);
            let readable = pg_sys::pg_class_aclcheck((*relation).rd_id, user, select)
                == pg_sys::AclResult::ACLCHECK_OK
                || pg_sys::pg_attribute_aclcheck((*relation).rd_id, te.resno, user, select)
                    == pg_sys::AclResult::ACLCHECK_OK;
            let eligible = protected.contains(&te.resno)
                && attr.atttypid == pg_sys::INETOID
                && is_plain_inet_value(te.expr)
                && readable;
            if !eligible {
                return None;
            }
            assignments.push(Assignment {
                attnum: te.resno,
                not_null: attr.attnotnull,
                expr: te.expr,
            });
        }
        Some(assignments)
    }
}

/// Whether `expr` is an inet constant or an inet parameter bound by the client: a value the guard
/// can evaluate in the WHERE clause exactly as the assignment does. A multi-assignment's
/// `(a, b) = (SELECT ...)` arrives as a MULTIEXPR parameter, which only the assignment can read.
///
/// # Safety
/// `expr` must be NULL or a valid expression node.
unsafe fn is_plain_inet_value(expr: *mut pg_sys::Expr) -> bool {
    // SAFETY: the tag is checked before the node is read as that struct.
    unsafe {
        if expr.is_null() {
            false
        } else if pgrx::is_a(expr.cast(), pg_sys::NodeTag::T_Const) {
            (*expr.cast::<pg_sys::Const>()).consttype == pg_sys::INETOID
        } else if pgrx::is_a(expr.cast(), pg_sys::NodeTag::T_Param) {
            let param = &*expr.cast::<pg_sys::Param>();
            param.paramkind == pg_sys::ParamKind::PARAM_EXTERN && param.paramtype == pg_sys::INETOID
        } else {
            false
        }
    }
}

/// The columns named by the relation's scrub trigger, if it is there and fires in this session.
///
/// # Safety
/// `relation` must be open.
unsafe fn enabled_trigger_columns(relation: pg_sys::Relation) -> Vec<std::ffi::CString> {
    // SAFETY: trigdesc and its triggers belong to the open relation's cache entry.
    unsafe {
        let Some(trigdesc) = (*relation).trigdesc.as_ref() else {
            return Vec::new();
        };
        let replica =
            pg_sys::SessionReplicationRole == pg_sys::SESSION_REPLICATION_ROLE_REPLICA as i32;
        let Some(trigger) = triggers(trigdesc).iter().find(|t| is_scrub_trigger(t)) else {
            return Vec::new();
        };
        let fires = match trigger.tgenabled as u8 {
            pg_sys::TRIGGER_FIRES_ALWAYS => true,
            pg_sys::TRIGGER_FIRES_ON_ORIGIN => !replica,
            pg_sys::TRIGGER_FIRES_ON_REPLICA => replica,
            _ => false,
        };
        if !fires {
            return Vec::new();
        }
        trigger_args(trigger).map(CStr::to_owned).collect()
    }
}

/// `mastodon_ip_scrub._update_needed(inet, inet, boolean)`.
fn guard_function() -> Option<pg_sys::Oid> {
    extension_function(
        GUARD_FUNCTION,
        &[pg_sys::INETOID, pg_sys::INETOID, pg_sys::BOOLOID],
    )
}

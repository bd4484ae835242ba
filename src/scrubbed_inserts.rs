//! INSERTs whose plan already scrubs every protected value do not call the scrub trigger.
//!
//! A BEFORE INSERT row trigger costs each inserted row a trigger call, which for a narrow row like
//! login_activities' is about 5% of the INSERT. So the planner hook wraps each protected column's
//! value in the INSERT's target list as `mastodon_ip_scrub._stored(value, not_null)`: the
//! trigger's own rule, evaluated (under the settings in force then) while the row is formed.
//!
//! Whether the trigger may then stay idle is decided on the finished plan, after ExecutorStart, not
//! on what the planner hook did: when the subplan yields, for every column the trigger protects,
//! either that call (with the column's NOT NULL flag) or a NULL constant, "has BEFORE INSERT row
//! triggers" is cleared in the statement's private copy of the table's trigger list. Anything else
//! keeps the trigger: a plan made before the library was loaded, a value computed below the
//! subplan's top (ORDER BY, LIMIT, ...), another BEFORE INSERT row trigger (it could put an address
//! into NEW after the row was formed), a partitioned table, a column the trigger cannot read as
//! inet. A value then scrubbed twice is stored the same: scrubbing is idempotent.

use std::ffi::CStr;
use std::sync::atomic::{AtomicU32, Ordering};

use pgrx::pg_sys;
use pgrx::prelude::*;
use pgrx::PgList;

use crate::compat;
use crate::trigger::{
    all_targets, extension_function, fires_in_session, is_scrub_trigger, sole_before_row_trigger,
    Target,
};

/// `mastodon_ip_scrub._stored(inet, boolean)`, the trigger's rule for one value (functions.rs).
const STORED_FUNCTION: &CStr = c"_stored";
const STORED_ARGS: [pg_sys::Oid; 2] = [pg_sys::INETOID, pg_sys::BOOLOID];

/// The OID of `_stored` once looked up, else 0: the executor check runs for every INSERT, and
/// the look-up costs two catalog cache searches. Reset whenever pg_proc changes.
static STORED_OID: AtomicU32 = AtomicU32::new(0);

static mut PREVIOUS_PLANNER: pg_sys::planner_hook_type = None;
static mut PREVIOUS_EXECUTOR_START: pg_sys::ExecutorStart_hook_type = None;

/// Installs both hooks; called once from `_PG_init`.
pub fn install() {
    // SAFETY: _PG_init runs once per backend; chaining keeps other libraries' hooks working, and
    // the syscache callback stays valid for the backend's life. Plans cached before the library
    // was loaded are re-planned: redundant_updates::install resets the plan cache.
    unsafe {
        PREVIOUS_PLANNER = pg_sys::planner_hook;
        pg_sys::planner_hook = Some(plan_scrubbed_values);
        PREVIOUS_EXECUTOR_START = pg_sys::ExecutorStart_hook;
        pg_sys::ExecutorStart_hook = Some(executor_start);
        pg_sys::CacheRegisterSyscacheCallback(
            pg_sys::SysCacheIdentifier::PROCOID as _,
            Some(forget_stored_function),
            pg_sys::Datum::from(0),
        );
    }
}

#[pg_guard]
extern "C-unwind" fn forget_stored_function(_arg: pg_sys::Datum, _cache: i32, _hash: u32) {
    STORED_OID.store(0, Ordering::Relaxed);
}

/// `_stored`'s OID, if the extension exists in this database.
fn stored_function() -> Option<pg_sys::Oid> {
    match STORED_OID.load(Ordering::Relaxed) {
        0 => {
            let oid = extension_function(STORED_FUNCTION, &STORED_ARGS)?;
            STORED_OID.store(oid.to_u32(), Ordering::Relaxed);
            Some(oid)
        }
        oid => Some(pg_sys::Oid::from(oid)),
    }
}

#[pg_guard]
unsafe extern "C-unwind" fn plan_scrubbed_values(
    parse: *mut pg_sys::Query,
    query_string: *const std::ffi::c_char,
    cursor_options: i32,
    bound_params: pg_sys::ParamListInfo,
) -> *mut pg_sys::PlannedStmt {
    // SAFETY: PostgreSQL's arguments, passed on; the planner owns (and may change) the rewritten
    // query it is given, so adding to its target list is what planning does anyway.
    unsafe {
        let wrapped = match parse.as_mut() {
            Some(query) if query.commandType == pg_sys::CmdType::CMD_INSERT => {
                wrap_protected_values(query)
            }
            _ => None,
        };
        let planned = match PREVIOUS_PLANNER {
            Some(previous) => previous(parse, query_string, cursor_options, bound_params),
            None => pg_sys::standard_planner(parse, query_string, cursor_options, bound_params),
        };
        if let (Some(function), Some(statement)) = (wrapped, planned.as_mut()) {
            keep_row_copies(statement, function);
        }
        planned
    }
}

/// Takes the calls out again where they alone would make the executor build each row: an
/// `INSERT ... SELECT *` from a table with the same columns copies the scanned rows as they are,
/// and the trigger changes such a copy in place for far less than computing every column of a
/// new row costs (about 1,000 instructions per row against 2,200). The check at ExecutorStart
/// then finds no call, and the trigger fires.
///
/// # Safety
/// `statement` must be the plan just made for an INSERT.
unsafe fn keep_row_copies(statement: &mut pg_sys::PlannedStmt, function: pg_sys::Oid) {
    // SAFETY: per the contract; node tags are checked before each cast, and only the plan's own
    // target entries are changed.
    unsafe {
        let top = statement.planTree;
        if !pgrx::is_a(top.cast(), pg_sys::NodeTag::T_ModifyTable) {
            return;
        }
        let scan = (*top).lefttree;
        let heap_scan = [
            pg_sys::NodeTag::T_SeqScan,
            pg_sys::NodeTag::T_IndexScan,
            pg_sys::NodeTag::T_BitmapHeapScan,
        ]
        .into_iter()
        .any(|tag| pgrx::is_a(scan.cast(), tag));
        if !heap_scan {
            return;
        }
        let scanned = (*scan.cast::<pg_sys::Scan>()).scanrelid;
        let Some(rte) = usize::try_from(scanned)
            .ok()
            .and_then(|i| PgList::<pg_sys::RangeTblEntry>::from_pg(statement.rtable).get_ptr(i - 1))
            .and_then(|rte| rte.as_ref())
        else {
            return;
        };
        if rte.rtekind != pg_sys::RTEKind::RTE_RELATION {
            return;
        }
        // The planner holds a lock on every table the statement reads.
        let relation = pg_sys::relation_open(rte.relid, pg_sys::NoLock as _);
        let width = i64::from((*(*relation).rd_att).natts);
        pg_sys::relation_close(relation, pg_sys::NoLock as _);
        let output = PgList::<pg_sys::TargetEntry>::from_pg((*scan).targetlist);
        if output.len() as i64 != width {
            return;
        }
        // Column n of the scanned table, for every n, once the calls are taken out.
        let unwrapped = |expr: *mut pg_sys::Node| -> *mut pg_sys::Node {
            if stores_scrubbed_any(expr, function) {
                let call = &*expr.cast::<pg_sys::FuncExpr>();
                PgList::<pg_sys::Node>::from_pg(call.args)
                    .get_ptr(0)
                    .unwrap_or(expr)
            } else {
                expr
            }
        };
        let copies_row = output.iter_ptr().enumerate().all(|(i, te)| {
            let Some(te) = te.as_ref() else {
                return false;
            };
            let value = unwrapped(te.expr.cast());
            pgrx::is_a(value, pg_sys::NodeTag::T_Var) && {
                let var = &*value.cast::<pg_sys::Var>();
                var.varno as i64 == scanned as i64
                    && var.varlevelsup == 0
                    && i64::from(var.varattno) == i as i64 + 1
            }
        });
        if copies_row {
            for te in output.iter_ptr().filter_map(|te| te.as_mut()) {
                te.expr = unwrapped(te.expr.cast()).cast();
            }
        }
    }
}

/// Wraps the value of each protected inet column of an INSERT into a plain table in `_stored`;
/// returns the function's OID if it wrapped any. Leaves every other statement alone and never
/// raises an error: at worst the trigger fires.
///
/// # Safety
/// `query` must be a rewritten INSERT whose result relation is locked.
unsafe fn wrap_protected_values(query: &mut pg_sys::Query) -> Option<pg_sys::Oid> {
    // SAFETY: per the contract; the relation's cached descriptor and trigger list are only read,
    // and new nodes are built in the planner's memory context.
    unsafe {
        let rtable = PgList::<pg_sys::RangeTblEntry>::from_pg(query.rtable);
        let rte = usize::try_from(query.resultRelation - 1)
            .ok()
            .and_then(|i| rtable.get_ptr(i))
            .and_then(|rte| rte.as_ref())?;
        if rte.rtekind != pg_sys::RTEKind::RTE_RELATION
            || rte.relkind as u8 != pg_sys::RELKIND_RELATION
        {
            return None;
        }
        // The executor checks EXECUTE on the function: an admin who revoked it from PUBLIC must
        // not make the application's INSERTs fail.
        let function = stored_function().filter(|&f| compat::may_execute(f))?;
        let relation = pg_sys::relation_open(rte.relid, pg_sys::NoLock as _);
        let mut protected = Vec::new();
        if let Some(trigger) = (*relation)
            .trigdesc
            .as_ref()
            .and_then(|t| sole_before_row_trigger(t, pg_sys::TRIGGER_TYPE_INSERT))
            .filter(|t| is_scrub_trigger(t) && fires_in_session(t))
        {
            all_targets(trigger, &*relation, |target| {
                if !target.null_out {
                    protected.push((target.attnum, target.not_null));
                }
                true
            });
        }
        let tupdesc = (*relation).rd_att;
        let mut wrapped = false;
        for te in PgList::<pg_sys::TargetEntry>::from_pg(query.targetList).iter_ptr() {
            let Some(te) = te.as_mut().filter(|te| !te.resjunk) else {
                continue;
            };
            let Some(&(attnum, not_null)) = protected.iter().find(|p| p.0 == i32::from(te.resno))
            else {
                continue;
            };
            let Ok(index) = usize::try_from(attnum - 1) else {
                continue;
            };
            let attr = compat::attribute(tupdesc, index);
            let wrappable = attr.atttypid == pg_sys::INETOID
                && attr.attgenerated == 0
                && pg_sys::exprType(te.expr.cast()) == pg_sys::INETOID
                // The rewriter replaces a bare DEFAULT only; it would be left inside a call.
                && !pgrx::is_a(te.expr.cast(), pg_sys::NodeTag::T_SetToDefault)
                && !stores_scrubbed(te.expr.cast(), function, not_null);
            if wrappable {
                te.expr = stored_call(function, te.expr, not_null).cast();
                wrapped = true;
            }
        }
        pg_sys::relation_close(relation, pg_sys::NoLock as _);
        wrapped.then_some(function)
    }
}

/// `_stored(value, not_null)`.
///
/// # Safety
/// `value` must be an inet expression; the nodes are allocated in the current memory context.
unsafe fn stored_call(
    function: pg_sys::Oid,
    value: *mut pg_sys::Expr,
    not_null: bool,
) -> *mut pg_sys::FuncExpr {
    // SAFETY: per the contract; makeConst and makeFuncExpr only allocate nodes.
    unsafe {
        let flag = pg_sys::makeConst(
            pg_sys::BOOLOID,
            -1,
            pg_sys::InvalidOid,
            1,
            pg_sys::Datum::from(not_null),
            false,
            true,
        );
        let mut args = PgList::<pg_sys::Node>::new();
        args.push(value.cast());
        args.push(flag.cast());
        pg_sys::makeFuncExpr(
            function,
            pg_sys::INETOID,
            args.into_pg(),
            pg_sys::InvalidOid,
            pg_sys::InvalidOid,
            pg_sys::CoercionForm::COERCE_EXPLICIT_CALL,
        )
    }
}

/// Whether `expr` is `_stored(<anything>, not_null)`: its value is what the trigger would store.
///
/// # Safety
/// `expr` must be NULL or a valid expression node.
unsafe fn stores_scrubbed(expr: *mut pg_sys::Node, function: pg_sys::Oid, not_null: bool) -> bool {
    // SAFETY: node tags are checked before each cast; the argument list belongs to the node.
    unsafe {
        if !stores_scrubbed_any(expr, function) {
            return false;
        }
        let call = &*expr.cast::<pg_sys::FuncExpr>();
        let Some(flag) = PgList::<pg_sys::Node>::from_pg(call.args).get_ptr(1) else {
            return false;
        };
        if !pgrx::is_a(flag, pg_sys::NodeTag::T_Const) {
            return false;
        }
        let flag = &*flag.cast::<pg_sys::Const>();
        flag.consttype == pg_sys::BOOLOID
            && !flag.constisnull
            && (flag.constvalue.value() != 0) == not_null
    }
}

/// Whether `expr` is a two-argument call of `function` (`_stored`), whatever its flag.
///
/// # Safety
/// `expr` must be NULL or a valid expression node.
unsafe fn stores_scrubbed_any(expr: *mut pg_sys::Node, function: pg_sys::Oid) -> bool {
    // SAFETY: the tag is checked before the cast.
    unsafe {
        pgrx::is_a(expr, pg_sys::NodeTag::T_FuncExpr) && {
            let call = &*expr.cast::<pg_sys::FuncExpr>();
            call.funcid == function && PgList::<pg_sys::Node>::from_pg(call.args).len() == 2
        }
    }
}

/// Whether `expr` is a NULL constant.
///
/// # Safety
/// `expr` must be NULL or a valid expression node.
unsafe fn is_null_constant(expr: *mut pg_sys::Node) -> bool {
    // SAFETY: the tag is checked before the cast.
    unsafe {
        pgrx::is_a(expr, pg_sys::NodeTag::T_Const) && (*expr.cast::<pg_sys::Const>()).constisnull
    }
}

#[pg_guard]
unsafe extern "C-unwind" fn executor_start(query_desc: *mut pg_sys::QueryDesc, eflags: i32) {
    // SAFETY: PostgreSQL's arguments, passed on unchanged; after ExecutorStart the estate and its
    // opened result relations are set up, each with its own copy of the trigger list.
    unsafe {
        match PREVIOUS_EXECUTOR_START {
            Some(previous) => previous(query_desc, eflags),
            None => pg_sys::standard_ExecutorStart(query_desc, eflags),
        }
        if (*query_desc).operation != pg_sys::CmdType::CMD_INSERT {
            return;
        }
        let (estate, statement) = ((*query_desc).estate, (*query_desc).plannedstmt);
        if estate.is_null() || statement.is_null() {
            return;
        }
        let top = (*statement).planTree;
        if !pgrx::is_a(top.cast(), pg_sys::NodeTag::T_ModifyTable) {
            return;
        }
        let modify = &*top.cast::<pg_sys::ModifyTable>();
        let (subplan, targets) = (modify.plan.lefttree, modify.resultRelations);
        if modify.operation != pg_sys::CmdType::CMD_INSERT
            || subplan.is_null()
            || targets.is_null()
            || (*targets).length != 1
        {
            return;
        }
        let index = (*(*targets).elements).int_value;
        for relinfo in
            PgList::<pg_sys::ResultRelInfo>::from_pg((*estate).es_opened_result_relations)
                .iter_ptr()
        {
            let Some(info) = relinfo.as_ref() else {
                continue;
            };
            if i64::from(info.ri_RangeTableIndex) == i64::from(index)
                && values_scrubbed(info, subplan)
            {
                (*info.ri_TrigDesc).trig_insert_before_row = false;
            }
        }
    }
}

/// Whether the subplan of an INSERT into `relinfo` yields, for every column the scrub trigger
/// protects, `_stored(.., not_null)` or NULL, with the scrub trigger the table's one BEFORE INSERT
/// row trigger.
///
/// # Safety
/// `relinfo` must be the INSERT's result relation, opened by ExecutorStart, and `subplan` the
/// plan node below its ModifyTable.
unsafe fn values_scrubbed(relinfo: &pg_sys::ResultRelInfo, subplan: *mut pg_sys::Plan) -> bool {
    // SAFETY: per the contract; the trigger list is the statement's copy and the plan is only read.
    unsafe {
        let Some(trigdesc) = relinfo.ri_TrigDesc.as_ref() else {
            return false;
        };
        let relation = &*relinfo.ri_RelationDesc;
        if !trigdesc.trig_insert_before_row
            || (*relation.rd_rel).relkind as u8 != pg_sys::RELKIND_RELATION
        {
            return false;
        }
        let Some(ours) = sole_before_row_trigger(trigdesc, pg_sys::TRIGGER_TYPE_INSERT)
            .filter(|t| is_scrub_trigger(t))
        else {
            return false;
        };
        let Some(function) = stored_function() else {
            return false;
        };
        let output = PgList::<pg_sys::TargetEntry>::from_pg((*subplan).targetlist);
        all_targets(ours, relation, |target: &Target| {
            let Ok(index) = usize::try_from(target.attnum - 1) else {
                return false;
            };
            let attr = compat::attribute(relation.rd_att, index);
            let Some(value) = output
                .iter_ptr()
                .filter_map(|te| te.as_ref())
                .find(|te| !te.resjunk && i32::from(te.resno) == target.attnum)
            else {
                return false;
            };
            let expr = value.expr.cast::<pg_sys::Node>();
            !target.null_out
                && attr.attgenerated == 0
                && (stores_scrubbed(expr, function, target.not_null) || is_null_constant(expr))
        })
    }
}

//! What the trigger does on one table (its plan), and the cache that keeps plans: the protected
//! column names in the trigger's arguments, resolved against the table once per backend until the
//! table's relation cache entry is invalidated, and found through `fn_extra` for the rest of a
//! statement.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::ffi::{c_int, CStr};
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};

use pgrx::pg_sys::panic::ErrorReport;
use pgrx::pg_sys::{self, function_name};
use pgrx::prelude::*;
use pgrx::{PgLogLevel, PgMemoryContexts, PgSqlErrorCode};

use super::UPDATED_AT;
use crate::catalog::{protected_column, relation_name, trigger_args};

/// Registers what forgets plans when their table changes; called once from `_PG_init`.
pub fn install() {
    // SAFETY: _PG_init runs once per backend; the callback stays valid for the backend's life.
    unsafe { pg_sys::CacheRegisterRelcacheCallback(Some(forget_plans), pg_sys::Datum::from(0)) }
}

/// A protected column found in the table, with what to store there.
pub(super) struct Target {
    /// 1-based attribute number.
    pub(super) attnum: c_int,
    /// Store NULL would fail the row: use the loopback address where NULL is asked for.
    pub(super) not_null: bool,
    /// The column is no longer inet/cidr, so its values cannot be read as addresses: store NULL.
    pub(super) null_out: bool,
}

/// What one trigger does on one table, plus reusable per-row buffers.
pub(super) struct Plan {
    pub(super) relation: pg_sys::Oid,
    pub(super) targets: Vec<Target>,
    /// The highest attribute number among `targets`.
    pub(super) last_attnum: c_int,
    /// The `updated_at` column, the one other change a redundant UPDATE may carry.
    pub(super) updated_at: Option<i32>,
    pub(super) attnums: Vec<i32>,
    pub(super) values: Vec<pg_sys::Datum>,
    pub(super) nulls: Vec<bool>,
    /// Both rows of an UPDATE, deformed, when the redundancy check needs every column.
    pub(super) rows: Rows,
}

#[derive(Default)]
pub(super) struct Rows {
    pub(super) new_values: Vec<pg_sys::Datum>,
    pub(super) new_nulls: Vec<bool>,
    pub(super) old_values: Vec<pg_sys::Datum>,
    pub(super) old_nulls: Vec<bool>,
}

thread_local! {
    /// Plans by (trigger, table), kept for the backend's life: resolving the columns costs more
    /// than the rest of a one-row statement's trigger call, and Mastodon's writes are one-row
    /// statements. A plan is forgotten when its table's relation cache entry is invalidated (any
    /// ALTER TABLE, CREATE or DROP TRIGGER, ...), so it never outlives what it was built from;
    /// protect() gives a changed column list a new trigger, hence a new key.
    static PLANS: RefCell<HashMap<PlanKey, SharedPlan>> = RefCell::new(HashMap::new());
}
/// (trigger OID, table OID).
type PlanKey = (u32, u32);
type SharedPlan = Rc<RefCell<Plan>>;
/// Set when an invalidation arrived while PLANS was in use: the next look-up forgets every plan.
static PLANS_STALE: AtomicBool = AtomicBool::new(false);

#[pg_guard]
extern "C-unwind" fn forget_plans(_arg: pg_sys::Datum, relation: pg_sys::Oid) {
    let forgotten = PLANS.with(|plans| match plans.try_borrow_mut() {
        Ok(mut plans) if relation == pg_sys::InvalidOid => {
            plans.clear();
            true
        }
        Ok(mut plans) => {
            plans.retain(|&(_, table), _| table != relation.to_u32());
            true
        }
        Err(_) => false,
    });
    if !forgotten {
        PLANS_STALE.store(true, Ordering::Relaxed);
    }
}

/// The plan of one statement: the key it was found under, and the backend's shared plan.
pub(super) struct StatementPlan {
    pub(super) key: PlanKey,
    pub(super) plan: SharedPlan,
    /// The last (slot descriptor, table descriptor) pair seen, with the slot descriptor's type
    /// and width in case its memory was reused, and whether the first reads the table's rows: a
    /// statement keeps its slots, so this is decided once per statement rather than once per row.
    pub(super) slot_layout: Cell<Option<SlotLayout>>,
}

/// See `StatementPlan::slot_layout`.
type SlotLayout = (
    pg_sys::TupleDesc,
    pg_sys::TupleDesc,
    pg_sys::Oid,
    c_int,
    bool,
);

impl StatementPlan {
    /// Whether deforming a tuple of table descriptor `table` with slot descriptor `slot` reads
    /// attributes 1..=`upto` as the table does. An INSERT ... SELECT hands the trigger the scan's
    /// slot, described by the source, which PostgreSQL uses only when the rows match the table.
    ///
    /// # Safety
    /// Both must be valid descriptors that live as long as the statement.
    pub(super) unsafe fn reads_like(
        &self,
        slot: pg_sys::TupleDesc,
        table: pg_sys::TupleDesc,
        upto: c_int,
    ) -> bool {
        if slot == table {
            return true;
        }
        // SAFETY: per the contract.
        let (typid, natts) = unsafe { ((*slot).tdtypeid, (*slot).natts) };
        if let Some((seen, seen_table, seen_typid, seen_natts, verdict)) = self.slot_layout.get() {
            if (seen, seen_table, seen_typid, seen_natts) == (slot, table, typid, natts) {
                return verdict;
            }
        }
        // SAFETY: per the contract; attributes are read below each descriptor's natts.
        let verdict = unsafe {
            natts >= upto
                && (*table).natts >= upto
                && (0..usize::try_from(upto).unwrap_or(0)).all(|i| {
                    let (a, b) = (
                        crate::compat::attribute(slot, i),
                        crate::compat::attribute(table, i),
                    );
                    a.attlen == b.attlen && a.attalign == b.attalign && a.attbyval == b.attbyval
                })
        };
        self.slot_layout
            .set(Some((slot, table, typid, natts, verdict)));
        verdict
    }
}

/// The plan for this trigger firing: the statement's own (in `fn_extra`), else the backend's
/// cached one, else a new one.
///
/// # Safety
/// `trigdata` and `flinfo` must be the ones PostgreSQL passed to this call.
pub(super) unsafe fn plan_for<'a>(
    trigdata: &pg_sys::TriggerData,
    flinfo: *mut pg_sys::FmgrInfo,
) -> &'a StatementPlan {
    // SAFETY: tg_trigger and tg_relation are valid for the whole firing, per the trigger API.
    let (trigger, relation) = unsafe { (&*trigdata.tg_trigger, &*trigdata.tg_relation) };
    let key = (trigger.tgoid.to_u32(), relation.rd_id.to_u32());
    // SAFETY: flinfo is valid; fn_extra is NULL or a StatementPlan we stored for this FmgrInfo.
    unsafe {
        if let Some(statement) = ((*flinfo).fn_extra as *const StatementPlan).as_ref() {
            if statement.key == key {
                return statement;
            }
        }
    }
    let cached = PLANS.with(|plans| {
        let mut plans = plans.borrow_mut();
        if PLANS_STALE.swap(false, Ordering::Relaxed) {
            plans.clear();
        }
        plans.get(&key).cloned()
    });
    let plan = cached.unwrap_or_else(|| {
        // Built outside the borrow: the catalog look-ups can process invalidations (forget_plans).
        let plan = Rc::new(RefCell::new(build_plan(trigger, relation)));
        PLANS.with(|plans| plans.borrow_mut().insert(key, Rc::clone(&plan)));
        plan
    });
    // SAFETY: fn_mcxt outlives every call that can see fn_extra; the StatementPlan (and with it
    // this statement's reference to the plan) is dropped when that context is reset.
    unsafe {
        let statement =
            PgMemoryContexts::For((*flinfo).fn_mcxt).leak_and_drop_on_delete(StatementPlan {
                key,
                plan,
                slot_layout: Cell::new(None),
            });
        (*flinfo).fn_extra = statement.cast();
        &*statement
    }
}

/// Resolves `trigger`'s column names against `relation`.
fn build_plan(trigger: &pg_sys::Trigger, relation: &pg_sys::RelationData) -> Plan {
    // SAFETY: the trigger descriptor lives for the whole firing.
    let names: Vec<&CStr> = unsafe { trigger_args(trigger) }.collect();
    // rd_att is the relation's valid descriptor, open for the whole firing.
    let tupdesc = relation.rd_att;
    let targets: Vec<Target> = names
        .iter()
        .filter_map(|name| resolve(tupdesc, name, relation.rd_id))
        .collect();
    Plan {
        last_attnum: targets.iter().map(|t| t.attnum).max().unwrap_or(0),
        targets,
        // SAFETY: as above.
        updated_at: unsafe { protected_column(tupdesc, UPDATED_AT) }
            .map(|(attnum, _)| i32::from(attnum)),
        relation: relation.rd_id,
        attnums: Vec::with_capacity(names.len()),
        values: Vec::with_capacity(names.len()),
        nulls: Vec::with_capacity(names.len()),
        rows: Rows::default(),
    }
}

/// How to treat the protected column `name`, or `None` when the table no longer has it (a Mastodon
/// migration dropped or renamed it): writes must keep working, and there is nothing to scrub.
fn resolve(tupdesc: pg_sys::TupleDesc, name: &CStr, relation: pg_sys::Oid) -> Option<Target> {
    // SAFETY: `tupdesc` is the open relation's descriptor, which outlives the plan's construction.
    let (attnum, attr) = unsafe { protected_column(tupdesc, name) }?;
    let attnum = c_int::from(attnum);
    let name = name.to_string_lossy();
    // SAFETY: getBaseType only reads the type cache.
    let base = unsafe { pg_sys::getBaseType(attr.atttypid) };
    let null_out = base != pg_sys::INETOID && base != pg_sys::CIDROID;
    if null_out {
        let verdict = if attr.attnotnull {
            "it cannot be anonymized and keeps what is written (NOT NULL column)"
        } else {
            "NULL is stored instead of what is written"
        };
        let table = relation_name(relation);
        ErrorReport::new(
            PgSqlErrorCode::ERRCODE_WARNING,
            format!("mastodon_ip_scrub: protected column \"{name}\" of table {table} holds no IP address type; {verdict}"),
            function_name!(),
        )
        .set_hint(format!(
            "Make it inet, or stop protecting it: SELECT mastodon_ip_scrub.unprotect('{table}', '{name}');"
        ))
        .report(PgLogLevel::WARNING);
        if attr.attnotnull {
            return None;
        }
    }
    Some(Target {
        attnum,
        not_null: attr.attnotnull,
        null_out,
    })
}

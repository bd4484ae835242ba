//! `scrub_trigger()`: the BEFORE INSERT OR UPDATE FOR EACH ROW trigger that scrubs protected columns.
//!
//! The trigger's arguments name the protected columns (protect() keeps them in sync). They are
//! resolved against the table once per backend (until the table changes) and found through
//! `fn_extra` for the rest of a statement; every row after that
//! costs a settings read, one attribute fetch and a few byte comparisons per column. The fetch goes
//! through the executor's slot when the slot owns the row, so the executor reuses the deformed
//! values. A changed address has the same size as the written one, so when the row is the
//! executor's own materialized tuple it is overwritten in place; only otherwise (or to store NULL)
//! is a new tuple built, which would cost a deform, a form and a copy of the whole row.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::ffi::{c_int, CStr};
use std::net::{IpAddr, Ipv4Addr};
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};

use pgrx::pg_sys::panic::ErrorReport;
use pgrx::pg_sys::{self, function_name};
use pgrx::prelude::*;
use pgrx::{PgLogLevel, PgMemoryContexts, PgSqlErrorCode, PgTupleDesc};

use crate::inet::{Inet, Payload};
use crate::mask::{loopback_like, Policy};
use crate::redundant_updates::UPDATED_AT;
use crate::settings;

/// The scrub trigger's name on every protected table (sql/protection.sql creates it); `zz_` makes
/// it the last BEFORE trigger to fire.
pub const TRIGGER_NAME: &CStr = c"zz_mastodon_ip_scrub";
/// The extension's schema, which holds the trigger function.
pub const SCHEMA: &CStr = c"mastodon_ip_scrub";
const TRIGGER_FUNCTION: &CStr = c"scrub_trigger";

/// The OID of `mastodon_ip_scrub.scrub_trigger()` once a look-up confirmed it, else 0. Every
/// UPDATE asks is_scrub_trigger() for each of its table's triggers, and three catalog look-ups per
/// statement would cost more than the whole check; [`forget_scrub_function`] resets it whenever
/// pg_proc changes (the extension dropped and created again gives the function a new OID).
static SCRUB_FUNCTION: AtomicU32 = AtomicU32::new(0);

/// Registers what forgets the cached function OID and plans; called once from `_PG_init`.
pub fn install() {
    // SAFETY: _PG_init runs once per backend; the callbacks stay valid for the backend's life.
    unsafe {
        pg_sys::CacheRegisterSyscacheCallback(
            pg_sys::SysCacheIdentifier::PROCOID as c_int,
            Some(forget_scrub_function),
            pg_sys::Datum::from(0),
        );
        pg_sys::CacheRegisterRelcacheCallback(Some(forget_plans), pg_sys::Datum::from(0));
    }
}

#[pg_guard]
extern "C-unwind" fn forget_scrub_function(_arg: pg_sys::Datum, _cache: c_int, _hash: u32) {
    SCRUB_FUNCTION.store(0, Ordering::Relaxed);
}

/// Whether `trigger` is a scrub trigger: our name, running `mastodon_ip_scrub.scrub_trigger()`.
pub fn is_scrub_trigger(trigger: &pg_sys::Trigger) -> bool {
    // SAFETY: tgname is the trigger's NUL-terminated name; the syscache lookups return NULL for an
    // unknown oid.
    unsafe {
        if CStr::from_ptr(trigger.tgname) != TRIGGER_NAME {
            return false;
        }
        let function = trigger.tgfoid.to_u32();
        if function != 0 && SCRUB_FUNCTION.load(Ordering::Relaxed) == function {
            return true;
        }
        let name = pg_sys::get_func_name(trigger.tgfoid);
        let schema = pg_sys::get_namespace_name(pg_sys::get_func_namespace(trigger.tgfoid));
        let is_ours = !name.is_null()
            && !schema.is_null()
            && CStr::from_ptr(name) == TRIGGER_FUNCTION
            && CStr::from_ptr(schema) == SCHEMA;
        if is_ours {
            SCRUB_FUNCTION.store(function, Ordering::Relaxed);
        }
        is_ours
    }
}

/// The OID of our function `name(args)`, looked up on each use so a dropped and re-created
/// extension is found again. Read from the catalog caches directly: a look-up by qualified name
/// would check the application role's USAGE on our schema and fail its statement.
pub fn extension_function(name: &CStr, args: &[pg_sys::Oid]) -> Option<pg_sys::Oid> {
    // SAFETY: catalog cache look-ups that return InvalidOid for a missing entry; the argument
    // vector is palloc'd in the current memory context from `args`, which holds `len` OIDs.
    unsafe {
        let namespace = pg_sys::get_namespace_oid(SCHEMA.as_ptr(), true);
        if namespace == pg_sys::InvalidOid {
            return None;
        }
        let oid = pg_sys::GetSysCacheOid(
            pg_sys::SysCacheIdentifier::PROCNAMEARGSNSP as _,
            pg_sys::Anum_pg_proc_oid as _,
            pg_sys::Datum::from(name.as_ptr()),
            pg_sys::Datum::from(pg_sys::buildoidvector(
                args.as_ptr(),
                i32::try_from(args.len()).ok()?,
            )),
            pg_sys::Datum::from(namespace),
            pg_sys::Datum::from(0),
        );
        (oid != pg_sys::InvalidOid).then_some(oid)
    }
}

/// The triggers of `trigdesc`, as a slice.
///
/// # Safety
/// `trigdesc` must be a valid trigger descriptor, which must outlive the slice.
pub unsafe fn triggers(trigdesc: &pg_sys::TriggerDesc) -> &[pg_sys::Trigger] {
    if trigdesc.triggers.is_null() {
        return &[];
    }
    // SAFETY: per the contract, the non-NULL `triggers` holds `numtriggers` entries.
    unsafe {
        std::slice::from_raw_parts(
            trigdesc.triggers,
            usize::try_from(trigdesc.numtriggers).unwrap_or(0),
        )
    }
}

/// The arguments `trigger` was created with: for a scrub trigger, the protected column names.
///
/// # Safety
/// `trigger` must come from a valid trigger descriptor, which must outlive the names.
pub unsafe fn trigger_args(trigger: &pg_sys::Trigger) -> impl Iterator<Item = &CStr> {
    // SAFETY: per the contract, tgargs holds tgnargs NUL-terminated strings.
    (0..usize::try_from(trigger.tgnargs).unwrap_or(0))
        .map(|i| unsafe { CStr::from_ptr(*trigger.tgargs.add(i)) })
}

/// A protected column found in the table, with what to store there.
struct Target {
    /// 1-based attribute number.
    attnum: c_int,
    /// Store NULL would fail the row: use the loopback address where NULL is asked for.
    not_null: bool,
    /// The column is no longer inet/cidr, so its values cannot be read as addresses: store NULL.
    null_out: bool,
}

/// What one trigger does on one table, plus reusable per-row buffers.
struct Plan {
    relation: pg_sys::Oid,
    targets: Vec<Target>,
    /// The highest attribute number among `targets`.
    last_attnum: c_int,
    /// The `updated_at` column, the one other change a redundant UPDATE may carry.
    updated_at: Option<i32>,
    attnums: Vec<i32>,
    values: Vec<pg_sys::Datum>,
    nulls: Vec<bool>,
    /// Both rows of an UPDATE, deformed, when the redundancy check needs every column.
    rows: Rows,
}

#[derive(Default)]
struct Rows {
    new_values: Vec<pg_sys::Datum>,
    new_nulls: Vec<bool>,
    old_values: Vec<pg_sys::Datum>,
    old_nulls: Vec<bool>,
}

#[no_mangle]
#[doc(hidden)]
pub extern "C" fn pg_finfo_scrub_trigger() -> &'static pg_sys::Pg_finfo_record {
    const V1: pg_sys::Pg_finfo_record = pg_sys::Pg_finfo_record { api_version: 1 };
    &V1
}

/// Trigger entry point (SQL: `mastodon_ip_scrub.scrub_trigger()`).
///
/// # Safety
/// Called only by PostgreSQL's function manager with a valid `fcinfo`.
#[pg_guard]
#[no_mangle]
pub unsafe extern "C-unwind" fn scrub_trigger(fcinfo: pg_sys::FunctionCallInfo) -> pg_sys::Datum {
    // SAFETY: PostgreSQL passes a valid fcinfo; `context` is checked to be TriggerData before use.
    let (trigdata, flinfo) = unsafe {
        if !pgrx::trigger_support::called_as_trigger(fcinfo) {
            error!("mastodon_ip_scrub.scrub_trigger() can only be called as a trigger");
        }
        (
            &*((*fcinfo).context as *const pg_sys::TriggerData),
            (*fcinfo).flinfo,
        )
    };
    let event = trigdata.tg_event;
    let fires_per_row_before_write = pgrx::trigger_support::trigger_fired_before(event)
        && pgrx::trigger_support::trigger_fired_for_row(event)
        && (pgrx::trigger_support::trigger_fired_by_insert(event)
            || pgrx::trigger_support::trigger_fired_by_update(event));
    if !fires_per_row_before_write {
        error!(
            "mastodon_ip_scrub.scrub_trigger() must be fired BEFORE INSERT OR UPDATE FOR EACH ROW; \
             recreate it with mastodon_ip_scrub.protect()"
        );
    }
    let is_update = pgrx::trigger_support::trigger_fired_by_update(event);
    let (tuple, slot) = if is_update {
        (trigdata.tg_newtuple, trigdata.tg_newslot)
    } else {
        (trigdata.tg_trigtuple, trigdata.tg_trigslot)
    };

    let policy = settings::current_policy();
    if !policy.enabled {
        return pg_sys::Datum::from(tuple);
    }

    // SAFETY: trigdata comes from PostgreSQL for this firing; flinfo lives for the statement.
    // Nothing below runs SQL, so no other firing can borrow the plan meanwhile.
    let statement = unsafe { plan_for(trigdata, flinfo) };
    let mut plan = statement.plan.borrow_mut();
    let plan = &mut *plan;
    // SAFETY: tg_relation is open and locked for the statement, its tuple descriptor matches `tuple`.
    let tupdesc = unsafe { (*trigdata.tg_relation).rd_att };
    plan.attnums.clear();
    plan.values.clear();
    plan.nulls.clear();
    // SAFETY: slot and tuple are this firing's; a slot that owns a tuple is valid and not empty,
    // and its descriptor lives as long as the statement.
    let in_place = unsafe { slot_owns_tuple(slot, tuple) };
    let through_slot = in_place
        && unsafe { statement.reads_like((*slot).tts_tupleDescriptor, tupdesc, plan.last_attnum) };
    // SAFETY: `tuple` is valid.
    let held = c_int::from(unsafe { pg_sys::HeapTupleHeaderGetNatts((*tuple).t_data) });
    let mut scrubbed = false;

    for target in &plan.targets {
        // Deforming through the slot is PostgreSQL's fastest walk of a tuple, and the executor
        // reuses the values (for index entries). A column added after the row was formed is
        // left to attribute(), which takes its default from the table, not from the slot's
        // descriptor (the scan's, in INSERT ... SELECT).
        // SAFETY: `tuple` is this row's tuple, `slot` its owner, laid out alike up to `attnum`
        // when `through_slot`; `attnum` is a live attribute of `tupdesc`.
        let datum = unsafe {
            if through_slot && target.attnum <= held {
                slot_attribute(slot, target.attnum)
            } else {
                attribute(tuple, target.attnum, tupdesc)
            }
        };
        let Some(datum) = datum else {
            continue;
        };
        let (decision, payload) = if target.null_out {
            (Decision::Store(None), None)
        } else {
            // SAFETY: the plan admits only inet and cidr columns (and domains over them) here.
            let payload = unsafe { Payload::of(datum) };
            (
                decide(target, payload.read(), &policy, plan.relation),
                Some(payload),
            )
        };
        let stored = match decision {
            Decision::Keep => continue,
            Decision::Store(stored) => stored,
        };
        scrubbed = true;
        if let (true, Some(kept), Some(payload)) = (in_place, stored, payload) {
            // SAFETY: `tuple` is valid; t_data and t_len describe its bytes.
            let (data, len) = unsafe { ((*tuple).t_data.cast::<u8>(), (*tuple).t_len as usize) };
            // A payload inside the tuple is the stored value itself, not a detoasted copy or the
            // default of a column added later (kept in the relation cache). The slot's deformed
            // value points at these same bytes, so it reads the new address too.
            // SAFETY: the slot owns the tuple, and only the executor reads it next.
            if payload.lies_within(data, len) && unsafe { payload.overwrite(kept) } {
                continue;
            }
        }
        plan.attnums.push(target.attnum);
        plan.values
            .push(stored.map_or(pg_sys::Datum::from(0), Inet::to_datum));
        plan.nulls.push(stored.is_none());
    }

    let stored = if plan.attnums.is_empty() {
        tuple
    } else {
        // SAFETY: the arrays have equal length and name live attributes of `tupdesc`; the new
        // tuple is allocated in the per-tuple memory context PostgreSQL runs triggers in.
        unsafe {
            pg_sys::heap_modify_tuple_by_cols(
                tuple,
                tupdesc,
                plan.attnums.len() as i32,
                plan.attnums.as_mut_ptr(),
                plan.values.as_mut_ptr(),
                plan.nulls.as_mut_ptr(),
            )
        }
    };
    // Only a written address that scrubbing changed makes an UPDATE redundant: one that writes
    // the stored value itself is a touch (Mastodon's daily `updated_at` refresh) and must happen.
    // SAFETY: for an UPDATE, tg_trigtuple is the old row, a tuple of the same descriptor.
    if scrubbed
        && is_update
        && settings::skip_redundant_updates()
        && unsafe { plan.is_redundant(stored, trigdata.tg_trigtuple, tupdesc) }
    {
        // NULL skips the row. The statement-level guard (redundant_updates.rs) usually filters
        // such a row out before PostgreSQL locks it for this trigger.
        return pg_sys::Datum::from(0);
    }
    pg_sys::Datum::from(stored)
}

impl Plan {
    /// Whether row `new` holds the same bytes as `old` in every column but `updated_at`.
    ///
    /// The protected columns are compared first: they are what usually differs (an address from
    /// another network), and each costs one attribute fetch. Only when they agree are both rows
    /// deformed, each in one pass, and compared column by column.
    ///
    /// # Safety
    /// Both tuples must be valid tuples of `tupdesc`, the descriptor this plan was built for.
    unsafe fn is_redundant(
        &mut self,
        new: pg_sys::HeapTuple,
        old: pg_sys::HeapTuple,
        tupdesc: pg_sys::TupleDesc,
    ) -> bool {
        // SAFETY: per the contract; attribute() and heap_deform_tuple read the tuples' bytes (or
        // a missing column's default) into buffers of the descriptor's width.
        unsafe {
            for target in &self.targets {
                let attr = crate::compat::attribute(tupdesc, (target.attnum - 1) as usize);
                let (a, b) = (
                    attribute(new, target.attnum, tupdesc),
                    attribute(old, target.attnum, tupdesc),
                );
                let same = match (a, b) {
                    (None, None) => true,
                    (Some(a), Some(b)) => same_datum(a, b, attr.attbyval, attr.attlen),
                    _ => false,
                };
                if !same {
                    return false;
                }
            }
            let natts = usize::try_from((*tupdesc).natts).unwrap_or(0);
            let rows = &mut self.rows;
            for buffer in [&mut rows.new_values, &mut rows.old_values] {
                buffer.resize(natts, pg_sys::Datum::from(0));
            }
            for buffer in [&mut rows.new_nulls, &mut rows.old_nulls] {
                buffer.resize(natts, false);
            }
            pg_sys::heap_deform_tuple(
                new,
                tupdesc,
                rows.new_values.as_mut_ptr(),
                rows.new_nulls.as_mut_ptr(),
            );
            pg_sys::heap_deform_tuple(
                old,
                tupdesc,
                rows.old_values.as_mut_ptr(),
                rows.old_nulls.as_mut_ptr(),
            );
            let updated_at = self.updated_at.and_then(|a| usize::try_from(a - 1).ok());
            (0..natts).filter(|&i| Some(i) != updated_at).all(|i| {
                let attr = crate::compat::attribute(tupdesc, i);
                attr.attisdropped
                    || (rows.new_nulls[i] == rows.old_nulls[i]
                        && (rows.new_nulls[i]
                            || same_datum(
                                rows.new_values[i],
                                rows.old_values[i],
                                attr.attbyval,
                                attr.attlen,
                            )))
            })
        }
    }
}

/// Byte equality of two values of one column, as stored (a TOAST pointer compares as a pointer).
///
/// # Safety
/// Both datums must be non-NULL values of a column with this `byval` and `len`.
unsafe fn same_datum(a: pg_sys::Datum, b: pg_sys::Datum, byval: bool, len: i16) -> bool {
    if byval {
        return a == b;
    }
    // SAFETY: by-reference datums point at `len` bytes, a varlena (-1) or a C string (-2).
    unsafe {
        let (pa, pb) = (a.cast_mut_ptr::<u8>(), b.cast_mut_ptr::<u8>());
        let size = |p: *mut u8| -> usize {
            match len {
                -1 => pgrx::varsize_any(p.cast()),
                -2 => CStr::from_ptr(p.cast()).to_bytes_with_nul().len(),
                n => usize::try_from(n).unwrap_or(0),
            }
        };
        let (la, lb) = (size(pa), size(pb));
        la == lb && std::slice::from_raw_parts(pa, la) == std::slice::from_raw_parts(pb, lb)
    }
}

// nocachegetattr only walks the tuple's bytes: it neither allocates nor raises an error, so it is
// declared here without the error guard pgrx puts around every call, which costs about a third
// as much as the walk itself and would run for every protected value written.
unsafe extern "C" {
    fn nocachegetattr(
        tup: pg_sys::HeapTuple,
        attnum: c_int,
        tupdesc: pg_sys::TupleDesc,
    ) -> pg_sys::Datum;
}

/// The value of attribute `attnum` in `tuple`, or `None` for NULL: `heap_getattr` without the
/// per-call error guard, for attributes the tuple physically holds.
///
/// # Safety
/// `tuple` must be a valid heap tuple of `tupdesc`, and `attnum` one of its attributes (1-based).
unsafe fn attribute(
    tuple: pg_sys::HeapTuple,
    attnum: c_int,
    tupdesc: pg_sys::TupleDesc,
) -> Option<pg_sys::Datum> {
    // SAFETY: per the contract; the null bitmap covers every attribute the tuple holds.
    unsafe {
        let header = (*tuple).t_data;
        if attnum > c_int::from(pg_sys::HeapTupleHeaderGetNatts(header)) {
            // Added to the table after this row was formed: its default lives in the relation cache.
            let mut isnull = false;
            let datum = pg_sys::heap_getattr(tuple, attnum, tupdesc, &mut isnull);
            return (!isnull).then_some(datum);
        }
        let index = usize::try_from(attnum - 1).ok()?;
        let has_nulls = (*header).t_infomask & pg_sys::HEAP_HASNULL as u16 != 0;
        if has_nulls && (*(*header).t_bits.as_ptr().add(index / 8) & (1 << (index % 8))) == 0 {
            return None;
        }
        Some(nocachegetattr(tuple, attnum, tupdesc))
    }
}

// slot_getsomeattrs_int raises an error only for an attribute number outside the slot's
// descriptor, which the caller rules out; otherwise it only walks the tuple's bytes (or copies a
// missing column's default), so it too goes without the per-call error guard.
unsafe extern "C" {
    fn slot_getsomeattrs_int(slot: *mut pg_sys::TupleTableSlot, attnum: c_int);
}

/// The value of attribute `attnum` in `slot`, or `None` for NULL: `slot_getattr`, deforming the
/// slot's tuple up to `attnum` if it has not been yet.
///
/// # Safety
/// `slot` must be a valid, non-empty slot, and `attnum` one of its descriptor's attributes (1-based).
unsafe fn slot_attribute(
    slot: *mut pg_sys::TupleTableSlot,
    attnum: c_int,
) -> Option<pg_sys::Datum> {
    // SAFETY: per the contract; tts_values and tts_isnull hold the descriptor's natts entries, of
    // which the first tts_nvalid are filled.
    unsafe {
        if attnum > c_int::from((*slot).tts_nvalid) {
            slot_getsomeattrs_int(slot, attnum);
        }
        let index = usize::try_from(attnum - 1).ok()?;
        (!*(*slot).tts_isnull.add(index)).then(|| *(*slot).tts_values.add(index))
    }
}

/// What a protected column gets for one written value.
enum Decision {
    /// The written value may stay (already anonymized, or scrubbing is off).
    Keep,
    /// Store this instead; `None` is NULL.
    Store(Option<Inet>),
}

/// What `target` (an inet or cidr column) stores when `written` was written under `policy`;
/// `written` is `None` when the bytes were not a valid address. NULL is replaced by the loopback
/// address where the column is NOT NULL, so the write never fails on our account.
fn decide(
    target: &Target,
    written: Option<Inet>,
    policy: &Policy,
    relation: pg_sys::Oid,
) -> Decision {
    let Some(written) = written else {
        warning!(
            "mastodon_ip_scrub: unreadable address in attribute {} of table {}; storing {} instead",
            target.attnum,
            relation_name(relation),
            if target.not_null { "127.0.0.1" } else { "NULL" }
        );
        return Decision::Store(
            target
                .not_null
                .then(|| Inet::host(loopback_like(IpAddr::V4(Ipv4Addr::UNSPECIFIED)))),
        );
    };
    match written.stored(policy, target.not_null) {
        Some(kept) if kept == written => Decision::Keep,
        kept => Decision::Store(kept),
    }
}

/// Whether `tuple` is the materialized tuple that `slot` owns, i.e. what the executor stores if the
/// trigger returns it unchanged. PostgreSQL hands a trigger its slot's own tuple for heap slots, but
/// a copy for virtual or other slots: there, an in-place change would be silently lost.
///
/// # Safety
/// `slot` must be NULL or the slot PostgreSQL passed with `tuple` for this firing.
unsafe fn slot_owns_tuple(slot: *mut pg_sys::TupleTableSlot, tuple: pg_sys::HeapTuple) -> bool {
    // SAFETY: a non-NULL slot is valid for the firing; heap and buffer-heap slots (and only those)
    // begin with a HeapTupleTableSlot, whose `tuple` is the one they own once TTS_FLAG_SHOULDFREE is set.
    unsafe {
        let Some(slot) = slot.as_ref() else {
            return false;
        };
        let heap_slot = std::ptr::eq(slot.tts_ops, &raw const pg_sys::TTSOpsHeapTuple)
            || std::ptr::eq(slot.tts_ops, &raw const pg_sys::TTSOpsBufferHeapTuple);
        heap_slot
            && slot.tts_flags & pg_sys::TTS_FLAG_SHOULDFREE as u16 != 0
            && (*(slot as *const pg_sys::TupleTableSlot).cast::<pg_sys::HeapTupleTableSlot>()).tuple
                == tuple
    }
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
struct StatementPlan {
    key: PlanKey,
    plan: SharedPlan,
    /// The last (slot descriptor, table descriptor) pair seen, with the slot descriptor's type
    /// and width in case its memory was reused, and whether the first reads the table's rows: a
    /// statement keeps its slots, so this is decided once per statement rather than once per row.
    slot_layout: Cell<Option<SlotLayout>>,
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
    unsafe fn reads_like(
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
unsafe fn plan_for<'a>(
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
    // SAFETY: rd_att is the relation's valid descriptor; we neither free nor outlive it.
    let tupdesc = unsafe { PgTupleDesc::from_pg_unchecked(relation.rd_att) };
    let targets: Vec<Target> = names
        .iter()
        .filter_map(|name| resolve(&tupdesc, name, relation.rd_id))
        .collect();
    Plan {
        last_attnum: targets.iter().map(|t| t.attnum).max().unwrap_or(0),
        targets,
        updated_at: tupdesc
            .iter()
            .position(|a| {
                // SAFETY: attname is a NUL-terminated NameData.
                !a.attisdropped && unsafe { CStr::from_ptr(a.attname.data.as_ptr()) } == UPDATED_AT
            })
            .and_then(|i| i32::try_from(i + 1).ok()),
        relation: relation.rd_id,
        attnums: Vec::with_capacity(names.len()),
        values: Vec::with_capacity(names.len()),
        nulls: Vec::with_capacity(names.len()),
        rows: Rows::default(),
    }
}

/// How to treat the protected column `name`, or `None` when the table no longer has it (a Mastodon
/// migration dropped or renamed it): writes must keep working, and there is nothing to scrub.
fn resolve(tupdesc: &PgTupleDesc, name: &CStr, relation: pg_sys::Oid) -> Option<Target> {
    // Compared as bytes: names are in the server encoding, which need not be UTF-8.
    let (index, attr) = tupdesc.iter().enumerate().find(|(_, a)| {
        // SAFETY: attname is a NUL-terminated NameData.
        !a.attisdropped && unsafe { CStr::from_ptr(a.attname.data.as_ptr()) } == name
    })?;
    let name = name.to_string_lossy();
    let attnum = i32::try_from(index + 1).ok()?;
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

/// The table's name as `regclass` prints it (schema-qualified unless the search path finds it,
/// quoted where SQL needs it; the OID itself for a relation that is gone), for messages and hints.
pub fn relation_name(relation: pg_sys::Oid) -> String {
    // SAFETY: regclassout accepts any OID and returns a palloc'd C string.
    unsafe { pgrx::direct_function_call::<&CStr>(pg_sys::regclassout, &[relation.into_datum()]) }
        .map(|name| name.to_string_lossy().into_owned())
        .unwrap_or_else(|| relation.to_u32().to_string())
}

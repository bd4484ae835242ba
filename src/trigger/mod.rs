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
//!
//! - [`plan`]: the per-table plan and its cache;
//! - [`tuple`]: raw access to the row's values;
//! - [`redundancy`]: whether a scrubbed UPDATE changes anything.

mod plan;
mod redundancy;
mod tuple;

use std::ffi::{c_int, CStr};
use std::net::{IpAddr, Ipv4Addr};

use pgrx::pg_sys;
use pgrx::prelude::*;

use crate::catalog::relation_name;
use crate::inet::{Inet, Payload};
use crate::mask::loopback_like;
use crate::policy::Policy;
use crate::settings;
use plan::{plan_for, Target};
use tuple::{attribute, slot_attribute, slot_owns_tuple};

pub use plan::install;

/// Rails' timestamp column: the one other column Mastodon's redundant session UPDATE changes.
pub const UPDATED_AT: &CStr = c"updated_at";

crate::v1_function_info!(pg_finfo_scrub_trigger);

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
        // NULL skips the row. The statement-level guard (hooks/update_guard.rs) usually filters
        // such a row out before PostgreSQL locks it for this trigger.
        return pg_sys::Datum::from(0);
    }
    pg_sys::Datum::from(stored)
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
    match written.with(policy.stored(written.addr, target.not_null)) {
        Some(kept) if kept == written => Decision::Keep,
        kept => Decision::Store(kept),
    }
}

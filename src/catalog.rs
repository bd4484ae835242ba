//! The identity of the extension's own objects in the catalogs, for the trigger, both hooks and the
//! event triggers: the scrub trigger's name and function (recognised by OID, cached until pg_proc
//! changes), the extension's other functions by name and argument types, and a trigger's
//! arguments, which name the columns it protects.

use std::ffi::{c_int, CStr};
use std::sync::atomic::{AtomicU32, Ordering};

use pgrx::pg_sys;
use pgrx::prelude::*;

/// The scrub trigger's name on every protected table (_sync_trigger in sql/protect.sql creates it); `zz_` makes
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

/// Registers what forgets the cached function OID; called once from `_PG_init`.
pub fn install() {
    // SAFETY: _PG_init runs once per backend; the callback stays valid for the backend's life.
    unsafe {
        pg_sys::CacheRegisterSyscacheCallback(
            pg_sys::SysCacheIdentifier::PROCOID as c_int,
            Some(forget_scrub_function),
            pg_sys::Datum::from(0),
        );
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

/// The live column of `tupdesc` named `name` (a scrub trigger's argument), as its 1-based
/// attribute number and form; `None` when the table has no such column any more (a Mastodon
/// migration dropped or renamed it). The one way the trigger, the update guard and the trigger
/// skip find a protected column. Names are compared as bytes: they are in the server encoding,
/// which need not be UTF-8.
///
/// # Safety
/// `tupdesc` must be a valid tuple descriptor, which must outlive the returned form.
pub unsafe fn protected_column<'a>(
    tupdesc: *const pg_sys::TupleDescData,
    name: &CStr,
) -> Option<(pg_sys::AttrNumber, &'a pg_sys::FormData_pg_attribute)> {
    // SAFETY: per the contract, the descriptor holds `natts` forms with NUL-terminated names.
    unsafe {
        let natts = usize::try_from((*tupdesc).natts).unwrap_or(0);
        (0..natts).find_map(|index| {
            let attr = crate::compat::attribute(tupdesc, index);
            if attr.attisdropped || CStr::from_ptr(attr.attname.data.as_ptr()) != name {
                return None;
            }
            Some((pg_sys::AttrNumber::try_from(index + 1).ok()?, attr))
        })
    }
}

/// The table's name as `regclass` prints it (schema-qualified unless the search path finds it,
/// quoted where SQL needs it; the OID itself for a relation that is gone), for messages and hints.
pub fn relation_name(relation: pg_sys::Oid) -> String {
    // SAFETY: regclassout accepts any OID and returns a palloc'd C string.
    unsafe { pgrx::direct_function_call::<&CStr>(pg_sys::regclassout, &[relation.into_datum()]) }
        .map(|name| name.to_string_lossy().into_owned())
        .unwrap_or_else(|| relation.to_u32().to_string())
}

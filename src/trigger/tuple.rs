//! Raw access to the row a trigger fires for: attribute values read from a heap tuple or its
//! slot without pgrx's per-call error guard (these walks neither allocate nor raise), byte
//! equality of two stored values, and whether the trigger's tuple is the one its slot owns.

use std::ffi::{c_int, CStr};

use pgrx::pg_sys;

/// Byte equality of two values of one column, as stored (a TOAST pointer compares as a pointer).
///
/// # Safety
/// Both datums must be non-NULL values of a column with this `byval` and `len`.
pub(super) unsafe fn same_datum(a: pg_sys::Datum, b: pg_sys::Datum, byval: bool, len: i16) -> bool {
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
pub(super) unsafe fn attribute(
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
pub(super) unsafe fn slot_attribute(
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

/// Whether `tuple` is the materialized tuple that `slot` owns, i.e. what the executor stores if the
/// trigger returns it unchanged. PostgreSQL hands a trigger its slot's own tuple for heap slots, but
/// a copy for virtual or other slots: there, an in-place change would be silently lost.
///
/// # Safety
/// `slot` must be NULL or the slot PostgreSQL passed with `tuple` for this firing.
pub(super) unsafe fn slot_owns_tuple(
    slot: *mut pg_sys::TupleTableSlot,
    tuple: pg_sys::HeapTuple,
) -> bool {
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

//! The trigger's own check that an UPDATE it scrubbed changes nothing: Mastodon's per-request
//! session UPDATE, once its address is scrubbed, writes the row as it was (but for `updated_at`),
//! and the trigger then skips it. The statement-level guard (`update_guard`) usually filters such
//! a row out earlier; this catches what the guard cannot see.

use pgrx::pg_sys;

use super::plan::Plan;
use super::tuple::{attribute, same_datum};

impl Plan {
    /// Whether row `new` holds the same bytes as `old` in every column but `updated_at`.
    ///
    /// The protected columns are compared first: they are what usually differs (an address from
    /// another network), and each costs one attribute fetch. Only when they agree are both rows
    /// deformed, each in one pass, and compared column by column.
    ///
    /// # Safety
    /// Both tuples must be valid tuples of `tupdesc`, the descriptor this plan was built for.
    pub(super) unsafe fn is_redundant(
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

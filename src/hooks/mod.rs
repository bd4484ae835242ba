//! The two PostgreSQL hooks, both about UPDATEs the scrub trigger would have nothing to do for.
//! The trigger itself also skips a row whose scrubbed UPDATE changes nothing (`trigger::redundancy`);
//! these act earlier, per statement, where that is cheaper:
//!
//! - [`update_guard`] (post-parse-analysis hook): Mastodon's per-request session UPDATE gets a
//!   qual that filters out the row when its scrubbed address equals the stored one, before
//!   PostgreSQL locks the row;
//! - [`trigger_skip`] (ExecutorStart hook): an UPDATE that cannot change a protected column
//!   (assigns none, or only backfill's own stored form) runs without the trigger.

pub mod trigger_skip;
pub mod update_guard;

/// Installs both hooks; called once from `_PG_init`.
pub fn install() {
    update_guard::install();
    trigger_skip::install();
}

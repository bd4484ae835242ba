//! SQL-callable functions: `truncate()` for any query, `scrub()` to preview what the trigger stores.

use pgrx::prelude::*;
use pgrx::PgSqlErrorCode;

use crate::inet::Inet;
use crate::mask::{self, Prefixes};
use crate::settings;

/// `ip` with every bit past the prefix zeroed, as a host address (/32 or /128).
/// IPv4-mapped IPv6 addresses are masked with `ipv4_prefix` and keep the mapped form; other IPv6
/// forms that embed an IPv4 address keep no more of it than `ipv4_prefix` bits (mask::truncate).
#[pg_extern(immutable, strict, parallel_safe)]
fn truncate(ip: Inet, ipv4_prefix: default!(i32, 24), ipv6_prefix: default!(i32, 48)) -> Inet {
    match Prefixes::new(ipv4_prefix.into(), ipv6_prefix.into()) {
        Ok(prefixes) => Inet::host(mask::truncate(ip.addr, prefixes)),
        Err(e) => {
            ereport!(
                ERROR,
                PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE,
                format!("mastodon_ip_scrub.truncate: {e}")
            );
        }
    }
}

/// What a protected column stores when `ip` is written now, under the session's settings.
#[pg_extern(stable, strict, parallel_safe)]
fn scrub(ip: Inet) -> Option<Inet> {
    ip.with(settings::current_policy().apply(ip.addr))
}

// Internal helpers for sql/backfill.sql, sql/status.sql and the redundant-update guard. They
// apply the trigger's own rule (Inet::stored), so backfill, status() and the trigger agree.

/// What the trigger stores for `ip` in a column that is (or is not) NOT NULL.
#[pg_extern(stable, strict, parallel_safe, name = "_stored")]
fn stored(ip: Inet, not_null: bool) -> Option<Inet> {
    ip.with(settings::current_policy().stored(ip.addr, not_null))
}

/// Whether `ip` still holds more than what the trigger would store now; false for NULL.
#[pg_extern(stable, parallel_safe, name = "_pending")]
fn pending(ip: Option<Inet>, not_null: default!(bool, false)) -> bool {
    ip.is_some_and(|ip| ip.with(settings::current_policy().stored(ip.addr, not_null)) != Some(ip))
}

/// The guard hooks/update_guard.rs adds to an UPDATE that writes `new` over `old`: false only when
/// skipping is on and `new`, once scrubbed, is what is already stored. An assignment of the
/// stored value itself (a touch) is needed: the row's other changes, if any, must happen.
#[pg_extern(stable, parallel_safe, name = "_update_needed")]
fn update_needed(old: Option<Inet>, new: Option<Inet>, not_null: bool) -> bool {
    let policy = settings::current_policy();
    if !policy.enabled || !settings::skip_redundant_updates() {
        return true;
    }
    match new {
        Some(new) if old != Some(new) => new.with(policy.stored(new.addr, not_null)) != old,
        _ => true,
    }
}

/// The settings in force, as status() shows them.
#[pg_extern(stable, parallel_safe, name = "_settings")]
fn current_settings() -> TableIterator<
    'static,
    (
        name!(enabled, bool),
        name!(mode, String),
        name!(ipv4_prefix, i32),
        name!(ipv6_prefix, i32),
        name!(skip_redundant_updates, bool),
    ),
> {
    let policy = settings::current_policy();
    TableIterator::once((
        policy.enabled,
        policy.mode.to_string(),
        i32::from(policy.prefixes.ipv4()),
        i32::from(policy.prefixes.ipv6()),
        settings::skip_redundant_updates(),
    ))
}

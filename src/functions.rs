//! SQL-callable functions: `truncate()` for any query, `scrub()` to preview what the trigger stores,
//! and the internal helpers the SQL code and the hooks call.

use std::net::{IpAddr, Ipv4Addr};

use pgrx::prelude::*;
use pgrx::PgSqlErrorCode;

use crate::inet::{Inet, Payload};
use crate::mask::{self, loopback_like, Prefixes};
use crate::settings;

/// `ip` with every bit past the prefix zeroed, as a host address (/32 or /128).
/// IPv4-mapped IPv6 addresses are masked with `ipv4_prefix` and keep the mapped form.
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
    ip.scrubbed(&settings::current_policy())
}

// Internal helpers for sql/backfill.sql, sql/status.sql and the redundant-update guard. They
// apply the trigger's own rule (Inet::stored), so backfill, status() and the trigger agree.

#[no_mangle]
#[doc(hidden)]
pub extern "C" fn pg_finfo_stored_value() -> &'static pg_sys::Pg_finfo_record {
    const V1: pg_sys::Pg_finfo_record = pg_sys::Pg_finfo_record { api_version: 1 };
    &V1
}

/// `_stored(ip inet, not_null boolean) RETURNS inet`, STRICT (sql/trigger.sql): what the trigger
/// stores for `ip` in a column that is (or is not) NOT NULL, under the settings in force now. A
/// malformed value gives NULL (the loopback address when `not_null`) and a WARNING, as in the
/// trigger. Hand-written rather than `#[pg_extern]`: the planner puts it on every protected value
/// an INSERT writes (scrubbed_inserts.rs), and pgrx's argument and result glue would cost more
/// than the scrubbing.
///
/// # Safety
/// Called only by PostgreSQL's function manager, with the two non-NULL arguments declared above.
#[pg_guard]
#[no_mangle]
pub unsafe extern "C-unwind" fn stored_value(fcinfo: pg_sys::FunctionCallInfo) -> pg_sys::Datum {
    // SAFETY: per the contract: two arguments, neither NULL (STRICT), the first an inet datum.
    let (datum, not_null, written) = unsafe {
        let args = (*fcinfo).args.as_slice(2);
        (
            args[0].value,
            args[1].value.value() != 0,
            Payload::of(args[0].value).read(),
        )
    };
    let stored = match written {
        Some(written) => match written.stored(&settings::current_policy(), not_null) {
            Some(kept) if kept == written => return datum,
            stored => stored,
        },
        None => {
            warning!("mastodon_ip_scrub: unreadable inet value; storing NULL or the loopback address instead");
            not_null.then(|| Inet::host(loopback_like(IpAddr::V4(Ipv4Addr::UNSPECIFIED))))
        }
    };
    match stored {
        Some(stored) => stored.to_datum(),
        None => {
            // SAFETY: fcinfo is valid for this call; isnull is how a V1 function returns NULL.
            unsafe { (*fcinfo).isnull = true };
            pg_sys::Datum::from(0)
        }
    }
}

/// Whether `ip` still holds more than what the trigger would store now; false for NULL.
#[pg_extern(stable, parallel_safe, name = "_pending")]
fn pending(ip: Option<Inet>, not_null: default!(bool, false)) -> bool {
    ip.is_some_and(|ip| ip.stored(&settings::current_policy(), not_null) != Some(ip))
}

/// The guard redundant_updates.rs adds to an UPDATE that writes `new` over `old`: false only when
/// skipping is on and `new`, once scrubbed, is what is already stored. An assignment of the
/// stored value itself (a touch) is needed: the row's other changes, if any, must happen.
#[pg_extern(stable, parallel_safe, name = "_update_needed")]
fn update_needed(old: Option<Inet>, new: Option<Inet>, not_null: bool) -> bool {
    let policy = settings::current_policy();
    if !policy.enabled || !settings::skip_redundant_updates() {
        return true;
    }
    match new {
        Some(new) if old != Some(new) => new.stored(&policy, not_null) != old,
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

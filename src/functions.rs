//! SQL-callable functions: `truncate()` for any query, `scrub()` to preview what the trigger stores.

use pgrx::prelude::*;
use pgrx::PgSqlErrorCode;

use crate::inet::Inet;
use crate::mask::{self, Prefixes};
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

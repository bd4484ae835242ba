//! The `mastodon_ip_scrub.*` settings.
//!
//! All are PGC_SUSET: only a superuser (or a role granted SET ON PARAMETER) changes them, so the
//! application role that owns Mastodon's tables cannot switch scrubbing off for its own session.
//! Values are read on every write, so a change applies to the next row, in the same session too.

use pgrx::pg_sys;
use pgrx::{GucContext, GucEnum, GucFlags, GucRegistry, GucSetting};

use crate::mask::{Prefixes, DEFAULT_IPV4_PREFIX, DEFAULT_IPV6_PREFIX, IPV4_BITS, IPV6_BITS};
use crate::policy::{Mode, Policy};

static ENABLED: GucSetting<bool> = GucSetting::<bool>::new(true);
static MODE: GucSetting<ModeSetting> = GucSetting::<ModeSetting>::new(ModeSetting(Mode::Truncate));
static IPV4_PREFIX: GucSetting<i32> = GucSetting::<i32>::new(DEFAULT_IPV4_PREFIX as i32);
static IPV6_PREFIX: GucSetting<i32> = GucSetting::<i32>::new(DEFAULT_IPV6_PREFIX as i32);
static SKIP_REDUNDANT_UPDATES: GucSetting<bool> = GucSetting::<bool>::new(true);

/// One entry of the `mode` setting's table of names: a mode's ordinal is its index in `Mode::ALL`.
const fn mode_entry(ordinal: usize) -> pg_sys::config_enum_entry {
    pg_sys::config_enum_entry {
        name: Mode::ALL[ordinal].c_name().as_ptr(),
        val: ordinal as i32,
        hidden: false,
    }
}

/// The `mode` setting's names, NULL-terminated, as PostgreSQL reads them.
const MODE_ENTRIES: [pg_sys::config_enum_entry; Mode::ALL.len() + 1] = [
    mode_entry(0),
    mode_entry(1),
    mode_entry(2),
    pg_sys::config_enum_entry {
        name: std::ptr::null(),
        val: 0,
        hidden: false,
    },
];

/// The `mode` setting's value: the core's [`Mode`], in a type of this crate so that it can be a
/// GUC enum.
#[derive(Clone, Copy)]
struct ModeSetting(Mode);

// SAFETY: CONFIG_ENUM_ENTRY points at a promoted 'static, NULL-terminated array whose names are
// 'static C strings, and its `val`s are exactly the ordinals `from_ordinal` accepts.
unsafe impl GucEnum for ModeSetting {
    fn from_ordinal(ordinal: i32) -> Self {
        // PostgreSQL only stores values listed in CONFIG_ENUM_ENTRY; the fallback is the safe default.
        ModeSetting(
            usize::try_from(ordinal)
                .ok()
                .and_then(|i| Mode::ALL.get(i).copied())
                .unwrap_or(Mode::Truncate),
        )
    }

    fn to_ordinal(&self) -> i32 {
        Mode::ALL
            .iter()
            .position(|&m| m == self.0)
            .map_or(0, |i| i as i32)
    }

    const CONFIG_ENUM_ENTRY: *const pg_sys::config_enum_entry =
        &MODE_ENTRIES as *const _ as *const pg_sys::config_enum_entry;
}

/// Registers the settings; called once from `_PG_init`.
pub fn register() {
    GucRegistry::define_bool_guc(
        c"mastodon_ip_scrub.enabled",
        c"Anonymize IP addresses written to protected columns.",
        c"off stores written addresses unchanged (maintenance only).",
        &ENABLED,
        GucContext::Suset,
        GucFlags::default(),
    );
    GucRegistry::define_enum_guc(
        c"mastodon_ip_scrub.mode",
        c"What protected columns store: truncate, loopback or null.",
        c"truncate keeps the network prefix; loopback stores 127.0.0.1 or ::1; null stores NULL.",
        &MODE,
        GucContext::Suset,
        GucFlags::default(),
    );
    GucRegistry::define_int_guc(
        c"mastodon_ip_scrub.ipv4_prefix",
        c"Leading bits of an IPv4 address kept by mode truncate.",
        c"Also used for IPv4-mapped IPv6 addresses (::ffff:a.b.c.d).",
        &IPV4_PREFIX,
        0,
        IPV4_BITS.into(),
        GucContext::Suset,
        GucFlags::default(),
    );
    GucRegistry::define_int_guc(
        c"mastodon_ip_scrub.ipv6_prefix",
        c"Leading bits of an IPv6 address kept by mode truncate.",
        c"",
        &IPV6_PREFIX,
        0,
        IPV6_BITS.into(),
        GucContext::Suset,
        GucFlags::default(),
    );
    GucRegistry::define_bool_guc(
        c"mastodon_ip_scrub.skip_redundant_updates",
        c"Skip UPDATEs that, once the address is scrubbed, would change nothing but updated_at.",
        c"Mastodon rewrites session_activations.ip whenever the stored address differs from the \
          request's, which a scrubbed address always does: this stops every page view becoming a write.",
        &SKIP_REDUNDANT_UPDATES,
        GucContext::Suset,
        GucFlags::default(),
    );
    crate::compat::reserve_guc_prefix(c"mastodon_ip_scrub");
}

/// The settings in force for the current write.
pub fn current_policy() -> Policy {
    // SAFETY: a backend runs a single thread, so PostgreSQL never assigns these variables while we
    // read them. (GucSetting::get would re-check the thread on each of the four reads, and this
    // runs for every protected row written.)
    let (enabled, mode, ipv4, ipv6) = unsafe {
        (
            *ENABLED.as_ptr(),
            ModeSetting::from_ordinal(*MODE.as_ptr()).0,
            *IPV4_PREFIX.as_ptr(),
            *IPV6_PREFIX.as_ptr(),
        )
    };
    Policy {
        enabled,
        mode,
        // PostgreSQL enforces the ranges declared above; should that ever break, keep no bit at all.
        prefixes: Prefixes::new(ipv4.into(), ipv6.into()).unwrap_or(Prefixes::NONE),
    }
}

/// Whether an UPDATE that scrubbing makes redundant is skipped (`skip_redundant_updates`).
pub fn skip_redundant_updates() -> bool {
    // SAFETY: as in current_policy: single-threaded backend, read of a plain bool.
    unsafe { *SKIP_REDUNDANT_UPDATES.as_ptr() }
}

//! The decision: what the database keeps of one written address under the `mastodon_ip_scrub.*`
//! settings ([`Policy::apply`], [`Policy::stored`]), in each [`Mode`]. Keyed pseudonyms, when they
//! come, are another mode here.

use std::ffi::CStr;
use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

use crate::mask::{loopback_like, truncate, Prefixes};

/// What the trigger stores instead of the written address (`mastodon_ip_scrub.mode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Mode {
    /// Keep the network prefix, zero the host bits.
    Truncate,
    /// Replace every address with the loopback address of its family, as admins do by hand today.
    Loopback,
    /// Store no address at all.
    Null,
}

impl Mode {
    /// Every mode, in the order the `mode` setting lists them: a mode's index here is its ordinal.
    pub const ALL: [Mode; 3] = [Mode::Truncate, Mode::Loopback, Mode::Null];

    /// The name used in the setting and in documentation, as a C string (the setting's table of
    /// names is built from it): the one place the names are spelled.
    pub const fn c_name(self) -> &'static CStr {
        match self {
            Mode::Truncate => c"truncate",
            Mode::Loopback => c"loopback",
            Mode::Null => c"null",
        }
    }

    /// The name used in the setting and in documentation.
    ///
    /// ```
    /// use mastodon_ip_scrub_core::policy::Mode;
    /// assert_eq!(Mode::Loopback.name(), "loopback");
    /// assert_eq!("NULL".parse::<Mode>(), Ok(Mode::Null));
    /// ```
    pub fn name(self) -> &'static str {
        // The names are ASCII.
        self.c_name().to_str().unwrap_or("")
    }
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Mode {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Mode::ALL
            .into_iter()
            .find(|m| m.name().eq_ignore_ascii_case(s))
            .ok_or_else(|| {
                let names: Vec<&str> = Mode::ALL.iter().map(|m| m.name()).collect();
                format!(
                    "unknown mode \"{s}\" (expected one of: {})",
                    names.join(", ")
                )
            })
    }
}

/// Everything that decides what a protected column stores: the `mastodon_ip_scrub.*` settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Policy {
    pub enabled: bool,
    pub mode: Mode,
    pub prefixes: Prefixes,
}

impl Default for Policy {
    fn default() -> Self {
        Policy {
            enabled: true,
            mode: Mode::Truncate,
            prefixes: Prefixes::default(),
        }
    }
}

/// What to store for one written address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scrubbed {
    /// Store the written value exactly as it came (scrubbing disabled).
    Unchanged,
    /// Store this host address (netmask /32 or /128).
    Host(IpAddr),
    /// Store NULL.
    Null,
}

impl Policy {
    /// What the database keeps when `addr` is written under this policy.
    ///
    /// ```
    /// use mastodon_ip_scrub_core::policy::{Mode, Policy, Scrubbed};
    /// let addr = "203.0.113.77".parse().unwrap();
    /// assert_eq!(Policy::default().apply(addr), Scrubbed::Host("203.0.113.0".parse().unwrap()));
    /// let null = Policy { mode: Mode::Null, ..Policy::default() };
    /// assert_eq!(null.apply(addr), Scrubbed::Null);
    /// let off = Policy { enabled: false, ..Policy::default() };
    /// assert_eq!(off.apply(addr), Scrubbed::Unchanged);
    /// ```
    pub fn apply(&self, addr: IpAddr) -> Scrubbed {
        if !self.enabled {
            return Scrubbed::Unchanged;
        }
        match self.mode {
            Mode::Truncate => Scrubbed::Host(truncate(addr, self.prefixes)),
            Mode::Loopback => Scrubbed::Host(loopback_like(addr)),
            Mode::Null => Scrubbed::Null,
        }
    }

    /// What a protected column stores when `addr` is written under this policy: as
    /// [`Policy::apply`], except that a NOT NULL column (`not_null`) gets the loopback address of
    /// the same form instead of NULL, so the write never fails on our account.
    ///
    /// ```
    /// use mastodon_ip_scrub_core::policy::{Mode, Policy, Scrubbed};
    /// let null = Policy { mode: Mode::Null, ..Policy::default() };
    /// let addr = "203.0.113.77".parse().unwrap();
    /// assert_eq!(null.stored(addr, false), Scrubbed::Null);
    /// assert_eq!(null.stored(addr, true), Scrubbed::Host("127.0.0.1".parse().unwrap()));
    /// ```
    #[inline]
    pub fn stored(&self, addr: IpAddr, not_null: bool) -> Scrubbed {
        match self.apply(addr) {
            Scrubbed::Null if not_null => Scrubbed::Host(loopback_like(addr)),
            verdict => verdict,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{Ipv4Addr, Ipv6Addr};

    fn v4(s: &str) -> IpAddr {
        IpAddr::V4(s.parse::<Ipv4Addr>().unwrap())
    }

    fn v6(s: &str) -> IpAddr {
        IpAddr::V6(s.parse::<Ipv6Addr>().unwrap())
    }

    #[test]
    fn policy_modes() {
        let mut policy = Policy::default();
        assert_eq!(
            policy.apply(v4("192.0.2.9")),
            Scrubbed::Host(v4("192.0.2.0"))
        );
        policy.mode = Mode::Loopback;
        assert_eq!(
            policy.apply(v4("192.0.2.9")),
            Scrubbed::Host(v4("127.0.0.1"))
        );
        assert_eq!(policy.apply(v6("2001:db8::1")), Scrubbed::Host(v6("::1")));
        assert_eq!(
            policy.apply(v6("::ffff:192.0.2.9")),
            Scrubbed::Host(v6("::ffff:127.0.0.1"))
        );
        policy.mode = Mode::Null;
        assert_eq!(policy.apply(v4("192.0.2.9")), Scrubbed::Null);
        policy.enabled = false;
        assert_eq!(policy.apply(v4("192.0.2.9")), Scrubbed::Unchanged);
    }

    #[test]
    fn mode_names_round_trip() {
        for mode in Mode::ALL {
            assert_eq!(mode.name().parse::<Mode>(), Ok(mode));
            assert_eq!(mode.to_string(), mode.name());
        }
        assert_eq!("LOOPBACK".parse::<Mode>(), Ok(Mode::Loopback));
        assert!("hash".parse::<Mode>().is_err());
    }
}

//! Address masking:
//! [`truncate`] keeps an address's network prefix, also of an IPv4 address embedded in an IPv6
//! one, under validated [`Prefixes`]; [`loopback_like`] is the loopback address of the same form.
//! [`crate::policy`] decides which of these a written address gets.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnet::{Ipv4Net, Ipv6Net};

/// Longest IPv4 prefix (bits in an IPv4 address).
pub const IPV4_BITS: u8 = 32;
/// Longest IPv6 prefix (bits in an IPv6 address).
pub const IPV6_BITS: u8 = 128;
/// Prefixes used when nothing is configured: Google Analytics' choice, /24 keeps Mastodon's /16 sign-in check working.
pub const DEFAULT_IPV4_PREFIX: u8 = 24;
pub const DEFAULT_IPV6_PREFIX: u8 = 48;

/// Which prefix argument was out of range, and what was given.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PrefixError {
    Ipv4(i64),
    Ipv6(i64),
}

impl fmt::Display for PrefixError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            PrefixError::Ipv4(got) => write!(
                f,
                "ipv4_prefix must be between 0 and {IPV4_BITS}, got {got}"
            ),
            PrefixError::Ipv6(got) => write!(
                f,
                "ipv6_prefix must be between 0 and {IPV6_BITS}, got {got}"
            ),
        }
    }
}

impl std::error::Error for PrefixError {}

/// A validated pair of prefix lengths: IPv4 in 0..=32, IPv6 in 0..=128.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Prefixes {
    ipv4: u8,
    ipv6: u8,
}

impl Prefixes {
    /// Keeps no bit at all: the fail-closed choice when the configured prefixes cannot be read.
    pub const NONE: Prefixes = Prefixes { ipv4: 0, ipv6: 0 };

    /// Checks both lengths; the error names the first argument that is out of range.
    ///
    /// ```
    /// use mastodon_ip_scrub_core::mask::{PrefixError, Prefixes};
    /// assert_eq!(Prefixes::new(24, 48).map(|p| (p.ipv4(), p.ipv6())), Ok((24, 48)));
    /// assert_eq!(Prefixes::new(33, 48), Err(PrefixError::Ipv4(33)));
    /// ```
    pub fn new(ipv4: i64, ipv6: i64) -> Result<Self, PrefixError> {
        let ipv4 = u8::try_from(ipv4)
            .ok()
            .filter(|&p| p <= IPV4_BITS)
            .ok_or(PrefixError::Ipv4(ipv4))?;
        let ipv6 = u8::try_from(ipv6)
            .ok()
            .filter(|&p| p <= IPV6_BITS)
            .ok_or(PrefixError::Ipv6(ipv6))?;
        Ok(Prefixes { ipv4, ipv6 })
    }

    pub const fn ipv4(self) -> u8 {
        self.ipv4
    }

    pub const fn ipv6(self) -> u8 {
        self.ipv6
    }
}

impl Default for Prefixes {
    fn default() -> Self {
        Prefixes {
            ipv4: DEFAULT_IPV4_PREFIX,
            ipv6: DEFAULT_IPV6_PREFIX,
        }
    }
}

/// Zeroes every bit of `addr` past its family's prefix.
///
/// An IPv4-mapped IPv6 address (`::ffff:a.b.c.d`) keeps its mapped form but is masked with the IPv4
/// prefix on the embedded address: as plain IPv6, a /48 would erase it and a prefix of 96 or more
/// would keep the whole client address. Other IPv6 forms that carry an IPv4 address in known bits
/// ([`embedded_ipv4_offset`]) keep at most `ipv4` bits of it: their IPv6 prefix is shortened to
/// the embedding's offset plus the IPv4 prefix where that is shorter.
///
/// ```
/// use mastodon_ip_scrub_core::mask::{truncate, Prefixes};
/// let p = Prefixes::new(24, 48).unwrap();
/// assert_eq!(truncate("203.0.113.77".parse().unwrap(), p).to_string(), "203.0.113.0");
/// assert_eq!(truncate("2001:db8:1:2:3::9".parse().unwrap(), p).to_string(), "2001:db8:1::");
/// // IPv4-mapped: the IPv4 prefix applies to the embedded address.
/// assert_eq!(truncate("::ffff:198.51.100.7".parse().unwrap(), p).to_string(), "::ffff:198.51.100.0");
/// // 6to4 carries the IPv4 address in bits 16-47: at most 24 of them survive a /48.
/// assert_eq!(truncate("2002:c633:6407::1".parse().unwrap(), p).to_string(), "2002:c633:6400::");
/// ```
pub fn truncate(addr: IpAddr, prefixes: Prefixes) -> IpAddr {
    match addr {
        IpAddr::V4(v4) => IpAddr::V4(truncate_v4(v4, prefixes.ipv4)),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V6(truncate_v4(v4, prefixes.ipv4).to_ipv6_mapped()),
            None => IpAddr::V6(truncate_v6(v6, ipv6_bits_kept(v6, prefixes))),
        },
    }
}

/// How many leading bits of the (not IPv4-mapped) IPv6 address `addr` are kept: the IPv6 prefix,
/// or less where `addr` embeds an IPv4 address, so that no more than `ipv4` bits of that survive.
fn ipv6_bits_kept(addr: Ipv6Addr, prefixes: Prefixes) -> u8 {
    match embedded_ipv4_offset(addr) {
        Some(offset) => prefixes.ipv6.min(offset.saturating_add(prefixes.ipv4)),
        None => prefixes.ipv6,
    }
}

/// Where an IPv4 address begins inside `addr`, for the IPv6 forms that place one after a prefix
/// every such address shares (so keeping the bits before it reveals nothing of the client):
///
/// | form | prefix | IPv4 address in bits |
/// |---|---|---|
/// | 6to4 (RFC 3056) | `2002::/16` | 16–47 |
/// | NAT64 well-known prefix (RFC 6052) | `64:ff9b::/96` | 96–127 |
/// | NAT64 local-use prefix (RFC 8215) | `64:ff9b:1::/48` | 48 onwards, where depends on the operator's prefix length |
/// | Teredo (RFC 4380) | `2001::/32` | 96–127, the client's, bit-inverted (32–63 is the Teredo server's) |
/// | ISATAP (RFC 5214) | any /64 with interface identifier `0:5efe` or `200:5efe` | 96–127 |
/// | IPv4-compatible (RFC 4291, deprecated) | `::/96`, but not `::` or `::1` | 96–127 |
/// | IPv4-translated (RFC 2765) | `::ffff:0:0:0/96` | 96–127 |
///
/// IPv4-mapped addresses (`::ffff:0:0/96`) are not listed: [`truncate`] masks them as IPv4.
/// Operators' own NAT64 or 6rd prefixes cannot be recognised from the address alone.
///
/// ```
/// use mastodon_ip_scrub_core::mask::embedded_ipv4_offset;
/// assert_eq!(embedded_ipv4_offset("2002:c633:6407::1".parse().unwrap()), Some(16));
/// assert_eq!(embedded_ipv4_offset("64:ff9b::c633:6407".parse().unwrap()), Some(96));
/// assert_eq!(embedded_ipv4_offset("2001:db8::1".parse().unwrap()), None);
/// ```
pub fn embedded_ipv4_offset(addr: Ipv6Addr) -> Option<u8> {
    let bits = u128::from(addr);
    // From the earliest offset on: an address that matches two forms (an ISATAP identifier under
    // a 6to4 prefix) is cut at the first. Runs for every IPv6 address written, hence plain shifts.
    if bits >> 112 == 0x2002 {
        return Some(16);
    }
    if bits >> 80 == 0x0064_ff9b_0001 {
        return Some(48);
    }
    let top96 = bits >> 32;
    let interface_id_high = top96 as u32;
    let at_96 = top96 == 0x0064_ff9b_0000_0000_0000_0000
        || bits >> 96 == 0x2001_0000
        // The u and g bits of the identifier's first byte may be set (RFC 5214, 6.1).
        || interface_id_high & 0xfcff_ffff == 0x0000_5efe
        || (top96 == 0 && bits > 1)
        || top96 == 0xffff_0000;
    at_96.then_some(96)
}

fn truncate_v4(addr: Ipv4Addr, prefix: u8) -> Ipv4Addr {
    // `Prefixes` guarantees prefix <= 32, so construction cannot fail; the fallback is the all-zero
    // address, which leaks nothing should that guarantee ever be broken.
    Ipv4Net::new(addr, prefix).map_or(Ipv4Addr::UNSPECIFIED, |net| net.network())
}

fn truncate_v6(addr: Ipv6Addr, prefix: u8) -> Ipv6Addr {
    Ipv6Net::new(addr, prefix).map_or(Ipv6Addr::UNSPECIFIED, |net| net.network())
}

/// The loopback address in the same form as `addr` (IPv4, IPv4-mapped IPv6, or IPv6).
///
/// ```
/// use mastodon_ip_scrub_core::mask::loopback_like;
/// assert_eq!(loopback_like("203.0.113.77".parse().unwrap()).to_string(), "127.0.0.1");
/// assert_eq!(loopback_like("::ffff:203.0.113.77".parse().unwrap()).to_string(), "::ffff:127.0.0.1");
/// assert_eq!(loopback_like("2001:db8::1".parse().unwrap()).to_string(), "::1");
/// ```
pub fn loopback_like(addr: IpAddr) -> IpAddr {
    match addr {
        IpAddr::V4(_) => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(v6) if v6.to_ipv4_mapped().is_some() => {
            IpAddr::V6(Ipv4Addr::LOCALHOST.to_ipv6_mapped())
        }
        IpAddr::V6(_) => IpAddr::V6(Ipv6Addr::LOCALHOST),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn v4(s: &str) -> IpAddr {
        IpAddr::V4(s.parse().unwrap())
    }

    fn v6(s: &str) -> IpAddr {
        IpAddr::V6(s.parse().unwrap())
    }

    fn prefixes(a: i64, b: i64) -> Prefixes {
        Prefixes::new(a, b).unwrap()
    }

    /// Independent oracle: plain integer bit arithmetic, no ipnet, and its own table of the IPv6
    /// forms that embed an IPv4 address (value, length of the shared prefix, IPv4 offset).
    fn oracle(addr: IpAddr, p4: u8, p6: u8) -> IpAddr {
        fn mask32(x: u32, p: u8) -> u32 {
            if p == 0 {
                0
            } else {
                x & (u32::MAX << (32 - u32::from(p)))
            }
        }
        fn mask128(x: u128, p: u8) -> u128 {
            if p == 0 {
                0
            } else {
                x & (u128::MAX << (128 - u32::from(p)))
            }
        }
        match addr {
            IpAddr::V4(a) => IpAddr::V4(Ipv4Addr::from(mask32(u32::from(a), p4))),
            IpAddr::V6(a) => {
                let x = u128::from(a);
                if x >> 32 == 0xffff {
                    let low = mask32(x as u32, p4);
                    IpAddr::V6(Ipv6Addr::from((0xffffu128 << 32) | u128::from(low)))
                } else {
                    let keep = match oracle_offset(x) {
                        Some(offset) => p6.min(offset + p4),
                        None => p6,
                    };
                    IpAddr::V6(Ipv6Addr::from(mask128(x, keep)))
                }
            }
        }
    }

    /// Where the oracle finds an embedded IPv4 address, written out form by form.
    fn oracle_offset(x: u128) -> Option<u8> {
        const PREFIXED: [(u128, u32, u8); 4] = [
            (0x2002 << 112, 16, 16),        // 6to4
            (0x64_ff9b << 96, 96, 96),      // NAT64 well-known
            (0x64_ff9b_0001 << 80, 48, 48), // NAT64 local use
            (0x2001_0000 << 96, 32, 96),    // Teredo
        ];
        let iid_high = ((x >> 32) & 0xffff_ffff) as u32;
        let isatap = [0x0000_5efe, 0x0100_5efe, 0x0200_5efe, 0x0300_5efe].contains(&iid_high);
        let compatible = x >> 32 == 0 && x > 1;
        let translated = x >> 32 == 0xffff_0000;
        PREFIXED
            .iter()
            .filter(|&&(value, len, _)| x >> (128 - len) == value >> (128 - len))
            .map(|&(_, _, offset)| offset)
            .chain((isatap || compatible || translated).then_some(96))
            .min()
    }

    #[test]
    fn truncates_ipv4_to_prefix() {
        assert_eq!(
            truncate(v4("203.0.113.77"), prefixes(24, 48)),
            v4("203.0.113.0")
        );
        assert_eq!(
            truncate(v4("203.0.113.77"), prefixes(16, 48)),
            v4("203.0.0.0")
        );
        assert_eq!(truncate(v4("203.0.113.77"), prefixes(0, 48)), v4("0.0.0.0"));
        assert_eq!(
            truncate(v4("203.0.113.77"), prefixes(32, 48)),
            v4("203.0.113.77")
        );
        assert_eq!(
            truncate(v4("203.0.113.77"), prefixes(25, 48)),
            v4("203.0.113.0")
        );
        assert_eq!(
            truncate(v4("203.0.113.200"), prefixes(25, 48)),
            v4("203.0.113.128")
        );
    }

    #[test]
    fn truncates_ipv6_to_prefix() {
        let a = v6("2001:db8:abcd:1234:5678:9abc:def0:1234");
        assert_eq!(truncate(a, prefixes(24, 48)), v6("2001:db8:abcd::"));
        assert_eq!(truncate(a, prefixes(24, 64)), v6("2001:db8:abcd:1234::"));
        assert_eq!(truncate(a, prefixes(24, 0)), v6("::"));
        assert_eq!(truncate(a, prefixes(24, 128)), a);
        assert_eq!(truncate(a, prefixes(24, 52)), v6("2001:db8:abcd:1000::"));
    }

    #[test]
    fn masks_ipv4_mapped_with_the_ipv4_prefix() {
        let mapped = v6("::ffff:198.51.100.42");
        assert_eq!(
            truncate(mapped, prefixes(24, 48)),
            v6("::ffff:198.51.100.0")
        );
        // A v6 prefix of 128 must not keep the embedded client address.
        assert_eq!(
            truncate(mapped, prefixes(24, 128)),
            v6("::ffff:198.51.100.0")
        );
        assert_eq!(truncate(mapped, prefixes(8, 0)), v6("::ffff:198.0.0.0"));
    }

    #[test]
    fn ipv6_forms_that_embed_ipv4_keep_no_more_of_it_than_the_ipv4_prefix() {
        let p = prefixes(24, 48);
        // 6to4 of 203.0.113.77: /48 would be the whole IPv4 address; 16 + 24 bits are kept.
        assert_eq!(truncate(v6("2002:cb00:714d::1"), p), v6("2002:cb00:7100::"));
        assert_eq!(
            truncate(v6("2002:cb00:714d::1"), prefixes(8, 48)),
            v6("2002:cb00::")
        );
        assert_eq!(
            truncate(v6("2002:cb00:714d::1"), prefixes(24, 16)),
            v6("2002::")
        );
        // NAT64, well-known and local-use prefixes.
        assert_eq!(
            truncate(v6("64:ff9b::cb00:714d"), prefixes(24, 128)),
            v6("64:ff9b::cb00:7100")
        );
        assert_eq!(truncate(v6("64:ff9b::cb00:714d"), p), v6("64:ff9b::"));
        assert_eq!(
            truncate(v6("64:ff9b:1:cb00:71:4d00::"), prefixes(24, 128)),
            v6("64:ff9b:1:cb00::")
        );
        // Teredo: the client's address, inverted, in the last 32 bits.
        let teredo = v6("2001:0:4136:e378:8000:63bf:34ff:8eb2");
        assert_eq!(
            truncate(teredo, prefixes(24, 128)),
            v6("2001:0:4136:e378:8000:63bf:34ff:8e00")
        );
        assert_eq!(
            truncate(teredo, prefixes(0, 128)),
            v6("2001:0:4136:e378:8000:63bf::")
        );
        assert_eq!(truncate(teredo, p), v6("2001:0:4136::"));
        // ISATAP, IPv4-compatible and IPv4-translated addresses.
        assert_eq!(
            truncate(v6("2001:db8:1:2:200:5efe:cb00:714d"), prefixes(24, 128)),
            v6("2001:db8:1:2:200:5efe:cb00:7100")
        );
        assert_eq!(
            truncate(v6("::cb00:714d"), prefixes(24, 128)),
            v6("::cb00:7100")
        );
        assert_eq!(
            truncate(v6("::ffff:0:cb00:714d"), prefixes(16, 128)),
            v6("::ffff:0:cb00:0")
        );
        // Plain IPv6 keeps its prefix, also at 128, and :: and ::1 are not IPv4-compatible.
        let plain = v6("2001:db8:abcd:1234:5678:9abc:def0:1234");
        assert_eq!(truncate(plain, prefixes(0, 128)), plain);
        assert_eq!(truncate(v6("::1"), prefixes(0, 128)), v6("::1"));
    }

    #[test]
    fn embedded_ipv4_offsets_per_form() {
        let offset = |s: &str| embedded_ipv4_offset(s.parse().unwrap());
        assert_eq!(offset("2002:c633:642a::1"), Some(16));
        assert_eq!(offset("64:ff9b::c633:642a"), Some(96));
        assert_eq!(offset("64:ff9b:1::c633:642a"), Some(48));
        assert_eq!(offset("2001:0:4136:e378:8000:63bf:3fff:fdd2"), Some(96));
        assert_eq!(offset("fe80::5efe:c633:642a"), Some(96));
        assert_eq!(offset("2001:db8::200:5efe:c633:642a"), Some(96));
        assert_eq!(offset("::c633:642a"), Some(96));
        assert_eq!(offset("::ffff:0:c633:642a"), Some(96));
        // Two forms at once (an ISATAP identifier under a 6to4 prefix): the earlier offset.
        assert_eq!(offset("2002:cb00:714d:1:200:5efe:c633:642a"), Some(16));
        for plain in [
            "2001:db8::1",
            "2001:db8:4f1e:77::",
            "::",
            "::1",
            "::ffff:c633:642a",
            "64:ff9b:2::1",
        ] {
            assert_eq!(offset(plain), None, "{plain}");
        }
    }

    #[test]
    fn prefix_errors_name_the_argument() {
        assert_eq!(Prefixes::new(33, 48), Err(PrefixError::Ipv4(33)));
        assert_eq!(Prefixes::new(-1, 48), Err(PrefixError::Ipv4(-1)));
        assert_eq!(Prefixes::new(24, 129), Err(PrefixError::Ipv6(129)));
        assert_eq!(
            Prefixes::new(24, i64::MIN),
            Err(PrefixError::Ipv6(i64::MIN))
        );
        assert_eq!(
            PrefixError::Ipv4(33).to_string(),
            "ipv4_prefix must be between 0 and 32, got 33"
        );
        assert_eq!(
            PrefixError::Ipv6(200).to_string(),
            "ipv6_prefix must be between 0 and 128, got 200"
        );
        assert!(Prefixes::new(0, 0).is_ok());
        assert!(Prefixes::new(32, 128).is_ok());
    }

    fn any_addr() -> impl Strategy<Value = IpAddr> {
        prop_oneof![
            any::<u32>().prop_map(|x| IpAddr::V4(Ipv4Addr::from(x))),
            any::<u128>().prop_map(|x| IpAddr::V6(Ipv6Addr::from(x))),
            any::<u32>().prop_map(|x| IpAddr::V6(Ipv4Addr::from(x).to_ipv6_mapped())),
            embedding_ipv6().prop_map(|(a, _)| IpAddr::V6(a)),
        ]
    }

    /// An IPv6 address of one of the forms that embed an IPv4 address, with where that address
    /// starts, built from each form's definition (random bits wherever the form allows).
    fn embedding_ipv6() -> impl Strategy<Value = (Ipv6Addr, u8)> {
        (0usize..7, any::<u32>(), any::<u128>()).prop_map(|(form, v4, noise)| {
            let v4w = u128::from(v4);
            let (bits, offset) = match form {
                // 6to4: 2002:V4ADDR::/48, then subnet and interface identifier.
                0 => (
                    (0x2002 << 112) | (v4w << 80) | (noise & ((1 << 80) - 1)),
                    16,
                ),
                1 => ((0x64_ff9b << 96) | v4w, 96),
                // Local-use NAT64, /64 layout: IPv4 after the u octet; the offset stays the prefix's.
                2 => (
                    (0x64_ff9b_0001 << 80) | (noise & (0xffff << 64)) | (v4w << 24),
                    48,
                ),
                // Teredo: server address and flags/port at random, client address inverted.
                3 => (
                    (0x2001_0000 << 96) | (noise & (((1 << 64) - 1) << 32)) | (!v4w & 0xffff_ffff),
                    96,
                ),
                4 => ((noise & !((1 << 64) - 1)) | (0x0200_5efe << 32) | v4w, 96),
                5 => (v4w.max(2), 96),
                _ => ((0xffff_0000 << 32) | v4w, 96),
            };
            (Ipv6Addr::from(bits), offset)
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(20_000))]

        #[test]
        fn truncate_matches_bit_oracle(addr in any_addr(), p4 in 0u8..=32, p6 in 0u8..=128) {
            let p = prefixes(p4.into(), p6.into());
            prop_assert_eq!(truncate(addr, p), oracle(addr, p4, p6));
        }

        #[test]
        fn truncate_is_idempotent(addr in any_addr(), p4 in 0u8..=32, p6 in 0u8..=128) {
            let p = prefixes(p4.into(), p6.into());
            prop_assert_eq!(truncate(truncate(addr, p), p), truncate(addr, p));
        }

        #[test]
        fn truncate_keeps_no_bit_past_the_prefix(addr in any_addr(), p4 in 0u8..=32, p6 in 0u8..=128) {
            let p = prefixes(p4.into(), p6.into());
            match truncate(addr, p) {
                IpAddr::V4(a) => prop_assert_eq!(u32::from(a).checked_shl(u32::from(p4)).unwrap_or(0), 0),
                IpAddr::V6(a) => match a.to_ipv4_mapped() {
                    Some(m) => prop_assert_eq!(u32::from(m).checked_shl(u32::from(p4)).unwrap_or(0), 0),
                    None => prop_assert_eq!(u128::from(a).checked_shl(u32::from(p6)).unwrap_or(0), 0),
                },
            }
        }

        #[test]
        fn truncate_keeps_the_family(addr in any_addr(), p4 in 0u8..=32, p6 in 0u8..=128) {
            let p = prefixes(p4.into(), p6.into());
            prop_assert_eq!(truncate(addr, p).is_ipv4(), addr.is_ipv4());
        }

        #[test]
        fn embedded_ipv4_keeps_no_bit_past_the_ipv4_prefix(
            (addr, offset) in embedding_ipv6(), p4 in 0u8..=32, p6 in 0u8..=128,
        ) {
            let IpAddr::V6(stored) = truncate(IpAddr::V6(addr), prefixes(p4.into(), p6.into())) else {
                panic!("an IPv6 address came back as IPv4");
            };
            // Every bit from the IPv4 prefix's end onwards is zero: no more of it is stored.
            let kept = u32::from(offset + p4);
            prop_assert_eq!(u128::from(stored).checked_shl(kept).unwrap_or(0), 0);
            // Another form may match too (ISATAP under 6to4): then an earlier offset counts.
            prop_assert!(embedded_ipv4_offset(addr).is_some_and(|found| found <= offset));
        }

        #[test]
        fn every_exact_prefix_pair_is_accepted(p4 in 0i64..=32, p6 in 0i64..=128) {
            prop_assert!(Prefixes::new(p4, p6).is_ok());
        }

        #[test]
        fn out_of_range_prefixes_are_rejected(p4 in prop_oneof![i64::MIN..0, 33..i64::MAX], p6 in prop_oneof![i64::MIN..0, 129..i64::MAX]) {
            prop_assert_eq!(Prefixes::new(p4, 48), Err(PrefixError::Ipv4(p4)));
            prop_assert_eq!(Prefixes::new(24, p6), Err(PrefixError::Ipv6(p6)));
        }
    }

    proptest! {
        // Every (IPv4, IPv6) prefix pair for each sampled address: 4,257 checks per case.
        #![proptest_config(ProptestConfig::with_cases(300))]

        #[test]
        fn truncate_matches_bit_oracle_at_every_prefix_length(addr in any_addr()) {
            for p4 in 0..=IPV4_BITS {
                for p6 in 0..=IPV6_BITS {
                    prop_assert_eq!(truncate(addr, prefixes(p4.into(), p6.into())), oracle(addr, p4, p6));
                }
            }
        }
    }
}

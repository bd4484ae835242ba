//! PostgreSQL `inet`/`cidr` datums read and written directly, never through inet_in/inet_out.
//!
//! Both types share one varlena layout (utils/inet.h): a family byte, the netmask length, then 4 or
//! 16 address bytes. That layout is PostgreSQL's on-disk format, so it is the same in every major.
//! The codec takes no decision: [`crate::policy`] says what a column stores, this reads the bytes
//! in and writes them out.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use pgrx::callconv::{Arg, ArgAbi, BoxRet, FcInfo};
use pgrx::nullable::Nullable;
use pgrx::pg_sys;
use pgrx::{FromDatum, IntoDatum, PgMemoryContexts};

use crate::mask::{IPV4_BITS, IPV6_BITS};
use crate::policy::Scrubbed;

/// `PGSQL_AF_INET` / `PGSQL_AF_INET6`: `AF_INET + 0` and `AF_INET + 1`, with AF_INET = 2 on every
/// platform PostgreSQL supports. PostgreSQL stores these, not the OS's AF_INET6.
const PGSQL_AF_INET: u8 = 2;
const PGSQL_AF_INET6: u8 = 3;

/// One `inet` value: an address and its netmask length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Inet {
    pub addr: IpAddr,
    pub bits: u8,
}

impl Inet {
    /// A plain host address: netmask /32 or /128, what `host()` and Ruby's IPAddr read back as-is.
    pub fn host(addr: IpAddr) -> Self {
        let bits = if addr.is_ipv4() { IPV4_BITS } else { IPV6_BITS };
        Inet { addr, bits }
    }

    /// The value that the policy's verdict on this one's address stands for: this value itself
    /// (`Unchanged`), a host address, or NULL (`None`). No decision is taken here.
    #[inline]
    pub fn with(self, verdict: Scrubbed) -> Option<Inet> {
        match verdict {
            Scrubbed::Unchanged => Some(self),
            Scrubbed::Host(addr) => Some(Inet::host(addr)),
            Scrubbed::Null => None,
        }
    }

    /// The varlena payload (family, bits, address) in a fixed buffer, and its length.
    fn encode(self) -> ([u8; 18], usize) {
        let mut bytes = [0u8; 18];
        let octets: &[u8] = match &self.addr {
            IpAddr::V4(a) => {
                bytes[0] = PGSQL_AF_INET;
                &a.octets()[..]
            }
            IpAddr::V6(a) => {
                bytes[0] = PGSQL_AF_INET6;
                &a.octets()[..]
            }
        };
        bytes[1] = self.bits;
        bytes[2..2 + octets.len()].copy_from_slice(octets);
        (bytes, 2 + octets.len())
    }

    /// Parses the payload of an inet varlena (family, bits, address bytes).
    fn from_bytes(bytes: &[u8]) -> Option<Self> {
        let (&family, rest) = bytes.split_first()?;
        let (&bits, addr) = rest.split_first()?;
        let addr = match family {
            PGSQL_AF_INET => IpAddr::V4(Ipv4Addr::from(<[u8; 4]>::try_from(addr).ok()?)),
            PGSQL_AF_INET6 => IpAddr::V6(Ipv6Addr::from(<[u8; 16]>::try_from(addr).ok()?)),
            _ => return None,
        };
        let max = if addr.is_ipv4() { IPV4_BITS } else { IPV6_BITS };
        (bits <= max).then_some(Inet { addr, bits })
    }

    /// A new datum in the current memory context (in a trigger: the per-tuple context).
    pub fn to_datum(self) -> pg_sys::Datum {
        let (bytes, len) = self.encode();
        let total = pg_sys::VARHDRSZ + len;
        // SAFETY: CurrentMemoryContext is always valid; every byte is written below.
        let buf = unsafe { PgMemoryContexts::CurrentMemoryContext.palloc_slice::<u8>(total) };
        buf[pg_sys::VARHDRSZ..].copy_from_slice(&bytes[..len]);
        let ptr = buf.as_mut_ptr().cast::<pg_sys::varlena>();
        // SAFETY: `ptr` points at `total` bytes we own; a 4-byte varlena header fits the length.
        unsafe { pgrx::set_varsize_4b(ptr, total as i32) };
        pg_sys::Datum::from(ptr)
    }
}

/// Where the payload (family, bits, address) of a non-NULL inet or cidr datum lies: inside the
/// datum for plain values — all inet values in practice, being far too small to be compressed or
/// moved out of line — and in a detoasted copy otherwise. The header is parsed once, here.
pub struct Payload {
    ptr: *mut u8,
    len: usize,
}

impl Payload {
    /// # Safety
    /// `datum` must be a non-NULL inet or cidr datum (or of a domain over them) that outlives
    /// the returned value.
    #[inline(always)]
    pub unsafe fn of(datum: pg_sys::Datum) -> Self {
        let mut ptr = datum.cast_mut_ptr::<pg_sys::varlena>();
        // SAFETY: the caller guarantees a valid varlena; detoasting returns a valid plain copy.
        unsafe {
            if !is_plain(ptr) {
                ptr = pg_sys::pg_detoast_datum_packed(ptr);
            }
            Payload {
                ptr: pgrx::vardata_any(ptr).cast::<u8>().cast_mut(),
                len: pgrx::varsize_any_exhdr(ptr),
            }
        }
    }

    /// The value; `None` if the bytes are not a valid inet.
    #[inline]
    pub fn read(&self) -> Option<Inet> {
        // SAFETY: `ptr` and `len` describe the payload of a live varlena (see `of`).
        Inet::from_bytes(unsafe { std::slice::from_raw_parts(self.ptr, self.len) })
    }

    /// Whether the payload lies inside the `len` bytes at `start`.
    pub fn lies_within(&self, start: *const u8, len: usize) -> bool {
        let (at, from) = (self.ptr as usize, start as usize);
        at >= from && at + self.len <= from + len
    }

    /// Writes `value` over the payload when both have the same size (an address of the same
    /// family); returns false, writing nothing, otherwise.
    ///
    /// # Safety
    /// The payload must be writable, and nothing may rely on it still holding the old value.
    #[inline]
    pub unsafe fn overwrite(&self, value: Inet) -> bool {
        // SAFETY: passed on from the caller.
        unsafe {
            match value.addr {
                IpAddr::V4(a) => self.put(PGSQL_AF_INET, value.bits, a.octets()),
                IpAddr::V6(a) => self.put(PGSQL_AF_INET6, value.bits, a.octets()),
            }
        }
    }

    /// `overwrite` for one family: a fixed-size write (this runs for every scrubbed row).
    ///
    /// # Safety
    /// As for `overwrite`.
    #[inline(always)]
    unsafe fn put<const N: usize>(&self, family: u8, bits: u8, octets: [u8; N]) -> bool {
        if self.len != 2 + N {
            return false;
        }
        // SAFETY: the caller guarantees the `len` = 2 + N bytes at `ptr` are ours to write.
        unsafe {
            self.ptr.write(family);
            self.ptr.add(1).write(bits);
            self.ptr.add(2).cast::<[u8; N]>().write_unaligned(octets);
        }
        true
    }
}

/// Whether a varlena is stored inline and uncompressed (short or 4-byte header).
///
/// # Safety
/// `ptr` must point at a valid varlena header.
unsafe fn is_plain(ptr: *const pg_sys::varlena) -> bool {
    // SAFETY: the caller guarantees a valid header; these only read its first bytes.
    unsafe { (pgrx::varatt_is_1b(ptr) && !pgrx::varatt_is_1b_e(ptr)) || pgrx::varatt_is_4b_u(ptr) }
}

impl FromDatum for Inet {
    unsafe fn from_polymorphic_datum(
        datum: pg_sys::Datum,
        is_null: bool,
        _typoid: pg_sys::Oid,
    ) -> Option<Self> {
        // A malformed value reads as NULL: the most anonymized answer, never a full address.
        // SAFETY: pgrx only calls this with a datum of the declared SQL type, inet.
        (!is_null)
            .then(|| unsafe { Payload::of(datum) }.read())
            .flatten()
    }
}

impl IntoDatum for Inet {
    fn into_datum(self) -> Option<pg_sys::Datum> {
        Some(self.to_datum())
    }

    fn type_oid() -> pg_sys::Oid {
        pg_sys::INETOID
    }
}

// SAFETY: arguments are unboxed through FromDatum above, which reads exactly the inet layout.
unsafe impl<'fcx> ArgAbi<'fcx> for Inet {
    unsafe fn unbox_arg_unchecked(arg: Arg<'_, 'fcx>) -> Self {
        let index = arg.index();
        // SAFETY: pgrx calls this only for a non-NULL argument declared as inet.
        unsafe { arg.unbox_arg_using_from_datum() }
            .unwrap_or_else(|| pgrx::error!("argument {} is not a valid inet value", index + 1))
    }

    unsafe fn unbox_nullable_arg(arg: Arg<'_, 'fcx>) -> Nullable<Self> {
        // SAFETY: as above; a NULL argument yields None.
        unsafe { arg.unbox_arg_using_from_datum() }.into()
    }
}

// SAFETY: the returned datum is a freshly palloc'd inet varlena.
unsafe impl BoxRet for Inet {
    unsafe fn box_into<'fcx>(self, fcinfo: &mut FcInfo<'fcx>) -> pgrx::datum::Datum<'fcx> {
        // SAFETY: the datum is a valid inet value owned by the current memory context.
        unsafe { fcinfo.return_raw_datum(self.to_datum()) }
    }
}

pgrx::impl_sql_translatable!(Inet, "inet");

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_both_families() {
        assert_eq!(
            Inet::from_bytes(&[2, 24, 10, 1, 2, 3]),
            Some(Inet {
                addr: "10.1.2.3".parse().unwrap(),
                bits: 24
            })
        );
        let mut v6 = vec![3, 128];
        v6.extend_from_slice(&"2001:db8::1".parse::<Ipv6Addr>().unwrap().octets());
        assert_eq!(
            Inet::from_bytes(&v6),
            Some(Inet::host("2001:db8::1".parse().unwrap()))
        );
    }

    #[test]
    fn rejects_malformed_payloads() {
        assert_eq!(Inet::from_bytes(&[]), None);
        assert_eq!(Inet::from_bytes(&[2]), None);
        assert_eq!(
            Inet::from_bytes(&[2, 32, 10, 1, 2]),
            None,
            "short IPv4 address"
        );
        assert_eq!(
            Inet::from_bytes(&[2, 33, 10, 1, 2, 3]),
            None,
            "netmask past 32"
        );
        assert_eq!(
            Inet::from_bytes(&[3, 64, 10, 1, 2, 3]),
            None,
            "IPv6 family, IPv4 length"
        );
        assert_eq!(
            Inet::from_bytes(&[10, 32, 10, 1, 2, 3]),
            None,
            "OS AF_INET6 is not PostgreSQL's"
        );
    }
}

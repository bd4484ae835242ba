//! The pure core of mastodon_ip_scrub: what the database keeps of an IP address, with no
//! PostgreSQL in it, so that it is unit-, property- and doc-tested with plain `cargo test`.
//!
//! - [`mask`]: an address's network prefix, also of an IPv4 address embedded in an IPv6 one;
//! - [`policy`]: what a written address becomes under the settings (mode, prefixes, on or off).

pub mod mask;
pub mod policy;

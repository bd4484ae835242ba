//! mastodon_ip_scrub: a PostgreSQL extension that makes a Mastodon database store only anonymized
//! client IP addresses, whatever the application writes.
//!
//! - the pure core, crate `mastodon_ip_scrub_core` (core/, no PostgreSQL in it): [`mask`] keeps an
//!   address's network prefix, [`policy`] decides what the database keeps of a written address.
//! - [`inet`]: `inet` datums read and written directly.
//! - [`settings`]: the `mastodon_ip_scrub.*` GUCs.
//! - [`catalog`]: the identity of the extension's objects in the catalogs (trigger name and
//!   function, functions by name, a trigger's arguments), for the trigger, hooks and event triggers.
//! - [`trigger`]: the row trigger on protected tables: entry point, per-table plan cache, tuple
//!   access, and its own redundant-UPDATE check.
//! - [`hooks`]: the post-parse-analysis and ExecutorStart hooks that spare UPDATEs the trigger
//!   would have nothing to do for.
//! - [`functions`]: `truncate()`, `scrub()` and the helpers the SQL and hooks call.
//! - [`event_triggers`]: what sql/event_triggers.sql needs from a DDL command in C.
//! - [`owner`]: queries and DML on Mastodon's tables run as their owner, never as a superuser.
//! - [`compat`]: what differs between PostgreSQL 14 and 18.
//! - `sql/`: where protection state is kept (a large object behind two views), protect()/
//!   unprotect()/protect_mastodon(), status(), audit(), exempt(), the event triggers that keep
//!   protection through DDL, and backfill().

#![deny(unsafe_op_in_unsafe_fn)]

/// Declares `$finfo`, the record that tells PostgreSQL's function manager a hand-written C
/// function (one `LANGUAGE c` names directly, without `#[pg_extern]`) uses the V1 convention.
macro_rules! v1_function_info {
    ($finfo:ident) => {
        #[no_mangle]
        #[doc(hidden)]
        pub extern "C" fn $finfo() -> &'static ::pgrx::pg_sys::Pg_finfo_record {
            const V1: ::pgrx::pg_sys::Pg_finfo_record =
                ::pgrx::pg_sys::Pg_finfo_record { api_version: 1 };
            &V1
        }
    };
}
pub(crate) use v1_function_info;

pub mod catalog;
pub mod compat;
pub mod event_triggers;
pub mod functions;
pub mod hooks;
pub mod inet;
pub use mastodon_ip_scrub_core::{mask, policy};
pub mod owner;
pub mod settings;
pub mod trigger;

::pgrx::pg_module_magic!(name, version);

// The SQL, by job, each file after what it uses (sql/*.sql say what they hold).
pgrx::extension_sql_file!("../sql/bootstrap.sql", bootstrap);
pgrx::extension_sql_file!("../sql/trigger.sql", name = "trigger");
pgrx::extension_sql_file!(
    "../sql/catalog.sql",
    name = "catalog",
    requires = ["trigger"]
);
pgrx::extension_sql_file!(
    "../sql/replication.sql",
    name = "replication",
    requires = ["catalog"]
);
pgrx::extension_sql_file!(
    "../sql/config_store.sql",
    name = "config_store",
    requires = ["replication"]
);
pgrx::extension_sql_file!(
    "../sql/mastodon.sql",
    name = "mastodon",
    requires = ["config_store"]
);
pgrx::extension_sql_file!(
    "../sql/status.sql",
    name = "status",
    requires = ["mastodon"]
);
pgrx::extension_sql_file!(
    "../sql/protect.sql",
    name = "protect",
    requires = ["status"]
);
pgrx::extension_sql_file!(
    "../sql/backfill.sql",
    name = "backfill",
    requires = ["protect"]
);
pgrx::extension_sql_file!(
    "../sql/privacy_policy.sql",
    name = "privacy_policy",
    requires = ["protect"]
);
pgrx::extension_sql_file!(
    "../sql/event_triggers.sql",
    name = "event_triggers",
    requires = ["backfill", "privacy_policy"]
);
pgrx::extension_sql_file!("../sql/finalize.sql", finalize);

/// Library load: register the settings before any trigger can read them, so a value that a
/// non-superuser set as a placeholder beforehand is discarded, not applied.
#[pgrx::pg_guard]
pub extern "C-unwind" fn _PG_init() {
    settings::register();
    catalog::install();
    hooks::install();
    trigger::install();
}

// The in-database suites: each file holds a `#[pg_schema] mod tests`, the schema pgrx runs them in.
#[cfg(feature = "pg_test")]
#[path = "../pgrx-tests/mod.rs"]
mod pgrx_tests;

/// Hooks required by `cargo pgrx test`.
#[cfg(test)]
pub mod pg_test {
    pub fn setup(_options: Vec<&str>) {}

    #[must_use]
    pub fn postgresql_conf_options() -> Vec<&'static str> {
        vec![]
    }
}

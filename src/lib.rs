//! mastodon_ip_scrub: a PostgreSQL extension that makes a Mastodon database store only anonymized
//! client IP addresses, whatever the application writes.
//!
//! - [`mask`]: the pure-Rust core (no PostgreSQL): what an address becomes under a policy.
//! - [`inet`]: `inet` datums read and written directly.
//! - [`settings`]: the `mastodon_ip_scrub.*` GUCs.
//! - [`functions`]: `truncate()` and `scrub()`.
//! - [`trigger`]: the row trigger on protected tables.
//! - [`ddl`]: what the event triggers need to read from a DDL command.
//! - [`owner`]: queries and DML on Mastodon's tables run as their owner, never as a superuser.
//! - [`redundant_updates`]: keeps Mastodon's per-request session UPDATE from writing anything.
//! - [`untouched_updates`]: UPDATEs that cannot change a protected column (none assigned, or
//!   backfill's own stored form) skip the trigger's cost.
//! - [`compat`]: what differs between PostgreSQL 14 and 18.
//! - `sql/`: where protection state is kept (a large object behind two views), protect()/
//!   unprotect()/protect_mastodon(), status(), audit(), exempt(), the event triggers that keep
//!   protection through DDL, and backfill().

#![deny(unsafe_op_in_unsafe_fn)]

pub mod compat;
pub mod ddl;
pub mod functions;
pub mod inet;
pub mod mask;
pub mod owner;
pub mod redundant_updates;
pub mod settings;
pub mod trigger;
pub mod untouched_updates;

::pgrx::pg_module_magic!(name, version);

pgrx::extension_sql_file!("../sql/bootstrap.sql", bootstrap);
pgrx::extension_sql_file!("../sql/trigger.sql", name = "trigger");
pgrx::extension_sql_file!(
    "../sql/config_store.sql",
    name = "config_store",
    requires = ["trigger"]
);
pgrx::extension_sql_file!(
    "../sql/protection.sql",
    name = "protection",
    requires = ["config_store"]
);
pgrx::extension_sql_file!(
    "../sql/status.sql",
    name = "status",
    requires = ["protection"]
);
pgrx::extension_sql_file!(
    "../sql/backfill.sql",
    name = "backfill",
    requires = ["status"]
);
pgrx::extension_sql_file!(
    "../sql/replication.sql",
    name = "replication",
    requires = ["status"]
);
pgrx::extension_sql_file!(
    "../sql/privacy_policy.sql",
    name = "privacy_policy",
    requires = ["status"]
);
pgrx::extension_sql_file!(
    "../sql/event_triggers.sql",
    name = "event_triggers",
    requires = ["backfill"]
);
pgrx::extension_sql_file!("../sql/finalize.sql", finalize);

/// Library load: register the settings before any trigger can read them, so a value that a
/// non-superuser set as a placeholder beforehand is discarded, not applied.
#[pgrx::pg_guard]
pub extern "C-unwind" fn _PG_init() {
    settings::register();
    redundant_updates::install();
    untouched_updates::install();
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

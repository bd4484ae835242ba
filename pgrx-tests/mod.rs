//! In-database tests, run by `cargo pgrx test` against a real PostgreSQL.
//!
//! Every test runs in its own transaction, rolled back at the end, on a freshly loaded copy of the
//! Mastodon-shaped schema in fixtures/mastodon_schema.sql.

mod support;

mod cached_plans;
mod protect;
mod schema_drift;
mod settings;
mod sql_functions;
mod status;
mod trigger_skip;
mod update_guard;
mod write_paths;

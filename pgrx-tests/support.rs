//! Helpers shared by the in-database suites.

use pgrx::prelude::*;

/// Loads the Mastodon-shaped schema, one account and user (ids 1), and protects it as
/// CREATE EXTENSION does on an existing Mastodon database.
pub fn mastodon() {
    run(include_str!("fixtures/mastodon_schema.sql"));
    run("INSERT INTO accounts (id, username, created_at, updated_at) VALUES (1, 'alice', now(), now());
         INSERT INTO users (id, email, created_at, updated_at, account_id) VALUES (1, 'alice@example.org', now(), now(), 1);
         SELECT mastodon_ip_scrub.protect_mastodon();");
}

/// Runs one or more statements; any error fails the test.
pub fn run(sql: &str) {
    Spi::run(sql).unwrap_or_else(|e| panic!("{e}: {sql}"));
}

/// The first column of the first row a query returns (NULL or no row as None).
pub fn text(sql: &str) -> Option<String> {
    texts(sql).into_iter().next().flatten()
}

/// The first column of every row, in query order. The last statement's rows when given several.
pub fn texts(sql: &str) -> Vec<Option<String>> {
    Spi::connect_mut(|client| {
        client
            .update(sql, None, &[])
            .unwrap_or_else(|e| panic!("{e}: {sql}"))
            .map(|row| row.get::<String>(1).unwrap())
            .collect()
    })
}

/// The error message `sql` raises, or None when it succeeds. Runs in a subtransaction (a PL/pgSQL
/// exception block), so the test's transaction goes on either way.
/// Usable after SET ROLE too: the helper is created once per session, by whoever calls first.
pub fn error_of(sql: &str) -> Option<String> {
    if text("SELECT to_regprocedure('pg_temp.error_of(text)')::text").is_none() {
        run(
            "CREATE FUNCTION pg_temp.error_of(sql text) RETURNS text LANGUAGE plpgsql AS $$
             BEGIN EXECUTE sql; RETURN NULL; EXCEPTION WHEN OTHERS THEN RETURN SQLERRM; END $$;",
        );
    }
    Spi::get_one_with_args::<String>("SELECT pg_temp.error_of($1)", &[sql.into()])
        .unwrap_or_else(|e| panic!("{e}: {sql}"))
}

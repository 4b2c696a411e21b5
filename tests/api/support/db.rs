//! A fresh, migrated database for each test on the server DATABASE_URL names.

use mpp_cancel::store::{MIGRATOR, Store};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{ConnectOptions, Connection, PgPool};
use std::str::FromStr;

pub struct TestDb {
    pub options: PgConnectOptions,
    pub pool: PgPool,
}

pub fn server_options() -> PgConnectOptions {
    let url = std::env::var("DATABASE_URL").expect(
        "DATABASE_URL is not set: run the tests with scripts/test (it starts a private PostgreSQL)",
    );
    PgConnectOptions::from_str(&url)
        .expect("DATABASE_URL is a PostgreSQL URL")
        .disable_statement_logging()
}

impl TestDb {
    pub async fn new() -> Self {
        let server = server_options();
        let name = format!("mppc_test_{}", uuid::Uuid::new_v4().simple());
        let mut admin = sqlx::PgConnection::connect_with(&server)
            .await
            .expect("connect to the test server");
        sqlx::query(sqlx::AssertSqlSafe(format!(r#"CREATE DATABASE "{name}""#)))
            .execute(&mut admin)
            .await
            .expect("create the test database");
        admin.close().await.ok();
        let options = server.database(&name);
        let pool = PgPoolOptions::new()
            .max_connections(10)
            .connect_with(options.clone())
            .await
            .expect("connect to the test database");
        MIGRATOR.run(&pool).await.expect("migrations apply");
        Self { options, pool }
    }

    pub fn store(&self) -> Store {
        Store::new(self.pool.clone())
    }

    pub async fn count(&self, sql: &'static str) -> i64 {
        sqlx::query_scalar::<_, i64>(sql)
            .fetch_one(&self.pool)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"))
    }

    pub async fn state_of(&self, id: &str) -> Option<String> {
        sqlx::query_scalar("SELECT state FROM cancellations WHERE payment_request_id = $1")
            .bind(id)
            .fetch_optional(&self.pool)
            .await
            .expect("read state")
    }
}

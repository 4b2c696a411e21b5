//! The database's clock: the one every instance's due times, leases and requeues are counted on,
//! and the one each instance's own clock (which judges the cancellable period) is compared with.

use super::Store;
use chrono::{DateTime, Utc};

impl Store {
    /// The database's time now (`clock_timestamp()`: the moment of reading, not the start of a
    /// transaction).
    pub async fn database_time(&self) -> Result<DateTime<Utc>, sqlx::Error> {
        sqlx::query_scalar!(r#"SELECT clock_timestamp() AS "now!""#)
            .fetch_one(&self.pool)
            .await
    }
}

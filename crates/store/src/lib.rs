//! Database access for SQLite (embedded default) and PostgreSQL (scale-out) behind one API.
//!
//! Invariant: knows nothing about HTTP, FHIR servers or vendors. All SQL lives here; every query
//! is written once and runs on both engines (text ids, BIGINT Unix-millisecond times, `$n` binds).
//! Every PHI column goes through [`Phi`]; every PHI read or write appends an [`AuditEntry`].

mod audit;
mod clock;
mod phi;
mod queue;
mod visits;

use std::str::FromStr;
use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{PgPool, SqlitePool};

pub use audit::{AuditEntry, AuditRow};
pub use clock::Clock;
pub use phi::{Phi, SealedPhi};
pub use queue::{ClaimedDelivery, DeliveryRow, DeliveryStatus, QueueCounts};
pub use visits::{ArtifactRow, ConnectionRow, NewArtifact, NewVisit, VisitRow, WorkItem};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    #[error("migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("unsupported database URL scheme (expected sqlite: or postgres:): {0}")]
    UnsupportedUrl(String),
    #[error("{entity} {id} not found")]
    NotFound { entity: &'static str, id: String },
    #[error("{0}")]
    Conflict(String),
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
    #[error("cannot create the data directory {path}: {source}")]
    DataDir { path: String, source: std::io::Error },
}

impl StoreError {
    fn is_unique_violation(err: &sqlx::Error) -> bool {
        matches!(err, sqlx::Error::Database(db) if db.is_unique_violation())
    }
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// The one handle on the database. Each method runs the same SQL on whichever engine is behind it.
#[derive(Clone, Debug)]
pub enum Store {
    Sqlite(SqlitePool),
    Postgres(PgPool),
}

/// Runs `$body` with `$pool` bound to the concrete pool, compiling it once per engine.
macro_rules! on_pool {
    ($store:expr, $pool:ident => $body:expr) => {
        match $store {
            $crate::Store::Sqlite($pool) => $body,
            $crate::Store::Postgres($pool) => $body,
        }
    };
}
pub(crate) use on_pool;

impl Store {
    /// Connects to `sqlite:PATH` or `postgres://…` and applies the engine's migrations.
    pub async fn open(url: &str, max_connections: u32) -> Result<Store> {
        let store = if url.starts_with("sqlite:") {
            let options = SqliteConnectOptions::from_str(url)?
                .create_if_missing(true)
                .journal_mode(SqliteJournalMode::Wal)
                .synchronous(SqliteSynchronous::Normal)
                .foreign_keys(true)
                .busy_timeout(Duration::from_secs(10));
            if let Some(dir) = options.get_filename().parent()
                && !dir.as_os_str().is_empty()
            {
                std::fs::create_dir_all(dir)
                    .map_err(|source| StoreError::DataDir { path: dir.display().to_string(), source })?;
            }
            // SQLite has one writer. Concurrent write transactions on several connections meet
            // SQLITE_BUSY and sleep in the busy handler; one connection queues them in the pool
            // instead, which is both faster and the "single claimer" the queue relies on.
            let _ = max_connections;
            let pool = SqlitePoolOptions::new().max_connections(1).connect_with(options).await?;
            Store::Sqlite(pool)
        } else if url.starts_with("postgres:") || url.starts_with("postgresql:") {
            let options = PgConnectOptions::from_str(url)?;
            let pool = PgPoolOptions::new()
                .max_connections(max_connections.max(1))
                .acquire_timeout(Duration::from_secs(10))
                .connect_with(options)
                .await?;
            Store::Postgres(pool)
        } else {
            return Err(StoreError::UnsupportedUrl(url.split(':').next().unwrap_or_default().to_owned()));
        };
        store.migrate().await?;
        Ok(store)
    }

    async fn migrate(&self) -> Result<()> {
        match self {
            Store::Sqlite(pool) => sqlx::migrate!("./migrations/sqlite").run(pool).await?,
            Store::Postgres(pool) => sqlx::migrate!("./migrations/postgres").run(pool).await?,
        }
        Ok(())
    }

    pub fn engine(&self) -> &'static str {
        match self {
            Store::Sqlite(_) => "sqlite",
            Store::Postgres(_) => "postgres",
        }
    }

    pub async fn close(&self) {
        on_pool!(self, pool => pool.close().await)
    }
}

/// Creates database `name` on the PostgreSQL server of `admin_url` and returns its URL (scratch
/// databases for tests and benches). The admin connection runs no migrations.
pub async fn create_postgres_database(admin_url: &str, name: &str) -> Result<String> {
    if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
        return Err(StoreError::Conflict(format!("refusing database name {name:?}")));
    }
    let mut url = url::Url::parse(admin_url)
        .map_err(|_| StoreError::UnsupportedUrl(admin_url.split(':').next().unwrap_or_default().to_owned()))?;
    let admin = PgPoolOptions::new().max_connections(1).connect_with(PgConnectOptions::from_str(admin_url)?).await?;
    let created = sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}"))).execute(&admin).await;
    admin.close().await;
    created?;
    url.set_path(name);
    Ok(url.to_string())
}

//! Database access for SQLite (embedded default) and PostgreSQL (scale-out) behind one API.
//!
//! Invariant: knows nothing about HTTP, FHIR servers or vendors. All SQL lives here; every query
//! is written once and runs on both engines (text ids, BIGINT Unix-millisecond times, `$n` binds).
//! Every PHI column goes through [`Phi`]; every PHI read or write appends an [`AuditEntry`].

mod alerts;
mod analytics;
mod appointments;
mod audit;
mod baa_tasks;
mod break_glass;
mod care_plans;
mod clock;
mod consent_texts;
mod consents;
mod disclosures;
mod drafts;
mod identity;
mod key_admin;
mod keys;
mod leases;
mod orders;
mod phi;
mod portal;
mod queue;
mod retention;
mod signing_keys;
mod tokens;
mod visits;
mod webhooks;

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{PgPool, SqlitePool};

pub use alerts::AlertRow;
pub use analytics::{
    Breakdown, ClaimMissing, DAY_MS, FactDecision, FactDelivery, FactDimension, FactDraft, FactDuration, FactFilter,
    FactPredicate, FactReadback, FactSources, FactTotals, FactVisit, REFRESH_OVERLAP_MS, VisitFact, rollup_days,
};
pub use appointments::{AppointmentSnapshot, KnownAppointment};
pub use audit::{AuditEntry, AuditRow, CheckpointPass};
pub use baa_tasks::{BaaTask, Destroyed};
pub use break_glass::BreakGlassGrant;
pub use care_plans::{
    AdherenceEvent, CarePlanDraftRow, CarePlanSignature, NewCarePlanDraft, NewPatientTask, PatientTask,
};
pub use clock::Clock;
pub use consent_texts::{ConsentLink, ConsentText};
pub use consents::ConsentVersion;
pub use disclosures::{DisclosedArtifact, Disclosure};
pub use drafts::{DraftSignature, NewNoteDraft, NoteDraftRow};
pub use identity::{PendingLogin, SessionLimits, SessionRow, SmartLaunchState, TotpState, UserRow};
pub use key_admin::DataKeyStatus;
pub use keys::{Kek, KeyConfig};
pub use orders::{FINAL_ORDER_STATUSES, OpenOrder, TrackedOrder};
pub use phi::{PHI_COLUMNS, Phi};
pub use portal::{PortalLink, PortalRefusal};
pub use queue::{ClaimedDelivery, Completion, DeadLetter, DeliveryRow, DeliveryStatus, QueueCounts};
pub use retention::{AuditPurge, LegalHold, PURGED_PAYLOAD, PurgePage};
pub use signing_keys::{SYSTEM_TENANT, SigningKeyRow};
pub use telechart_audit::AuditOutcome;
pub use tokens::{ApiTokenRow, IssuedToken};
pub use visits::{
    ArtifactRow, ConnectionRow, EventRecord, LANE_BACKFILL, LANE_CLINICAL, NewArtifact, NewVisit, VisitRow, WorkItem,
};
pub use webhooks::{NewWebhook, WebhookOutcome, WebhookRow};

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
    #[error("encryption key: {0}")]
    Key(String),
    #[error("audit: {0}")]
    Audit(#[from] telechart_audit::AuditError),
    #[error("cannot create the data directory {path}: {source}")]
    DataDir { path: String, source: std::io::Error },
}

impl StoreError {
    fn is_unique_violation(err: &sqlx::Error) -> bool {
        matches!(err, sqlx::Error::Database(db) if db.is_unique_violation())
    }
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// The one handle on the database and the keys that seal its PHI. Each method runs the same SQL
/// on whichever engine is behind it.
#[derive(Clone)]
pub struct Store {
    db: Db,
    keys: Arc<keys::Keyring>,
}

/// The engine behind a [`Store`].
#[derive(Clone, Debug)]
pub enum Db {
    Sqlite(SqlitePool),
    Postgres(PgPool),
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Store({})", self.engine())
    }
}

/// Runs `$body` with `$pool` bound to the concrete pool, compiling it once per engine.
macro_rules! on_pool {
    ($store:expr, $pool:ident => $body:expr) => {
        match &$store.db {
            $crate::Db::Sqlite($pool) => $body,
            $crate::Db::Postgres($pool) => $body,
        }
    };
}
pub(crate) use on_pool;

impl Store {
    /// Connects to `sqlite:PATH` or `postgres://…` and applies the engine's migrations. PHI is
    /// sealed with data keys wrapped by `keys`.
    pub async fn open(url: &str, max_connections: u32, keys: KeyConfig) -> Result<Store> {
        let db = if url.starts_with("sqlite:") {
            let options = SqliteConnectOptions::from_str(url)?
                .create_if_missing(true)
                .journal_mode(SqliteJournalMode::Wal)
                .synchronous(SqliteSynchronous::Normal)
                .foreign_keys(true)
                .busy_timeout(Duration::from_secs(10))
                // SQLite's default 2 MiB page cache cannot hold the indexes of a large audit log
                // or queue: past ~10^6 records every append re-reads index pages from the OS
                // (26.7 µs per audited delivery at 10^6 records against 11.5 µs at 2·10^5).
                .pragma("cache_size", "-32768");
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
            Db::Sqlite(pool)
        } else if url.starts_with("postgres:") || url.starts_with("postgresql:") {
            let options = PgConnectOptions::from_str(url)?;
            let pool = PgPoolOptions::new()
                .max_connections(max_connections.max(1))
                .acquire_timeout(Duration::from_secs(10))
                .connect_with(options)
                .await?;
            Db::Postgres(pool)
        } else {
            return Err(StoreError::UnsupportedUrl(url.split(':').next().unwrap_or_default().to_owned()));
        };
        let store = Store { db, keys: Arc::new(keys::Keyring::new(keys)) };
        store.migrate().await?;
        store.chain_pending_audit().await?;
        Ok(store)
    }

    async fn migrate(&self) -> Result<()> {
        match &self.db {
            Db::Sqlite(pool) => sqlx::migrate!("./migrations/sqlite").run(pool).await?,
            Db::Postgres(pool) => sqlx::migrate!("./migrations/postgres").run(pool).await?,
        }
        Ok(())
    }

    pub fn engine(&self) -> &'static str {
        match &self.db {
            Db::Sqlite(_) => "sqlite",
            Db::Postgres(_) => "postgres",
        }
    }

    /// The raw pools, for operational checks and tests that inspect what is at rest.
    pub fn db(&self) -> &Db {
        &self.db
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

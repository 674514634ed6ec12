//! Virtual-care analytics: each KPI with its written definition (`kpi`), per-visit facts
//! derived from the recorded events and kept fresh (`facts`), the figures of a filter that the
//! dashboard, `/metrics`, the CSV and the daily report all read (`report`), and CSV (`export`).
//! The SQL lives in the store (`telechart_store::FactFilter` and friends).

pub mod bands;
pub mod export;
pub mod facts;
pub mod kpi;
pub mod prometheus;
pub mod report;

pub use facts::{Refreshed, refresh};
pub use kpi::{DEFINITIONS, Definition, Figure, Unit, definition, predicate};
pub use report::{Accuracy, FilterInput, Group, Report, report};

#[derive(Debug, thiserror::Error)]
pub enum AnalyticsError {
    #[error("{field}: {message}")]
    Invalid { field: &'static str, message: String },
    #[error("{field}: no visit has {value:?}")]
    UnknownFilter { field: &'static str, value: String },
    #[error("unknown KPI {0:?}")]
    UnknownKpi(String),
    #[error("unknown drill-down {0:?}")]
    UnknownDrill(String),
    #[error(transparent)]
    Store(#[from] telechart_store::StoreError),
    #[error("CSV: {0}")]
    Csv(String),
}

impl AnalyticsError {
    /// Whether the caller's input is at fault (as opposed to the database).
    pub fn is_bad_input(&self) -> bool {
        !matches!(self, AnalyticsError::Store(_) | AnalyticsError::Csv(_))
    }
}

//! One error type for every handler, and one table from error kind to HTTP status and
//! OperationOutcome issue code. Client errors are answered precisely and not logged as failures;
//! internal errors answer a bare message and are logged (without PHI).

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use telechart_fhir::{IssueType, OperationOutcome};
use telechart_store::StoreError;
use telechart_visit::VisitError;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{0}")]
    Malformed(String),
    #[error("{message}")]
    Invalid { field: Option<String>, message: String },
    #[error("{message}")]
    NotFound { field: Option<String>, message: String },
    #[error("{message}")]
    Conflict { field: Option<String>, message: String },
    #[error("authentication required")]
    Unauthorized,
    #[error("a second factor is required for this role")]
    MfaRequired,
    #[error("too many wrong codes; try again in a few minutes")]
    TooManyAttempts,
    #[error("{0}")]
    Forbidden(String),
    #[error("this method is not allowed on this endpoint")]
    MethodNotAllowed,
    #[error("{0}")]
    BadGateway(String),
    #[error("internal error")]
    Internal(String),
}

impl ApiError {
    pub fn invalid(field: impl Into<String>, message: impl Into<String>) -> Self {
        ApiError::Invalid { field: Some(field.into()), message: message.into() }
    }

    fn parts(&self) -> (StatusCode, IssueType, Option<&str>) {
        match self {
            ApiError::Malformed(_) => (StatusCode::BAD_REQUEST, IssueType::Structure, None),
            ApiError::Invalid { field, .. } => (StatusCode::UNPROCESSABLE_ENTITY, IssueType::Invalid, field.as_deref()),
            ApiError::NotFound { field, .. } => (StatusCode::NOT_FOUND, IssueType::NotFound, field.as_deref()),
            ApiError::Conflict { field, .. } => (StatusCode::CONFLICT, IssueType::Conflict, field.as_deref()),
            ApiError::Unauthorized | ApiError::MfaRequired => (StatusCode::UNAUTHORIZED, IssueType::Security, None),
            ApiError::Forbidden(_) => (StatusCode::FORBIDDEN, IssueType::Forbidden, None),
            ApiError::TooManyAttempts => (StatusCode::TOO_MANY_REQUESTS, IssueType::Throttled, None),
            ApiError::MethodNotAllowed => (StatusCode::METHOD_NOT_ALLOWED, IssueType::NotSupported, None),
            ApiError::BadGateway(_) => (StatusCode::BAD_GATEWAY, IssueType::Transient, None),
            ApiError::Internal(_) => (StatusCode::INTERNAL_SERVER_ERROR, IssueType::Exception, None),
        }
    }
}

impl From<VisitError> for ApiError {
    fn from(err: VisitError) -> Self {
        let field = err.field().map(str::to_owned);
        match err {
            VisitError::IllegalTransition { .. } | VisitError::WrongState { .. } => {
                ApiError::Conflict { field, message: err.to_string() }
            }
            VisitError::InvalidField { .. } => ApiError::Invalid { field, message: err.to_string() },
        }
    }
}

impl From<StoreError> for ApiError {
    fn from(err: StoreError) -> Self {
        match err {
            StoreError::Conflict(message) => ApiError::Conflict { field: None, message },
            StoreError::NotFound { entity, id } => {
                ApiError::NotFound { field: None, message: format!("{entity} {id} not found") }
            }
            other => ApiError::Internal(other.to_string()),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, code, field) = self.parts();
        let message = match &self {
            ApiError::Internal(detail) => {
                tracing::error!(error = %detail, "internal error");
                "internal error; see the server log".to_owned()
            }
            other => other.to_string(),
        };
        let outcome = OperationOutcome::error(code, message, field);
        let body = serde_json::to_string(&outcome).unwrap_or_default();
        let mut response = (status, body).into_response();
        response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/fhir+json"));
        response
    }
}

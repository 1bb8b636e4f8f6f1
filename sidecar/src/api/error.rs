//! The one place where errors become HTTP responses.

use agentstate_protocol::{ErrorBody, ErrorCode, ValidationRule};

use crate::engine::{EngineError, RETRY_AFTER_SECS};
use crate::metrics as m;

/// An error on its way to the client.
#[derive(Debug)]
pub struct ApiError {
    pub code: ErrorCode,
    pub message: String,
    pub current_version: Option<u64>,
    /// Seconds for `Retry-After`, on 503.
    pub retry_after: Option<u64>,
    /// The path's methods, for `Allow` on 405.
    pub allow: Option<String>,
}

impl ApiError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        ApiError {
            code,
            message: message.into(),
            current_version: None,
            retry_after: (code == ErrorCode::Unavailable).then_some(RETRY_AFTER_SECS),
            allow: None,
        }
    }

    pub fn malformed(message: impl Into<String>) -> Self {
        ApiError::new(ErrorCode::Malformed, message)
    }

    pub fn body(&self) -> ErrorBody {
        let mut body = ErrorBody::new(self.code, self.message.clone());
        body.error.current_version = self.current_version;
        body
    }
}

/// The rule a validation message names, as a metric label.
fn rule_of(message: &str) -> &'static str {
    [
        ValidationRule::UnknownAgentType,
        ValidationRule::UnknownState,
        ValidationRule::TransitionNotAllowed,
        ValidationRule::SchemaMismatch,
    ]
    .into_iter()
    .map(ValidationRule::as_str)
    .find(|r| message.contains(r))
    .unwrap_or("input")
}

impl From<EngineError> for ApiError {
    fn from(e: EngineError) -> Self {
        let message = e.to_string();
        match &e {
            EngineError::Validation(m) => {
                metrics::counter!(m::VALIDATION_FAILURES_TOTAL, "reason" => rule_of(m)).increment(1)
            }
            EngineError::VersionConflict { .. } => {
                metrics::counter!(m::CONFLICTS_TOTAL, "kind" => "version").increment(1)
            }
            EngineError::Conflict(_) => {
                metrics::counter!(m::CONFLICTS_TOTAL, "kind" => "state").increment(1)
            }
            EngineError::Fenced(_) => {
                metrics::counter!(m::CONFLICTS_TOTAL, "kind" => "lease").increment(1)
            }
            _ => {}
        }
        match e {
            EngineError::NotFound(_) => ApiError::new(ErrorCode::NotFound, message),
            EngineError::VersionConflict { current, .. } => ApiError {
                current_version: Some(current),
                ..ApiError::new(ErrorCode::VersionConflict, message)
            },
            EngineError::Conflict(_) | EngineError::Fenced(_) => {
                ApiError::new(ErrorCode::Conflict, message)
            }
            EngineError::Validation(_) => ApiError::new(ErrorCode::ValidationFailed, message),
            EngineError::Malformed(_) => ApiError::new(ErrorCode::Malformed, message),
            EngineError::Unavailable(_) => ApiError::new(ErrorCode::Unavailable, message),
            EngineError::Internal(_) => {
                tracing::error!(error = %message, "internal error");
                ApiError::new(ErrorCode::Internal, message)
            }
        }
    }
}

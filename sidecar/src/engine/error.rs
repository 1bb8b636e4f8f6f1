//! What the engine's calls fail with; `api::error` maps each to its HTTP status.

use crate::store::StoreError;
use crate::wal::WalError;

/// Seconds a client is told to wait (`Retry-After`) when the sidecar is overloaded.
pub const RETRY_AFTER_SECS: u64 = 1;

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("{0}")]
    NotFound(String),
    #[error("version conflict: expected version {expected}, current is {current}")]
    VersionConflict { expected: String, current: u64 },
    #[error("{0}")]
    Conflict(String),
    /// Another sidecar owns the agent (its lease has not expired).
    #[error("{0}")]
    Fenced(String),
    #[error("{0}")]
    Validation(String),
    #[error("{0}")]
    Malformed(String),
    #[error("{0}")]
    Unavailable(String),
    #[error("{0}")]
    Internal(String),
}

impl From<WalError> for EngineError {
    fn from(e: WalError) -> Self {
        match e {
            WalError::TooLarge(_) => EngineError::Validation(e.to_string()),
            e => EngineError::Unavailable(format!("write not accepted: {e}")),
        }
    }
}

impl From<StoreError> for EngineError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Unavailable(m) | StoreError::Conflict(m) => EngineError::Unavailable(m),
            StoreError::Rejected(m) => EngineError::Internal(m),
        }
    }
}

pub type EngineResult<T> = Result<T, EngineError>;

//! The error body every failed call returns: `{"error": {"code", "message", ...}}`.

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Machine-readable error codes; the HTTP status follows from the code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    Malformed,
    /// A bearer token is required (`--auth-token-file`) and was missing or wrong.
    Unauthorized,
    /// The request's `Host` does not name this sidecar (a DNS-rebinding page's would not).
    HostNotAllowed,
    /// A browser sent a write from another site or origin.
    CrossOrigin,
    /// An inspector write (rollback, abort, fork) to a sidecar started without
    /// `--ui-writes`.
    UiWritesDisabled,
    NotFound,
    MethodNotAllowed,
    VersionConflict,
    /// The request conflicts with the agent's state (a pending multi-step transition,
    /// a transfer id reused for other agents).
    Conflict,
    TooLarge,
    UnsupportedMediaType,
    ValidationFailed,
    Unavailable,
    Internal,
}

impl ErrorCode {
    pub fn status(self) -> u16 {
        match self {
            ErrorCode::Malformed => 400,
            ErrorCode::Unauthorized => 401,
            ErrorCode::HostNotAllowed | ErrorCode::CrossOrigin | ErrorCode::UiWritesDisabled => 403,
            ErrorCode::NotFound => 404,
            ErrorCode::MethodNotAllowed => 405,
            ErrorCode::VersionConflict | ErrorCode::Conflict => 409,
            ErrorCode::TooLarge => 413,
            ErrorCode::UnsupportedMediaType => 415,
            ErrorCode::ValidationFailed => 422,
            ErrorCode::Unavailable => 503,
            ErrorCode::Internal => 500,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::Malformed => "malformed",
            ErrorCode::Unauthorized => "unauthorized",
            ErrorCode::HostNotAllowed => "host_not_allowed",
            ErrorCode::CrossOrigin => "cross_origin",
            ErrorCode::UiWritesDisabled => "ui_writes_disabled",
            ErrorCode::NotFound => "not_found",
            ErrorCode::MethodNotAllowed => "method_not_allowed",
            ErrorCode::VersionConflict => "version_conflict",
            ErrorCode::Conflict => "conflict",
            ErrorCode::TooLarge => "too_large",
            ErrorCode::UnsupportedMediaType => "unsupported_media_type",
            ErrorCode::ValidationFailed => "validation_failed",
            ErrorCode::Unavailable => "unavailable",
            ErrorCode::Internal => "internal",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ErrorDetail {
    pub code: ErrorCode,
    pub message: String,
    /// The agent's current version, on `version_conflict`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current_version: Option<u64>,
    /// Extra fields a newer sidecar may add; kept so a client can show them.
    #[serde(flatten)]
    pub extra: serde_json::Map<String, Value>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

impl ErrorBody {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        ErrorBody {
            error: ErrorDetail {
                code,
                message: message.into(),
                current_version: None,
                extra: Default::default(),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_body_is_the_documented_shape() {
        let body = ErrorBody::new(ErrorCode::VersionConflict, "stale");
        let json = serde_json::to_value(&body).unwrap();
        assert_eq!(json["error"]["code"], "version_conflict");
        assert_eq!(json["error"]["message"], "stale");
        assert_eq!(ErrorCode::VersionConflict.status(), 409);
    }
}

//! What a store operation can fail with, and the stable code each failure has on the wire.

use std::fmt;

use crate::store::{BackendKind, Condition};

/// Why a [`Store`](crate::Store) operation failed.
///
/// Messages never contain a backend password: backend errors are scrubbed before they get here.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// No live value is stored under the key (absent, deleted, or its TTL has passed).
    #[error("no value is stored under key `{key}`")]
    NotFound {
        /// The key, as shown in messages.
        key: String,
    },
    /// A conditional write's condition did not hold; nothing was written.
    #[error("{}", mismatch_message(key, *condition))]
    VersionMismatch {
        /// The key, as shown in messages.
        key: String,
        /// The condition that did not hold.
        condition: Condition,
    },
    /// The key (or list prefix, or `after` bound) breaks the key rules.
    #[error("invalid key `{key}`: {reason}")]
    InvalidKey {
        /// The key, as shown in messages (control characters escaped, long keys cut).
        key: String,
        /// The rule it breaks.
        reason: &'static str,
    },
    /// The value is over the endpoint's limit.
    #[error("the value is larger than the limit of {limit} bytes")]
    TooLarge {
        /// The limit, in bytes.
        limit: usize,
    },
    /// Storing the value would take the endpoint past one of its quotas; nothing was written.
    #[error("{}", quota_message(endpoint, *quota, *limit))]
    QuotaExceeded {
        /// The endpoint name.
        endpoint: String,
        /// Which quota.
        quota: QuotaKind,
        /// Its limit: keys or bytes.
        limit: u64,
    },
    /// An argument other than the key is out of range (a TTL, a page size).
    #[error("{0}")]
    InvalidArgument(String),
    /// The backend did not answer in time, refused the connection or the credentials.
    #[error("the {backend} backend of endpoint `{endpoint}` is unavailable: {reason}")]
    Unavailable {
        /// The endpoint name.
        endpoint: String,
        /// Which backend.
        backend: BackendKind,
        /// What went wrong, without credentials.
        reason: String,
    },
    /// The endpoint's backend configuration cannot work (a malformed URL, TLS asked for).
    #[error("invalid {backend} backend for endpoint `{endpoint}`: {reason}")]
    InvalidConfig {
        /// The endpoint name.
        endpoint: String,
        /// Which backend.
        backend: BackendKind,
        /// What is wrong, without credentials.
        reason: String,
    },
    /// The backend answered, but not in a way the store can use (corrupt data, a permission or
    /// disk error).
    #[error("the {backend} backend of endpoint `{endpoint}` failed: {reason}")]
    Internal {
        /// The endpoint name.
        endpoint: String,
        /// Which backend.
        backend: BackendKind,
        /// What went wrong, without credentials.
        reason: String,
    },
}

fn quota_message(endpoint: &str, quota: QuotaKind, limit: u64) -> String {
    match quota {
        QuotaKind::Keys => format!(
            "endpoint `{endpoint}` holds its quota of {limit} keys (`limits.max_keys`): delete keys, or let them expire, before storing new ones"
        ),
        QuotaKind::Bytes => format!(
            "the value would take endpoint `{endpoint}` past its quota of {limit} bytes of keys and values (`limits.max_bytes`)"
        ),
    }
}

/// An endpoint's storage quotas, as the manifest names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum QuotaKind {
    /// `max_keys`: the keys stored.
    Keys,
    /// `max_bytes`: the bytes of the keys and values stored.
    Bytes,
}

impl QuotaKind {
    /// `max_keys` or `max_bytes`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Keys => "max_keys",
            Self::Bytes => "max_bytes",
        }
    }
}

impl fmt::Display for QuotaKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

fn mismatch_message(key: &str, condition: Condition) -> String {
    match condition {
        Condition::IfAbsent => format!("key `{key}` already exists"),
        Condition::IfVersion(version) => {
            format!("key `{key}` is not at version {version} (it changed or does not exist)")
        }
        Condition::Any => format!("the condition on key `{key}` did not hold"),
    }
}

/// The stable error codes of the key-value API, one per kind of failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorCode {
    /// `not_found` (404).
    NotFound,
    /// `version_mismatch` (412).
    VersionMismatch,
    /// `invalid_key` (400).
    InvalidKey,
    /// `value_too_large` (413).
    ValueTooLarge,
    /// `bad_request` (400).
    BadRequest,
    /// `method_not_allowed` (405).
    MethodNotAllowed,
    /// `quota_exceeded` (507).
    QuotaExceeded,
    /// `backend_unavailable` (503).
    BackendUnavailable,
    /// `internal` (500).
    Internal,
}

impl ErrorCode {
    /// The code as it appears in `{"error": {"code": ...}}`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::NotFound => "not_found",
            Self::VersionMismatch => "version_mismatch",
            Self::InvalidKey => "invalid_key",
            Self::ValueTooLarge => "value_too_large",
            Self::BadRequest => "bad_request",
            Self::MethodNotAllowed => "method_not_allowed",
            Self::QuotaExceeded => "quota_exceeded",
            Self::BackendUnavailable => "backend_unavailable",
            Self::Internal => "internal",
        }
    }

    /// The HTTP status that goes with the code.
    pub fn status(self) -> http::StatusCode {
        use http::StatusCode;
        match self {
            Self::NotFound => StatusCode::NOT_FOUND,
            Self::VersionMismatch => StatusCode::PRECONDITION_FAILED,
            Self::InvalidKey | Self::BadRequest => StatusCode::BAD_REQUEST,
            Self::ValueTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            Self::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            Self::QuotaExceeded => StatusCode::INSUFFICIENT_STORAGE,
            Self::BackendUnavailable => StatusCode::SERVICE_UNAVAILABLE,
            Self::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl StoreError {
    /// The API error code for this failure.
    pub fn code(&self) -> ErrorCode {
        match self {
            Self::NotFound { .. } => ErrorCode::NotFound,
            Self::VersionMismatch { .. } => ErrorCode::VersionMismatch,
            Self::InvalidKey { .. } => ErrorCode::InvalidKey,
            Self::TooLarge { .. } => ErrorCode::ValueTooLarge,
            Self::QuotaExceeded { .. } => ErrorCode::QuotaExceeded,
            Self::InvalidArgument(_) => ErrorCode::BadRequest,
            Self::Unavailable { .. } => ErrorCode::BackendUnavailable,
            Self::InvalidConfig { .. } | Self::Internal { .. } => ErrorCode::Internal,
        }
    }
}

//! The three backends behind one small interface.
//!
//! A backend gets checked arguments and reports what happened: a value or its absence, whether
//! a condition held, or a [`Fault`]. Timeouts, key rules and messages that name the endpoint are
//! the [`Store`](crate::Store)'s.

mod embedded;
mod postgres;
mod redis;
mod slot;

use std::time::Duration;

use bytes::Bytes;

use crate::error::StoreError;
use crate::store::{Backend, BackendKind, Condition, Entry, ListRange};

/// What went wrong in a backend, before the store names the endpoint.
#[derive(Debug)]
pub(crate) enum Fault {
    /// The backend cannot be reached or refused us; the next call tries again.
    Unavailable(String),
    /// The backend answered, but not in a way we can use.
    Failed(String),
    /// The backend's configuration cannot work.
    Config(String),
}

impl Fault {
    pub(crate) fn into_error(self, endpoint: &str, backend: BackendKind) -> StoreError {
        let endpoint = endpoint.to_owned();
        match self {
            Self::Unavailable(reason) => StoreError::Unavailable {
                endpoint,
                backend,
                reason,
            },
            Self::Failed(reason) => StoreError::Internal {
                endpoint,
                backend,
                reason,
            },
            Self::Config(reason) => StoreError::InvalidConfig {
                endpoint,
                backend,
                reason,
            },
        }
    }
}

/// What a delete did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum DeleteOutcome {
    /// A live value was deleted.
    Deleted,
    /// There was no live value; the condition held.
    Absent,
    /// The condition did not hold; nothing was deleted.
    ConditionFailed,
}

/// One backend, opened.
#[expect(
    clippy::large_enum_variant,
    reason = "one engine per endpoint, allocated once behind the store's Arc"
)]
pub(crate) enum Engine {
    Embedded(embedded::Embedded),
    Redis(redis::RedisBackend),
    Postgres(postgres::PostgresBackend),
}

impl Engine {
    pub(crate) async fn open(
        endpoint: &str,
        backend: &Backend,
        timeout: Duration,
    ) -> Result<Self, Fault> {
        Ok(match backend {
            Backend::Embedded { path } => Self::Embedded(embedded::Embedded::open(path).await?),
            Backend::Redis { url } => {
                Self::Redis(redis::RedisBackend::new(endpoint, url, timeout)?)
            }
            Backend::Postgres { url } => {
                Self::Postgres(postgres::PostgresBackend::new(endpoint, url, timeout)?)
            }
        })
    }

    pub(crate) async fn get(&self, key: &str) -> Result<Option<Entry>, Fault> {
        match self {
            Self::Embedded(backend) => backend.get(key).await,
            Self::Redis(backend) => backend.get(key).await,
            Self::Postgres(backend) => backend.get(key).await,
        }
    }

    /// `Ok(None)` when the condition did not hold.
    pub(crate) async fn put(
        &self,
        key: &str,
        value: Bytes,
        ttl: Option<Duration>,
        condition: Condition,
    ) -> Result<Option<u64>, Fault> {
        match self {
            Self::Embedded(backend) => backend.put(key, value, ttl, condition).await,
            Self::Redis(backend) => backend.put(key, value, ttl, condition).await,
            Self::Postgres(backend) => backend.put(key, value, ttl, condition).await,
        }
    }

    pub(crate) async fn delete(
        &self,
        key: &str,
        condition: Condition,
    ) -> Result<DeleteOutcome, Fault> {
        match self {
            Self::Embedded(backend) => backend.delete(key, condition).await,
            Self::Redis(backend) => backend.delete(key, condition).await,
            Self::Postgres(backend) => backend.delete(key, condition).await,
        }
    }

    /// Up to `count` live keys in `range`, in byte order.
    pub(crate) async fn list(&self, range: &ListRange, count: usize) -> Result<Vec<String>, Fault> {
        match self {
            Self::Embedded(backend) => backend.list(range, count).await,
            Self::Redis(backend) => backend.list(range, count).await,
            Self::Postgres(backend) => backend.list(range, count).await,
        }
    }

    /// Drops the connection after a call timed out, so the next call starts afresh instead of
    /// queueing behind a connection that stopped answering.
    pub(crate) fn forget_connection(&self) {
        match self {
            Self::Embedded(_) => {}
            Self::Redis(backend) => backend.forget_connection(),
            Self::Postgres(backend) => backend.forget_connection(),
        }
    }
}

/// A TTL in whole milliseconds, at least 1.
fn ttl_millis(ttl: Duration) -> u64 {
    u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX).max(1)
}

//! The three backends behind one small interface.
//!
//! A backend gets checked arguments and reports what happened: a value or its absence, whether
//! a condition held or a quota would be exceeded, or a [`Fault`]. Timeouts, key rules and
//! messages that name the endpoint are the [`Store`](crate::Store)'s.
//!
//! Every backend accounts for what it stores the same way: an entry counts as one key and as
//! the bytes of its key and value, from the write that stores it until it is deleted or swept,
//! expired or not ([`Usage`]). A write that would take the count past a [`Quotas`] limit is
//! refused in the same atomic step that would have made it. [`Engine::sweep`] removes one
//! bounded batch of expired entries.

mod embedded;
mod postgres;
mod postgres_tls;
mod redis;
mod slot;

use std::time::Duration;

use bytes::Bytes;

use crate::error::{QuotaKind, StoreError};
use crate::store::{Backend, BackendKind, Condition, Entry, ListRange, Usage};

/// The storage quotas of one endpoint; `None` is no limit.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Quotas {
    pub(crate) max_keys: Option<u64>,
    pub(crate) max_bytes: Option<u64>,
}

impl Quotas {
    /// Which quota a write would break that adds `new_keys` keys (0 or 1) and `delta` bytes to
    /// `usage`; writes that do not grow a count are never refused, even past a lowered quota.
    pub(crate) fn exceeded(self, usage: Usage, new_keys: u64, delta: i64) -> Option<QuotaKind> {
        if new_keys > 0
            && self
                .max_keys
                .is_some_and(|max| usage.keys.saturating_add(new_keys) > max)
        {
            return Some(QuotaKind::Keys);
        }
        let grows = u64::try_from(delta).ok().filter(|&d| d > 0)?;
        self.max_bytes
            .is_some_and(|max| usage.bytes.saturating_add(grows) > max)
            .then_some(QuotaKind::Bytes)
    }
}

/// What a put did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PutOutcome {
    /// Stored, at this version.
    Written(u64),
    /// The condition did not hold; nothing was written.
    ConditionFailed,
    /// Storing it would break this quota; nothing was written.
    OverQuota(QuotaKind),
}

/// The bytes an entry counts for: its key and its value.
pub(crate) fn entry_bytes(key: &str, value_len: usize) -> u64 {
    (key.len() as u64).saturating_add(value_len as u64)
}

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
        quotas: Quotas,
    ) -> Result<Self, Fault> {
        Ok(match backend {
            Backend::Embedded { path } => {
                Self::Embedded(embedded::Embedded::open(path, quotas).await?)
            }
            Backend::Redis { url } => {
                Self::Redis(redis::RedisBackend::new(endpoint, url, timeout, quotas)?)
            }
            Backend::Postgres { url } => Self::Postgres(postgres::PostgresBackend::new(
                endpoint, url, timeout, quotas,
            )?),
        })
    }

    pub(crate) async fn get(&self, key: &str) -> Result<Option<Entry>, Fault> {
        match self {
            Self::Embedded(backend) => backend.get(key).await,
            Self::Redis(backend) => backend.get(key).await,
            Self::Postgres(backend) => backend.get(key).await,
        }
    }

    pub(crate) async fn put(
        &self,
        key: &str,
        value: Bytes,
        ttl: Option<Duration>,
        condition: Condition,
    ) -> Result<PutOutcome, Fault> {
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

    /// Removes up to `batch` expired entries (and, on Redis, up to `batch` index members whose
    /// entry is gone), returning how many went. Each call is bounded by `batch`, whatever the
    /// size of the store.
    pub(crate) async fn sweep(&self, batch: usize) -> Result<usize, Fault> {
        match self {
            Self::Embedded(backend) => backend.sweep(batch).await,
            Self::Redis(backend) => backend.sweep(batch).await,
            Self::Postgres(backend) => backend.sweep(batch).await,
        }
    }

    /// What the endpoint stores now, as its quotas count it.
    pub(crate) async fn usage(&self) -> Result<Usage, Fault> {
        match self {
            Self::Embedded(backend) => backend.usage().await,
            Self::Redis(backend) => backend.usage().await,
            Self::Postgres(backend) => backend.usage().await,
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

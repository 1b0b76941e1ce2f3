//! [`Store`]: the operations of the key-value API, on whichever backend an endpoint has.
//!
//! The store checks every argument, bounds every backend call with the endpoint's timeout and
//! turns backend faults into [`StoreError`]s that name the endpoint. The backends only move
//! bytes: they get checked arguments and report what happened.

use std::fmt;
use std::path::PathBuf;
use std::sync::{Arc, Weak};
use std::time::Duration;

use bytes::Bytes;
use septa_flows::LogThrottle;

use crate::backend::{DeleteOutcome, Engine, Fault, PutOutcome, Quotas};
use crate::error::StoreError;
use crate::key::{self, shown};
use crate::redact::redact_url;

/// The page size of a list when the caller gives none.
pub const DEFAULT_LIST_LIMIT: usize = 100;

/// The largest page a list returns.
pub const MAX_LIST_LIMIT: usize = 1000;

/// The most expired entries one sweep step removes (and, on Redis, the most index members it
/// looks at): every step is bounded by it, whatever the size of the store.
pub const SWEEP_BATCH: usize = 256;

/// Where an endpoint keeps its data.
///
/// `Debug` output masks the password of a URL.
#[derive(Clone, PartialEq, Eq)]
pub enum Backend {
    /// A redb file of its own; its parent directory is created if absent.
    Embedded {
        /// The database file.
        path: PathBuf,
    },
    /// A Redis server; entries live under `septa:{endpoint}:`.
    Redis {
        /// `redis://[user:password@]host:port[/db]`; TLS (`rediss://`) is not supported.
        url: String,
    },
    /// A PostgreSQL database; entries live in the table `septa."{endpoint}"`, created if absent.
    Postgres {
        /// `postgres://user:password@host:port/db` or a `key=value` connection string. TLS as
        /// libpq does it: `sslmode=disable` (the default), `prefer`, `require`, `verify-ca` or
        /// `verify-full`, with `sslrootcert=PATH` (PEM) for the CA (default: the Mozilla roots).
        url: String,
    },
}

impl Backend {
    /// Which kind of backend this is.
    pub fn kind(&self) -> BackendKind {
        match self {
            Self::Embedded { .. } => BackendKind::Embedded,
            Self::Redis { .. } => BackendKind::Redis,
            Self::Postgres { .. } => BackendKind::Postgres,
        }
    }
}

impl fmt::Debug for Backend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Embedded { path } => f.debug_struct("Embedded").field("path", path).finish(),
            Self::Redis { url } => f
                .debug_struct("Redis")
                .field("url", &redact_url(url))
                .finish(),
            Self::Postgres { url } => f
                .debug_struct("Postgres")
                .field("url", &redact_url(url))
                .finish(),
        }
    }
}

/// The kind of a [`Backend`], for messages and metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum BackendKind {
    /// redb.
    Embedded,
    /// Redis.
    Redis,
    /// PostgreSQL.
    Postgres,
}

impl fmt::Display for BackendKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Embedded => "embedded",
            Self::Redis => "redis",
            Self::Postgres => "postgres",
        })
    }
}

/// Limits of one endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StoreOptions {
    /// The longest any one operation may take, connecting included; past it the operation
    /// fails with [`StoreError::Unavailable`].
    pub timeout: Duration,
    /// The largest value a put accepts, in bytes.
    pub max_value_bytes: usize,
    /// The most keys the endpoint stores; a put of a new key past it fails with
    /// [`StoreError::QuotaExceeded`]. Expired keys count until they are swept.
    pub max_keys: Option<u64>,
    /// The most bytes of keys and values the endpoint stores; a put that would grow it past
    /// this fails with [`StoreError::QuotaExceeded`].
    pub max_bytes: Option<u64>,
    /// How often expired entries are swept away in the background.
    pub sweep_interval: Duration,
}

impl Default for StoreOptions {
    /// A 2 s timeout, 1 MiB values, no quotas, a sweep every 30 s.
    fn default() -> Self {
        Self {
            timeout: Duration::from_secs(2),
            max_value_bytes: 1024 * 1024,
            max_keys: None,
            max_bytes: None,
            sweep_interval: Duration::from_secs(30),
        }
    }
}

/// What an endpoint stores, as its quotas count it: every entry not yet deleted or swept,
/// expired or not, and the bytes of their keys and values.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Usage {
    /// Entries stored.
    pub keys: u64,
    /// Bytes of their keys and values.
    pub bytes: u64,
}

/// When a write may happen.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Condition {
    /// Always.
    Any,
    /// Only if the key exists at exactly this version (compare-and-swap).
    IfVersion(u64),
    /// Only if the key does not exist (create-only).
    IfAbsent,
}

impl Condition {
    /// Whether the condition holds for a key whose live version is `current` (`None`: absent).
    pub(crate) fn holds(self, current: Option<u64>) -> bool {
        match self {
            Self::Any => true,
            Self::IfVersion(expected) => current == Some(expected),
            Self::IfAbsent => current.is_none(),
        }
    }
}

/// A stored value and its version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// The bytes stored.
    pub value: Bytes,
    /// The version the last write gave the key.
    pub version: u64,
}

/// One page of a key listing.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct KeyPage {
    /// The keys, in byte order.
    pub keys: Vec<String>,
    /// The `after` bound of the next page, or `None` on the last page.
    pub next: Option<String>,
}

/// An endpoint's data store. Cheap to clone; clones share connections.
#[derive(Clone)]
pub struct Store {
    inner: Arc<Inner>,
}

struct Inner {
    endpoint: String,
    kind: BackendKind,
    options: StoreOptions,
    engine: Engine,
    /// Stops the sweeper when the store is dropped: its receiver sees the sender gone.
    _sweeper: Option<tokio::sync::oneshot::Sender<()>>,
}

/// A store the sweeper can reach without keeping it open.
pub(crate) struct WeakStore(Weak<Inner>);

impl WeakStore {
    pub(crate) fn upgrade(&self) -> Option<Store> {
        self.0.upgrade().map(|inner| Store { inner })
    }
}

impl fmt::Debug for Store {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Store")
            .field("endpoint", &self.inner.endpoint)
            .field("backend", &self.inner.kind)
            .finish_non_exhaustive()
    }
}

impl Store {
    /// Opens the store of endpoint `endpoint` on `backend`.
    ///
    /// The embedded backend opens (or creates) its file now. Redis and PostgreSQL connect on
    /// first use, so a server that is down at start-up does not keep the endpoint from being
    /// served: its calls answer [`StoreError::Unavailable`] until it is back.
    ///
    /// # Errors
    ///
    /// [`StoreError::InvalidConfig`] for an endpoint name that is not `[a-z0-9-]{1,63}` or a
    /// URL the backend cannot use; [`StoreError::Internal`] when the redb file cannot be opened
    /// (another process holds it, or it is not a redb file).
    pub async fn open(
        endpoint: &str,
        backend: &Backend,
        options: StoreOptions,
    ) -> Result<Self, StoreError> {
        let kind = backend.kind();
        validate_endpoint_name(endpoint).map_err(|reason| StoreError::InvalidConfig {
            endpoint: shown(endpoint),
            backend: kind,
            reason: reason.to_owned(),
        })?;
        if options.timeout.is_zero() {
            return Err(StoreError::InvalidConfig {
                endpoint: endpoint.to_owned(),
                backend: kind,
                reason: "the timeout must be longer than zero".to_owned(),
            });
        }
        let quotas = Quotas {
            max_keys: options.max_keys,
            max_bytes: options.max_bytes,
        };
        let engine = Engine::open(endpoint, backend, options.timeout, quotas)
            .await
            .map_err(|fault| fault.into_error(endpoint, kind))?;
        let (stop, stopped) = tokio::sync::oneshot::channel();
        let store = Self {
            inner: Arc::new(Inner {
                endpoint: endpoint.to_owned(),
                kind,
                options,
                engine,
                _sweeper: Some(stop),
            }),
        };
        crate::sweep::start(&store, stopped).map_err(|e| StoreError::Internal {
            endpoint: endpoint.to_owned(),
            backend: kind,
            reason: format!("cannot start the sweeper thread: {e}"),
        })?;
        Ok(store)
    }

    pub(crate) fn downgrade(&self) -> WeakStore {
        WeakStore(Arc::downgrade(&self.inner))
    }

    /// The endpoint this store belongs to.
    pub fn endpoint(&self) -> &str {
        &self.inner.endpoint
    }

    /// The kind of backend behind the store.
    pub fn backend_kind(&self) -> BackendKind {
        self.inner.kind
    }

    /// The endpoint's limits.
    pub fn options(&self) -> StoreOptions {
        self.inner.options
    }

    /// The live value of `key`.
    ///
    /// # Errors
    ///
    /// [`StoreError::NotFound`] when the key is absent or expired, [`StoreError::InvalidKey`],
    /// and the backend errors ([`StoreError::Unavailable`], [`StoreError::Internal`]).
    pub async fn get(&self, key: &str) -> Result<Entry, StoreError> {
        check_key(key)?;
        self.run(self.inner.engine.get(key))
            .await?
            .ok_or_else(|| StoreError::NotFound { key: shown(key) })
    }

    /// Stores `value` under `key` if `condition` holds, returning the key's new version.
    ///
    /// With a `ttl` the key stops being visible once it has passed; without one it never
    /// expires, whatever TTL it had before.
    ///
    /// # Errors
    ///
    /// [`StoreError::VersionMismatch`] when the condition does not hold (nothing is written),
    /// [`StoreError::TooLarge`], [`StoreError::InvalidKey`], [`StoreError::InvalidArgument`]
    /// for a TTL under 1 ms, and the backend errors.
    pub async fn put(
        &self,
        key: &str,
        value: Bytes,
        ttl: Option<Duration>,
        condition: Condition,
    ) -> Result<u64, StoreError> {
        check_key(key)?;
        let limit = self.inner.options.max_value_bytes;
        if value.len() > limit {
            return Err(StoreError::TooLarge { limit });
        }
        if ttl.is_some_and(|ttl| ttl < Duration::from_millis(1)) {
            return Err(StoreError::InvalidArgument(
                "a TTL must be at least 1 ms".into(),
            ));
        }
        let engine = &self.inner.engine;
        let mut swept = false;
        loop {
            let outcome = self
                .run(engine.put(key, value.clone(), ttl, condition))
                .await?;
            return match outcome {
                PutOutcome::Written(version) => Ok(version),
                PutOutcome::ConditionFailed => Err(StoreError::VersionMismatch {
                    key: shown(key),
                    condition,
                }),
                // Expired entries count until swept: sweep a batch now rather than refuse a
                // put that their removal makes room for.
                PutOutcome::OverQuota(_) if !swept && self.sweep_expired().await? > 0 => {
                    swept = true;
                    continue;
                }
                PutOutcome::OverQuota(quota) => Err(StoreError::QuotaExceeded {
                    endpoint: self.inner.endpoint.clone(),
                    quota,
                    limit: match quota {
                        crate::QuotaKind::Keys => self.inner.options.max_keys,
                        crate::QuotaKind::Bytes => self.inner.options.max_bytes,
                    }
                    .unwrap_or_default(),
                }),
            };
        }
    }

    /// Removes one batch of expired entries (at most [`SWEEP_BATCH`]; on Redis also up to as
    /// many index members whose entry is gone), returning how many went. The sweeper calls it
    /// every [`StoreOptions::sweep_interval`], again while batches come back full.
    ///
    /// # Errors
    ///
    /// The backend errors.
    pub async fn sweep_expired(&self) -> Result<usize, StoreError> {
        self.run(self.inner.engine.sweep(SWEEP_BATCH)).await
    }

    /// What the endpoint stores now, as its quotas count it.
    ///
    /// # Errors
    ///
    /// The backend errors.
    pub async fn usage(&self) -> Result<Usage, StoreError> {
        self.run(self.inner.engine.usage()).await
    }

    /// Deletes `key` if `condition` holds; `Ok(false)` when there was no live value to delete.
    ///
    /// # Errors
    ///
    /// [`StoreError::VersionMismatch`] when the condition does not hold, [`StoreError::InvalidKey`]
    /// and the backend errors.
    pub async fn delete(&self, key: &str, condition: Condition) -> Result<bool, StoreError> {
        check_key(key)?;
        match self.run(self.inner.engine.delete(key, condition)).await? {
            DeleteOutcome::Deleted => Ok(true),
            DeleteOutcome::Absent => Ok(false),
            DeleteOutcome::ConditionFailed => Err(StoreError::VersionMismatch {
                key: shown(key),
                condition,
            }),
        }
    }

    /// Up to `limit` live keys that start with `prefix`, in byte order, after `after` if given.
    ///
    /// `prefix` is empty (every key) or a key, optionally followed by `/`: `a/` lists `a/x` but
    /// not `ab`. Pass a page's [`KeyPage::next`] as `after` to get the following page.
    ///
    /// # Errors
    ///
    /// [`StoreError::InvalidKey`] for a bad prefix or `after`, [`StoreError::InvalidArgument`]
    /// for a `limit` outside 1 to [`MAX_LIST_LIMIT`], and the backend errors.
    pub async fn list(
        &self,
        prefix: &str,
        limit: usize,
        after: Option<&str>,
    ) -> Result<KeyPage, StoreError> {
        key::validate_prefix(prefix).map_err(|reason| StoreError::InvalidKey {
            key: shown(prefix),
            reason,
        })?;
        if let Some(after) = after {
            check_key(after)?;
        }
        if !(1..=MAX_LIST_LIMIT).contains(&limit) {
            return Err(StoreError::InvalidArgument(format!(
                "a list limit must be between 1 and {MAX_LIST_LIMIT}, not {limit}"
            )));
        }
        let range = ListRange::new(prefix, after);
        if range.is_empty() {
            return Ok(KeyPage::default());
        }
        let mut keys = self.run(self.inner.engine.list(&range, limit + 1)).await?;
        let next = if keys.len() > limit {
            keys.truncate(limit);
            keys.last().cloned()
        } else {
            None
        };
        Ok(KeyPage { keys, next })
    }

    /// Runs one backend call within the timeout, naming the endpoint in any failure.
    async fn run<T>(&self, call: impl Future<Output = Result<T, Fault>>) -> Result<T, StoreError> {
        let inner = &self.inner;
        let fault = match tokio::time::timeout(inner.options.timeout, call).await {
            Ok(Ok(value)) => return Ok(value),
            Ok(Err(fault)) => fault,
            Err(_) => {
                inner.engine.forget_connection();
                Fault::Unavailable(format!(
                    "no answer within {} ms",
                    inner.options.timeout.as_millis()
                ))
            }
        };
        let error = fault.into_error(&inner.endpoint, inner.kind);
        // A backend that is down fails every call: a few lines, the others counted.
        static FAILED: LogThrottle<()> = LogThrottle::per_request();
        if let Some(suppressed) = FAILED.admit(()) {
            tracing::warn!(
                endpoint = %inner.endpoint,
                backend = %inner.kind,
                %error,
                suppressed,
                "endpoint store call failed"
            );
        }
        Err(error)
    }
}

/// The keys a list covers: `[start, end)`, where `start` is exclusive when it is an `after` key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ListRange {
    /// The lowest key: the prefix (inclusive) or the `after` key (exclusive).
    pub(crate) start: String,
    /// Whether `start` itself is excluded.
    pub(crate) start_exclusive: bool,
    /// The first key past the prefix, or `None` when nothing is past it.
    pub(crate) end: Option<String>,
}

impl ListRange {
    /// The range of `prefix`, starting after `after` when that is inside or past it.
    pub(crate) fn new(prefix: &str, after: Option<&str>) -> Self {
        let end = key::prefix_end(prefix);
        match after {
            Some(after) if after >= prefix => Self {
                start: after.to_owned(),
                start_exclusive: true,
                end,
            },
            _ => Self {
                start: prefix.to_owned(),
                start_exclusive: false,
                end,
            },
        }
    }

    /// Whether no key can be in the range (`after` is past the prefix); backends are not asked,
    /// as some refuse a range whose start is past its end.
    fn is_empty(&self) -> bool {
        self.end.as_ref().is_some_and(|end| self.start >= *end)
    }
}

fn check_key(key: &str) -> Result<(), StoreError> {
    key::validate_key(key).map_err(|reason| StoreError::InvalidKey {
        key: shown(key),
        reason,
    })
}

/// Endpoint names follow the manifest's naming rules; the PostgreSQL table name and the Redis
/// namespace are built from them, so they are checked again here.
fn validate_endpoint_name(name: &str) -> Result<(), &'static str> {
    let allowed = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-';
    if name.is_empty() || name.len() > 63 {
        return Err("an endpoint name has 1 to 63 characters");
    }
    if !name.chars().all(allowed) || name.starts_with('-') || name.ends_with('-') {
        return Err("an endpoint name has only `a-z`, `0-9` and inner `-`");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_output_masks_backend_passwords() {
        let backend = Backend::Postgres {
            url: "postgres://app:hunter2@db/shop".into(),
        };
        let shown = format!("{backend:?}");
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(shown.contains("app:***@db"), "{shown}");
    }

    #[test]
    fn a_list_starts_at_the_prefix_or_after_the_given_key() {
        let range = ListRange::new("a/", None);
        assert_eq!((range.start.as_str(), range.start_exclusive), ("a/", false));
        assert_eq!(range.end.as_deref(), Some("a0"));
        let range = ListRange::new("a/", Some("a/x"));
        assert_eq!((range.start.as_str(), range.start_exclusive), ("a/x", true));
        let range = ListRange::new("b/", Some("a/x"));
        assert_eq!((range.start.as_str(), range.start_exclusive), ("b/", false));
        assert!(!range.is_empty());
        assert!(ListRange::new("a/", Some("b")).is_empty());
        assert!(!ListRange::new("", Some("zzz")).is_empty());
    }

    #[test]
    fn endpoint_names_follow_the_manifest_rules() {
        assert!(validate_endpoint_name("cards").is_ok());
        assert!(validate_endpoint_name(&"a".repeat(63)).is_ok());
        for bad in ["", "Cards", "a_b", "-a", "a-", "a\"b", &"a".repeat(64)] {
            assert!(validate_endpoint_name(bad).is_err(), "{bad}");
        }
    }
}

//! The embedded backend: one redb file per endpoint.
//!
//! Every write transaction commits with [`Durability::Immediate`], so a put or delete that
//! returned has reached the disk and survives `kill -9`. redb blocks on I/O, so every call runs
//! on tokio's blocking pool, never on the request's thread.
//!
//! An entry is stored as `version (u64 LE) | expires_at (u64 LE, Unix ms, 0 = never) | value`.
//! Expired entries are invisible and are removed when a write finds them (lazy deletion).
//! Versions come from one counter per file, so a version is never reused, not even for a key
//! deleted and written again.

use std::ops::Bound;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use redb::{Database, Durability, ReadableDatabase, ReadableTable, TableDefinition};

use super::{DeleteOutcome, Fault, ttl_millis};
use crate::store::{Condition, Entry, ListRange};

const ENTRIES: TableDefinition<&str, &[u8]> = TableDefinition::new("entries");
const META: TableDefinition<&str, u64> = TableDefinition::new("meta");
/// The key in [`META`] of the last version handed out.
const LAST_VERSION: &str = "last_version";
const HEADER_BYTES: usize = 16;

pub(crate) struct Embedded {
    db: Arc<Database>,
    path: Arc<PathBuf>,
}

impl Embedded {
    pub(crate) async fn open(path: &Path) -> Result<Self, Fault> {
        let path = Arc::new(path.to_owned());
        let opened = Arc::clone(&path);
        let db = blocking(move || open_database(&opened)).await?;
        Ok(Self {
            db: Arc::new(db),
            path,
        })
    }

    pub(crate) async fn get(&self, key: &str) -> Result<Option<Entry>, Fault> {
        let key = key.to_owned();
        self.with_db(move |db| {
            let txn = db.begin_read().map_err(storage)?;
            let table = txn.open_table(ENTRIES).map_err(storage)?;
            let Some(stored) = table.get(key.as_str()).map_err(storage)? else {
                return Ok(None);
            };
            let record = Record::decode(stored.value())?;
            Ok(record.is_live(now_millis()).then(|| Entry {
                value: Bytes::copy_from_slice(record.value),
                version: record.version,
            }))
        })
        .await
    }

    pub(crate) async fn put(
        &self,
        key: &str,
        value: Bytes,
        ttl: Option<Duration>,
        condition: Condition,
    ) -> Result<Option<u64>, Fault> {
        let key = key.to_owned();
        self.with_db(move |db| {
            let now = now_millis();
            let expires_at = ttl.map_or(0, |ttl| now.saturating_add(ttl_millis(ttl)));
            let txn = begin_durable_write(db)?;
            let version = {
                let mut entries = txn.open_table(ENTRIES).map_err(storage)?;
                let current = live_version(&entries, &key, now)?;
                if !condition.holds(current) {
                    None
                } else {
                    let mut meta = txn.open_table(META).map_err(storage)?;
                    let last = meta.get(LAST_VERSION).map_err(storage)?.map(|v| v.value());
                    let version = last
                        .unwrap_or(0)
                        .checked_add(1)
                        .ok_or_else(|| Fault::Failed("the version counter is exhausted".into()))?;
                    meta.insert(LAST_VERSION, version).map_err(storage)?;
                    let record = Record::encode(version, expires_at, &value);
                    entries
                        .insert(key.as_str(), record.as_slice())
                        .map_err(storage)?;
                    Some(version)
                }
            };
            match version {
                Some(_) => txn.commit().map_err(storage)?,
                None => txn.abort().map_err(storage)?,
            }
            Ok(version)
        })
        .await
    }

    pub(crate) async fn delete(
        &self,
        key: &str,
        condition: Condition,
    ) -> Result<DeleteOutcome, Fault> {
        let key = key.to_owned();
        self.with_db(move |db| {
            let txn = begin_durable_write(db)?;
            let (outcome, changed) = {
                let mut entries = txn.open_table(ENTRIES).map_err(storage)?;
                let current = live_version(&entries, &key, now_millis())?;
                if !condition.holds(current) {
                    (DeleteOutcome::ConditionFailed, false)
                } else {
                    // Also removes an expired entry, which the caller sees as absent.
                    let removed = entries.remove(key.as_str()).map_err(storage)?.is_some();
                    let outcome = match current {
                        Some(_) => DeleteOutcome::Deleted,
                        None => DeleteOutcome::Absent,
                    };
                    (outcome, removed)
                }
            };
            if changed {
                txn.commit().map_err(storage)?;
            } else {
                txn.abort().map_err(storage)?;
            }
            Ok(outcome)
        })
        .await
    }

    pub(crate) async fn list(&self, range: &ListRange, count: usize) -> Result<Vec<String>, Fault> {
        let range = range.clone();
        self.with_db(move |db| {
            let now = now_millis();
            let txn = db.begin_read().map_err(storage)?;
            let table = txn.open_table(ENTRIES).map_err(storage)?;
            let start = if range.start_exclusive {
                Bound::Excluded(range.start.as_str())
            } else {
                Bound::Included(range.start.as_str())
            };
            let end = range
                .end
                .as_deref()
                .map_or(Bound::Unbounded, Bound::Excluded);
            let mut keys = Vec::new();
            for item in table.range::<&str>((start, end)).map_err(storage)? {
                if keys.len() == count {
                    break;
                }
                let (key, stored) = item.map_err(storage)?;
                if Record::decode(stored.value())?.is_live(now) {
                    keys.push(key.value().to_owned());
                }
            }
            Ok(keys)
        })
        .await
    }

    /// Runs `work` on the blocking pool.
    async fn with_db<T: Send + 'static>(
        &self,
        work: impl FnOnce(&Database) -> Result<T, Fault> + Send + 'static,
    ) -> Result<T, Fault> {
        let db = Arc::clone(&self.db);
        let path = Arc::clone(&self.path);
        blocking(move || work(&db).map_err(|fault| in_file(fault, &path))).await
    }
}

fn open_database(path: &Path) -> Result<Database, Fault> {
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent).map_err(|e| {
            Fault::Failed(format!(
                "cannot create directory `{}`: {e}",
                parent.display()
            ))
        })?;
    }
    let db = Database::create(path)
        .map_err(|e| Fault::Failed(format!("cannot open `{}`: {e}", path.display())))?;
    // Create the tables once, so read transactions can always open them.
    let txn = begin_durable_write(&db)?;
    txn.open_table(ENTRIES).map_err(storage)?;
    txn.open_table(META).map_err(storage)?;
    txn.commit().map_err(storage)?;
    Ok(db)
}

fn begin_durable_write(db: &Database) -> Result<redb::WriteTransaction, Fault> {
    let mut txn = db.begin_write().map_err(storage)?;
    txn.set_durability(Durability::Immediate).map_err(storage)?;
    Ok(txn)
}

/// The version of `key` if it holds a live entry.
fn live_version(
    entries: &redb::Table<'_, &str, &[u8]>,
    key: &str,
    now: u64,
) -> Result<Option<u64>, Fault> {
    let Some(stored) = entries.get(key).map_err(storage)? else {
        return Ok(None);
    };
    let record = Record::decode(stored.value())?;
    Ok(record.is_live(now).then_some(record.version))
}

struct Record<'a> {
    version: u64,
    expires_at: u64,
    value: &'a [u8],
}

impl<'a> Record<'a> {
    fn encode(version: u64, expires_at: u64, value: &[u8]) -> Vec<u8> {
        let mut out = Vec::with_capacity(HEADER_BYTES + value.len());
        out.extend_from_slice(&version.to_le_bytes());
        out.extend_from_slice(&expires_at.to_le_bytes());
        out.extend_from_slice(value);
        out
    }

    fn decode(stored: &'a [u8]) -> Result<Self, Fault> {
        let corrupt = || Fault::Failed("a stored entry is shorter than its header".into());
        let (version, rest) = stored.split_first_chunk::<8>().ok_or_else(corrupt)?;
        let (expires_at, value) = rest.split_first_chunk::<8>().ok_or_else(corrupt)?;
        Ok(Self {
            version: u64::from_le_bytes(*version),
            expires_at: u64::from_le_bytes(*expires_at),
            value,
        })
    }

    fn is_live(&self, now: u64) -> bool {
        self.expires_at == 0 || self.expires_at > now
    }
}

fn now_millis() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |since| {
            u64::try_from(since.as_millis()).unwrap_or(u64::MAX)
        })
}

fn storage(error: impl Into<redb::Error>) -> Fault {
    Fault::Failed(error.into().to_string())
}

fn in_file(fault: Fault, path: &Path) -> Fault {
    match fault {
        Fault::Failed(reason) => Fault::Failed(format!("`{}`: {reason}", path.display())),
        other => other,
    }
}

async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, Fault> + Send + 'static,
) -> Result<T, Fault> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| Fault::Failed(format!("the storage task failed: {e}")))?
}

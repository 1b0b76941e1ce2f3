//! The embedded backend: one redb file per endpoint.
//!
//! Every write transaction commits with [`Durability::Immediate`], so a put or delete that
//! returned has reached the disk and survives `kill -9`. redb blocks on I/O, so every call runs
//! on tokio's blocking pool, never on the request's thread.
//!
//! An entry is stored as `version (u64 LE) | expires_at (u64 LE, Unix ms, 0 = never) | value`.
//! Expired entries are invisible; a write of their key replaces them, and the sweeper removes
//! them in batches, found through an index of `(expires_at, key)`. Versions come from one
//! counter per file, so a version is never reused, not even for a key deleted and written again.
//! The keys and bytes stored are counted in the same transactions that change them, so a quota
//! check is exact; a file written before they were counted is counted once when opened.

use std::ops::Bound;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use redb::{Database, Durability, ReadableDatabase, ReadableTable, TableDefinition};

use super::{DeleteOutcome, Fault, PutOutcome, Quotas, entry_bytes, ttl_millis};
use crate::store::{Condition, Entry, ListRange, Usage};

const ENTRIES: TableDefinition<&str, &[u8]> = TableDefinition::new("entries");
/// `(expires_at, key)` of every entry with a TTL, so expired ones are found oldest first.
const EXPIRY: TableDefinition<(u64, &str), ()> = TableDefinition::new("expiry");
const META: TableDefinition<&str, u64> = TableDefinition::new("meta");
/// The key in [`META`] of the last version handed out.
const LAST_VERSION: &str = "last_version";
/// The keys in [`META`] of the entries and bytes stored; present once the file is counted.
const USAGE_KEYS: &str = "usage_keys";
const USAGE_BYTES: &str = "usage_bytes";
const HEADER_BYTES: usize = 16;

pub(crate) struct Embedded {
    db: Arc<Database>,
    path: Arc<PathBuf>,
    quotas: Quotas,
}

impl Embedded {
    pub(crate) async fn open(path: &Path, quotas: Quotas) -> Result<Self, Fault> {
        let path = Arc::new(path.to_owned());
        let opened = Arc::clone(&path);
        let db = blocking(move || open_database(&opened)).await?;
        Ok(Self {
            db: Arc::new(db),
            path,
            quotas,
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
    ) -> Result<PutOutcome, Fault> {
        let key = key.to_owned();
        let quotas = self.quotas;
        self.with_db(move |db| {
            let now = now_millis();
            let expires_at = ttl.map_or(0, |ttl| now.saturating_add(ttl_millis(ttl)));
            let txn = begin_durable_write(db)?;
            let outcome = {
                let mut entries = txn.open_table(ENTRIES).map_err(storage)?;
                let stored = stored(&entries, &key)?;
                let current = stored.filter(|s| s.is_live(now)).map(|s| s.version);
                let mut meta = txn.open_table(META).map_err(storage)?;
                let usage = usage(&meta)?;
                let size = entry_bytes(&key, value.len());
                let (new_keys, old_size) = match stored {
                    Some(old) => (0, old.size),
                    None => (1, 0),
                };
                let delta = i64::try_from(size).unwrap_or(i64::MAX)
                    - i64::try_from(old_size).unwrap_or(i64::MAX);
                if !condition.holds(current) {
                    PutOutcome::ConditionFailed
                } else if let Some(quota) = quotas.exceeded(usage, new_keys, delta) {
                    PutOutcome::OverQuota(quota)
                } else {
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
                    let mut expiry = txn.open_table(EXPIRY).map_err(storage)?;
                    if let Some(old) = stored.filter(|old| old.expires_at != 0) {
                        expiry
                            .remove((old.expires_at, key.as_str()))
                            .map_err(storage)?;
                    }
                    if expires_at != 0 {
                        expiry
                            .insert((expires_at, key.as_str()), ())
                            .map_err(storage)?;
                    }
                    let after = Usage {
                        keys: usage.keys + new_keys,
                        bytes: (usage.bytes + size).saturating_sub(old_size),
                    };
                    set_usage(&mut meta, after)?;
                    PutOutcome::Written(version)
                }
            };
            match outcome {
                PutOutcome::Written(_) => txn.commit().map_err(storage)?,
                _ => txn.abort().map_err(storage)?,
            }
            Ok(outcome)
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
                let stored = stored(&entries, &key)?;
                let current = stored
                    .filter(|s| s.is_live(now_millis()))
                    .map(|s| s.version);
                if !condition.holds(current) {
                    (DeleteOutcome::ConditionFailed, false)
                } else {
                    let outcome = match current {
                        Some(_) => DeleteOutcome::Deleted,
                        None => DeleteOutcome::Absent,
                    };
                    // Also removes an expired entry, which the caller sees as absent.
                    match stored {
                        Some(old) => {
                            remove_entry(&txn, &mut entries, &key, old)?;
                            (outcome, true)
                        }
                        None => (outcome, false),
                    }
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

    pub(crate) async fn sweep(&self, batch: usize) -> Result<usize, Fault> {
        self.with_db(move |db| {
            let now = now_millis();
            let expired: Vec<(u64, String)> = {
                let txn = db.begin_read().map_err(storage)?;
                let expiry = txn.open_table(EXPIRY).map_err(storage)?;
                let range = expiry
                    .range((0u64, "")..(now.saturating_add(1), ""))
                    .map_err(storage)?;
                let mut expired = Vec::new();
                for item in range.take(batch) {
                    let (entry, _) = item.map_err(storage)?;
                    let (expires_at, key) = entry.value();
                    expired.push((expires_at, key.to_owned()));
                }
                expired
            };
            if expired.is_empty() {
                return Ok(0);
            }
            let txn = begin_durable_write(db)?;
            let mut removed = 0;
            {
                let mut entries = txn.open_table(ENTRIES).map_err(storage)?;
                for (expires_at, key) in &expired {
                    // Written again since it was read: not expired any more, or indexed anew.
                    let Some(old) = stored(&entries, key)? else {
                        let mut expiry = txn.open_table(EXPIRY).map_err(storage)?;
                        expiry
                            .remove((*expires_at, key.as_str()))
                            .map_err(storage)?;
                        continue;
                    };
                    if old.expires_at != *expires_at || old.is_live(now) {
                        continue;
                    }
                    remove_entry(&txn, &mut entries, key, old)?;
                    removed += 1;
                }
            }
            txn.commit().map_err(storage)?;
            Ok(removed)
        })
        .await
    }

    pub(crate) async fn usage(&self) -> Result<Usage, Fault> {
        self.with_db(|db| {
            let txn = db.begin_read().map_err(storage)?;
            let meta = txn.open_table(META).map_err(storage)?;
            usage(&meta)
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
    txn.open_table(EXPIRY).map_err(storage)?;
    let counted = txn
        .open_table(META)
        .map_err(storage)?
        .get(USAGE_KEYS)
        .map_err(storage)?
        .is_some();
    if !counted {
        count_existing(&txn)?;
    }
    txn.commit().map_err(storage)?;
    Ok(db)
}

/// Counts the entries of a file written before septa counted them, and indexes their expiry:
/// once, in the transaction that opens the file.
fn count_existing(txn: &redb::WriteTransaction) -> Result<(), Fault> {
    let entries = txn.open_table(ENTRIES).map_err(storage)?;
    let mut expiry = txn.open_table(EXPIRY).map_err(storage)?;
    let mut total = Usage::default();
    for item in entries.iter().map_err(storage)? {
        let (key, stored) = item.map_err(storage)?;
        let record = Record::decode(stored.value())?;
        total.keys += 1;
        total.bytes += entry_bytes(key.value(), record.value.len());
        if record.expires_at != 0 {
            expiry
                .insert((record.expires_at, key.value()), ())
                .map_err(storage)?;
        }
    }
    let mut meta = txn.open_table(META).map_err(storage)?;
    set_usage(&mut meta, total)
}

/// What is stored under a key, live or expired: what a write replaces and a quota counts.
#[derive(Debug, Clone, Copy)]
struct Stored {
    version: u64,
    expires_at: u64,
    /// Its key and value, in bytes.
    size: u64,
}

impl Stored {
    fn is_live(self, now: u64) -> bool {
        self.expires_at == 0 || self.expires_at > now
    }
}

fn stored(entries: &redb::Table<'_, &str, &[u8]>, key: &str) -> Result<Option<Stored>, Fault> {
    let Some(stored) = entries.get(key).map_err(storage)? else {
        return Ok(None);
    };
    let record = Record::decode(stored.value())?;
    Ok(Some(Stored {
        version: record.version,
        expires_at: record.expires_at,
        size: entry_bytes(key, record.value.len()),
    }))
}

/// Removes `key`, stored as `old`, with its expiry and from the counts.
fn remove_entry(
    txn: &redb::WriteTransaction,
    entries: &mut redb::Table<'_, &str, &[u8]>,
    key: &str,
    old: Stored,
) -> Result<(), Fault> {
    entries.remove(key).map_err(storage)?;
    if old.expires_at != 0 {
        let mut expiry = txn.open_table(EXPIRY).map_err(storage)?;
        expiry.remove((old.expires_at, key)).map_err(storage)?;
    }
    let mut meta = txn.open_table(META).map_err(storage)?;
    let before = usage(&meta)?;
    set_usage(
        &mut meta,
        Usage {
            keys: before.keys.saturating_sub(1),
            bytes: before.bytes.saturating_sub(old.size),
        },
    )
}

fn usage(meta: &impl ReadableTable<&'static str, u64>) -> Result<Usage, Fault> {
    let read = |name| -> Result<u64, Fault> {
        Ok(meta.get(name).map_err(storage)?.map_or(0, |v| v.value()))
    };
    Ok(Usage {
        keys: read(USAGE_KEYS)?,
        bytes: read(USAGE_BYTES)?,
    })
}

fn set_usage(meta: &mut redb::Table<'_, &str, u64>, usage: Usage) -> Result<(), Fault> {
    meta.insert(USAGE_KEYS, usage.keys).map_err(storage)?;
    meta.insert(USAGE_BYTES, usage.bytes).map_err(storage)?;
    Ok(())
}

fn begin_durable_write(db: &Database) -> Result<redb::WriteTransaction, Fault> {
    let mut txn = db.begin_write().map_err(storage)?;
    txn.set_durability(Durability::Immediate).map_err(storage)?;
    Ok(txn)
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

//! The Redis backend.
//!
//! Everything of endpoint `E` lives under `septa:E:`:
//!
//! - `septa:E:k:{key}`: a hash with the value (`v`) and its version (`n`); a TTL is a
//!   `PEXPIRE` on it, so Redis itself makes expired values disappear;
//! - `septa:E:keys`: a sorted set of the keys, all at score 0, so listing is `ZRANGEBYLEX` in
//!   byte order; its size is the key count the `max_keys` quota checks;
//! - `septa:E:expiry`: a sorted set of the keys with a TTL, scored by when they expire (Unix ms,
//!   by the server's clock), so the sweeper finds expired keys without scanning the others;
//! - `septa:E:sizes` (a hash of each key's size, key and value in bytes) and `septa:E:bytes` (their
//!   sum), what the `max_bytes` quota checks;
//! - `septa:E:version`: the counter versions come from, so a version is never reused.
//!
//! Writes are Lua scripts, so a conditional write, its quota check and its accounting are atomic.
//! Every script does a bounded amount of work, whatever the size of the store: a write touches
//! one key; a sweep removes at most a batch of expired keys and looks at most at a batch of index
//! members; a list call looks at most at [`LIST_SCAN`] index members and is called again from
//! where it stopped. One multiplexed connection serves every call of the endpoint; it is dropped
//! when it fails and made again on the next call.

use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use ::redis::aio::MultiplexedConnection;
use ::redis::{AsyncConnectionConfig, Client, ErrorKind, RedisError, Script, ServerErrorKind};
use bytes::Bytes;

use super::slot::{Lease, Slot};
use super::{DeleteOutcome, Fault, PutOutcome, Quotas, ttl_millis};
use crate::error::QuotaKind;
use crate::redact::Secrets;
use crate::store::{Condition, Entry, ListRange, Usage};

/// Index members one list script call looks at, at most.
const LIST_SCAN: usize = 1000;

/// `KEYS`: entry, index, version counter, expiry, sizes, bytes. `ARGV`: key, value, condition
/// (`any`, `version`, `absent`), expected version, TTL in ms or empty, max keys or empty, max
/// bytes or empty. Returns the new version, -1 when the condition does not hold, -2 past the
/// key quota, -3 past the byte quota.
const PUT_SCRIPT: &str = r"
local current = redis.call('HGET', KEYS[1], 'n')
if ARGV[3] == 'absent' and current then return -1 end
if ARGV[3] == 'version' and current ~= ARGV[4] then return -1 end
local size = #ARGV[1] + #ARGV[2]
local old = tonumber(redis.call('HGET', KEYS[5], ARGV[1]))
local indexed = redis.call('ZSCORE', KEYS[2], ARGV[1])
if not indexed and ARGV[6] ~= '' and redis.call('ZCARD', KEYS[2]) + 1 > tonumber(ARGV[6]) then
  return -2
end
local delta = size - (old or 0)
if delta > 0 and ARGV[7] ~= '' and (tonumber(redis.call('GET', KEYS[6])) or 0) + delta > tonumber(ARGV[7]) then
  return -3
end
local version = redis.call('INCR', KEYS[3])
redis.call('DEL', KEYS[1])
redis.call('HSET', KEYS[1], 'v', ARGV[2], 'n', version)
if ARGV[5] ~= '' then
  redis.call('PEXPIRE', KEYS[1], ARGV[5])
  local now = redis.call('TIME')
  local at = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000) + tonumber(ARGV[5])
  redis.call('ZADD', KEYS[4], at, ARGV[1])
else
  redis.call('ZREM', KEYS[4], ARGV[1])
end
redis.call('ZADD', KEYS[2], 0, ARGV[1])
redis.call('HSET', KEYS[5], ARGV[1], size)
redis.call('INCRBY', KEYS[6], delta)
return version
";

/// `KEYS`: entry, index, expiry, sizes, bytes. `ARGV`: key, condition, expected version.
/// Returns 1 when deleted, 0 when absent, -1 when the condition does not hold. An absent
/// (expired) key still leaves the index and the counts.
const DELETE_SCRIPT: &str = r"
local current = redis.call('HGET', KEYS[1], 'n')
if ARGV[2] == 'absent' and current then return -1 end
if ARGV[2] == 'version' and current ~= ARGV[3] then return -1 end
redis.call('ZREM', KEYS[2], ARGV[1])
redis.call('ZREM', KEYS[3], ARGV[1])
local old = redis.call('HGET', KEYS[4], ARGV[1])
if old then
  redis.call('HDEL', KEYS[4], ARGV[1])
  redis.call('DECRBY', KEYS[5], old)
end
if current then
  redis.call('DEL', KEYS[1])
  return 1
end
return 0
";

/// `KEYS`: index, expiry, sizes, bytes. `ARGV`: entry key prefix, batch. Removes up to `batch`
/// keys whose TTL has passed, found by score; returns how many.
const SWEEP_SCRIPT: &str = r"
local now = redis.call('TIME')
local at = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000)
local expired = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', at, 'LIMIT', 0, tonumber(ARGV[2]))
for _, key in ipairs(expired) do
  redis.call('DEL', ARGV[1] .. key)
  redis.call('ZREM', KEYS[1], key)
  redis.call('ZREM', KEYS[2], key)
  local old = redis.call('HGET', KEYS[3], key)
  if old then
    redis.call('HDEL', KEYS[3], key)
    redis.call('DECRBY', KEYS[4], old)
  end
end
return #expired
";

/// `KEYS`: index, expiry, sizes, bytes. `ARGV`: entry key prefix, start (`ZRANGEBYLEX` syntax),
/// batch. Looks at up to `batch` index members from `start` and removes those whose entry is
/// gone (written before the expiry set existed, or removed behind septa's back). Returns how
/// many it removed and the last member it looked at (empty at the end of the index).
const PRUNE_SCRIPT: &str = r"
local members = redis.call('ZRANGEBYLEX', KEYS[1], ARGV[2], '+', 'LIMIT', 0, tonumber(ARGV[3]))
local removed = 0
for _, key in ipairs(members) do
  if redis.call('EXISTS', ARGV[1] .. key) == 0 then
    redis.call('ZREM', KEYS[1], key)
    redis.call('ZREM', KEYS[2], key)
    local old = redis.call('HGET', KEYS[3], key)
    if old then
      redis.call('HDEL', KEYS[3], key)
      redis.call('DECRBY', KEYS[4], old)
    end
    removed = removed + 1
  end
end
local last = ''
if #members == tonumber(ARGV[3]) then last = members[#members] end
return {removed, last}
";

/// `KEYS`: index. `ARGV`: entry key prefix, range start and end (`ZRANGEBYLEX` syntax), count,
/// scan budget. Returns `{done, next start, keys}`: up to `count` keys whose entry exists,
/// after looking at no more than `budget` index members; `done` is 1 when the range is
/// exhausted. Reads only: expired members are left to the sweeper.
const LIST_SCRIPT: &str = r"
local count = tonumber(ARGV[4])
local budget = tonumber(ARGV[5])
local start = ARGV[2]
local keys = {}
local looked = 0
local done = 0
while #keys < count and looked < budget do
  local want = math.min(count - #keys, budget - looked)
  local batch = redis.call('ZRANGEBYLEX', KEYS[1], start, ARGV[3], 'LIMIT', 0, want)
  for _, key in ipairs(batch) do
    looked = looked + 1
    if redis.call('EXISTS', ARGV[1] .. key) == 1 then
      keys[#keys + 1] = key
    end
    start = '(' .. key
  end
  if #batch < want then
    done = 1
    break
  end
end
return {done, start, keys}
";

pub(crate) struct RedisBackend {
    client: Client,
    config: AsyncConnectionConfig,
    /// `septa:{endpoint}:k:`, the prefix of every entry key.
    entry_prefix: String,
    index_key: String,
    version_key: String,
    expiry_key: String,
    sizes_key: String,
    bytes_key: String,
    quotas: Quotas,
    slot: Slot<MultiplexedConnection>,
    secrets: Secrets,
    put: Script,
    delete: Script,
    list: Script,
    sweep: Script,
    prune: Script,
    /// Where the next prune of the index starts (`ZRANGEBYLEX` syntax): it walks the whole
    /// index a batch per sweep, then starts over.
    prune_from: Mutex<String>,
}

impl RedisBackend {
    pub(crate) fn new(
        endpoint: &str,
        url: &str,
        timeout: Duration,
        quotas: Quotas,
    ) -> Result<Self, Fault> {
        let secrets = Secrets::of(url, None);
        let client = Client::open(url).map_err(|e| {
            Fault::Config(format!(
                "cannot use the Redis URL: {}",
                secrets.scrub(&e.to_string())
            ))
        })?;
        let password = client.get_connection_info().redis_settings().password();
        let secrets = Secrets::of(url, password);
        let namespace = format!("septa:{endpoint}:");
        Ok(Self {
            client,
            config: AsyncConnectionConfig::new()
                .set_connection_timeout(Some(timeout))
                .set_response_timeout(Some(timeout)),
            entry_prefix: format!("{namespace}k:"),
            index_key: format!("{namespace}keys"),
            version_key: format!("{namespace}version"),
            expiry_key: format!("{namespace}expiry"),
            sizes_key: format!("{namespace}sizes"),
            bytes_key: format!("{namespace}bytes"),
            quotas,
            slot: Slot::new(),
            secrets,
            put: Script::new(PUT_SCRIPT),
            delete: Script::new(DELETE_SCRIPT),
            list: Script::new(LIST_SCRIPT),
            sweep: Script::new(SWEEP_SCRIPT),
            prune: Script::new(PRUNE_SCRIPT),
            prune_from: Mutex::new("-".to_owned()),
        })
    }

    pub(crate) async fn get(&self, key: &str) -> Result<Option<Entry>, Fault> {
        let entry_key = self.entry_key(key);
        let (value, version): (Option<Vec<u8>>, Option<u64>) = self
            .call_idempotent(|mut connection| {
                let entry_key = entry_key.clone();
                async move {
                    ::redis::cmd("HMGET")
                        .arg(&entry_key)
                        .arg("v")
                        .arg("n")
                        .query_async(&mut connection)
                        .await
                }
            })
            .await?;
        match (value, version) {
            (Some(value), Some(version)) => Ok(Some(Entry {
                value: Bytes::from(value),
                version,
            })),
            (None, None) => Ok(None),
            _ => Err(Fault::Failed(format!(
                "the entry `{entry_key}` is missing its value or version"
            ))),
        }
    }

    pub(crate) async fn put(
        &self,
        key: &str,
        value: Bytes,
        ttl: Option<Duration>,
        condition: Condition,
    ) -> Result<PutOutcome, Fault> {
        let (mode, expected) = condition_args(condition);
        let ttl = ttl
            .map(|ttl| ttl_millis(ttl).to_string())
            .unwrap_or_default();
        let limit = |quota: Option<u64>| quota.map(|n| n.to_string()).unwrap_or_default();
        let mut invocation = self.put.prepare_invoke();
        invocation
            .key(self.entry_key(key))
            .key(&self.index_key)
            .key(&self.version_key)
            .key(&self.expiry_key)
            .key(&self.sizes_key)
            .key(&self.bytes_key)
            .arg(key)
            .arg(value.as_ref())
            .arg(mode)
            .arg(expected)
            .arg(ttl)
            .arg(limit(self.quotas.max_keys))
            .arg(limit(self.quotas.max_bytes));
        let lease = self.lease().await?;
        let mut connection = lease.connection.clone();
        let version: i64 = invocation
            .invoke_async(&mut connection)
            .await
            .map_err(|e| self.fault(e, &lease))?;
        Ok(match version {
            -2 => PutOutcome::OverQuota(QuotaKind::Keys),
            -3 => PutOutcome::OverQuota(QuotaKind::Bytes),
            version => {
                u64::try_from(version).map_or(PutOutcome::ConditionFailed, PutOutcome::Written)
            }
        })
    }

    pub(crate) async fn delete(
        &self,
        key: &str,
        condition: Condition,
    ) -> Result<DeleteOutcome, Fault> {
        let (mode, expected) = condition_args(condition);
        let mut invocation = self.delete.prepare_invoke();
        invocation
            .key(self.entry_key(key))
            .key(&self.index_key)
            .key(&self.expiry_key)
            .key(&self.sizes_key)
            .key(&self.bytes_key)
            .arg(key)
            .arg(mode)
            .arg(expected);
        let lease = self.lease().await?;
        let mut connection = lease.connection.clone();
        let outcome: i64 = invocation
            .invoke_async(&mut connection)
            .await
            .map_err(|e| self.fault(e, &lease))?;
        Ok(match outcome {
            1 => DeleteOutcome::Deleted,
            0 => DeleteOutcome::Absent,
            _ => DeleteOutcome::ConditionFailed,
        })
    }

    /// Up to `count` live keys in `range`: the list script is called again from where it
    /// stopped until it has them or reaches the end, each call looking at a bounded number of
    /// index members.
    pub(crate) async fn list(&self, range: &ListRange, count: usize) -> Result<Vec<String>, Fault> {
        let mut start = format!(
            "{}{}",
            if range.start_exclusive { '(' } else { '[' },
            range.start
        )
        .into_bytes();
        let end = range
            .end
            .as_ref()
            .map_or_else(|| "+".to_owned(), |end| format!("({end}"));
        let mut keys = Vec::new();
        loop {
            let want = count - keys.len();
            let (done, next, found): (i64, Vec<u8>, Vec<Vec<u8>>) = self
                .call_idempotent(|mut connection| {
                    let mut invocation = self.list.prepare_invoke();
                    invocation
                        .key(&self.index_key)
                        .arg(&self.entry_prefix)
                        .arg(&start)
                        .arg(&end)
                        .arg(want)
                        .arg(LIST_SCAN);
                    async move { invocation.invoke_async(&mut connection).await }
                })
                .await?;
            for key in found {
                keys.push(String::from_utf8(key).map_err(|_| {
                    Fault::Failed(format!(
                        "the index `{}` holds a non-UTF-8 key",
                        self.index_key
                    ))
                })?);
            }
            if done == 1 || keys.len() >= count {
                return Ok(keys);
            }
            start = next;
        }
    }

    /// Removes up to `batch` expired keys, then prunes up to `batch` index members whose entry
    /// is gone, continuing the walk of the index where the last sweep left it.
    pub(crate) async fn sweep(&self, batch: usize) -> Result<usize, Fault> {
        let lease = self.lease().await?;
        let mut connection = lease.connection.clone();
        let mut invocation = self.sweep.prepare_invoke();
        invocation
            .key(&self.index_key)
            .key(&self.expiry_key)
            .key(&self.sizes_key)
            .key(&self.bytes_key)
            .arg(&self.entry_prefix)
            .arg(batch);
        let expired: i64 = invocation
            .invoke_async(&mut connection)
            .await
            .map_err(|e| self.fault(e, &lease))?;
        let from = self
            .prune_from
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        let mut invocation = self.prune.prepare_invoke();
        invocation
            .key(&self.index_key)
            .key(&self.expiry_key)
            .key(&self.sizes_key)
            .key(&self.bytes_key)
            .arg(&self.entry_prefix)
            .arg(&from)
            .arg(batch);
        let (pruned, last): (i64, Vec<u8>) = invocation
            .invoke_async(&mut connection)
            .await
            .map_err(|e| self.fault(e, &lease))?;
        let next = if last.is_empty() {
            "-".to_owned()
        } else {
            format!("({}", String::from_utf8_lossy(&last))
        };
        *self
            .prune_from
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = next;
        Ok(usize::try_from(expired.saturating_add(pruned)).unwrap_or(0))
    }

    pub(crate) async fn usage(&self) -> Result<Usage, Fault> {
        let (keys, bytes): (u64, Option<i64>) = self
            .call_idempotent(|mut connection| async move {
                ::redis::pipe()
                    .cmd("ZCARD")
                    .arg(&self.index_key)
                    .cmd("GET")
                    .arg(&self.bytes_key)
                    .query_async(&mut connection)
                    .await
            })
            .await?;
        Ok(Usage {
            keys,
            bytes: bytes.and_then(|b| u64::try_from(b).ok()).unwrap_or(0),
        })
    }

    pub(crate) fn forget_connection(&self) {
        self.slot.forget();
    }

    fn entry_key(&self, key: &str) -> String {
        format!("{}{key}", self.entry_prefix)
    }

    async fn lease(&self) -> Result<Lease<MultiplexedConnection>, Fault> {
        self.slot
            .lease(
                |_| true,
                || async {
                    self.client
                        .get_multiplexed_async_connection_with_config(&self.config)
                        .await
                        .map_err(|e| self.classify(&e))
                },
            )
            .await
    }

    /// Runs a read; if it fails on a reused connection that broke (the server restarted), it
    /// runs once more on a new connection, which is safe because a read changes nothing.
    async fn call_idempotent<T, F>(
        &self,
        call: impl Fn(MultiplexedConnection) -> F,
    ) -> Result<T, Fault>
    where
        F: Future<Output = Result<T, RedisError>>,
    {
        let lease = self.lease().await?;
        match call(lease.connection.clone()).await {
            Ok(value) => Ok(value),
            Err(error) => {
                let fault = self.fault(error, &lease);
                if lease.fresh || !matches!(fault, Fault::Unavailable(_)) {
                    return Err(fault);
                }
                let lease = self.lease().await?;
                call(lease.connection.clone())
                    .await
                    .map_err(|e| self.fault(e, &lease))
            }
        }
    }

    /// Classifies `error`, dropping the connection when it is the connection that failed.
    fn fault(&self, error: RedisError, lease: &Lease<MultiplexedConnection>) -> Fault {
        let fault = self.classify(&error);
        if matches!(fault, Fault::Unavailable(_)) {
            self.slot.discard(lease);
        }
        fault
    }

    fn classify(&self, error: &RedisError) -> Fault {
        let reason = self.secrets.scrub(&error.to_string());
        let server_unavailable = matches!(
            error.kind(),
            ErrorKind::AuthenticationFailed
                | ErrorKind::Server(
                    ServerErrorKind::BusyLoading
                        | ServerErrorKind::TryAgain
                        | ServerErrorKind::MasterDown
                        | ServerErrorKind::ClusterDown
                        | ServerErrorKind::ReadOnly
                )
        ) || matches!(
            error.code(),
            Some("NOAUTH" | "WRONGPASS" | "BUSY" | "OOM" | "LOADING")
        );
        if error.is_io_error()
            || error.is_timeout()
            || error.is_connection_dropped()
            || error.is_connection_refusal()
            || error.is_unrecoverable_error()
            || server_unavailable
        {
            Fault::Unavailable(reason)
        } else {
            Fault::Failed(reason)
        }
    }
}

/// The condition as the scripts take it: a mode and the expected version (or empty).
fn condition_args(condition: Condition) -> (&'static str, String) {
    match condition {
        Condition::Any => ("any", String::new()),
        Condition::IfVersion(version) => ("version", version.to_string()),
        Condition::IfAbsent => ("absent", String::new()),
    }
}

//! The Redis backend.
//!
//! Everything of endpoint `E` lives under `septa:E:`:
//!
//! - `septa:E:k:{key}`: a hash with the value (`v`) and its version (`n`); a TTL is a
//!   `PEXPIRE` on it, so Redis itself makes expired keys disappear;
//! - `septa:E:keys`: a sorted set of the keys, all at score 0, so listing is `ZRANGEBYLEX` in
//!   byte order; members whose hash expired are removed when a list meets them;
//! - `septa:E:version`: the counter versions come from, so a version is never reused.
//!
//! Writes are Lua scripts, so a conditional write is atomic. One multiplexed connection serves
//! every call of the endpoint; it is dropped when it fails and made again on the next call.

use std::time::Duration;

use ::redis::aio::MultiplexedConnection;
use ::redis::{AsyncConnectionConfig, Client, ErrorKind, RedisError, Script, ServerErrorKind};
use bytes::Bytes;

use super::slot::{Lease, Slot};
use super::{DeleteOutcome, Fault, ttl_millis};
use crate::redact::Secrets;
use crate::store::{Condition, Entry, ListRange};

/// `KEYS`: entry, index, version counter. `ARGV`: key, value, condition (`any`, `version`,
/// `absent`), expected version, TTL in ms or empty. Returns the new version, or -1 when the
/// condition does not hold.
const PUT_SCRIPT: &str = r"
local current = redis.call('HGET', KEYS[1], 'n')
if ARGV[3] == 'absent' and current then return -1 end
if ARGV[3] == 'version' and current ~= ARGV[4] then return -1 end
local version = redis.call('INCR', KEYS[3])
redis.call('DEL', KEYS[1])
redis.call('HSET', KEYS[1], 'v', ARGV[2], 'n', version)
if ARGV[5] ~= '' then redis.call('PEXPIRE', KEYS[1], ARGV[5]) end
redis.call('ZADD', KEYS[2], 0, ARGV[1])
return version
";

/// `KEYS`: entry, index. `ARGV`: key, condition, expected version. Returns 1 when deleted, 0
/// when absent, -1 when the condition does not hold.
const DELETE_SCRIPT: &str = r"
local current = redis.call('HGET', KEYS[1], 'n')
if ARGV[2] == 'absent' and current then return -1 end
if ARGV[2] == 'version' and current ~= ARGV[3] then return -1 end
redis.call('ZREM', KEYS[2], ARGV[1])
if current then
  redis.call('DEL', KEYS[1])
  return 1
end
return 0
";

/// `KEYS`: index. `ARGV`: entry key prefix, range start and end (`ZRANGEBYLEX` syntax), count.
/// Returns up to `count` keys whose entry exists, dropping index members whose entry expired.
const LIST_SCRIPT: &str = r"
local count = tonumber(ARGV[4])
local start = ARGV[2]
local keys = {}
while #keys < count do
  local batch = redis.call('ZRANGEBYLEX', KEYS[1], start, ARGV[3], 'LIMIT', 0, count)
  for _, key in ipairs(batch) do
    if redis.call('EXISTS', ARGV[1] .. key) == 1 then
      keys[#keys + 1] = key
      if #keys == count then break end
    else
      redis.call('ZREM', KEYS[1], key)
    end
    start = '(' .. key
  end
  if #batch < count then break end
end
return keys
";

pub(crate) struct RedisBackend {
    client: Client,
    config: AsyncConnectionConfig,
    /// `septa:{endpoint}:k:`, the prefix of every entry key.
    entry_prefix: String,
    index_key: String,
    version_key: String,
    slot: Slot<MultiplexedConnection>,
    secrets: Secrets,
    put: Script,
    delete: Script,
    list: Script,
}

impl RedisBackend {
    pub(crate) fn new(endpoint: &str, url: &str, timeout: Duration) -> Result<Self, Fault> {
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
            slot: Slot::new(),
            secrets,
            put: Script::new(PUT_SCRIPT),
            delete: Script::new(DELETE_SCRIPT),
            list: Script::new(LIST_SCRIPT),
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
    ) -> Result<Option<u64>, Fault> {
        let (mode, expected) = condition_args(condition);
        let ttl = ttl
            .map(|ttl| ttl_millis(ttl).to_string())
            .unwrap_or_default();
        let mut invocation = self.put.prepare_invoke();
        invocation
            .key(self.entry_key(key))
            .key(&self.index_key)
            .key(&self.version_key)
            .arg(key)
            .arg(value.as_ref())
            .arg(mode)
            .arg(expected)
            .arg(ttl);
        let lease = self.lease().await?;
        let mut connection = lease.connection.clone();
        let version: i64 = invocation
            .invoke_async(&mut connection)
            .await
            .map_err(|e| self.fault(e, &lease))?;
        Ok(u64::try_from(version).ok())
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

    pub(crate) async fn list(&self, range: &ListRange, count: usize) -> Result<Vec<String>, Fault> {
        let start = format!(
            "{}{}",
            if range.start_exclusive { '(' } else { '[' },
            range.start
        );
        let end = range
            .end
            .as_ref()
            .map_or_else(|| "+".to_owned(), |end| format!("({end}"));
        let keys: Vec<Vec<u8>> = self
            .call_idempotent(|mut connection| {
                let mut invocation = self.list.prepare_invoke();
                invocation
                    .key(&self.index_key)
                    .arg(&self.entry_prefix)
                    .arg(&start)
                    .arg(&end)
                    .arg(count);
                async move { invocation.invoke_async(&mut connection).await }
            })
            .await?;
        keys.into_iter()
            .map(|key| {
                String::from_utf8(key).map_err(|_| {
                    Fault::Failed(format!(
                        "the index `{}` holds a non-UTF-8 key",
                        self.index_key
                    ))
                })
            })
            .collect()
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

//! The PostgreSQL backend: one table per endpoint, `septa."{endpoint}"`.
//!
//! Endpoint names are `[a-z0-9-]{1,63}`, so the quoted name is always a valid identifier that
//! PostgreSQL does not truncate, and two endpoints never share a table. Keys are `text COLLATE
//! "C"`, so they sort by bytes like the other backends. Versions come from one sequence,
//! `septa.kv_versions`, so a version is never reused. Every operation is one statement, so a
//! conditional write is atomic. Expired rows are invisible; the next write of their key replaces
//! them, and the sweeper deletes them in batches (through a partial index on `expires_at`).
//!
//! A row trigger (`septa.kv_account()`) keeps each endpoint's keys and bytes in
//! `septa.kv_usage`, and refuses (SQLSTATE `SE507`) a write that takes them past the limits the
//! connection set (`septa.max_keys`, `septa.max_bytes`): the count and the check happen in the
//! statement that writes, under the usage row's lock, so concurrent writers cannot overshoot.
//!
//! The connection uses TLS when the URL asks for it (see [`super::postgres_tls`]); statements
//! are prepared once per connection. The schema, sequence, tables, trigger and index are
//! created, if absent, when a connection is made.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tokio_postgres::{Client, Config, Statement};

use super::postgres_tls::{RustlsConnect, TlsSettings, refused_parameter};
use super::slot::{Lease, Slot};
use super::{DeleteOutcome, Fault, PutOutcome, Quotas, ttl_millis};
use crate::error::QuotaKind;
use crate::redact::Secrets;
use crate::store::{Condition, Entry, ListRange, Usage};

/// The SQLSTATE the accounting trigger raises for a write past a quota.
const OVER_QUOTA: &str = "SE507";

/// Serializes schema creation between septa processes: concurrent `CREATE ... IF NOT EXISTS`
/// can still fail on a unique index. The number is arbitrary but fixed ("septa" in ASCII).
const SCHEMA_LOCK: i64 = 0x73_65_70_74_61;

const LIVE: &str = "(expires_at IS NULL OR expires_at > now())";

pub(crate) struct PostgresBackend {
    config: Config,
    tls: RustlsConnect,
    /// The endpoint's name: its table's, and its row's in `septa.kv_usage`.
    endpoint: String,
    /// `septa."{endpoint}"`.
    table: String,
    quotas: Quotas,
    slot: Slot<Arc<Connection>>,
    secrets: Secrets,
}

/// One connection and its prepared statements.
struct Connection {
    client: Client,
    get: Statement,
    put_any: Statement,
    put_if_absent: Statement,
    put_if_version: Statement,
    delete_any: Statement,
    delete_if_version: Statement,
    exists: Statement,
    list_to_end: Statement,
    list_bounded: Statement,
    sweep: Statement,
    usage: Statement,
}

impl PostgresBackend {
    pub(crate) fn new(
        endpoint: &str,
        url: &str,
        timeout: Duration,
        quotas: Quotas,
    ) -> Result<Self, Fault> {
        let secrets = Secrets::of(url, None);
        let invalid = |reason: String| {
            Fault::Config(format!(
                "cannot use the PostgreSQL URL: {}",
                secrets.scrub(&reason)
            ))
        };
        if let Some(name) = refused_parameter(url) {
            return Err(invalid(format!(
                "`{name}` is not supported: septa does not present client certificates"
            )));
        }
        let (rest, tls) = TlsSettings::split(url).map_err(invalid)?;
        let mut config: Config = rest
            .parse()
            .map_err(|e: tokio_postgres::Error| invalid(describe(&e)))?;
        config.ssl_mode(tls.mode.ssl_mode());
        config.connect_timeout(timeout);
        let connector = tls.connector().map_err(invalid)?;
        let password = config
            .get_password()
            .map(|p| String::from_utf8_lossy(p).into_owned());
        Ok(Self {
            config,
            tls: connector,
            endpoint: endpoint.to_owned(),
            table: format!("septa.\"{endpoint}\""),
            quotas,
            slot: Slot::new(),
            secrets: Secrets::of(url, password.as_deref()),
        })
    }

    pub(crate) async fn get(&self, key: &str) -> Result<Option<Entry>, Fault> {
        let (lease, row) = self
            .call(|c| async move { c.client.query_opt(&c.get, &[&key]).await })
            .await?;
        let Some(row) = row else { return Ok(None) };
        let value: Vec<u8> = row.try_get(0).map_err(|e| self.fault(e, &lease))?;
        let version: i64 = row.try_get(1).map_err(|e| self.fault(e, &lease))?;
        Ok(Some(Entry {
            value: Bytes::from(value),
            version: version_from_row(version)?,
        }))
    }

    pub(crate) async fn put(
        &self,
        key: &str,
        value: Bytes,
        ttl: Option<Duration>,
        condition: Condition,
    ) -> Result<PutOutcome, Fault> {
        let ttl = ttl.map(|ttl| i64::try_from(ttl_millis(ttl)).unwrap_or(i64::MAX));
        let value = value.as_ref();
        let (lease, row) = match condition {
            Condition::Any => {
                self.call(|c| async move {
                    over_quota(c.client.query_opt(&c.put_any, &[&key, &value, &ttl]).await)
                })
                .await?
            }
            Condition::IfAbsent => {
                self.call(|c| async move {
                    over_quota(
                        c.client
                            .query_opt(&c.put_if_absent, &[&key, &value, &ttl])
                            .await,
                    )
                })
                .await?
            }
            Condition::IfVersion(expected) => {
                let Ok(expected) = i64::try_from(expected) else {
                    return Ok(PutOutcome::ConditionFailed);
                };
                self.call(|c| async move {
                    over_quota(
                        c.client
                            .query_opt(&c.put_if_version, &[&key, &value, &ttl, &expected])
                            .await,
                    )
                })
                .await?
            }
        };
        let row = match row {
            Ok(Some(row)) => row,
            Ok(None) => return Ok(PutOutcome::ConditionFailed),
            Err(quota) => return Ok(PutOutcome::OverQuota(quota)),
        };
        let version: i64 = row.try_get(0).map_err(|e| self.fault(e, &lease))?;
        Ok(PutOutcome::Written(version_from_row(version)?))
    }

    pub(crate) async fn sweep(&self, batch: usize) -> Result<usize, Fault> {
        let batch = i64::try_from(batch).unwrap_or(i64::MAX);
        let (lease, row) = self
            .call(|c| async move { c.client.query_one(&c.sweep, &[&batch]).await })
            .await?;
        let removed: i64 = row.try_get(0).map_err(|e| self.fault(e, &lease))?;
        Ok(usize::try_from(removed).unwrap_or(0))
    }

    pub(crate) async fn usage(&self) -> Result<Usage, Fault> {
        let endpoint = self.endpoint.as_str();
        let (lease, row) = self
            .call(|c| async move { c.client.query_opt(&c.usage, &[&endpoint]).await })
            .await?;
        let Some(row) = row else {
            return Ok(Usage::default());
        };
        let count = |i| -> Result<u64, Fault> {
            let n: i64 = row.try_get(i).map_err(|e| self.fault(e, &lease))?;
            Ok(u64::try_from(n).unwrap_or(0))
        };
        Ok(Usage {
            keys: count(0)?,
            bytes: count(1)?,
        })
    }

    pub(crate) async fn delete(
        &self,
        key: &str,
        condition: Condition,
    ) -> Result<DeleteOutcome, Fault> {
        match condition {
            Condition::Any => {
                let (lease, row) = self
                    .call(|c| async move { c.client.query_opt(&c.delete_any, &[&key]).await })
                    .await?;
                let Some(row) = row else {
                    return Ok(DeleteOutcome::Absent);
                };
                let was_live: bool = row.try_get(0).map_err(|e| self.fault(e, &lease))?;
                Ok(if was_live {
                    DeleteOutcome::Deleted
                } else {
                    DeleteOutcome::Absent
                })
            }
            Condition::IfVersion(expected) => {
                let Ok(expected) = i64::try_from(expected) else {
                    return Ok(DeleteOutcome::ConditionFailed);
                };
                let (_, row) = self
                    .call(|c| async move {
                        c.client
                            .query_opt(&c.delete_if_version, &[&key, &expected])
                            .await
                    })
                    .await?;
                Ok(match row {
                    Some(_) => DeleteOutcome::Deleted,
                    None => DeleteOutcome::ConditionFailed,
                })
            }
            Condition::IfAbsent => {
                let (_, row) = self
                    .call(|c| async move { c.client.query_opt(&c.exists, &[&key]).await })
                    .await?;
                Ok(match row {
                    Some(_) => DeleteOutcome::ConditionFailed,
                    None => DeleteOutcome::Absent,
                })
            }
        }
    }

    pub(crate) async fn list(&self, range: &ListRange, count: usize) -> Result<Vec<String>, Fault> {
        // `key > ''` holds for every key, so a list from the prefix uses the same statements.
        let (low, above) = if range.start_exclusive {
            (range.start.as_str(), range.start.as_str())
        } else {
            (range.start.as_str(), "")
        };
        let count = i64::try_from(count).unwrap_or(i64::MAX);
        let end = range.end.as_deref();
        let (lease, rows) = self
            .call(|c| async move {
                match end {
                    Some(end) => {
                        c.client
                            .query(&c.list_bounded, &[&low, &above, &count, &end])
                            .await
                    }
                    None => {
                        c.client
                            .query(&c.list_to_end, &[&low, &above, &count])
                            .await
                    }
                }
            })
            .await?;
        rows.iter()
            .map(|row| {
                row.try_get::<_, String>(0)
                    .map_err(|e| self.fault(e, &lease))
            })
            .collect()
    }

    pub(crate) fn forget_connection(&self) {
        self.slot.forget();
    }

    /// Runs one statement on the endpoint's connection, connecting first if needed.
    ///
    /// Statements are not retried: a closed connection is noticed before use
    /// ([`Client::is_closed`]), and a failure mid-statement may have written.
    async fn call<T, F>(
        &self,
        statement: impl FnOnce(Arc<Connection>) -> F,
    ) -> Result<(Lease<Arc<Connection>>, T), Fault>
    where
        F: Future<Output = Result<T, tokio_postgres::Error>>,
    {
        let lease = self
            .slot
            .lease(|c| !c.client.is_closed(), || self.connect())
            .await?;
        let result = statement(Arc::clone(&lease.connection)).await;
        match result {
            Ok(value) => Ok((lease, value)),
            Err(error) => Err(self.fault(error, &lease)),
        }
    }

    async fn connect(&self) -> Result<Arc<Connection>, Fault> {
        let (client, connection) = self
            .config
            .connect(self.tls.clone())
            .await
            .map_err(|e| self.classify(&e))?;
        let secrets = self.secrets.clone();
        tokio::spawn(async move {
            if let Err(error) = connection.await {
                let error = secrets.scrub(&describe(&error));
                tracing::debug!(%error, "postgres connection closed");
            }
        });
        client
            .batch_execute(&self.schema_sql())
            .await
            .map_err(|e| self.classify(&e))?;
        // The accounting trigger reads this connection's quotas.
        let limit = |quota: Option<u64>| quota.map(|n| n.to_string()).unwrap_or_default();
        client
            .execute(
                "SELECT set_config('septa.max_keys', $1, false), set_config('septa.max_bytes', $2, false)",
                &[&limit(self.quotas.max_keys), &limit(self.quotas.max_bytes)],
            )
            .await
            .map_err(|e| self.classify(&e))?;
        self.prepare(client).await.map(Arc::new)
    }

    fn schema_sql(&self) -> String {
        let table = &self.table;
        // Checked before created, so a role without CREATE on the database can use a schema,
        // tables, function and trigger an administrator made for it.
        format!(
            r#"
BEGIN;
SELECT pg_advisory_xact_lock({SCHEMA_LOCK});
DO $$ BEGIN
  IF to_regnamespace('septa') IS NULL THEN CREATE SCHEMA septa; END IF;
  IF to_regclass('septa.kv_versions') IS NULL THEN CREATE SEQUENCE septa.kv_versions; END IF;
  IF to_regclass('septa.kv_usage') IS NULL THEN
    CREATE TABLE septa.kv_usage (
      tbl text PRIMARY KEY,
      keys bigint NOT NULL,
      bytes bigint NOT NULL
    );
  END IF;
  IF to_regprocedure('septa.kv_account()') IS NULL THEN
    EXECUTE $create${ACCOUNT_FUNCTION}$create$;
  END IF;
  IF to_regclass('{table_literal}') IS NULL THEN
    CREATE TABLE {table} (
      key text COLLATE "C" PRIMARY KEY,
      value bytea NOT NULL,
      version bigint NOT NULL,
      expires_at timestamptz
    );
  END IF;
  IF NOT EXISTS (SELECT 1 FROM pg_trigger
                 WHERE tgrelid = '{table_literal}'::regclass AND tgname = 'septa_kv_account') THEN
    LOCK TABLE {table} IN SHARE ROW EXCLUSIVE MODE;
    CREATE TRIGGER septa_kv_account AFTER INSERT OR UPDATE OR DELETE ON {table}
      FOR EACH ROW EXECUTE FUNCTION septa.kv_account();
    INSERT INTO septa.kv_usage (tbl, keys, bytes)
      SELECT '{name_literal}', count(*), coalesce(sum(octet_length(key) + octet_length(value)), 0)
      FROM {table}
      ON CONFLICT (tbl) DO UPDATE SET keys = excluded.keys, bytes = excluded.bytes;
  END IF;
  IF NOT EXISTS (SELECT 1 FROM pg_index
                 WHERE indrelid = '{table_literal}'::regclass AND indpred IS NOT NULL) THEN
    CREATE INDEX ON {table} (expires_at) WHERE expires_at IS NOT NULL;
  END IF;
END $$;
COMMIT;
"#,
            table_literal = table.replace('\'', "''"),
            name_literal = self.endpoint.replace('\'', "''"),
        )
    }

    async fn prepare(&self, client: Client) -> Result<Connection, Fault> {
        let table = &self.table;
        let expires = "now() + $3::bigint * interval '1 millisecond'";
        let upsert = format!(
            "INSERT INTO {table} AS t (key, value, version, expires_at) \
             VALUES ($1, $2, nextval('septa.kv_versions'), {expires}) \
             ON CONFLICT (key) DO UPDATE SET value = excluded.value, \
             version = excluded.version, expires_at = excluded.expires_at"
        );
        let live = LIVE;
        let list = format!("SELECT key FROM {table} WHERE key >= $1 AND key > $2 AND {live}");
        let prepare = |sql: String| {
            let client = &client;
            async move { client.prepare(&sql).await.map_err(|e| self.classify(&e)) }
        };
        let get = prepare(format!(
            "SELECT value, version FROM {table} WHERE key = $1 AND {live}"
        ))
        .await?;
        let put_any = prepare(format!("{upsert} RETURNING t.version")).await?;
        let put_if_absent = prepare(format!(
            "{upsert} WHERE t.expires_at IS NOT NULL AND t.expires_at <= now() \
             RETURNING t.version"
        ))
        .await?;
        let put_if_version = prepare(format!(
            "UPDATE {table} SET value = $2, version = nextval('septa.kv_versions'), \
             expires_at = {expires} WHERE key = $1 AND version = $4 AND {live} \
             RETURNING version"
        ))
        .await?;
        let delete_any = prepare(format!(
            "DELETE FROM {table} WHERE key = $1 RETURNING {live}"
        ))
        .await?;
        let delete_if_version = prepare(format!(
            "DELETE FROM {table} WHERE key = $1 AND version = $2 AND {live} RETURNING 1"
        ))
        .await?;
        let exists = prepare(format!("SELECT 1 FROM {table} WHERE key = $1 AND {live}")).await?;
        let list_to_end = prepare(format!("{list} ORDER BY key LIMIT $3")).await?;
        let list_bounded = prepare(format!("{list} AND key < $4 ORDER BY key LIMIT $3")).await?;
        let sweep = prepare(format!(
            "WITH gone AS (DELETE FROM {table} WHERE key IN (\
               SELECT key FROM {table} WHERE expires_at <= now() \
               ORDER BY expires_at LIMIT $1 FOR UPDATE SKIP LOCKED) RETURNING 1) \
             SELECT count(*) FROM gone"
        ))
        .await?;
        let usage =
            prepare("SELECT keys, bytes FROM septa.kv_usage WHERE tbl = $1".to_owned()).await?;
        Ok(Connection {
            client,
            get,
            put_any,
            put_if_absent,
            put_if_version,
            delete_any,
            delete_if_version,
            exists,
            list_to_end,
            list_bounded,
            sweep,
            usage,
        })
    }

    /// Classifies `error`, dropping the connection when it is the connection that failed.
    fn fault(&self, error: tokio_postgres::Error, lease: &Lease<Arc<Connection>>) -> Fault {
        let fault = self.classify(&error);
        if matches!(fault, Fault::Unavailable(_)) || lease.connection.client.is_closed() {
            self.slot.discard(lease);
        }
        fault
    }

    fn classify(&self, error: &tokio_postgres::Error) -> Fault {
        let reason = self.secrets.scrub(&describe(error));
        let unavailable = match error.code() {
            // Connection exceptions, insufficient resources, operator intervention (the server
            // shutting down), invalid authorization: the backend is not there for us right now.
            Some(code) => matches!(code.code().get(..2), Some("08" | "53" | "57" | "28")),
            // No SQLSTATE: the error is the connection's (refused, closed, timed out).
            None => error.as_db_error().is_none() && !is_conversion_error(error),
        };
        if unavailable {
            Fault::Unavailable(reason)
        } else {
            Fault::Failed(reason)
        }
    }
}

/// The accounting trigger (`septa.kv_account()`): keeps `septa.kv_usage` in step with every
/// row written or deleted, and refuses a write that grows a count past the quota the
/// connection set. Keys and bytes only grow on insert and on an update to a larger row.
const ACCOUNT_FUNCTION: &str = r"
CREATE FUNCTION septa.kv_account() RETURNS trigger LANGUAGE plpgsql AS $body$
DECLARE
  added_keys bigint := 0;
  added_bytes bigint := 0;
  now_keys bigint;
  now_bytes bigint;
  quota text;
BEGIN
  IF TG_OP <> 'DELETE' THEN
    added_keys := added_keys + 1;
    added_bytes := added_bytes + octet_length(NEW.key) + octet_length(NEW.value);
  END IF;
  IF TG_OP <> 'INSERT' THEN
    added_keys := added_keys - 1;
    added_bytes := added_bytes - octet_length(OLD.key) - octet_length(OLD.value);
  END IF;
  UPDATE septa.kv_usage SET keys = keys + added_keys, bytes = bytes + added_bytes
    WHERE tbl = TG_TABLE_NAME RETURNING keys, bytes INTO now_keys, now_bytes;
  IF added_keys > 0 THEN
    quota := current_setting('septa.max_keys', true);
    IF quota <> '' AND now_keys > quota::bigint THEN
      RAISE EXCEPTION 'max_keys' USING ERRCODE = 'SE507';
    END IF;
  END IF;
  IF added_bytes > 0 THEN
    quota := current_setting('septa.max_bytes', true);
    IF quota <> '' AND now_bytes > quota::bigint THEN
      RAISE EXCEPTION 'max_bytes' USING ERRCODE = 'SE507';
    END IF;
  END IF;
  RETURN NULL;
END
$body$
";

/// A statement's outcome, with a write the accounting trigger refused as the quota it broke.
fn over_quota<T>(
    result: Result<T, tokio_postgres::Error>,
) -> Result<Result<T, QuotaKind>, tokio_postgres::Error> {
    match result {
        Ok(value) => Ok(Ok(value)),
        Err(error) => match error.as_db_error() {
            Some(db) if db.code().code() == OVER_QUOTA => Ok(Err(if db.message() == "max_keys" {
                QuotaKind::Keys
            } else {
                QuotaKind::Bytes
            })),
            _ => Err(error),
        },
    }
}

/// The error and its causes: tokio-postgres keeps the useful part (the server's message, the
/// I/O error) in the source chain, not in its own `Display`.
fn describe(error: &tokio_postgres::Error) -> String {
    let mut text = error.to_string();
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text = format!("{text}: {cause_text}");
        }
        source = cause.source();
    }
    text
}

/// A row that did not convert is a schema surprise, not an outage.
fn is_conversion_error(error: &tokio_postgres::Error) -> bool {
    let text = error.to_string();
    text.starts_with("error deserializing") || text.starts_with("error serializing")
}

fn version_from_row(version: i64) -> Result<u64, Fault> {
    u64::try_from(version)
        .map_err(|_| Fault::Failed(format!("a stored version is negative ({version})")))
}

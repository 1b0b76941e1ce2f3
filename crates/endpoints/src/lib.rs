//! Private endpoints: the key-value API every endpoint speaks, and its three backends.
//!
//! An endpoint (`[endpoint.NAME]` in `septa.toml`) is a data store that only functions reach,
//! at `http://NAME.internal/kv/...`, after the mesh has decided the call against the policy. This
//! crate owns what happens after that decision: [`handle`] turns the HTTP request into a
//! [`Store`] operation, and the store runs it on one of three backends:
//!
//! - **embedded** ([`Backend::Embedded`]): a [redb](https://www.redb.org) file, one per endpoint.
//!   Every write is committed with immediate durability before it is acknowledged, so a put that
//!   returned success survives `kill -9`.
//! - **Redis** ([`Backend::Redis`], `redis://...`): entries live under `septa:{endpoint}:`.
//!   Conditional writes run as Lua scripts, so they are atomic.
//! - **PostgreSQL** ([`Backend::Postgres`], `postgres://...`): one table per endpoint,
//!   `septa."{endpoint}"`, created if absent. Conditional writes are single statements.
//!
//! There is no listener here: the mesh calls [`handle`] in process. Every store operation has a
//! timeout ([`StoreOptions::timeout`], 2 s by default), so a backend that is down answers
//! `503 backend_unavailable` instead of hanging the caller, and the next call reconnects.
//! Passwords in backend URLs never appear in errors, logs or `Debug` output.
//!
//! # The key-value API
//!
//! Keys are the rest of the path after `/kv/`, exactly as the mesh normalized it: percent escapes
//! are part of the key (`/kv/a%20b` stores the key `a%20b`), so the key an allow rule's path
//! pattern matched is the key that is stored. A key has up to 512 bytes, does not start or end
//! with `/`, and has no empty, `.` or `..` segment, no control character, no `\` and no encoded
//! `/`, `.`, `\` or NUL (`%2F`, `%2E`, `%5C`, `%00`); anything else is refused with
//! `400 invalid_key`.
//!
//! Every write gives the key a new *version*, a number that only grows: versions are never
//! reused, not even after the key was deleted, so a stale version can never match again.
//!
//! ## `GET /kv/{key}`
//!
//! `200` with the stored bytes as the body, `content-type: application/octet-stream` and
//! `etag: "VERSION"`. `404 not_found` if the key is absent or its TTL has passed. With
//! `if-none-match: "VERSION"` (or `*`) matching the stored version, `304` with no body.
//!
//! ## `PUT /kv/{key}`
//!
//! Stores the request body (up to 1 MiB by default, else `413 value_too_large`) and answers `200`
//! with `{"key": "...", "version": N}` and the new `etag`.
//!
//! - `?ttl_s=N` (a whole number of seconds, 1 to 315360000, ten years): the key disappears N
//!   seconds later. A put without `ttl_s` stores a key that does not expire, removing any
//!   earlier TTL.
//! - `if-match: "VERSION"`: compare-and-swap; the put happens only if the key exists at exactly
//!   that version.
//! - `if-none-match: *`: create-only; the put happens only if the key does not exist (an expired
//!   key does not exist).
//!
//! When the condition does not hold: `412 version_mismatch`, and nothing is written. Conditional
//! headers are strict: `if-match` takes exactly one version in quotes, as `etag` gives it (not
//! `*`, not a weak `W/"N"`, not a list), `if-none-match` on a PUT takes only `*`, and giving both
//! is a `400 bad_request` rather than a guess.
//!
//! ## `DELETE /kv/{key}`
//!
//! `200` with `{"deleted": true}`, or `{"deleted": false}` when there was nothing to delete.
//! With `if-match: "VERSION"` the delete happens only at that version, else
//! `412 version_mismatch`.
//!
//! ## `GET /kv/{prefix}/` and `GET /kv/`
//!
//! A path ending in `/` lists the keys under that prefix (`GET /kv/` lists every key), in byte
//! order: `200` with `{"keys": ["a/1", "a/2"], "next": "a/2"}`. `next` is `null` on the last
//! page; otherwise pass it back as `?after=` (percent-encoded, as any query value) to get the
//! next page. `?limit=N` sets the page size: 1 to 1000, 100 by default.
//!
//! Other methods (`POST`, `PATCH`, `HEAD`, ...) answer `405` with `allow`. Query parameters
//! other than the ones named here are refused with `400 bad_request`.
//!
//! ## Errors
//!
//! Every error is JSON, `{"error": {"code": "...", "message": "..."}}`, where the code is stable
//! and the message says what was wrong:
//!
//! | status | code | when |
//! |---|---|---|
//! | 400 | `invalid_key` | the key or prefix breaks the rules above |
//! | 400 | `bad_request` | an unknown or malformed query parameter or conditional header, an unreadable body |
//! | 404 | `not_found` | the key is absent or expired, or the path is not under `/kv/` |
//! | 405 | `method_not_allowed` | with `allow` naming the methods of that path |
//! | 412 | `version_mismatch` | an `if-match` / `if-none-match` condition did not hold |
//! | 413 | `value_too_large` | the body is over the endpoint's value limit |
//! | 500 | `internal` | the backend failed in an unexpected way |
//! | 503 | `backend_unavailable` | the backend did not answer in time or refused the connection; with `retry-after: 1` |
//! | 507 | `quota_exceeded` | the put would take the endpoint past a quota; the error also has `quota` (`max_keys` or `max_bytes`) and `limit` |
//!
//! # Storage: expiry and quotas
//!
//! Expired entries are invisible at once, and removed in the background: every store has a
//! sweeper that every [`StoreOptions::sweep_interval`] (30 s by default) deletes expired entries
//! in batches of at most [`SWEEP_BATCH`], so no step takes longer as the store grows.
//!
//! An endpoint may have quotas ([`StoreOptions::max_keys`], [`StoreOptions::max_bytes`]; in
//! `septa.toml`, `limits = { max_keys = N, max_bytes = N }`). They count every stored entry,
//! expired or not, until it is deleted or swept, and the bytes of its key and value
//! ([`Store::usage`]). A put that would add a key past `max_keys`, or grow the bytes past
//! `max_bytes`, is refused with `507 quota_exceeded` and nothing is written; before refusing, the
//! store sweeps one batch of expired entries and tries once more. Overwriting a key with a value
//! no larger, and deleting, are always allowed.
//!
//! # Operating the backends
//!
//! - Embedded: one file per endpoint; a file is opened by one [`Store`] (one process) at a time.
//! - Redis: a standalone server (not Redis Cluster: the list script reads keys it computes). The
//!   version counter lives in Redis too, so a server that loses its data (flushed, or restarted
//!   without persistence) starts versions again from 1: keep persistence on if a client may hold
//!   a version across such a loss.
//! - PostgreSQL: the role needs `CREATE` on the database the first time (for the `septa` schema,
//!   the `septa.kv_versions` sequence, the `septa.kv_usage` table and `septa.kv_account()`
//!   function that count what each endpoint stores, and the endpoint's table with its trigger and
//!   index), or an administrator creates them beforehand; after that, `SELECT`, `INSERT`,
//!   `UPDATE`, `DELETE` and `USAGE` on the sequence are enough. The connection uses TLS when the
//!   URL asks for it, as libpq reads `sslmode` (`disable` by default, `prefer`, `require`,
//!   `verify-ca`, `verify-full`) and `sslrootcert` (a PEM file; the Mozilla roots otherwise).
//! - Redis and PostgreSQL connections are made on first use and remade on the call after one
//!   fails; the connection's I/O runs as a task on the tokio runtime that made it.

mod backend;
mod error;
mod http;
mod key;
mod redact;
mod store;
mod sweep;

pub use error::{ErrorCode, QuotaKind, StoreError};
pub use http::handle;
pub use key::{MAX_KEY_BYTES, validate_key};
pub use redact::redact_url;
pub use store::{
    Backend, BackendKind, Condition, DEFAULT_LIST_LIMIT, Entry, KeyPage, MAX_LIST_LIMIT,
    SWEEP_BATCH, Store, StoreOptions, Usage,
};

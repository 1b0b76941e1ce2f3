//! An HTTP request → `septa_endpoints::handle`, the key-value API of a private endpoint, on a
//! real embedded (redb) store; and a request path → the key rules (`validate_key`).
//!
//! The input is a request as text: `METHOD TARGET` on the first line, `name: value` header
//! lines up to an empty line, then the body. The store holds a few fixed keys, and whatever a
//! request changes is put back afterwards, so every input meets the same store.
//!
//! What must hold: `handle` never panics and answers only with the statuses the API documents
//! (never `500` or `503` from the embedded store); every error is the documented JSON shape, a
//! `405` names what is allowed; a stored value reads back as sent, under the version its `etag`
//! gave; a list is sorted, within its prefix and its limit. And the claim in `key.rs`: a key that
//! breaks the key rules never comes from a normalized path.

#![no_main]

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use bytes::Bytes;
use http::{Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use libfuzzer_sys::fuzz_target;
use septa_endpoints::{
    Backend, Condition, MAX_KEY_BYTES, Store, StoreOptions, handle, validate_key,
};
use septa_policy::path::{normalize_path, split_path_query};
use serde_json::Value;

/// Keys the store holds before every input, each with the value `v`.
const FIXED: &[&str] = &["a", "a/b", "a/c", "b;x", "caf%C3%A9", "z~"];

/// Values over this are refused with `413`; small, so the fuzzer reaches it.
const MAX_VALUE_BYTES: usize = 1024;

struct Fixture {
    runtime: tokio::runtime::Runtime,
    store: Store,
}

/// Memory-backed when the system has it, so the store's syncs cost no disk.
fn scratch() -> PathBuf {
    let shm = Path::new("/dev/shm");
    if shm.is_dir() {
        shm.to_owned()
    } else {
        std::env::temp_dir()
    }
}

fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a tokio runtime");
        let dir = scratch().join(format!("septa-fuzz-kv-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let backend = Backend::Embedded {
            path: dir.join("kv.redb"),
        };
        let mut options = StoreOptions::default();
        options.max_value_bytes = MAX_VALUE_BYTES;
        let store = runtime
            .block_on(Store::open("fuzz", &backend, options))
            .expect("open the embedded store");
        for key in FIXED {
            runtime
                .block_on(store.put(key, Bytes::from_static(b"v"), None, Condition::Any))
                .expect("seed the store");
        }
        Fixture { runtime, store }
    })
}

/// `METHOD TARGET\nname: value\n...\n\nbody` as a request, and its body; `None` when it is
/// not one.
fn request(data: &[u8]) -> Option<(Request<Full<Bytes>>, Bytes)> {
    let (head, body) = match data.windows(2).position(|w| w == b"\n\n") {
        Some(at) => (&data[..at], &data[at + 2..]),
        None => (data, &[][..]),
    };
    let head = std::str::from_utf8(head).ok()?;
    let mut lines = head.split('\n');
    let (method, target) = lines.next()?.split_once(' ')?;
    let mut builder = Request::builder()
        .method(Method::from_bytes(method.as_bytes()).ok()?)
        .uri(target);
    for line in lines {
        let (name, value) = line.split_once(':')?;
        builder = builder.header(name.trim(), value.trim());
    }
    let body = Bytes::copy_from_slice(body);
    Some((builder.body(Full::new(body.clone())).ok()?, body))
}

/// A response: its status, its `etag` and `allow`, and its body.
struct Answer {
    status: StatusCode,
    etag: Option<String>,
    allow: bool,
    body: Bytes,
}

fn send(fixture: &Fixture, request: Request<Full<Bytes>>) -> Answer {
    fixture.runtime.block_on(async {
        let response = handle(&fixture.store, request).await;
        let header = |name| {
            response
                .headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
        };
        let etag = header(http::header::ETAG);
        let allow = response.headers().contains_key(http::header::ALLOW);
        let status = response.status();
        let body = response
            .into_body()
            .collect()
            .await
            .expect("a full body")
            .to_bytes();
        Answer {
            status,
            etag,
            allow,
            body,
        }
    })
}

/// The key rules hold for every key a normalized `/kv/` path names.
fn check_normalized_key(path: &str) {
    let Ok(normalized) = normalize_path(path) else {
        return;
    };
    let Some(key) = normalized.strip_prefix("/kv/") else {
        return;
    };
    if key.is_empty() || key.ends_with('/') || key.len() > MAX_KEY_BYTES {
        return;
    }
    if let Err(reason) = validate_key(key) {
        panic!(
            "normalized path {:?} names key {key:?}, which is refused: {reason}",
            &*normalized
        );
    }
}

fn check(fixture: &Fixture, method: &Method, path: &str, sent: &Bytes, answer: &Answer) {
    let status = answer.status.as_u16();
    assert!(
        matches!(status, 200 | 304 | 400 | 404 | 405 | 412 | 413),
        "{method} {path:?} answered {status}: {:?}",
        answer.body
    );
    if status >= 400 {
        let json: Value = serde_json::from_slice(&answer.body).expect("an error body is JSON");
        let code = json["error"]["code"].as_str().unwrap_or_default();
        let message = json["error"]["message"].as_str().unwrap_or_default();
        assert!(!code.is_empty() && !message.is_empty(), "error body {json}");
        assert_eq!(status == 405, answer.allow, "{status} and `allow`");
        return;
    }
    let key = path.strip_prefix("/kv/").unwrap_or_default();
    if key.is_empty() || key.ends_with('/') {
        // A list.
        let json: Value = serde_json::from_slice(&answer.body).expect("a list is JSON");
        let keys: Vec<&str> = json["keys"]
            .as_array()
            .expect("a list has keys")
            .iter()
            .map(|k| k.as_str().expect("keys are strings"))
            .collect();
        assert!(
            keys.windows(2).all(|w| w[0] < w[1]),
            "unsorted list {keys:?}"
        );
        assert!(
            keys.iter().all(|k| k.starts_with(key)),
            "{keys:?} outside {key:?}"
        );
        assert!(keys.len() <= 1000, "{} keys in a page", keys.len());
        return;
    }
    if *method == Method::PUT && status == 200 {
        assert_eq!(validate_key(key), Ok(()), "stored the key {key:?}");
        let json: Value = serde_json::from_slice(&answer.body).expect("a put answers JSON");
        let version = json["version"].as_u64().expect("a put names the version");
        assert_eq!(
            answer.etag,
            Some(format!("\"{version}\"")),
            "the etag of a put"
        );
        let get = Request::get(path)
            .body(Full::new(Bytes::new()))
            .expect("a GET");
        let read = send(fixture, get);
        assert_eq!(
            read.status,
            StatusCode::OK,
            "{path:?} stored, then not found"
        );
        assert_eq!(&read.body, sent, "{path:?} read back other bytes");
        assert_eq!(
            read.etag, answer.etag,
            "{path:?} read back at another version"
        );
    }
}

/// Puts back what `method` on `path` may have changed: a fixed key gets its value again, any
/// other key is removed.
fn restore(fixture: &Fixture, path: &str) {
    let Some(key) = path.strip_prefix("/kv/") else {
        return;
    };
    if validate_key(key).is_err() {
        return;
    }
    let store = &fixture.store;
    let outcome = fixture.runtime.block_on(async {
        if FIXED.contains(&key) {
            store
                .put(key, Bytes::from_static(b"v"), None, Condition::Any)
                .await
                .map(|_| ())
        } else {
            store.delete(key, Condition::Any).await.map(|_| ())
        }
    });
    outcome.unwrap_or_else(|e| panic!("restoring {key:?}: {e}"));
}

fuzz_target!(|data: &[u8]| {
    let Some((request, sent)) = request(data) else {
        return;
    };
    let fixture = fixture();
    let method = request.method().clone();
    let target = request
        .uri()
        .path_and_query()
        .map_or("/", |pq| pq.as_str())
        .to_owned();
    let path = request.uri().path().to_owned();
    check_normalized_key(split_path_query(&target).0);
    let answer = send(fixture, request);
    check(fixture, &method, &path, &sent, &answer);
    if matches!(method, Method::PUT | Method::DELETE) && answer.status == StatusCode::OK {
        restore(fixture, &path);
    }
});

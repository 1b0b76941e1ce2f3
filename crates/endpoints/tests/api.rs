//! The key-value API as a function sees it, one table of behaviours run against every backend:
//! embedded redb, a real `redis-server` and a real PostgreSQL.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use common::{Harness, Kind, call};
use septa_endpoints::{Condition, Store, StoreError};

type Case = fn(Store) -> Pin<Box<dyn Future<Output = ()> + Send>>;

macro_rules! cases {
    ($($name:ident),* $(,)?) => {
        &[$((stringify!($name), |store| Box::pin($name(store)))),*]
    };
}

const CASES: &[(&str, Case)] = cases![
    put_then_get_returns_the_value_and_its_version,
    get_of_an_absent_key_is_not_found,
    every_write_gets_a_higher_version_never_reused,
    delete_says_whether_there_was_something_to_delete,
    delete_with_if_match_deletes_only_that_version,
    compare_and_swap_succeeds_only_at_the_current_version,
    create_only_put_fails_when_the_key_exists,
    concurrent_compare_and_swap_loses_no_update,
    list_returns_the_keys_under_a_prefix_in_byte_order,
    list_pages_with_limit_and_after,
    keys_with_a_ttl_disappear_once_it_passes,
    invalid_keys_are_refused,
    values_over_the_limit_are_refused,
    binary_and_empty_values_round_trip,
    conditional_get_answers_not_modified,
    malformed_requests_are_bad_requests,
    unsupported_methods_answer_405_with_allow,
    paths_outside_kv_are_not_found,
];

/// Runs every case on a fresh endpoint of `kind`, each in its own task, and reports all the
/// cases that failed at once.
async fn run_table(kind: Kind) {
    let Some(harness) = Harness::start(kind) else {
        return;
    };
    let mut failed = Vec::new();
    for (name, case) in CASES {
        let endpoint = name.replace('_', "-");
        let store = harness.store(&endpoint[..endpoint.len().min(63)]).await;
        if let Err(error) = tokio::spawn(case(store)).await {
            eprintln!("{kind:?} / {name}: FAILED: {error}");
            failed.push(*name);
        }
    }
    assert!(failed.is_empty(), "{kind:?} failed: {failed:?}");
}

#[tokio::test]
async fn embedded_backend_passes_the_table() {
    run_table(Kind::Embedded).await;
}

#[tokio::test]
async fn redis_backend_passes_the_table() {
    run_table(Kind::Redis).await;
}

#[tokio::test]
async fn postgres_backend_passes_the_table() {
    run_table(Kind::Postgres).await;
}

async fn put_then_get_returns_the_value_and_its_version(store: Store) {
    let put = call(&store, "PUT", "/kv/user/42", &[], "hello").await;
    assert_eq!(put.status, 200, "{put:?}");
    assert_eq!(put.header("content-type"), Some("application/json"));
    let version = put.json()["version"].as_u64().unwrap();
    assert_eq!(put.json()["key"], "user/42");
    assert_eq!(put.etag(), version);

    let get = call(&store, "GET", "/kv/user/42", &[], "").await;
    assert_eq!(get.status, 200);
    assert_eq!(&get.body[..], b"hello");
    assert_eq!(get.header("content-type"), Some("application/octet-stream"));
    assert_eq!(get.header("etag"), Some(format!("\"{version}\"").as_str()));
}

async fn get_of_an_absent_key_is_not_found(store: Store) {
    let get = call(&store, "GET", "/kv/nothing/here", &[], "").await;
    assert_eq!(get.status, 404);
    assert_eq!(get.code(), "not_found");
    assert!(
        get.json()["error"]["message"]
            .as_str()
            .unwrap()
            .contains("`nothing/here`")
    );
}

async fn every_write_gets_a_higher_version_never_reused(store: Store) {
    let first = call(&store, "PUT", "/kv/k", &[], "1").await.etag();
    let second = call(&store, "PUT", "/kv/k", &[], "2").await.etag();
    assert!(second > first, "{second} after {first}");
    call(&store, "DELETE", "/kv/k", &[], "").await;
    let third = call(&store, "PUT", "/kv/k", &[], "3").await.etag();
    assert!(third > second, "{third} after delete and {second}");
    let other = call(&store, "PUT", "/kv/other", &[], "x").await.etag();
    assert!(other > third);
}

async fn delete_says_whether_there_was_something_to_delete(store: Store) {
    call(&store, "PUT", "/kv/k", &[], "v").await;
    let deleted = call(&store, "DELETE", "/kv/k", &[], "").await;
    assert_eq!(deleted.status, 200);
    assert_eq!(deleted.json(), serde_json::json!({ "deleted": true }));
    let again = call(&store, "DELETE", "/kv/k", &[], "").await;
    assert_eq!(again.json(), serde_json::json!({ "deleted": false }));
    assert_eq!(call(&store, "GET", "/kv/k", &[], "").await.status, 404);
}

async fn delete_with_if_match_deletes_only_that_version(store: Store) {
    let version = call(&store, "PUT", "/kv/k", &[], "v").await.etag();
    let stale = format!("\"{}\"", version + 100);
    let refused = call(&store, "DELETE", "/kv/k", &[("if-match", &stale)], "").await;
    assert_eq!(refused.status, 412);
    assert_eq!(refused.code(), "version_mismatch");
    assert_eq!(call(&store, "GET", "/kv/k", &[], "").await.status, 200);

    let current = format!("\"{version}\"");
    let deleted = call(&store, "DELETE", "/kv/k", &[("if-match", &current)], "").await;
    assert_eq!(deleted.json(), serde_json::json!({ "deleted": true }));
    let absent = call(&store, "DELETE", "/kv/k", &[("if-match", &current)], "").await;
    assert_eq!(absent.status, 412, "if-match on an absent key never holds");
}

async fn compare_and_swap_succeeds_only_at_the_current_version(store: Store) {
    let v1 = call(&store, "PUT", "/kv/counter", &[], "1").await.etag();
    let if_v1 = format!("\"{v1}\"");
    let swapped = call(&store, "PUT", "/kv/counter", &[("if-match", &if_v1)], "2").await;
    assert_eq!(swapped.status, 200);
    let v2 = swapped.etag();
    assert!(v2 > v1);

    let lost = call(&store, "PUT", "/kv/counter", &[("if-match", &if_v1)], "3").await;
    assert_eq!(lost.status, 412);
    assert_eq!(lost.code(), "version_mismatch");
    let get = call(&store, "GET", "/kv/counter", &[], "").await;
    assert_eq!(
        (&get.body[..], get.etag()),
        (&b"2"[..], v2),
        "the lost swap wrote nothing"
    );

    let absent = call(&store, "PUT", "/kv/new", &[("if-match", "\"1\"")], "x").await;
    assert_eq!(absent.status, 412, "compare-and-swap never creates a key");
    assert_eq!(call(&store, "GET", "/kv/new", &[], "").await.status, 404);
}

async fn create_only_put_fails_when_the_key_exists(store: Store) {
    let created = call(&store, "PUT", "/kv/lock", &[("if-none-match", "*")], "me").await;
    assert_eq!(created.status, 200);
    let taken = call(&store, "PUT", "/kv/lock", &[("if-none-match", "*")], "you").await;
    assert_eq!(taken.status, 412);
    assert_eq!(taken.code(), "version_mismatch");
    assert_eq!(
        &call(&store, "GET", "/kv/lock", &[], "").await.body[..],
        b"me"
    );
}

/// Read-modify-write loops from several tasks at once: every increment lands exactly once.
async fn concurrent_compare_and_swap_loses_no_update(store: Store) {
    const TASKS: u64 = 4;
    const INCREMENTS: u64 = 10;
    store
        .put("n", "0".into(), None, Condition::IfAbsent)
        .await
        .unwrap();
    let mut tasks = Vec::new();
    for _ in 0..TASKS {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            let mut conflicts = 0;
            for _ in 0..INCREMENTS {
                for attempt in 0.. {
                    assert!(attempt < 1000, "no progress after 1000 conflicts");
                    let entry = store.get("n").await.unwrap();
                    let n: u64 = std::str::from_utf8(&entry.value).unwrap().parse().unwrap();
                    let next = (n + 1).to_string().into();
                    match store
                        .put("n", next, None, Condition::IfVersion(entry.version))
                        .await
                    {
                        Ok(_) => break,
                        Err(StoreError::VersionMismatch { .. }) => conflicts += 1,
                        Err(other) => panic!("{other}"),
                    }
                    tokio::task::yield_now().await;
                }
            }
            conflicts
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    let total = store.get("n").await.unwrap();
    assert_eq!(
        &total.value[..],
        (TASKS * INCREMENTS).to_string().as_bytes()
    );
}

async fn list_returns_the_keys_under_a_prefix_in_byte_order(store: Store) {
    for key in ["a/2", "a/1", "a/b/c", "ab", "b/1", "a%20z", "a/%C3%A9"] {
        assert_eq!(
            call(&store, "PUT", &format!("/kv/{key}"), &[], "v")
                .await
                .status,
            200
        );
    }
    let list = call(&store, "GET", "/kv/a/", &[], "").await;
    assert_eq!(list.status, 200);
    assert_eq!(list.header("content-type"), Some("application/json"));
    assert_eq!(
        list.json(),
        serde_json::json!({ "keys": ["a/%C3%A9", "a/1", "a/2", "a/b/c"], "next": null })
    );
    let nested = call(&store, "GET", "/kv/a/b/", &[], "").await.json();
    assert_eq!(nested["keys"], serde_json::json!(["a/b/c"]));
    let none = call(&store, "GET", "/kv/zzz/", &[], "").await.json();
    assert_eq!(none, serde_json::json!({ "keys": [], "next": null }));
    let all = call(&store, "GET", "/kv/", &[], "").await.json();
    assert_eq!(
        all["keys"],
        serde_json::json!(["a%20z", "a/%C3%A9", "a/1", "a/2", "a/b/c", "ab", "b/1"])
    );

    call(&store, "DELETE", "/kv/a/1", &[], "").await;
    let after_delete = call(&store, "GET", "/kv/a/", &[], "").await.json();
    assert_eq!(
        after_delete["keys"],
        serde_json::json!(["a/%C3%A9", "a/2", "a/b/c"])
    );
}

async fn list_pages_with_limit_and_after(store: Store) {
    for i in 1..=5 {
        call(&store, "PUT", &format!("/kv/p/{i}"), &[], "v").await;
    }
    call(&store, "PUT", "/kv/q/1", &[], "v").await;
    let mut pages = Vec::new();
    let mut uri = "/kv/p/?limit=2".to_owned();
    for _ in 0..10 {
        let page = call(&store, "GET", &uri, &[], "").await.json();
        pages.push(page["keys"].clone());
        match page["next"].as_str() {
            Some(next) => uri = format!("/kv/p/?limit=2&after={}", next.replace('/', "%2F")),
            None => break,
        }
    }
    assert_eq!(
        pages,
        [
            serde_json::json!(["p/1", "p/2"]),
            serde_json::json!(["p/3", "p/4"]),
            serde_json::json!(["p/5"]),
        ]
    );

    // A key with an escape in it pages as itself: `after` is percent-decoded once.
    call(&store, "PUT", "/kv/e/a%20b", &[], "v").await;
    call(&store, "PUT", "/kv/e/c", &[], "v").await;
    let first = call(&store, "GET", "/kv/e/?limit=1", &[], "").await.json();
    assert_eq!(
        first,
        serde_json::json!({ "keys": ["e/a%20b"], "next": "e/a%20b" })
    );
    let second = call(&store, "GET", "/kv/e/?limit=1&after=e/a%2520b", &[], "").await;
    assert_eq!(
        second.json(),
        serde_json::json!({ "keys": ["e/c"], "next": null })
    );

    let past = call(&store, "GET", "/kv/p/?after=q", &[], "").await.json();
    assert_eq!(
        past,
        serde_json::json!({ "keys": [], "next": null }),
        "after past the prefix"
    );
    let before = call(&store, "GET", "/kv/p/?after=a&limit=1", &[], "")
        .await
        .json();
    assert_eq!(
        before["keys"],
        serde_json::json!(["p/1"]),
        "after before the prefix"
    );
    let default = call(&store, "GET", "/kv/", &[], "").await.json();
    assert_eq!(default["keys"].as_array().unwrap().len(), 8);
    for bad in ["limit=0", "limit=1001", "limit=two"] {
        let reply = call(&store, "GET", &format!("/kv/p/?{bad}"), &[], "").await;
        assert_eq!(
            (reply.status, reply.code().as_str()),
            (400, "bad_request"),
            "{bad}"
        );
    }
}

async fn keys_with_a_ttl_disappear_once_it_passes(store: Store) {
    let put = call(&store, "PUT", "/kv/t/session?ttl_s=1", &[], "s").await;
    assert_eq!(put.status, 200, "{put:?}");
    let expired_version = put.etag();
    call(&store, "PUT", "/kv/t/kept?ttl_s=1", &[], "1").await;
    call(&store, "PUT", "/kv/t/kept", &[], "2").await; // a put without ttl_s clears the TTL
    assert_eq!(
        call(&store, "GET", "/kv/t/session", &[], "").await.status,
        200
    );

    tokio::time::sleep(Duration::from_millis(1300)).await;

    let gone = call(&store, "GET", "/kv/t/session", &[], "").await;
    assert_eq!((gone.status, gone.code().as_str()), (404, "not_found"));
    let list = call(&store, "GET", "/kv/t/", &[], "").await.json();
    assert_eq!(list["keys"], serde_json::json!(["t/kept"]));
    assert_eq!(
        &call(&store, "GET", "/kv/t/kept", &[], "").await.body[..],
        b"2"
    );

    let if_expired = format!("\"{expired_version}\"");
    let swap = call(
        &store,
        "PUT",
        "/kv/t/session",
        &[("if-match", &if_expired)],
        "x",
    )
    .await;
    assert_eq!(swap.status, 412, "an expired version no longer matches");
    let delete = call(&store, "DELETE", "/kv/t/session", &[], "").await;
    assert_eq!(delete.json(), serde_json::json!({ "deleted": false }));
    let create = call(
        &store,
        "PUT",
        "/kv/t/session",
        &[("if-none-match", "*")],
        "new",
    )
    .await;
    assert_eq!(create.status, 200, "an expired key counts as absent");
}

async fn invalid_keys_are_refused(store: Store) {
    let long = format!("/kv/{}", "k".repeat(513));
    let paths = [
        "/kv/a//b",
        "/kv/./a",
        "/kv/a/.",
        "/kv/a/../b",
        "/kv/..",
        "/kv/..;x/b",
        "/kv/a%2Fb",
        "/kv/a%2fb",
        "/kv/%2E%2E/b",
        "/kv/a%5Cb",
        "/kv/a%00b",
        "/kv/a\\b",
        long.as_str(),
    ];
    for path in paths {
        for method in ["GET", "PUT", "DELETE"] {
            let reply = call(&store, method, path, &[], "v").await;
            assert_eq!(
                (reply.status, reply.code().as_str()),
                (400, "invalid_key"),
                "{method} {path}"
            );
        }
    }
    for list in ["/kv/../", "/kv/a//", "/kv/a/%2E%2E/"] {
        let reply = call(&store, "GET", list, &[], "").await;
        assert_eq!(
            (reply.status, reply.code().as_str()),
            (400, "invalid_key"),
            "{list}"
        );
    }
    let after = call(&store, "GET", "/kv/?after=a%2F..%2Fb", &[], "").await;
    assert_eq!(after.code(), "invalid_key");
    // Keys that no URI can carry, through the store directly.
    for key in ["a\nb", "a\u{0}b", "\u{7f}"] {
        let error = store.get(key).await.unwrap_err();
        assert!(
            matches!(error, StoreError::InvalidKey { .. }),
            "{key:?}: {error}"
        );
    }
    assert_eq!(
        call(&store, "GET", "/kv/", &[], "").await.json()["keys"],
        serde_json::json!([])
    );
    let longest = format!("/kv/{}", "k".repeat(512));
    assert_eq!(call(&store, "PUT", &longest, &[], "v").await.status, 200);
}

async fn values_over_the_limit_are_refused(store: Store) {
    let limit = store.options().max_value_bytes;
    assert_eq!(limit, 1024 * 1024);
    let largest = vec![7u8; limit];
    let put = call(&store, "PUT", "/kv/big", &[], largest.clone()).await;
    assert_eq!(put.status, 200);
    assert_eq!(
        call(&store, "GET", "/kv/big", &[], "").await.body.len(),
        limit
    );

    let over = vec![7u8; limit + 1];
    let declared = (limit + 1).to_string();
    let refused = call(
        &store,
        "PUT",
        "/kv/big",
        &[("content-length", &declared)],
        over.clone(),
    )
    .await;
    assert_eq!(
        (refused.status, refused.code().as_str()),
        (413, "value_too_large")
    );
    let streamed = call(&store, "PUT", "/kv/big", &[], over).await;
    assert_eq!(
        (streamed.status, streamed.code().as_str()),
        (413, "value_too_large")
    );
    assert_eq!(
        call(&store, "GET", "/kv/big", &[], "").await.etag(),
        put.etag(),
        "a refused put writes nothing"
    );
}

async fn binary_and_empty_values_round_trip(store: Store) {
    let binary: Vec<u8> = (0..=255).chain((0..=255).rev()).collect();
    call(&store, "PUT", "/kv/bin", &[], binary.clone()).await;
    assert_eq!(call(&store, "GET", "/kv/bin", &[], "").await.body, binary);
    let empty = call(&store, "PUT", "/kv/empty", &[], "").await;
    assert_eq!(empty.status, 200);
    let get = call(&store, "GET", "/kv/empty", &[], "").await;
    assert_eq!((get.status, get.body.len()), (200, 0));
}

async fn conditional_get_answers_not_modified(store: Store) {
    let version = call(&store, "PUT", "/kv/c", &[], "v").await.etag();
    let current = format!("\"{version}\"");
    let same = call(&store, "GET", "/kv/c", &[("if-none-match", &current)], "").await;
    assert_eq!((same.status, same.body.len()), (304, 0));
    assert_eq!(same.etag(), version);
    let other = call(&store, "GET", "/kv/c", &[("if-none-match", "\"0\"")], "").await;
    assert_eq!((other.status, &other.body[..]), (200, &b"v"[..]));
}

async fn malformed_requests_are_bad_requests(store: Store) {
    type Headers<'a> = &'a [(&'a str, &'a str)];
    let cases: [(&str, &str, Headers); 9] = [
        ("PUT", "/kv/k?ttl_s=0", &[]),
        ("PUT", "/kv/k?ttl_s=soon", &[]),
        ("PUT", "/kv/k?ttl=5", &[]),
        ("PUT", "/kv/k", &[("if-match", "3")]),
        ("PUT", "/kv/k", &[("if-match", "*")]),
        ("PUT", "/kv/k", &[("if-none-match", "\"3\"")]),
        (
            "PUT",
            "/kv/k",
            &[("if-match", "\"3\""), ("if-none-match", "*")],
        ),
        ("GET", "/kv/k?verbose=1", &[]),
        ("DELETE", "/kv/k", &[("if-none-match", "*")]),
    ];
    for (method, uri, headers) in cases {
        let reply = call(&store, method, uri, headers, "v").await;
        assert_eq!(
            (reply.status, reply.code().as_str()),
            (400, "bad_request"),
            "{method} {uri} {headers:?}"
        );
        let message = reply.json()["error"]["message"]
            .as_str()
            .unwrap()
            .to_owned();
        assert!(!message.is_empty());
    }
    let list = call(&store, "GET", "/kv/", &[], "").await.json();
    assert_eq!(
        list["keys"],
        serde_json::json!([]),
        "no malformed request wrote anything"
    );
}

async fn unsupported_methods_answer_405_with_allow(store: Store) {
    for method in ["POST", "PATCH", "HEAD"] {
        let reply = call(&store, method, "/kv/k", &[], "").await;
        assert_eq!(reply.status, 405, "{method}");
        assert_eq!(reply.header("allow"), Some("GET, PUT, DELETE"));
        if method != "HEAD" {
            assert_eq!(reply.code(), "method_not_allowed");
        }
    }
    for method in ["PUT", "DELETE", "POST"] {
        let reply = call(&store, method, "/kv/a/", &[], "").await;
        assert_eq!(
            (reply.status, reply.code().as_str()),
            (405, "method_not_allowed")
        );
        assert_eq!(reply.header("allow"), Some("GET"));
    }
}

async fn paths_outside_kv_are_not_found(store: Store) {
    for path in ["/", "/kv", "/kvx/a", "/other/kv/a"] {
        let reply = call(&store, "GET", path, &[], "").await;
        assert_eq!(
            (reply.status, reply.code().as_str()),
            (404, "not_found"),
            "{path}"
        );
    }
}

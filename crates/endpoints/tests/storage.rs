//! Endpoints reclaim and limit storage, on all three backends: expired entries are removed in
//! the background, quotas on keys and bytes are answered with `507 quota_exceeded`, and on Redis
//! the key index is pruned in bounded batches.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::time::{Duration, Instant};

use bytes::Bytes;
use common::{Harness, Kind, call};
use septa_endpoints::{Condition, QuotaKind, SWEEP_BATCH, Store, StoreError, StoreOptions, Usage};

const KINDS: [Kind; 3] = [Kind::Embedded, Kind::Redis, Kind::Postgres];

async fn open(harness: &Harness, endpoint: &str, options: StoreOptions) -> Store {
    Store::open(endpoint, &harness.backend(endpoint), options)
        .await
        .unwrap_or_else(|e| panic!("cannot open the {:?} store: {e}", harness.kind))
}

async fn put(
    store: &Store,
    key: &str,
    value: &str,
    ttl: Option<Duration>,
) -> Result<u64, StoreError> {
    store
        .put(key, Bytes::from(value.to_owned()), ttl, Condition::Any)
        .await
}

async fn wait_for_usage(store: &Store, what: &str, want: impl Fn(Usage) -> bool) -> Usage {
    let start = Instant::now();
    loop {
        let usage = store.usage().await.unwrap();
        if want(usage) {
            return usage;
        }
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "{what}: still {usage:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// What the backend itself still holds for `endpoint`: its rows, or its index members.
async fn physically_stored(harness: &Harness, endpoint: &str) -> Option<u64> {
    match harness.kind {
        Kind::Embedded => None,
        Kind::Redis => {
            let url = harness.redis.as_ref().unwrap().url();
            let mut redis = redis::Client::open(url)
                .unwrap()
                .get_multiplexed_async_connection()
                .await
                .unwrap();
            let (index, expiry, sizes): (u64, u64, u64) = redis::pipe()
                .cmd("ZCARD")
                .arg(format!("septa:{endpoint}:keys"))
                .cmd("ZCARD")
                .arg(format!("septa:{endpoint}:expiry"))
                .cmd("HLEN")
                .arg(format!("septa:{endpoint}:sizes"))
                .query_async(&mut redis)
                .await
                .unwrap();
            assert_eq!(index, sizes, "every indexed key has its size");
            assert!(expiry <= index);
            Some(index)
        }
        Kind::Postgres => {
            let url = harness.postgres.as_ref().unwrap().url();
            let (client, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
                .await
                .unwrap();
            tokio::spawn(connection);
            let row = client
                .query_one(&format!("SELECT count(*) FROM septa.\"{endpoint}\""), &[])
                .await
                .unwrap();
            Some(u64::try_from(row.get::<_, i64>(0)).unwrap())
        }
    }
}

#[tokio::test]
async fn expired_entries_are_removed_in_the_background_on_every_backend() {
    for kind in KINDS {
        let Some(harness) = Harness::start(kind) else {
            continue;
        };
        let options = StoreOptions {
            sweep_interval: Duration::from_millis(100),
            ..StoreOptions::default()
        };
        let store = open(&harness, "sessions", options).await;
        // Long enough for the 43 writes to be counted before any expires, even on a loaded
        // machine; the count is only checked when they were.
        let ttl = Duration::from_millis(1500);
        let writing = Instant::now();
        for key in ["keep/a", "keep/b", "keep/c"] {
            put(&store, key, "stays", None).await.unwrap();
        }
        for i in 0..40 {
            put(&store, &format!("short/{i:02}"), "gone soon", Some(ttl))
                .await
                .unwrap();
        }
        let written = store.usage().await.unwrap();
        if writing.elapsed() < ttl {
            assert_eq!(written.keys, 43, "{kind:?}");
        }
        // Nobody reads or writes the expired keys again: the sweeper alone removes them.
        let usage = wait_for_usage(&store, &format!("{kind:?}: sweeping"), |u| u.keys == 3).await;
        assert_eq!(
            usage.bytes,
            3 * ("keep/a".len() + "stays".len()) as u64,
            "{kind:?}"
        );
        // The backend's own copy (rows, index members) goes too, maybe a batch after the count.
        let start = Instant::now();
        while let Some(stored) = physically_stored(&harness, "sessions").await {
            if stored == 3 {
                break;
            }
            assert!(
                start.elapsed() < Duration::from_secs(20),
                "{kind:?}: the backend still holds {stored} entries, 3 of them live"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert_eq!(store.get("keep/b").await.unwrap().value, "stays");
        let page = store.list("", 100, None).await.unwrap();
        assert_eq!(page.keys, ["keep/a", "keep/b", "keep/c"], "{kind:?}");
    }
}

#[tokio::test]
async fn quotas_on_keys_and_bytes_are_answered_with_507_on_every_backend() {
    for kind in KINDS {
        let Some(harness) = Harness::start(kind) else {
            continue;
        };
        let options = StoreOptions {
            max_keys: Some(3),
            max_bytes: Some(64),
            // Only the store's own sweep on reaching a quota removes expired entries here.
            sweep_interval: Duration::from_secs(3600),
            ..StoreOptions::default()
        };
        let store = open(&harness, "carts", options).await;
        for key in ["a", "b", "c"] {
            put(&store, key, "0123456789", None).await.unwrap();
        }
        let error = put(&store, "d", "x", None).await.unwrap_err();
        assert_eq!(
            error,
            StoreError::QuotaExceeded {
                endpoint: "carts".into(),
                quota: QuotaKind::Keys,
                limit: 3
            },
            "{kind:?}"
        );
        // Through the HTTP API: 507, and the body names the quota.
        let reply = call(&store, "PUT", "/kv/d", &[], "x").await;
        assert_eq!(reply.status, 507, "{kind:?}");
        let json = reply.json();
        assert_eq!(json["error"]["code"], "quota_exceeded");
        assert_eq!(json["error"]["quota"], "max_keys");
        assert_eq!(json["error"]["limit"], 3);
        assert!(
            json["error"]["message"]
                .as_str()
                .unwrap()
                .contains("quota of 3 keys"),
            "{json}"
        );
        // Nothing was written; an existing key can still be overwritten.
        assert!(matches!(
            store.get("d").await,
            Err(StoreError::NotFound { .. })
        ));
        put(&store, "a", "short", None).await.unwrap();
        // 3 keys of 1 byte and values of 5 + 10 + 10 bytes: 28 of 64. A value that would take
        // the bytes past 64 is refused, a smaller one is not.
        let error = put(&store, "b", &"x".repeat(47), None).await.unwrap_err();
        assert!(
            matches!(
                error,
                StoreError::QuotaExceeded {
                    quota: QuotaKind::Bytes,
                    limit: 64,
                    ..
                }
            ),
            "{kind:?}: {error:?}"
        );
        let reply = call(&store, "PUT", "/kv/b", &[], "y".repeat(47)).await;
        assert_eq!(reply.status, 507);
        assert_eq!(reply.json()["error"]["quota"], "max_bytes");
        put(&store, "b", &"x".repeat(46), None).await.unwrap();
        assert_eq!(
            store.usage().await.unwrap(),
            Usage { keys: 3, bytes: 64 },
            "{kind:?}"
        );
        // Deleting makes room.
        assert!(store.delete("b", Condition::Any).await.unwrap());
        put(&store, "d", "x", None).await.unwrap();
        // An expired key still counts until swept, but a put at the quota sweeps first.
        store.delete("c", Condition::Any).await.unwrap();
        put(&store, "e", "soon gone", Some(Duration::from_millis(20)))
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert_eq!(store.usage().await.unwrap().keys, 3, "{kind:?}");
        put(&store, "f", "x", None).await.unwrap();
        assert_eq!(store.usage().await.unwrap().keys, 3, "{kind:?}");
    }
}

#[tokio::test]
async fn the_redis_index_is_pruned_in_bounded_batches() {
    let Some(harness) = Harness::start(Kind::Redis) else {
        return;
    };
    let options = StoreOptions {
        sweep_interval: Duration::from_secs(3600),
        timeout: Duration::from_secs(10),
        ..StoreOptions::default()
    };
    let store = open(&harness, "events", options).await;
    const EXPIRED: usize = 2500;
    for i in 0..EXPIRED {
        put(
            &store,
            &format!("a/{i:05}"),
            "v",
            Some(Duration::from_millis(1)),
        )
        .await
        .unwrap();
    }
    put(&store, "z/live", "v", None).await.unwrap();
    // Index members whose entry is gone without septa knowing (written by an older septa, or
    // removed behind its back): only the walk of the index finds them.
    let url = harness.redis.as_ref().unwrap().url();
    let mut redis = redis::Client::open(url)
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    for i in 0..600 {
        let _: () = redis::cmd("ZADD")
            .arg("septa:events:keys")
            .arg(0)
            .arg(format!("b/ghost-{i:04}"))
            .query_async(&mut redis)
            .await
            .unwrap();
    }
    tokio::time::sleep(Duration::from_millis(50)).await;

    // A list walks past every dead member, a bounded script call at a time, and finds the live
    // key (reads remove nothing).
    let page = store.list("", 10, None).await.unwrap();
    assert_eq!(page.keys, ["z/live"]);
    assert_eq!(
        store.usage().await.unwrap().keys,
        (EXPIRED + 600 + 1) as u64
    );

    // Each sweep removes at most a batch of expired keys and prunes at most a batch of index
    // members, however many there are.
    let mut sweeps = 0;
    loop {
        let removed = store.sweep_expired().await.unwrap();
        assert!(removed <= 2 * SWEEP_BATCH, "one sweep removed {removed}");
        sweeps += 1;
        let keys = store.usage().await.unwrap().keys;
        if keys == 1 {
            break;
        }
        assert!(sweeps < 100, "still {keys} keys after {sweeps} sweeps");
    }
    assert!(
        sweeps >= (EXPIRED + 600) / (2 * SWEEP_BATCH),
        "{sweeps} sweeps"
    );
    assert_eq!(physically_stored(&harness, "events").await, Some(1));
    assert_eq!(store.get("z/live").await.unwrap().value, "v");
}

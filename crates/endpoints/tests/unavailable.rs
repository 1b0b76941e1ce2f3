//! A backend that is down, silent or refusing our credentials: callers get a quick
//! `503 backend_unavailable` that names no password, and the store recovers on its own.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::net::{Ipv4Addr, TcpListener};
use std::time::{Duration, Instant};

use common::{PostgresServer, RedisServer, Reply, call, free_port};
use septa_endpoints::{Backend, Store, StoreOptions};

async fn open(backend: Backend, timeout: Duration) -> Store {
    let options = StoreOptions {
        timeout,
        ..StoreOptions::default()
    };
    Store::open("orders", &backend, options)
        .await
        .expect("a network backend opens without connecting")
}

fn assert_unavailable(reply: &Reply, what: &str) {
    assert_eq!(reply.status, 503, "{what}: {reply:?}");
    assert_eq!(reply.code(), "backend_unavailable", "{what}");
    assert_eq!(reply.header("retry-after"), Some("1"), "{what}");
}

/// Every operation answers 503 within `within`.
async fn assert_all_unavailable(store: &Store, within: Duration) {
    for (method, uri) in [
        ("GET", "/kv/a"),
        ("PUT", "/kv/a"),
        ("DELETE", "/kv/a"),
        ("GET", "/kv/"),
    ] {
        let started = Instant::now();
        let reply = call(store, method, uri, &[], "v").await;
        let took = started.elapsed();
        assert_unavailable(&reply, &format!("{method} {uri}"));
        assert!(took < within, "{method} {uri} took {took:?}");
    }
}

#[tokio::test]
async fn a_closed_port_answers_503_within_the_default_timeout() {
    let timeout = StoreOptions::default().timeout;
    let port = free_port();
    for backend in [
        Backend::Redis {
            url: format!("redis://:pw@127.0.0.1:{port}/"),
        },
        Backend::Postgres {
            url: format!("postgres://u:pw@127.0.0.1:{port}/db"),
        },
    ] {
        let store = open(backend, timeout).await;
        assert_all_unavailable(&store, timeout).await;
    }
}

/// A listener that never accepts: connections complete in the kernel and then hear nothing.
#[tokio::test]
async fn a_backend_that_never_answers_times_out() {
    let silent = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
    let port = silent.local_addr().unwrap().port();
    let timeout = Duration::from_millis(300);
    for backend in [
        Backend::Redis {
            url: format!("redis://127.0.0.1:{port}/"),
        },
        Backend::Postgres {
            url: format!("postgres://u@127.0.0.1:{port}/db"),
        },
    ] {
        let store = open(backend, timeout).await;
        let reply = call(&store, "GET", "/kv/a", &[], "").await;
        assert_unavailable(&reply, "silent backend");
        let message = reply.json()["error"]["message"]
            .as_str()
            .unwrap()
            .to_owned();
        assert!(message.contains("orders"), "{message}");
        assert_all_unavailable(&store, timeout + Duration::from_millis(700)).await;
    }
    drop(silent);
}

#[tokio::test]
async fn postgres_stopped_mid_test_answers_503_then_recovers() {
    let Some(mut server) = PostgresServer::start() else {
        return;
    };
    let store = open(
        Backend::Postgres { url: server.url() },
        StoreOptions::default().timeout,
    )
    .await;
    assert_eq!(call(&store, "PUT", "/kv/kept", &[], "v").await.status, 200);

    server.stop();
    assert_all_unavailable(
        &store,
        StoreOptions::default().timeout + Duration::from_millis(500),
    )
    .await;

    server.restart();
    let get = call(&store, "GET", "/kv/kept", &[], "").await;
    assert_eq!((get.status, &get.body[..]), (200, &b"v"[..]), "{get:?}");
}

#[tokio::test]
async fn redis_stopped_mid_test_answers_503_then_recovers() {
    let Some(mut server) = RedisServer::start() else {
        return;
    };
    let store = open(
        Backend::Redis { url: server.url() },
        StoreOptions::default().timeout,
    )
    .await;
    assert_eq!(call(&store, "PUT", "/kv/a", &[], "v").await.status, 200);

    server.stop();
    assert_all_unavailable(
        &store,
        StoreOptions::default().timeout + Duration::from_millis(500),
    )
    .await;

    // The test server keeps nothing across a restart; what matters is that calls work again.
    server.restart();
    assert_eq!(call(&store, "PUT", "/kv/a", &[], "w").await.status, 200);
    assert_eq!(&call(&store, "GET", "/kv/a", &[], "").await.body[..], b"w");
}

#[tokio::test]
async fn a_reused_connection_to_a_restarted_redis_is_replaced_on_the_next_read() {
    let Some(mut server) = RedisServer::start() else {
        return;
    };
    let store = open(
        Backend::Redis { url: server.url() },
        StoreOptions::default().timeout,
    )
    .await;
    assert_eq!(call(&store, "PUT", "/kv/a", &[], "v").await.status, 200);
    server.restart();
    let get = call(&store, "GET", "/kv/a", &[], "").await;
    assert_eq!(get.status, 404, "read on a new connection: {get:?}");
}

#[tokio::test]
async fn wrong_credentials_answer_503_and_never_show_the_password() {
    const WRONG: &str = "wrong-Pa55word-never-shown";
    let (Some(redis), Some(postgres)) = (RedisServer::start(), PostgresServer::start()) else {
        return;
    };
    for backend in [
        Backend::Redis {
            url: redis.url_with_password(WRONG),
        },
        Backend::Postgres {
            url: postgres.url_with_password(WRONG),
        },
    ] {
        assert!(!format!("{backend:?}").contains(WRONG));
        let store = open(backend.clone(), StoreOptions::default().timeout).await;
        let reply = call(&store, "GET", "/kv/a", &[], "").await;
        assert_unavailable(&reply, &format!("{backend:?}"));
        let body = String::from_utf8_lossy(&reply.body);
        assert!(!body.contains(WRONG), "{body}");
        let error = store.get("a").await.unwrap_err();
        assert!(!format!("{error} {error:?}").contains(WRONG), "{error:?}");
    }
}

#[tokio::test]
async fn malformed_urls_are_refused_at_open_without_their_password() {
    for backend in [
        Backend::Redis {
            url: "redis://:s3cret-pw@127.0.0.1:notaport/".into(),
        },
        Backend::Postgres {
            url: "postgres://u:s3cret-pw@127.0.0.1:notaport/db".into(),
        },
        // TLS is supported (see tests/postgres_tls.rs), but not a mode libpq does not know,
        // nor client certificates, nor a CA file that is not there.
        Backend::Postgres {
            url: "postgres://u:s3cret-pw@127.0.0.1/db?sslmode=verify".into(),
        },
        Backend::Postgres {
            url: "postgres://u:s3cret-pw@127.0.0.1/db?sslmode=require&sslcert=/c.pem".into(),
        },
        Backend::Postgres {
            url: "postgres://u:s3cret-pw@127.0.0.1/db?sslmode=verify-full&sslrootcert=/no/ca.pem"
                .into(),
        },
    ] {
        let error = Store::open("orders", &backend, StoreOptions::default())
            .await
            .expect_err("the URL is refused");
        let shown = format!("{error} {error:?}");
        assert!(shown.contains("invalid"), "{shown}");
        assert!(!shown.contains("s3cret-pw"), "{shown}");
    }
}

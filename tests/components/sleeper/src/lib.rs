//! `sleeper`: a guest that parks in a host call, where no epoch tick reaches it, to test
//! that a function's timeout is wall-clock. Endpoints match on the last path segment:
//!
//! - `GET /sleep?ms=N` sleeps N ms on a wasi monotonic clock (an hour when `ms` is not
//!   given), then answers `{"slept_ms": N}`.
//! - `GET /flood` answers 200 and writes a body without end, so against a client that
//!   does not read it the guest waits on the body's flow control.
//! - `GET /hold?to=NAME&n=N` opens N requests `PUT http://NAME.internal/kv/held/I`
//!   (64 when `n` is not given) and writes a few bytes of each body, finishing none of
//!   them; answers `{"holding": N}` once they are open, and then sleeps an hour holding
//!   them.
//! - anything else answers `{"ok": true}`.

use common::{Reply, Request};
use serde_json::json;
use wasi::clocks::monotonic_clock;
use wasi::exports::http::incoming_handler::Guest;
use wasi::http::outgoing_handler;
use wasi::http::types::{
    Fields, IncomingRequest, Method, OutgoingBody, OutgoingRequest, OutgoingResponse,
    ResponseOutparam, Scheme,
};

/// An hour, in milliseconds.
const HOUR_MS: u64 = 3_600_000;

struct Sleeper;

wasi::http::proxy::export!(Sleeper);

impl Guest for Sleeper {
    fn handle(request: IncomingRequest, out: ResponseOutparam) {
        let request = match Request::read(request) {
            Ok(request) => request,
            Err(error) => return Reply::error(error.status(), error.to_string()).send(out),
        };
        match (request.method.as_str(), request.endpoint()) {
            ("GET", "sleep") => {
                let ms = request
                    .query_value("ms")
                    .and_then(|ms| ms.parse().ok())
                    .unwrap_or(HOUR_MS);
                sleep(ms);
                Reply::json(200, &json!({ "slept_ms": ms })).send(out);
            }
            ("GET", "flood") => flood(out),
            ("GET", "hold") => {
                let to = request.query_value("to").unwrap_or_default();
                let n = request
                    .query_value("n")
                    .and_then(|n| n.parse().ok())
                    .unwrap_or(64);
                hold(&to, n, out);
            }
            _ => Reply::json(200, &json!({ "ok": true })).send(out),
        }
    }
}

/// Blocks on a monotonic-clock pollable: the guest is in a host call until it fires.
fn sleep(ms: u64) {
    monotonic_clock::subscribe_duration(ms.saturating_mul(1_000_000)).block();
}

/// Sends a 200 and then writes to its body for as long as the host takes the bytes.
fn flood(out: ResponseOutparam) {
    let response = OutgoingResponse::new(Fields::new());
    let Ok(body) = response.body() else {
        return;
    };
    ResponseOutparam::set(out, Ok(response));
    let Ok(stream) = body.write() else {
        return;
    };
    let chunk = [b'x'; 4096];
    while stream.blocking_write_and_flush(&chunk).is_ok() {}
    drop(stream);
    let _ = OutgoingBody::finish(body, None);
}

/// Opens `n` puts to endpoint `to`, starts each body and finishes none, says so, then
/// sleeps an hour with all of them open.
fn hold(to: &str, n: u32, out: ResponseOutparam) {
    let mut held = Vec::new();
    for i in 0..n {
        let request = OutgoingRequest::new(Fields::new());
        let _ = request.set_method(&Method::Put);
        let _ = request.set_scheme(Some(&Scheme::Http));
        let _ = request.set_authority(Some(&format!("{to}.internal")));
        let _ = request.set_path_with_query(Some(&format!("/kv/held/{i}")));
        let Ok(body) = request.body() else {
            continue;
        };
        let Ok(pending) = outgoing_handler::handle(request, None) else {
            continue;
        };
        let Ok(stream) = body.write() else {
            continue;
        };
        let _ = stream.blocking_write_and_flush(b"part of a value");
        // Kept, never finished: the stream first, so it is dropped before its body.
        held.push((stream, body, pending));
    }
    Reply::json(200, &json!({ "holding": held.len() })).send(out);
    sleep(HOUR_MS);
    drop(held);
}

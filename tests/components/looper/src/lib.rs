//! `looper`: `GET /spin` never returns, to test that the host's epoch deadline stops a
//! guest that computes forever. Any other request answers `{"ok": true}`.
//!
//! Endpoints match on the last path segment, so `/lab/spin` spins too: tests can mount
//! the component under any route prefix.

use common::{Reply, Request};
use serde_json::json;
use wasi::exports::http::incoming_handler::Guest;
use wasi::http::types::{IncomingRequest, ResponseOutparam};

struct Looper;

wasi::http::proxy::export!(Looper);

impl Guest for Looper {
    fn handle(request: IncomingRequest, out: ResponseOutparam) {
        common::serve(request, out, route);
    }
}

fn route(request: &Request) -> Reply {
    if request.method == "GET" && request.endpoint() == "spin" {
        spin()
    } else {
        Reply::json(200, &json!({ "ok": true }))
    }
}

/// Busy-loops forever without calling the host, so only epoch interruption can stop
/// it. `black_box` keeps the optimizer from proving the loop does nothing.
fn spin() -> ! {
    let mut turns: u64 = 0;
    loop {
        turns = std::hint::black_box(turns.wrapping_add(1));
    }
}

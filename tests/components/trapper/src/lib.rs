//! `trapper`: `GET /trap` traps, to test that the host turns a guest trap into an
//! error response and keeps serving. Any other request answers `{"ok": true}`.
//!
//! Endpoints match on the last path segment, so `/lab/trap` traps too: tests can mount
//! the component under any route prefix.

use common::{Reply, Request};
use serde_json::json;
use wasi::exports::http::incoming_handler::Guest;
use wasi::http::types::{IncomingRequest, ResponseOutparam};

struct Trapper;

wasi::http::proxy::export!(Trapper);

impl Guest for Trapper {
    fn handle(request: IncomingRequest, out: ResponseOutparam) {
        common::serve(request, out, route);
    }
}

fn route(request: &Request) -> Reply {
    if request.method == "GET" && request.endpoint() == "trap" {
        trap()
    } else {
        Reply::json(200, &json!({ "ok": true }))
    }
}

/// On wasm32-wasip2 a panic aborts, which is a wasm trap; the message goes to stderr
/// first, so the host's logs show why the guest died.
#[expect(
    clippy::panic,
    reason = "trapping on purpose is this component's whole job"
)]
fn trap() -> ! {
    panic!("trapper: trapping on purpose (GET /trap)")
}

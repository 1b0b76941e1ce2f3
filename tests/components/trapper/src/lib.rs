//! `trapper`: `GET /trap` traps, to test that the host turns a guest trap into an
//! error response and keeps serving. `GET /print?lines=N&bytes=B` writes N lines of B
//! bytes to stdout, then one with a terminal escape and a carriage return, and answers
//! `{"printed": N}`: a guest that floods and tampers with the host's log. Any other
//! request answers `{"ok": true}`.
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
    let number = |name: &str| {
        request
            .query_value(name)
            .and_then(|v| v.parse::<usize>().ok())
            .unwrap_or(1)
    };
    match (request.method.as_str(), request.endpoint()) {
        ("GET", "trap") => trap(),
        ("GET", "print") => {
            let (lines, bytes) = (number("lines"), number("bytes"));
            let line = "p".repeat(bytes);
            for n in 0..lines {
                println!("{n} {line}");
            }
            // Sets the terminal's title and rings its bell, where a log is read raw.
            println!("title \x1b]0;pwned\x07 and \r return");
            Reply::json(200, &json!({ "printed": lines }))
        }
        _ => Reply::json(200, &json!({ "ok": true })),
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

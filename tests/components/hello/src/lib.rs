//! `hello`: answers every request with `200 hello, world`, touching nothing else, so a
//! benchmark measures the host around it rather than the guest. `scripts/bench-vs-wasmtime`
//! serves this same file with septa and with `wasmtime serve`.
//!
//! Written against the raw wasi:http bindings (no shared plumbing, no JSON) to stay as small
//! as the hello-world component the performance issue was measured with.

use wasi::exports::http::incoming_handler::Guest;
use wasi::http::types::{
    ErrorCode, Fields, IncomingRequest, OutgoingBody, OutgoingResponse, ResponseOutparam,
};

/// The whole body.
const BODY: &[u8] = b"hello, world\n";

struct Hello;

wasi::http::proxy::export!(Hello);

impl Guest for Hello {
    fn handle(_request: IncomingRequest, out: ResponseOutparam) {
        let headers = Fields::new();
        // A literal name and value the host always accepts; on the impossible refusal the
        // answer just goes without the header.
        let _ = headers.append("content-type", b"text/plain");
        let response = OutgoingResponse::new(headers);
        let Ok(body) = response.body() else {
            let message = "the response body was already taken".to_string();
            ResponseOutparam::set(out, Err(ErrorCode::InternalError(Some(message))));
            return;
        };
        ResponseOutparam::set(out, Ok(response));
        if let Ok(stream) = body.write() {
            // The status line is sent; a failed write can only cut the body short.
            let _ = stream.blocking_write_and_flush(BODY);
            // The stream is a child of the body: it must go first or the host traps.
            drop(stream);
        }
        let _ = OutgoingBody::finish(body, None);
    }
}

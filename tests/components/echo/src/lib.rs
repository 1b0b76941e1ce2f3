//! `echo`: answers every request with what it received, so a test can see exactly what
//! the host delivered: method, path, the caller the host stamped, headers and body.
//!
//! `{"method", "path_with_query", "caller", "headers", "body"}`, always status 200.

use common::{Reply, Request};
use serde_json::json;
use wasi::exports::http::incoming_handler::Guest;
use wasi::http::types::{IncomingRequest, ResponseOutparam};

struct Echo;

wasi::http::proxy::export!(Echo);

impl Guest for Echo {
    fn handle(request: IncomingRequest, out: ResponseOutparam) {
        common::serve(request, out, echo);
    }
}

fn echo(request: &Request) -> Reply {
    Reply::json(
        200,
        &json!({
            "method": request.method,
            "path_with_query": request.path_with_query,
            "caller": request.caller(),
            "headers": request.headers.to_json(),
            "body": request.body_text(),
        }),
    )
}

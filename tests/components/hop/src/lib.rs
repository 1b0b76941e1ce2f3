//! `hop`: answers every request with what `GET http://hello.internal/` answered, so a
//! benchmark can put one mesh hop (gateway → hop → hello) next to the single function
//! (gateway → hello). Any failure of the call is a 502 naming it.

use common::{Call, Reply, Request, mesh_url};
use wasi::exports::http::incoming_handler::Guest;
use wasi::http::types::{IncomingRequest, ResponseOutparam};

struct Hop;

wasi::http::proxy::export!(Hop);

impl Guest for Hop {
    fn handle(request: IncomingRequest, out: ResponseOutparam) {
        common::serve(request, out, hop);
    }
}

fn hop(_request: &Request) -> Reply {
    match Call::new("GET", mesh_url("hello", "/")).send() {
        Ok(fetched) => Reply {
            status: fetched.status,
            headers: vec![("content-type".to_string(), "text/plain".to_string())],
            body: fetched.body,
        },
        Err(error) => Reply::error(502, format!("the call to `hello` failed: {error}")),
    }
}

//! `relay`: a test tool kept in the example shop. It makes whatever outgoing request or
//! TCP connect its query string names and reports what the host let through; see
//! [`common::relay`] for the endpoints and the JSON it answers.

use wasi::exports::http::incoming_handler::Guest;
use wasi::http::types::{IncomingRequest, ResponseOutparam};

struct Relay;

wasi::http::proxy::export!(Relay);

impl Guest for Relay {
    fn handle(request: IncomingRequest, out: ResponseOutparam) {
        common::serve(request, out, common::relay::route);
    }
}

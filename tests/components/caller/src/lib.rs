//! `caller`: the relay again, under another name, so tests can give a second function
//! its own identity and policy. Same endpoints and JSON as the shop's `relay`; the
//! code is shared through [`common::relay`].

use wasi::exports::http::incoming_handler::Guest;
use wasi::http::types::{IncomingRequest, ResponseOutparam};

struct Caller;

wasi::http::proxy::export!(Caller);

impl Guest for Caller {
    fn handle(request: IncomingRequest, out: ResponseOutparam) {
        common::serve(request, out, common::relay::route);
    }
}

//! `ledger`: the isolated, PCI-scoped record of charges. Only `checkout` is meant to
//! reach it; the shop's policy denies everyone else, which `storefront` demonstrates.
//!
//! - `POST /entries` records an entry (201).
//! - `GET /entries` lists entries (always empty: nothing is stored).
//!
//! Both answers include the caller the host reported, so a test can see which
//! function got through.

use common::{Reply, Request};
use serde_json::json;
use wasi::exports::http::incoming_handler::Guest;
use wasi::http::types::{IncomingRequest, ResponseOutparam};

struct Ledger;

wasi::http::proxy::export!(Ledger);

impl Guest for Ledger {
    fn handle(request: IncomingRequest, out: ResponseOutparam) {
        common::serve(request, out, route);
    }
}

fn route(request: &Request) -> Reply {
    let caller = request.caller();
    if request.is("POST", "/entries") {
        Reply::json(201, &json!({ "recorded": true, "caller": caller }))
    } else if request.is("GET", "/entries") {
        Reply::json(200, &json!({ "entries": [], "caller": caller }))
    } else {
        Reply::not_found(request)
    }
}

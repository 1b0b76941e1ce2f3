//! `catalog`: the shop's private product list, reachable only through the mesh.
//!
//! - `GET /products` answers a fixed list of three products.
//! - `GET /whoami` answers who called and with which headers.

use common::{Reply, Request};
use serde_json::json;
use wasi::exports::http::incoming_handler::Guest;
use wasi::http::types::{IncomingRequest, ResponseOutparam};

struct Catalog;

wasi::http::proxy::export!(Catalog);

impl Guest for Catalog {
    fn handle(request: IncomingRequest, out: ResponseOutparam) {
        common::serve(request, out, route);
    }
}

fn route(request: &Request) -> Reply {
    if request.is("GET", "/products") {
        Reply::json(200, &products())
    } else if request.is("GET", "/whoami") {
        Reply::json(200, &request.whoami())
    } else {
        Reply::not_found(request)
    }
}

/// Fixed data: the example is about who may call whom, not about storage.
fn products() -> serde_json::Value {
    json!([
        { "id": "tea", "name": "Sencha tea, 100 g", "price_cents": 1250 },
        { "id": "mug", "name": "Stoneware mug", "price_cents": 1800 },
        { "id": "kettle", "name": "Gooseneck kettle", "price_cents": 5400 },
    ])
}

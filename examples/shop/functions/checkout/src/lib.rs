//! `checkout`: the private, PCI-scoped payment step. It is the one function the shop's
//! policy lets write to `ledger`.
//!
//! - `POST /charge` takes `{"amount_cents": N}`, records it with
//!   `POST http://ledger.internal/entries` and answers
//!   `{"charged", "ledger_status", "caller"}`.
//! - `GET /whoami` answers who called and with which headers.

use common::{Call, Reply, Request, mesh_url};
use serde_json::{Value, json};
use wasi::exports::http::incoming_handler::Guest;
use wasi::http::types::{IncomingRequest, ResponseOutparam};

struct Checkout;

wasi::http::proxy::export!(Checkout);

impl Guest for Checkout {
    fn handle(request: IncomingRequest, out: ResponseOutparam) {
        common::serve(request, out, route);
    }
}

fn route(request: &Request) -> Reply {
    if request.is("POST", "/charge") {
        charge(request)
    } else if request.is("GET", "/whoami") {
        Reply::json(200, &request.whoami())
    } else {
        Reply::not_found(request)
    }
}

fn charge(request: &Request) -> Reply {
    let amount_cents = amount_cents(&request.body);
    let caller = request.caller();
    let entry = json!({ "amount_cents": amount_cents });
    match Call::post_json(mesh_url("ledger", "/entries"), &entry).send() {
        // A charge counts only once the ledger has it; a refused or failed write is
        // reported as not charged, with the ledger's status, so the storefront and the
        // tests can see why.
        Ok(ledger) => {
            let charged = ledger.is_success();
            let status = if charged { 200 } else { 502 };
            Reply::json(
                status,
                &json!({
                    "charged": charged,
                    "ledger_status": ledger.status,
                    "caller": caller,
                }),
            )
        }
        Err(error) => Reply::json(
            502,
            &json!({
                "charged": false,
                "error": format!("ledger call failed: {error}"),
                "caller": caller,
            }),
        ),
    }
}

/// `amount_cents` from a JSON body. The example tolerates any body, so anything
/// missing or malformed charges 0 instead of failing the demo.
fn amount_cents(body: &[u8]) -> u64 {
    serde_json::from_slice::<Value>(body)
        .ok()
        .and_then(|value| value.get("amount_cents").and_then(Value::as_u64))
        .unwrap_or(0)
}

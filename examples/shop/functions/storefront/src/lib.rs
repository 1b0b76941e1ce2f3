//! `storefront`: the shop's public face in the edge segment, and the only function the
//! gateway routes to. Each API endpoint shows one policy outcome:
//!
//! - `GET /api/products`: an allowed call to `catalog`.
//! - `POST /api/checkout`: an allowed call to `checkout`, which itself calls `ledger`.
//! - `GET /api/ledger`: a call to `ledger` that the policy denies; the answer reports
//!   the denial instead of hiding it.
//! - `GET /api/orders`: only with a customer token; the gateway verified it and tells the
//!   function who the customer is (`septa-principal`, `septa-claim-email`).
//! - `GET /partner/products`: only with a partner API key; `septa-principal` names the
//!   partner.
//! - `POST /api/cart/{id}` and `GET /api/cart/{id}`: save and read a cart in the `carts`
//!   endpoint, a key-value store the storefront reaches only under `carts/`.

use common::{Call, Fetched, Reply, Request, mesh_url};
use serde_json::{Value, json};
use wasi::exports::http::incoming_handler::Guest;
use wasi::http::types::{IncomingRequest, ResponseOutparam};

struct Storefront;

wasi::http::proxy::export!(Storefront);

impl Guest for Storefront {
    fn handle(request: IncomingRequest, out: ResponseOutparam) {
        common::serve(request, out, route);
    }
}

fn route(request: &Request) -> Reply {
    match (request.method.as_str(), request.path()) {
        ("GET", "/") => Reply::html(200, HOME_PAGE),
        ("GET", "/api/products") => products(),
        ("POST", "/api/checkout") => checkout(request),
        ("GET", "/api/ledger") => ledger(),
        ("GET", "/api/orders") => orders(request),
        ("GET", "/partner/products") => partner_products(request),
        (method, path) if path.starts_with("/api/cart/") => {
            cart(method, &path["/api/cart/".len()..], request)
        }
        _ => Reply::not_found(request),
    }
}

const HOME_PAGE: &str = r#"<!doctype html>
<html lang="en">
<head><meta charset="utf-8"><title>septa shop</title></head>
<body>
<h1>septa shop</h1>
<p>An example of four functions and the policy between them.</p>
<ul>
<li><code>GET /api/products</code>: storefront calls catalog (allowed)</li>
<li><code>POST /api/checkout</code> with <code>{"amount_cents": 1250}</code>: storefront calls checkout, which records the charge in ledger (allowed)</li>
<li><code>GET /api/ledger</code>: storefront tries to read ledger directly (denied by policy; the answer shows the reason)</li>
</ul>
</body>
</html>
"#;

fn products() -> Reply {
    match catalog_products() {
        Ok(products) => Reply::json(200, &json!({ "products": products })),
        Err(failed) => failed,
    }
}

/// The catalog's products, or the 502 saying why they could not be had.
fn catalog_products() -> Result<Value, Reply> {
    let catalog = Call::get(mesh_url("catalog", "/products"))
        .send()
        .map_err(|error| Reply::error(502, format!("catalog call failed: {error}")))?;
    if !catalog.is_success() {
        return Err(upstream_failed("catalog", &catalog));
    }
    serde_json::from_slice::<Value>(&catalog.body)
        .map_err(|error| Reply::error(502, format!("catalog answered invalid json: {error}")))
}

fn checkout(request: &Request) -> Reply {
    let content_type = request
        .headers
        .get("content-type")
        .unwrap_or_else(|| "application/json".to_string());
    let call = Call::new("POST", mesh_url("checkout", "/charge"))
        .header("content-type", &content_type)
        .body(request.body.clone());
    match call.send() {
        Ok(checkout) => {
            let status = if checkout.is_success() { 200 } else { 502 };
            Reply::json(
                status,
                &json!({
                    "checkout": checkout.status,
                    "result": checkout.body_json_or_text(),
                }),
            )
        }
        Err(error) => Reply::error(502, format!("checkout call failed: {error}")),
    }
}

/// Tries a call the shop's policy denies and reports what the host said. The
/// storefront answers 200 because showing the denial is this endpoint's job.
fn ledger() -> Reply {
    match Call::get(mesh_url("ledger", "/entries")).send() {
        Ok(ledger) => Reply::json(
            200,
            &json!({
                "status": ledger.status,
                "denied": ledger.is_denied(),
                "reason": ledger.deny_reason(),
            }),
        ),
        Err(error) => Reply::error(502, format!("ledger call failed: {error}")),
    }
}

/// The signed-in customer's orders. The gateway only routes here with a verified token, and
/// sets the identity headers itself (a client's own `septa-*` headers never arrive).
fn orders(request: &Request) -> Reply {
    let customer = request.headers.get("septa-principal").unwrap_or_default();
    let email = request.headers.get("septa-claim-email");
    Reply::json(
        200,
        &json!({
            "customer": customer,
            "email": email,
            "orders": [{ "id": "o-1001", "total_cents": 1250, "status": "shipped" }],
        }),
    )
}

/// The catalog, for a partner holding an API key.
fn partner_products(request: &Request) -> Reply {
    let partner = request.headers.get("septa-principal").unwrap_or_default();
    match catalog_products() {
        Ok(products) => Reply::json(200, &json!({ "partner": partner, "products": products })),
        Err(failed) => failed,
    }
}

/// Saves (`POST`) or reads (`GET`) cart `id` in the `carts` endpoint, under `carts/` — the only
/// prefix the policy opens to the storefront.
fn cart(method: &str, id: &str, request: &Request) -> Reply {
    let valid = !id.is_empty()
        && id.len() <= 64
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if !valid {
        return Reply::error(400, "a cart id is 1 to 64 letters, digits, `-` or `_`");
    }
    let url = mesh_url("carts", &format!("/kv/carts/{id}"));
    let call = match method {
        "POST" => Call::new("PUT", url).body(request.body.clone()),
        "GET" => Call::get(url),
        _ => return Reply::error(405, "carts are saved with POST and read with GET"),
    };
    match call.send() {
        Ok(stored) if stored.is_success() && method == "GET" => Reply::json(
            200,
            &json!({ "cart": id, "items": stored.body_json_or_text() }),
        ),
        Ok(stored) if stored.is_success() => Reply::json(
            200,
            &json!({ "cart": id, "saved": stored.body_json_or_text() }),
        ),
        Ok(stored) if stored.status == 404 => Reply::error(404, format!("no cart `{id}`")),
        Ok(stored) => upstream_failed("carts", &stored),
        Err(error) => Reply::error(502, format!("carts call failed: {error}")),
    }
}

/// The 502 for a function that answered with a failure status, carrying the deny
/// reason when the failure was the policy's.
fn upstream_failed(name: &str, fetched: &Fetched) -> Reply {
    Reply::json(
        502,
        &json!({
            "error": format!("{name} answered {}", fetched.status),
            "upstream_status": fetched.status,
            "reason": fetched.deny_reason(),
        }),
    )
}

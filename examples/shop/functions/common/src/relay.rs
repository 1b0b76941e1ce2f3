//! The relay: a test tool that makes the outgoing request or TCP connect it is told
//! to and reports, as JSON, exactly what the host let through.
//!
//! It answers 200 whenever it managed to *try*, whatever the outcome, so a test can
//! tell "the relay ran and was denied" (200 with `denied: true`) apart from "the relay
//! itself was not reached" (any other status). Only a malformed instruction gets 400.
//!
//! - `GET /?to=URL[&method=M][&body=TEXT][&header=NAME:VALUE]...` makes the request and
//!   answers `{"status", "body", "headers", "denied", "reason"}`, or
//!   `{"error", "denied"}` when wasi:http failed it.
//! - `GET /tcp?to=IP:PORT` connects and answers `{"connected", "error", "code"}`.
//! - `GET /whoami` answers `{"caller", "headers"}`.
//!
//! Endpoints are told apart by the last path segment only ([`Request::endpoint`]), so
//! the relay works mounted under any gateway route: `/relay/?to=..`, `/relay?to=..`
//! and `/relay/tcp?to=..` behave like `/?to=..` and `/tcp?to=..`. Any path whose last
//! segment is not `tcp` or `whoami` is the HTTP relay.

use std::net::SocketAddr;

use serde_json::json;
use wasi::http::types::HeaderError;

use crate::incoming::Request;
use crate::outgoing::{Call, CallError};
use crate::reply::Reply;
use crate::tcp::{ConnectOutcome, try_connect};

/// The most of a relayed response body that is echoed back.
pub const MAX_RELAYED_BODY: usize = 64 * 1024;

/// Routes one request to the relay's endpoints; anything else is a 404.
pub fn route(request: &Request) -> Reply {
    if request.method != "GET" {
        return Reply::not_found(request);
    }
    match request.endpoint() {
        "tcp" => relay_tcp(request),
        "whoami" => Reply::json(200, &request.whoami()),
        _ => relay_http(request),
    }
}

fn relay_http(request: &Request) -> Reply {
    let query = request.query();
    let values = |name| values_of(&query, name);
    let Some(to) = values("to").next().filter(|to| !to.is_empty()) else {
        return Reply::error(400, "missing `to` query parameter");
    };
    let method = values("method").next().unwrap_or("GET");
    let mut call = Call::new(method, to).body_limit(MAX_RELAYED_BODY);
    for header in values("header") {
        let Some((name, value)) = header.split_once(':') else {
            return Reply::error(400, format!("header `{header}` is not `NAME:VALUE`"));
        };
        call = call.header(name.trim(), value.trim());
    }
    if let Some(body) = values("body").next() {
        call = call.body(body.as_bytes());
    }
    match call.send() {
        Ok(fetched) => Reply::json(
            200,
            &json!({
                "status": fetched.status,
                "body": fetched.body_text(),
                "headers": fetched.headers.to_json(),
                "denied": fetched.is_denied(),
                "reason": fetched.deny_reason(),
            }),
        ),
        // The instruction itself was malformed: nothing was sent, so there is no
        // outcome to report.
        Err(
            error @ (CallError::Invalid(_)
            | CallError::Header {
                error: HeaderError::InvalidSyntax,
                ..
            }),
        ) => Reply::error(400, error.to_string()),
        Err(error) => Reply::json(
            200,
            &json!({
                "error": error.to_string(),
                "denied": error.is_denied(),
            }),
        ),
    }
}

/// Every value of query parameter `name`, in order.
fn values_of<'q>(query: &'q [(String, String)], name: &'q str) -> impl Iterator<Item = &'q str> {
    query
        .iter()
        .filter(move |(key, _)| key == name)
        .map(|(_, value)| value.as_str())
}

fn relay_tcp(request: &Request) -> Reply {
    let Some(to) = request.query_value("to") else {
        return Reply::error(400, "missing `to` query parameter");
    };
    let Ok(address) = to.parse::<SocketAddr>() else {
        return Reply::error(
            400,
            format!("`to` must be IP:PORT with an IP literal (`[..]` for IPv6), got `{to}`"),
        );
    };
    let body = match try_connect(address) {
        ConnectOutcome::Connected => json!({ "connected": true, "error": null, "code": null }),
        // `error` is the full debug text; `code` is the bare wit name
        // (`access-denied`), which is what a test usually wants to compare.
        ConnectOutcome::Failed(code) => json!({
            "connected": false,
            "error": format!("{code:?}"),
            "code": code.name(),
        }),
    };
    Reply::json(200, &body)
}

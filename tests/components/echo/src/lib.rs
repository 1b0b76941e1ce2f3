//! `echo`: answers every request with what it received, so a test can see exactly what
//! the host delivered: method, path, the caller the host stamped, headers and body.
//!
//! `{"method", "path_with_query", "caller", "headers", "body"}`, always status 200.
//!
//! Except under `/lenient/`, where it is a router as lenient as many real ones: it
//! percent-decodes the path (again and again), drops `;` parameters, resolves dot segments,
//! lowercases with Unicode rules (so `K`, the KELVIN SIGN, is `k`), ignores a trailing slash
//! and matches `/a.json` as `/a` (suffix patterns) before it matches. It serves
//! `/lenient/keys` (`{"secret"}`, a test manifest guards it) and `/lenient/menu`
//! (`{"menu"}`), and 404 otherwise, so a test can show which spellings reach which page.

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
    let path = request
        .path_with_query
        .split('?')
        .next()
        .unwrap_or_default();
    if path.contains("/raw/") {
        return raw(request);
    }
    let folded = lenient_fold(path);
    if let Some(page) = folded.strip_prefix("/lenient/") {
        return match page {
            "keys" => Reply::json(200, &json!({ "secret": "the signing keys" })),
            "menu" => Reply::json(200, &json!({ "menu": "soup of the day" })),
            _ => Reply::json(404, &json!({ "error": "no such page" })),
        };
    }
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

/// The request body as it came, with two cookies.
fn raw(request: &Request) -> Reply {
    Reply {
        status: 201,
        headers: vec![
            (
                "content-type".to_string(),
                "application/octet-stream".to_string(),
            ),
            ("set-cookie".to_string(), "a=1; Path=/".to_string()),
            ("set-cookie".to_string(), "b=2; Path=/".to_string()),
        ],
        body: request.body.clone(),
    }
}

/// `path` as a lenient router reads it: percent-decoded until nothing changes, each segment cut
/// at its first `;`, dot segments resolved, empty segments (a trailing slash) dropped, lowercased
/// with Unicode rules, and the last segment's suffix (`.json`) cut.
fn lenient_fold(path: &str) -> String {
    let mut bytes = path.as_bytes().to_vec();
    loop {
        let next = percent_decode(&bytes);
        if next == bytes {
            break;
        }
        bytes = next;
    }
    let decoded = String::from_utf8_lossy(&bytes).into_owned();
    let mut segments: Vec<String> = Vec::new();
    for segment in decoded.split(['/', '\\']) {
        match segment.split(';').next().unwrap_or_default() {
            "" | "." => {}
            ".." => {
                segments.pop();
            }
            segment => segments.push(segment.to_lowercase()),
        }
    }
    if let Some(last) = segments.last_mut()
        && let Some(dot) = last.get(1..).and_then(|rest| rest.find('.'))
    {
        last.truncate(dot + 1);
    }
    segments.iter().map(|s| format!("/{s}")).collect()
}

/// `%XX` escapes decoded; a `%` without two hex digits is kept as it is.
fn percent_decode(bytes: &[u8]) -> Vec<u8> {
    let hex = |b: u8| char::from(b).to_digit(16);
    let mut out = Vec::with_capacity(bytes.len());
    let mut at = 0;
    while let Some(&byte) = bytes.get(at) {
        let escape = (byte == b'%')
            .then(|| Some((hex(*bytes.get(at + 1)?)?, hex(*bytes.get(at + 2)?)?)))
            .flatten();
        match escape {
            Some((high, low)) => {
                out.push((high * 16 + low) as u8);
                at += 3;
            }
            None => {
                out.push(byte);
                at += 1;
            }
        }
    }
    out
}

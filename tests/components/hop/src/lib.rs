//! `hop`: answers every request with what `GET http://hello.internal/` answered, so a
//! benchmark can put one mesh hop (gateway → hop → hello) next to the single function
//! (gateway → hello). Any failure of the call is a 502 naming it.
//!
//! Written against the raw wasi:http bindings, like `hello`, so that what the hop adds over
//! `hello` is the host's mesh path and a second instance, not a heavier guest.

use wasi::exports::http::incoming_handler::Guest;
use wasi::http::outgoing_handler;
use wasi::http::types::{
    ErrorCode, Fields, IncomingRequest, IncomingResponse, OutgoingBody, OutgoingRequest,
    OutgoingResponse, ResponseOutparam, Scheme,
};
use wasi::io::streams::StreamError;

/// The most of `hello`'s body passed on.
const BODY_LIMIT: usize = 64 * 1024;

struct Hop;

wasi::http::proxy::export!(Hop);

impl Guest for Hop {
    fn handle(_request: IncomingRequest, out: ResponseOutparam) {
        match call_hello() {
            Ok((status, body)) => answer(out, status, &body),
            Err(message) => answer(
                out,
                502,
                format!("the call to `hello` failed: {message}\n").as_bytes(),
            ),
        }
    }
}

/// `GET http://hello.internal/`: its status and body.
fn call_hello() -> Result<(u16, Vec<u8>), String> {
    let request = OutgoingRequest::new(Fields::new());
    request
        .set_scheme(Some(&Scheme::Http))
        .and_then(|()| request.set_authority(Some("hello.internal")))
        .and_then(|()| request.set_path_with_query(Some("/")))
        .map_err(|()| "the host refused the request line".to_string())?;
    let pending = outgoing_handler::handle(request, None).map_err(|e| format!("{e:?}"))?;
    let response = loop {
        match pending.get() {
            Some(Ok(Ok(response))) => break response,
            Some(Ok(Err(code))) => return Err(format!("{code:?}")),
            Some(Err(())) => return Err("the response was already taken".to_string()),
            None => pending.subscribe().block(),
        }
    };
    Ok((response.status(), read_body(response)?))
}

fn read_body(response: IncomingResponse) -> Result<Vec<u8>, String> {
    let body = response
        .consume()
        .map_err(|()| "the response body was already taken".to_string())?;
    let stream = body
        .stream()
        .map_err(|()| "the body stream was already taken".to_string())?;
    let mut bytes = Vec::new();
    while bytes.len() < BODY_LIMIT {
        match stream.blocking_read((BODY_LIMIT - bytes.len()) as u64) {
            Ok(chunk) => bytes.extend_from_slice(&chunk),
            Err(StreamError::Closed) => break,
            Err(StreamError::LastOperationFailed(e)) => return Err(e.to_debug_string()),
        }
    }
    Ok(bytes)
}

fn answer(out: ResponseOutparam, status: u16, body: &[u8]) {
    let headers = Fields::new();
    let _ = headers.append("content-type", b"text/plain");
    let response = OutgoingResponse::new(headers);
    let _ = response.set_status_code(status);
    let Ok(outgoing) = response.body() else {
        let message = "the response body was already taken".to_string();
        ResponseOutparam::set(out, Err(ErrorCode::InternalError(Some(message))));
        return;
    };
    ResponseOutparam::set(out, Ok(response));
    if let Ok(stream) = outgoing.write() {
        // `blocking_write_and_flush` takes at most 4,096 bytes at a time.
        for chunk in body.chunks(4096) {
            if stream.blocking_write_and_flush(chunk).is_err() {
                break;
            }
        }
        // The stream is a child of the body: it must go first or the host traps.
        drop(stream);
    }
    let _ = OutgoingBody::finish(outgoing, None);
}

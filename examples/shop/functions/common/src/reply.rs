//! The answer a guest gives, and [`serve`], which runs a guest's router for one request.

use serde_json::{Value, json};
use wasi::http::types::{ErrorCode, Fields, IncomingRequest, OutgoingResponse, ResponseOutparam};

use crate::body::write_body;
use crate::incoming::Request;

/// A complete response, built before anything is sent.
#[derive(Debug, Clone)]
pub struct Reply {
    /// The status code.
    pub status: u16,
    /// Response headers.
    pub headers: Vec<(String, String)>,
    /// The whole body.
    pub body: Vec<u8>,
}

impl Reply {
    /// `value` as an `application/json` body.
    pub fn json(status: u16, value: &Value) -> Self {
        Self {
            status,
            headers: vec![("content-type".to_string(), "application/json".to_string())],
            body: value.to_string().into_bytes(),
        }
    }

    /// An HTML page.
    pub fn html(status: u16, page: &str) -> Self {
        Self {
            status,
            headers: vec![(
                "content-type".to_string(),
                "text/html; charset=utf-8".to_string(),
            )],
            body: page.as_bytes().to_vec(),
        }
    }

    /// `{"error": message}`, the shape every guest uses for its own failures.
    pub fn error(status: u16, message: impl Into<String>) -> Self {
        Self::json(status, &json!({ "error": message.into() }))
    }

    /// The 404 for a request no route matched, naming what was asked for.
    pub fn not_found(request: &Request) -> Self {
        Self::error(
            404,
            format!("no route for `{} {}`", request.method, request.path()),
        )
    }

    /// Sends this reply through `out`.
    ///
    /// If the reply cannot even be built (the host rejects a header or the status), the
    /// host is told through the outparam's error instead, so the client still gets a
    /// 500 rather than a hung request.
    pub fn send(self, out: ResponseOutparam) {
        let response = match self.build() {
            Ok(response) => response,
            Err(message) => {
                ResponseOutparam::set(out, Err(ErrorCode::InternalError(Some(message))));
                return;
            }
        };
        let body = match response.body() {
            Ok(body) => body,
            Err(()) => {
                let message = "the response body was already taken".to_string();
                ResponseOutparam::set(out, Err(ErrorCode::InternalError(Some(message))));
                return;
            }
        };
        ResponseOutparam::set(out, Ok(response));
        // The status line is on its way; a failure now can only cut the body short and
        // there is no one left to report it to, so it is not treated as an error.
        let _ = write_body(body, &self.body);
    }

    fn build(&self) -> Result<OutgoingResponse, String> {
        let headers = Fields::new();
        for (name, value) in &self.headers {
            headers
                .append(name, value.as_bytes())
                .map_err(|error| format!("response header `{name}` rejected: {error:?}"))?;
        }
        let response = OutgoingResponse::new(headers);
        response
            .set_status_code(self.status)
            .map_err(|()| format!("invalid response status `{}`", self.status))?;
        Ok(response)
    }
}

/// Reads `request`, routes it with `route` and sends the reply.
///
/// A request that cannot be read is answered here (413 or 500 with a message), so
/// `route` only ever sees a whole request.
pub fn serve(
    request: IncomingRequest,
    out: ResponseOutparam,
    route: impl FnOnce(&Request) -> Reply,
) {
    let reply = match Request::read(request) {
        Ok(request) => route(&request),
        Err(error) => Reply::error(error.status(), error.to_string()),
    };
    reply.send(out);
}

//! What a browser needs from the admin listener: the dashboard page, its script and its style,
//! embedded in the binary (nothing is fetched from anywhere else), and `/login`, which trades
//! the admin token for a session cookie ([`crate::session`]) since a browser cannot send a
//! bearer header on a navigation or an `EventSource`.

use bytes::Bytes;
use http::header::{
    ALLOW, CACHE_CONTROL, CONTENT_TYPE, HOST, LOCATION, ORIGIN, REFERRER_POLICY, SET_COOKIE,
};
use http::{HeaderMap, HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Limited};
use serde_json::json;

use super::routes::{full, json_response, unauthorized};
use super::{Admin, AdminBody};
use crate::control::ReloadAttempt;
use crate::filter::percent_decode;
use crate::session::{SESSION_COOKIE, SESSION_LIFETIME};

const INDEX: &str = include_str!("../dashboard/index.html");
const SCRIPT: &str = include_str!("../dashboard/dashboard.js");
const STYLE: &str = include_str!("../dashboard/dashboard.css");

/// The dashboard loads its own script and style and talks to its own origin, nothing else.
const PAGE_POLICY: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
     connect-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'self'; \
     frame-ancestors 'none'";

/// The login page has no script at all; its few styles are inline, since the stylesheet is
/// behind the login.
const LOGIN_POLICY: &str = "default-src 'none'; style-src 'unsafe-inline'; base-uri 'none'; \
     form-action 'self'; frame-ancestors 'none'";

/// The header a state-changing request carried by a session cookie must send: a page of another
/// site cannot set it without a CORS preflight, which the admin listener never grants.
pub(super) const CSRF_HEADER: &str = "x-septa-dashboard";

/// Largest `POST /login` body read.
const MAX_LOGIN_BODY: usize = 4096;

/// Whether a refusal on `path` should be the login page rather than JSON.
pub(super) fn wants_page(path: &str) -> bool {
    matches!(path, "/dashboard" | "/login")
}

/// The dashboard's page, script or style at `path`.
pub(super) fn asset(path: &str) -> Option<Response<AdminBody>> {
    let (content_type, body) = match path {
        "/dashboard" => ("text/html; charset=utf-8", INDEX),
        "/dashboard.js" => ("text/javascript; charset=utf-8", SCRIPT),
        "/dashboard.css" => ("text/css; charset=utf-8", STYLE),
        _ => return None,
    };
    let mut response = Response::new(full(Bytes::from_static(body.as_bytes())));
    page_headers(response.headers_mut(), content_type, PAGE_POLICY);
    Some(response)
}

/// A page with a login form and `message`, status 401.
pub(super) fn login_page(message: &str) -> Response<AdminBody> {
    let page = format!(
        r#"<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>septa admin: log in</title>
<style>body{{font:15px system-ui,sans-serif;max-width:34em;margin:4em auto;color:#1d2633}}
input{{font:inherit;width:100%;padding:.4em;margin:.5em 0}}button{{font:inherit;padding:.4em 1.2em}}
code{{background:#eef1f5;padding:0 .2em}}</style></head>
<body><h1>septa admin</h1>
<p id="why">{}</p>
<form method="post" action="/login">
<label for="token">Admin token</label>
<input id="token" name="token" type="password" autocomplete="current-password" autofocus required>
<button type="submit">Log in</button>
</form>
<p>The token is the one <code>septa up --admin</code> wants as <code>Authorization: Bearer TOKEN</code>:
from <code>--admin-token-file</code>, <code>$SEPTA_ADMIN_TOKEN</code>, or generated at the first
start and kept in <code>DIR/.septa/admin-token</code>. Logging in sets a session cookie for this
listener only; the token itself is never stored in the browser.</p>
</body></html>
"#,
        escape_html(message)
    );
    let mut response = Response::new(full(page));
    *response.status_mut() = StatusCode::UNAUTHORIZED;
    page_headers(
        response.headers_mut(),
        "text/html; charset=utf-8",
        LOGIN_POLICY,
    );
    response
}

/// The 403 for a state-changing request carried by a session cookie alone that does not show
/// it comes from the dashboard itself: it must send [`CSRF_HEADER`] and an `Origin` that is
/// this listener's own. `SameSite=Strict` already keeps the cookie off other sites' requests;
/// this holds even for a browser that ignores it.
pub(super) fn cross_site_refusal<B>(request: &Request<B>) -> Option<Response<AdminBody>> {
    let headers = request.headers();
    let marked = headers.get(CSRF_HEADER).is_some();
    let own_origin = match (headers.get(ORIGIN), headers.get(HOST)) {
        (Some(origin), Some(host)) => {
            origin.as_bytes().strip_prefix(b"http://") == Some(host.as_bytes())
        }
        _ => false,
    };
    if marked && own_origin {
        return None;
    }
    Some(json_response(
        StatusCode::FORBIDDEN,
        &json!({
            "error": format!(
                "a `{}` with only a session cookie must come from the dashboard: it needs `{CSRF_HEADER}: 1` and this listener's own `Origin` (or use `Authorization: Bearer TOKEN`)",
                request.method()
            ),
        }),
    ))
}

/// A `Set-Cookie` that ends the session in the browser.
pub(super) fn clear_session_cookie() -> HeaderValue {
    HeaderValue::from_static("septa_admin=; HttpOnly; SameSite=Strict; Path=/; Max-Age=0")
}

impl Admin {
    /// `/login`: `GET /login?token=TOKEN` (a link to click) or `POST /login` with the form field
    /// `token`. The right token gets a session cookie and a redirect to `/dashboard`; anything
    /// else gets the login page, status 401, and no cookie.
    pub(super) async fn login<B>(&self, request: Request<B>) -> Response<AdminBody>
    where
        B: hyper::body::Body,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let presented = match *request.method() {
            Method::GET => form_value(request.uri().query().unwrap_or(""), "token"),
            Method::POST => match Limited::new(request.into_body(), MAX_LOGIN_BODY)
                .collect()
                .await
            {
                Ok(body) => std::str::from_utf8(&body.to_bytes())
                    .ok()
                    .and_then(|text| form_value(text, "token")),
                Err(_) => None,
            },
            _ => {
                let mut response = json_response(
                    StatusCode::METHOD_NOT_ALLOWED,
                    &json!({ "error": "`/login` answers GET, POST only" }),
                );
                response
                    .headers_mut()
                    .insert(ALLOW, HeaderValue::from_static("GET, POST"));
                return response;
            }
        };
        let Some(presented) = presented else {
            return unauthorized(
                true,
                "Log in with the admin token.",
                r#"Bearer realm="septa-admin""#,
            );
        };
        if !self.token.verify(presented.trim().as_bytes()) {
            tracing::debug!("a login to the admin listener with a wrong token");
            return unauthorized(
                true,
                "That is not the admin token.",
                r#"Bearer realm="septa-admin", error="invalid_token""#,
            );
        }
        let Some(sessions) = &self.sessions else {
            return json_response(
                StatusCode::SERVICE_UNAVAILABLE,
                &json!({ "error": "browser sessions are off: the system random number generator failed at start; use `Authorization: Bearer TOKEN`" }),
            );
        };
        let cookie = format!(
            "{SESSION_COOKIE}={}; HttpOnly; SameSite=Strict; Path=/; Max-Age={}",
            sessions.issue(ReloadAttempt::now_unix_s()),
            SESSION_LIFETIME.as_secs()
        );
        let mut response = Response::new(full(Bytes::new()));
        *response.status_mut() = StatusCode::SEE_OTHER;
        let headers = response.headers_mut();
        headers.insert(LOCATION, HeaderValue::from_static("/dashboard"));
        headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
        headers.insert(REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
        if let Ok(value) = HeaderValue::from_str(&cookie) {
            headers.insert(SET_COOKIE, value);
        }
        response
    }
}

/// The decoded value of `name` in `application/x-www-form-urlencoded` text (a query string or
/// a form body).
fn form_value(text: &str, name: &str) -> Option<String> {
    text.split('&')
        .filter_map(|pair| pair.split_once('='))
        .find(|(key, _)| percent_decode(key).as_deref() == Some(name))
        .and_then(|(_, value)| percent_decode(value))
}

fn page_headers(headers: &mut HeaderMap, content_type: &'static str, policy: &'static str) {
    headers.insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert("content-security-policy", HeaderValue::from_static(policy));
    headers.insert(
        "x-content-type-options",
        HeaderValue::from_static("nosniff"),
    );
    headers.insert("x-frame-options", HeaderValue::from_static("DENY"));
    headers.insert(REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
}

fn escape_html(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    #[test]
    fn the_token_is_read_from_a_query_or_a_form_body() {
        assert_eq!(form_value("token=abc", "token").as_deref(), Some("abc"));
        assert_eq!(
            form_value("x=1&token=a%2Bb+c&y", "token").as_deref(),
            Some("a+b c")
        );
        assert_eq!(form_value("tokens=abc", "token"), None);
        assert_eq!(form_value("token=%zz", "token"), None);
        assert_eq!(form_value("", "token"), None);
    }

    #[test]
    fn a_cookie_only_post_needs_the_dashboard_header_and_the_own_origin() {
        let post = |origin: Option<&str>, marked: bool| {
            let mut request = Request::post("/reload").header(HOST, "127.0.0.1:9000");
            if let Some(origin) = origin {
                request = request.header(ORIGIN, origin);
            }
            if marked {
                request = request.header(CSRF_HEADER, "1");
            }
            cross_site_refusal(&request.body(()).unwrap()).map(|r| r.status())
        };
        assert_eq!(post(Some("http://127.0.0.1:9000"), true), None);
        let forbidden = Some(StatusCode::FORBIDDEN);
        assert_eq!(post(Some("http://127.0.0.1:9000"), false), forbidden);
        assert_eq!(post(Some("http://evil.example"), true), forbidden);
        assert_eq!(post(Some("null"), true), forbidden);
        assert_eq!(post(None, true), forbidden);
    }

    #[test]
    fn the_login_page_escapes_its_message() {
        assert_eq!(
            escape_html(r#"<script>"a" & b</script>"#),
            "&lt;script&gt;&quot;a&quot; &amp; b&lt;/script&gt;"
        );
        let page = login_page("<script>x</script>");
        assert_eq!(page.status(), StatusCode::UNAUTHORIZED);
        let policy = page.headers().get("content-security-policy").unwrap();
        assert!(policy.to_str().unwrap().contains("default-src 'none'"));
    }
}

//! The HTTP face of a store: the REST API documented at the crate root, called in process by
//! the mesh after the policy allowed the call.

mod parse;

use bytes::Bytes;
use http::header::{ALLOW, CONTENT_LENGTH, CONTENT_TYPE, ETAG, HeaderValue, RETRY_AFTER};
use http::{Method, Request, Response, StatusCode};
use http_body::Body;
use http_body_util::{BodyExt, Full, LengthLimitError, Limited};

use crate::error::{ErrorCode, QuotaKind, StoreError};
use crate::store::{DEFAULT_LIST_LIMIT, Store};
use parse::{GetPrecondition, Target};

/// The `allow` header of a key path.
const KEY_METHODS: &str = "GET, PUT, DELETE";
/// The `allow` header of a list path.
const LIST_METHODS: &str = "GET";

/// Serves one key-value API request on `store`.
///
/// Never fails: every problem is an HTTP error with a JSON body and a stable code (see the
/// crate documentation). The body is read only for `PUT`, and never past the store's
/// [`max_value_bytes`](crate::StoreOptions::max_value_bytes).
pub async fn handle<B>(store: &Store, request: Request<B>) -> Response<Full<Bytes>>
where
    B: Body<Data = Bytes>,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    serve(store, request)
        .await
        .unwrap_or_else(ApiError::into_response)
}

async fn serve<B>(store: &Store, request: Request<B>) -> Result<Response<Full<Bytes>>, ApiError>
where
    B: Body<Data = Bytes>,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let (parts, body) = request.into_parts();
    let query = parts.uri.query();
    match Target::of_path(parts.uri.path())? {
        Target::List(prefix) => {
            if parts.method != Method::GET {
                return Err(ApiError::method_not_allowed(&parts.method, LIST_METHODS));
            }
            let params = parse::query(query, &["limit", "after"])?;
            let limit = match params.get("limit") {
                Some(limit) => parse::list_limit(limit)?,
                None => DEFAULT_LIST_LIMIT,
            };
            let page = store
                .list(prefix, limit, params.get("after").map(String::as_str))
                .await?;
            Ok(json(
                StatusCode::OK,
                &serde_json::json!({ "keys": page.keys, "next": page.next }),
            ))
        }
        Target::Key(key) => match parts.method {
            Method::GET => {
                parse::query(query, &[])?;
                let precondition = GetPrecondition::from_headers(&parts.headers)?;
                let entry = store.get(key).await?;
                if precondition.matches(entry.version) {
                    let mut response = Response::new(Full::new(Bytes::new()));
                    *response.status_mut() = StatusCode::NOT_MODIFIED;
                    set_etag(&mut response, entry.version);
                    return Ok(response);
                }
                let mut response = Response::new(Full::new(entry.value));
                response.headers_mut().insert(
                    CONTENT_TYPE,
                    HeaderValue::from_static("application/octet-stream"),
                );
                set_etag(&mut response, entry.version);
                Ok(response)
            }
            Method::PUT => {
                let params = parse::query(query, &["ttl_s"])?;
                let ttl = params.get("ttl_s").map(|ttl| parse::ttl(ttl)).transpose()?;
                let condition = parse::put_condition(&parts.headers)?;
                let limit = store.options().max_value_bytes;
                let value = read_body(&parts.headers, body, limit).await?;
                let version = store.put(key, value, ttl, condition).await?;
                let mut response = json(
                    StatusCode::OK,
                    &serde_json::json!({ "key": key, "version": version }),
                );
                set_etag(&mut response, version);
                Ok(response)
            }
            Method::DELETE => {
                parse::query(query, &[])?;
                let condition = parse::delete_condition(&parts.headers)?;
                let deleted = store.delete(key, condition).await?;
                Ok(json(
                    StatusCode::OK,
                    &serde_json::json!({ "deleted": deleted }),
                ))
            }
            ref other => Err(ApiError::method_not_allowed(other, KEY_METHODS)),
        },
    }
}

/// Reads a value, refusing it as soon as it is known to be over `limit` bytes.
async fn read_body<B>(headers: &http::HeaderMap, body: B, limit: usize) -> Result<Bytes, ApiError>
where
    B: Body<Data = Bytes>,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let too_large = || ApiError::from(StoreError::TooLarge { limit });
    let declared = headers
        .get(CONTENT_LENGTH)
        .and_then(|length| length.to_str().ok())
        .and_then(|length| length.parse::<u64>().ok());
    if declared.is_some_and(|length| length > u64::try_from(limit).unwrap_or(u64::MAX)) {
        return Err(too_large());
    }
    match Limited::new(body, limit).collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(error) if error.is::<LengthLimitError>() => Err(too_large()),
        Err(error) => Err(ApiError::bad_request(format!(
            "cannot read the request body: {error}"
        ))),
    }
}

fn json(status: StatusCode, value: &serde_json::Value) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(value.to_string())));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}

fn set_etag<B>(response: &mut Response<B>, version: u64) {
    if let Ok(etag) = HeaderValue::try_from(format!("\"{version}\"")) {
        response.headers_mut().insert(ETAG, etag);
    }
}

/// An error response: a stable code and a message saying what was wrong.
#[derive(Debug)]
pub(crate) struct ApiError {
    code: ErrorCode,
    message: String,
    allow: Option<&'static str>,
    /// The quota a `quota_exceeded` names, and its limit.
    quota: Option<(QuotaKind, u64)>,
}

impl ApiError {
    pub(crate) fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
            allow: None,
            quota: None,
        }
    }

    pub(crate) fn bad_request(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::BadRequest, message)
    }

    fn method_not_allowed(method: &Method, allow: &'static str) -> Self {
        Self {
            allow: Some(allow),
            ..Self::new(
                ErrorCode::MethodNotAllowed,
                format!("method `{method}` is not allowed here (allowed: {allow})"),
            )
        }
    }

    fn into_response(self) -> Response<Full<Bytes>> {
        let mut error = serde_json::json!({ "code": self.code.as_str(), "message": self.message });
        if let (Some((quota, limit)), Some(fields)) = (self.quota, error.as_object_mut()) {
            fields.insert("quota".to_owned(), quota.as_str().into());
            fields.insert("limit".to_owned(), limit.into());
        }
        let body = serde_json::json!({ "error": error });
        let mut response = json(self.code.status(), &body);
        let headers = response.headers_mut();
        if let Some(allow) = self.allow {
            headers.insert(ALLOW, HeaderValue::from_static(allow));
        }
        if self.code == ErrorCode::BackendUnavailable {
            headers.insert(RETRY_AFTER, HeaderValue::from_static("1"));
        }
        response
    }
}

impl From<StoreError> for ApiError {
    fn from(error: StoreError) -> Self {
        let quota = match &error {
            StoreError::QuotaExceeded { quota, limit, .. } => Some((*quota, *limit)),
            _ => None,
        };
        Self {
            quota,
            ..Self::new(error.code(), error.to_string())
        }
    }
}

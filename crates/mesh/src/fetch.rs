//! Fetches septa makes on its own behalf — an issuer's JWKS — as egress whose source is the
//! gateway.
//!
//! The path is a guest's egress path minus the rule lookup, because the URL is the issuer's own
//! declaration and opens nothing else: resolve the host, check every address against the same
//! operator ceiling with [`dial::first_permitted`], dial exactly the address that passed with
//! [`dial::send_pinned_tls`], verify the certificate against the issuer's trusted roots. A
//! document is wanted, not a conversation, so it is stricter than a guest's egress: only `200`
//! is accepted (a redirect is not followed, so the declaration cannot be stretched to another
//! host), the body is capped at [`MAX_DOCUMENT_BYTES`] and the whole fetch at [`FETCH_TIMEOUT`].

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::Request;
use http::header::{ACCEPT, CONTENT_LENGTH, USER_AGENT};
use http_body_util::{BodyExt, Empty};
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;
use rustls::{ClientConfig, RootCertStore};
use septa_flows::FlowGuard;
use septa_manifest::HttpsUrl;
use septa_policy::Policy;

use crate::dial::{self, DialError, DialTimeouts};

/// The largest document a fetch accepts by default.
pub const MAX_DOCUMENT_BYTES: usize = 1024 * 1024;

/// The time a whole fetch may take by default: DNS, connect, TLS, response and body.
pub const FETCH_TIMEOUT: Duration = Duration::from_secs(10);

/// The bounds of one fetch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FetchLimits {
    /// The largest body accepted.
    pub max_document_bytes: usize,
    /// The time the whole fetch may take.
    pub timeout: Duration,
}

impl Default for FetchLimits {
    /// [`MAX_DOCUMENT_BYTES`] and [`FETCH_TIMEOUT`].
    fn default() -> Self {
        Self {
            max_document_bytes: MAX_DOCUMENT_BYTES,
            timeout: FETCH_TIMEOUT,
        }
    }
}

/// The system's certificate authorities, as a PEM bundle (Debian, Ubuntu, Alpine, Arch).
pub const SYSTEM_ROOTS_FILE: &str = "/etc/ssl/certs/ca-certificates.crt";

/// Why a fetch failed.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    /// Resolving, the ceiling, connecting, TLS or the HTTP exchange failed.
    #[error(transparent)]
    Dial(#[from] DialError),
    /// The server answered something other than `200`.
    #[error("the server answered {status}; only 200 is accepted")]
    Status {
        /// The status it answered.
        status: u16,
    },
    /// The body is larger than the limit.
    #[error("the document is larger than {limit} bytes")]
    TooLarge {
        /// The limit.
        limit: usize,
    },
    /// The body could not be read to its end.
    #[error("reading the document failed: {source}")]
    Body {
        /// hyper's error.
        source: hyper::Error,
    },
    /// The fetch took longer than the limit.
    #[error("the fetch took longer than {timeout:?}")]
    Timeout {
        /// The budget.
        timeout: Duration,
    },
}

/// The trusted roots file could not be used.
#[derive(Debug, thiserror::Error)]
#[error("cannot use `{path}` as trusted certificate authorities: {message}")]
pub struct RootsError {
    /// The PEM file.
    pub path: String,
    /// What is wrong with it.
    pub message: String,
}

/// The certificate authorities one issuer's fetches trust, as a ready TLS client configuration.
#[derive(Clone, Debug)]
pub struct TrustRoots {
    config: Arc<ClientConfig>,
}

impl TrustRoots {
    /// The certificates of the PEM bundle `ca_file`, or of [`SYSTEM_ROOTS_FILE`] without one.
    ///
    /// In an operator's `ca_file`, every certificate must parse; the system bundle may hold a
    /// few that do not, which are skipped.
    ///
    /// # Errors
    ///
    /// When the file cannot be read, is not PEM, or holds no usable certificate.
    pub fn load(ca_file: Option<&Path>) -> Result<Self, RootsError> {
        let path = ca_file.unwrap_or(Path::new(SYSTEM_ROOTS_FILE));
        let fail = |message: String| RootsError {
            path: path.display().to_string(),
            message,
        };
        let pem = std::fs::read(path).map_err(|e| fail(e.to_string()))?;
        let certificates = CertificateDer::pem_slice_iter(&pem)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| fail(format!("not a PEM bundle: {e}")))?;
        let mut roots = RootCertStore::empty();
        let (added, refused) = roots.add_parsable_certificates(certificates);
        if ca_file.is_some() && refused > 0 {
            return Err(fail(format!(
                "{refused} of its certificates are not usable as authorities"
            )));
        }
        if added == 0 {
            return Err(fail("it holds no certificate".to_owned()));
        }
        let config = dial::tls_client_config(roots).map_err(|e| fail(e.to_string()))?;
        Ok(Self { config })
    }
}

/// Fetches `url`, dialling only an address `policy` admits (the operator ceiling), trusting
/// `roots`, within `limits`, and returns the document.
///
/// `flow` is the fetch's egress record: this sets its target (`host:port`) and, once a response
/// arrives, its status; the caller sets the verdict.
///
/// # Errors
///
/// [`FetchError::Dial`] with [`DialError::Blocked`] when every address of the host is in the
/// ceiling, and with the other variants for DNS, connection and TLS failures;
/// [`FetchError::Status`] for anything but `200`; [`FetchError::TooLarge`] and
/// [`FetchError::Timeout`] past `limits`.
pub async fn fetch_document(
    url: &HttpsUrl,
    policy: &Policy,
    roots: &TrustRoots,
    limits: FetchLimits,
    flow: &mut FlowGuard,
) -> Result<Vec<u8>, FetchError> {
    flow.set_target(format!("{}:{}", url.host(), url.port()));
    tokio::time::timeout(
        limits.timeout,
        fetch_within(url, policy, roots, limits, flow),
    )
    .await
    .unwrap_or(Err(FetchError::Timeout {
        timeout: limits.timeout,
    }))
}

async fn fetch_within(
    url: &HttpsUrl,
    policy: &Policy,
    roots: &TrustRoots,
    limits: FetchLimits,
    flow: &mut FlowGuard,
) -> Result<Vec<u8>, FetchError> {
    let addrs = dial::resolve(url.host(), url.port()).await?;
    let addr = match dial::first_permitted(addrs, policy) {
        Ok(addr) => addr,
        Err(DialError::Blocked(refused)) => {
            // The policy refused the address: the fetch is denied, not merely failed.
            flow.set_decision(&refused);
            return Err(DialError::Blocked(refused).into());
        }
        Err(e) => return Err(e.into()),
    };
    let request = Request::get(url.to_string())
        .header(ACCEPT, "application/jwk-set+json, application/json")
        .header(USER_AGENT, concat!("septa/", env!("CARGO_PKG_VERSION")))
        .body(Empty::<Bytes>::new())
        .map_err(|e| DialError::InvalidRequest {
            reason: e.to_string(),
        })?;
    // The overall timeout bounds every step; these only have to be no shorter.
    let timeouts = DialTimeouts {
        connect: limits.timeout,
        first_byte: limits.timeout,
    };
    let (response, connection) =
        dial::send_pinned_tls(addr, url.host(), request, timeouts, roots.config.clone()).await?;
    tokio::spawn(connection);
    let status = response.status().as_u16();
    flow.set_status(status);
    if status != 200 {
        return Err(FetchError::Status { status });
    }
    let limit = limits.max_document_bytes;
    let declared = response
        .headers()
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return Err(FetchError::TooLarge { limit });
    }
    let mut body = response.into_body();
    let mut document = Vec::new();
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|source| FetchError::Body { source })?;
        if let Ok(data) = frame.into_data() {
            if document.len() + data.len() > limit {
                return Err(FetchError::TooLarge { limit });
            }
            document.extend_from_slice(&data);
        }
    }
    Ok(document)
}

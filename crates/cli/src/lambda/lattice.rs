//! Mesh calls out of `septa lambda`: a call the policy allowed goes over HTTPS to the callee's
//! VPC Lattice service, at the endpoint the template names in `SEPTA_LATTICE_CALLEE`, signed
//! with SigV4 (service `vpc-lattice-svcs`) by the credentials of the function's role session.
//! Lattice checks the signature against the service's auth policy and invokes the callee, whose
//! septa decides the call again from the role Lattice verified.
//!
//! The operator ceiling is not consulted: the address is the one the template named, not one a
//! guest chose, and Lattice answers from the VPC's own link-local and prefix ranges, as a call
//! from node to node is no egress either.

use std::sync::Arc;
use std::time::SystemTime;

use http::{HeaderName, HeaderValue, Response, Uri};
use http_body_util::BodyExt;
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;
use rustls::{ClientConfig, RootCertStore};
use septa_mesh::dial::{self, DialTimeouts};
use septa_mesh::remote::set_chain_headers;
use septa_mesh::{ExternalFunctions, ExternalFuture};
use septa_policy::{FunctionId, Policy};
use septa_runtime::{Chain, HttpError, WasiBody};

use super::sigv4::{self, Credentials, Scope, UNSIGNED_PAYLOAD};

/// The signing name of VPC Lattice services.
const SERVICE: &str = "vpc-lattice-svcs";

/// A PEM bundle of certificate authorities trusted besides the webpki roots, for tests that
/// stand a local server in for Lattice. Lattice's own certificates chain to public roots.
pub(super) const EXTRA_CA_VARIABLE: &str = "SEPTA_LAMBDA_EXTRA_CA";

/// Sends allowed calls to other functions to their Lattice services.
pub(super) struct Lattice {
    policy: Arc<Policy>,
    tls: Arc<ClientConfig>,
    timeouts: DialTimeouts,
}

impl Lattice {
    /// Trusts the webpki roots, and the bundle [`EXTRA_CA_VARIABLE`] names when it is set.
    pub(super) fn new(policy: Arc<Policy>, timeouts: DialTimeouts) -> anyhow::Result<Self> {
        let mut roots = RootCertStore {
            roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
        };
        if let Some(path) = std::env::var_os(EXTRA_CA_VARIABLE).filter(|p| !p.is_empty()) {
            let shown = std::path::Path::new(&path).display().to_string();
            let certificates = CertificateDer::pem_file_iter(&path)
                .and_then(Iterator::collect::<Result<Vec<_>, _>>)
                .map_err(|e| anyhow::anyhow!("`{EXTRA_CA_VARIABLE}` file `{shown}`: {e}"))?;
            let (added, _) = roots.add_parsable_certificates(certificates);
            if added == 0 {
                anyhow::bail!("`{EXTRA_CA_VARIABLE}` file `{shown}` holds no usable certificate");
            }
        }
        let tls = dial::tls_client_config(roots)?;
        Ok(Self {
            policy,
            tls,
            timeouts,
        })
    }

    /// Signs and sends `request` to `callee`'s service; `Err` says what kept it from being sent.
    async fn send(
        &self,
        callee: FunctionId,
        chain: Chain,
        request: http::Request<WasiBody>,
    ) -> Result<Response<WasiBody>, String> {
        let name = self.policy.function(callee).spec.name.as_str();
        let variable = septa_export::aws::lattice_endpoint_variable(name);
        let authority = std::env::var(&variable)
            .ok()
            .filter(|v| !v.is_empty())
            .ok_or_else(|| {
                format!(
                    "no VPC Lattice endpoint for `{name}`: `{variable}` is not set (the template of `septa export aws` sets it)"
                )
            })?;
        let (credentials, region) = role_session()?;
        let (host, port) = split_authority(&authority)
            .ok_or_else(|| format!("`{variable}` is `{authority}`, not a host name"))?;
        let (mut parts, body) = request.into_parts();
        let path_and_query = parts
            .uri
            .path_and_query()
            .map_or("/", |pq| pq.as_str())
            .to_owned();
        parts.uri = Uri::builder()
            .scheme("https")
            .authority(authority.as_str())
            .path_and_query(path_and_query.as_str())
            .build()
            .map_err(|e| format!("`{variable}` is `{authority}`: {e}"))?;
        sign(&mut parts, &authority, &credentials, &region)?;
        // Lattice hands the callee's septa these as the event's headers: a chain that calls
        // back into itself ends at `MAX_DEPTH` and by the first caller's deadline, across
        // functions as within a node.
        set_chain_headers(&mut parts.headers, chain);
        let addrs = dial::resolve(host, port).await.map_err(|e| e.to_string())?;
        let addr = addrs
            .first()
            .copied()
            .ok_or_else(|| format!("`{host}` has no address"))?;
        let request = http::Request::from_parts(parts, body);
        let (response, connection) =
            dial::send_pinned_tls(addr, host, request, self.timeouts, self.tls.clone())
                .await
                .map_err(|e| e.to_string())?;
        tokio::spawn(connection);
        let (parts, body) = response.into_parts();
        let body = body.map_err(HttpError::from).boxed_unsync();
        Ok(Response::from_parts(parts, body))
    }
}

impl ExternalFunctions for Lattice {
    fn call(
        &self,
        callee: FunctionId,
        chain: Chain,
        request: http::Request<WasiBody>,
    ) -> ExternalFuture {
        let lattice = Self {
            policy: self.policy.clone(),
            tls: self.tls.clone(),
            timeouts: self.timeouts,
        };
        Box::pin(async move { lattice.send(callee, chain, request).await })
    }
}

/// The role session's credentials and region, as Lambda sets them; `Err` names what is missing.
fn role_session() -> Result<(Credentials, String), String> {
    let read = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
    let required = ["AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_REGION"];
    let missing: Vec<String> = required
        .iter()
        .filter(|name| read(name).is_none())
        .map(|name| format!("`{name}`"))
        .collect();
    if !missing.is_empty() {
        return Err(format!(
            "cannot sign the call for VPC Lattice: {} not set (Lambda sets them from the function's role)",
            missing.join(", ")
        ));
    }
    let credentials = Credentials {
        access_key_id: read("AWS_ACCESS_KEY_ID").unwrap_or_default(),
        secret_access_key: read("AWS_SECRET_ACCESS_KEY").unwrap_or_default(),
        session_token: read("AWS_SESSION_TOKEN"),
    };
    Ok((credentials, read("AWS_REGION").unwrap_or_default()))
}

/// `host[:port]`, the port 443 unless given.
fn split_authority(authority: &str) -> Option<(&str, u16)> {
    let (host, port) = match authority.rsplit_once(':') {
        Some((host, port)) => (host, port.parse().ok()?),
        None => (authority, 443),
    };
    (!host.is_empty() && !host.contains(['/', '@', '[', ']'])).then_some((host, port))
}

/// Sets `host`, `x-amz-date`, `x-amz-content-sha256`, `x-amz-security-token` (with a session)
/// and the `Authorization` signing them. The body is not signed: Lattice accepts
/// `UNSIGNED-PAYLOAD`, and the body streams.
fn sign(
    parts: &mut http::request::Parts,
    authority: &str,
    credentials: &Credentials,
    region: &str,
) -> Result<(), String> {
    let date = sigv4::amz_date(SystemTime::now());
    let mut signed: Vec<(&str, &str)> = vec![
        ("host", authority),
        ("x-amz-date", &date),
        ("x-amz-content-sha256", UNSIGNED_PAYLOAD),
    ];
    if let Some(token) = &credentials.session_token {
        signed.push(("x-amz-security-token", token));
    }
    let (path, query) = match parts.uri.path_and_query() {
        Some(pq) => (pq.path(), pq.query()),
        None => ("/", None),
    };
    let authorization = sigv4::authorization(
        credentials,
        &Scope {
            region,
            service: SERVICE,
        },
        &sigv4::Request {
            method: parts.method.as_str(),
            path,
            query,
            headers: &signed,
            payload_hash: UNSIGNED_PAYLOAD,
        },
        &date,
    );
    let headers = &mut parts.headers;
    // A guest's own signing headers would be signed over or contradict these.
    for name in [
        "authorization",
        "x-amz-date",
        "x-amz-content-sha256",
        "x-amz-security-token",
    ] {
        headers.remove(name);
    }
    for (name, value) in signed
        .iter()
        .chain([&("authorization", authorization.as_str())])
    {
        let value = HeaderValue::from_str(value)
            .map_err(|_| format!("cannot send `{name}`: not a header value"))?;
        let name = HeaderName::from_bytes(name.as_bytes())
            .map_err(|_| format!("cannot send `{name}`: not a header name"))?;
        headers.insert(name, value);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::split_authority;

    #[test]
    fn an_endpoint_is_a_host_with_an_optional_port() {
        let lattice = "svc-0123.7d67968.vpc-lattice-svcs.eu-west-3.on.aws";
        assert_eq!(split_authority(lattice), Some((lattice, 443)));
        assert_eq!(split_authority("127.0.0.1:8443"), Some(("127.0.0.1", 8443)));
        assert_eq!(split_authority("host:port"), None);
        assert_eq!(split_authority("https://host"), None);
        assert_eq!(split_authority(":443"), None);
    }
}

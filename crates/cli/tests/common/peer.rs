//! A hand-made peer: HTTP/2 over TLS to a node's mesh port with whatever client certificate a test
//! gives it, or none, and whatever headers it likes. It accepts any server certificate: what is
//! under test is what the node it calls accepts.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::ClientConfig;
use rustls::client::danger::ServerCertVerified;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use septa_identity::verifier::{ServerCertificateCheck, SignatureChecked};
use tokio_rustls::TlsConnector;

/// What a node answered.
#[derive(Debug)]
pub struct PeerResponse {
    pub status: u16,
    /// The `septa-deny-reason` header, when refused.
    pub deny_reason: Option<String>,
    pub body: String,
}

/// A client presenting one certificate (or none) to nodes' mesh listeners.
pub struct Peer {
    config: Arc<ClientConfig>,
}

impl Peer {
    /// Presents `dir/node.crt` with `dir/node.key`, as a node would.
    pub fn with_certificate(dir: &Path) -> Self {
        let chain = CertificateDer::pem_file_iter(dir.join("node.crt"))
            .unwrap()
            .collect::<Result<Vec<_>, _>>()
            .unwrap();
        let key = PrivateKeyDer::from_pem_file(dir.join("node.key")).unwrap();
        let config = builder().with_client_auth_cert(chain, key).unwrap();
        Self::of(config)
    }

    /// Presents no certificate at all.
    pub fn without_certificate() -> Self {
        Self::of(builder().with_no_client_auth())
    }

    fn of(mut config: ClientConfig) -> Self {
        config.alpn_protocols = vec![b"h2".to_vec()];
        Self {
            config: Arc::new(config),
        }
    }

    /// Sends `method uri` (`https://NAME.internal/path`) with `headers` and `body` to the mesh
    /// listener at `mesh`, as node `server` (the TLS server name). `Err` when the node refuses
    /// the connection or ends it without answering.
    pub fn call(
        &self,
        mesh: SocketAddr,
        server: &str,
        method: &str,
        uri: &str,
        headers: &[(&str, &str)],
        body: &str,
    ) -> Result<PeerResponse, String> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let call = async {
            let tcp = tokio::net::TcpStream::connect(mesh)
                .await
                .map_err(|e| format!("connect: {e}"))?;
            let name = ServerName::try_from(server.to_owned()).unwrap();
            let tls = TlsConnector::from(self.config.clone())
                .connect(name, tcp)
                .await
                .map_err(|e| format!("tls: {e}"))?;
            let (mut sender, connection) =
                hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tls))
                    .await
                    .map_err(|e| format!("h2 handshake: {e}"))?;
            tokio::spawn(connection);
            let mut request = http::Request::builder().method(method).uri(uri);
            for (k, v) in headers {
                request = request.header(*k, *v);
            }
            let request = request
                .body(Full::new(Bytes::from(body.to_owned())))
                .unwrap();
            let response = sender
                .send_request(request)
                .await
                .map_err(|e| format!("request: {e}"))?;
            let status = response.status().as_u16();
            let deny_reason = response
                .headers()
                .get("septa-deny-reason")
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned);
            let body = response
                .into_body()
                .collect()
                .await
                .map_err(|e| format!("body: {e}"))?
                .to_bytes();
            Ok(PeerResponse {
                status,
                deny_reason,
                body: String::from_utf8_lossy(&body).into_owned(),
            })
        };
        runtime.block_on(async {
            tokio::time::timeout(std::time::Duration::from_secs(10), call)
                .await
                .map_err(|_| "no answer within 10s".to_owned())?
        })
    }
}

fn builder() -> rustls::ConfigBuilder<ClientConfig, rustls::client::WantsClientCert> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let verifier = Arc::new(SignatureChecked::new(AnyServer, &provider));
    ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .unwrap()
        .dangerous()
        .with_custom_certificate_verifier(verifier)
}

/// Accepts every server certificate (its signatures are still checked).
#[derive(Debug)]
struct AnyServer;

impl ServerCertificateCheck for AnyServer {
    fn check(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }
}

//! The mutual TLS a node speaks to other nodes: TLS 1.3 only, ALPN `h2`, both sides presenting a
//! certificate from the platform CA.
//!
//! The server requires a client certificate that chains to `ca.crt`; which node it is (and whether
//! it belongs to this trust domain) is read from it after the handshake with [`crate::node_id_of`],
//! by the caller that decides what that node may do. The client accepts a server only when its
//! certificate chains to `ca.crt`, is valid now, and carries exactly the SPIFFE id of the node it
//! meant to call — the server name a connection is opened with is that node's name.
//!
//! [`NodeTls::current`] re-reads the directory when a file changes (checked at most once a
//! second), so certificates are rotated by replacing files; connections already open keep going.
//! A directory that fails to load after a change leaves the previous configuration in force.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use rustls::client::danger::ServerCertVerified;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::server::{ParsedCertificate, WebPkiClientVerifier};
use rustls::{ClientConfig, RootCertStore, ServerConfig};

use crate::file::{CA_CERT, NODE_CERT, NODE_KEY};
use crate::spiffe::{NodeId, node_id_of};
use crate::verifier::{ServerCertificateCheck, SignatureChecked};

/// The ALPN protocol nodes speak.
pub const ALPN: &[u8] = b"h2";

/// How often [`NodeTls::current`] looks at the files.
const RECHECK: Duration = Duration::from_secs(1);

/// Why a node's TLS directory cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A file could not be read.
    #[error("cannot read `{path}`: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A file is not what it should be.
    #[error("`{path}`: {why}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        why: String,
    },
    /// The configuration could not be built.
    #[error("cannot configure TLS: {0}")]
    Config(#[from] rustls::Error),
}

/// One load of a node's TLS directory.
#[derive(Debug)]
pub struct Loaded {
    /// Who this node is, from its own certificate.
    pub id: NodeId,
    /// SHA-256 of the node certificate's DER, lowercase hex: what the registry publishes.
    pub fingerprint: String,
    /// When the node certificate expires.
    pub not_after: SystemTime,
    /// For the mesh listener: requires a client certificate from the CA.
    pub server: Arc<ServerConfig>,
    /// For calls to other nodes: open with the callee's node name as the server name.
    pub client: Arc<ClientConfig>,
}

/// A node's TLS directory (`node.crt`, `node.key`, `ca.crt`), reloaded when it changes.
#[derive(Debug)]
pub struct NodeTls {
    dir: PathBuf,
    state: Mutex<State>,
}

#[derive(Debug)]
struct State {
    loaded: Arc<Loaded>,
    stamp: Stamp,
    checked: Instant,
}

/// Length and modification time of each file: what "changed" means.
type Stamp = Vec<Option<(u64, SystemTime)>>;

impl NodeTls {
    /// Loads `dir`; fails with what is wrong with which file.
    pub fn load(dir: &Path) -> Result<Self, TlsError> {
        let stamp = stamp(dir);
        let loaded = Arc::new(load(dir)?);
        Ok(Self {
            dir: dir.to_owned(),
            state: Mutex::new(State {
                loaded,
                stamp,
                checked: Instant::now(),
            }),
        })
    }

    /// The configuration in force: reloaded first if a file changed since the last look.
    pub fn current(&self) -> Arc<Loaded> {
        let mut state = match self.state.lock() {
            Ok(state) => state,
            Err(poisoned) => poisoned.into_inner(),
        };
        if state.checked.elapsed() >= RECHECK {
            state.checked = Instant::now();
            let stamp = stamp(&self.dir);
            if stamp != state.stamp {
                match load(&self.dir) {
                    Ok(loaded) => {
                        tracing::info!(dir = %self.dir.display(), id = %loaded.id, "node certificates reloaded");
                        state.loaded = Arc::new(loaded);
                        state.stamp = stamp;
                    }
                    Err(error) => {
                        // Keep serving with what worked; say so once per change.
                        tracing::warn!(%error, "node certificates changed but cannot be loaded; keeping the previous ones");
                        state.stamp = stamp;
                    }
                }
            }
        }
        state.loaded.clone()
    }
}

fn stamp(dir: &Path) -> Stamp {
    [NODE_CERT, NODE_KEY, CA_CERT]
        .iter()
        .map(|f| {
            let meta = std::fs::metadata(dir.join(f)).ok()?;
            Some((meta.len(), meta.modified().ok()?))
        })
        .collect()
}

fn load(dir: &Path) -> Result<Loaded, TlsError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let chain = certificates(&dir.join(NODE_CERT))?;
    let key = private_key(&dir.join(NODE_KEY))?;
    let roots = Arc::new(roots(&dir.join(CA_CERT))?);
    let node_cert = dir.join(NODE_CERT);
    let leaf = chain
        .first()
        .ok_or_else(|| invalid(&node_cert, "no certificate"))?;
    let id = node_id_of(leaf).map_err(|e| invalid(&node_cert, e))?;
    let not_after = not_after(leaf).map_err(|e| invalid(&node_cert, e))?;
    let fingerprint = hex(ring::digest::digest(&ring::digest::SHA256, leaf).as_ref());

    let client_verifier =
        WebPkiClientVerifier::builder_with_provider(roots.clone(), provider.clone())
            .build()
            .map_err(|e| invalid(&dir.join(CA_CERT), e))?;
    let mut server = ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_client_cert_verifier(client_verifier)
        .with_single_cert(chain.clone(), key.clone_key())?;
    server.alpn_protocols = vec![ALPN.to_vec()];

    let server_verifier = Arc::new(SignatureChecked::new(
        PeerNodeVerifier {
            roots,
            trust_domain: id.trust_domain.clone(),
            provider: provider.clone(),
        },
        &provider,
    ));
    let mut client = ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .dangerous()
        .with_custom_certificate_verifier(server_verifier)
        .with_client_auth_cert(chain, key)?;
    client.alpn_protocols = vec![ALPN.to_vec()];

    Ok(Loaded {
        id,
        fingerprint,
        not_after,
        server: Arc::new(server),
        client: Arc::new(client),
    })
}

/// Accepts a server that chains to the CA and whose one SPIFFE id is exactly
/// `spiffe://TRUST_DOMAIN/node/SERVER_NAME`. The chain check is webpki's; only the name check
/// differs from rustls's default (which matches DNS names, not SPIFFE ids).
#[derive(Debug)]
struct PeerNodeVerifier {
    roots: Arc<RootCertStore>,
    trust_domain: String,
    provider: Arc<CryptoProvider>,
}

impl ServerCertificateCheck for PeerNodeVerifier {
    fn check(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let parsed = ParsedCertificate::try_from(end_entity)?;
        rustls::client::verify_server_cert_signed_by_trust_anchor(
            &parsed,
            &self.roots,
            intermediates,
            now,
            self.provider.signature_verification_algorithms.all,
        )?;
        let expected = match server_name {
            ServerName::DnsName(name) => NodeId {
                trust_domain: self.trust_domain.clone(),
                node: name.as_ref().to_owned(),
            },
            _ => {
                return Err(rustls::Error::General(
                    "a node is called by its name".to_owned(),
                ));
            }
        };
        let found = node_id_of(end_entity).map_err(|e| rustls::Error::General(e.to_string()))?;
        if found != expected {
            return Err(rustls::Error::General(format!(
                "the peer is `{found}`, not `{expected}`"
            )));
        }
        Ok(ServerCertVerified::assertion())
    }
}

fn certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let bytes = read(path)?;
    let certs = CertificateDer::pem_slice_iter(&bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| invalid(path, format!("not a PEM certificate: {e}")))?;
    if certs.is_empty() {
        return Err(invalid(path, "holds no certificate"));
    }
    Ok(certs)
}

fn private_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    let bytes = read(path)?;
    PrivateKeyDer::from_pem_slice(&bytes)
        .map_err(|e| invalid(path, format!("not a PEM private key: {e}")))
}

fn roots(path: &Path) -> Result<RootCertStore, TlsError> {
    let mut roots = RootCertStore::empty();
    for cert in certificates(path)? {
        roots
            .add(cert)
            .map_err(|e| invalid(path, format!("not a usable CA certificate: {e}")))?;
    }
    Ok(roots)
}

fn not_after(der: &[u8]) -> Result<SystemTime, String> {
    use x509_parser::prelude::{FromDer, X509Certificate};
    let (_, cert) = X509Certificate::from_der(der).map_err(|e| e.to_string())?;
    let seconds = cert.validity().not_after.timestamp();
    let seconds = u64::try_from(seconds).map_err(|_| "expires before 1970".to_owned())?;
    Ok(SystemTime::UNIX_EPOCH + Duration::from_secs(seconds))
}

fn read(path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Read {
        path: path.to_owned(),
        source,
    })
}

fn invalid(path: &Path, why: impl ToString) -> TlsError {
    TlsError::Invalid {
        path: path.to_owned(),
        why: why.to_string(),
    }
}

fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    bytes.iter().fold(String::new(), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

//! The platform CA: `septa ca init` writes its root, `septa ca issue` a node's certificate.
//!
//! The root is an ECDSA P-256 key and a self-signed certificate whose URI SAN is the trust domain
//! (`spiffe://TRUST_DOMAIN`), so issuing reads the trust domain from the root and a node
//! certificate can only ever name a node of that domain. Keys are written with mode 0600 and every
//! file through a temporary file and a rename, so an interrupted run leaves nothing half-written.

use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, PKCS_ECDSA_P256_SHA256, SanType,
};
use septa_manifest::{Name, TrustDomain};
use time::{Duration, OffsetDateTime};
use x509_parser::extensions::GeneralName;
use x509_parser::prelude::{FromDer, X509Certificate};

use crate::file::{CA_CERT, CA_KEY, NODE_CERT, NODE_KEY};
use crate::files::write_atomically;

/// How long a root certificate is valid.
const ROOT_DAYS: i64 = 3650;
/// The longest node certificate `septa ca issue` writes.
pub const MAX_NODE_DAYS: u32 = 825;
/// How far back a new certificate's validity starts, for clocks a little behind.
const CLOCK_SKEW: Duration = Duration::minutes(5);

/// Why a CA operation failed.
#[derive(Debug, thiserror::Error)]
pub enum CaError {
    /// `septa ca init` on a directory that already holds a CA.
    #[error("`{0}` already exists; a CA is created once (choose another directory to start over)")]
    Exists(PathBuf),
    /// A file could not be read.
    #[error("cannot read `{path}`: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A file or directory could not be written.
    #[error("cannot write `{path}`: {source}")]
    Write {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The CA directory's certificate or key is not what `septa ca init` writes.
    #[error("`{path}` is not a septa CA: {why}")]
    NotACa {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        why: String,
    },
    /// A trust domain or node name that a SPIFFE id cannot carry.
    #[error("{0}")]
    InvalidName(String),
    /// `--days` out of range.
    #[error("`--days` must be between 1 and {MAX_NODE_DAYS}, not {0}")]
    Days(u32),
    /// The certificate could not be built or signed.
    #[error("cannot sign the certificate: {0}")]
    Sign(#[from] rcgen::Error),
}

/// What `septa ca issue` wrote.
#[derive(Debug)]
pub struct Issued {
    /// The node's SPIFFE id.
    pub spiffe_id: String,
    /// When the certificate stops being valid.
    pub not_after: OffsetDateTime,
}

/// Creates a CA in `dir` for `trust_domain`: `ca.key` (mode 0600) and `ca.crt`. Refuses a
/// directory that already holds either.
pub fn init(dir: &Path, trust_domain: &str) -> Result<(), CaError> {
    let trust_domain = TrustDomain::new(trust_domain).map_err(CaError::InvalidName)?;
    for name in [CA_KEY, CA_CERT] {
        let path = dir.join(name);
        if path.exists() {
            return Err(CaError::Exists(path));
        }
    }
    create_private_dir(dir)?;
    let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)?;
    let mut params = CertificateParams::default();
    params.distinguished_name.push(
        DnType::CommonName,
        format!("septa root CA for {trust_domain}"),
    );
    params
        .distinguished_name
        .push(DnType::OrganizationName, "septa");
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    params.subject_alt_names = vec![SanType::URI(format!("spiffe://{trust_domain}").try_into()?)];
    let now = OffsetDateTime::now_utc();
    params.not_before = now - CLOCK_SKEW;
    params.not_after = now + Duration::days(ROOT_DAYS);
    let cert = params.self_signed(&key)?;
    write(&dir.join(CA_KEY), key.serialize_pem().as_bytes(), 0o600)?;
    write(&dir.join(CA_CERT), cert.pem().as_bytes(), 0o644)
}

/// Issues node `node`'s certificate from the CA in `ca_dir`, valid for `days`, and writes
/// `node.crt`, `node.key` (mode 0600) and `ca.crt` into `out`.
pub fn issue(ca_dir: &Path, node: &str, out: &Path, days: u32) -> Result<Issued, CaError> {
    let node = Name::new(node).map_err(|e| CaError::InvalidName(format!("node {e}")))?;
    if !(1..=MAX_NODE_DAYS).contains(&days) {
        return Err(CaError::Days(days));
    }
    let now = OffsetDateTime::now_utc();
    let ca = Ca::open(ca_dir)?;
    let spiffe_id = ca.trust_domain.node_id(node.as_str());
    let not_after = now + Duration::days(i64::from(days));
    ca.issue(&spiffe_id, now - CLOCK_SKEW, not_after, out)?;
    Ok(Issued {
        spiffe_id,
        not_after,
    })
}

/// An opened CA directory, able to sign.
pub struct Ca {
    cert_pem: String,
    issuer: Issuer<'static, KeyPair>,
    /// The trust domain its root names.
    pub trust_domain: TrustDomain,
}

impl Ca {
    /// Reads `ca.crt` and `ca.key` from `dir`.
    pub fn open(dir: &Path) -> Result<Self, CaError> {
        let cert_path = dir.join(CA_CERT);
        let key_path = dir.join(CA_KEY);
        let cert_pem = read(&cert_path)?;
        let key_pem = read(&key_path)?;
        let not_a_ca = |path: &Path, why: String| CaError::NotACa {
            path: path.to_owned(),
            why,
        };
        let key = KeyPair::from_pem(&key_pem).map_err(|e| not_a_ca(&key_path, e.to_string()))?;
        let trust_domain = root_trust_domain(&cert_pem).map_err(|why| not_a_ca(&cert_path, why))?;
        let issuer = Issuer::from_ca_cert_pem(&cert_pem, key)
            .map_err(|e| not_a_ca(&cert_path, e.to_string()))?;
        Ok(Self {
            cert_pem,
            issuer,
            trust_domain,
        })
    }

    /// Signs a certificate for `spiffe_id` valid from `not_before` to `not_after`, for both
    /// server and client use, and writes it with its new key and the root into `out`. Any id
    /// and validity: `septa ca issue` passes a node id of the CA's domain and a validity from
    /// now; tests pass others to show they are refused.
    pub fn issue(
        &self,
        spiffe_id: &str,
        not_before: OffsetDateTime,
        not_after: OffsetDateTime,
        out: &Path,
    ) -> Result<(), CaError> {
        let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)?;
        let mut params = CertificateParams::default();
        let common_name = spiffe_id.rsplit('/').next().unwrap_or(spiffe_id);
        params
            .distinguished_name
            .push(DnType::CommonName, common_name);
        params
            .distinguished_name
            .push(DnType::OrganizationName, "septa");
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        params.subject_alt_names = vec![SanType::URI(spiffe_id.try_into()?)];
        params.use_authority_key_identifier_extension = true;
        params.not_before = not_before;
        params.not_after = not_after;
        let cert = params.signed_by(&key, &self.issuer)?;
        create_private_dir(out)?;
        write(&out.join(NODE_KEY), key.serialize_pem().as_bytes(), 0o600)?;
        write(&out.join(NODE_CERT), cert.pem().as_bytes(), 0o644)?;
        write(&out.join(CA_CERT), self.cert_pem.as_bytes(), 0o644)
    }
}

/// The trust domain a root certificate names in its one URI SAN `spiffe://TD`.
fn root_trust_domain(pem: &str) -> Result<TrustDomain, String> {
    let (_, pem) = x509_parser::pem::parse_x509_pem(pem.as_bytes()).map_err(|e| e.to_string())?;
    let (_, cert) = X509Certificate::from_der(&pem.contents).map_err(|e| e.to_string())?;
    if !cert.is_ca() {
        return Err("the certificate is not a CA".to_owned());
    }
    let san = cert
        .subject_alternative_name()
        .map_err(|e| e.to_string())?
        .ok_or("the root names no trust domain (no URI SAN)")?;
    let uri = san
        .value
        .general_names
        .iter()
        .find_map(|n| match n {
            GeneralName::URI(uri) => Some(*uri),
            _ => None,
        })
        .ok_or("the root names no trust domain (no URI SAN)")?;
    let domain = uri
        .strip_prefix("spiffe://")
        .ok_or_else(|| format!("the root's URI SAN `{uri}` is not `spiffe://TRUST_DOMAIN`"))?;
    TrustDomain::new(domain)
}

fn create_private_dir(dir: &Path) -> Result<(), CaError> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|source| CaError::Write {
            path: dir.to_owned(),
            source,
        })
}

fn read(path: &Path) -> Result<String, CaError> {
    std::fs::read_to_string(path).map_err(|source| CaError::Read {
        path: path.to_owned(),
        source,
    })
}

fn write(path: &Path, bytes: &[u8], mode: u32) -> Result<(), CaError> {
    write_atomically(path, bytes, mode).map_err(|source| CaError::Write {
        path: path.to_owned(),
        source,
    })
}

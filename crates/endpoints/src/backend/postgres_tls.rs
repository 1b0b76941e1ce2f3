//! TLS for PostgreSQL connections, as libpq's `sslmode` and `sslrootcert` ask for it, on rustls.
//!
//! tokio-postgres knows `sslmode=disable|prefer|require` and leaves the TLS itself to a
//! connector; it refuses `verify-ca`, `verify-full` and `sslrootcert`. So those two parameters
//! are taken out of the URL here ([`TlsSettings::split`]), tokio-postgres gets `require` for any
//! mode that needs TLS, and the connector ([`RustlsConnect`]) checks the server as libpq would:
//!
//! | `sslmode` | TLS | the server's certificate |
//! |---|---|---|
//! | `disable` (septa's default) | never | — |
//! | `prefer` | if the server offers it | not checked |
//! | `require` | always | not checked, unless `sslrootcert` is given: then as `verify-ca` |
//! | `verify-ca` | always | chains to the CA |
//! | `verify-full` | always | chains to the CA and names the host connected to |
//!
//! The CA is the PEM file `sslrootcert` names, or the Mozilla roots (`webpki-roots`) when none
//! is given. Client certificates (`sslcert`, `sslkey`) are not supported and refused.

use std::future::Future;
use std::io;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{CertificateError, ClientConfig, RootCertStore};
use septa_identity::verifier::{ServerCertificateCheck, SignatureChecked};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio_postgres::config::SslMode;
use tokio_postgres::tls::{ChannelBinding, MakeTlsConnect, TlsConnect};

/// `sslmode`, as libpq spells it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TlsMode {
    Disable,
    Prefer,
    Require,
    VerifyCa,
    VerifyFull,
}

impl TlsMode {
    fn parse(value: &str) -> Result<Self, String> {
        Ok(match value {
            "disable" => Self::Disable,
            "prefer" => Self::Prefer,
            "require" => Self::Require,
            "verify-ca" => Self::VerifyCa,
            "verify-full" => Self::VerifyFull,
            "allow" => {
                return Err(
                    "`sslmode=allow` is not supported: use `prefer`, `require`, `verify-ca` or `verify-full`"
                        .to_owned(),
                );
            }
            other => {
                return Err(format!(
                    "unknown `sslmode={other}` (expected `disable`, `prefer`, `require`, `verify-ca` or `verify-full`)"
                ));
            }
        })
    }

    /// What tokio-postgres is told: whether to ask for TLS, and whether to insist.
    pub(crate) fn ssl_mode(self) -> SslMode {
        match self {
            Self::Disable => SslMode::Disable,
            Self::Prefer => SslMode::Prefer,
            Self::Require | Self::VerifyCa | Self::VerifyFull => SslMode::Require,
        }
    }
}

/// The TLS a PostgreSQL URL asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct TlsSettings {
    pub(crate) mode: TlsMode,
    pub(crate) root_cert: Option<PathBuf>,
}

/// The parameters taken out of the URL; the others go to tokio-postgres as they are.
const TAKEN: [&str; 2] = ["sslmode", "sslrootcert"];
/// Parameters septa refuses rather than ignores.
const REFUSED: [&str; 3] = ["sslcert", "sslkey", "sslpassword"];

impl TlsSettings {
    /// Takes `sslmode` and `sslrootcert` out of `url` (a `postgres://` URL or a `key=value`
    /// string), returning what is left and the settings. Without `sslmode`, TLS is off.
    pub(crate) fn split(url: &str) -> Result<(String, Self), String> {
        let (rest, params) = if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            split_url(url)
        } else {
            split_key_values(url)?
        };
        let mut settings = Self {
            mode: TlsMode::Disable,
            root_cert: None,
        };
        for (key, value) in params {
            match key.as_str() {
                "sslmode" => settings.mode = TlsMode::parse(&value)?,
                _ => settings.root_cert = Some(PathBuf::from(value)),
            }
        }
        Ok((rest, settings))
    }

    /// The connector for these settings: the CA file is read now, so a missing or broken one is
    /// an error when the endpoint is opened, not at its first call.
    pub(crate) fn connector(&self) -> Result<RustlsConnect, String> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let verify = match (self.mode, &self.root_cert) {
            (TlsMode::Disable | TlsMode::Prefer, _) | (TlsMode::Require, None) => Check::Nothing,
            (TlsMode::Require | TlsMode::VerifyCa, _) => Check::Chain,
            (TlsMode::VerifyFull, _) => Check::ChainAndName,
        };
        let verifier: Arc<dyn ServerCertVerifier> = match verify {
            Check::Nothing => Arc::new(SignatureChecked::new(AnyCertificate, &provider)),
            Check::Chain | Check::ChainAndName => {
                let roots = Arc::new(self.roots()?);
                let webpki =
                    WebPkiServerVerifier::builder_with_provider(roots, Arc::clone(&provider))
                        .build()
                        .map_err(|e| format!("cannot check server certificates: {e}"))?;
                if verify == Check::Chain {
                    Arc::new(SignatureChecked::new(AnyName { webpki }, &provider))
                } else {
                    webpki
                }
            }
        };
        let config = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| format!("cannot configure TLS: {e}"))?
            .dangerous()
            .with_custom_certificate_verifier(verifier)
            .with_no_client_auth();
        Ok(RustlsConnect {
            config: Arc::new(config),
        })
    }

    fn roots(&self) -> Result<RootCertStore, String> {
        let mut roots = RootCertStore::empty();
        let Some(path) = &self.root_cert else {
            roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
            return Ok(roots);
        };
        let certificates = read_certificates(path)?;
        let (added, _ignored) = roots.add_parsable_certificates(certificates);
        if added == 0 {
            return Err(format!(
                "`sslrootcert` `{}` holds no usable CA certificate",
                path.display()
            ));
        }
        Ok(roots)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Check {
    Nothing,
    Chain,
    ChainAndName,
}

fn read_certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let bytes = std::fs::read(path)
        .map_err(|e| format!("cannot read `sslrootcert` `{}`: {e}", path.display()))?;
    CertificateDer::pem_slice_iter(&bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("`sslrootcert` `{}` is not PEM: {e}", path.display()))
}

/// Splits the query of a `postgres://` URL.
fn split_url(url: &str) -> (String, Vec<(String, String)>) {
    let Some((base, query)) = url.split_once('?') else {
        return (url.to_owned(), Vec::new());
    };
    let mut kept = Vec::new();
    let mut taken = Vec::new();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        let key = percent_decode(key);
        if TAKEN.contains(&key.as_str()) {
            taken.push((key, percent_decode(value)));
        } else {
            kept.push(pair);
        }
    }
    let rest = if kept.is_empty() {
        base.to_owned()
    } else {
        format!("{base}?{}", kept.join("&"))
    };
    (rest, taken)
}

/// Splits a `key=value` connection string (values unquoted, or in single quotes with `\`
/// escapes, as libpq writes them).
fn split_key_values(text: &str) -> Result<(String, Vec<(String, String)>), String> {
    let mut kept = Vec::new();
    let mut taken = Vec::new();
    let mut chars = text.char_indices().peekable();
    loop {
        while chars.next_if(|(_, c)| c.is_whitespace()).is_some() {}
        let Some(&(start, _)) = chars.peek() else {
            break;
        };
        let mut key = String::new();
        while let Some((_, c)) = chars.next_if(|(_, c)| *c != '=' && !c.is_whitespace()) {
            key.push(c);
        }
        while chars.next_if(|(_, c)| c.is_whitespace()).is_some() {}
        if chars.next_if(|(_, c)| *c == '=').is_none() {
            return Err(format!("`{key}` in the connection string has no `=`"));
        }
        while chars.next_if(|(_, c)| c.is_whitespace()).is_some() {}
        let mut value = String::new();
        if chars.next_if(|(_, c)| *c == '\'').is_some() {
            loop {
                match chars.next() {
                    Some((_, '\'')) => break,
                    Some((_, '\\')) => value.extend(chars.next().map(|(_, c)| c)),
                    Some((_, c)) => value.push(c),
                    None => return Err(format!("the value of `{key}` has no closing quote")),
                }
            }
        } else {
            while let Some((_, c)) = chars.next_if(|(_, c)| !c.is_whitespace()) {
                value.push(c);
            }
        }
        let end = chars.peek().map_or(text.len(), |&(at, _)| at);
        if TAKEN.contains(&key.as_str()) {
            taken.push((key, value));
        } else {
            kept.push(&text[start..end]);
        }
    }
    Ok((kept.join(" "), taken))
}

/// Whether the URL names a parameter septa does not support (client certificates).
pub(crate) fn refused_parameter(url: &str) -> Option<&'static str> {
    REFUSED.into_iter().find(|name| {
        url.split(['?', '&', ' '])
            .any(|pair| pair.trim_start().starts_with(&format!("{name}=")))
    })
}

fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| char::from(b).to_digit(16);
        match (bytes[i], bytes.get(i + 1), bytes.get(i + 2)) {
            (b'%', Some(&h), Some(&l)) if hex(h).is_some() && hex(l).is_some() => {
                let value = hex(h).unwrap_or(0) * 16 + hex(l).unwrap_or(0);
                out.push(u8::try_from(value).unwrap_or(b'?'));
                i += 3;
            }
            (b, _, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// `require` without a CA, and `prefer`: the connection is encrypted, the server not
/// authenticated (as libpq does). Handshake signatures are still checked.
#[derive(Debug)]
struct AnyCertificate;

impl ServerCertificateCheck for AnyCertificate {
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

/// `verify-ca`: webpki's check of the chain, without the check of the name. Handshake
/// signatures are checked with the same provider's algorithms webpki would use.
#[derive(Debug)]
struct AnyName {
    webpki: Arc<WebPkiServerVerifier>,
}

impl ServerCertificateCheck for AnyName {
    fn check(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let verified = self.webpki.verify_server_cert(
            end_entity,
            intermediates,
            server_name,
            ocsp_response,
            now,
        );
        match verified {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }
}

/// Makes TLS connections to PostgreSQL servers with one rustls configuration.
#[derive(Clone)]
pub(crate) struct RustlsConnect {
    config: Arc<ClientConfig>,
}

impl<S> MakeTlsConnect<S> for RustlsConnect
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    type Stream = RustlsStream<S>;
    type TlsConnect = RustlsConnector;
    type Error = io::Error;

    fn make_tls_connect(&mut self, domain: &str) -> Result<RustlsConnector, io::Error> {
        let name = ServerName::try_from(domain.to_owned()).map_err(|_| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("`{domain}` is not a host name TLS can check"),
            )
        })?;
        Ok(RustlsConnector {
            config: Arc::clone(&self.config),
            name,
        })
    }
}

/// One TLS connection about to be made to the server `name`.
pub(crate) struct RustlsConnector {
    config: Arc<ClientConfig>,
    name: ServerName<'static>,
}

impl<S> TlsConnect<S> for RustlsConnector
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    type Stream = RustlsStream<S>;
    type Error = io::Error;
    type Future = Pin<Box<dyn Future<Output = io::Result<RustlsStream<S>>> + Send>>;

    fn connect(self, stream: S) -> Self::Future {
        Box::pin(async move {
            let connector = tokio_rustls::TlsConnector::from(self.config);
            let stream = connector.connect(self.name, stream).await?;
            Ok(RustlsStream(stream))
        })
    }
}

/// A TLS connection to a PostgreSQL server.
pub(crate) struct RustlsStream<S>(tokio_rustls::client::TlsStream<S>);

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncRead for RustlsStream<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_read(cx, buf)
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncWrite for RustlsStream<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.0).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_shutdown(cx)
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> tokio_postgres::tls::TlsStream for RustlsStream<S> {
    /// No channel binding: SCRAM authenticates without it, as it does over plain TCP.
    fn channel_binding(&self) -> ChannelBinding {
        ChannelBinding::none()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    #[test]
    fn sslmode_and_sslrootcert_are_taken_out_of_a_url() {
        let (rest, tls) = TlsSettings::split(
            "postgres://app:pw@db:5432/shop?sslmode=verify-full&application_name=septa&sslrootcert=%2Fetc%2Fca.pem",
        )
        .unwrap();
        assert_eq!(
            rest,
            "postgres://app:pw@db:5432/shop?application_name=septa"
        );
        assert_eq!(tls.mode, TlsMode::VerifyFull);
        assert_eq!(tls.root_cert, Some(PathBuf::from("/etc/ca.pem")));
        let (rest, tls) = TlsSettings::split("postgresql://db/shop?sslmode=require").unwrap();
        assert_eq!(rest, "postgresql://db/shop");
        assert_eq!((tls.mode, tls.root_cert), (TlsMode::Require, None));
        let (rest, tls) = TlsSettings::split("postgres://db/shop").unwrap();
        assert_eq!(
            (rest.as_str(), tls.mode),
            ("postgres://db/shop", TlsMode::Disable)
        );
    }

    #[test]
    fn sslmode_and_sslrootcert_are_taken_out_of_key_values() {
        let (rest, tls) = TlsSettings::split(
            "host=db user=app sslmode=verify-ca password='a b\\'c' sslrootcert='/etc/my ca.pem'",
        )
        .unwrap();
        assert_eq!(rest, "host=db user=app password='a b\\'c'");
        assert_eq!(tls.mode, TlsMode::VerifyCa);
        assert_eq!(tls.root_cert, Some(PathBuf::from("/etc/my ca.pem")));
    }

    #[test]
    fn unknown_modes_and_client_certificates_are_refused() {
        let error = TlsSettings::split("postgres://db/x?sslmode=verify").unwrap_err();
        assert!(error.contains("unknown `sslmode=verify`"), "{error}");
        assert!(TlsSettings::split("postgres://db/x?sslmode=allow").is_err());
        assert_eq!(
            refused_parameter("postgres://db/x?sslcert=/c.pem"),
            Some("sslcert")
        );
        assert_eq!(refused_parameter("host=db sslkey=/k.pem"), Some("sslkey"));
        assert_eq!(refused_parameter("postgres://db/x?sslmode=require"), None);
    }

    #[test]
    fn a_missing_ca_file_is_an_error_naming_it() {
        let tls = TlsSettings {
            mode: TlsMode::VerifyFull,
            root_cert: Some(PathBuf::from("/nonexistent/ca.pem")),
        };
        let error = tls.connector().err().unwrap();
        assert!(error.contains("/nonexistent/ca.pem"), "{error}");
    }
}

//! Egress dialling: resolve a guest's host, pick an address the operator ceiling permits, and send
//! the request to exactly that address.
//!
//! The ceiling is only worth something if the address it checked is the address dialled. A
//! client that checks one resolution and then connects by name resolves again, and a name with a
//! short TTL can answer a public address to the check and `127.0.0.1` to the connect (DNS
//! rebinding). So the steps are split and pinned: [`resolve`] turns the host into addresses
//! (without DNS for IP literals in any spelling), [`first_permitted`] has the policy decide each
//! ([`Policy::decide_dialled_address`]), and [`send_pinned`] connects to the one [`SocketAddr`] it is given — never to a
//! name — and speaks HTTP/1.1 over it, with TLS when the scheme asks for it.
//!
//! Redirects are never followed: the guest gets a 3xx as it is, and a request to the `Location`
//! is a new request that goes through the same checks.
//!
//! [`DialError`]'s variants line up with wasi:http's `error-code`, so the runtime's hook can map
//! them one to one without this crate depending on wasmtime:
//!
//! | variant | `error-code` |
//! |---|---|
//! | [`DialError::InvalidHost`], [`DialError::InvalidServerName`] | `http-request-uri-invalid` |
//! | [`DialError::DnsTimeout`] | `dns-timeout` |
//! | [`DialError::DnsError`] | `dns-error` |
//! | [`DialError::NoAddresses`] | `destination-not-found` |
//! | [`DialError::Blocked`] | `destination-ip-prohibited` |
//! | [`DialError::ConnectionRefused`] | `connection-refused` |
//! | [`DialError::ConnectionTimeout`] | `connection-timeout` |
//! | [`DialError::ConnectionFailed`] | `destination-unavailable` |
//! | [`DialError::TlsCertificate`] | `tls-certificate-error` |
//! | [`DialError::TlsAlert`] | `tls-alert-received` |
//! | [`DialError::Tls`], [`DialError::TlsConfig`] | `tls-protocol-error` |
//! | [`DialError::ResponseTimeout`] | `http-response-timeout` |
//! | [`DialError::ConnectionTerminated`] | `connection-terminated` |
//! | [`DialError::Protocol`] | `http-protocol-error` |
//! | [`DialError::InvalidRequest`] | `http-request-uri-invalid` |

use std::fmt;
use std::future::{Future, poll_fn};
use std::io;
use std::net::SocketAddr;
use std::pin::{Pin, pin};
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};
use std::time::Duration;

use http::header::{HOST, HeaderValue};
use http::{Request, Response, Uri, Version};
use hyper::body::{Body, Incoming};
use hyper_util::rt::TokioIo;
use rustls::pki_types::ServerName;
use rustls::{ClientConfig, RootCertStore};
use septa_policy::hostname::{
    HostError, canonical_host_name, parse_ip_literal, validate_host_name,
};
use septa_policy::{Decision, Policy};
use tokio::net::TcpStream;
use tokio::time::{Instant, timeout, timeout_at};
use tokio_rustls::TlsConnector;

/// How long [`resolve`] waits for DNS.
pub const DEFAULT_DNS_TIMEOUT: Duration = Duration::from_secs(5);

/// The ALPN protocol offered over TLS: only HTTP/1.1 is spoken.
const ALPN_HTTP_1_1: &[u8] = b"http/1.1";

/// The scheme of an outbound request: whether to speak TLS to the pinned address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Scheme {
    /// Plain HTTP/1.1.
    Http,
    /// HTTP/1.1 over TLS, verified against the webpki root certificates.
    Https,
}

impl Scheme {
    /// The port a URL of this scheme means when it names none.
    pub fn default_port(self) -> u16 {
        match self {
            Self::Http => 80,
            Self::Https => 443,
        }
    }

    /// The scheme of a request URI, if it is `http` or `https`.
    pub fn from_uri_scheme(scheme: &http::uri::Scheme) -> Option<Self> {
        if *scheme == http::uri::Scheme::HTTP {
            Some(Self::Http)
        } else if *scheme == http::uri::Scheme::HTTPS {
            Some(Self::Https)
        } else {
            None
        }
    }
}

/// Time limits for one pinned request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DialTimeouts {
    /// For the TCP connect and, over HTTPS, the TLS handshake together.
    pub connect: Duration,
    /// From the request being sent to the response head arriving.
    pub first_byte: Duration,
}

impl Default for DialTimeouts {
    /// Ten seconds to connect, thirty to the first byte of the response.
    fn default() -> Self {
        Self {
            connect: Duration::from_secs(10),
            first_byte: Duration::from_secs(30),
        }
    }
}

/// Why an outbound request could not be resolved, permitted, connected or exchanged.
///
/// The module documentation maps each variant to a wasi:http `error-code`.
#[derive(Debug, thiserror::Error)]
pub enum DialError {
    /// The host is neither an IP literal nor a valid DNS name.
    #[error(transparent)]
    InvalidHost(#[from] HostError),
    /// DNS did not answer in time.
    #[error("resolving `{host}` timed out after {timeout:?}")]
    DnsTimeout {
        /// The host being resolved.
        host: String,
        /// How long resolution was given.
        timeout: Duration,
    },
    /// DNS answered with an error, or with no addresses.
    #[error("resolving `{host}` failed: {source}")]
    DnsError {
        /// The host being resolved.
        host: String,
        /// The resolver's error.
        source: io::Error,
    },
    /// The policy refused every address the host resolved to; this is its decision on the
    /// first one.
    #[error("{}", .0.reason)]
    Blocked(Box<Decision>),
    /// There was no address to choose from.
    #[error("no addresses to dial")]
    NoAddresses,
    /// The destination refused the TCP connection.
    #[error("connection to `{addr}` refused")]
    ConnectionRefused {
        /// The address dialled.
        addr: SocketAddr,
    },
    /// The TCP connect (with the TLS handshake, over HTTPS) did not finish in time.
    #[error("connecting to `{addr}` timed out after {timeout:?}")]
    ConnectionTimeout {
        /// The address dialled.
        addr: SocketAddr,
        /// The connect budget.
        timeout: Duration,
    },
    /// The TCP connect failed otherwise (unreachable network or host, reset, ...).
    #[error("connecting to `{addr}` failed: {source}")]
    ConnectionFailed {
        /// The address dialled.
        addr: SocketAddr,
        /// The socket error.
        source: io::Error,
    },
    /// The name to verify the server's certificate against is not a DNS name or IP address.
    #[error("`{server_name}` is not a valid tls server name")]
    InvalidServerName {
        /// The server name given.
        server_name: String,
    },
    /// The TLS client configuration could not be built.
    #[error("tls client configuration failed: {source}")]
    TlsConfig {
        /// The rustls error.
        source: rustls::Error,
    },
    /// The server's certificate did not verify for the server name.
    #[error("tls certificate of `{server_name}` is not valid: {source}")]
    TlsCertificate {
        /// The server name the certificate was verified against.
        server_name: String,
        /// Why it did not verify.
        source: rustls::Error,
    },
    /// The server sent a TLS alert during the handshake.
    #[error("`{server_name}` sent tls alert {alert:?}")]
    TlsAlert {
        /// The server name of the handshake.
        server_name: String,
        /// The alert received.
        alert: rustls::AlertDescription,
    },
    /// The TLS handshake failed otherwise.
    #[error("tls handshake with `{server_name}` failed: {source}")]
    Tls {
        /// The server name of the handshake.
        server_name: String,
        /// The handshake error.
        source: io::Error,
    },
    /// The response head did not arrive within the first-byte timeout.
    #[error("`{addr}` sent no response within {timeout:?}")]
    ResponseTimeout {
        /// The address dialled.
        addr: SocketAddr,
        /// The first-byte budget.
        timeout: Duration,
    },
    /// The connection closed before the exchange finished.
    #[error("connection to `{addr}` closed early: {source}")]
    ConnectionTerminated {
        /// The address dialled.
        addr: SocketAddr,
        /// hyper's account of it.
        source: hyper::Error,
    },
    /// The HTTP/1.1 exchange failed (malformed response, body error, ...).
    #[error("http exchange with `{addr}` failed: {source}")]
    Protocol {
        /// The address dialled.
        addr: SocketAddr,
        /// hyper's error.
        source: hyper::Error,
    },
    /// The request cannot be sent as it is (no authority, an invalid `Host`, ...).
    #[error("request cannot be sent: {reason}")]
    InvalidRequest {
        /// What is wrong with it.
        reason: String,
    },
}

/// Resolves `host` to socket addresses with [`DEFAULT_DNS_TIMEOUT`]; see [`resolve_with_timeout`].
///
/// # Errors
///
/// As [`resolve_with_timeout`].
pub async fn resolve(host: &str, port: u16) -> Result<Vec<SocketAddr>, DialError> {
    resolve_with_timeout(host, port, DEFAULT_DNS_TIMEOUT).await
}

/// Resolves `host` to socket addresses.
///
/// An IP literal in any spelling [`parse_ip_literal`] accepts (`127.1`, `0x7f000001`, `[::1]`) is
/// that address, without DNS; anything else must be a valid DNS name and goes to the system
/// resolver. The addresses are not checked here: pass them to [`first_permitted`].
///
/// # Errors
///
/// [`DialError::InvalidHost`] for a host that is neither an IP literal nor a DNS name,
/// [`DialError::DnsTimeout`] after `dns_timeout`, [`DialError::DnsError`] when the resolver fails
/// or returns no address.
pub async fn resolve_with_timeout(
    host: &str,
    port: u16,
    dns_timeout: Duration,
) -> Result<Vec<SocketAddr>, DialError> {
    if let Some(ip) = parse_ip_literal(host) {
        return Ok(vec![SocketAddr::new(ip, port)]);
    }
    validate_host_name(host)?;
    let addrs: Vec<SocketAddr> = timeout(dns_timeout, tokio::net::lookup_host((host, port)))
        .await
        .map_err(|_elapsed| DialError::DnsTimeout {
            host: host.to_owned(),
            timeout: dns_timeout,
        })?
        .map_err(|source| DialError::DnsError {
            host: host.to_owned(),
            source,
        })?
        .collect();
    if addrs.is_empty() {
        return Err(DialError::DnsError {
            host: host.to_owned(),
            source: io::Error::new(io::ErrorKind::NotFound, "name has no addresses"),
        });
    }
    Ok(addrs)
}

/// The first of `addrs` that [`Policy::decide_dialled_address`] admits. Dial the returned
/// address, and only it, with [`send_pinned`].
///
/// # Errors
///
/// [`DialError::Blocked`] with the policy's refusal of the first address when every address is
/// refused; [`DialError::NoAddresses`] when `addrs` is empty.
pub fn first_permitted(
    addrs: impl IntoIterator<Item = SocketAddr>,
    policy: &Policy,
) -> Result<SocketAddr, DialError> {
    let mut first_refusal = None;
    for addr in addrs {
        match policy.decide_dialled_address(addr.ip()) {
            Ok(()) => return Ok(addr),
            Err(refused) => {
                first_refusal.get_or_insert(refused);
            }
        }
    }
    Err(first_refusal.map_or(DialError::NoAddresses, |refused| {
        DialError::Blocked(Box::new(refused))
    }))
}

/// Sends `request` to exactly `addr` over HTTP/1.1, with TLS for [`Scheme::Https`], and returns
/// the response head with a [`ConnectionTask`] that drives the rest of the connection.
///
/// `addr` is connected to as it is; nothing is resolved again. `server_name` is the host the guest
/// asked for, without a port: over HTTPS it is the SNI and the name the certificate must be valid
/// for (an IP literal, in any spelling, verifies against the certificate's IP addresses); over
/// HTTP it is not used. The request URI is rewritten to origin-form (path and query), the `Host`
/// header is set to the URI's authority (the one the guest used, without user info), and the
/// version to HTTP/1.1. A 3xx response is returned as it is; redirects are never followed.
///
/// The response body streams only while the [`ConnectionTask`] is polled: spawn it, or await it
/// alongside reading the body.
///
/// # Errors
///
/// [`DialError::InvalidRequest`] when the request has no authority; connection, TLS and HTTP
/// errors as their [`DialError`] variants; [`DialError::ConnectionTimeout`] and
/// [`DialError::ResponseTimeout`] when `timeouts` run out.
pub async fn send_pinned<B>(
    addr: SocketAddr,
    scheme: Scheme,
    server_name: &str,
    request: Request<B>,
    timeouts: DialTimeouts,
) -> Result<(Response<Incoming>, ConnectionTask), DialError>
where
    B: Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let tls = match scheme {
        Scheme::Http => None,
        Scheme::Https => Some(tls_config()?),
    };
    dial_pinned(addr, server_name, request, timeouts, tls).await
}

/// As [`send_pinned`] over HTTPS, but verifying the server's certificate against `tls` (built by
/// [`tls_client_config`]) rather than the webpki roots: for septa's own fetches from servers an
/// operator's private certificate authority vouches for.
///
/// # Errors
///
/// As [`send_pinned`].
pub async fn send_pinned_tls<B>(
    addr: SocketAddr,
    server_name: &str,
    request: Request<B>,
    timeouts: DialTimeouts,
    tls: Arc<ClientConfig>,
) -> Result<(Response<Incoming>, ConnectionTask), DialError>
where
    B: Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    dial_pinned(addr, server_name, request, timeouts, Some(tls)).await
}

/// Connects to `addr`, with a TLS handshake when `tls` is given, and exchanges `request`.
async fn dial_pinned<B>(
    addr: SocketAddr,
    server_name: &str,
    mut request: Request<B>,
    timeouts: DialTimeouts,
    tls: Option<Arc<ClientConfig>>,
) -> Result<(Response<Incoming>, ConnectionTask), DialError>
where
    B: Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    to_origin_form(&mut request)?;
    tracing::debug!(%addr, tls = tls.is_some(), server_name, "dialling pinned address");
    let connect_deadline = Instant::now() + timeouts.connect;
    let connect_timeout = || DialError::ConnectionTimeout {
        addr,
        timeout: timeouts.connect,
    };
    let tcp = timeout_at(connect_deadline, TcpStream::connect(addr))
        .await
        .map_err(|_elapsed| connect_timeout())?
        .map_err(|source| connect_error(addr, timeouts.connect, source))?;
    tcp.set_nodelay(true)
        .map_err(|source| connect_error(addr, timeouts.connect, source))?;
    match tls {
        None => exchange(TokioIo::new(tcp), addr, request, timeouts.first_byte).await,
        Some(config) => {
            let tls = timeout_at(connect_deadline, tls_handshake(tcp, server_name, config))
                .await
                .map_err(|_elapsed| connect_timeout())??;
            exchange(TokioIo::new(tls), addr, request, timeouts.first_byte).await
        }
    }
}

/// The connection behind a response from [`send_pinned`]: a future that reads the response body
/// off the socket (and writes the rest of the request body) until the exchange is over.
///
/// Spawn it or await it; if it is dropped, the connection closes and the response body ends with
/// an error.
pub struct ConnectionTask {
    addr: SocketAddr,
    connection: Option<Pin<Box<dyn Future<Output = hyper::Result<()>> + Send>>>,
}

impl ConnectionTask {
    /// The address the connection is to.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }
}

impl Future for ConnectionTask {
    type Output = Result<(), DialError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        let Some(connection) = this.connection.as_mut() else {
            return Poll::Ready(Ok(()));
        };
        let result = std::task::ready!(connection.as_mut().poll(cx));
        this.connection = None;
        Poll::Ready(result.map_err(|source| exchange_error(this.addr, source)))
    }
}

impl fmt::Debug for ConnectionTask {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConnectionTask")
            .field("addr", &self.addr)
            .field("finished", &self.connection.is_none())
            .finish()
    }
}

/// Rewrites the request for the wire: origin-form target, `Host` from the authority, HTTP/1.1.
fn to_origin_form<B>(request: &mut Request<B>) -> Result<(), DialError> {
    let uri = request.uri();
    let Some(authority) = uri.authority() else {
        return Err(DialError::InvalidRequest {
            reason: format!("`{uri}` has no authority"),
        });
    };
    // User info never goes on the wire in `Host`.
    let host_and_port = authority
        .as_str()
        .rsplit_once('@')
        .map_or(authority.as_str(), |(_user_info, rest)| rest);
    let host =
        HeaderValue::from_str(host_and_port).map_err(|_invalid| DialError::InvalidRequest {
            reason: format!("`{host_and_port}` is not a valid `host` header"),
        })?;
    let target = match uri.query() {
        Some(query) => format!("{}?{query}", uri.path()),
        None => uri.path().to_owned(),
    };
    let target = Uri::try_from(target.as_str()).map_err(|error| DialError::InvalidRequest {
        reason: format!("`{target}` is not a valid request target: {error}"),
    })?;
    *request.uri_mut() = target;
    request.headers_mut().insert(HOST, host);
    *request.version_mut() = Version::HTTP_11;
    Ok(())
}

/// The shared TLS client configuration for guests' egress: ring, webpki roots, ALPN `http/1.1`.
fn tls_config() -> Result<Arc<ClientConfig>, DialError> {
    static CONFIG: OnceLock<Result<Arc<ClientConfig>, rustls::Error>> = OnceLock::new();
    CONFIG
        .get_or_init(|| {
            build_client_config(RootCertStore {
                roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
            })
        })
        .clone()
        .map_err(|source| DialError::TlsConfig { source })
}

/// A TLS client configuration trusting `roots`: ring, the safe default protocol versions, no
/// client certificate, ALPN `http/1.1`.
///
/// # Errors
///
/// [`DialError::TlsConfig`] when rustls refuses the combination.
pub fn tls_client_config(roots: RootCertStore) -> Result<Arc<ClientConfig>, DialError> {
    build_client_config(roots).map_err(|source| DialError::TlsConfig { source })
}

fn build_client_config(roots: RootCertStore) -> Result<Arc<ClientConfig>, rustls::Error> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![ALPN_HTTP_1_1.to_vec()];
    Ok(Arc::new(config))
}

/// The name to send as SNI and verify the certificate against.
fn tls_server_name(server_name: &str) -> Result<ServerName<'static>, DialError> {
    let invalid = || DialError::InvalidServerName {
        server_name: server_name.to_owned(),
    };
    if let Some(ip) = parse_ip_literal(server_name) {
        return Ok(ServerName::IpAddress(ip.into()));
    }
    let name = canonical_host_name(server_name).map_err(|_invalid| invalid())?;
    ServerName::try_from(name).map_err(|_invalid| invalid())
}

async fn tls_handshake(
    tcp: TcpStream,
    server_name: &str,
    config: Arc<ClientConfig>,
) -> Result<tokio_rustls::client::TlsStream<TcpStream>, DialError> {
    let connector = TlsConnector::from(config);
    connector
        .connect(tls_server_name(server_name)?, tcp)
        .await
        .map_err(|error| tls_error(server_name, error))
}

/// Sorts a TLS handshake failure by what rustls says went wrong.
fn tls_error(server_name: &str, error: io::Error) -> DialError {
    let server_name = server_name.to_owned();
    match error
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>())
    {
        Some(source @ rustls::Error::InvalidCertificate(_)) => DialError::TlsCertificate {
            server_name,
            source: source.clone(),
        },
        Some(rustls::Error::AlertReceived(alert)) => DialError::TlsAlert {
            server_name,
            alert: *alert,
        },
        _ => DialError::Tls {
            server_name,
            source: error,
        },
    }
}

/// Hands the stream to hyper, sends the request and waits for the response head while driving
/// the connection, then returns the connection for the caller to keep driving.
async fn exchange<T, B>(
    io: T,
    addr: SocketAddr,
    request: Request<B>,
    first_byte: Duration,
) -> Result<(Response<Incoming>, ConnectionTask), DialError>
where
    T: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
    B: Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let (mut sender, connection) = hyper::client::conn::http1::handshake(io)
        .await
        .map_err(|source| exchange_error(addr, source))?;
    let mut connection: Pin<Box<dyn Future<Output = hyper::Result<()>> + Send>> =
        Box::pin(connection);
    let mut sending = pin!(sender.send_request(request));
    // The response only arrives while the connection is polled, so poll both until it does.
    let first = poll_fn(|cx| {
        if let Poll::Ready(result) = sending.as_mut().poll(cx) {
            return Poll::Ready(Ok(result));
        }
        connection.as_mut().poll(cx).map(Err)
    });
    let response_timeout = || DialError::ResponseTimeout {
        addr,
        timeout: first_byte,
    };
    let deadline = Instant::now() + first_byte;
    let outcome = timeout_at(deadline, first).await;
    let (response, connection) = match outcome {
        Err(_elapsed) => return Err(response_timeout()),
        Ok(Ok(response)) => (response, Some(connection)),
        Ok(Err(Err(source))) => return Err(exchange_error(addr, source)),
        // The connection ended cleanly; whatever it delivered is with the request future now.
        Ok(Err(Ok(()))) => {
            let response = timeout_at(deadline, sending)
                .await
                .map_err(|_elapsed| response_timeout())?;
            (response, None)
        }
    };
    let response = response.map_err(|source| exchange_error(addr, source))?;
    Ok((response, ConnectionTask { addr, connection }))
}

fn connect_error(addr: SocketAddr, connect_timeout: Duration, source: io::Error) -> DialError {
    match source.kind() {
        io::ErrorKind::ConnectionRefused => DialError::ConnectionRefused { addr },
        io::ErrorKind::TimedOut => DialError::ConnectionTimeout {
            addr,
            timeout: connect_timeout,
        },
        _ => DialError::ConnectionFailed { addr, source },
    }
}

fn exchange_error(addr: SocketAddr, source: hyper::Error) -> DialError {
    if source.is_incomplete_message() || source.is_closed() || source.is_canceled() {
        DialError::ConnectionTerminated { addr, source }
    } else {
        DialError::Protocol { addr, source }
    }
}

//! Pinned egress dialling against real sockets: the request reaches exactly the checked address,
//! in origin-form with the guest's `Host`, redirects come back unfollowed, and the ceiling refuses
//! loopback however it is resolved.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use bytes::Bytes;
use common::ceiling_policy;
use http::{Request, StatusCode};
use http_body_util::{BodyExt, Empty, Full};
use septa_mesh::dial::{DialError, DialTimeouts, Scheme, first_permitted, resolve, send_pinned};
use septa_policy::{Policy, Reason};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;

/// What a raw HTTP/1.1 server saw of one request.
#[derive(Debug)]
struct Seen {
    request_line: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Seen {
    fn header(&self, name: &str) -> Vec<&str> {
        self.headers
            .iter()
            .filter(|(key, _)| key.eq_ignore_ascii_case(name))
            .map(|(_, value)| value.as_str())
            .collect()
    }
}

/// Reads one request (head and a `content-length` body) off `stream`.
async fn read_request(stream: &mut TcpStream) -> Seen {
    let mut buffer = Vec::new();
    let head_end = loop {
        let mut chunk = [0_u8; 1024];
        let read = stream.read(&mut chunk).await.unwrap();
        assert!(read > 0, "client closed before sending a full head");
        buffer.extend_from_slice(&chunk[..read]);
        if let Some(at) = buffer.windows(4).position(|window| window == b"\r\n\r\n") {
            break at;
        }
    };
    let head = String::from_utf8(buffer[..head_end].to_vec()).unwrap();
    let mut lines = head.split("\r\n");
    let request_line = lines.next().unwrap().to_owned();
    let headers: Vec<(String, String)> = lines
        .map(|line| {
            let (name, value) = line.split_once(':').unwrap();
            (name.trim().to_owned(), value.trim().to_owned())
        })
        .collect();
    let length: usize = headers
        .iter()
        .find(|(name, _)| name.eq_ignore_ascii_case("content-length"))
        .map_or(0, |(_, value)| value.parse().unwrap());
    let mut body = buffer[head_end + 4..].to_vec();
    while body.len() < length {
        let mut chunk = [0_u8; 1024];
        let read = stream.read(&mut chunk).await.unwrap();
        assert!(read > 0, "client closed before sending the body");
        body.extend_from_slice(&chunk[..read]);
    }
    Seen {
        request_line,
        headers,
        body,
    }
}

/// A one-shot HTTP/1.1 server on 127.0.0.1: answers the first request with `response` and reports
/// what it saw; a second connection, if any, is reported as well.
async fn serve_once(
    response: &'static str,
) -> (SocketAddr, oneshot::Receiver<Seen>, oneshot::Receiver<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (seen_tx, seen_rx) = oneshot::channel();
    let (second_tx, second_rx) = oneshot::channel();
    tokio::spawn(async move {
        let (mut stream, _) = listener.accept().await.unwrap();
        let seen = read_request(&mut stream).await;
        stream.write_all(response.as_bytes()).await.unwrap();
        stream.flush().await.unwrap();
        let _ = seen_tx.send(seen);
        if listener.accept().await.is_ok() {
            let _ = second_tx.send(());
        }
    });
    (addr, seen_rx, second_rx)
}

fn loopback_ceiling() -> Policy {
    ceiling_policy(&["127.0.0.1/32"])
}

#[tokio::test]
async fn sends_origin_form_with_the_guests_host_to_the_pinned_address() {
    let (addr, seen, _) =
        serve_once("HTTP/1.1 200 OK\r\ncontent-length: 5\r\ncontent-type: text/plain\r\n\r\nhello")
            .await;
    let port = addr.port();
    let request = Request::post(format!(
        "http://user:secret@api.example.test:{port}/v1/items?limit=2&q=a%20b"
    ))
    .header("content-length", "7")
    .body(Full::new(Bytes::from_static(b"payload")))
    .unwrap();

    // The name in the URI is never resolved: the connection goes to `addr`.
    let (response, connection) = send_pinned(
        addr,
        Scheme::Http,
        "api.example.test",
        request,
        DialTimeouts::default(),
    )
    .await
    .unwrap();
    assert_eq!(connection.addr(), addr);
    let driver = tokio::spawn(connection);

    assert_eq!(response.status(), StatusCode::OK);
    let body = response.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(body, "hello");
    driver.await.unwrap().unwrap();

    let seen = seen.await.unwrap();
    assert_eq!(seen.request_line, "POST /v1/items?limit=2&q=a%20b HTTP/1.1");
    assert_eq!(seen.header("host"), [format!("api.example.test:{port}")]);
    assert_eq!(seen.body, b"payload");
}

#[tokio::test]
async fn bare_authority_becomes_slash_and_ipv6_host_keeps_brackets() {
    let (addr, seen, _) = serve_once("HTTP/1.1 204 No Content\r\n\r\n").await;
    let request = Request::get("http://[2001:db8::1]:8080")
        .body(Empty::<Bytes>::new())
        .unwrap();
    let (response, connection) = send_pinned(
        addr,
        Scheme::Http,
        "[2001:db8::1]",
        request,
        DialTimeouts::default(),
    )
    .await
    .unwrap();
    tokio::spawn(connection);
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
    let seen = seen.await.unwrap();
    assert_eq!(seen.request_line, "GET / HTTP/1.1");
    assert_eq!(seen.header("host"), ["[2001:db8::1]:8080"]);
}

#[tokio::test]
async fn redirect_is_returned_not_followed() {
    let (addr, seen, second_connection) = serve_once(
        "HTTP/1.1 302 Found\r\nlocation: http://169.254.169.254/latest/meta-data/\r\ncontent-length: 0\r\n\r\n",
    )
    .await;
    let request = Request::get(format!("http://example.test:{}/start", addr.port()))
        .body(Empty::<Bytes>::new())
        .unwrap();
    let (response, connection) = send_pinned(
        addr,
        Scheme::Http,
        "example.test",
        request,
        DialTimeouts::default(),
    )
    .await
    .unwrap();
    tokio::spawn(connection);

    assert_eq!(response.status(), StatusCode::FOUND);
    assert_eq!(
        response.headers()["location"],
        "http://169.254.169.254/latest/meta-data/"
    );
    let body = response.into_body().collect().await.unwrap().to_bytes();
    assert!(body.is_empty());
    assert_eq!(seen.await.unwrap().request_line, "GET /start HTTP/1.1");
    // No second request was made, to the same server or anywhere.
    let followed = tokio::time::timeout(Duration::from_millis(300), second_connection).await;
    assert!(!matches!(followed, Ok(Ok(()))), "the redirect was followed");
}

#[tokio::test]
async fn default_ceiling_refuses_loopback_resolution_results() {
    let ceiling = ceiling_policy(&[]);
    let plain: SocketAddr = "127.0.0.1:8080".parse().unwrap();
    let mapped: SocketAddr = "[::ffff:127.0.0.1]:8080".parse().unwrap();
    for addrs in [vec![plain], vec![mapped], vec![mapped, plain]] {
        let result = first_permitted(addrs.clone(), &ceiling);
        assert!(
            matches!(
                &result,
                Err(DialError::Blocked(refused))
                    if matches!(&refused.reason, Reason::Ceiling(block)
                        if block.name == "loopback" && block.address == addrs[0].ip())
            ),
            "{addrs:?} should be blocked as loopback, got {result:?}"
        );
    }
    let message = first_permitted([mapped], &ceiling).unwrap_err().to_string();
    assert_eq!(
        message,
        "`::ffff:127.0.0.1` (`127.0.0.1`) is in the operator ceiling's blocked range `127.0.0.0/8` (loopback)"
    );
}

#[tokio::test]
async fn first_permitted_skips_blocked_addresses() {
    let ceiling = ceiling_policy(&[]);
    let addrs: Vec<SocketAddr> = ["169.254.169.254:80", "[::1]:80", "1.1.1.1:80", "8.8.8.8:80"]
        .iter()
        .map(|addr| addr.parse().unwrap())
        .collect();
    assert_eq!(
        first_permitted(addrs, &ceiling).unwrap(),
        "1.1.1.1:80".parse::<SocketAddr>().unwrap()
    );
    assert!(matches!(
        first_permitted(Vec::new(), &ceiling),
        Err(DialError::NoAddresses)
    ));
}

#[tokio::test]
async fn localhost_resolves_but_is_blocked() {
    let addrs = resolve("localhost", 8080).await.unwrap();
    assert!(!addrs.is_empty());
    assert!(
        addrs.iter().all(|addr| addr.ip().is_loopback()),
        "{addrs:?}"
    );
    let result = first_permitted(addrs, &ceiling_policy(&[]));
    assert!(
        matches!(&result, Err(DialError::Blocked(refused))
            if matches!(&refused.reason, Reason::Ceiling(block) if block.name == "loopback")),
        "localhost should be blocked, got {result:?}"
    );
}

#[tokio::test]
async fn ip_literals_resolve_without_dns_in_any_spelling() {
    for (spelling, expected) in [
        ("0x7f.1", "127.0.0.1:80"),
        ("2130706433", "127.0.0.1:80"),
        ("0251.0376.0251.0376", "169.254.169.254:80"),
        ("[::ffff:127.0.0.1]", "[::ffff:127.0.0.1]:80"),
        ("fe80::1%eth0", "[fe80::1]:80"),
    ] {
        let addrs = resolve(spelling, 80).await.unwrap();
        assert_eq!(
            addrs,
            [expected.parse::<SocketAddr>().unwrap()],
            "`{spelling}`"
        );
        assert!(
            matches!(
                first_permitted(addrs, &ceiling_policy(&[])),
                Err(DialError::Blocked(_))
            ),
            "`{spelling}` should be blocked"
        );
    }
}

#[tokio::test]
async fn invalid_hosts_are_refused_before_dns() {
    for host in ["bad_name.example", "256.0.0.1", "a..b", "exa mple.com", ""] {
        assert!(
            matches!(resolve(host, 80).await, Err(DialError::InvalidHost(_))),
            "`{host}` should be refused"
        );
    }
}

#[tokio::test]
async fn relaxed_loopback_goes_end_to_end() {
    let (addr, seen, _) = serve_once("HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok").await;
    let host = "0x7f000001";
    let resolved = resolve(host, addr.port()).await.unwrap();
    let pinned = first_permitted(resolved, &loopback_ceiling()).unwrap();
    assert_eq!(pinned, addr);
    let request = Request::get(format!("http://{host}:{}/", addr.port()))
        .body(Empty::<Bytes>::new())
        .unwrap();
    let (response, connection) =
        send_pinned(pinned, Scheme::Http, host, request, DialTimeouts::default())
            .await
            .unwrap();
    tokio::spawn(connection);
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(
        seen.await.unwrap().header("host"),
        [format!("{host}:{}", addr.port())]
    );
}

#[tokio::test]
async fn refused_connection_is_reported() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    let request = Request::get(format!("http://example.test:{}/", addr.port()))
        .body(Empty::<Bytes>::new())
        .unwrap();
    let error = send_pinned(
        addr,
        Scheme::Http,
        "example.test",
        request,
        DialTimeouts::default(),
    )
    .await
    .unwrap_err();
    assert!(
        matches!(error, DialError::ConnectionRefused { addr: refused } if refused == addr),
        "{error:?}"
    );
}

#[tokio::test]
async fn silent_server_hits_the_first_byte_timeout() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let (mut stream, _) = listener.accept().await.unwrap();
        let _ = read_request(&mut stream).await;
        tokio::time::sleep(Duration::from_secs(5)).await;
    });
    let request = Request::get(format!("http://example.test:{}/", addr.port()))
        .body(Empty::<Bytes>::new())
        .unwrap();
    let timeouts = DialTimeouts {
        connect: Duration::from_secs(5),
        first_byte: Duration::from_millis(200),
    };
    let error = send_pinned(addr, Scheme::Http, "example.test", request, timeouts)
        .await
        .unwrap_err();
    assert!(
        matches!(error, DialError::ResponseTimeout { .. }),
        "{error:?}"
    );
}

#[tokio::test]
async fn server_closing_early_is_a_terminated_connection() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let (mut stream, _) = listener.accept().await.unwrap();
        let _ = read_request(&mut stream).await;
        stream
            .write_all(b"HTTP/1.1 200 OK\r\ncontent-")
            .await
            .unwrap();
    });
    let request = Request::get(format!("http://example.test:{}/", addr.port()))
        .body(Empty::<Bytes>::new())
        .unwrap();
    let error = send_pinned(
        addr,
        Scheme::Http,
        "example.test",
        request,
        DialTimeouts::default(),
    )
    .await
    .unwrap_err();
    assert!(
        matches!(error, DialError::ConnectionTerminated { .. }),
        "{error:?}"
    );
}

/// The SNI host name and ALPN protocols of a TLS ClientHello record.
fn client_hello_sni_and_alpn(record: &[u8]) -> (Option<String>, Vec<String>) {
    fn u16_at(bytes: &[u8], at: usize) -> usize {
        usize::from(u16::from_be_bytes([bytes[at], bytes[at + 1]]))
    }
    assert_eq!(record[0], 0x16, "not a handshake record");
    let hello = &record[5..];
    assert_eq!(hello[0], 0x01, "not a ClientHello");
    // type(1) length(3) version(2) random(32)
    let mut at = 4 + 2 + 32;
    at += 1 + usize::from(hello[at]); // session id
    at += 2 + u16_at(hello, at); // cipher suites
    at += 1 + usize::from(hello[at]); // compression methods
    let extensions_end = at + 2 + u16_at(hello, at);
    at += 2;
    let (mut sni, mut alpn) = (None, Vec::new());
    while at < extensions_end {
        let (kind, length) = (u16_at(hello, at), u16_at(hello, at + 2));
        let data = &hello[at + 4..at + 4 + length];
        match kind {
            0 => {
                // list length(2) name type(1) name length(2) name
                let name_length = u16_at(data, 3);
                sni = Some(String::from_utf8(data[5..5 + name_length].to_vec()).unwrap());
            }
            16 => {
                let mut offset = 2;
                while offset < data.len() {
                    let length = usize::from(data[offset]);
                    alpn.push(
                        String::from_utf8(data[offset + 1..offset + 1 + length].to_vec()).unwrap(),
                    );
                    offset += 1 + length;
                }
            }
            _ => {}
        }
        at += 4 + length;
    }
    (sni, alpn)
}

#[tokio::test]
async fn https_sends_sni_and_alpn_to_the_pinned_address() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (hello_tx, hello_rx) = oneshot::channel();
    tokio::spawn(async move {
        let (mut stream, _) = listener.accept().await.unwrap();
        let mut header = [0_u8; 5];
        stream.read_exact(&mut header).await.unwrap();
        let length = usize::from(u16::from_be_bytes([header[3], header[4]]));
        let mut record = header.to_vec();
        record.resize(5 + length, 0);
        stream.read_exact(&mut record[5..]).await.unwrap();
        let _ = hello_tx.send(client_hello_sni_and_alpn(&record));
        // A fatal handshake_failure alert (level 2, description 40).
        stream
            .write_all(&[0x15, 0x03, 0x03, 0x00, 0x02, 0x02, 0x28])
            .await
            .unwrap();
    });
    let request = Request::get("https://API.Example.test/secure")
        .body(Empty::<Bytes>::new())
        .unwrap();
    let error = send_pinned(
        addr,
        Scheme::Https,
        "API.Example.test",
        request,
        DialTimeouts::default(),
    )
    .await
    .unwrap_err();
    assert!(
        matches!(
            &error,
            DialError::TlsAlert { server_name, alert: rustls::AlertDescription::HandshakeFailure }
                if server_name == "API.Example.test"
        ),
        "{error:?}"
    );
    let (sni, alpn) = hello_rx.await.unwrap();
    assert_eq!(sni.as_deref(), Some("api.example.test"));
    assert_eq!(alpn, ["http/1.1"]);
}

#[tokio::test]
async fn https_to_a_plain_http_server_is_a_tls_error() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let (mut stream, _) = listener.accept().await.unwrap();
        let mut buffer = [0_u8; 512];
        let _ = stream.read(&mut buffer).await;
        let _ = stream
            .write_all(b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\n\r\n")
            .await;
    });
    let request = Request::get("https://example.test/")
        .body(Empty::<Bytes>::new())
        .unwrap();
    let error = send_pinned(
        addr,
        Scheme::Https,
        "example.test",
        request,
        DialTimeouts::default(),
    )
    .await
    .unwrap_err();
    assert!(matches!(error, DialError::Tls { .. }), "{error:?}");
}

#[tokio::test]
async fn https_with_an_ip_server_name_sends_no_sni() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (hello_tx, hello_rx) = oneshot::channel();
    tokio::spawn(async move {
        let (mut stream, _) = listener.accept().await.unwrap();
        let mut header = [0_u8; 5];
        stream.read_exact(&mut header).await.unwrap();
        let length = usize::from(u16::from_be_bytes([header[3], header[4]]));
        let mut record = header.to_vec();
        record.resize(5 + length, 0);
        stream.read_exact(&mut record[5..]).await.unwrap();
        let _ = hello_tx.send(client_hello_sni_and_alpn(&record));
    });
    let request = Request::get("https://0x7f.1/")
        .body(Empty::<Bytes>::new())
        .unwrap();
    let _ = send_pinned(
        addr,
        Scheme::Https,
        "0x7f.1",
        request,
        DialTimeouts::default(),
    )
    .await;
    let (sni, _) = hello_rx.await.unwrap();
    assert_eq!(sni, None, "an IP server name must not be sent as SNI");
}

#[tokio::test]
async fn request_without_authority_is_refused() {
    let request = Request::get("/relative")
        .body(Empty::<Bytes>::new())
        .unwrap();
    let addr: SocketAddr = (IpAddr::from([127, 0, 0, 1]), 9).into();
    let error = send_pinned(
        addr,
        Scheme::Http,
        "example.test",
        request,
        DialTimeouts::default(),
    )
    .await
    .unwrap_err();
    assert!(
        matches!(error, DialError::InvalidRequest { .. }),
        "{error:?}"
    );
}

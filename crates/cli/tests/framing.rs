//! Request framing at the gateway: an HTTP/1 request whose body length could be read two ways
//! is refused before any function runs, and nothing smuggled behind it is served; a client too
//! slow with its head is told `408`.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use common::Septa;

fn start() -> (Septa, tempfile::TempDir) {
    let dir = common::echo_app(
        "framing",
        r#"[[route]]
id = "all"
path = "/..."
function = "echo"
"#,
    );
    let septa = Septa::start_with(dir.path(), &["--header-timeout-ms", "500"]);
    (septa, dir)
}

/// Sends `raw` on a fresh connection and reads until septa closes it.
fn exchange(septa: &Septa, raw: &[u8]) -> (Vec<u8>, Duration) {
    let mut stream = TcpStream::connect(septa.addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let start = Instant::now();
    stream.write_all(raw).unwrap();
    let mut out = Vec::new();
    stream.read_to_end(&mut out).unwrap();
    (out, start.elapsed())
}

/// One HTTP/1.1 response out of a byte stream.
#[derive(Debug)]
struct Answer {
    status: u16,
    headers: Vec<(String, String)>,
    body: String,
}

impl Answer {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("{e}: {}", self.body))
    }
}

/// Every response in `bytes`, framed by `content-length` or chunked; panics on anything else, so
/// a stray byte after the last response fails the test.
fn answers(mut bytes: &[u8]) -> Vec<Answer> {
    let mut out = Vec::new();
    while !bytes.is_empty() {
        let text = std::str::from_utf8(bytes).unwrap();
        let (head, rest) = text
            .split_once("\r\n\r\n")
            .unwrap_or_else(|| panic!("not a response: {text:?}"));
        let mut lines = head.lines();
        let status = lines.next().unwrap().split(' ').nth(1).unwrap();
        let headers: Vec<(String, String)> = lines
            .map(|l| l.split_once(':').unwrap())
            .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
            .collect();
        let mut answer = Answer {
            status: status.parse().unwrap(),
            headers,
            body: String::new(),
        };
        let mut rest = rest;
        if let Some(length) = answer.header("content-length") {
            let length: usize = length.parse().unwrap();
            answer.body = rest[..length].to_owned();
            rest = &rest[length..];
        } else {
            assert_eq!(answer.header("transfer-encoding"), Some("chunked"));
            loop {
                let (size, after) = rest.split_once("\r\n").unwrap();
                let size = usize::from_str_radix(size, 16).unwrap();
                answer.body.push_str(&after[..size]);
                // A chunk's data ends in CRLF; the last (empty) chunk ends the body, no trailers.
                rest = after[size..].strip_prefix("\r\n").unwrap();
                if size == 0 {
                    break;
                }
            }
        }
        bytes = rest.as_bytes();
        out.push(answer);
    }
    out
}

/// Heads septa refuses although hyper alone would serve them, with what the client is told.
const REFUSED_BY_SEPTA: &[(&str, &str)] = &[
    (
        "content-length: 5\r\ntransfer-encoding: chunked",
        "request framing is ambiguous: both Content-Length and Transfer-Encoding",
    ),
    (
        "transfer-encoding: chunked\r\ncontent-length: 5",
        "request framing is ambiguous: both Content-Length and Transfer-Encoding",
    ),
    (
        "content-length: 5\r\ncontent-length: 5",
        "request framing is ambiguous: Content-Length is given more than once",
    ),
    (
        "transfer-encoding: gzip, chunked",
        "request framing is ambiguous: Transfer-Encoding other than `chunked`",
    ),
    (
        "transfer-encoding: chunked\r\ntransfer-encoding: chunked",
        "request framing is ambiguous: Transfer-Encoding is given more than once",
    ),
];

/// Heads hyper refuses itself (with an empty 400) before septa's check could speak.
const REFUSED_BY_HYPER: &[&str] = &[
    "content-length: 5\r\ncontent-length: 6",
    "content-length: 5, 5",
    "content-length: +5",
    "content-length: -1",
    "transfer-encoding: identity",
];

/// An ambiguous request (body included for either reading), then a second request that a
/// parser reading the first one's framing differently would serve.
fn smuggling(version: &str, path: &str, headers: &str) -> Vec<u8> {
    format!(
        "POST /ambiguous/{path} {version}\r\nhost: x\r\n{headers}\r\n\r\n\
         0\r\n\r\nGET /smuggled/{path} HTTP/1.1\r\nhost: x\r\n\r\n"
    )
    .into_bytes()
}

#[test]
fn ambiguous_framing_is_refused_and_nothing_behind_it_is_served() {
    let (septa, _dir) = start();
    let mut cases: Vec<(String, Vec<u8>, Option<&str>)> = Vec::new();
    for (i, (headers, message)) in REFUSED_BY_SEPTA.iter().enumerate() {
        let raw = smuggling("HTTP/1.1", &format!("septa-{i}"), headers);
        cases.push((headers.to_string(), raw, Some(message)));
    }
    for (i, headers) in REFUSED_BY_HYPER.iter().enumerate() {
        let raw = smuggling("HTTP/1.1", &format!("hyper-{i}"), headers);
        cases.push((headers.to_string(), raw, None));
    }
    let http10 = smuggling("HTTP/1.0", "http10", "transfer-encoding: chunked");
    cases.push(("TE on HTTP/1.0".into(), http10, None));

    for (what, raw, message) in &cases {
        let (bytes, _) = exchange(&septa, raw);
        let answers = answers(&bytes);
        assert_eq!(answers.len(), 1, "{what}: {answers:?}");
        let refusal = &answers[0];
        assert_eq!(refusal.status, 400, "{what}: {refusal:?}");
        assert_eq!(refusal.header("connection"), Some("close"), "{what}");
        if let Some(message) = message {
            assert_eq!(refusal.json()["error"], *message, "{what}");
        }
    }
    // A clean request on the same server is served and recorded, so the log below is live.
    assert_eq!(septa.get("/control").status, 200);

    let flows = septa.stop();
    assert!(flows.iter().any(|f| f["path"] == "/control"), "{flows:#?}");
    let smuggled: Vec<_> = flows
        .iter()
        .filter(|f| {
            f["path"]
                .as_str()
                .unwrap_or_default()
                .starts_with("/smuggled")
        })
        .collect();
    assert!(
        smuggled.is_empty(),
        "smuggled requests were read: {smuggled:#?}"
    );
    // What septa refused is a denial in the flow log, with the client's message as the reason
    // and no route: it never reached routing. (What hyper refuses itself never reaches septa.)
    for (i, (_, message)) in REFUSED_BY_SEPTA.iter().enumerate() {
        let path = format!("/ambiguous/septa-{i}");
        let f = flows
            .iter()
            .find(|f| f["path"] == path.as_str())
            .unwrap_or_else(|| panic!("no flow for {path}: {flows:#?}"));
        assert_eq!(f["verdict"], "deny", "{f}");
        assert_eq!(f["status"], 400, "{f}");
        assert_eq!(f["reason"], *message, "{f}");
        assert!(f.get("route").is_none(), "{f}");
    }
}

#[test]
fn a_refused_request_behind_clean_ones_is_refused_after_they_are_served() {
    let (septa, _dir) = start();
    let mut raw = b"POST /first HTTP/1.1\r\nhost: x\r\ncontent-length: 5\r\n\r\nhello".to_vec();
    raw.extend_from_slice(&smuggling(
        "HTTP/1.1",
        "second",
        "content-length: 5\r\ncontent-length: 5",
    ));
    let (bytes, _) = exchange(&septa, &raw);
    let answers = answers(&bytes);
    let statuses: Vec<u16> = answers.iter().map(|a| a.status).collect();
    assert_eq!(statuses, [200, 400], "{answers:?}");
    assert_eq!(answers[0].json()["body"], "hello");
    let flows = septa.stop();
    let paths: Vec<&str> = flows.iter().filter_map(|f| f["path"].as_str()).collect();
    assert_eq!(paths, ["/first", "/ambiguous/second"]);
}

#[test]
fn clean_length_and_chunked_requests_share_one_keep_alive_connection() {
    let (septa, _dir) = start();
    let raw = b"POST /length HTTP/1.1\r\nhost: x\r\ncontent-length: 5\r\n\r\nhello\
POST /chunked HTTP/1.1\r\nhost: x\r\ntransfer-encoding: chunked\r\n\r\n\
6;note=first\r\nhello \r\n5\r\nworld\r\n0\r\nx-trailer: yes\r\n\r\n\
GET /last HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n";
    let (bytes, _) = exchange(&septa, raw);
    let answers = answers(&bytes);
    let statuses: Vec<u16> = answers.iter().map(|a| a.status).collect();
    assert_eq!(statuses, [200, 200, 200], "{answers:?}");
    assert_eq!(answers[0].json()["body"], "hello");
    assert_eq!(answers[1].json()["body"], "hello world");
    assert_eq!(answers[2].json()["path_with_query"], "/last");
    let flows = septa.stop();
    let paths: Vec<&str> = flows.iter().filter_map(|f| f["path"].as_str()).collect();
    assert_eq!(paths, ["/length", "/chunked", "/last"]);
}

#[test]
fn a_client_too_slow_with_its_head_is_told_408() {
    let (septa, _dir) = start();
    // Half a head, then nothing.
    let (bytes, took) = exchange(&septa, b"GET /slow HTTP/1.1\r\nhost: x\r\n");
    assert!(
        took < Duration::from_secs(5),
        "still connected after {took:?}"
    );
    let answers = answers(&bytes);
    assert_eq!(answers.len(), 1, "{answers:?}");
    assert_eq!(answers[0].status, 408);
    assert_eq!(answers[0].header("connection"), Some("close"));
    assert_eq!(
        answers[0].json()["error"],
        "request headers were not received in time"
    );

    // The same for the second request on a connection: the first is answered in full first.
    let (bytes, _) = exchange(
        &septa,
        b"GET /first HTTP/1.1\r\nhost: x\r\n\r\nGET /second HTTP/1.1\r\nhost: x\r\n",
    );
    let statuses: Vec<u16> = answers_of(&bytes);
    assert_eq!(statuses, [200, 408]);
    let flows = septa.stop();
    assert!(
        !flows
            .iter()
            .any(|f| f["path"] == "/second" || f["path"] == "/slow")
    );
}

fn answers_of(bytes: &[u8]) -> Vec<u16> {
    answers(bytes).iter().map(|a| a.status).collect()
}

#[test]
fn idle_connections_are_closed_without_an_answer() {
    let (septa, _dir) = start();
    // A connection that never sends a byte: hyper's own header timer has not started yet.
    let (bytes, took) = exchange(&septa, b"");
    assert!(
        took < Duration::from_secs(5),
        "still connected after {took:?}"
    );
    assert!(bytes.is_empty(), "{:?}", String::from_utf8_lossy(&bytes));
    // The start of the HTTP/2 preface, then nothing: no HTTP/1 answer is right either.
    let (bytes, took) = exchange(&septa, b"PRI * HTTP/2.0\r\n");
    assert!(
        took < Duration::from_secs(5),
        "still connected after {took:?}"
    );
    assert!(bytes.is_empty(), "{:?}", String::from_utf8_lossy(&bytes));
    // An idle keep-alive connection after a complete exchange, and one with blank lines only.
    let (bytes, took) = exchange(&septa, b"GET /once HTTP/1.1\r\nhost: x\r\n\r\n\r\n");
    assert!(
        took < Duration::from_secs(5),
        "still connected after {took:?}"
    );
    assert_eq!(answers_of(&bytes), [200]);
}

#[test]
fn http2_with_prior_knowledge_passes_the_framing_check() {
    let (septa, _dir) = start();
    let addr = septa.addr;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let statuses = runtime.block_on(async move {
        use http_body_util::{BodyExt, Full};
        let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
        let (mut sender, conn) = hyper::client::conn::http2::handshake(
            hyper_util::rt::TokioExecutor::new(),
            hyper_util::rt::TokioIo::new(stream),
        )
        .await
        .unwrap();
        tokio::spawn(conn);
        let mut statuses = Vec::new();
        for _ in 0..3 {
            let request = hyper::Request::post(format!("http://{addr}/h2"))
                .body(Full::new(bytes::Bytes::from_static(b"hello")))
                .unwrap();
            let response = sender.send_request(request).await.unwrap();
            statuses.push(response.status().as_u16());
            response.into_body().collect().await.unwrap();
        }
        statuses
    });
    assert_eq!(statuses, [200, 200, 200]);
}

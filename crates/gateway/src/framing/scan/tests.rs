#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use super::*;

const LIMITS: ScanLimits = ScanLimits {
    max_head_bytes: 8192,
    max_headers: 100,
};

/// What a scanner concluded: heads completed, the refusal, whether it is idle between requests.
#[derive(Debug, PartialEq, Eq)]
struct Outcome {
    heads: u64,
    refusal: Option<Refusal>,
    idle: bool,
}

fn scan_in(pieces: impl IntoIterator<Item = impl AsRef<[u8]>>, limits: ScanLimits) -> Scanner {
    let mut scanner = Scanner::new(limits);
    for piece in pieces {
        scanner.observe(piece.as_ref());
        assert!(
            scanner.pending.len() <= limits.max_head_bytes,
            "pending grew to {}",
            scanner.pending.len()
        );
    }
    scanner
}

fn outcome(scanner: &Scanner) -> Outcome {
    Outcome {
        heads: scanner.heads,
        refusal: scanner.refusal(),
        idle: scanner.state == State::Head && scanner.pending.is_empty(),
    }
}

/// Scans `bytes` in one read, split in two at every boundary, a byte at a time, and in uneven
/// pieces; every way of reading must reach the same outcome, which is returned.
fn scan(bytes: &[u8]) -> Outcome {
    let whole = outcome(&scan_in([bytes], LIMITS));
    for at in 0..=bytes.len() {
        let (a, b) = bytes.split_at(at);
        assert_eq!(outcome(&scan_in([a, b], LIMITS)), whole, "split at {at}");
    }
    let bytewise = scan_in(bytes.chunks(1), LIMITS);
    assert_eq!(outcome(&bytewise), whole, "a byte at a time");
    for size in [2, 3, 5, 7, 13] {
        let uneven = scan_in(bytes.chunks(size), LIMITS);
        assert_eq!(outcome(&uneven), whole, "pieces of {size}");
    }
    whole
}

fn refused(index: u64, error: FramingError) -> Option<Refusal> {
    Some(Refusal { index, error })
}

const CLEAN_LENGTH: &[u8] = b"POST /a HTTP/1.1\r\nhost: x\r\ncontent-length: 5\r\n\r\nhello";
const CLEAN_CHUNKED: &[u8] = b"POST /b HTTP/1.1\r\nhost: x\r\ntransfer-encoding: chunked\r\n\r\n\
5;name=value;other\r\nhello\r\n\
1A \t; ext=\"quoted\"\r\nabcdefghijklmnopqrstuvwxyz\r\n\
0;last\r\nx-trailer: one\r\nx-other: two\r\n\r\n";
const CLEAN_GET: &[u8] = b"GET /c?q=1 HTTP/1.1\r\nhost: x\r\n\r\n";

#[test]
fn pipelined_clean_requests_are_followed_to_the_end() {
    let mut bytes = Vec::new();
    for request in [
        CLEAN_LENGTH,
        CLEAN_CHUNKED,
        CLEAN_GET,
        CLEAN_CHUNKED,
        CLEAN_LENGTH,
    ] {
        bytes.extend_from_slice(request);
    }
    bytes.extend_from_slice(b"GET /http10 HTTP/1.0\r\n\r\n");
    let outcome = scan(&bytes);
    assert_eq!(
        outcome,
        Outcome {
            heads: 6,
            refusal: None,
            idle: true
        }
    );
}

#[test]
fn blank_lines_between_requests_are_skipped_as_hyper_skips_them() {
    let mut bytes = CLEAN_GET.to_vec();
    bytes.extend_from_slice(b"\r\n\r\n\n");
    bytes.extend_from_slice(CLEAN_LENGTH);
    assert_eq!(scan(&bytes).heads, 2);
}

#[test]
fn lines_ending_in_a_bare_newline_are_read_as_httparse_reads_them() {
    let mut bytes = b"POST /lf HTTP/1.1\nhost: x\ncontent-length: 2\n\nok".to_vec();
    bytes.extend_from_slice(CLEAN_GET);
    assert_eq!(scan(&bytes).heads, 2);
}

#[test]
fn a_body_that_looks_like_a_request_is_not_read_as_one() {
    let smuggled = b"GET /x HTTP/1.1\r\ncontent-length: 1\r\ntransfer-encoding: chunked\r\n\r\n";
    let mut bytes = format!(
        "POST /a HTTP/1.1\r\ncontent-length: {}\r\n\r\n",
        smuggled.len()
    )
    .into_bytes();
    bytes.extend_from_slice(smuggled);
    bytes.extend_from_slice(
        format!(
            "POST /b HTTP/1.1\r\ntransfer-encoding: chunked\r\n\r\n{:x}\r\n",
            smuggled.len()
        )
        .as_bytes(),
    );
    bytes.extend_from_slice(smuggled);
    bytes.extend_from_slice(b"\r\n0\r\n\r\n");
    let outcome = scan(&bytes);
    assert_eq!(outcome.refusal, None);
    assert_eq!(outcome.heads, 2);
    assert!(outcome.idle);
}

#[test]
fn ambiguous_heads_are_refused_with_what_was_wrong() {
    use FramingError::*;
    let cases: &[(&str, FramingError)] = &[
        (
            "content-length: 5\r\ntransfer-encoding: chunked",
            LengthAndTransferEncoding,
        ),
        (
            "transfer-encoding: chunked\r\ncontent-length: 5",
            LengthAndTransferEncoding,
        ),
        (
            "Content-Length: 5\r\nCONTENT-LENGTH: 5",
            RepeatedContentLength,
        ),
        (
            "content-length: 5\r\ncontent-length: 6",
            RepeatedContentLength,
        ),
        ("content-length: 5, 5", RepeatedContentLength),
        ("content-length: 5,5", RepeatedContentLength),
        ("content-length: +5", InvalidContentLength),
        ("content-length: -1", InvalidContentLength),
        ("content-length: 0x5", InvalidContentLength),
        ("content-length: 5 5", InvalidContentLength),
        ("content-length: ", InvalidContentLength),
        ("content-length: 99999999999999999999", InvalidContentLength),
        (
            "transfer-encoding: chunked\r\ntransfer-encoding: chunked",
            RepeatedTransferEncoding,
        ),
        (
            "transfer-encoding: gzip, chunked",
            UnsupportedTransferEncoding,
        ),
        (
            "transfer-encoding: chunked, chunked",
            UnsupportedTransferEncoding,
        ),
        ("transfer-encoding: identity", UnsupportedTransferEncoding),
        ("transfer-encoding: xchunked", UnsupportedTransferEncoding),
    ];
    for (headers, error) in cases {
        let head = format!("POST /a HTTP/1.1\r\nhost: x\r\n{headers}\r\n\r\n");
        let outcome = scan(head.as_bytes());
        assert_eq!(outcome.refusal, refused(0, *error), "{headers}");
        assert_eq!(outcome.heads, 0, "{headers}");
    }
    let http10 = scan(b"POST /a HTTP/1.0\r\ntransfer-encoding: chunked\r\n\r\n0\r\n\r\n");
    assert_eq!(http10.refusal, refused(0, TransferEncodingOnHttp10));
}

#[test]
fn chunked_in_any_case_is_chunked() {
    let mut bytes = b"POST /a HTTP/1.1\r\nTransfer-Encoding:  Chunked \r\n\r\n0\r\n\r\n".to_vec();
    bytes.extend_from_slice(CLEAN_GET);
    let outcome = scan(&bytes);
    assert_eq!(outcome.refusal, None);
    assert_eq!(outcome.heads, 2);
}

#[test]
fn the_refused_request_is_named_by_its_place_on_the_connection() {
    let mut bytes = Vec::new();
    for request in [CLEAN_LENGTH, CLEAN_CHUNKED] {
        bytes.extend_from_slice(request);
    }
    bytes.extend_from_slice(
        b"POST /smuggle HTTP/1.1\r\ncontent-length: 4\r\ntransfer-encoding: chunked\r\n\r\n\
0\r\n\r\nGET /admin HTTP/1.1\r\n\r\n",
    );
    let outcome = scan(&bytes);
    assert_eq!(
        outcome.refusal,
        refused(2, FramingError::LengthAndTransferEncoding)
    );
}

#[test]
fn a_malformed_chunked_body_refuses_the_request_after_it() {
    for body in [
        "5\r\nhello\r\nzz\r\n",           // not a size
        "5\r\nhello!\r\n0\r\n\r\n",       // data longer than the size
        "5\nhello\r\n0\r\n\r\n",          // size line without CR
        "5;ext\nhello\r\n0\r\n\r\n",      // newline inside an extension
        "5 5\r\nhello\r\n0\r\n\r\n",      // digits after whitespace
        "0\r\nx-trailer: one\rx\r\n\r\n", // CR without LF in a trailer
        "0\r\n\rx",                       // end without LF
        "10000000000000000\r\n",          // size over u64
    ] {
        let mut bytes = CLEAN_GET.to_vec();
        bytes.extend_from_slice(b"POST /a HTTP/1.1\r\ntransfer-encoding: chunked\r\n\r\n");
        bytes.extend_from_slice(body.as_bytes());
        bytes.extend_from_slice(CLEAN_GET);
        let outcome = scan(&bytes);
        assert_eq!(
            outcome.refusal,
            refused(2, FramingError::MalformedChunkedBody),
            "{body:?}"
        );
    }
}

#[test]
fn a_malformed_head_is_refused() {
    let outcome = scan(b"GET /a HTTP/1.1\r\nbad header\r\n\r\n");
    assert_eq!(outcome.refusal, refused(0, FramingError::MalformedHead));
    let outcome = scan(b"GET /a HTTP/2.0\r\n\r\n");
    assert_eq!(outcome.refusal, refused(0, FramingError::MalformedHead));
}

#[test]
fn http2_with_prior_knowledge_passes_through() {
    let mut bytes = H2_PREFACE.to_vec();
    // Frames, then bytes that would be refused as HTTP/1.
    bytes.extend_from_slice(b"\0\0\0\x04\0\0\0\0\0");
    bytes.extend_from_slice(b"POST / HTTP/1.1\r\ncontent-length: 1\r\ncontent-length: 1\r\n\r\n");
    let outcome = scan(&bytes);
    assert_eq!(outcome.refusal, None);
    assert_eq!(outcome.heads, 0);
    assert!(scan_in([&bytes], LIMITS).protocol_known());
    // A prefix of the preface is not yet a protocol.
    assert!(!scan_in([&H2_PREFACE[..10]], LIMITS).protocol_known());
}

#[test]
fn a_request_that_starts_like_the_preface_is_http1() {
    let mut bytes =
        b"PRI /x HTTP/1.1\r\ncontent-length: 2\r\n\r\nokPUT /y HTTP/1.1\r\n\r\n".to_vec();
    bytes.extend_from_slice(CLEAN_GET);
    let outcome = scan(&bytes);
    assert_eq!(outcome.refusal, None);
    assert_eq!(outcome.heads, 3);
}

#[test]
fn a_head_too_large_is_refused_without_growing_past_the_limit() {
    let mut bytes = b"GET / HTTP/1.1\r\nx-big: ".to_vec();
    bytes.resize(LIMITS.max_head_bytes + 100, b'a');
    for pieces in [1, 2, 1000] {
        let scanner = scan_in(bytes.chunks(bytes.len().div_ceil(pieces)), LIMITS);
        assert_eq!(
            scanner.refusal(),
            refused(0, FramingError::HeadTooLarge),
            "in {pieces} pieces"
        );
    }
    // Just under the limit is fine.
    let mut head = b"GET / HTTP/1.1\r\nx-big: ".to_vec();
    head.resize(LIMITS.max_head_bytes - 4, b'a');
    head.extend_from_slice(b"\r\n\r\n");
    let scanner = scan_in(head.chunks(100), LIMITS);
    assert_eq!(scanner.refusal(), None);
    assert_eq!(scanner.heads, 1);
    assert!(scanner.pending.capacity() <= 1024, "the buffer is released");
}

/// Found by `fuzz/fuzz_targets/framing_scan.rs`: with a head past the limit, one read parsed it
/// whole (and refused it for its field count, or accepted it) where a head spanning reads was
/// refused as too large; and at the limit a malformed head was called too large. How the bytes
/// arrive no longer changes the verdict.
#[test]
fn a_head_past_the_limit_gets_one_verdict_however_it_arrives() {
    let small = ScanLimits {
        max_head_bytes: 40,
        max_headers: 4,
    };
    let verdicts = |bytes: &[u8]| -> Vec<Option<Refusal>> {
        (0..=bytes.len())
            .map(|at| {
                let (a, b) = bytes.split_at(at);
                scan_in([a, b], small).refusal()
            })
            .collect()
    };
    let many = b"GET /a HTTP/1.1\r\nhost: x\r\nx-a: 1\r\nx-b: 2\r\nx-c: 3\r\nx-d: 4\r\n\r\n";
    let long_but_complete = b"GET /a HTTP/1.1\r\nx-long: aaaaaaaaaaaaaaaaaaaaaaaaa\r\n\r\n";
    for bytes in [&many[..], &long_but_complete[..]] {
        for verdict in verdicts(bytes) {
            assert_eq!(verdict, refused(0, FramingError::HeadTooLarge));
        }
    }
    // A fault within the limit is named, however far the head then runs on.
    let mut malformed = b"GET /a HTTP/1.1\r\nbad header\r\n".to_vec();
    malformed.resize(60, b'a');
    for verdict in verdicts(&malformed) {
        assert_eq!(verdict, refused(0, FramingError::MalformedHead));
    }
}

#[test]
fn header_counts_follow_the_connection_limit() {
    let head = |count: usize| {
        let mut h = String::from("GET / HTTP/1.1\r\n");
        for i in 0..count {
            h.push_str(&format!("x-h{i}: v\r\n"));
        }
        h.push_str("\r\n");
        h
    };
    let scanner = scan_in([head(101)], LIMITS);
    assert_eq!(scanner.refusal(), refused(0, FramingError::TooManyHeaders));
    let many = ScanLimits {
        max_head_bytes: 16 * 1024,
        max_headers: 150,
    };
    let scanner = scan_in([head(150)], many);
    assert_eq!((scanner.refusal(), scanner.heads), (None, 1));
    let scanner = scan_in([head(151)], many);
    assert_eq!(scanner.refusal(), refused(0, FramingError::TooManyHeaders));
}

#[test]
fn a_head_counts_as_started_only_once_a_request_line_begins() {
    assert!(!scan_in([&b""[..]], LIMITS).head_started());
    assert!(!scan_in([&b"\r\n"[..]], LIMITS).head_started());
    assert!(scan_in([&b"GET / HT"[..]], LIMITS).head_started());
    assert!(scan_in([&b"G"[..], &b"ET / HTTP/1.1\r\n"[..]], LIMITS).head_started());
    assert!(!scan_in([CLEAN_GET], LIMITS).head_started());
    let in_body = scan_in([&CLEAN_LENGTH[..CLEAN_LENGTH.len() - 2]], LIMITS);
    assert!(!in_body.head_started());
}

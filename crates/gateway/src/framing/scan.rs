//! Follows the HTTP/1 requests in a connection's byte stream — each head, then its body — and
//! finds the first request whose framing two parsers could read differently.
//!
//! It reads the same bytes hyper reads, in the same order, with the same head parser (`httparse`
//! with its default configuration), and follows bodies exactly as hyper's decoder does, so for
//! every request hyper accepts it knows where the next head starts. Where the two could disagree
//! (a byte hyper would refuse, a head past the size limit) it refuses too: the connection closes
//! after the refused request either way, so failing closed costs a client nothing.

use std::mem::MaybeUninit;

use http::StatusCode;

/// The HTTP/2 prior-knowledge preface: a connection that opens with it is not HTTP/1.
const H2_PREFACE: &[u8; 24] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// Header slots kept on the stack; a larger `max_headers` takes them from the heap.
const STACK_HEADERS: usize = 100;

/// Why a request was refused before the gateway saw it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub(crate) enum FramingError {
    /// `Content-Length` and `Transfer-Encoding` together (request smuggling's classic shape).
    #[error("request framing is ambiguous: both Content-Length and Transfer-Encoding")]
    LengthAndTransferEncoding,
    /// `Content-Length` in two header lines, or as a list (`5, 5`).
    #[error("request framing is ambiguous: Content-Length is given more than once")]
    RepeatedContentLength,
    /// A `Content-Length` that is not plain decimal digits (`+5`, `-1`, `0x5`, empty).
    #[error("request framing is ambiguous: Content-Length is not a decimal number")]
    InvalidContentLength,
    /// `Transfer-Encoding` in two header lines.
    #[error("request framing is ambiguous: Transfer-Encoding is given more than once")]
    RepeatedTransferEncoding,
    /// A `Transfer-Encoding` other than exactly `chunked` (`gzip, chunked`, `identity`, ...).
    #[error("request framing is ambiguous: Transfer-Encoding other than `chunked`")]
    UnsupportedTransferEncoding,
    /// `Transfer-Encoding` on HTTP/1.0, which does not define it.
    #[error("request framing is ambiguous: Transfer-Encoding on an HTTP/1.0 request")]
    TransferEncodingOnHttp10,
    /// The previous request's chunked body broke the chunked syntax, so where this request
    /// starts is a guess.
    #[error("request framing is ambiguous: the previous request's chunked body is malformed")]
    MalformedChunkedBody,
    /// A head `httparse` cannot read.
    #[error("request head is malformed")]
    MalformedHead,
    /// More header fields than the connection admits.
    #[error("request has too many header fields")]
    TooManyHeaders,
    /// A head longer than the connection admits.
    #[error("request header section is too large")]
    HeadTooLarge,
}

impl FramingError {
    /// The status the client gets.
    pub(crate) fn status(self) -> StatusCode {
        match self {
            Self::TooManyHeaders | Self::HeadTooLarge => {
                StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE
            }
            _ => StatusCode::BAD_REQUEST,
        }
    }
}

/// Bounds that match what hyper is configured with on the same connection.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ScanLimits {
    /// hyper's `max_buf_size`: a head still incomplete at this many bytes is refused.
    pub max_head_bytes: usize,
    /// hyper's `max_headers`.
    pub max_headers: usize,
}

/// The first refused request on a connection: its index (0 for the first request) and why.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Refusal {
    /// Which request, counting from 0; every later one is refused too.
    pub index: u64,
    /// What was wrong.
    pub error: FramingError,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Nothing but a prefix of the HTTP/2 preface yet (`matched` bytes of it).
    Preface { matched: usize },
    /// Reading a head; `Scanner::pending` holds its start when it spans reads.
    Head,
    /// Inside a `Content-Length` body.
    Length { remaining: u64 },
    /// Inside a chunked body.
    Chunked { phase: Chunk, size: u64 },
    /// Not watching: HTTP/2, or a request was refused and the connection closes after it.
    Done,
}

/// Where a chunked body is, named as hyper's decoder names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Chunk {
    Start,
    Size,
    SizeLws,
    Extension,
    SizeLf,
    Data,
    DataCr,
    DataLf,
    EndCr,
    Trailer,
    TrailerLf,
    EndLf,
}

/// What a complete head says about the body that follows it.
enum Body {
    None,
    Length(u64),
    Chunked,
}

/// The framing scanner of one connection.
#[derive(Debug)]
pub(crate) struct Scanner {
    state: State,
    /// The start of a head that spans reads (never more than `max_head_bytes`). Empty
    /// otherwise: a head inside one read is parsed where it lies.
    pending: Vec<u8>,
    /// Heads completed so far: the index of the request being read.
    heads: u64,
    refusal: Option<Refusal>,
    limits: ScanLimits,
}

impl Scanner {
    /// A scanner for a fresh connection.
    pub(crate) fn new(limits: ScanLimits) -> Self {
        Self {
            state: State::Preface { matched: 0 },
            pending: Vec::new(),
            heads: 0,
            refusal: None,
            limits,
        }
    }

    /// The first refused request, if any.
    pub(crate) fn refusal(&self) -> Option<Refusal> {
        self.refusal
    }

    /// Heads completed so far, and whether the scanner is between requests (no head or body
    /// begun). With [`Scanner::refusal`], what every way of splitting the same bytes into reads
    /// must agree on; the fuzz target checks that they do.
    #[cfg(feature = "fuzzing")]
    pub(crate) fn position(&self) -> (u64, bool) {
        let idle = self.state == State::Head && self.pending.is_empty();
        (self.heads, idle)
    }

    /// How many bytes of an unfinished head the scanner holds (never more than
    /// `max_head_bytes`).
    #[cfg(feature = "fuzzing")]
    pub(crate) fn pending_len(&self) -> usize {
        self.pending.len()
    }

    /// Whether the protocol is known: past the point where HTTP/2's preface could still come.
    pub(crate) fn protocol_known(&self) -> bool {
        !matches!(self.state, State::Preface { .. })
    }

    /// Whether the client has started a request head it has not finished (blank lines before
    /// a request do not count).
    pub(crate) fn head_started(&self) -> bool {
        self.state == State::Head && self.pending.iter().any(|b| !matches!(b, b'\r' | b'\n'))
    }

    /// Follows `data`, the next bytes read from the connection.
    pub(crate) fn observe(&mut self, mut data: &[u8]) {
        while !data.is_empty() {
            let used = match self.state {
                State::Done => return,
                State::Preface { matched } => self.preface(matched, data),
                State::Head => self.head(data),
                State::Length { remaining } => {
                    let n = usize::try_from(remaining).map_or(data.len(), |r| r.min(data.len()));
                    self.state = match remaining - n as u64 {
                        0 => State::Head,
                        remaining => State::Length { remaining },
                    };
                    n
                }
                State::Chunked { phase, size } => self.chunked(phase, size, data),
            };
            data = &data[used..];
        }
    }

    fn refuse(&mut self, index: u64, error: FramingError) {
        self.refusal = Some(Refusal { index, error });
        self.state = State::Done;
        self.pending = Vec::new();
    }

    /// Matches the opening bytes against the HTTP/2 preface, the way hyper-util's version
    /// detection does. Returns the bytes used: none when HTTP/1 turns out to start here.
    fn preface(&mut self, matched: usize, data: &[u8]) -> usize {
        let n = data.len().min(H2_PREFACE.len() - matched);
        if data[..n] == H2_PREFACE[matched..matched + n] {
            self.state = if matched + n == H2_PREFACE.len() {
                State::Done
            } else {
                State::Preface {
                    matched: matched + n,
                }
            };
            return n;
        }
        // HTTP/1: the preface bytes of earlier reads start the first head.
        self.pending.extend_from_slice(&H2_PREFACE[..matched]);
        self.state = State::Head;
        0
    }

    /// Reads head bytes; returns how many of `data` belong to the head (all of them while it is
    /// incomplete).
    fn head(&mut self, data: &[u8]) -> usize {
        if self.pending.is_empty() {
            // The common case: the whole head in one read, parsed in place without a copy. Only
            // the first `max_head_bytes` can hold it, as when it spans reads: a head past them is
            // too large however the bytes arrive.
            let window = &data[..data.len().min(self.limits.max_head_bytes)];
            return match parse_head(window, self.limits.max_headers) {
                Ok(Some((len, body))) => {
                    self.start_body(body);
                    len
                }
                Ok(None) if data.len() >= self.limits.max_head_bytes => {
                    self.refuse(self.heads, FramingError::HeadTooLarge);
                    data.len()
                }
                Ok(None) => {
                    self.pending.extend_from_slice(data);
                    data.len()
                }
                Err(error) => {
                    self.refuse(self.heads, error);
                    data.len()
                }
            };
        }
        // A head spanning reads: copy it line by line and parse only after an empty line, where
        // it could end, so nothing past the head is copied and a client sending a byte at a
        // time costs about one parse per head, not one per byte.
        let before = self.pending.len();
        let mut used = 0;
        while used < data.len() {
            let rest = &data[used..];
            let line = rest
                .iter()
                .position(|&b| b == b'\n')
                .map_or(rest.len(), |i| i + 1);
            let room = self
                .limits
                .max_head_bytes
                .saturating_sub(self.pending.len());
            let take = line.min(room);
            self.pending.extend_from_slice(&rest[..take]);
            used += take;
            if self.pending.ends_with(b"\n\n") || self.pending.ends_with(b"\n\r\n") {
                match parse_head(&self.pending, self.limits.max_headers) {
                    Ok(Some((len, body))) => {
                        // Release a large buffer; keep a small one for the next slow head.
                        if self.pending.capacity() > 1024 {
                            self.pending = Vec::new();
                        } else {
                            self.pending.clear();
                        }
                        self.start_body(body);
                        return len.saturating_sub(before);
                    }
                    Ok(None) => {}
                    Err(error) => {
                        self.refuse(self.heads, error);
                        return data.len();
                    }
                }
            }
            if self.pending.len() >= self.limits.max_head_bytes {
                // What one read of these bytes would conclude: a malformed head or too many
                // fields within the limit says so, else the head is too large.
                let error = match parse_head(&self.pending, self.limits.max_headers) {
                    Err(error) => error,
                    Ok(_) => FramingError::HeadTooLarge,
                };
                self.refuse(self.heads, error);
                return data.len();
            }
        }
        used
    }

    fn start_body(&mut self, body: Body) {
        self.heads += 1;
        self.state = match body {
            Body::None | Body::Length(0) => State::Head,
            Body::Length(remaining) => State::Length { remaining },
            Body::Chunked => State::Chunked {
                phase: Chunk::Start,
                size: 0,
            },
        };
    }

    /// Follows a chunked body as hyper's decoder does; returns the bytes used.
    fn chunked(&mut self, phase: Chunk, size: u64, data: &[u8]) -> usize {
        if phase == Chunk::Data {
            let n = usize::try_from(size).map_or(data.len(), |s| s.min(data.len()));
            let size = size - n as u64;
            let phase = if size == 0 {
                Chunk::DataCr
            } else {
                Chunk::Data
            };
            self.state = State::Chunked { phase, size };
            return n;
        }
        let byte = data[0];
        let next = match (phase, byte, hex_digit(byte)) {
            (Chunk::Start | Chunk::Size, _, Some(digit)) => size
                .checked_mul(16)
                .and_then(|s| s.checked_add(u64::from(digit)))
                .map(|size| (Chunk::Size, size)),
            (Chunk::Size | Chunk::SizeLws, b'\t' | b' ', _) => Some((Chunk::SizeLws, size)),
            (Chunk::Size | Chunk::SizeLws | Chunk::Extension, b';', _) => {
                Some((Chunk::Extension, size))
            }
            (Chunk::Size | Chunk::SizeLws | Chunk::Extension, b'\r', _) => {
                Some((Chunk::SizeLf, size))
            }
            (Chunk::Extension, b'\n', _) => None,
            (Chunk::Extension, _, _) => Some((Chunk::Extension, size)),
            (Chunk::SizeLf, b'\n', _) if size == 0 => Some((Chunk::EndCr, 0)),
            (Chunk::SizeLf, b'\n', _) => Some((Chunk::Data, size)),
            (Chunk::DataCr, b'\r', _) => Some((Chunk::DataLf, 0)),
            (Chunk::DataLf, b'\n', _) => Some((Chunk::Start, 0)),
            (Chunk::EndCr, b'\r', _) => Some((Chunk::EndLf, 0)),
            (Chunk::Trailer, b'\r', _) => Some((Chunk::TrailerLf, 0)),
            (Chunk::EndCr | Chunk::Trailer, _, _) => Some((Chunk::Trailer, 0)),
            (Chunk::TrailerLf, b'\n', _) => Some((Chunk::EndCr, 0)),
            (Chunk::EndLf, b'\n', _) => {
                self.state = State::Head;
                return 1;
            }
            _ => None,
        };
        match next {
            Some((phase, size)) => self.state = State::Chunked { phase, size },
            // hyper fails this body, so the connection should end with it; if it does not,
            // the next request is refused rather than read from a guessed position.
            None => self.refuse(self.heads, FramingError::MalformedChunkedBody),
        }
        1
    }
}

fn hex_digit(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// Parses a head as hyper does (the same call, into header slots left uninitialised): `Ok(None)`
/// while incomplete, else its length and body framing.
fn parse_head(bytes: &[u8], max_headers: usize) -> Result<Option<(usize, Body)>, FramingError> {
    let mut stack = [const { MaybeUninit::<httparse::Header<'_>>::uninit() }; STACK_HEADERS];
    let mut heap = Vec::new();
    let headers = if max_headers <= STACK_HEADERS {
        &mut stack[..max_headers]
    } else {
        heap.resize_with(max_headers, MaybeUninit::uninit);
        &mut heap[..]
    };
    let mut request = httparse::Request::new(&mut []);
    match request.parse_with_uninit_headers(bytes, headers) {
        Ok(httparse::Status::Complete(len)) => body_of(&request).map(|body| Some((len, body))),
        Ok(httparse::Status::Partial) => Ok(None),
        Err(httparse::Error::TooManyHeaders) => Err(FramingError::TooManyHeaders),
        Err(_) => Err(FramingError::MalformedHead),
    }
}

/// The body framing a head declares, or why it is ambiguous.
fn body_of(request: &httparse::Request<'_, '_>) -> Result<Body, FramingError> {
    let mut lengths = 0;
    let mut length = None;
    let mut listed = false;
    let mut encodings = 0;
    let mut chunked = false;
    for header in request.headers.iter() {
        let value = header.value.trim_ascii();
        if header.name.eq_ignore_ascii_case("content-length") {
            lengths += 1;
            listed |= value.contains(&b',');
            length = decimal(value);
        } else if header.name.eq_ignore_ascii_case("transfer-encoding") {
            encodings += 1;
            chunked = value.eq_ignore_ascii_case(b"chunked");
        }
    }
    if lengths > 0 && encodings > 0 {
        Err(FramingError::LengthAndTransferEncoding)
    } else if lengths > 1 || listed {
        Err(FramingError::RepeatedContentLength)
    } else if encodings > 1 {
        Err(FramingError::RepeatedTransferEncoding)
    } else if encodings == 1 && !chunked {
        Err(FramingError::UnsupportedTransferEncoding)
    } else if encodings == 1 && request.version == Some(0) {
        Err(FramingError::TransferEncodingOnHttp10)
    } else if encodings == 1 {
        Ok(Body::Chunked)
    } else if lengths == 1 {
        length
            .map(Body::Length)
            .ok_or(FramingError::InvalidContentLength)
    } else {
        Ok(Body::None)
    }
}

/// Plain decimal digits (no sign, no spaces inside), within `u64`.
fn decimal(value: &[u8]) -> Option<u64> {
    if value.is_empty() {
        return None;
    }
    value.iter().try_fold(0u64, |n, &b| {
        let digit = u64::from(b.checked_sub(b'0').filter(|d| *d < 10)?);
        n.checked_mul(10)?.checked_add(digit)
    })
}

#[cfg(test)]
mod tests;

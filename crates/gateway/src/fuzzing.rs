//! What the cargo-fuzz targets in `fuzz/` drive that is private to the gateway: the framing
//! scanner of a connection and the JWKS parser. Compiled only with the `fuzzing` feature; the
//! wrappers add no behaviour, they only name what the scanner concluded in plain types.

use crate::auth::jwks::KeySet;
use crate::framing::{ScanLimits, Scanner};

/// The framing scanner of one HTTP/1 connection (see `framing::scan`).
#[derive(Debug)]
pub struct FramingScanner {
    scanner: Scanner,
}

/// What a scanner has concluded from the bytes it followed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScanOutcome {
    /// Request heads completed.
    pub heads: u64,
    /// The first refused request: its index on the connection and the refusal's message.
    pub refusal: Option<(u64, String)>,
    /// Between requests: no head or body begun.
    pub idle: bool,
    /// Past the point where the HTTP/2 preface could still come.
    pub protocol_known: bool,
}

impl FramingScanner {
    /// A scanner for a fresh connection whose hyper admits heads of `max_head_bytes` and
    /// `max_headers` fields.
    pub fn new(max_head_bytes: usize, max_headers: usize) -> Self {
        let limits = ScanLimits {
            max_head_bytes,
            max_headers,
        };
        Self {
            scanner: Scanner::new(limits),
        }
    }

    /// Follows `data`, the next bytes read from the connection.
    pub fn observe(&mut self, data: &[u8]) {
        self.scanner.observe(data);
    }

    /// How many bytes of an unfinished head the scanner holds; it promises never more than
    /// `max_head_bytes`.
    pub fn pending_len(&self) -> usize {
        self.scanner.pending_len()
    }

    /// What the scanner has concluded so far.
    pub fn outcome(&self) -> ScanOutcome {
        let (heads, idle) = self.scanner.position();
        ScanOutcome {
            heads,
            refusal: self
                .scanner
                .refusal()
                .map(|refusal| (refusal.index, refusal.error.to_string())),
            idle,
            protocol_known: self.scanner.protocol_known(),
        }
    }

    /// Whether the client has started a head it has not finished.
    pub fn head_started(&self) -> bool {
        self.scanner.head_started()
    }
}

/// Parses a JWKS document as a verifier loads one: the number of keys, or why it is refused.
pub fn parse_jwks(document: &[u8]) -> Result<usize, String> {
    KeySet::parse(document).map(|keys| keys.len())
}

//! A connection's bytes → the gateway's HTTP/1 framing scanner (`FramingScanner`).
//!
//! The scanner follows the same bytes hyper reads, in whatever pieces the socket hands them
//! over, so how the bytes are split into reads must not change what it concludes: the heads it
//! completed, the request it refused and why, and whether it is between requests. It never holds
//! more of an unfinished head than the head limit, and a refusal, once made, stands.
//!
//! One difference is by design: a head that spans reads is parsed only once a line could end it
//! (or at the limit), so a malformed head, or one with too many fields, is refused as soon as
//! one read holds the fault, but only at its end when it trickles in. hyper refuses such a head
//! itself either way. So an early refusal of the head being read matches a scanner still in it.
//!
//! The first byte picks the limits (bit 7: hyper's defaults, 8 KiB and 100 fields, or small
//! ones, so the limit paths are reached); the second picks how the rest is split. The rest is the
//! stream.

#![no_main]

use libfuzzer_sys::fuzz_target;
use septa_gateway::fuzzing::{FramingScanner, ScanOutcome};

/// Scans `pieces` in order, checking what must hold after every read.
fn scan<'a>(
    pieces: impl IntoIterator<Item = &'a [u8]>,
    limits: (usize, usize),
    how: &str,
) -> ScanOutcome {
    let mut scanner = FramingScanner::new(limits.0, limits.1);
    let mut before = scanner.outcome();
    for piece in pieces {
        scanner.observe(piece);
        assert!(
            scanner.pending_len() <= limits.0,
            "{how}: holds {} bytes of a head, over the limit of {}",
            scanner.pending_len(),
            limits.0
        );
        let after = scanner.outcome();
        assert!(after.heads >= before.heads, "{how}: heads went back");
        if before.refusal.is_some() {
            assert_eq!(after.refusal, before.refusal, "{how}: a refusal changed");
        }
        before = after;
    }
    before
}

/// Whether two ways of reading the same bytes agree: the same outcome, or one refused the head
/// the other is still reading, for a fault in it that only its end reveals to the other.
fn agree(a: &ScanOutcome, b: &ScanOutcome) -> bool {
    let early = |refused: &ScanOutcome, reading: &ScanOutcome| {
        reading.refusal.is_none()
            && !reading.idle
            && refused.heads == reading.heads
            && refused.protocol_known == reading.protocol_known
            && refused.refusal.as_ref().is_some_and(|(index, why)| {
                *index == reading.heads
                    && (why == "request head is malformed"
                        || why == "request has too many header fields")
            })
    };
    a == b || early(a, b) || early(b, a)
}

fuzz_target!(|data: &[u8]| {
    let [shape, split, stream @ ..] = data else {
        return;
    };
    let limits = if shape & 0x80 == 0 {
        (8192, 100)
    } else {
        (
            16 + usize::from(shape & 0x3f) * 8,
            1 + usize::from(shape & 0x0f),
        )
    };
    let whole = scan([stream], limits, "in one read");
    let at = stream.len() * usize::from(*split) / 256;
    let (a, b) = stream.split_at(at);
    let two = scan([a, b], limits, "in two");
    assert!(
        agree(&two, &whole),
        "split at {at}: {two:?}, in one read: {whole:?}"
    );
    let size = 1 + usize::from(split % 17);
    let pieces = scan(stream.chunks(size), limits, "in pieces");
    assert!(
        agree(&pieces, &whole),
        "in pieces of {size}: {pieces:?}, in one read: {whole:?}"
    );
    if stream.len() <= 4096 {
        let bytes = scan(stream.chunks(1), limits, "a byte at a time");
        assert!(
            agree(&bytes, &whole),
            "a byte at a time: {bytes:?}, in one read: {whole:?}"
        );
    }
});

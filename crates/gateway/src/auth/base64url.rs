//! Base64url without padding (RFC 7515 §2), strict: anything else is an error.

/// Decodes `input`; `None` on any character outside the alphabet, on padding, or on trailing
/// bits that are not zero (so a token has exactly one spelling).
pub(crate) fn decode(input: &str) -> Option<Vec<u8>> {
    fn value(c: u8) -> Option<u32> {
        Some(match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'-' => 62,
            b'_' => 63,
            _ => return None,
        } as u32)
    }
    let bytes = input.as_bytes();
    if bytes.len() % 4 == 1 {
        return None;
    }
    let mut out = Vec::with_capacity(bytes.len() * 3 / 4);
    for chunk in bytes.chunks(4) {
        let mut acc = 0u32;
        for (i, &c) in chunk.iter().enumerate() {
            acc |= value(c)? << (18 - 6 * i);
        }
        let produced = chunk.len() * 6 / 8;
        let bytes = acc.to_be_bytes();
        out.extend_from_slice(&bytes[1..1 + produced]);
        // Bits past the last whole byte must be zero.
        let used_bits = produced * 8;
        let mask = (1u32 << (24 - used_bits)).wrapping_sub(1);
        if produced < 3 && acc & mask != 0 {
            return None;
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::decode;

    #[test]
    fn decodes_the_rfc_examples_and_refuses_other_spellings() {
        assert_eq!(decode("").unwrap(), b"");
        assert_eq!(decode("Zg").unwrap(), b"f");
        assert_eq!(decode("Zm8").unwrap(), b"fo");
        assert_eq!(decode("Zm9v").unwrap(), b"foo");
        assert_eq!(decode("Zm9vYg").unwrap(), b"foob");
        assert_eq!(decode("-_8").unwrap(), [0xfb, 0xff]);
        assert!(decode("Zg==").is_none(), "padding");
        assert!(decode("Zh").is_none(), "non-zero trailing bits");
        assert!(decode("Z").is_none());
        assert!(decode("Zm9+").is_none(), "standard alphabet");
    }
}

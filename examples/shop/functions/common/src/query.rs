//! Query strings: splitting into pairs and percent-decoding.

/// Splits `query` (without the leading `?`) into decoded `(name, value)` pairs.
///
/// A pair without `=` gets an empty value; empty segments (`a=1&&b=2`) are skipped.
pub fn parse_query(query: &str) -> Vec<(String, String)> {
    query
        .split('&')
        .filter(|segment| !segment.is_empty())
        .map(|segment| match segment.split_once('=') {
            Some((name, value)) => (percent_decode(name), percent_decode(value)),
            None => (percent_decode(segment), String::new()),
        })
        .collect()
}

/// Decodes `%XX` escapes and `+` (a space, as HTML forms and most URL libraries
/// encode it), so a literal `+` must be sent as `%2B`.
///
/// A `%` not followed by two hex digits is kept as it is rather than rejected: this
/// decodes test input, and being lenient shows the caller what arrived. Bytes that do
/// not form UTF-8 are replaced.
pub fn percent_decode(input: &str) -> String {
    let bytes = input.as_bytes();
    let mut decoded = Vec::with_capacity(bytes.len());
    let mut index = 0;
    while index < bytes.len() {
        match bytes[index] {
            b'+' => {
                decoded.push(b' ');
                index += 1;
            }
            b'%' => match (
                hex_value(bytes.get(index + 1)),
                hex_value(bytes.get(index + 2)),
            ) {
                (Some(high), Some(low)) => {
                    decoded.push(high << 4 | low);
                    index += 3;
                }
                _ => {
                    decoded.push(b'%');
                    index += 1;
                }
            },
            byte => {
                decoded.push(byte);
                index += 1;
            }
        }
    }
    String::from_utf8_lossy(&decoded).into_owned()
}

fn hex_value(byte: Option<&u8>) -> Option<u8> {
    let digit = char::from(*byte?).to_digit(16)?;
    u8::try_from(digit).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_escapes_and_plus() {
        assert_eq!(percent_decode("a%20b+c%2Bd"), "a b c+d");
        assert_eq!(
            percent_decode("http%3A%2F%2Fx.internal%2F"),
            "http://x.internal/"
        );
    }

    #[test]
    fn keeps_malformed_escapes() {
        assert_eq!(percent_decode("100%"), "100%");
        assert_eq!(percent_decode("%zz"), "%zz");
    }

    #[test]
    fn splits_pairs_in_order() {
        assert_eq!(
            parse_query("to=http%3A%2F%2Fa&header=x%3A1&&header=y:2&flag"),
            vec![
                ("to".to_string(), "http://a".to_string()),
                ("header".to_string(), "x:1".to_string()),
                ("header".to_string(), "y:2".to_string()),
                ("flag".to_string(), String::new()),
            ]
        );
    }
}

//! A deterministic YAML writer for JSON values: block style, keys in the map's order, strings
//! quoted unless they are plainly strings, multi-line strings as literal blocks. Kubernetes reads
//! it like any YAML, and two runs on the same policy write the same bytes.

use serde_json::Value;

/// `values` as one YAML stream: each a document opened by `---`.
pub fn documents(values: &[Value]) -> String {
    let mut out = String::new();
    for value in values {
        out.push_str("---\n");
        write_block(&mut out, value, 0);
    }
    out
}

/// One value in block style at `indent`, ending with a newline.
fn write_block(out: &mut String, value: &Value, indent: usize) {
    let pad = " ".repeat(indent);
    match value {
        Value::Object(map) if !map.is_empty() => {
            for (key, v) in map {
                out.push_str(&pad);
                out.push_str(&scalar_text(key));
                out.push(':');
                write_after_key(out, v, indent);
            }
        }
        Value::Array(items) if !items.is_empty() => {
            for item in items {
                let mut text = String::new();
                write_block(&mut text, item, indent + 2);
                // The item's first line takes the dash in place of its indentation.
                out.push_str(&pad);
                out.push_str("- ");
                out.push_str(text.get(indent + 2..).unwrap_or_default());
            }
        }
        other => {
            out.push_str(&pad);
            out.push_str(&inline(other, indent));
            out.push('\n');
        }
    }
}

/// What follows `key:`: a nested block on the next lines, or a scalar on the same line.
fn write_after_key(out: &mut String, value: &Value, indent: usize) {
    match value {
        Value::Object(map) if !map.is_empty() => {
            out.push('\n');
            write_block(out, value, indent + 2);
        }
        Value::Array(items) if !items.is_empty() => {
            out.push('\n');
            write_block(out, value, indent);
        }
        other => {
            out.push(' ');
            out.push_str(&inline(other, indent));
            out.push('\n');
        }
    }
}

/// A scalar or an empty collection on one line (a multi-line string as a literal block).
fn inline(value: &Value, indent: usize) -> String {
    match value {
        Value::Null => "null".to_owned(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        Value::String(s) if s.contains('\n') && literal_block_fits(s) => literal_block(s, indent),
        Value::String(s) => scalar_text(s),
        Value::Object(_) => "{}".to_owned(),
        Value::Array(_) => "[]".to_owned(),
    }
}

/// Whether `s` reads back unchanged from a literal block: no line starts with a space (which
/// would need an indentation indicator), no carriage returns or tabs leading a line.
fn literal_block_fits(s: &str) -> bool {
    !s.contains('\r')
        && s.lines().all(|l| !l.starts_with([' ', '\t']))
        && s.chars().all(|c| c == '\n' || c == '\t' || !c.is_control())
}

fn literal_block(s: &str, indent: usize) -> String {
    let chomp = if s.ends_with("\n\n") {
        "+"
    } else if s.ends_with('\n') {
        ""
    } else {
        "-"
    };
    let pad = " ".repeat(indent + 2);
    let mut out = format!("|{chomp}");
    for line in s.strip_suffix('\n').unwrap_or(s).split('\n') {
        out.push('\n');
        if !line.is_empty() {
            out.push_str(&pad);
            out.push_str(line);
        }
    }
    out
}

/// A string as a plain scalar when YAML reads it back as that same string, quoted otherwise.
fn scalar_text(s: &str) -> String {
    let plain = s
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || "_./-".contains(c))
        && s.starts_with(|c: char| c.is_ascii_alphabetic() || c == '/')
        && !matches!(
            s.to_ascii_lowercase().as_str(),
            "true" | "false" | "yes" | "no" | "on" | "off" | "y" | "n" | "null"
        );
    if plain {
        s.to_owned()
    } else {
        serde_json::to_string(s).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use serde_json::json;

    use super::documents;

    #[test]
    fn block_style_with_quoted_and_literal_strings() {
        let value = json!({
            "a": {"b": [{"c": 1, "d": "8080"}, "x y"], "e": {}, "f": []},
            "g": "one\ntwo\n",
            "h": "on",
        });
        assert_eq!(
            documents(&[value]),
            "---\na:\n  b:\n  - c: 1\n    d: \"8080\"\n  - \"x y\"\n  e: {}\n  f: []\ng: |\n  one\n  two\nh: \"on\"\n"
        );
    }
}

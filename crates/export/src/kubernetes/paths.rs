//! septa path patterns in the targets' own spellings, and the semantics of the Istio spelling,
//! which the check uses to tell a difference Istio's path language explains from one it does
//! not.
//!
//! septa's `/a/{id}` matches exactly one segment after `/a/`; `/a/...` matches `/a` and
//! everything below it at a segment boundary. Istio paths are exact, a prefix ending in `*`, a
//! suffix starting with `*`, or `*`; Cilium paths are regular expressions.

/// The Istio paths that admit at least what `pattern` admits: exact when it is exact, `P` and
/// `P/*` for a wildcard `P/...`, and the literal prefix with `*` for a parameter (wider: a
/// `path-semantics` difference).
pub(crate) fn istio_paths(pattern: &str) -> Vec<String> {
    if let Some(prefix) = pattern.strip_suffix("/...")
        && !prefix.contains('{')
    {
        if prefix.is_empty() {
            return vec!["*".to_owned()];
        }
        return vec![prefix.to_owned(), format!("{prefix}/*")];
    }
    match pattern.find('{') {
        Some(at) => vec![format!("{}*", &pattern[..at])],
        None => vec![pattern.to_owned()],
    }
}

/// Whether the Istio path `spelling` admits the normalized request `path`, as Istio matches it.
pub(crate) fn istio_matches(spelling: &str, path: &str) -> bool {
    if spelling == "*" {
        return !path.is_empty();
    }
    if let Some(prefix) = spelling.strip_suffix('*') {
        return path.starts_with(prefix);
    }
    if let Some(suffix) = spelling.strip_prefix('*') {
        return path.ends_with(suffix);
    }
    spelling == path
}

/// Whether `pattern` is exported to Istio exactly (no `path-semantics` difference).
pub(crate) fn istio_exact(pattern: &str) -> bool {
    !pattern.contains('{')
}

/// A Cilium (RE2, anchored) regular expression admitting exactly what `pattern` admits.
pub(crate) fn cilium_regex(pattern: &str) -> String {
    let (body, wildcard) = match pattern.strip_suffix("/...") {
        Some(prefix) => (prefix, true),
        None => (pattern, false),
    };
    let mut out = String::new();
    for segment in body.split('/').skip(1) {
        out.push('/');
        if segment.starts_with('{') && segment.ends_with('}') {
            out.push_str("[^/]+");
        } else {
            out.push_str(&escape_regex(segment));
        }
    }
    if wildcard {
        out.push_str("(/.*)?");
    }
    if out.is_empty() {
        out.push('/');
    }
    out
}

fn escape_regex(text: &str) -> String {
    let mut out = String::new();
    for c in text.chars() {
        if "\\.+*?()|[]{}^$".contains(c) {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// Request paths that tell `pattern` apart from its Istio spelling: an instance of it, and the
/// nearest paths it refuses and a prefix would admit.
pub(crate) fn probes(pattern: &str) -> Vec<String> {
    let instance: String = pattern
        .split('/')
        .map(|s| if s.starts_with('{') { "x1" } else { s })
        .collect::<Vec<_>>()
        .join("/");
    let mut out = Vec::new();
    match instance.strip_suffix("/...") {
        Some(prefix) => {
            let base = if prefix.is_empty() { "/" } else { prefix };
            out.push(base.to_owned());
            out.push(format!("{prefix}/x1/y2"));
            out.push(format!("{prefix}x"));
        }
        None => {
            out.push(instance.clone());
            out.push(format!("{instance}/y2"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::{cilium_regex, istio_matches, istio_paths, probes};

    #[test]
    fn istio_spellings() {
        assert_eq!(istio_paths("/products"), ["/products"]);
        assert_eq!(istio_paths("/products/{id}"), ["/products/*"]);
        assert_eq!(istio_paths("/kv/carts/..."), ["/kv/carts", "/kv/carts/*"]);
        assert_eq!(istio_paths("/..."), ["*"]);
        assert_eq!(istio_paths("/a/{id}/..."), ["/a/*"]);
        assert!(istio_matches("/kv/carts/*", "/kv/carts/a"));
        assert!(!istio_matches("/kv/carts/*", "/kv/carts"));
    }

    #[test]
    fn cilium_spellings() {
        assert_eq!(cilium_regex("/products/{id}"), "/products/[^/]+");
        assert_eq!(cilium_regex("/kv/carts/..."), "/kv/carts(/.*)?");
        assert_eq!(cilium_regex("/..."), "(/.*)?");
        assert_eq!(cilium_regex("/a.b"), "/a\\.b");
    }

    #[test]
    fn probes_tell_patterns_apart() {
        assert_eq!(probes("/a/{id}"), ["/a/x1", "/a/x1/y2"]);
        assert_eq!(probes("/kv/..."), ["/kv", "/kv/x1/y2", "/kvx"]);
    }
}

//! `https://` URLs septa fetches on its own behalf (an issuer's JWKS): one host, one port, one
//! path, no user info and no fragment, and never plain `http`, since whoever sits on a clear-text
//! path could hand septa their own keys. The parsing is shared with the `http://` webhooks alerts
//! post to ([`parse_url`]).

use std::fmt;
use std::net::IpAddr;

use crate::egress::{HostPattern, parse_host, split_host_port};

/// An `https://HOST[:PORT][/PATH][?QUERY]` URL.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct HttpsUrl {
    /// A lowercase DNS name, or an IP address without brackets.
    host: String,
    port: u16,
    /// Starts with `/`.
    path_and_query: String,
}

impl HttpsUrl {
    /// Parses `s`. The scheme is matched without regard to case; the host is lowercased; an
    /// absent path is `/`.
    pub fn parse(s: &str) -> Result<Self, String> {
        let parts = parse_url(s, "https://HOST[:PORT]/PATH", |scheme| {
            if scheme.eq_ignore_ascii_case("http") {
                Err(format!(
                    "URL `{s}` uses plain `http`, which anyone on the path could tamper with"
                ))
            } else if scheme.eq_ignore_ascii_case("https") {
                Ok(443)
            } else {
                Err(format!(
                    "URL `{s}` has scheme `{scheme}`; only `https` is fetched"
                ))
            }
        })?;
        Ok(Self {
            host: parts.host,
            port: parts.port,
            path_and_query: parts.path_and_query,
        })
    }

    /// The host: a lowercase DNS name, or an IP address without brackets.
    pub fn host(&self) -> &str {
        &self.host
    }

    /// The port (443 unless the URL names one).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The path with the query, if any; always starts with `/`.
    pub fn path_and_query(&self) -> &str {
        &self.path_and_query
    }

    /// `HOST` or `HOST:PORT` as the `Host` header carries it, an IPv6 host in brackets.
    pub fn authority(&self) -> String {
        authority(&self.host, self.port, 443)
    }
}

impl fmt::Display for HttpsUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "https://{}{}", self.authority(), self.path_and_query)
    }
}

/// A URL septa itself talks to, taken apart.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(crate) struct UrlParts {
    /// A lowercase DNS name, or an IP address without brackets.
    pub(crate) host: String,
    pub(crate) port: u16,
    /// Starts with `/`.
    pub(crate) path_and_query: String,
}

/// Parses `SCHEME://HOST[:PORT][/PATH][?QUERY]`: one host, no user info, no fragment.
/// `scheme_port` accepts the scheme (with its default port) or says why not; `form` is what
/// the error shows when `s` is no URL at all.
pub(crate) fn parse_url(
    s: &str,
    form: &str,
    scheme_port: impl FnOnce(&str) -> Result<u16, String>,
) -> Result<UrlParts, String> {
    if let Some(c) = s
        .chars()
        .find(|c| !c.is_ascii_graphic() || matches!(c, '"' | '<' | '>' | '\\'))
    {
        return Err(format!(
            "URL `{s}` contains {c:?}; percent-encode it or remove it"
        ));
    }
    let Some((scheme, rest)) = s.split_once("://") else {
        return Err(format!("`{s}` is not a URL of the form `{form}`"));
    };
    let default_port = scheme_port(scheme)?;
    if rest.contains('#') {
        return Err(format!("URL `{s}` must not have a fragment"));
    }
    let split = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority, path_and_query) = rest.split_at(split);
    if authority.contains('@') {
        return Err(format!("URL `{s}` must not carry user info (`...@`)"));
    }
    let (host_text, port) = split_host_port(authority).map_err(|e| format!("URL `{s}`: {e}"))?;
    if host_text.contains('*') {
        return Err(format!("URL `{s}` must name one host, not a pattern"));
    }
    let host = match parse_host(host_text).map_err(|e| format!("URL `{s}`: {e}"))? {
        HostPattern::Name(name) => name,
        HostPattern::Cidr(net) => net.addr().to_string(),
        HostPattern::Subdomain(_) => {
            return Err(format!("URL `{s}` must name one host, not a pattern"));
        }
    };
    let port = match port {
        None => default_port,
        Some(p) => p
            .parse::<u16>()
            .ok()
            .filter(|n| *n > 0)
            .ok_or_else(|| format!("URL `{s}`: `{p}` is not a port (1-65535)"))?,
    };
    let path_and_query = match path_and_query {
        "" => "/".to_owned(),
        p if p.starts_with('?') => format!("/{p}"),
        p => p.to_owned(),
    };
    Ok(UrlParts {
        host,
        port,
        path_and_query,
    })
}

/// `HOST` or `HOST:PORT` as the `Host` header carries it, an IPv6 host in brackets, the port left
/// out when it is the scheme's default.
pub(crate) fn authority(host: &str, port: u16, default_port: u16) -> String {
    let host = match host.parse::<IpAddr>() {
        Ok(IpAddr::V6(ip)) => format!("[{ip}]"),
        _ => host.to_owned(),
    };
    if port == default_port {
        host
    } else {
        format!("{host}:{port}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_names_addresses_ports_and_paths() {
        for (input, shown, host, port) in [
            (
                "https://Auth.Example/.well-known/jwks.json",
                "https://auth.example/.well-known/jwks.json",
                "auth.example",
                443,
            ),
            (
                "HTTPS://127.0.0.1:8443/keys?v=2",
                "https://127.0.0.1:8443/keys?v=2",
                "127.0.0.1",
                8443,
            ),
            ("https://[::1]:9000", "https://[::1]:9000/", "::1", 9000),
            (
                "https://auth.example?x=1",
                "https://auth.example/?x=1",
                "auth.example",
                443,
            ),
        ] {
            let url = HttpsUrl::parse(input).unwrap_or_else(|e| panic!("{input}: {e}"));
            assert_eq!(url.to_string(), shown, "{input}");
            assert_eq!((url.host(), url.port()), (host, port), "{input}");
        }
    }

    #[test]
    fn refuses_clear_text_patterns_and_ambiguities() {
        for (bad, says) in [
            ("http://auth.example/jwks", "plain `http`"),
            ("ftp://auth.example/jwks", "only `https`"),
            ("auth.example/jwks", "is not a URL"),
            ("https://user:pw@auth.example/jwks", "user info"),
            ("https://auth.example/jwks#frag", "fragment"),
            ("https://*.example/jwks", "not a pattern"),
            ("https://auth.example:0/", "not a port"),
            ("https://auth.example:99999/", "not a port"),
            ("https://auth example/", "contains ' '"),
            ("https:///jwks", "the host is empty"),
        ] {
            let e = HttpsUrl::parse(bad)
                .err()
                .unwrap_or_else(|| panic!("{bad} parsed"));
            assert!(e.contains(says), "{bad}: {e}");
        }
    }
}

//! Egress destinations: `scheme://host:port` with `*.domain` wildcards, CIDR hosts and port ranges.

use std::fmt;
use std::net::IpAddr;

use ipnet::IpNet;

/// The protocol an egress destination admits.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum EgressScheme {
    /// `http://` through wasi:http.
    Http,
    /// `https://` through wasi:http.
    Https,
    /// `tcp://`: raw sockets through wasi:sockets.
    Tcp,
    /// `*://`: any of the above.
    Any,
}

impl EgressScheme {
    /// Whether a flow with `scheme` is admitted.
    pub fn admits(self, scheme: EgressScheme) -> bool {
        self == Self::Any || self == scheme
    }
}

impl fmt::Display for EgressScheme {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Http => "http",
            Self::Https => "https",
            Self::Tcp => "tcp",
            Self::Any => "*",
        })
    }
}

/// The host part of an egress destination.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum HostPattern {
    /// Exactly this DNS name (lowercase, no trailing dot).
    Name(String),
    /// Any name strictly below this domain: `*.example.com` matches `a.example.com`, not
    /// `example.com`.
    Subdomain(String),
    /// Any address in this network, checked against the address actually dialled.
    Cidr(IpNet),
}

impl fmt::Display for HostPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Name(n) => f.write_str(n),
            Self::Subdomain(d) => write!(f, "*.{d}"),
            Self::Cidr(IpNet::V6(net)) if net.prefix_len() == 128 => write!(f, "[{}]", net.addr()),
            Self::Cidr(net) if net.prefix_len() == net.max_prefix_len() => {
                write!(f, "{}", net.addr())
            }
            Self::Cidr(net) => write!(f, "{net}"),
        }
    }
}

/// One egress destination.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct EgressTarget {
    /// The protocol.
    pub scheme: EgressScheme,
    /// The host.
    pub host: HostPattern,
    /// The lowest admitted port.
    pub port_min: u16,
    /// The highest admitted port.
    pub port_max: u16,
}

impl EgressTarget {
    /// Parses `scheme://host[:port]`; the port defaults by scheme (80, 443) and is required for
    /// `tcp` and `*`. `port` may be `N`, `N-M` or `*`; `host` may be a name, `*.domain`, an IP
    /// address (`[v6]`) or a CIDR network.
    pub fn parse(s: &str) -> Result<Self, String> {
        let Some((scheme, rest)) = s.split_once("://") else {
            return Err(format!(
                "egress destination `{s}` must be `SCHEME://HOST[:PORT]` (schemes: `http`, `https`, `tcp`, `*`)"
            ));
        };
        let scheme = match scheme {
            "http" => EgressScheme::Http,
            "https" => EgressScheme::Https,
            "tcp" => EgressScheme::Tcp,
            "*" => EgressScheme::Any,
            other => {
                return Err(format!(
                    "egress destination `{s}` has unknown scheme `{other}`; expected `http`, `https`, `tcp` or `*`"
                ));
            }
        };
        if rest.contains(['?', '#']) || rest.ends_with('/') && !rest.contains(':') {
            return Err(format!(
                "egress destination `{s}` must not have a path, query or fragment"
            ));
        }
        let (host, port) =
            split_host_port(rest).map_err(|e| format!("egress destination `{s}`: {e}"))?;
        let host = parse_host(host).map_err(|e| format!("egress destination `{s}`: {e}"))?;
        let (port_min, port_max) = match (port, scheme) {
            (Some(p), _) => parse_ports(p).map_err(|e| format!("egress destination `{s}`: {e}"))?,
            (None, EgressScheme::Http) => (80, 80),
            (None, EgressScheme::Https) => (443, 443),
            (None, _) => {
                return Err(format!(
                    "egress destination `{s}` needs a port (`:PORT`, `:LOW-HIGH` or `:*`) for scheme `{scheme}`"
                ));
            }
        };
        Ok(Self {
            scheme,
            host,
            port_min,
            port_max,
        })
    }

    /// Whether `port` is in range.
    pub fn admits_port(&self, port: u16) -> bool {
        (self.port_min..=self.port_max).contains(&port)
    }
}

impl fmt::Display for EgressTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}://{}", self.scheme, self.host)?;
        match (self.port_min, self.port_max) {
            (0, u16::MAX) => f.write_str(":*"),
            (a, b) if a == b => write!(f, ":{a}"),
            (a, b) => write!(f, ":{a}-{b}"),
        }
    }
}

/// Splits `host[:port]`, where an IPv6 host is bracketed and a CIDR host contains `/`.
pub(crate) fn split_host_port(rest: &str) -> Result<(&str, Option<&str>), String> {
    if let Some(inner) = rest.strip_prefix('[') {
        let Some(end) = inner.find(']') else {
            return Err("unclosed `[` in IPv6 host".to_owned());
        };
        let host = &inner[..end];
        let after = &inner[end + 1..];
        // An IPv6 CIDR keeps its prefix outside the brackets: `[fd00::]/8:443`.
        let (host_len, after) = match after.strip_prefix('/') {
            Some(p) => {
                let digits = p.find(':').unwrap_or(p.len());
                (end + 2 + digits, &p[digits..])
            }
            None => (end, after),
        };
        let host = if host_len == end {
            host
        } else {
            &rest[..host_len + 1]
        };
        return match after.strip_prefix(':') {
            Some(port) => Ok((host, Some(port))),
            None if after.is_empty() => Ok((host, None)),
            None => Err(format!("unexpected `{after}` after the host")),
        };
    }
    Ok(match rest.rsplit_once(':') {
        Some((h, p)) => (h, Some(p)),
        None => (rest, None),
    })
}

pub(crate) fn parse_host(host: &str) -> Result<HostPattern, String> {
    if host.is_empty() {
        return Err("the host is empty".to_owned());
    }
    if host == "*" {
        return Err(
            "`*` as a host would open every destination; name the hosts, a `*.domain`, or a CIDR network such as `0.0.0.0/0`".to_owned(),
        );
    }
    let bracketed = host.strip_prefix('[').map(|h| h.replacen(']', "", 1));
    let bare = bracketed.as_deref().unwrap_or(host);
    if bare.contains('/') {
        return bare
            .parse::<IpNet>()
            .map(|n| HostPattern::Cidr(n.trunc()))
            .map_err(|_| format!("`{host}` is not a CIDR network"));
    }
    if let Ok(ip) = bare.parse::<IpAddr>() {
        return Ok(HostPattern::Cidr(IpNet::from(ip)));
    }
    if bracketed.is_some() {
        return Err(format!("`{host}` is not an IPv6 address"));
    }
    let (wildcard, name) = match host.strip_prefix("*.") {
        Some(domain) => (true, domain),
        None => (false, host),
    };
    let name = name.to_ascii_lowercase();
    valid_dns_name(&name).map_err(|e| format!("host `{host}`: {e}"))?;
    Ok(if wildcard {
        HostPattern::Subdomain(name)
    } else {
        HostPattern::Name(name)
    })
}

fn valid_dns_name(name: &str) -> Result<(), String> {
    if name.len() > 253 {
        return Err("longer than 253 characters".to_owned());
    }
    for label in name.split('.') {
        if label.is_empty() || label.len() > 63 {
            return Err("every label must be 1 to 63 characters".to_owned());
        }
        if !label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-') {
            return Err(format!(
                "label `{label}` may only contain letters, digits and `-` (a `*` is only allowed as a whole first label)"
            ));
        }
        if label.starts_with('-') || label.ends_with('-') {
            return Err(format!("label `{label}` must not start or end with `-`"));
        }
    }
    // An all-numeric last label would be read as an IPv4 address by resolvers.
    if name
        .rsplit('.')
        .next()
        .is_some_and(|l| l.chars().all(|c| c.is_ascii_digit()))
    {
        return Err(
            "a name whose last label is numeric is an address; write it as an IP or CIDR"
                .to_owned(),
        );
    }
    Ok(())
}

fn parse_ports(p: &str) -> Result<(u16, u16), String> {
    if p == "*" {
        return Ok((0, u16::MAX));
    }
    let port = |s: &str| {
        s.parse::<u16>()
            .ok()
            .filter(|n| *n > 0)
            .ok_or_else(|| format!("`{s}` is not a port (1-65535)"))
    };
    match p.split_once('-') {
        Some((lo, hi)) => {
            let (lo, hi) = (port(lo)?, port(hi)?);
            if lo > hi {
                return Err(format!("port range `{p}` is empty"));
            }
            Ok((lo, hi))
        }
        None => port(p).map(|n| (n, n)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_displays_the_usual_forms() {
        for (input, shown) in [
            (
                "https://api.payments.example",
                "https://api.payments.example:443",
            ),
            ("http://Example.COM:8080", "http://example.com:8080"),
            ("https://*.stripe.com", "https://*.stripe.com:443"),
            ("tcp://10.0.0.0/8:5432", "tcp://10.0.0.0/8:5432"),
            ("tcp://127.0.0.1:9000-9010", "tcp://127.0.0.1:9000-9010"),
            ("http://[::1]:80", "http://[::1]:80"),
            ("*://203.0.113.0/24:*", "*://203.0.113.0/24:*"),
        ] {
            assert_eq!(
                EgressTarget::parse(input).map(|t| t.to_string()),
                Ok(shown.to_owned()),
                "{input}"
            );
        }
    }

    #[test]
    fn refuses_ambiguous_or_open_forms() {
        for bad in [
            "api.example.com",
            "ftp://a.example",
            "https://*",
            "https://a*.example.com",
            "tcp://db.example",
            "https://a.example/path",
            "http://a.example:0",
            "http://a.example:99999",
            "http://1.2.3.4.5",
            "http://[::1",
        ] {
            assert!(EgressTarget::parse(bad).is_err(), "{bad} should be refused");
        }
    }
}

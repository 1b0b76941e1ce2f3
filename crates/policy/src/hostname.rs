//! What a guest-supplied host name means: an IP address in any spelling a resolver or URL
//! parser accepts, or a DNS name to be resolved ([`HostLiteral`]).
//!
//! Egress is decided on addresses, so a host must be classified the way the system that acts on it
//! would classify it. glibc's `inet_aton` (behind `getaddrinfo`) and the WHATWG URL parser both
//! read `127.1`, `2130706433`, `0177.0.0.1` and `0x7f.0.0.1` as `127.0.0.1`; if septa took those for
//! names, a guest could spell its way around a check that only looks at dotted quads.
//! [`parse_ip_literal`] therefore accepts every such spelling, and [`validate_host_name`] refuses
//! whatever is neither an IP literal nor a plain DNS name, so no third reading is left over.
//!
//! The address a name resolves to is checked after resolution (by the dialer); this module only
//! decides which strings are addresses and which are names. It does no I/O.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// The longest host name, in octets, without a trailing root dot (RFC 1035 §2.3.4).
pub const MAX_HOST_NAME_LEN: usize = 253;

/// The longest label of a host name, in octets (RFC 1035 §2.3.4).
pub const MAX_LABEL_LEN: usize = 63;

/// A host a guest asked for, classified.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum HostLiteral {
    /// An IP address, in whatever spelling the guest used; not yet canonicalized (see
    /// [`canonical_ip`]).
    Ip(IpAddr),
    /// A DNS name in canonical form: lowercase, without a trailing root dot.
    Name(String),
}

/// Why a host is neither an IP literal nor a valid DNS name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HostError {
    /// The host is the empty string.
    #[error("host is empty")]
    Empty,
    /// The host is longer than [`MAX_HOST_NAME_LEN`].
    #[error("host name `{host}` is {len} characters long; at most {MAX_HOST_NAME_LEN} are allowed")]
    TooLong {
        /// The host as given.
        host: String,
        /// Its length without a trailing root dot.
        len: usize,
    },
    /// Two dots in a row, or a leading dot.
    #[error("host name `{host}` has an empty label")]
    EmptyLabel {
        /// The host as given.
        host: String,
    },
    /// A label longer than [`MAX_LABEL_LEN`].
    #[error("host name `{host}` has a label longer than {MAX_LABEL_LEN} characters")]
    LabelTooLong {
        /// The host as given.
        host: String,
    },
    /// A character other than an ASCII letter, digit, hyphen or dot.
    #[error(
        "host name `{host}` contains `{character}`; only ASCII letters, digits, `-` and `.` are allowed"
    )]
    InvalidCharacter {
        /// The host as given.
        host: String,
        /// The first offending character.
        character: char,
    },
    /// A label that starts or ends with a hyphen.
    #[error("host name `{host}` has a label that starts or ends with `-`")]
    HyphenAtLabelEdge {
        /// The host as given.
        host: String,
    },
    /// The last label is numeric, so the host reads as an IP address, but not a valid one
    /// (e.g. `256.0.0.1`, `1.2.3.4.5`, `08.0.0.1`). URL parsers refuse such hosts outright; a
    /// resolver might still do something with them, so septa refuses them too.
    #[error("host `{host}` looks like an IP address but is not a valid one")]
    NotAnAddress {
        /// The host as given.
        host: String,
    },
}

/// Classifies `host`: an IP literal (any spelling [`parse_ip_literal`] accepts) or a valid DNS
/// name (returned in [`canonical_host_name`] form).
///
/// # Errors
///
/// [`HostError`] when `host` is neither.
pub fn parse_host(host: &str) -> Result<HostLiteral, HostError> {
    match parse_ip_literal(host) {
        Some(ip) => Ok(HostLiteral::Ip(ip)),
        None => canonical_host_name(host).map(HostLiteral::Name),
    }
}

/// Parses every spelling of an IP address that a resolver (glibc `inet_aton` / `getaddrinfo`) or a
/// URL parser (WHATWG) would turn into an address.
///
/// IPv4: one to four parts separated by dots, each decimal, octal (leading `0`) or hexadecimal
/// (leading `0x`), mixed freely, with an optional trailing dot; the last part fills the remaining
/// bytes (`127.1`, `127.0.1`, `2130706433`, `0x7f000001`, `017700000001`, `0x7f.0.0.1.`).
/// IPv6: bracketed or not, with any zone id (`fe80::1%eth0`, `[fe80::1%25eth0]`) ignored, since
/// the zone only selects an interface, not a different destination.
///
/// Returns `None` when `host` is not an address in any of these spellings, including when a part
/// is out of range (`256.0.0.1`, `1.16777216`). Such a host is then a name to resolve, and
/// [`validate_host_name`] refuses it if it is not a valid DNS name. The address is returned as
/// spelled; [`canonical_ip`] unwraps IPv4 destinations embedded in IPv6.
pub fn parse_ip_literal(host: &str) -> Option<IpAddr> {
    if let Some(inner) = host.strip_prefix('[') {
        // Brackets only ever hold an IPv6 address (RFC 3986 IP-literal).
        return parse_ipv6(inner.strip_suffix(']')?).map(IpAddr::V6);
    }
    if host.contains(':') {
        return parse_ipv6(host).map(IpAddr::V6);
    }
    parse_ipv4(host).map(IpAddr::V4)
}

/// Parses an IPv6 address, dropping a zone id (`%eth0`, or `%25eth0` as URLs spell it).
fn parse_ipv6(text: &str) -> Option<Ipv6Addr> {
    let address = text
        .split_once('%')
        .map_or(text, |(address, _zone)| address);
    address.parse().ok()
}

/// Parses an IPv4 address the way `inet_aton` and the WHATWG IPv4 parser do.
fn parse_ipv4(text: &str) -> Option<Ipv4Addr> {
    // One trailing dot is the DNS root; both parsers drop it.
    let text = text.strip_suffix('.').unwrap_or(text);
    let mut parts = [0_u32; 4];
    let mut count = 0;
    for part in text.split('.') {
        let slot = parts.get_mut(count)?;
        *slot = parse_ipv4_part(part)?;
        count += 1;
    }
    let (leading, last) = parts.get(..count)?.split_at(count.checked_sub(1)?);
    if leading.iter().any(|&part| part > 0xff) {
        return None;
    }
    // The last part fills the bytes the others left: 32 bits alone, 8 with three parts before it.
    let last_bits = 32 - 8 * leading.len() as u32;
    let last = *last.first()?;
    if last_bits < 32 && last >> last_bits != 0 {
        return None;
    }
    let high = leading
        .iter()
        .zip([24_u32, 16, 8])
        .fold(0_u32, |acc, (&part, shift)| acc | part << shift);
    Some(Ipv4Addr::from(high | last))
}

/// Parses one IPv4 part: `0x`/`0X` hex (an empty `0x` is zero), a leading `0` octal, else decimal.
/// Leading zeros are allowed in any length; values beyond 32 bits are refused.
fn parse_ipv4_part(part: &str) -> Option<u32> {
    let (digits, radix) = if let Some(hex) = part.strip_prefix("0x").or(part.strip_prefix("0X")) {
        (hex, 16)
    } else if let Some(octal) = part.strip_prefix('0').filter(|rest| !rest.is_empty()) {
        (octal, 8)
    } else if part.is_empty() {
        return None;
    } else {
        (part, 10)
    };
    digits.bytes().try_fold(0_u32, |acc, byte| {
        let digit = char::from(byte).to_digit(radix)?;
        acc.checked_mul(radix)?.checked_add(digit)
    })
}

/// Unwraps IPv6 forms that carry an IPv4 destination, so one address has one form to check:
///
/// - IPv4-mapped `::ffff:a.b.c.d` (`::ffff:0:0/96`),
/// - IPv4-translated `::ffff:0:a.b.c.d` (`::ffff:0:0:0/96`, RFC 2765 SIIT),
/// - IPv4-compatible `::a.b.c.d` (`::/96`), except `::` and `::1`, which are IPv6's own
///   unspecified and loopback addresses,
/// - NAT64 `64:ff9b::a.b.c.d` (`64:ff9b::/96`, RFC 6052),
/// - 6to4 `2002:AABB:CCDD::/48` inside `2002::/16` (RFC 3056), whose relay forwards to
///   `AA.BB.CC.DD`.
///
/// Every other address is returned unchanged.
pub fn canonical_ip(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => embedded_ipv4(v6).map_or(ip, IpAddr::V4),
    }
}

/// The IPv4 destination embedded in `v6`, if it is one of the forms [`canonical_ip`] unwraps.
fn embedded_ipv4(v6: Ipv6Addr) -> Option<Ipv4Addr> {
    const NAT64_PREFIX: u128 = 0x0064_ff9b_0000_0000_0000_0000;
    let bits = u128::from(v6);
    // Truncation is the point: the IPv4 address is the low 32 bits.
    let last_32_bits = Ipv4Addr::from(bits as u32);
    match bits >> 32 {
        // IPv4-mapped `::ffff:0:0/96` and IPv4-translated `::ffff:0:0:0/96`.
        0xffff | 0xffff_0000 => Some(last_32_bits),
        // `::` and `::1` are IPv6's own; every other `::/96` address is IPv4-compatible.
        0 if bits <= 1 => None,
        0 | NAT64_PREFIX => Some(last_32_bits),
        // 6to4: `2002:AABB:CCDD::/48`, the IPv4 address in bits 16..48.
        _ if bits >> 112 == 0x2002 => Some(Ipv4Addr::from((bits >> 80) as u32)),
        _ => None,
    }
}

/// Every IPv4 address `ip` may carry a packet to, for the operator ceiling: none for a plain IPv6
/// address, `ip` itself for IPv4, and for the IPv6 forms that hand a packet to an IPv4 network:
///
/// - each form [`canonical_ip`] unwraps,
/// - local-use NAT64 `64:ff9b:1::/48` (RFC 8215), read at each RFC 6052 prefix length the
///   translator may use inside it (/48, /56, /64, /96), since which one it uses is not known here
///   (so a few public addresses may be refused through a translator using a length below /96),
/// - Teredo `2001::/32` (RFC 4380): the client, the last 32 bits inverted, and the server,
///   bits 32..64, since a Teredo host sends to both,
/// - ISATAP interface identifiers `::0:5efe:a.b.c.d` and `::200:5efe:a.b.c.d` (RFC 5214) under
///   any prefix, whose tunnel endpoint is the last 32 bits.
///
/// Does not allocate. Several forms may yield the same address, so an address can repeat.
pub fn ipv4_destinations(ip: IpAddr) -> impl Iterator<Item = Ipv4Addr> {
    const LOCAL_NAT64_PREFIX: u128 = 0x0064_ff9b_0001;
    const TEREDO_PREFIX: u128 = 0x2001_0000;
    let v6 = match ip {
        IpAddr::V4(v4) => return [Some(v4), None, None, None, None].into_iter().flatten(),
        IpAddr::V6(v6) => v6,
    };
    let bits = u128::from(v6);
    // Truncation is the point: each reading takes 32 bits at a known place.
    let at = |shift: u32| Ipv4Addr::from((bits >> shift) as u32);
    // Below /96, RFC 6052 puts the first `high` bits of the IPv4 address just before bit 64 and
    // the rest after the `u` octet (bits 64..72).
    let split = |high: u32| {
        let upper = (bits >> 64) as u32 & low_bits(high);
        let lower = (bits >> (24 + high)) as u32 & low_bits(32 - high);
        Ipv4Addr::from(upper << (32 - high) | lower)
    };
    let mut out = [embedded_ipv4(v6), None, None, None, None];
    if bits >> 80 == LOCAL_NAT64_PREFIX {
        out = [
            Some(split(16)),
            Some(split(8)),
            Some(at(24)),
            Some(at(0)),
            None,
        ];
        // The readings at the lengths the translator does not use fall on zero padding, which
        // reads as "this network" (0.0.0.0/8): an address no translator forwards to. Such a
        // reading is left out when another reading is a real destination, else every address
        // of the prefix would be blocked; `64:ff9b:1::` itself, all padding, still is.
        if out.iter().flatten().any(|a| a.octets()[0] != 0) {
            out = out.map(|a| a.filter(|a| a.octets()[0] != 0));
        }
    } else if bits >> 96 == TEREDO_PREFIX {
        out = [Some(!at(0)), Some(at(64)), None, None, None];
    }
    if matches!((bits >> 32) as u32, 0x0000_5efe | 0x0200_5efe) {
        out[4] = Some(at(0));
    }
    out.into_iter().flatten()
}

/// A mask of the low `count` bits (`count` at most 32).
fn low_bits(count: u32) -> u32 {
    u32::MAX.checked_shr(32 - count).unwrap_or(0)
}

/// Checks that `host` is a valid DNS host name: labels of ASCII letters, digits and hyphens
/// (LDH), none empty, none longer than [`MAX_LABEL_LEN`], no hyphen at either end of a label, at
/// most [`MAX_HOST_NAME_LEN`] characters in all; one trailing dot (the root) is allowed.
///
/// A host whose last label is numeric (`1.2.3.4.5`, `256.0.0.1`, `0x7g`) reads as an IP address
/// and is refused when [`parse_ip_literal`] did not accept it: top-level domains are never numeric
/// (RFC 3696 §2), and URL parsers refuse such hosts. Call this only for hosts that are not IP
/// literals; IPv6 literals and non-ASCII (not yet IDNA-encoded) names are refused here.
///
/// # Errors
///
/// The first rule `host` breaks, as a [`HostError`].
pub fn validate_host_name(host: &str) -> Result<(), HostError> {
    if host.is_empty() {
        return Err(HostError::Empty);
    }
    let name = host.strip_suffix('.').unwrap_or(host);
    if name.len() > MAX_HOST_NAME_LEN {
        return Err(HostError::TooLong {
            host: host.to_owned(),
            len: name.len(),
        });
    }
    if let Some(character) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || *c == '-' || *c == '.'))
    {
        return Err(HostError::InvalidCharacter {
            host: host.to_owned(),
            character,
        });
    }
    let mut last_label = "";
    for label in name.split('.') {
        if label.is_empty() {
            return Err(HostError::EmptyLabel {
                host: host.to_owned(),
            });
        }
        if label.len() > MAX_LABEL_LEN {
            return Err(HostError::LabelTooLong {
                host: host.to_owned(),
            });
        }
        if label.starts_with('-') || label.ends_with('-') {
            return Err(HostError::HyphenAtLabelEdge {
                host: host.to_owned(),
            });
        }
        last_label = label;
    }
    if looks_numeric(last_label) {
        return Err(HostError::NotAnAddress {
            host: host.to_owned(),
        });
    }
    Ok(())
}

/// Whether a last label makes URL parsers treat the host as IPv4: all decimal digits, or `0x`
/// followed by anything (they then fail on the invalid number rather than fall back to a name).
fn looks_numeric(label: &str) -> bool {
    label.bytes().all(|byte| byte.is_ascii_digit())
        || label.starts_with("0x")
        || label.starts_with("0X")
}

/// The canonical form of a host name: validated by [`validate_host_name`], lowercased, without a
/// trailing root dot, so `API.Example.com.` and `api.example.com` compare equal.
///
/// # Errors
///
/// [`HostError`] when `host` is not a valid DNS host name.
pub fn canonical_host_name(host: &str) -> Result<String, HostError> {
    validate_host_name(host)?;
    let name = host.strip_suffix('.').unwrap_or(host);
    Ok(name.to_ascii_lowercase())
}

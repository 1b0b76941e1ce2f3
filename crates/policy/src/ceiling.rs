//! The operator ceiling: networks no manifest can open.
//!
//! Egress rules say what a function may reach; the ceiling says what no rule may reach, whatever
//! the manifest declares: loopback, private and link-local ranges (cloud metadata among them) and
//! the other special-purpose blocks. It is checked on the address actually dialled, after DNS
//! resolution, so neither a name that resolves inwards nor an odd spelling of an address gets
//! past it (see [`crate::hostname`]).
//!
//! The operator starts from [`Ceiling::default`] and may block more ranges or relax some of the
//! defaults with [`Ceiling::new`]; an extra block always wins over a relaxation.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnet::{IpNet, Ipv4Net, Ipv6Net};

use crate::hostname::{canonical_ip, ipv4_destinations};

/// The name given to ranges the operator adds with [`Ceiling::new`].
pub const OPERATOR_RANGE_NAME: &str = "operator";

/// The ranges [`Ceiling::default`] blocks, each with a short name saying why. More specific
/// ranges come before the ranges that contain them, so a block names the narrowest reason
/// (`metadata` rather than `link-local` for `169.254.169.254`).
const DEFAULT_BLOCKED: &[BlockedRange] = &[
    v4([0, 0, 0, 0], 8, "this-network"),
    v4([10, 0, 0, 0], 8, "private"),
    v4([100, 64, 0, 0], 10, "carrier-grade-nat"),
    v4([127, 0, 0, 0], 8, "loopback"),
    v4([169, 254, 169, 254], 32, "metadata"),
    v4([169, 254, 0, 0], 16, "link-local"),
    v4([172, 16, 0, 0], 12, "private"),
    v4([192, 0, 0, 0], 24, "ietf-protocol-assignments"),
    v4([192, 0, 2, 0], 24, "documentation"),
    v4([192, 168, 0, 0], 16, "private"),
    v4([198, 18, 0, 0], 15, "benchmarking"),
    v4([198, 51, 100, 0], 24, "documentation"),
    v4([203, 0, 113, 0], 24, "documentation"),
    v4([224, 0, 0, 0], 4, "multicast"),
    v4([255, 255, 255, 255], 32, "broadcast"),
    v4([240, 0, 0, 0], 4, "reserved"),
    v6([0, 0, 0, 0, 0, 0, 0, 0], 128, "unspecified"),
    v6([0, 0, 0, 0, 0, 0, 0, 1], 128, "loopback"),
    // AWS's IPv6 instance metadata endpoint, inside the unique-local range.
    v6([0xfd00, 0xec2, 0, 0, 0, 0, 0, 0x254], 128, "metadata"),
    v6([0xfc00, 0, 0, 0, 0, 0, 0, 0], 7, "unique-local"),
    v6([0xfe80, 0, 0, 0, 0, 0, 0, 0], 10, "link-local"),
    v6([0xfec0, 0, 0, 0, 0, 0, 0, 0], 10, "site-local"),
    v6([0xff00, 0, 0, 0, 0, 0, 0, 0], 8, "multicast"),
    v6([0x100, 0, 0, 0, 0, 0, 0, 0], 64, "discard-only"),
    v6([0x2001, 0xdb8, 0, 0, 0, 0, 0, 0], 32, "documentation"),
];

/// A default IPv4 entry; a bad prefix length fails the build, since this runs at compile time.
const fn v4([a, b, c, d]: [u8; 4], prefix_len: u8, name: &'static str) -> BlockedRange {
    let range = Ipv4Net::new_assert(Ipv4Addr::new(a, b, c, d), prefix_len);
    BlockedRange {
        range: IpNet::V4(range),
        name,
    }
}

/// A default IPv6 entry; a bad prefix length fails the build, since this runs at compile time.
const fn v6(
    [a, b, c, d, e, f, g, h]: [u16; 8],
    prefix_len: u8,
    name: &'static str,
) -> BlockedRange {
    let range = Ipv6Net::new_assert(Ipv6Addr::new(a, b, c, d, e, f, g, h), prefix_len);
    BlockedRange {
        range: IpNet::V6(range),
        name,
    }
}

/// One blocked range and the name that explains it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct BlockedRange {
    range: IpNet,
    name: &'static str,
}

/// The networks no manifest can open: a default blocked set, the operator's extra blocks and the
/// operator's relaxations of the defaults.
///
/// [`Ceiling::check`] decides an address in this order: an extra block matches → blocked; a
/// relaxation matches → permitted; a default block matches → blocked; otherwise permitted.
///
/// `Ceiling::default()` is the default blocked set alone: loopback, private, carrier-grade NAT,
/// link-local (with cloud metadata), documentation, benchmarking, multicast, reserved and
/// broadcast IPv4 ranges; IPv6 unspecified, loopback, unique-local, link-local, site-local,
/// multicast, discard-only and documentation ranges. [`Ceiling::blocked_ranges`] lists them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Ceiling {
    /// Ranges the operator added; they win over relaxations.
    extra_blocked: Vec<BlockedRange>,
    /// Exceptions the operator carved out of [`DEFAULT_BLOCKED`], in canonical form.
    relaxed: Vec<IpNet>,
}

impl Ceiling {
    /// The default blocked set, plus `extra_blocked` ranges (named [`OPERATOR_RANGE_NAME`]) and
    /// minus the `relaxed` ranges (the operator explicitly allows e.g. `127.0.0.1/32` for a test).
    ///
    /// A relaxation only lifts default blocks; an extra block always wins over it. A range written
    /// in an IPv6 form that embeds IPv4 in its last 32 bits (`::ffff:127.0.0.1/128`) is stored as
    /// the IPv4 range it means, because [`Ceiling::check`] compares canonical addresses; so an
    /// extra block of all of `::ffff:0:0/96` blocks every IPv4 address.
    pub fn new(extra_blocked: Vec<IpNet>, relaxed: Vec<IpNet>) -> Self {
        Self {
            extra_blocked: extra_blocked
                .into_iter()
                .map(|range| BlockedRange {
                    range: canonical_net(range),
                    name: OPERATOR_RANGE_NAME,
                })
                .collect(),
            relaxed: relaxed.into_iter().map(canonical_net).collect(),
        }
    }

    /// Whether `ip` may be dialled.
    ///
    /// `ip` is checked as given and as every IPv4 address it may carry a packet to
    /// ([`ipv4_destinations`]): `::ffff:127.0.0.1` is loopback, and so are a 6to4, NAT64
    /// (well-known or local-use), Teredo or ISATAP address that leads to it. It is blocked when
    /// any of these readings is: an extra block holds it, or a default block holds it and no
    /// relaxation does. So an operator who blocks all of `2002::/16` blocks it whatever IPv4
    /// address a 6to4 address embeds, and relaxing `127.0.0.1/32` lifts the block on that
    /// address in every form, but never on another address an odd form also leads to.
    /// Does not allocate.
    ///
    /// # Errors
    ///
    /// [`CeilingBlock`] naming the first reading found blocked and the range that blocks it.
    pub fn check(&self, ip: IpAddr) -> Result<(), CeilingBlock> {
        let readings = || std::iter::once(ip).chain(ipv4_destinations(ip).map(IpAddr::V4));
        let block = |reading: IpAddr, blocked: &BlockedRange| CeilingBlock {
            address: ip,
            canonical: if reading == ip {
                canonical_ip(ip)
            } else {
                reading
            },
            range: blocked.range,
            name: blocked.name,
        };
        for reading in readings() {
            if let Some(blocked) = self
                .extra_blocked
                .iter()
                .find(|b| b.range.contains(&reading))
            {
                return Err(block(reading, blocked));
            }
        }
        for reading in readings() {
            if self.relaxed.iter().any(|range| range.contains(&reading)) {
                continue;
            }
            if let Some(blocked) = DEFAULT_BLOCKED.iter().find(|b| b.range.contains(&reading)) {
                return Err(block(reading, blocked));
            }
        }
        Ok(())
    }

    /// Every blocked range with its name, extra blocks first, then the defaults; relaxations are
    /// not subtracted (see [`Ceiling::relaxed_ranges`]).
    pub fn blocked_ranges(&self) -> impl Iterator<Item = (&IpNet, &str)> {
        self.extra_blocked
            .iter()
            .chain(DEFAULT_BLOCKED)
            .map(|blocked| (&blocked.range, blocked.name))
    }

    /// The operator's relaxations of the default blocked set, in canonical form.
    pub fn relaxed_ranges(&self) -> impl Iterator<Item = &IpNet> {
        self.relaxed.iter()
    }
}

/// The IPv4 range an IPv6 range means when it lies inside one of the /96 prefixes that embed IPv4
/// (mapped, translated, compatible, NAT64); any other range, truncated to its network.
fn canonical_net(range: IpNet) -> IpNet {
    let range = range.trunc();
    let IpNet::V6(v6) = range else {
        return range;
    };
    let Some(prefix_len) = v6.prefix_len().checked_sub(96) else {
        return range;
    };
    match canonical_ip(IpAddr::V6(v6.network())) {
        // 6to4 embeds IPv4 in bits 16..48, not in the last 32: a /96 inside it is not an IPv4 range.
        IpAddr::V4(v4) if !is_6to4(&v6) => {
            ipnet::Ipv4Net::new(v4, prefix_len).map_or(range, IpNet::V4)
        }
        _ => range,
    }
}

/// Whether `range` lies in 6to4's `2002::/16`.
fn is_6to4(range: &Ipv6Net) -> bool {
    range.network().segments()[0] == 0x2002
}

/// Why the operator ceiling refuses an address: the range that holds it and that range's name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CeilingBlock {
    /// The address as it was checked.
    pub address: IpAddr,
    /// The reading found blocked: the IPv4 address `address` leads to when that is what is
    /// blocked ([`ipv4_destinations`]), else `address` in canonical form ([`canonical_ip`]); equal
    /// to `address` unless that was an IPv6 form carrying IPv4.
    pub canonical: IpAddr,
    /// The blocked range that holds the address.
    pub range: IpNet,
    /// The range's short name (`loopback`, `metadata`, `private`, or [`OPERATOR_RANGE_NAME`]).
    pub name: &'static str,
}

impl fmt::Display for CeilingBlock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "`{}`", self.address)?;
        if self.canonical != self.address {
            write!(f, " (`{}`)", self.canonical)?;
        }
        write!(
            f,
            " is in the operator ceiling's blocked range `{}` ({})",
            self.range, self.name
        )
    }
}

impl std::error::Error for CeilingBlock {}

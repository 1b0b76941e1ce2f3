//! Flows to the outside world: egress rules compiled into per-function host maps,
//! [`Policy::decide_egress`] on the name a guest asked for (before any DNS lookup), and
//! [`Policy::decide_dialled_address`] on the address actually dialled (after it).

use std::collections::HashMap;
use std::fmt;
use std::net::{IpAddr, SocketAddr};

use ipnet::{IpNet, Ipv4Net};
use septa_manifest::{EgressScheme, EgressTarget, HostPattern, Manifest, Name, SubnetKind};

use crate::decision::{Decision, RuleId};
use crate::engine::Policy;
use crate::functions::FunctionId;
use crate::reason::Reason;
use crate::selection::Selection;

/// One egress destination of one function, and the rule that opens it.
#[derive(Clone, Copy, Debug)]
pub struct EgressEdge<'p> {
    /// The function.
    pub from: FunctionId,
    /// The rule.
    pub rule: &'p Name,
    /// The destination.
    pub target: &'p EgressTarget,
}

/// What a guest wants to do with a raw socket.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SocketUse {
    /// Connect a TCP socket to an address.
    TcpConnect,
    /// Anything else, as the runtime names it (`TcpListen`, `UdpBind`, ...).
    Other(String),
}

/// The host of an egress flow, as the guest asked for it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EgressHost<'a> {
    /// A DNS name, canonical (lowercase, no trailing dot).
    Name(&'a str),
    /// An IP literal.
    Ip(IpAddr),
}

impl fmt::Display for EgressHost<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Name(n) => f.write_str(n),
            Self::Ip(IpAddr::V6(ip)) => write!(f, "[{ip}]"),
            Self::Ip(ip) => write!(f, "{ip}"),
        }
    }
}

/// One egress destination of one rule, as the index stores it.
#[derive(Clone, Debug)]
struct EgressEntry {
    /// The rule's position in the manifest: when several rules admit a flow, the first wins.
    order: u32,
    rule: Name,
    target: EgressTarget,
}

/// Egress destinations of one function, indexed by host.
#[derive(Clone, Debug, Default)]
pub(crate) struct EgressIndex {
    names: HashMap<String, Vec<EgressEntry>>,
    subdomains: HashMap<String, Vec<EgressEntry>>,
    networks: Vec<(IpNet, EgressEntry)>,
}

/// The egress index of each of `functions` functions, from the egress rules of `manifest`;
/// `selection` says which functions each rule applies to.
pub(crate) fn compile_egress(
    manifest: &Manifest,
    selection: &Selection,
    functions: usize,
) -> Vec<EgressIndex> {
    let mut egress = vec![EgressIndex::default(); functions];
    for (order, rule) in manifest.egress.iter().enumerate() {
        // Isolated subnets have no egress whatever the rules say (loading refuses rules that
        // select them; this keeps a future selector from opening one anyway), and endpoints
        // never call out: `outbound` leaves both out, as the auditor reads it too.
        for &id in selection.outbound(selection.id(&rule.from)) {
            let index = &mut egress[id.index()];
            for target in &rule.to {
                let entry = EgressEntry {
                    order: order as u32,
                    rule: rule.id.clone(),
                    target: target.clone(),
                };
                match &target.host {
                    HostPattern::Name(n) => index.names.entry(n.clone()).or_default().push(entry),
                    HostPattern::Subdomain(d) => {
                        index.subdomains.entry(d.clone()).or_default().push(entry);
                    }
                    HostPattern::Cidr(net) => index.networks.push((rule_network(*net), entry)),
                }
            }
        }
    }
    egress
}

impl Policy {
    /// Decides an egress flow from `from` to `scheme://host:port`, before any DNS lookup.
    ///
    /// Names are admitted only by name rules (exact or `*.domain`), so a function can make
    /// septa resolve only names its rules allow; CIDR rules admit IP literals of the family they
    /// are written in ([`rule_address`]): an IPv4 rule never admits a 6to4, NAT64, Teredo or
    /// IPv4-compatible address that leads to its network, unless a rule names that IPv6 form. An
    /// admitted flow
    /// still has to pass [`Policy::decide_dialled_address`] for the address actually dialled.
    pub fn decide_egress(
        &self,
        from: FunctionId,
        scheme: EgressScheme,
        host: EgressHost<'_>,
        port: u16,
    ) -> Decision {
        let info = self.function(from);
        if info.spec.subnet_kind == SubnetKind::Isolated {
            return Decision::refuse(
                Reason::IsolatedSubnet {
                    placement: info.spec.placement.to_string(),
                },
                info.audit,
            );
        }
        if let EgressHost::Ip(ip) = host
            && let Err(block) = self.ceiling.check(ip)
        {
            return Decision::refuse(Reason::Ceiling(block), info.audit);
        }
        let index = &self.egress[from.index()];
        let admits =
            |e: &&EgressEntry| e.target.scheme.admits(scheme) && e.target.admits_port(port);
        let found = match host {
            EgressHost::Name(name) => {
                let exact = index.names.get(name).into_iter().flatten();
                let below = parent_domains(name)
                    .flat_map(|d| index.subdomains.get(d).into_iter().flatten());
                exact.chain(below).filter(admits).min_by_key(|e| e.order)
            }
            EgressHost::Ip(ip) => {
                let ip = rule_address(ip);
                index
                    .networks
                    .iter()
                    .filter(|(net, _)| net.contains(&ip))
                    .map(|(_, e)| e)
                    .filter(admits)
                    .min_by_key(|e| e.order)
            }
        };
        match found {
            Some(entry) => Decision::allow(RuleId::Egress(entry.rule.clone())),
            None => Decision::refuse(
                Reason::NoEgressRule {
                    target: format!("{scheme}://{host}:{port}"),
                },
                info.audit,
            ),
        }
    }

    /// Decides a guest's raw socket use (`wasi:sockets`): a TCP connection is egress to
    /// `tcp://ADDRESS:PORT`, decided as [`Policy::decide_egress`] decides an IP literal (the
    /// ceiling included); any other use — listening, UDP, binding a chosen address — no rule
    /// kind can open.
    pub fn decide_socket(&self, from: FunctionId, socket: SocketUse, addr: SocketAddr) -> Decision {
        match socket {
            SocketUse::TcpConnect => self.decide_egress(
                from,
                EgressScheme::Tcp,
                EgressHost::Ip(addr.ip()),
                addr.port(),
            ),
            SocketUse::Other(what) => Decision::refuse(
                Reason::UnsupportedProtocol(format!("socket use {what}")),
                false,
            ),
        }
    }

    /// Decides the address an admitted egress flow is about to dial, after DNS: refused when it
    /// is inside the operator ceiling (checked in canonical form, so `::ffff:127.0.0.1` is
    /// loopback). No rule and no audit mode opens the ceiling. The dialler dials exactly an
    /// address this admitted, and nothing else.
    pub fn decide_dialled_address(&self, ip: IpAddr) -> Result<(), Decision> {
        self.ceiling
            .check(ip)
            .map_err(|block| Decision::refuse(Reason::Ceiling(block), false))
    }

    /// Decides the gateway's own fetch of issuer `issuer`'s signing keys, before any DNS
    /// lookup: opened by the issuer's `jwks_url` and by nothing else, so the fetch reaches that
    /// URL only. The address it dials still has to pass [`Policy::decide_dialled_address`].
    pub fn decide_key_fetch(&self, issuer: &Name) -> Decision {
        let declared = self
            .jwt_issuers()
            .iter()
            .any(|i| i.name == *issuer && matches!(i.jwks, septa_manifest::JwksSource::Url { .. }));
        if declared {
            return Decision {
                verdict: crate::Verdict::Allow,
                rule: Some(RuleId::IssuerKeys(issuer.clone())),
                reason: Reason::IssuerKeys {
                    issuer: issuer.clone(),
                },
            };
        }
        Decision::refuse(
            Reason::UnknownDestination(format!("the keys of jwt issuer `{issuer}`")),
            false,
        )
    }

    /// Every egress destination each function may reach, and the rule that opens it, in
    /// function and file order (isolated functions have none).
    pub fn egress_edges(&self) -> Vec<EgressEdge<'_>> {
        let mut out = Vec::new();
        for (i, index) in self.egress.iter().enumerate() {
            let from = FunctionId(i as u32);
            let mut entries: Vec<&EgressEntry> = index
                .names
                .values()
                .chain(index.subdomains.values())
                .flatten()
                .chain(index.networks.iter().map(|(_, e)| e))
                .collect();
            entries.sort_by_key(|e| e.order);
            out.extend(entries.into_iter().map(|e| EgressEdge {
                from,
                rule: &e.rule,
                target: &e.target,
            }));
        }
        out
    }
}

/// The address an IP literal is matched as against CIDR rules: an IPv4-mapped address
/// (`::ffff:a.b.c.d`) as the IPv4 address it is, since a dual-stack socket connecting to it
/// opens the very same IPv4 connection; every other address as given, so an IPv6 form that
/// reaches an IPv4 network through a translator or a tunnel (6to4, NAT64, Teredo,
/// IPv4-compatible, IPv4-translated) is admitted only by an IPv6 rule that names it.
fn rule_address(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        IpAddr::V4(_) => ip,
    }
}

/// A CIDR rule's network as [`rule_address`] reads addresses: one written inside
/// `::ffff:0:0/96` is the IPv4 network it maps, so `::ffff:10.0.0.0/104` and `10.0.0.0/8` are one
/// rule; an IPv6 network that contains mapped addresses (`::/0`) admits none of them, because
/// they are matched as IPv4.
fn rule_network(net: IpNet) -> IpNet {
    let IpNet::V6(v6) = net else {
        return net;
    };
    match (
        v6.network().to_ipv4_mapped(),
        v6.prefix_len().checked_sub(96),
    ) {
        (Some(v4), Some(len)) => Ipv4Net::new(v4, len).map_or(net, IpNet::V4),
        _ => net,
    }
}

/// `a.b.example.com` → `b.example.com`, `example.com`, `com`: the domains a `*.` rule may name.
fn parent_domains(name: &str) -> impl Iterator<Item = &str> {
    name.match_indices('.').map(move |(i, _)| &name[i + 1..])
}

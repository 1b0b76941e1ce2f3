//! The check's reading of egress to the outside: for each function, addresses its egress rules
//! name (and a public address no rule names, and the metadata service) are probed against the
//! template's security groups, network ACLs and route tables, and against septa's own decision.
//!
//! A Lambda function's network interface has no public address, so from the template's side
//! only a route through a NAT gateway (itself in a subnet routed to an attached internet
//! gateway) reaches the internet; a route straight to an internet gateway does not.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv4Addr};

use ipnet::IpNet;
use septa_manifest::{EgressScheme, HostPattern, SubnetKind};
use septa_policy::{EgressHost, FunctionId, Policy, Verdict};

use super::check::{EPHEMERAL, Placed};
use super::reader::{Model, target};
use crate::reason::ReasonCode;
use crate::report::{Difference, Direction, PairRow};

/// A public address standing in for whatever a DNS name resolves to.
const RESOLVED: Ipv4Addr = Ipv4Addr::new(93, 184, 216, 34);
/// A public address no rule of the tests names.
const UNNAMED: Ipv4Addr = Ipv4Addr::new(8, 8, 8, 8);
/// The instance metadata service.
const METADATA: Ipv4Addr = Ipv4Addr::new(169, 254, 169, 254);

/// One probe: what septa is asked, and the address the template is asked about.
struct Probe {
    label: String,
    scheme: EgressScheme,
    name: Option<String>,
    address: IpAddr,
    port: u16,
}

fn probes(policy: &Policy, from: FunctionId) -> Vec<Probe> {
    let mut out = Vec::new();
    for edge in policy.egress_edges().iter().filter(|e| e.from == from) {
        let target = edge.target;
        let scheme = match target.scheme {
            EgressScheme::Any => EgressScheme::Tcp,
            other => other,
        };
        let port = target.port_min;
        match &target.host {
            HostPattern::Cidr(net) => {
                let address = match net {
                    IpNet::V4(v4) => v4.hosts().next().map_or(IpAddr::V4(v4.addr()), IpAddr::V4),
                    IpNet::V6(v6) => v6.hosts().next().map_or(IpAddr::V6(v6.addr()), IpAddr::V6),
                };
                out.push(Probe {
                    label: format!("{scheme} {}", EgressHost::Ip(address)),
                    scheme,
                    name: None,
                    address,
                    port,
                });
            }
            HostPattern::Name(name) => out.push(name_probe(scheme, name.clone(), port)),
            HostPattern::Subdomain(domain) => {
                out.push(name_probe(scheme, format!("www.{domain}"), port));
            }
        }
    }
    for (address, port) in [(UNNAMED, 443), (METADATA, 80)] {
        out.push(Probe {
            label: format!("tcp {address}"),
            scheme: EgressScheme::Tcp,
            name: None,
            address: IpAddr::V4(address),
            port,
        });
    }
    for p in &mut out {
        p.label = format!("{}:{}", p.label, p.port);
    }
    out
}

fn name_probe(scheme: EgressScheme, name: String, port: u16) -> Probe {
    Probe {
        label: format!("{scheme} {name}@{RESOLVED}"),
        scheme,
        name: Some(name),
        address: IpAddr::V4(RESOLVED),
        port,
    }
}

/// Whether subnet `subnet` reaches the internet address `to`: a route covering it through a NAT
/// gateway whose own subnet routes to an internet gateway attached to the VPC.
fn routes_out(model: &Model, subnet: &str, to: Ipv4Addr) -> bool {
    let Some(table) = model.subnet_table.get(subnet) else {
        return false;
    };
    let attached = |igw: &str| {
        model
            .of_kind("AWS::EC2::VPCGatewayAttachment")
            .any(|(_, p)| target(&p["InternetGatewayId"]) == Some(igw))
    };
    model
        .routes
        .get(table)
        .into_iter()
        .flatten()
        .any(|(dest, via)| {
            dest.contains(&to)
                && model
                    .props(via, "AWS::EC2::NatGateway")
                    .and_then(|nat| target(&nat["SubnetId"]))
                    .and_then(|nat_subnet| model.subnet_table.get(nat_subnet))
                    .and_then(|t| model.routes.get(t))
                    .into_iter()
                    .flatten()
                    .any(|(d, igw)| {
                        d.contains(&to)
                            && model.props(igw, "AWS::EC2::InternetGateway").is_some()
                            && attached(igw)
                    })
        })
}

/// Compares egress to the outside, adding differences to `found` and rows to `pairs`.
pub(crate) fn compare(
    policy: &Policy,
    model: &Model,
    placed: &BTreeMap<FunctionId, Placed>,
    found: &mut BTreeMap<(String, String, Direction, Option<ReasonCode>), Difference>,
    pairs: &mut Vec<PairRow>,
) {
    for f in policy.functions() {
        if f.spec.is_endpoint() {
            continue;
        }
        let Some(placed) = placed.get(&f.id).filter(|p| p.resource.is_some()) else {
            continue;
        };
        let cell = format!("{}/{}", f.spec.placement.segment, f.spec.name);
        let (mut septa_allows, mut export_allows) = (Vec::new(), Vec::new());
        for probe in probes(policy, f.id) {
            let host = match &probe.name {
                Some(name) => EgressHost::Name(name),
                None => EgressHost::Ip(probe.address),
            };
            let decision = policy.decide_egress(f.id, probe.scheme, host, probe.port);
            let dialled = policy.decide_dialled_address(probe.address).is_ok();
            let septa = decision.verdict != Verdict::Deny && dialled;
            let export = match probe.address {
                IpAddr::V4(to) => {
                    !placed.subnets.is_empty()
                        && placed.subnets.iter().all(|s| {
                            model.acl_admits(s, true, to, probe.port)
                                && model.acl_admits(s, false, to, EPHEMERAL)
                                && routes_out(model, s, to)
                        })
                        && model.sg_egress_admits(&placed.groups, probe.port, to, &[])
                }
                IpAddr::V6(_) => false,
            };
            if septa {
                septa_allows.push(probe.label.clone());
            }
            if export {
                export_allows.push(probe.label.clone());
            }
            if septa == export {
                continue;
            }
            let code = if export {
                // Only a rule naming a host opens a port to any address.
                policy
                    .egress_edges()
                    .iter()
                    .any(|e| {
                        e.from == f.id
                            && matches!(
                                e.target.host,
                                HostPattern::Name(_) | HostPattern::Subdomain(_)
                            )
                            && e.target.admits_port(probe.port)
                    })
                    .then_some(ReasonCode::FirewallDomains)
            } else if decision.verdict == Verdict::Audit {
                Some(ReasonCode::AuditMode)
            } else if f.spec.subnet_kind == SubnetKind::Public {
                Some(ReasonCode::PublicSubnetEgress)
            } else if probe.address.is_ipv6() {
                Some(ReasonCode::Ipv4Only)
            } else if policy
                .ceiling()
                .relaxed_ranges()
                .any(|r| r.contains(&probe.address))
            {
                Some(ReasonCode::AclCeiling)
            } else {
                None
            };
            let direction = if export {
                Direction::Wider
            } else {
                Direction::Narrower
            };
            let entry = found
                .entry((cell.clone(), "outside".to_owned(), direction, code))
                .or_insert_with(|| Difference {
                    code,
                    direction,
                    from: cell.clone(),
                    to: "outside".to_owned(),
                    rules: Vec::new(),
                    objects: placed
                        .groups
                        .iter()
                        .map(|g| format!("AWS::EC2::SecurityGroup {g}"))
                        .collect(),
                    detail: if export {
                        "the template lets out egress septa refuses".to_owned()
                    } else {
                        "the template refuses egress septa lets out".to_owned()
                    },
                    examples: Vec::new(),
                });
            if entry.examples.len() < 4 {
                entry.examples.push(probe.label.clone());
            }
            let rules: BTreeSet<String> = entry.rules.iter().cloned().collect();
            let mut rules = rules;
            if let Some(septa_policy::RuleId::Egress(rule)) = &decision.rule {
                rules.insert(rule.to_string());
            }
            entry.rules = rules.into_iter().collect();
        }
        pairs.push(PairRow {
            from: cell,
            to: "outside".to_owned(),
            septa: septa_allows,
            export: export_allows,
        });
    }
}

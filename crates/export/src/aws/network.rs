//! The network: a VPC per segment, each septa subnet as two subnets (one per availability zone)
//! sharing a route table and a network ACL. `public` subnets route to an internet gateway;
//! `private` ones route out through a NAT gateway only when a function there has egress;
//! `isolated` ones have no route out at all. The ACLs are stateless: each opens what the
//! subnet's functions need (Lattice, stores, their egress rules) and the return traffic, and puts
//! the operator ceiling as deny entries before the egress allows they overlap, within AWS's 20
//! entries per direction. VPCs whose security groups
//! reference each other are peered (with no routes), since AWS accepts such references only
//! between peered VPCs.

use std::collections::{BTreeMap, BTreeSet};

use ipnet::{IpNet, Ipv4Net};
use septa_manifest::{EndpointBackend, FunctionKind, HostPattern, Name, SubnetKind};
use septa_policy::Policy;
use serde_json::{Value, json};

use super::names::{
    EPHEMERAL_MIN, LATTICE_CIDR, LATTICE_PORT, MAX_SEGMENTS, MAX_SUBNETS, ZONES, nat_subnet_cidr,
    pascal, reference, subnet_cidr, subnet_id, tags, vpc_cidr, vpc_id,
};
use super::{ExportError, Template, by_name};

/// One septa subnet's place in the address plan.
#[derive(Clone, Debug)]
pub(crate) struct SubnetPlan {
    /// Its index within the segment.
    pub index: usize,
    /// Its tier.
    pub kind: SubnetKind,
}

/// The address plan, and what each subnet needs opened.
#[derive(Debug)]
pub(crate) struct Plan {
    /// Each segment's index, in name order.
    pub segments: BTreeMap<Name, usize>,
    /// Each subnet, by (segment, subnet).
    pub subnets: BTreeMap<(Name, Name), SubnetPlan>,
    /// Pairs of segments whose security groups reference each other.
    pub peered: BTreeSet<(Name, Name)>,
}

/// The port a store's server listens on.
pub(crate) fn store_port(backend: &EndpointBackend) -> Option<u16> {
    match backend {
        EndpointBackend::Redis(_) => Some(6379),
        EndpointBackend::Postgres(_) => Some(5432),
        EndpointBackend::Embedded => None,
    }
}

impl Plan {
    pub(crate) fn new(policy: &Policy) -> Result<Self, ExportError> {
        let manifest = policy.manifest();
        if manifest.segments.len() > MAX_SEGMENTS {
            return Err(ExportError::AddressPlan(format!(
                "{} segments: the address plan gives each a /16 of 10.0.0.0/8, at most {MAX_SEGMENTS}",
                manifest.segments.len()
            )));
        }
        let mut segments = BTreeMap::new();
        let mut subnets = BTreeMap::new();
        for (i, segment) in manifest.segments.values().enumerate() {
            segments.insert(segment.name.clone(), i);
            if segment.subnets.len() > MAX_SUBNETS {
                return Err(ExportError::AddressPlan(format!(
                    "segment `{}` has {} subnets, at most {MAX_SUBNETS} fit its /16",
                    segment.name,
                    segment.subnets.len()
                )));
            }
            for (j, (name, kind)) in segment.subnets.iter().enumerate() {
                subnets.insert(
                    (segment.name.clone(), name.clone()),
                    SubnetPlan {
                        index: j,
                        kind: *kind,
                    },
                );
            }
        }
        let mut peered = BTreeSet::new();
        for edge in policy.mesh_edges() {
            let a = &policy.function(edge.from).spec.placement.segment;
            let b = &policy.function(edge.to).spec.placement.segment;
            if a != b {
                let (x, y) = if a < b { (a, b) } else { (b, a) };
                peered.insert((x.clone(), y.clone()));
            }
        }
        Ok(Self {
            segments,
            subnets,
            peered,
        })
    }

    /// A subnet's plan (every placement names one: the manifest loader checks it).
    pub(crate) fn subnet(&self, segment: &Name, subnet: &Name) -> Option<&SubnetPlan> {
        self.subnets.get(&(segment.clone(), subnet.clone()))
    }
}

/// The logical id of a septa subnet's route table.
pub(crate) fn route_table_id(segment: &Name, subnet: &Name) -> String {
    format!(
        "RouteTable{}{}",
        pascal(segment.as_str()),
        pascal(subnet.as_str())
    )
}

/// The logical id of the peering between two segments' VPCs, in either order.
pub(crate) fn peering_id(a: &Name, b: &Name) -> String {
    let (x, y) = if a < b { (a, b) } else { (b, a) };
    format!("Peering{}{}", pascal(x.as_str()), pascal(y.as_str()))
}

/// The logical id of a septa subnet's network ACL.
pub(crate) fn acl_id(segment: &Name, subnet: &Name) -> String {
    format!("Acl{}{}", pascal(segment.as_str()), pascal(subnet.as_str()))
}

/// The network ACL entries AWS allows per direction unless the quota is raised.
const MAX_ACL_ENTRIES: usize = 20;

/// What a subnet's functions need to reach.
#[derive(Default)]
struct Needs {
    /// Some function calls another over Lattice.
    lattice: bool,
    /// Ports of stores in the same VPC its functions call, and ports its stores serve.
    store_out: BTreeSet<u16>,
    store_in: BTreeSet<u16>,
    /// Egress: (CIDR, from port, to port).
    egress: BTreeSet<(String, u16, u16)>,
}

fn needs(policy: &Policy) -> BTreeMap<(Name, Name), Needs> {
    let mut out: BTreeMap<(Name, Name), Needs> = BTreeMap::new();
    let key = |f: septa_policy::FunctionId| {
        let p = &policy.function(f).spec.placement;
        (p.segment.clone(), p.subnet.clone())
    };
    for edge in policy.mesh_edges() {
        match &policy.function(edge.to).spec.kind {
            FunctionKind::Component(_) => out.entry(key(edge.from)).or_default().lattice = true,
            FunctionKind::Endpoint(backend) => {
                let same_vpc = policy.function(edge.from).spec.placement.segment
                    == policy.function(edge.to).spec.placement.segment;
                if let (Some(port), true) = (store_port(backend), same_vpc) {
                    out.entry(key(edge.from))
                        .or_default()
                        .store_out
                        .insert(port);
                    out.entry(key(edge.to)).or_default().store_in.insert(port);
                }
            }
        }
    }
    for edge in policy.egress_edges() {
        let target = edge.target;
        let cidr = match &target.host {
            HostPattern::Cidr(IpNet::V4(net)) => net.trunc().to_string(),
            // The VPCs are IPv4 only: an IPv6 target has no way out (a `known` difference).
            HostPattern::Cidr(IpNet::V6(_)) => continue,
            _ if by_name(&target.host) => "0.0.0.0/0".to_owned(),
            _ => continue,
        };
        out.entry(key(edge.from)).or_default().egress.insert((
            cidr,
            target.port_min,
            target.port_max,
        ));
    }
    out
}

/// Whether any function in the subnet has egress to the outside.
fn has_egress(needs: &BTreeMap<(Name, Name), Needs>, segment: &Name, subnet: &Name) -> bool {
    needs
        .get(&(segment.clone(), subnet.clone()))
        .is_some_and(|n| !n.egress.is_empty())
}

/// Every network resource.
pub(crate) fn resources(
    policy: &Policy,
    plan: &Plan,
    template: &mut Template,
) -> Result<(), ExportError> {
    let needs = needs(policy);
    // The ceiling's IPv4 ranges, merged where they nest or touch: ACL entries are few.
    let blocked: Vec<Ipv4Net> = Ipv4Net::aggregate(
        &policy
            .ceiling()
            .blocked_ranges()
            .filter_map(|(net, _)| match net {
                IpNet::V4(v4) => Some(v4.trunc()),
                IpNet::V6(_) => None,
            })
            .collect(),
    );
    for (segment, &index) in &plan.segments {
        let origin = format!("segment `{segment}`");
        let vpc = vpc_id(segment);
        template.resource(
            &vpc,
            "AWS::EC2::VPC",
            json!({
                "CidrBlock": vpc_cidr(index),
                "EnableDnsHostnames": true,
                "EnableDnsSupport": true,
                "Tags": tags(&[("Name", format!("{}-{segment}", policy.manifest().application)), ("septa:segment", segment.to_string())]),
            }),
            &origin,
        )?;
        let subnets: Vec<(&Name, &SubnetPlan)> = plan
            .subnets
            .iter()
            .filter(|((s, _), _)| s == segment)
            .map(|((_, n), p)| (n, p))
            .collect();
        let public = subnets.iter().any(|(_, p)| p.kind == SubnetKind::Public);
        let nat = subnets
            .iter()
            .any(|(n, p)| p.kind == SubnetKind::Private && has_egress(&needs, segment, n));
        let igw = format!("InternetGateway{}", pascal(segment.as_str()));
        let attachment = format!("InternetGatewayAttachment{}", pascal(segment.as_str()));
        if public || nat {
            template.resource(&igw, "AWS::EC2::InternetGateway", json!({}), &origin)?;
            template.resource(
                &attachment,
                "AWS::EC2::VPCGatewayAttachment",
                json!({ "InternetGatewayId": reference(&igw), "VpcId": reference(&vpc) }),
                &origin,
            )?;
        }
        let nat_gateway = format!("NatGateway{}", pascal(segment.as_str()));
        if nat {
            nat_resources(
                segment,
                index,
                &vpc,
                &igw,
                &attachment,
                &nat_gateway,
                template,
            )?;
        }
        for (name, subnet) in subnets {
            let origin = format!("subnet `{segment}/{name}`");
            let table = route_table_id(segment, name);
            template.resource(
                &table,
                "AWS::EC2::RouteTable",
                json!({ "VpcId": reference(&vpc), "Tags": tags(&[("septa:subnet", format!("{segment}/{name}"))]) }),
                &origin,
            )?;
            let acl = acl_id(segment, name);
            template.resource(
                &acl,
                "AWS::EC2::NetworkAcl",
                json!({ "VpcId": reference(&vpc), "Tags": tags(&[("septa:subnet", format!("{segment}/{name}"))]) }),
                &origin,
            )?;
            for (z, zone) in ZONES.iter().enumerate() {
                let id = subnet_id(segment, name, zone);
                template.resource(
                    &id,
                    "AWS::EC2::Subnet",
                    json!({
                        "AvailabilityZone": { "Fn::Select": [z, { "Fn::GetAZs": "" }] },
                        "CidrBlock": subnet_cidr(index, subnet.index, z),
                        "MapPublicIpOnLaunch": false,
                        "Tags": tags(&[("septa:subnet", format!("{segment}/{name}")), ("septa:tier", tier(subnet.kind).to_owned())]),
                        "VpcId": reference(&vpc),
                    }),
                    &origin,
                )?;
                template.resource(
                    &format!("{table}Association{zone}"),
                    "AWS::EC2::SubnetRouteTableAssociation",
                    json!({ "RouteTableId": reference(&table), "SubnetId": reference(&id) }),
                    &origin,
                )?;
                template.resource(
                    &format!("{acl}Association{zone}"),
                    "AWS::EC2::SubnetNetworkAclAssociation",
                    json!({ "NetworkAclId": reference(&acl), "SubnetId": reference(&id) }),
                    &origin,
                )?;
            }
            // A route to the internet gateway waits for its attachment; one to the NAT gateway
            // already waits for the gateway by its reference.
            let way_out = match subnet.kind {
                SubnetKind::Public => Some(json!({
                    "Type": "AWS::EC2::Route",
                    "DependsOn": attachment,
                    "Properties": { "DestinationCidrBlock": "0.0.0.0/0", "GatewayId": reference(&igw), "RouteTableId": reference(&table) },
                })),
                SubnetKind::Private if has_egress(&needs, segment, name) => Some(json!({
                    "Type": "AWS::EC2::Route",
                    "Properties": { "DestinationCidrBlock": "0.0.0.0/0", "NatGatewayId": reference(&nat_gateway), "RouteTableId": reference(&table) },
                })),
                _ => None,
            };
            if let Some(route) = way_out {
                template.resource_value(&format!("{table}Default"), route, &origin)?;
            }
            let empty = Needs::default();
            let need = needs
                .get(&(segment.clone(), name.clone()))
                .unwrap_or(&empty);
            acl_entries(&acl, need, &vpc_cidr(index), &blocked, &origin, template)?;
        }
    }
    for (a, b) in &plan.peered {
        template.resource(
            &peering_id(a, b),
            "AWS::EC2::VPCPeeringConnection",
            json!({
                "PeerVpcId": reference(&vpc_id(b)),
                "Tags": tags(&[("septa:purpose", "security group references between the two segments; no routes".to_owned())]),
                "VpcId": reference(&vpc_id(a)),
            }),
            &format!("segments `{a}` and `{b}`"),
        )?;
    }
    Ok(())
}

fn tier(kind: SubnetKind) -> &'static str {
    match kind {
        SubnetKind::Public => "public",
        SubnetKind::Private => "private",
        SubnetKind::Isolated => "isolated",
    }
}

/// A NAT gateway in a subnet of its own that routes to the internet gateway.
fn nat_resources(
    segment: &Name,
    index: usize,
    vpc: &str,
    igw: &str,
    attachment: &str,
    nat_gateway: &str,
    template: &mut Template,
) -> Result<(), ExportError> {
    let origin = format!("the NAT gateway of segment `{segment}`");
    let seg = pascal(segment.as_str());
    let subnet = format!("NatSubnet{seg}");
    let table = format!("NatRouteTable{seg}");
    let eip = format!("NatAddress{seg}");
    template.resource(
        &subnet,
        "AWS::EC2::Subnet",
        json!({
            "AvailabilityZone": { "Fn::Select": [0, { "Fn::GetAZs": "" }] },
            "CidrBlock": nat_subnet_cidr(index),
            "MapPublicIpOnLaunch": false,
            "Tags": tags(&[("septa:tier", "nat".to_owned())]),
            "VpcId": reference(vpc),
        }),
        &origin,
    )?;
    template.resource(
        &table,
        "AWS::EC2::RouteTable",
        json!({ "VpcId": reference(vpc) }),
        &origin,
    )?;
    template.resource(
        &format!("{table}Association"),
        "AWS::EC2::SubnetRouteTableAssociation",
        json!({ "RouteTableId": reference(&table), "SubnetId": reference(&subnet) }),
        &origin,
    )?;
    template.resource_value(
        &format!("{table}Default"),
        json!({
            "Type": "AWS::EC2::Route",
            "DependsOn": attachment,
            "Properties": { "DestinationCidrBlock": "0.0.0.0/0", "GatewayId": reference(igw), "RouteTableId": reference(&table) },
        }),
        &origin,
    )?;
    template.resource_value(
        &eip,
        json!({ "Type": "AWS::EC2::EIP", "DependsOn": attachment, "Properties": { "Domain": "vpc" } }),
        &origin,
    )?;
    template.resource(
        nat_gateway,
        "AWS::EC2::NatGateway",
        json!({ "AllocationId": { "Fn::GetAtt": [eip, "AllocationId"] }, "SubnetId": reference(&subnet) }),
        &origin,
    )
}

/// One ACL entry.
fn entry(
    acl: &str,
    egress: bool,
    number: u32,
    allow: bool,
    cidr: &str,
    ports: Option<(u16, u16)>,
) -> Value {
    let mut properties = json!({
        "CidrBlock": cidr,
        "Egress": egress,
        "NetworkAclId": reference(acl),
        "Protocol": if ports.is_some() { 6 } else { -1 },
        "RuleAction": if allow { "allow" } else { "deny" },
        "RuleNumber": number,
    });
    if let Some((from, to)) = ports {
        properties["PortRange"] = json!({ "From": from, "To": to });
    }
    json!({ "Type": "AWS::EC2::NetworkAclEntry", "Properties": properties })
}

/// One outbound ACL entry: allow or deny, the range, the ports (`None`: every protocol).
type Outbound = (bool, String, Option<(u16, u16)>);

/// The ACL's entries: Lattice and same-VPC stores first (both inside ranges the ceiling blocks),
/// then the ceiling's denies, then the egress rules, and return traffic inbound. Anything else
/// falls to the ACL's implicit deny.
fn acl_entries(
    acl: &str,
    need: &Needs,
    vpc: &str,
    blocked: &[Ipv4Net],
    origin: &str,
    template: &mut Template,
) -> Result<(), ExportError> {
    let mut outbound: Vec<Outbound> = Vec::new();
    let mut inbound: Vec<(String, (u16, u16))> = Vec::new();
    if need.lattice {
        outbound.push((
            true,
            LATTICE_CIDR.to_owned(),
            Some((LATTICE_PORT, LATTICE_PORT)),
        ));
    }
    for &port in &need.store_out {
        outbound.push((true, vpc.to_owned(), Some((port, port))));
    }
    for &port in &need.store_in {
        inbound.push((vpc.to_owned(), (port, port)));
        outbound.push((true, vpc.to_owned(), Some((EPHEMERAL_MIN, u16::MAX))));
    }
    let internal = outbound.len();
    if !need.egress.is_empty() {
        // A deny matters only ahead of an allow it overlaps; the rest meets the implicit deny.
        let allowed: Vec<Ipv4Net> = need
            .egress
            .iter()
            .filter_map(|(cidr, _, _)| cidr.parse().ok())
            .collect();
        for net in blocked {
            if allowed
                .iter()
                .any(|a| a.contains(&net.network()) || net.contains(&a.network()))
            {
                outbound.push((false, net.to_string(), None));
            }
        }
        for (cidr, from, to) in &need.egress {
            outbound.push((true, cidr.clone(), Some((*from, *to))));
        }
    }
    if internal > 0 || !need.egress.is_empty() {
        inbound.push(("0.0.0.0/0".to_owned(), (EPHEMERAL_MIN, u16::MAX)));
    }
    outbound.dedup();
    inbound.sort();
    inbound.dedup();
    for (direction, count) in [("outbound", outbound.len()), ("inbound", inbound.len())] {
        if count > MAX_ACL_ENTRIES {
            return Err(ExportError::Quota(format!(
                "{origin} needs {count} {direction} network ACL entries, more than the {MAX_ACL_ENTRIES} AWS allows by default: merge its egress rules' addresses"
            )));
        }
    }
    for (i, (allow, cidr, ports)) in outbound.iter().enumerate() {
        let number = 100 + 10 * i as u32;
        template.resource_value(
            &format!("{acl}Out{number}"),
            entry(acl, true, number, *allow, cidr, *ports),
            origin,
        )?;
    }
    for (i, (cidr, ports)) in inbound.iter().enumerate() {
        let number = 100 + 10 * i as u32;
        template.resource_value(
            &format!("{acl}In{number}"),
            entry(acl, false, number, true, cidr, Some(*ports)),
            origin,
        )?;
    }
    Ok(())
}

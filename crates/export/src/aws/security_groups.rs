//! Security groups: one per function and per Redis or PostgreSQL endpoint, and one per septa
//! group in each segment's VPC its members run in. A callee admits, on the Lattice port, exactly
//! the groups of its callers (the septa group's when the allow rule names a group, else the
//! caller's own); a store admits its callers on its server's port; a caller may send to Lattice,
//! to its stores and to its egress rules' addresses. Nothing else is open: a group with no egress
//! rule gets a placeholder one, since a group with none would be open to everything.

use std::collections::{BTreeMap, BTreeSet};

use ipnet::IpNet;
use septa_manifest::{FunctionKind, HostPattern, Name, Selector};
use septa_policy::Policy;
use serde_json::{Value, json};

use super::names::{
    LATTICE_CIDR, LATTICE_PORT, function_sg_id, get_att, group_sg_id, reference, vpc_id,
};
use super::network::{peering_id, store_port};
use super::{ExportError, Template, by_name};

/// The CIDR a placeholder egress rule names: nothing leaves to it.
pub(crate) const PLACEHOLDER_CIDR: &str = "127.0.0.1/32";

/// The security groups a function's Lambda function (or a store) is placed in, as logical ids.
pub(crate) fn groups_of(policy: &Policy, function: septa_policy::FunctionId) -> Vec<String> {
    let spec = &policy.function(function).spec;
    let mut out = vec![function_sg_id(&spec.name)];
    for g in &spec.groups {
        out.push(group_sg_id(g, &spec.placement.segment));
    }
    out
}

/// Whether a function or endpoint has a security group of its own (embedded stores do not).
pub(crate) fn has_group(policy: &Policy, function: septa_policy::FunctionId) -> bool {
    match &policy.function(function).spec.kind {
        FunctionKind::Component(_) => true,
        FunctionKind::Endpoint(backend) => store_port(backend).is_some(),
    }
}

/// The group a caller's flow is admitted from: the septa group's when the allow rule selects
/// callers by a group the caller is in, else the caller's own.
fn source_group(policy: &Policy, rule: &Name, caller: septa_policy::FunctionId) -> String {
    let spec = &policy.function(caller).spec;
    let selector = policy
        .manifest()
        .allows
        .iter()
        .find(|a| &a.id == rule)
        .map(|a| &a.from);
    match selector {
        Some(Selector::Group(g)) if spec.groups.contains(g) => {
            group_sg_id(g, &spec.placement.segment)
        }
        _ => function_sg_id(&spec.name),
    }
}

/// Every security group and rule.
pub(crate) fn resources(policy: &Policy, template: &mut Template) -> Result<(), ExportError> {
    let application = &policy.manifest().application;
    // Inline egress per group: (protocol, cidr, from, to, description).
    let mut egress: BTreeMap<String, BTreeSet<(String, u16, u16, String)>> = BTreeMap::new();
    let mut owners: BTreeMap<String, (Name, String)> = BTreeMap::new();
    for f in policy.functions() {
        if !has_group(policy, f.id) {
            continue;
        }
        let spec = &f.spec;
        owners.insert(
            function_sg_id(&spec.name),
            (spec.placement.segment.clone(), spec.identity()),
        );
        egress.entry(function_sg_id(&spec.name)).or_default();
        for g in &spec.groups {
            owners.insert(
                group_sg_id(g, &spec.placement.segment),
                (spec.placement.segment.clone(), format!("group:{g}")),
            );
            egress
                .entry(group_sg_id(g, &spec.placement.segment))
                .or_default();
        }
    }
    let mut ingress: BTreeSet<(String, String, u16)> = BTreeSet::new();
    let mut to_groups: BTreeSet<(String, String, u16)> = BTreeSet::new();
    for edge in policy.mesh_edges() {
        let callee = policy.function(edge.to);
        let caller = policy.function(edge.from);
        if !has_group(policy, edge.to) || caller.spec.is_endpoint() {
            continue;
        }
        let callee_sg = function_sg_id(&callee.spec.name);
        match &callee.spec.kind {
            FunctionKind::Component(_) => {
                let source = source_group(policy, edge.rule, edge.from);
                ingress.insert((callee_sg, source, LATTICE_PORT));
                egress
                    .entry(function_sg_id(&caller.spec.name))
                    .or_default()
                    .insert((
                        LATTICE_CIDR.to_owned(),
                        LATTICE_PORT,
                        LATTICE_PORT,
                        "calls over VPC Lattice".to_owned(),
                    ));
            }
            FunctionKind::Endpoint(backend) => {
                if let Some(port) = store_port(backend) {
                    let caller_sg = function_sg_id(&caller.spec.name);
                    ingress.insert((callee_sg.clone(), caller_sg.clone(), port));
                    to_groups.insert((caller_sg, callee_sg, port));
                }
            }
        }
    }
    for edge in policy.egress_edges() {
        let target = edge.target;
        let cidr = match &target.host {
            HostPattern::Cidr(IpNet::V4(net)) => net.trunc().to_string(),
            HostPattern::Cidr(IpNet::V6(_)) => continue,
            host if by_name(host) => "0.0.0.0/0".to_owned(),
            _ => continue,
        };
        egress
            .entry(function_sg_id(&policy.function(edge.from).spec.name))
            .or_default()
            .insert((
                cidr,
                target.port_min,
                target.port_max,
                format!("egress rule {}", edge.rule),
            ));
    }
    check_quota(&egress, &ingress, &to_groups, &owners)?;
    for (id, rules) in &egress {
        let Some((segment, what)) = owners.get(id) else {
            continue;
        };
        let mut list: Vec<Value> = rules
            .iter()
            .map(|(cidr, from, to, why)| {
                json!({ "CidrIp": cidr, "Description": why, "FromPort": from, "IpProtocol": "tcp", "ToPort": to })
            })
            .collect();
        // Without an inline rule AWS keeps its default allow-all egress, whatever separate
        // egress resources add.
        if list.is_empty() {
            list.push(json!({
                "CidrIp": PLACEHOLDER_CIDR,
                "Description": "no egress: replaces the default rule that allows all",
                "IpProtocol": "-1",
            }));
        }
        let properties = json!({
            "GroupDescription": format!("{application} {what}"),
            "Tags": super::names::tags(&[("septa:member", what.clone())]),
            "SecurityGroupEgress": list,
            "VpcId": reference(&vpc_id(segment)),
        });
        template.resource(id, "AWS::EC2::SecurityGroup", properties, what)?;
    }
    // A rule naming another VPC's group is accepted only once the VPCs are peered.
    let peering = |a: &String, b: &String| -> Option<String> {
        let (x, y) = (&owners.get(a)?.0, &owners.get(b)?.0);
        (x != y).then(|| peering_id(x, y))
    };
    for (to, from, port) in &ingress {
        rule(
            template,
            &format!("{to}From{}", from.trim_start_matches("Sg")),
            "AWS::EC2::SecurityGroupIngress",
            json!({
                "Description": format!("calls from {}", owners.get(from).map_or("?", |o| o.1.as_str())),
                "FromPort": port,
                "GroupId": get_att(to, "GroupId"),
                "IpProtocol": "tcp",
                "SourceSecurityGroupId": get_att(from, "GroupId"),
                "ToPort": port,
            }),
            peering(to, from),
            &format!("{to} ingress"),
        )?;
    }
    for (from, to, port) in &to_groups {
        rule(
            template,
            &format!("{from}To{}", to.trim_start_matches("Sg")),
            "AWS::EC2::SecurityGroupEgress",
            json!({
                "Description": format!("calls to {}", owners.get(to).map_or("?", |o| o.1.as_str())),
                "DestinationSecurityGroupId": get_att(to, "GroupId"),
                "FromPort": port,
                "GroupId": get_att(from, "GroupId"),
                "IpProtocol": "tcp",
                "ToPort": port,
            }),
            peering(from, to),
            &format!("{from} egress"),
        )?;
    }
    Ok(())
}

/// One separate security group rule, after the peering it needs when it names another VPC's
/// group.
fn rule(
    template: &mut Template,
    id: &str,
    kind: &str,
    properties: Value,
    peering: Option<String>,
    origin: &str,
) -> Result<(), ExportError> {
    let mut resource = json!({ "Type": kind, "Properties": properties });
    if let Some(peering) = peering {
        resource["DependsOn"] = json!(peering);
    }
    template.resource_value(id, resource, origin)
}

/// The rules AWS allows per security group and direction unless the quota is raised.
const MAX_GROUP_RULES: usize = 60;

/// Refuses a group that would hold more rules in one direction than AWS allows.
fn check_quota(
    egress: &BTreeMap<String, BTreeSet<(String, u16, u16, String)>>,
    ingress: &BTreeSet<(String, String, u16)>,
    to_groups: &BTreeSet<(String, String, u16)>,
    owners: &BTreeMap<String, (Name, String)>,
) -> Result<(), ExportError> {
    for (id, (_, what)) in owners {
        let inbound = ingress.iter().filter(|(to, _, _)| to == id).count();
        let outbound = egress.get(id).map_or(0, BTreeSet::len)
            + to_groups.iter().filter(|(from, _, _)| from == id).count();
        for (direction, count) in [("inbound", inbound), ("outbound", outbound)] {
            if count > MAX_GROUP_RULES {
                return Err(ExportError::Quota(format!(
                    "the security group of {what} needs {count} {direction} rules, more than the {MAX_GROUP_RULES} AWS allows by default: select its callers or targets by group"
                )));
            }
        }
    }
    Ok(())
}

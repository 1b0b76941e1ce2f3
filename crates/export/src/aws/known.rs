//! The differences the translation knows it makes, whether or not the check runs: what AWS
//! cannot express or expresses differently, each with its reason code, the septa rule and the
//! template's resources.

use std::collections::BTreeSet;

use ipnet::IpNet;
use septa_manifest::{AuthMethod, EndpointBackend, FunctionKind, HostPattern, Mode, SubnetKind};
use septa_policy::Policy;

use super::by_name;
use super::lattice::lattice_exact;
use super::names::{function_sg_id, lambda_id, pascal};
use super::network::{Plan, acl_id, peering_id};
use crate::reason::ReasonCode;
use crate::report::{Difference, Direction};
use crate::truth::TruthTable;

pub(crate) fn difference(
    code: ReasonCode,
    direction: Direction,
    from: String,
    to: String,
    rules: Vec<String>,
    objects: Vec<String>,
    detail: String,
) -> Difference {
    Difference {
        code: Some(code),
        direction,
        from,
        to,
        rules,
        objects,
        detail,
        examples: Vec::new(),
    }
}

/// Every difference the translation of `policy` knows it makes.
pub(crate) fn differences(policy: &Policy, truth: &TruthTable<'_>, plan: &Plan) -> Vec<Difference> {
    let mut out = Vec::new();
    mesh(policy, truth, &mut out);
    routes(policy, &mut out);
    egress(policy, plan, &mut out);
    stores_and_modes(policy, &mut out);
    out.sort();
    out.dedup();
    out
}

fn mesh(policy: &Policy, truth: &TruthTable<'_>, out: &mut Vec<Difference>) {
    let cells = truth.cells();
    for (from, to, access) in truth.flows() {
        if from == to {
            continue;
        }
        let (a, b) = (cells.get(from), cells.get(to));
        let Some(&callee) = b.functions.first() else {
            continue;
        };
        if policy.function(callee).spec.is_endpoint() {
            continue;
        }
        for x in access {
            let inexact: Vec<&String> = x
                .paths
                .iter()
                .flatten()
                .filter(|p| !lattice_exact(p))
                .collect();
            if inexact.is_empty() {
                continue;
            }
            out.push(difference(
                ReasonCode::LatticePathWildcard,
                Direction::Wider,
                a.to_string(),
                b.to_string(),
                vec![x.rule.to_string()],
                vec![format!(
                    "AWS::VpcLattice::AuthPolicy LatticeAuthPolicy{}",
                    pascal(b.name.as_str())
                )],
                format!(
                    "{} spelled with `*`, which also admits deeper paths",
                    inexact
                        .iter()
                        .map(|p| format!("`{p}`"))
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            ));
        }
    }
}

fn routes(policy: &Policy, out: &mut Vec<Difference>) {
    if policy.gateway().rate_limit.is_some() {
        out.push(difference(
            ReasonCode::ApiGatewayThrottling,
            Direction::Wider,
            "gateway".to_owned(),
            "every route".to_owned(),
            Vec::new(),
            vec!["AWS::ApiGatewayV2::Stage HttpApiStage".to_owned()],
            "the per-client limit is the stage's default throttling, for all clients together"
                .to_owned(),
        ));
    }
    for route in policy.routes() {
        let spec = &policy.function(route.function).spec;
        let to = format!("{}/{}", spec.placement.segment, spec.name);
        let keyed = matches!(
            route.auth.as_ref().map(|a| &a.method),
            Some(AuthMethod::ApiKey(_))
        );
        let object = if keyed {
            format!(
                "AWS::ApiGateway::Method RestMethod{}*",
                pascal(route.id.as_str())
            )
        } else {
            format!(
                "AWS::ApiGatewayV2::Route HttpApiRoute{}*",
                pascal(route.id.as_str())
            )
        };
        if route.rate_limit.is_some() {
            out.push(difference(
                ReasonCode::ApiGatewayThrottling,
                Direction::Wider,
                "gateway".to_owned(),
                to.clone(),
                vec![route.id.to_string()],
                vec![if keyed {
                    "AWS::ApiGateway::UsagePlan".to_owned()
                } else {
                    "AWS::ApiGatewayV2::Stage HttpApiStage".to_owned()
                }],
                "the rate limit is API Gateway's throttling, approximate and not per septa key"
                    .to_owned(),
            ));
        }
        if route.mode == Mode::Audit && route.auth.is_some() {
            out.push(difference(
                ReasonCode::AuditMode,
                Direction::Narrower,
                "gateway".to_owned(),
                to.clone(),
                vec![route.id.to_string()],
                vec![object.clone()],
                "API Gateway refuses a missing or invalid credential that septa's audit mode lets through".to_owned(),
            ));
        }
        let claims = route.auth.as_ref().is_some_and(|a| !a.claims.is_empty());
        if claims || !route.sources.is_empty() {
            out.push(difference(
                ReasonCode::RouteChecksInLambda,
                Direction::Wider,
                "gateway".to_owned(),
                to,
                vec![route.id.to_string()],
                vec![
                    object,
                    format!("AWS::Lambda::Function {}", lambda_id(&spec.name)),
                ],
                "claim matches and source ranges are checked by `septa lambda`, not API Gateway"
                    .to_owned(),
            ));
        }
    }
}

fn egress(policy: &Policy, plan: &Plan, out: &mut Vec<Difference>) {
    let relaxed = policy.ceiling().relaxed_ranges().next().is_some();
    for edge in policy.egress_edges() {
        let spec = &policy.function(edge.from).spec;
        let from = format!("{}/{}", spec.placement.segment, spec.name);
        let target = edge.target;
        let to = format!("{}:{}-{}", target.host, target.port_min, target.port_max);
        let rules = vec![edge.rule.to_string()];
        let objects = vec![
            format!("AWS::EC2::SecurityGroup {}", function_sg_id(&spec.name)),
            format!(
                "AWS::EC2::NetworkAcl {}",
                acl_id(&spec.placement.segment, &spec.placement.subnet)
            ),
        ];
        if by_name(&target.host) {
            let mut objects = objects.clone();
            objects.push("AWS::NetworkFirewall::RuleGroup EgressDomainRuleGroup".to_owned());
            out.push(difference(
                ReasonCode::FirewallDomains,
                Direction::Wider,
                from.clone(),
                to.clone(),
                rules.clone(),
                objects,
                "the security group and ACL open the ports to every address outside the ceiling"
                    .to_owned(),
            ));
        }
        if matches!(target.host, HostPattern::Cidr(IpNet::V6(_))) {
            out.push(difference(
                ReasonCode::Ipv4Only,
                Direction::Narrower,
                from.clone(),
                to.clone(),
                rules.clone(),
                objects.clone(),
                "the VPCs have no IPv6 route".to_owned(),
            ));
        }
        if relaxed && !matches!(target.host, HostPattern::Cidr(IpNet::V6(_))) {
            out.push(difference(
                ReasonCode::AclCeiling,
                Direction::Narrower,
                from.clone(),
                to.clone(),
                rules.clone(),
                objects.clone(),
                "the ceiling's relaxations are not exported: the ACL denies the whole range"
                    .to_owned(),
            ));
        }
        if plan
            .subnet(&spec.placement.segment, &spec.placement.subnet)
            .is_some_and(|s| s.kind == SubnetKind::Public)
        {
            out.push(difference(
                ReasonCode::PublicSubnetEgress,
                Direction::Narrower,
                from,
                to,
                rules,
                vec![format!("AWS::Lambda::Function {}", lambda_id(&spec.name))],
                "a Lambda function in a public subnet has no public address, so its egress goes nowhere".to_owned(),
            ));
        }
    }
}

fn stores_and_modes(policy: &Policy, out: &mut Vec<Difference>) {
    let mut callers_of: std::collections::BTreeMap<
        septa_policy::FunctionId,
        BTreeSet<septa_policy::FunctionId>,
    > = Default::default();
    for edge in policy.mesh_edges() {
        if edge.from != edge.to {
            callers_of.entry(edge.to).or_default().insert(edge.from);
        }
    }
    for f in policy.functions() {
        let spec = &f.spec;
        let at = format!("{}/{}", spec.placement.segment, spec.name);
        match &spec.kind {
            FunctionKind::Endpoint(EndpointBackend::Embedded) => out.push(difference(
                ReasonCode::EmbeddedStoreOnLambda,
                Direction::Narrower,
                "its callers".to_owned(),
                at.clone(),
                Vec::new(),
                Vec::new(),
                "no AWS resource holds an embedded store: calls to it answer 503 on Lambda"
                    .to_owned(),
            )),
            FunctionKind::Endpoint(_) => {
                out.push(difference(
                    ReasonCode::StoreWithoutL7,
                    Direction::Wider,
                    "its callers".to_owned(),
                    at.clone(),
                    Vec::new(),
                    vec![format!(
                        "AWS::EC2::SecurityGroup {}",
                        function_sg_id(&spec.name)
                    )],
                    "the security group opens the server's port; methods and paths are septa's"
                        .to_owned(),
                ));
                for &caller in callers_of.get(&f.id).into_iter().flatten() {
                    let c = &policy.function(caller).spec;
                    if c.placement.segment != spec.placement.segment {
                        out.push(difference(
                            ReasonCode::StoreAcrossVpcs,
                            Direction::Narrower,
                            format!("{}/{}", c.placement.segment, c.name),
                            at.clone(),
                            Vec::new(),
                            vec![format!(
                                "AWS::EC2::VPCPeeringConnection {}",
                                peering_id(&c.placement.segment, &spec.placement.segment)
                            )],
                            "the VPCs are peered for security group references but not routed"
                                .to_owned(),
                        ));
                    }
                }
            }
            FunctionKind::Component(_) => {}
        }
        if f.audit {
            out.push(difference(
                ReasonCode::AuditMode,
                Direction::Narrower,
                spec.identity(),
                at,
                Vec::new(),
                vec![format!("AWS::Lambda::Function {}", lambda_id(&spec.name))],
                "flows septa records in audit mode are denied".to_owned(),
            ));
        }
    }
}

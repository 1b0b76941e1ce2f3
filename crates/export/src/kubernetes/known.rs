//! The differences the translation knows it makes, whether or not an analyzer runs: what the
//! target cannot express (functions sharing a pod, subnet granularity, L7 rules inside septa's
//! mutual TLS, Istio's path language on routes, path normalization, egress by name, API keys, rate limits, audit mode, stores, raw TCP), each
//! with its reason code, the septa rule and the exported object.

use std::collections::BTreeSet;

use septa_manifest::{
    AuthMethod, EgressScheme, EndpointBackend, FunctionKind, HostPattern, Methods, Mode,
};
use septa_policy::Policy;

use super::Profile;
use super::network_policy::flow_names;
use super::paths::istio_exact;
use super::routes_by_cell;
use crate::reason::ReasonCode;
use crate::report::{Difference, Direction};
use crate::truth::TruthTable;

fn difference(
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

/// Every difference the translation of `policy` at `truth`'s granularity knows it makes.
pub(crate) fn differences(
    policy: &Policy,
    truth: &TruthTable<'_>,
    profile: Profile,
) -> Vec<Difference> {
    let mut out = Vec::new();
    mesh(policy, truth, profile, &mut out);
    routes(truth, profile, &mut out);
    if profile == Profile::Istio {
        route_paths(truth, &mut out);
    }
    egress(policy, truth, profile, &mut out);
    stores_and_modes(policy, truth, &mut out);
    out.sort();
    out.dedup();
    out
}

fn mesh(policy: &Policy, truth: &TruthTable<'_>, profile: Profile, out: &mut Vec<Difference>) {
    let cells = truth.cells();
    let name = |f| policy.function(f).spec.identity();
    for (from, to, access) in truth.flows() {
        let (a, b) = (cells.get(from), cells.get(to));
        let rules: BTreeSet<String> = access.iter().map(|x| x.rule.to_string()).collect();
        if from == to {
            out.push(difference(
                ReasonCode::FunctionsShareAPod,
                Direction::Wider,
                a.to_string(),
                b.to_string(),
                rules.into_iter().collect(),
                vec![format!("Deployment {}/{}", a.segment, a.name)],
                "calls inside the cell never leave its pod".to_owned(),
            ));
            continue;
        }
        let [ingress, egress] = flow_names(a, b);
        let objects = vec![
            format!("NetworkPolicy {}/{ingress}", b.segment),
            format!("NetworkPolicy {}/{egress}", a.segment),
        ];
        let widened = truth.widened_pairs(from, to);
        if !widened.is_empty() {
            let pairs: Vec<String> = widened
                .iter()
                .map(|&(f, g)| format!("{} -> {}", name(f), name(g)))
                .collect();
            out.push(difference(
                ReasonCode::SubnetGranularity,
                Direction::Wider,
                a.to_string(),
                b.to_string(),
                rules.iter().cloned().collect(),
                objects.clone(),
                format!(
                    "open to function pairs septa connects by fewer rules: {}",
                    pairs.join(", ")
                ),
            ));
        }
        {
            // Every rule narrower than "any method, any path" is L4 in the cluster on the mesh
            // port, whose TLS is the nodes' own.
            for x in access {
                let mut l7 = Vec::new();
                if let Methods::Only(list) = &x.methods {
                    l7.push(format!("methods {}", list.join(", ")));
                }
                if let Some(paths) = &x.paths {
                    l7.push(format!("paths {}", paths.join(", ")));
                }
                if l7.is_empty() {
                    continue;
                }
                out.push(difference(
                    ReasonCode::L7InSeptaMtls,
                    Direction::Wider,
                    a.to_string(),
                    b.to_string(),
                    vec![x.rule.to_string()],
                    vec![match profile {
                        Profile::Istio => format!(
                            "AuthorizationPolicy {}/allow-{}-to-{}",
                            b.segment, x.rule, b.name
                        ),
                        Profile::Cilium => {
                            format!("CiliumNetworkPolicy {}/{}", b.segment, b.name)
                        }
                    }],
                    format!(
                        "{} decided by the callee's `septa node`; the cluster admits the callers \
                         on the mesh port",
                        l7.join("; ")
                    ),
                ));
            }
        }
    }
}

/// Routes reach their cell from the gateway in plain HTTP, where Istio reads the method and the
/// path: a `{param}` segment is a prefix there, and Istio normalizes what septa refuses.
fn route_paths(truth: &TruthTable<'_>, out: &mut Vec<Difference>) {
    let mut path_rules = BTreeSet::new();
    for (cell_id, routes) in routes_by_cell(truth) {
        let cell = truth.cells().get(cell_id);
        for route in routes {
            path_rules.insert(route.id.to_string());
            let pattern = route.pattern.as_str();
            if istio_exact(pattern) {
                continue;
            }
            out.push(difference(
                ReasonCode::PathSemantics,
                Direction::Wider,
                "gateway".to_owned(),
                cell.to_string(),
                vec![route.id.to_string()],
                vec![format!(
                    "AuthorizationPolicy {}/route-{}",
                    cell.segment, route.id
                )],
                format!("`{pattern}` exported as a prefix, which also admits deeper paths"),
            ));
        }
    }
    if !path_rules.is_empty() {
        out.push(difference(
            ReasonCode::PathNormalization,
            Direction::Wider,
            "gateway".to_owned(),
            "any cell".to_owned(),
            path_rules.into_iter().collect(),
            vec!["AuthorizationPolicy */route-*".to_owned()],
            "septa answers 400 to ambiguous paths that Istio normalizes before matching".to_owned(),
        ));
    }
}

fn routes(truth: &TruthTable<'_>, profile: Profile, out: &mut Vec<Difference>) {
    for (cell_id, routes) in routes_by_cell(truth) {
        let cell = truth.cells().get(cell_id);
        for route in routes {
            let objects = vec![format!("HTTPRoute {}/route-{}", cell.segment, route.id)];
            if matches!(
                route.auth.as_ref().map(|a| &a.method),
                Some(AuthMethod::ApiKey(_))
            ) {
                out.push(difference(
                    ReasonCode::ApiKeys,
                    Direction::Wider,
                    "gateway".to_owned(),
                    cell.to_string(),
                    vec![route.id.to_string()],
                    objects.clone(),
                    "the Gateway passes requests without checking the API key".to_owned(),
                ));
            }
            if route.rate_limit.is_some() {
                let mut objects = objects.clone();
                if profile == Profile::Istio {
                    objects.push(format!(
                        "EnvoyFilter {}/{}-rate-limit",
                        cell.segment, cell.name
                    ));
                }
                out.push(difference(
                    ReasonCode::ApproximateRateLimit,
                    Direction::Wider,
                    "gateway".to_owned(),
                    cell.to_string(),
                    vec![route.id.to_string()],
                    objects,
                    "the limit is not counted per consumer key in the cluster".to_owned(),
                ));
            }
        }
    }
}

fn egress(policy: &Policy, truth: &TruthTable<'_>, profile: Profile, out: &mut Vec<Difference>) {
    let cells = truth.cells();
    let relaxed = policy.ceiling().relaxed_ranges().next().is_some();
    for edge in policy.egress_edges() {
        let cell = cells.get(cells.of(edge.from));
        let target = edge.target;
        let mut objects = vec![format!(
            "NetworkPolicy {}/egress-{}",
            cell.segment, cell.name
        )];
        match profile {
            Profile::Istio => objects.push(format!("Sidecar {}/{}", cell.segment, cell.name)),
            Profile::Cilium => objects.push(format!(
                "CiliumNetworkPolicy {}/{}",
                cell.segment, cell.name
            )),
        }
        let to = format!("{}:{}-{}", target.host, target.port_min, target.port_max);
        let rules = vec![edge.rule.to_string()];
        if matches!(
            target.host,
            HostPattern::Name(_) | HostPattern::Subdomain(_)
        ) {
            out.push(difference(
                ReasonCode::EgressDns,
                Direction::Wider,
                cell.to_string(),
                to.clone(),
                rules.clone(),
                objects.clone(),
                "NetworkPolicy opens the ports to every address outside the ceiling".to_owned(),
            ));
            if relaxed {
                out.push(difference(
                    ReasonCode::CeilingAfterDns,
                    Direction::Narrower,
                    cell.to_string(),
                    to.clone(),
                    rules.clone(),
                    objects.clone(),
                    "the ceiling's relaxations are not exported".to_owned(),
                ));
            }
        }
        if matches!(target.scheme, EgressScheme::Tcp | EgressScheme::Any) {
            out.push(difference(
                ReasonCode::NonTcp,
                Direction::Wider,
                cell.to_string(),
                to,
                rules,
                objects,
                "raw TCP is open at L4 on the declared ports".to_owned(),
            ));
        }
    }
    let namespaces: BTreeSet<String> = cells.iter().map(|(_, c)| c.segment.to_string()).collect();
    out.push(difference(
        ReasonCode::DnsResolution,
        Direction::Wider,
        "every cell".to_owned(),
        "kube-system/kube-dns".to_owned(),
        Vec::new(),
        namespaces
            .iter()
            .map(|ns| format!("NetworkPolicy {ns}/allow-dns"))
            .collect(),
        "DNS queries to the cluster's resolver are open".to_owned(),
    ));
}

fn stores_and_modes(policy: &Policy, truth: &TruthTable<'_>, out: &mut Vec<Difference>) {
    let cells = truth.cells();
    for f in policy.functions() {
        let cell = cells.get(cells.of(f.id));
        let deployment = format!("Deployment {}/{}", cell.segment, cell.name);
        match &f.spec.kind {
            FunctionKind::Endpoint(EndpointBackend::Embedded) => out.push(difference(
                ReasonCode::InProcessStore,
                Direction::Wider,
                cell.to_string(),
                f.spec.identity(),
                Vec::new(),
                vec![
                    deployment.clone(),
                    format!("PersistentVolumeClaim {}/{}-data", cell.segment, cell.name),
                ],
                "the store's data is on the cell's volume; calls from its own cell stay in the pod"
                    .to_owned(),
            )),
            FunctionKind::Endpoint(_) => out.push(difference(
                ReasonCode::ExternalStore,
                Direction::Wider,
                cell.to_string(),
                f.spec.identity(),
                Vec::new(),
                vec![format!(
                    "NetworkPolicy {}/egress-{}",
                    cell.segment, cell.name
                )],
                "the server's port is open to any address".to_owned(),
            )),
            FunctionKind::Component(_) => {}
        }
        if f.spec.mode == Mode::Audit {
            out.push(difference(
                ReasonCode::AuditMode,
                Direction::Narrower,
                f.spec.identity(),
                cell.to_string(),
                Vec::new(),
                vec![deployment],
                "flows septa records in audit mode are denied".to_owned(),
            ));
        }
    }
}

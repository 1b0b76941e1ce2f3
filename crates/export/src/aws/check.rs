//! `--check`: what the written template allows, read from the template alone, against septa's
//! truth table.
//!
//! The template's YAML is parsed back ([`super::reader`]) and, for every ordered pair of
//! distinct functions and endpoints, each probe request (the standard methods on paths drawn
//! from septa's patterns: an instance, a deeper path, a sibling) is decided twice. septa decides
//! it with [`TruthTable::decide`]. The template decides it by its layers: the caller's security
//! groups and network ACL must let it out to VPC Lattice (or to the store), the callee's security
//! groups must admit the caller's, the caller's VPC and the callee's Lattice service must share a
//! service network, and the service's auth policy must allow the caller's role, the method and
//! the path; a store must also be routed to. Besides the requests, the network layer alone is
//! compared: security groups that admit a caller septa never lets through are a difference too.
//! Egress to the outside is read the same way ([`super::egress_check`]), through route tables.
//! A difference gets a reason code only when AWS's known semantics explain exactly that request;
//! anything else has none, and the command exits 1.

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;

use ipnet::Ipv4Net;
use septa_manifest::{EndpointBackend, FunctionKind};
use septa_policy::{FunctionId, Policy};
use serde_json::Value;

use super::Export;
use super::lattice::{lattice_exact, lattice_paths};
use super::names::function_name;
use super::reader::{Model, number, parse, string_like, target, targets};
use crate::reason::ReasonCode;
use crate::report::{Difference, Direction, PairRow};
use crate::truth::{CellId, Granularity, Truth, TruthTable};

/// The methods every pair is probed with.
const METHODS: [&str; 5] = ["DELETE", "GET", "PATCH", "POST", "PUT"];
/// An address VPC Lattice's data plane answers on.
const LATTICE_ADDRESS: Ipv4Addr = Ipv4Addr::new(169, 254, 171, 1);
/// A port return traffic arrives on.
pub(crate) const EPHEMERAL: u16 = 40000;
/// How many example requests a difference lists.
const EXAMPLES: usize = 4;

/// Why the check could not run.
#[derive(Debug, thiserror::Error)]
pub enum CheckError {
    /// The template could not be read back.
    #[error("cannot read the written template: {0}")]
    Template(String),
}

/// Where a function or endpoint runs in the template, as read from it.
#[derive(Clone, Debug, Default)]
pub(crate) struct Placed {
    /// The Lambda function or store's logical id; `None`: nothing in the template.
    pub resource: Option<String>,
    /// Its security groups.
    pub groups: Vec<String>,
    /// Its subnets.
    pub subnets: Vec<String>,
    /// Their address ranges.
    pub ranges: Vec<Ipv4Net>,
    /// Its execution role (functions).
    pub role: Option<String>,
    /// The port it serves (stores).
    pub port: Option<u16>,
}

impl Placed {
    fn address(&self) -> Option<Ipv4Addr> {
        self.ranges.first().and_then(|r| r.hosts().nth(9))
    }
}

/// Reads where `policy`'s functions and endpoints are in `model`: Lambda functions by their
/// `FunctionName`, stores by their `septa:endpoint` tag.
fn placements(policy: &Policy, model: &Model) -> BTreeMap<FunctionId, Placed> {
    let application = &policy.manifest().application;
    let mut out = BTreeMap::new();
    for f in policy.functions() {
        let mut placed = Placed::default();
        match &f.spec.kind {
            FunctionKind::Component(_) => {
                let name = function_name(application, &f.spec.name);
                if let Some((id, p)) = model
                    .of_kind("AWS::Lambda::Function")
                    .find(|(_, p)| p["FunctionName"].as_str() == Some(name.as_str()))
                {
                    placed.resource = Some(id.to_owned());
                    placed.groups = targets(&p["VpcConfig"]["SecurityGroupIds"]);
                    placed.subnets = targets(&p["VpcConfig"]["SubnetIds"]);
                    placed.role = target(&p["Role"]).map(str::to_owned);
                }
            }
            FunctionKind::Endpoint(_) => {
                let tagged = |p: &Value| {
                    p["Tags"].as_array().into_iter().flatten().any(|t| {
                        t["Key"] == "septa:endpoint"
                            && t["Value"].as_str() == Some(f.spec.name.as_str())
                    })
                };
                let found = model
                    .of_kind("AWS::ElastiCache::CacheCluster")
                    .chain(model.of_kind("AWS::RDS::DBInstance"))
                    .find(|(_, p)| tagged(p));
                if let Some((id, p)) = found {
                    placed.resource = Some(id.to_owned());
                    placed.groups = targets(&p["VpcSecurityGroupIds"]);
                    placed.groups.extend(targets(&p["VPCSecurityGroups"]));
                    placed.port = number(&p["Port"]).and_then(|n| u16::try_from(n).ok());
                    let group = target(&p["CacheSubnetGroupName"])
                        .or_else(|| target(&p["DBSubnetGroupName"]));
                    if let Some(group) = group.and_then(|g| model.resources.get(g)) {
                        placed.subnets = targets(&group.1["SubnetIds"]);
                    }
                }
            }
        }
        placed.ranges = placed
            .subnets
            .iter()
            .filter_map(|s| model.subnet_cidr(s))
            .collect();
        out.insert(f.id, placed);
    }
    out
}

/// The template's reading of calls from one function to another.
struct Reading<'m> {
    model: &'m Model,
    placed: BTreeMap<FunctionId, Placed>,
}

impl Reading<'_> {
    /// Whether the network lets `caller` reach `callee` at all: security groups, ACLs, routes.
    fn network(&self, caller: &Placed, callee: &Placed, lattice: Option<u16>) -> bool {
        let (Some(_), Some(_)) = (&caller.resource, &callee.resource) else {
            return false;
        };
        match lattice {
            Some(port) => {
                // Out of the caller's subnets to Lattice, and the callee admits the caller.
                caller.subnets.iter().all(|s| {
                    self.model.acl_admits(s, true, LATTICE_ADDRESS, port)
                        && self.model.acl_admits(s, false, LATTICE_ADDRESS, EPHEMERAL)
                }) && self
                    .model
                    .sg_egress_admits(&caller.groups, port, LATTICE_ADDRESS, &[])
                    && self.model.sg_ingress_admits(
                        &callee.groups,
                        port,
                        &caller.groups,
                        &caller.ranges,
                    )
            }
            None => {
                let (Some(port), Some(to), Some(from)) =
                    (callee.port, callee.address(), caller.address())
                else {
                    return false;
                };
                caller.subnets.iter().all(|s| {
                    self.model.acl_admits(s, true, to, port)
                        && self.model.acl_admits(s, false, to, EPHEMERAL)
                        && self.model.routes_to(s, to)
                }) && callee.subnets.iter().all(|s| {
                    self.model.acl_admits(s, false, from, port)
                        && self.model.acl_admits(s, true, from, EPHEMERAL)
                        && self.model.routes_to(s, from)
                }) && self
                    .model
                    .sg_egress_admits(&caller.groups, port, to, &callee.groups)
                    && self.model.sg_ingress_admits(
                        &callee.groups,
                        port,
                        &caller.groups,
                        &caller.ranges,
                    )
            }
        }
    }

    /// The Lattice services that forward to `callee`'s Lambda function, with their port.
    fn services(&self, callee: &Placed) -> Vec<(String, u16)> {
        let Some(function) = &callee.resource else {
            return Vec::new();
        };
        let groups: BTreeSet<&str> = self
            .model
            .of_kind("AWS::VpcLattice::TargetGroup")
            .filter(|(_, p)| {
                p["Targets"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .any(|t| target(&t["Id"]) == Some(function.as_str()))
            })
            .map(|(id, _)| id)
            .collect();
        self.model
            .of_kind("AWS::VpcLattice::Listener")
            .filter(|(_, p)| {
                p["DefaultAction"]["Forward"]["TargetGroups"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .any(|t| {
                        target(&t["TargetGroupIdentifier"]).is_some_and(|g| groups.contains(g))
                    })
            })
            .filter_map(|(_, p)| {
                let port = number(&p["Port"]).and_then(|n| u16::try_from(n).ok())?;
                Some((target(&p["ServiceIdentifier"])?.to_owned(), port))
            })
            .collect()
    }

    /// Whether `caller`'s VPC shares a service network with `service`, and the auth policies
    /// on the way allow the request.
    fn lattice_allows(&self, caller: &Placed, service: &str, method: &str, path: &str) -> bool {
        let vpcs: BTreeSet<String> = caller
            .subnets
            .iter()
            .filter_map(|s| self.model.subnet_vpc(s).map(|(v, _)| v))
            .collect();
        let networks: BTreeSet<&str> = self
            .model
            .of_kind("AWS::VpcLattice::ServiceNetworkVpcAssociation")
            .filter(|(_, p)| target(&p["VpcIdentifier"]).is_some_and(|v| vpcs.contains(v)))
            .filter_map(|(_, p)| target(&p["ServiceNetworkIdentifier"]))
            .collect();
        let shared: Vec<&str> = self
            .model
            .of_kind("AWS::VpcLattice::ServiceNetworkServiceAssociation")
            .filter(|(_, p)| target(&p["ServiceIdentifier"]) == Some(service))
            .filter_map(|(_, p)| target(&p["ServiceNetworkIdentifier"]))
            .filter(|n| networks.contains(n))
            .collect();
        let Some(role) = &caller.role else {
            return false;
        };
        shared.iter().any(|network| {
            self.authorized(
                network,
                "AWS::VpcLattice::ServiceNetwork",
                role,
                method,
                path,
            )
        }) && self.authorized(service, "AWS::VpcLattice::Service", role, method, path)
    }

    /// Whether `resource`'s auth allows `role` the request: anything with `NONE`; with
    /// `AWS_IAM`, an allowing statement of its auth policy and no denying one.
    fn authorized(&self, resource: &str, kind: &str, role: &str, method: &str, path: &str) -> bool {
        let Some(p) = self.model.props(resource, kind) else {
            return false;
        };
        match p["AuthType"].as_str() {
            Some("NONE") | None => return true,
            Some("AWS_IAM") => {}
            Some(_) => return false,
        }
        let statements: Vec<&Value> = self
            .model
            .of_kind("AWS::VpcLattice::AuthPolicy")
            .filter(|(_, p)| target(&p["ResourceIdentifier"]) == Some(resource))
            .flat_map(|(_, p)| p["Policy"]["Statement"].as_array().into_iter().flatten())
            .collect();
        let matching = |effect: &str| {
            statements
                .iter()
                .any(|s| s["Effect"] == effect && statement_matches(s, role, method, path))
        };
        matching("Allow") && !matching("Deny")
    }
}

/// Whether one auth policy statement applies to `role` invoking `method` on `path`.
fn statement_matches(statement: &Value, role: &str, method: &str, path: &str) -> bool {
    let principal = &statement["Principal"];
    let principals: Vec<&Value> = match &principal["AWS"] {
        Value::Array(list) => list.iter().collect(),
        Value::Null => vec![principal],
        one => vec![one],
    };
    let names_role = principals
        .iter()
        .any(|p| p.as_str() == Some("*") || target(p) == Some(role));
    let actions: Vec<&str> = match &statement["Action"] {
        Value::Array(list) => list.iter().filter_map(Value::as_str).collect(),
        Value::String(s) => vec![s.as_str()],
        _ => Vec::new(),
    };
    let invokes = actions
        .iter()
        .any(|a| *a == "*" || *a == "vpc-lattice-svcs:*" || *a == "vpc-lattice-svcs:Invoke");
    if !names_role || !invokes {
        return false;
    }
    let Some(conditions) = statement["Condition"].as_object() else {
        return statement["Condition"].is_null();
    };
    conditions.iter().all(|(operator, keys)| {
        keys.as_object().is_some_and(|keys| {
            keys.iter().all(|(key, values)| {
                let actual = match key.as_str() {
                    "vpc-lattice-svcs:RequestMethod" => method,
                    "vpc-lattice-svcs:RequestPath" => path,
                    // A condition on anything else is not known to hold.
                    _ => return false,
                };
                let values: Vec<&str> = match values {
                    Value::Array(list) => list.iter().filter_map(Value::as_str).collect(),
                    Value::String(s) => vec![s.as_str()],
                    _ => Vec::new(),
                };
                match operator.as_str() {
                    "StringEquals" => values.contains(&actual),
                    "StringLike" => values.iter().any(|v| string_like(v, actual)),
                    _ => false,
                }
            })
        })
    })
}

/// The probe paths for a pair: from septa's patterns of the pair, and two of no rule.
fn probe_paths(truth: &TruthTable<'_>, from: CellId, to: CellId) -> BTreeSet<String> {
    let mut out: BTreeSet<String> = ["/", "/septa-probe"].map(str::to_owned).into();
    for access in truth.flow(from, to) {
        for pattern in access.paths.iter().flatten() {
            let (body, wildcard) = match pattern.strip_suffix("/...") {
                Some(prefix) => (prefix, true),
                None => (pattern.as_str(), false),
            };
            let instance: String = body
                .split('/')
                .skip(1)
                .map(|s| {
                    if s.starts_with('{') {
                        "/x1".to_owned()
                    } else {
                        format!("/{s}")
                    }
                })
                .collect();
            let instance = if instance.is_empty() {
                "/".to_owned()
            } else {
                instance
            };
            let base = instance.trim_end_matches('/');
            out.insert(instance.clone());
            out.insert(format!("{base}/y2"));
            out.insert(format!("{base}/x1/y2"));
            out.insert(format!("{base}z"));
            if wildcard {
                out.insert(format!("{base}/deep/er"));
            }
        }
    }
    out
}

/// Runs the check on `export`, adding its differences and probed pairs to the report.
pub fn check(policy: &Policy, export: &mut Export) -> Result<(), CheckError> {
    let text = export.template_yaml();
    let template = parse(&text)?;
    let model = Model::read(&template)?;
    let truth = TruthTable::build(policy, Granularity::Function);
    let reading = Reading {
        model: &model,
        placed: placements(policy, &model),
    };
    let cells = truth.cells();
    let mut found: BTreeMap<(String, String, Direction, Option<ReasonCode>), Difference> =
        BTreeMap::new();
    let mut pairs = Vec::new();
    for (from, a) in cells.iter() {
        for (to, b) in cells.iter() {
            if from == to {
                continue;
            }
            let (Some(&caller_id), Some(&callee_id)) = (a.functions.first(), b.functions.first())
            else {
                continue;
            };
            let caller_spec = &policy.function(caller_id).spec;
            let callee_spec = &policy.function(callee_id).spec;
            if caller_spec.is_endpoint() {
                continue;
            }
            let empty = Placed::default();
            let caller = reading.placed.get(&caller_id).unwrap_or(&empty);
            let callee = reading.placed.get(&callee_id).unwrap_or(&empty);
            let store = match &callee_spec.kind {
                FunctionKind::Endpoint(backend) => Some(backend),
                FunctionKind::Component(_) => None,
            };
            let services = if store.is_none() {
                reading.services(callee)
            } else {
                Vec::new()
            };
            let network_for = |port: Option<u16>| reading.network(caller, callee, port);
            // A callee no Lattice service forwards to is still probed on the Lattice port: its
            // security groups must not admit anyone either.
            let network_open = if store.is_some() {
                network_for(None)
            } else if services.is_empty() {
                network_for(Some(super::names::LATTICE_PORT))
            } else {
                services.iter().any(|(_, port)| network_for(Some(*port)))
            };
            let mut septa_allows = Vec::new();
            let mut export_allows = Vec::new();
            let mut any_septa = false;
            for path in probe_paths(&truth, from, to) {
                for method in METHODS {
                    let decision = truth.decide(from, to, method, &path);
                    let allowed = match store {
                        Some(_) => network_open,
                        None => services.iter().any(|(service, port)| {
                            network_for(Some(*port))
                                && reading.lattice_allows(caller, service, method, &path)
                        }),
                    };
                    let request = format!("{method} {path}");
                    if decision.permits() {
                        any_septa = true;
                        septa_allows.push(request.clone());
                    }
                    if allowed {
                        export_allows.push(request.clone());
                    }
                    if decision.permits() == allowed {
                        continue;
                    }
                    let direction = if allowed {
                        Direction::Wider
                    } else {
                        Direction::Narrower
                    };
                    let code = explain(
                        &truth,
                        from,
                        to,
                        store,
                        &decision,
                        method,
                        &path,
                        a.segment == b.segment,
                    );
                    let entry = found
                        .entry((a.to_string(), b.to_string(), direction, code))
                        .or_insert_with(|| Difference {
                            code,
                            direction,
                            from: a.to_string(),
                            to: b.to_string(),
                            rules: truth
                                .flow(from, to)
                                .iter()
                                .map(|x| x.rule.to_string())
                                .collect::<BTreeSet<_>>()
                                .into_iter()
                                .collect(),
                            objects: callee
                                .resource
                                .iter()
                                .map(|r| {
                                    let kind =
                                        model.resources.get(r).map_or("", |(k, _)| k.as_str());
                                    format!("{kind} {r}")
                                })
                                .collect(),
                            detail: if allowed {
                                "the template allows requests septa refuses".to_owned()
                            } else {
                                "the template refuses requests septa allows".to_owned()
                            },
                            examples: Vec::new(),
                        });
                    if entry.examples.len() < EXAMPLES {
                        entry.examples.push(request);
                    }
                }
            }
            // The network layer on its own: it must not admit a caller septa never lets call.
            if network_open && !any_septa {
                found.insert(
                    (a.to_string(), b.to_string(), Direction::Wider, None),
                    Difference {
                        code: None,
                        direction: Direction::Wider,
                        from: a.to_string(),
                        to: b.to_string(),
                        rules: Vec::new(),
                        objects: callee.groups.iter().map(|g| format!("AWS::EC2::SecurityGroup {g}")).collect(),
                        detail: "the callee's security groups and the network admit a caller septa never lets call".to_owned(),
                        examples: vec![format!(
                            "port {}",
                            callee.port.or(services.first().map(|s| s.1)).unwrap_or_default()
                        )],
                    },
                );
            }
            pairs.push(PairRow {
                from: a.to_string(),
                to: b.to_string(),
                septa: septa_allows,
                export: export_allows,
            });
        }
    }
    super::egress_check::compare(policy, &model, &reading.placed, &mut found, &mut pairs);
    let report = &mut export.report;
    report.analyzer = Some(format!(
        "septa's independent reading of `{}` (security groups, network ACLs, route tables, VPC Lattice service networks and auth policies)",
        super::TEMPLATE_FILE
    ));
    report.differences.extend(found.into_values());
    report.differences.sort();
    report.differences.dedup();
    report.pairs = pairs;
    Ok(())
}

/// The reason code that explains exactly this request's difference, if one does.
#[expect(clippy::too_many_arguments, reason = "one request's whole context")]
fn explain(
    truth: &TruthTable<'_>,
    from: CellId,
    to: CellId,
    store: Option<&EndpointBackend>,
    decision: &Truth,
    method: &str,
    path: &str,
    same_segment: bool,
) -> Option<ReasonCode> {
    let wider = !decision.permits();
    match (wider, store) {
        (_, _) if matches!(decision, Truth::Audit) => Some(ReasonCode::AuditMode),
        (true, Some(EndpointBackend::Redis(_) | EndpointBackend::Postgres(_)))
            if !truth.flow(from, to).is_empty() =>
        {
            Some(ReasonCode::StoreWithoutL7)
        }
        (true, None) => truth
            .flow(from, to)
            .iter()
            .any(|x| {
                x.methods.admits(method)
                    && x.paths.iter().flatten().any(|p| {
                        !lattice_exact(p) && lattice_paths(p).iter().any(|s| string_like(s, path))
                    })
            })
            .then_some(ReasonCode::LatticePathWildcard),
        (false, Some(EndpointBackend::Embedded)) => Some(ReasonCode::EmbeddedStoreOnLambda),
        (false, Some(_)) if !same_segment => Some(ReasonCode::StoreAcrossVpcs),
        _ => None,
    }
}

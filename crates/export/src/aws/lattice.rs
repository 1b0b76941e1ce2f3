//! VPC Lattice, for calls between functions: one service network associated with every VPC
//! whose functions call another; per callee a service with `AWS_IAM` auth, an HTTPS listener
//! forwarding to a Lambda target group, and an auth policy with one statement per allow rule
//! naming exactly its callers' execution roles, its methods and its paths.
//!
//! Lattice matches paths with IAM's `StringLike`, where `*` spans any characters, `/` included:
//! septa's `/a/...` becomes `/a` and `/a/*` exactly, but a `{param}` segment becomes `*`, which
//! also admits deeper paths (a `lattice-path-wildcard` difference).

use std::collections::{BTreeMap, BTreeSet};

use septa_manifest::{FunctionKind, Methods, Name};
use septa_policy::Policy;
use serde_json::{Value, json};

use super::names::{get_att, lambda_id, lattice_service_id, pascal, reference, role_id, vpc_id};
use super::network::Plan;
use super::{ExportError, Template};

/// The service network's logical id.
pub(crate) const SERVICE_NETWORK: &str = "LatticeServiceNetwork";

/// The `StringLike` patterns admitting at least what septa's `pattern` admits.
pub(crate) fn lattice_paths(pattern: &str) -> Vec<String> {
    let (body, wildcard) = match pattern.strip_suffix("/...") {
        Some(prefix) => (prefix, true),
        None => (pattern, false),
    };
    let spelled: String = body
        .split('/')
        .skip(1)
        .map(|segment| {
            if segment.starts_with('{') && segment.ends_with('}') {
                "/*".to_owned()
            } else {
                format!("/{segment}")
            }
        })
        .collect();
    match (wildcard, spelled.is_empty()) {
        (true, true) => vec!["/*".to_owned()],
        (true, false) => vec![spelled.clone(), format!("{spelled}/*")],
        (false, _) => vec![spelled],
    }
}

/// Whether `pattern` is spelled for Lattice exactly: no `{param}`, and no `*` or `?`, which
/// `StringLike` reads as wildcards.
pub(crate) fn lattice_exact(pattern: &str) -> bool {
    let body = pattern.strip_suffix("/...").unwrap_or(pattern);
    !body.contains(['{', '*', '?'])
}

/// The calls over Lattice: for each callee, each allow rule with its callers, methods and paths.
type Calls<'p> = BTreeMap<
    septa_policy::FunctionId,
    BTreeMap<
        &'p Name,
        (
            BTreeSet<septa_policy::FunctionId>,
            &'p Methods,
            Option<Vec<String>>,
        ),
    >,
>;

fn calls(policy: &Policy) -> Calls<'_> {
    let mut out: Calls<'_> = BTreeMap::new();
    for edge in policy.mesh_edges() {
        if edge.from == edge.to
            || !matches!(
                policy.function(edge.to).spec.kind,
                FunctionKind::Component(_)
            )
        {
            continue;
        }
        let paths = edge
            .paths
            .map(|list| list.iter().map(|p| p.as_str().to_owned()).collect());
        out.entry(edge.to)
            .or_default()
            .entry(edge.rule)
            .or_insert_with(|| (BTreeSet::new(), edge.methods, paths))
            .0
            .insert(edge.from);
    }
    out
}

/// Every Lattice resource.
pub(crate) fn resources(
    policy: &Policy,
    plan: &Plan,
    template: &mut Template,
) -> Result<(), ExportError> {
    let calls = calls(policy);
    if calls.is_empty() {
        return Ok(());
    }
    let application = &policy.manifest().application;
    template.resource(
        SERVICE_NETWORK,
        "AWS::VpcLattice::ServiceNetwork",
        json!({ "AuthType": "NONE", "Name": format!("{application}-mesh").chars().take(63).collect::<String>() }),
        "the mesh",
    )?;
    let callers: BTreeSet<&Name> = calls
        .values()
        .flat_map(|rules| rules.values())
        .flat_map(|(callers, _, _)| callers)
        .map(|&f| &policy.function(f).spec.placement.segment)
        .collect();
    for segment in callers {
        if !plan.segments.contains_key(segment) {
            continue;
        }
        template.resource(
            &format!("LatticeVpcAssociation{}", pascal(segment.as_str())),
            "AWS::VpcLattice::ServiceNetworkVpcAssociation",
            json!({ "ServiceNetworkIdentifier": reference(SERVICE_NETWORK), "VpcIdentifier": reference(&vpc_id(segment)) }),
            &format!("segment `{segment}`"),
        )?;
    }
    for (&callee, rules) in &calls {
        let name = &policy.function(callee).spec.name;
        let origin = policy.function(callee).spec.identity();
        let service = lattice_service_id(name);
        let targets = format!("LatticeTargets{}", pascal(name.as_str()));
        let function = lambda_id(name);
        template.resource(
            &service,
            "AWS::VpcLattice::Service",
            json!({ "AuthType": "AWS_IAM" }),
            &origin,
        )?;
        template.resource(
            &targets,
            "AWS::VpcLattice::TargetGroup",
            json!({
                "Config": { "LambdaEventStructureVersion": "V2" },
                "Targets": [{ "Id": get_att(&function, "Arn") }],
                "Type": "LAMBDA",
            }),
            &origin,
        )?;
        template.resource(
            &format!("LatticeListener{}", pascal(name.as_str())),
            "AWS::VpcLattice::Listener",
            json!({
                "DefaultAction": { "Forward": { "TargetGroups": [{ "TargetGroupIdentifier": reference(&targets), "Weight": 100 }] } },
                "Port": super::names::LATTICE_PORT,
                "Protocol": "HTTPS",
                "ServiceIdentifier": reference(&service),
            }),
            &origin,
        )?;
        template.resource(
            &format!("LatticeServiceAssociation{}", pascal(name.as_str())),
            "AWS::VpcLattice::ServiceNetworkServiceAssociation",
            json!({ "ServiceIdentifier": reference(&service), "ServiceNetworkIdentifier": reference(SERVICE_NETWORK) }),
            &origin,
        )?;
        template.resource(
            &format!("LatticeInvoke{}", pascal(name.as_str())),
            "AWS::Lambda::Permission",
            json!({
                "Action": "lambda:InvokeFunction",
                "FunctionName": get_att(&function, "Arn"),
                "Principal": "vpc-lattice.amazonaws.com",
                "SourceArn": get_att(&targets, "Arn"),
            }),
            &origin,
        )?;
        let statements: Vec<Value> = rules
            .iter()
            .map(|(rule, (callers, methods, paths))| {
                statement(policy, &service, rule, callers, methods, paths.as_deref())
            })
            .collect();
        template.resource(
            &format!("LatticeAuthPolicy{}", pascal(name.as_str())),
            "AWS::VpcLattice::AuthPolicy",
            json!({
                "Policy": { "Statement": statements, "Version": "2012-10-17" },
                "ResourceIdentifier": reference(&service),
            }),
            &origin,
        )?;
    }
    Ok(())
}

/// One allow rule as an auth policy statement.
fn statement(
    policy: &Policy,
    service: &str,
    rule: &Name,
    callers: &BTreeSet<septa_policy::FunctionId>,
    methods: &Methods,
    paths: Option<&[String]>,
) -> Value {
    let principals: Vec<Value> = callers
        .iter()
        .map(|&f| get_att(&role_id(&policy.function(f).spec.name), "Arn"))
        .collect();
    let mut condition = serde_json::Map::new();
    if let Methods::Only(list) = methods {
        condition.insert(
            "StringEquals".into(),
            json!({ "vpc-lattice-svcs:RequestMethod": list }),
        );
    }
    if let Some(paths) = paths {
        let spelled: BTreeSet<String> = paths.iter().flat_map(|p| lattice_paths(p)).collect();
        condition.insert(
            "StringLike".into(),
            json!({ "vpc-lattice-svcs:RequestPath": spelled }),
        );
    }
    let mut statement = json!({
        "Action": "vpc-lattice-svcs:Invoke",
        "Effect": "Allow",
        "Principal": { "AWS": principals },
        "Resource": { "Fn::Sub": format!("${{{service}.Arn}}/*") },
        "Sid": pascal(rule.as_str()),
    });
    if !condition.is_empty() {
        statement["Condition"] = Value::Object(condition);
    }
    statement
}

#[cfg(test)]
mod tests {
    use super::{lattice_exact, lattice_paths};

    #[test]
    fn septa_patterns_in_lattice_spelling() {
        assert_eq!(lattice_paths("/products"), ["/products"]);
        assert_eq!(lattice_paths("/kv/carts/..."), ["/kv/carts", "/kv/carts/*"]);
        assert_eq!(lattice_paths("/..."), ["/*"]);
        assert_eq!(lattice_paths("/products/{id}"), ["/products/*"]);
        assert_eq!(lattice_paths("/a/{id}/b/..."), ["/a/*/b", "/a/*/b/*"]);
        assert!(lattice_exact("/kv/carts/..."));
        assert!(!lattice_exact("/products/{id}"));
    }
}

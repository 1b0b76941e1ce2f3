//! Findings: what an auditor should look at, each naming the rule or route to change.

use std::collections::{BTreeSet, HashSet};

use septa_manifest::{EgressScheme, HostPattern, InvariantRule, Location, Mode};
use septa_policy::{Policy, RuleId};
use serde::Serialize;

use crate::declared;
use crate::graph::{Edge, Graph};
use crate::{cluster, nested_routes, rules, shadowed};

/// How much a finding matters; `--fail-on` compares against it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// Context, such as blast radius.
    Info,
    /// Dead or redundant policy.
    Low,
    /// Weakened enforcement.
    Medium,
    /// A path to something sensitive, or an open door.
    High,
    /// A declared invariant is violated.
    Critical,
}

impl Severity {
    /// Parses `info`, `low`, `medium`, `high` or `critical`.
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "info" => Self::Info,
            "low" => Self::Low,
            "medium" => Self::Medium,
            "high" => Self::High,
            "critical" => Self::Critical,
            _ => return None,
        })
    }

    /// Lowercase name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Info => "info",
            Self::Low => "low",
            Self::Medium => "medium",
            Self::High => "high",
            Self::Critical => "critical",
        }
    }
}

/// One thing the audit found.
#[derive(Clone, Debug, Serialize)]
pub struct Finding {
    /// How much it matters.
    pub severity: Severity,
    /// A stable kind, e.g. `invariant-violated`, `sensitive-path`.
    pub kind: &'static str,
    /// What it is about: `function:ledger`, `route:api`, `invariant:no-internet-to-pci`.
    pub subject: String,
    /// What was found, in words.
    pub message: String,
    /// The rules and routes involved: the ones to change.
    pub rules: Vec<String>,
    /// The path, node by node, when the finding is about one.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub path: Vec<String>,
    /// `file:line:col` of the declaration to look at.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub location: Option<String>,
    /// The line and column of that declaration in the manifest, for exports that point into it.
    #[serde(skip)]
    pub position: Option<Location>,
}

/// Checks every `[[invariant]]`: one critical finding per violated invariant, with the
/// offending path.
pub fn check_invariants(policy: &Policy, graph: &Graph<'_>) -> Vec<Finding> {
    let mut out = Vec::new();
    for invariant in declared::invariants(policy) {
        let InvariantRule::DenyPath {
            from,
            to,
            except_through,
        } = &invariant.rule;
        let sources = graph.select(from);
        let gates: HashSet<usize> = except_through
            .iter()
            .flat_map(|s| graph.select(s))
            .collect();
        let targets: HashSet<usize> = graph
            .select(to)
            .into_iter()
            .filter(|t| !gates.contains(t))
            .collect();
        if let Some(path) = graph.shortest_path(&sources, &targets, &gates) {
            let gates_text = if except_through.is_empty() {
                String::new()
            } else {
                format!(
                    " except through {}",
                    except_through
                        .iter()
                        .map(|s| format!("`{s}`"))
                        .collect::<Vec<_>>()
                        .join(", ")
                )
            };
            out.push(Finding {
                severity: Severity::Critical,
                kind: "invariant-violated",
                subject: format!("invariant:{}", invariant.id),
                message: format!(
                    "invariant `{}` says no path from `{from}` to `{to}`{gates_text}, but there is one: {}",
                    invariant.id,
                    graph.describe(&path)
                ),
                rules: path.iter().map(|e| e.rule.clone()).collect(),
                path: path_nodes(graph, &path),
                location: Some(declared::at(policy, invariant.location)),
                position: Some(invariant.location),
            });
        }
    }
    out
}

fn path_nodes(graph: &Graph<'_>, path: &[Edge]) -> Vec<String> {
    let mut nodes = Vec::new();
    if let Some(first) = path.first() {
        nodes.push(graph.name(first.from).to_owned());
    }
    nodes.extend(path.iter().map(|e| graph.name(e.to).to_owned()));
    nodes
}

/// Audits `policy`: invariants first, then every check, most severe first.
pub fn audit(policy: &Policy, graph: &Graph<'_>) -> Vec<Finding> {
    let mut findings = check_invariants(policy, graph);
    sensitive_paths(policy, graph, &mut findings);
    open_routes(policy, &mut findings);
    nested_routes::nested_routes(policy, &mut findings);
    wide_egress(policy, &mut findings);
    audit_modes(policy, &mut findings);
    rules::dead_rules(policy, &mut findings);
    shadowed::shadowed_rules(policy, &mut findings);
    rules::wide_cross_segment_rules(policy, &mut findings);
    blast_radius(policy, graph, &mut findings);
    cluster::findings::placement(policy, &mut findings);
    findings.sort_by(|a, b| {
        b.severity
            .cmp(&a.severity)
            .then_with(|| a.subject.cmp(&b.subject))
    });
    findings
}

/// Every labelled function the internet can reach, with the shortest path and its weakest hop.
fn sensitive_paths(policy: &Policy, graph: &Graph<'_>, out: &mut Vec<Finding>) {
    // One search from the gateway finds the shortest path to every function.
    let from_internet = graph.shortest_paths_from(0);
    for f in policy.functions() {
        let labels: BTreeSet<String> = declared::labels(policy, f)
            .map(ToString::to_string)
            .collect();
        if labels.is_empty() {
            continue;
        }
        let Some(path) = from_internet.to(graph.function_node(f.id)) else {
            continue;
        };
        let labels_text = labels
            .iter()
            .map(|l| format!("`{l}`"))
            .collect::<Vec<_>>()
            .join(", ");
        let weakest = path
            .iter()
            .find(|e| e.unrestricted)
            .map(|e| format!("; weakest hop: `{}` admits any method on any path", e.rule))
            .unwrap_or_default();
        out.push(Finding {
            severity: Severity::High,
            kind: "sensitive-path",
            subject: f.identity.clone(),
            message: format!(
                "the internet reaches `{}` (labels {labels_text}) in {} hops: {}{weakest}",
                f.identity,
                path.len(),
                graph.describe(&path)
            ),
            rules: path.iter().map(|e| e.rule.clone()).collect(),
            path: path_nodes(graph, &path),
            location: Some(declared::at(policy, f.spec.location)),
            position: Some(f.spec.location),
        });
    }
}

fn open_routes(policy: &Policy, out: &mut Vec<Finding>) {
    for route in policy.routes() {
        let target = format!(
            "route `{}` (`{}` → `function:{}`)",
            route.id,
            route.pattern,
            policy.function(route.function).spec.name
        );
        let (severity, kind, message) = match (&route.auth, &route.rate_limit) {
            (None, None) => (
                Severity::Medium,
                "route-unauthenticated",
                format!("{target} admits anyone: it has no authentication and no rate limit"),
            ),
            (None, Some(_)) => (
                Severity::Medium,
                "route-unauthenticated",
                format!("{target} admits anyone: it has no authentication"),
            ),
            (Some(_), None) => (
                Severity::Low,
                "route-unlimited",
                format!("{target} has no rate limit"),
            ),
            (Some(_), Some(_)) => continue,
        };
        let declared_at = policy.declared_at(&RuleId::Route(route.id.clone()));
        out.push(Finding {
            severity,
            kind,
            subject: format!("route:{}", route.id),
            message,
            rules: vec![route.id.to_string()],
            path: Vec::new(),
            location: declared_at.map(|at| declared::at(policy, at)),
            position: declared_at,
        });
    }
}

fn wide_egress(policy: &Policy, out: &mut Vec<Finding>) {
    for rule in policy.egress_rules() {
        for target in rule.targets {
            let (severity, why) = match &target.host {
                HostPattern::Cidr(net) if net.prefix_len() == 0 => {
                    (Severity::High, "every address")
                }
                HostPattern::Cidr(net) if net.prefix_len() < net.max_prefix_len() / 2 => (
                    Severity::Medium,
                    "a network wider than half the address space's prefix",
                ),
                HostPattern::Subdomain(_) => (Severity::Low, "every name under a domain"),
                _ if target.port_min == 0 && target.port_max == u16::MAX => {
                    (Severity::Medium, "every port")
                }
                _ if target.scheme == EgressScheme::Any => (Severity::Low, "every protocol"),
                _ => continue,
            };
            out.push(Finding {
                severity,
                kind: "wide-egress",
                subject: format!("egress:{}", rule.id),
                message: format!("egress rule `{}` opens `{target}`: {why}", rule.id),
                rules: vec![rule.id.to_string()],
                path: Vec::new(),
                location: Some(declared::at(policy, rule.location)),
                position: Some(rule.location),
            });
        }
    }
}

fn audit_modes(policy: &Policy, out: &mut Vec<Finding>) {
    for segment in declared::segments(policy).filter(|s| s.mode == Mode::Audit) {
        out.push(Finding {
            severity: Severity::Medium,
            kind: "audit-mode",
            subject: format!("segment:{}", segment.name),
            message: format!(
                "segment `{}` is in audit mode: its denials are recorded, not enforced",
                segment.name
            ),
            rules: Vec::new(),
            path: Vec::new(),
            location: Some(declared::at(policy, segment.location)),
            position: Some(segment.location),
        });
    }
    for f in policy.functions().iter().filter(|f| f.audit) {
        let segment_audit = declared::segment(policy, f.spec.placement.segment.as_str())
            .is_some_and(|s| s.mode == Mode::Audit);
        if segment_audit {
            continue;
        }
        out.push(Finding {
            severity: Severity::Medium,
            kind: "audit-mode",
            subject: f.identity.clone(),
            message: format!(
                "`{}` is in audit mode: its denials are recorded, not enforced",
                f.identity
            ),
            rules: Vec::new(),
            path: Vec::new(),
            location: Some(declared::at(policy, f.spec.location)),
            position: Some(f.spec.location),
        });
    }
}

/// The most places a blast-radius finding names; it counts the rest.
const LISTED_PLACES: usize = 20;

/// What a compromised function could reach, transitively.
fn blast_radius(policy: &Policy, graph: &Graph<'_>, out: &mut Vec<Finding>) {
    let reach = graph.reach();
    for f in policy.functions() {
        let node = graph.function_node(f.id);
        let count = reach.count(node);
        let names: Vec<&str> = reach
            .from(node)
            .take(LISTED_PLACES)
            .map(|n| graph.name(n))
            .collect();
        let message = if count == 0 {
            format!("a compromised `{}` reaches nothing", f.identity)
        } else {
            let places = if count == 1 { "place" } else { "places" };
            let more = if count > names.len() {
                format!(" and {} more", count - names.len())
            } else {
                String::new()
            };
            format!(
                "a compromised `{}` reaches {count} {places}: {}{more}",
                f.identity,
                names.join(", ")
            )
        };
        out.push(Finding {
            severity: Severity::Info,
            kind: "blast-radius",
            subject: f.identity.clone(),
            message,
            rules: Vec::new(),
            path: Vec::new(),
            location: None,
            position: None,
        });
    }
}

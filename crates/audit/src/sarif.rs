//! SARIF 2.1.0 export of the findings, for code-scanning tools: one run, one reporting
//! descriptor per finding kind, one result per finding pointing into `septa.toml`.
//!
//! A result's location is the declaration the finding is about (the invariant, route, egress
//! rule, segment or function), by line and column; the rules and routes it names are added as
//! related locations, so a reviewer can jump to each one to change. Every result also carries
//! its subject as a logical location, which is all a finding without a declaration (blast
//! radius) has.

use std::collections::HashMap;
use std::path::Path;

use septa_manifest::Location;
use septa_policy::{Policy, RuleId};
use serde_json::{Value, json};

use crate::declared;
use crate::findings::{Finding, Severity};

/// One kind of finding, as a SARIF reporting descriptor describes it.
struct Kind {
    id: &'static str,
    name: &'static str,
    short: &'static str,
    help: &'static str,
    severity: Severity,
}

/// Every kind `audit` reports, in the order the rules appear in the log.
const KINDS: &[Kind] = &[
    Kind {
        id: "invariant-violated",
        name: "InvariantViolated",
        short: "A declared invariant is violated by a path of allowed flows",
        help: "An `[[invariant]]` says no path may lead from one selector to another except through named gates, and the allowed flows make one. Narrow or remove one rule on the path (the result names every hop's rule), or route the flow through a gate.",
        severity: Severity::Critical,
    },
    Kind {
        id: "sensitive-path",
        name: "SensitivePath",
        short: "The internet reaches a labelled function",
        help: "A chain of routes and allow rules leads from the gateway to a function carrying a label (such as `pci`). If the path is not intended, narrow the weakest hop: give it methods and paths, or remove it; declare an `[[invariant]]` to keep it closed.",
        severity: Severity::High,
    },
    Kind {
        id: "route-unauthenticated",
        name: "RouteUnauthenticated",
        short: "A public route admits anyone",
        help: "The route has no `auth`. Add `auth = { jwt = \"ISSUER\", scopes = [...] }` or `auth = { api_key = \"SET\" }`, and a `rate_limit`.",
        severity: Severity::Medium,
    },
    Kind {
        id: "route-unlimited",
        name: "RouteUnlimited",
        short: "A public route has no rate limit",
        help: "Add `rate_limit = { key = \"principal\", per_second = N, burst = M }` to the route.",
        severity: Severity::Low,
    },
    Kind {
        id: "route-nested-under-weaker-wildcard",
        name: "RouteNestedUnderWeakerWildcard",
        short: "A guarded route is nested under a wildcard route that guards less",
        help: "Paths below the nested route (and, were the gateway not refusing them, its respellings) go to the wildcard route's function under the wildcard's checks. If that function serves them as the nested route's, guard the subtree too (`path = \"/api/orders/...\"` with the same `auth`), or give the wildcard the same checks.",
        severity: Severity::Medium,
    },
    Kind {
        id: "wide-egress",
        name: "WideEgress",
        short: "An egress rule opens more of the outside world than one service",
        help: "Name the exact `scheme://host:port` each function needs instead of a wildcard domain, a wide network, every port or every protocol.",
        severity: Severity::Medium,
    },
    Kind {
        id: "audit-mode",
        name: "AuditMode",
        short: "Segmentation is recorded, not enforced",
        help: "A segment or function in `mode = \"audit\"` lets every flow through and records what enforcement would deny. Run `septa suggest` on its flow log, add the rules, and switch it to `enforce`.",
        severity: Severity::Medium,
    },
    Kind {
        id: "rule-never-matches",
        name: "RuleNeverMatches",
        short: "A rule can never match",
        help: "A side of the rule selects no function, or it admits no method or no path. Fix the selector or the lists, or remove the rule.",
        severity: Severity::Low,
    },
    Kind {
        id: "rule-shadowed",
        name: "RuleShadowed",
        short: "An allow rule is shadowed by earlier rules",
        help: "Every flow this rule admits is already admitted by a rule earlier in the file, and the first admitting rule decides, so this one never decides anything. Remove it, or narrow the earlier rule if this one was meant to be the narrower grant.",
        severity: Severity::Low,
    },
    Kind {
        id: "cross-segment-wider-than-needed",
        name: "CrossSegmentWiderThanNeeded",
        short: "A cross-segment allow rule admits any method or any path",
        help: "A rule that crosses a segment boundary should name the methods and the exact paths the caller needs. The result says what a narrower rule looks like.",
        severity: Severity::Medium,
    },
    Kind {
        id: "blast-radius",
        name: "BlastRadius",
        short: "What a compromised function could reach",
        help: "Everything a compromised function reaches transitively through allowed flows. Not a problem in itself: review it when the list is longer than the function's job needs.",
        severity: Severity::Info,
    },
    Kind {
        id: "single-node-destination",
        name: "SingleNodeDestination",
        short: "Flows reach a place from other nodes, and one node alone runs it",
        help: "Routes or allow rules lead to this function or endpoint from nodes that do not run it, over mutual TLS, and only one node runs it: while that node is down, those flows fail with 503. Add a second node to its hosts (`[node.NAME] hosts`); an embedded endpoint keeps its data on one node, so move it to Redis or PostgreSQL first.",
        severity: Severity::Low,
    },
    Kind {
        id: "cross-node-flow",
        name: "CrossNodeFlow",
        short: "A route or allow rule opens flows between nodes, over mutual TLS",
        help: "A node that runs the flow's source and not its destination calls a node that does over mutual TLS, and the receiving node decides the flow again. Not a problem in itself: review which flows leave a machine, and keep what calls each other on the same nodes when a hop matters.",
        severity: Severity::Info,
    },
    Kind {
        id: "node-placement",
        name: "NodePlacement",
        short: "What a node runs, and so what its certificate speaks for",
        help: "A node runs the functions and endpoints its `[node.NAME] hosts` selects, and other nodes take its certificate's word for calls from those functions. Not a problem in itself: review it as the blast radius of a compromised node.",
        severity: Severity::Info,
    },
];

/// The SARIF level of a severity; info findings are not problems (`none`, kind
/// `informational`).
fn level(severity: Severity) -> &'static str {
    match severity {
        Severity::Critical | Severity::High => "error",
        Severity::Medium => "warning",
        Severity::Low => "note",
        Severity::Info => "none",
    }
}

/// The score code-scanning services sort security results by (0.1–10, as CVSS).
fn security_severity(severity: Severity) -> &'static str {
    match severity {
        Severity::Critical => "9.5",
        Severity::High => "8.0",
        Severity::Medium => "5.5",
        Severity::Low => "3.0",
        Severity::Info => "0.0",
    }
}

/// Renders `findings` about `policy` as a SARIF 2.1.0 log.
pub fn render(policy: &Policy, findings: &[Finding]) -> Value {
    let artifact = artifact_location(declared::file(policy));
    let declarations = declarations(policy);
    let rules: Vec<Value> = KINDS
        .iter()
        .map(|k| {
            let mut tags = vec!["security", "segmentation"];
            if k.severity == Severity::Info {
                tags.retain(|t| *t != "security");
            }
            json!({
                "id": k.id,
                "name": k.name,
                "shortDescription": { "text": k.short },
                "fullDescription": { "text": k.help },
                "help": { "text": k.help },
                "defaultConfiguration": { "level": level(k.severity) },
                "properties": {
                    "tags": tags,
                    "security-severity": security_severity(k.severity),
                },
            })
        })
        .collect();
    let results: Vec<Value> = findings
        .iter()
        .map(|f| result(&declarations, &artifact, f))
        .collect();
    json!({
        "$schema": "https://json.schemastore.org/sarif-2.1.0.json",
        "version": "2.1.0",
        "runs": [{
            "tool": { "driver": {
                "name": "septa",
                "fullName": "septa audit",
                "version": env!("CARGO_PKG_VERSION"),
                "semanticVersion": env!("CARGO_PKG_VERSION"),
                "rules": rules,
            }},
            "artifacts": [{ "location": artifact, "roles": ["analysisTarget"] }],
            "columnKind": "unicodeCodePoints",
            "results": results,
        }],
    })
}

fn result(declarations: &Declarations<'_>, artifact: &Value, f: &Finding) -> Value {
    let mut out = json!({
        "ruleId": f.kind,
        "level": level(f.severity),
        "message": { "text": f.message },
        "properties": { "severity": f.severity.as_str(), "subject": f.subject },
    });
    if let Some(index) = KINDS.iter().position(|k| k.id == f.kind) {
        out["ruleIndex"] = json!(index);
    }
    if f.severity == Severity::Info {
        out["kind"] = json!("informational");
    }
    if !f.rules.is_empty() {
        out["properties"]["rules"] = json!(f.rules);
    }
    if !f.path.is_empty() {
        out["properties"]["path"] = json!(f.path);
    }
    let logical = logical_location(&f.subject);
    let mut location = json!({ "logicalLocations": [logical] });
    if let Some(at) = f.position {
        location["physicalLocation"] = physical_location(artifact, at);
    }
    out["locations"] = json!([location]);
    let related: Vec<Value> = f
        .rules
        .iter()
        .flat_map(|id| declarations.get(id.as_str()).into_iter().flatten().copied())
        .filter(|(_, _, at)| Some(*at) != f.position)
        .enumerate()
        .map(|(i, (what, id, at))| {
            json!({
                "id": i,
                "message": { "text": format!("{what} `{id}`") },
                "physicalLocation": physical_location(artifact, at),
            })
        })
        .collect();
    if !related.is_empty() {
        out["relatedLocations"] = json!(related);
    }
    out
}

/// Per rule id, where the allow rules, routes and egress rules of that id are declared, in that
/// order: what a result's related locations point at.
type Declarations<'p> = HashMap<&'p str, Vec<(&'static str, &'p str, Location)>>;

/// Where every allow rule, route and egress rule of `policy` is declared, by id.
fn declarations(policy: &Policy) -> Declarations<'_> {
    let allows = policy
        .allow_rules()
        .map(|r| ("allow rule", r.id.as_str(), Some(r.location)));
    let routes = policy.routes().map(|r| {
        let at = policy.declared_at(&RuleId::Route(r.id.clone()));
        ("route", r.id.as_str(), at)
    });
    let egress = policy
        .egress_rules()
        .map(|r| ("egress rule", r.id.as_str(), Some(r.location)));
    let mut out: Declarations<'_> = HashMap::new();
    for (what, id, at) in allows.chain(routes).chain(egress) {
        if let Some(at) = at {
            out.entry(id).or_default().push((what, id, at));
        }
    }
    out
}

fn physical_location(artifact: &Value, at: Location) -> Value {
    json!({
        "artifactLocation": artifact,
        "region": { "startLine": at.line, "startColumn": at.col },
    })
}

/// `function:ledger` → a logical location named `ledger`, fully `function:ledger`. Its SARIF kind
/// is `resource`: septa's subjects are declarations, not code.
fn logical_location(subject: &str) -> Value {
    let name = subject.split_once(':').map_or(subject, |(_, name)| name);
    json!({ "name": name, "fullyQualifiedName": subject, "kind": "resource" })
}

/// The manifest as a SARIF artifact location: a relative path stays relative to the directory
/// the audit ran in (`%SRCROOT%`); an absolute one becomes a `file:` URI.
fn artifact_location(file: &Path) -> Value {
    let text = file.to_string_lossy().replace('\\', "/");
    if file.is_absolute() {
        let path = if text.starts_with('/') {
            text
        } else {
            format!("/{text}")
        };
        json!({ "uri": format!("file://{}", percent_encode(&path)) })
    } else {
        let relative = text.strip_prefix("./").unwrap_or(&text);
        json!({ "uri": percent_encode(relative), "uriBaseId": "%SRCROOT%" })
    }
}

/// Percent-encodes every byte that may not appear as is in a URI path.
fn percent_encode(path: &str) -> String {
    let mut out = String::with_capacity(path.len());
    for byte in path.bytes() {
        if byte.is_ascii_alphanumeric() || b"-._~/!$&'()*+,;=:@".contains(&byte) {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_become_uri_references() {
        assert_eq!(
            artifact_location(Path::new("/srv/my app/septa.toml"))["uri"],
            "file:///srv/my%20app/septa.toml"
        );
        let relative = artifact_location(Path::new("./examples/shop/septa.toml"));
        assert_eq!(relative["uri"], "examples/shop/septa.toml");
        assert_eq!(relative["uriBaseId"], "%SRCROOT%");
    }

    #[test]
    fn every_severity_has_a_level_the_schema_accepts() {
        for s in [
            Severity::Info,
            Severity::Low,
            Severity::Medium,
            Severity::High,
            Severity::Critical,
        ] {
            assert!(["none", "note", "warning", "error"].contains(&level(s)));
        }
    }
}

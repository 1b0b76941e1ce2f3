//! `septa audit` on rules themselves, on hand-built manifests with known answers: rules shadowed
//! by earlier ones (and rules that only look shadowed), cross-segment rules wider than needed,
//! and rules that can never match.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::septa;
use serde_json::Value;

/// Segments `a` (subnets `web` and `app`) and `b` (subnet `app`), functions `a1` (a/web), `a2`
/// (a/app), `b1` and `b2` (b/app), then `rules`.
fn app(rules: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let manifest = format!(
        r#"septa_manifest_version = 1
[application]
name = "rules"
[segment.a]
subnets = {{ web = "public", app = "private" }}
[segment.b]
subnets = {{ app = "private" }}
[group.callers]
[function.a1]
source = "a1.wasm"
placement = "a/web"
groups = ["callers"]
[function.a2]
source = "a2.wasm"
placement = "a/app"
groups = ["callers"]
[function.b1]
source = "b1.wasm"
placement = "b/app"
[function.b2]
source = "b2.wasm"
placement = "b/app"
{rules}"#
    );
    std::fs::write(dir.path().join("septa.toml"), manifest).unwrap();
    dir
}

fn findings(rules: &str) -> Vec<Value> {
    let dir = app(rules);
    let (ok, stdout, stderr) = septa(&["audit", dir.path().to_str().unwrap(), "--format", "json"]);
    assert!(ok, "{stderr}");
    serde_json::from_str(&stdout).unwrap()
}

fn of_kind<'a>(findings: &'a [Value], kind: &str) -> Vec<&'a Value> {
    findings.iter().filter(|f| f["kind"] == kind).collect()
}

fn rule(id: &str, from: &str, to: &str, rest: &str) -> String {
    format!("[[allow]]\nid = \"{id}\"\nfrom = \"{from}\"\nto = \"{to}\"\n{rest}\n")
}

#[test]
fn a_rule_admitted_entirely_by_an_earlier_broader_rule_is_shadowed() {
    let rules = rule(
        "a-to-b",
        "segment:a",
        "segment:b",
        "methods = [\"GET\", \"POST\"]\npaths = [\"/orders/...\"]",
    ) + &rule(
        "a1-reads-order",
        "function:a1",
        "function:b1",
        "methods = [\"GET\"]\npaths = [\"/orders/{id}\"]",
    );
    let found = findings(&rules);
    let shadowed = of_kind(&found, "rule-shadowed");
    assert_eq!(shadowed.len(), 1, "{found:#?}");
    let f = shadowed[0];
    assert_eq!(f["subject"], "allow:a1-reads-order");
    assert_eq!(f["severity"], "low");
    assert_eq!(f["rules"], serde_json::json!(["a1-reads-order", "a-to-b"]));
    let message = f["message"].as_str().unwrap();
    assert!(
        message.contains("allow rule `a1-reads-order` is shadowed by earlier rule `a-to-b`"),
        "{message}"
    );
    assert!(
        f["location"].as_str().unwrap().contains("septa.toml:"),
        "{f}"
    );
}

#[test]
fn partial_overlap_is_not_shadowing() {
    // The later rule admits POST too, which the earlier one does not.
    let more_methods = rule(
        "reads",
        "function:a1",
        "function:b1",
        "methods = [\"GET\"]\npaths = [\"/orders/{id}\"]",
    ) + &rule(
        "reads-and-writes",
        "function:a1",
        "function:b1",
        "methods = [\"GET\", \"POST\"]\npaths = [\"/orders/{id}\"]",
    );
    assert!(of_kind(&findings(&more_methods), "rule-shadowed").is_empty());

    // The later rule admits `/orders` and deeper paths; the earlier one one level only.
    let more_paths = rule(
        "one-level",
        "function:a1",
        "function:b1",
        "methods = [\"GET\"]\npaths = [\"/orders/{id}\"]",
    ) + &rule(
        "whole-tree",
        "function:a1",
        "function:b1",
        "methods = [\"GET\"]\npaths = [\"/orders/...\"]",
    );
    assert!(of_kind(&findings(&more_paths), "rule-shadowed").is_empty());

    // The later rule reaches `b2` too, which the earlier one does not.
    let more_destinations = rule("to-b1", "function:a1", "function:b1", "")
        + &rule("to-segment", "function:a1", "segment:b", "");
    assert!(of_kind(&findings(&more_destinations), "rule-shadowed").is_empty());

    // Order decides: the narrow rule first shadows nothing, and the broad one after it admits
    // more than the narrow one.
    let narrow_first = rule(
        "narrow",
        "function:a1",
        "function:b1",
        "methods = [\"GET\"]\npaths = [\"/orders/{id}\"]",
    ) + &rule("broad", "segment:a", "segment:b", "");
    assert!(of_kind(&findings(&narrow_first), "rule-shadowed").is_empty());
}

#[test]
fn earlier_rules_can_shadow_a_rule_together() {
    // Neither earlier rule covers both destinations or both methods; together they do.
    let rules = rule(
        "reads-b1",
        "group:callers",
        "function:b1",
        "methods = [\"GET\", \"POST\"]",
    ) + &rule(
        "reads-b2",
        "segment:a",
        "function:b2",
        "methods = [\"GET\"]",
    ) + &rule(
        "writes-b2",
        "function:a1",
        "function:b2",
        "methods = [\"POST\"]",
    ) + &rule(
        "a1-to-b",
        "function:a1",
        "subnet:b/app",
        "methods = [\"GET\", \"POST\"]\npaths = [\"/orders\"]",
    );
    let found = findings(&rules);
    let shadowed = of_kind(&found, "rule-shadowed");
    assert_eq!(shadowed.len(), 1, "{found:#?}");
    assert_eq!(shadowed[0]["subject"], "allow:a1-to-b");
    assert_eq!(
        shadowed[0]["rules"],
        serde_json::json!(["a1-to-b", "reads-b1", "reads-b2", "writes-b2"])
    );
    assert!(
        shadowed[0]["message"]
            .as_str()
            .unwrap()
            .contains("shadowed by earlier rules `reads-b1`, `reads-b2`, `writes-b2`"),
        "{}",
        shadowed[0]
    );
}

#[test]
fn cross_segment_rules_with_any_method_any_path_or_a_wildcard_are_too_wide() {
    let rules = rule(
        "any-method",
        "function:a1",
        "function:b1",
        "paths = [\"/orders\"]",
    ) + &rule(
        "any-path",
        "function:a2",
        "function:b1",
        "methods = [\"GET\"]",
    ) + &rule(
        "tree",
        "function:a1",
        "function:b2",
        "methods = [\"GET\"]\npaths = [\"/orders/...\"]",
    ) + &rule(
        "narrow",
        "function:a2",
        "function:b2",
        "methods = [\"GET\"]\npaths = [\"/orders/{id}\"]",
    ) + &rule("inside-a", "function:a1", "function:a2", "");
    let found = findings(&rules);
    let wide = of_kind(&found, "cross-segment-wider-than-needed");
    let subjects: Vec<&str> = wide
        .iter()
        .map(|f| f["subject"].as_str().unwrap())
        .collect();
    assert_eq!(
        subjects,
        ["allow:any-method", "allow:any-path", "allow:tree"],
        "{found:#?}"
    );
    let message = |id: &str| {
        wide.iter()
            .find(|f| f["subject"] == format!("allow:{id}"))
            .unwrap()["message"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    assert!(
        message("any-method")
            .contains("crosses from segment `a` to segment `b` with any method /orders"),
        "{}",
        message("any-method")
    );
    assert!(message("any-method").contains("`methods = [\"GET\"]`"));
    assert!(message("any-path").contains("instead of any path"));
    assert!(
        message("tree").contains("`\"/orders\"` and `\"/orders/{id}\"`")
            && message("tree").contains("instead of `/orders/...`"),
        "{}",
        message("tree")
    );
    assert!(wide.iter().all(|f| f["severity"] == "medium"));
}

#[test]
fn a_rule_that_admits_no_method_can_never_match() {
    let found = findings(&rule(
        "nothing",
        "function:a1",
        "function:b1",
        "methods = []",
    ));
    let dead = of_kind(&found, "rule-never-matches");
    assert_eq!(dead.len(), 1, "{found:#?}");
    assert_eq!(dead[0]["subject"], "allow:nothing");
    assert!(
        dead[0]["message"]
            .as_str()
            .unwrap()
            .contains("admits no method"),
        "{}",
        dead[0]
    );
    // And it opens nothing: a1 reaches nothing.
    let radius = found
        .iter()
        .find(|f| f["kind"] == "blast-radius" && f["subject"] == "function:a1")
        .unwrap();
    assert_eq!(
        radius["message"],
        "a compromised `function:a1` reaches nothing"
    );
}

/// `[[route]]`s to `a1` (the public function), with an API key set to ask for.
fn routes(routes: &[(&str, &str, &str)]) -> String {
    let mut out = String::from(
        "[api_keys.ops]\nkeys = [{ consumer = \"ops\", sha256 = \"0000000000000000000000000000000000000000000000000000000000000000\" }]\n",
    );
    for (id, path, extra) in routes {
        out.push_str(&format!(
            "[[route]]\nid = \"{id}\"\npath = \"{path}\"\nfunction = \"a1\"\n{extra}\n"
        ));
    }
    out
}

#[test]
fn a_guarded_route_under_a_weaker_wildcard_is_reported_with_both_routes() {
    let auth = "auth = { api_key = \"ops\" }";
    let found = findings(&routes(&[
        ("open", "/api/...", ""),
        ("orders", "/api/orders", auth),
        ("order", "/api/orders/{id}", auth),
        ("menu", "/api/menu", ""),
        ("admin", "/Admin/keys", auth),
        ("guarded-all", "/admin/...", auth),
    ]));
    let nested = of_kind(&found, "route-nested-under-weaker-wildcard");
    let pairs: Vec<(&str, Vec<&str>)> = nested
        .iter()
        .map(|f| {
            let rules = f["rules"]
                .as_array()
                .unwrap()
                .iter()
                .map(|r| r.as_str().unwrap())
                .collect();
            (f["subject"].as_str().unwrap(), rules)
        })
        .collect();
    // `menu` guards no more than `open`; `admin` is under a wildcard that guards as much.
    assert_eq!(
        pairs,
        [
            ("route:order", vec!["order", "open"]),
            ("route:orders", vec!["orders", "open"]),
        ],
        "{nested:#?}"
    );
    let message = nested[1]["message"].as_str().unwrap();
    assert!(
        message.contains("route `orders` (`/api/orders` → `function:a1`) is nested under route `open` (`/api/...` → `function:a1`)")
            && message.contains("guard `/api/orders/...`"),
        "{message}"
    );
    assert_eq!(nested[1]["severity"], "medium");
    assert!(
        nested[1]["location"]
            .as_str()
            .unwrap()
            .contains("septa.toml:")
    );

    // The same routes with the wildcard as guarded as the nested ones: nothing to report.
    let found = findings(&routes(&[
        ("open", "/api/...", auth),
        ("orders", "/api/orders", auth),
    ]));
    assert!(of_kind(&found, "route-nested-under-weaker-wildcard").is_empty());
}

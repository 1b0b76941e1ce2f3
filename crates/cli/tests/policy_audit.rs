//! `septa audit`, `septa query` and invariants on manifests with known answers.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::path::Path;

use common::{case, repo, septa};
use serde_json::Value;

/// The shop's manifest, edited, in a directory of its own (audit never loads components).
fn shop_variant(edit: impl Fn(String) -> String) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let text = std::fs::read_to_string(repo().join("examples/shop/septa.toml")).unwrap();
    std::fs::write(dir.path().join("septa.toml"), edit(text)).unwrap();
    dir
}

fn audit_json(dir: &Path) -> Vec<Value> {
    let (ok, stdout, stderr) = septa(&["audit", dir.to_str().unwrap(), "--format", "json"]);
    assert!(ok, "{stderr}");
    serde_json::from_str(&stdout).unwrap()
}

fn sensitive_path_to<'a>(findings: &'a [Value], function: &str) -> Option<&'a Value> {
    findings
        .iter()
        .find(|f| f["kind"] == "sensitive-path" && f["subject"] == format!("function:{function}"))
}

#[test]
fn a_three_hop_lateral_path_is_found_with_its_rule_ids() {
    let findings = audit_json(&repo().join("examples/shop"));
    let ledger = sensitive_path_to(&findings, "ledger").expect("the internet reaches the ledger");
    assert_eq!(ledger["severity"], "high");
    assert_eq!(
        ledger["path"],
        serde_json::json!([
            "gateway",
            "function:storefront",
            "function:checkout",
            "function:ledger"
        ])
    );
    let rules: Vec<&str> = ledger["rules"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r.as_str().unwrap())
        .collect();
    assert_eq!(
        rules[1..],
        ["storefront-to-checkout", "checkout-to-ledger"],
        "{ledger}"
    );
    assert!(["home", "api"].contains(&rules[0]), "{ledger}");
}

#[test]
fn removing_one_rule_removes_the_finding() {
    let dir = shop_variant(|t| {
        t.replace(
            "[[allow]]\nid = \"checkout-to-ledger\"\nfrom = \"group:pci-app\"\nto = \"function:ledger\"\nmethods = [\"GET\", \"POST\"]\npaths = [\"/entries\"]\n",
            "",
        )
    });
    let findings = audit_json(dir.path());
    assert!(
        sensitive_path_to(&findings, "ledger").is_none(),
        "{findings:#?}"
    );
    assert!(sensitive_path_to(&findings, "checkout").is_some());
}

#[test]
fn an_invariant_violation_fails_check_and_up_with_the_offending_path() {
    let dir = shop_variant(|t| {
        t + "\n[[allow]]\nid = \"shortcut\"\nfrom = \"function:storefront\"\nto = \"function:ledger\"\nmethods = [\"GET\"]\n"
    });
    let path = dir.path().to_str().unwrap();
    let (ok, _, stderr) = septa(&["check", path]);
    assert!(!ok);
    assert!(stderr.contains("invariant `pci-only-through-checkout` says no path from `gateway` to `label:pci` except through `function:checkout`"), "{stderr}");
    assert!(stderr.contains("rule `shortcut`"), "{stderr}");
    assert!(stderr.contains("septa.toml:"), "{stderr}");

    let (ok, stdout, stderr) = septa(&["up", path, "--listen", "127.0.0.1:0"]);
    assert!(!ok);
    assert!(!stdout.contains("listening"), "{stdout}");
    assert!(stderr.contains("pci-only-through-checkout"), "{stderr}");

    let findings = audit_json(dir.path());
    let violated = findings
        .iter()
        .find(|f| f["kind"] == "invariant-violated")
        .unwrap();
    assert_eq!(violated["severity"], "critical");
    assert!(
        violated["rules"]
            .as_array()
            .unwrap()
            .contains(&"shortcut".into())
    );
}

#[test]
fn fail_on_sets_the_exit_status() {
    let shop = repo().join("examples/shop");
    let shop = shop.to_str().unwrap();
    assert!(!septa(&["audit", shop, "--fail-on", "high"]).0);
    assert!(septa(&["audit", shop, "--fail-on", "critical"]).0);
    let (ok, _, stderr) = septa(&["audit", shop, "--fail-on", "severe"]);
    assert!(
        !ok && stderr.contains("unknown severity `severe`"),
        "{stderr}"
    );
}

#[test]
fn query_answers_with_rules_or_with_the_reason_and_nearest_rule() {
    let shop = repo().join("examples/shop");
    let shop = shop.to_str().unwrap();
    let (ok, stdout, _) = septa(&[
        "query",
        shop,
        "--from",
        "function:storefront",
        "--to",
        "function:catalog",
        "--method",
        "GET",
        "--path",
        "/products",
    ]);
    assert!(ok, "{stdout}");
    assert!(stdout.contains("rule `storefront-to-catalog`"), "{stdout}");

    let (ok, stdout, _) = septa(&[
        "query",
        shop,
        "--from",
        "function:relay",
        "--to",
        "function:catalog",
        "--method",
        "POST",
        "--path",
        "/whoami",
    ]);
    assert!(!ok);
    assert!(
        stdout.contains("not reachable: method `POST` is not admitted by rule `relay-to-catalog`"),
        "{stdout}"
    );

    let (ok, stdout, _) = septa(&[
        "query",
        shop,
        "--from",
        "segment:catalog",
        "--to",
        "label:pci",
    ]);
    assert!(!ok, "{stdout}");
    assert!(stdout.contains("no chain of allowed flows"), "{stdout}");

    // With a method only, the last hop must admit it on some path.
    let (ok, stdout, _) = septa(&[
        "query",
        shop,
        "--from",
        "gateway",
        "--to",
        "function:relay",
        "--method",
        "POST",
    ]);
    assert!(!ok, "{stdout}");
    let (ok, stdout, _) = septa(&[
        "query",
        shop,
        "--from",
        "gateway",
        "--to",
        "function:relay",
        "--method",
        "GET",
    ]);
    assert!(ok && stdout.contains("route `relay`"), "{stdout}");

    let (ok, _, stderr) = septa(&[
        "query",
        shop,
        "--from",
        "function:nobody",
        "--to",
        "gateway",
    ]);
    assert!(!ok && stderr.contains("selects nothing"), "{stderr}");
}

#[test]
fn audit_mode_is_reported_and_opens_paths_to_the_auditor() {
    let dir = case("audit");
    let findings = audit_json(&dir);
    assert!(
        findings
            .iter()
            .any(|f| f["kind"] == "audit-mode" && f["subject"] == "function:learner")
    );
    let (ok, stdout, _) = septa(&[
        "query",
        dir.to_str().unwrap(),
        "--from",
        "function:learner",
        "--to",
        "function:echo",
    ]);
    assert!(ok, "{stdout}");
    assert!(stdout.contains("audit mode"), "{stdout}");
    // An enforcing function is refused the direct call, but the audit-mode function next to it
    // accepts anything and calls anything: the auditor sees that path.
    let (ok, stdout, _) = septa(&[
        "query",
        dir.to_str().unwrap(),
        "--from",
        "function:strict",
        "--to",
        "function:echo",
    ]);
    assert!(ok, "{stdout}");
    assert!(stdout.contains("function:learner"), "{stdout}");
    assert!(
        stdout.contains("not directly: no allow rule from `function:strict` to `function:echo`"),
        "{stdout}"
    );
}

#[test]
fn dead_and_wide_rules_are_found() {
    let dir = shop_variant(|t| {
        t + "\n[[allow]]\nid = \"nobody-calls\"\nfrom = \"subnet:payments/vault\"\nto = \"subnet:edge/web\"\nmethods = []\n\n[[egress]]\nid = \"anywhere\"\nfrom = \"function:relay\"\nto = [\"https://0.0.0.0/0:443\"]\n"
    });
    let findings = audit_json(dir.path());
    // `methods = []` still connects the pair in the index, so it is live but admits nothing;
    // the wide egress is high.
    let wide = findings
        .iter()
        .find(|f| f["kind"] == "wide-egress")
        .unwrap();
    assert_eq!(wide["severity"], "high");
    assert_eq!(wide["rules"], serde_json::json!(["anywhere"]));
    let dir = shop_variant(|t| {
        t + "\n[group.empty]\n\n[[allow]]\nid = \"to-nobody\"\nfrom = \"function:relay\"\nto = \"group:empty\"\n"
    });
    let findings = audit_json(dir.path());
    assert!(
        findings
            .iter()
            .any(|f| f["kind"] == "rule-never-matches" && f["subject"] == "allow:to-nobody"),
        "{findings:#?}"
    );
}

#[test]
fn diff_names_exactly_the_flows_that_changed() {
    let shop = repo().join("examples/shop");
    let same = shop_variant(|t| t);
    let (ok, stdout, _) = septa(&[
        "diff",
        shop.to_str().unwrap(),
        same.path().to_str().unwrap(),
    ]);
    assert!(ok, "{stdout}");
    assert!(stdout.contains("no difference"), "{stdout}");

    let changed = shop_variant(|t| {
        t + "\n[[allow]]\nid = \"shortcut\"\nfrom = \"function:storefront\"\nto = \"function:ledger\"\nmethods = [\"GET\"]\n"
    });
    let (ok, stdout, _) = septa(&[
        "diff",
        shop.to_str().unwrap(),
        changed.path().to_str().unwrap(),
    ]);
    assert!(!ok);
    let lines: Vec<&str> = stdout.lines().collect();
    let allowed: Vec<&&str> = lines
        .iter()
        .filter(|l| l.starts_with("+ allowed"))
        .collect();
    assert_eq!(
        allowed,
        [&"+ allowed  function:storefront → function:ledger  (rule `shortcut`: GET any path)"],
        "{stdout}"
    );
    assert!(
        !lines.iter().any(|l| l.starts_with("- allowed")),
        "{stdout}"
    );
    assert!(
        lines.contains(&"~ invariant `pci-only-through-checkout`: holds → violated"),
        "{stdout}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("+ finding  CRITICAL invariant-violated")),
        "{stdout}"
    );
}

#[test]
fn the_html_report_draws_every_segment_function_and_flow() {
    let (ok, html, stderr) = septa(&[
        "audit",
        repo().join("examples/shop").to_str().unwrap(),
        "--format",
        "html",
    ]);
    assert!(ok, "{stderr}");
    assert!(html.starts_with("<!doctype html>"));
    // Self-contained: nothing to run and nothing to fetch (the SVG namespace is only a name).
    for outside in ["<script", "src=", "<link", "url(http", "@import"] {
        assert!(
            !html.contains(outside),
            "the report refers outside itself: `{outside}`"
        );
    }
    for name in [
        "segment edge",
        "segment catalog",
        "segment payments [pci]",
        "storefront",
        "relay",
        "catalog",
        "checkout",
        "ledger",
        "https://api.payments.example:443",
    ] {
        assert!(html.contains(name), "missing `{name}`");
    }
    for rule in [
        "storefront-to-catalog",
        "storefront-to-checkout",
        "checkout-to-ledger",
        "relay-to-catalog",
        "checkout-to-processor",
    ] {
        assert!(
            html.contains(&format!("`{rule}`")),
            "missing edge for `{rule}`"
        );
    }
    assert_eq!(
        html.matches("<path class=\"edge").count(),
        11,
        "5 routes, 5 rules, 1 egress"
    );
}

fn pci_checks(dir: &Path) -> (bool, Vec<Value>) {
    let (ok, stdout, stderr) = septa(&[
        "audit",
        dir.to_str().unwrap(),
        "--pack",
        "pci",
        "--format",
        "json",
    ]);
    assert!(stderr.is_empty(), "{stderr}");
    (ok, serde_json::from_str(&stdout).unwrap())
}

fn check<'a>(checks: &'a [Value], id: &str) -> &'a Value {
    checks.iter().find(|c| c["id"] == id).unwrap()
}

#[test]
fn the_pci_pack_gives_evidence_for_each_requirement() {
    let (ok, checks) = pci_checks(&repo().join("examples/shop"));
    assert!(
        !ok,
        "the shop's routes are unauthenticated, so the pack must fail"
    );
    assert_eq!(check(&checks, "pci-scope")["passed"], true);
    assert_eq!(
        check(&checks, "pci-scope")["evidence"],
        serde_json::json!(["in scope: function:checkout", "in scope: function:ledger"])
    );
    let segmentation = check(&checks, "pci-segmentation");
    assert_eq!(segmentation["passed"], false);
    assert!(
        segmentation["evidence"][0]
            .as_str()
            .unwrap()
            .contains("rule `storefront-to-checkout`"),
        "{segmentation}"
    );
    assert_eq!(check(&checks, "pci-egress")["passed"], true);
    assert_eq!(check(&checks, "pci-ingress-authenticated")["passed"], false);
    assert_eq!(check(&checks, "pci-enforced")["passed"], true);

    let wide = shop_variant(|t| {
        t.replace(
            "to = [\"https://api.payments.example:443\"]",
            "to = [\"https://*.payments.example\"]",
        )
    });
    let (_, checks) = pci_checks(wide.path());
    let egress = check(&checks, "pci-egress");
    assert_eq!(egress["passed"], false, "{egress}");
    assert!(
        egress["evidence"][0]
            .as_str()
            .unwrap()
            .contains("checkout-to-processor"),
        "{egress}"
    );

    let (ok, _, stderr) = septa(&[
        "audit",
        repo().join("examples/shop").to_str().unwrap(),
        "--pack",
        "sox",
    ]);
    assert!(
        !ok && stderr.contains("unknown compliance pack `sox`"),
        "{stderr}"
    );
}

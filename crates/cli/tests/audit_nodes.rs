//! `septa audit` and `septa query` on an application spread over nodes: the example shop's
//! `[cluster]` with `edge-1`, `pay-1` and `pay-2`. The table has a placement section (trust
//! domain, what each node runs, each route and rule whose flows go between nodes), the JSON and
//! SARIF a finding for each, the HTML report a placement table and dash-dotted flows between
//! nodes; what one node alone runs while flows reach it from others is a finding; and a query
//! says where its two sides run and which hops cross. Without `[node.*]` tables, none of it.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::path::{Path, PathBuf};

use common::{repo, septa};
use serde_json::Value;

fn shop() -> PathBuf {
    repo().join("examples/shop")
}

/// The shop's manifest, edited, in a directory of its own (audit never loads components).
fn shop_variant(edit: impl Fn(String) -> String) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let text = std::fs::read_to_string(shop().join("septa.toml")).unwrap();
    std::fs::write(dir.path().join("septa.toml"), edit(text)).unwrap();
    dir
}

/// The shop in one process: its manifest without `[cluster]` and the `[node.*]` tables.
fn shop_without_nodes() -> tempfile::TempDir {
    shop_variant(|text| {
        let (single, nodes) = text.split_once("\n[cluster]").unwrap();
        assert!(nodes.contains("[node.pay-2]"), "{nodes}");
        single.to_owned()
    })
}

fn run(args: &[&str]) -> String {
    let (ok, stdout, stderr) = septa(args);
    assert!(ok, "{args:?}: {stderr}\n{stdout}");
    stdout
}

fn audit_table(dir: &Path) -> String {
    run(&["audit", dir.to_str().unwrap()])
}

fn audit_json(dir: &Path) -> Vec<Value> {
    serde_json::from_str(&run(&["audit", dir.to_str().unwrap(), "--format", "json"])).unwrap()
}

fn of_kind<'a>(findings: &'a [Value], kind: &str) -> Vec<&'a Value> {
    findings.iter().filter(|f| f["kind"] == kind).collect()
}

fn subjects(findings: &[Value], kind: &str) -> Vec<String> {
    of_kind(findings, kind)
        .iter()
        .map(|f| f["subject"].as_str().unwrap().to_owned())
        .collect()
}

/// `septa query DIR ARGS…`: (reachable, the lines it printed).
fn query(dir: &Path, args: &[&str]) -> (bool, Vec<String>) {
    let mut all = vec!["query", dir.to_str().unwrap()];
    all.extend_from_slice(args);
    let (ok, stdout, stderr) = septa(&all);
    assert!(stderr.is_empty(), "{stderr}");
    (ok, stdout.lines().map(str::to_owned).collect())
}

const PLACEMENT: &str = "\
placement: trust domain `shop.example`
  node edge-1  runs function:catalog, function:relay, function:storefront
  node pay-1   runs endpoint:carts, function:checkout, function:ledger
  node pay-2   runs function:checkout, function:ledger
flows between nodes (the receiving node decides each again):
  route `home`                         gateway → function:storefront         over mTLS: pay-1, pay-2 → edge-1
  route `api`                          gateway → function:storefront         over mTLS: pay-1, pay-2 → edge-1
  route `orders`                       gateway → function:storefront         over mTLS: pay-1, pay-2 → edge-1
  route `partner-products`             gateway → function:storefront         over mTLS: pay-1, pay-2 → edge-1
  route `relay`                        gateway → function:relay              over mTLS: pay-1, pay-2 → edge-1
  allow rule `storefront-to-checkout`  function:storefront → group:pci-app   over mTLS: edge-1 → pay-1, pay-2
  allow rule `storefront-to-carts`     function:storefront → endpoint:carts  over mTLS: edge-1 → pay-1

";

#[test]
fn the_table_opens_with_the_placement_and_the_flows_between_nodes() {
    let table = audit_table(&shop());
    assert!(table.starts_with(PLACEMENT), "{table}");
    // The placement's findings are the section above, not lines of the list.
    let list = &table[PLACEMENT.len()..];
    assert!(!list.contains("node-placement"), "{list}");
    assert!(!list.contains("cross-node-flow"), "{list}");
    assert!(
        list.trim_end()
            .ends_with("info (10 of them the placement above)"),
        "{list}"
    );
    // Storefront and relay run on edge-1 alone, yet routes reach them from the payment nodes;
    // the carts' embedded store lives on pay-1, and storefront calls it from edge-1.
    let single: Vec<&str> = list
        .lines()
        .filter(|l| l.starts_with("LOW      single-node-destination"))
        .collect();
    assert_eq!(single.len(), 3, "{list}");
    assert!(
        single[0].contains(
            "`endpoint:carts` runs only on node `pay-1`, and flows reach it there over mTLS from `edge-1` (allow rule `storefront-to-carts`): while `pay-1` is down they fail with 503"
        ) && single[0].contains("move it to Redis or PostgreSQL"),
        "{}",
        single[0]
    );
    assert!(single[1].contains("`function:relay` runs only on node `edge-1`"));
    assert!(
        single[2].contains(
            "`function:storefront` runs only on node `edge-1`, and flows reach it there over mTLS from `pay-1`, `pay-2` (route `home`, route `api`, route `orders`, route `partner-products`)"
        ),
        "{}",
        single[2]
    );
}

#[test]
fn json_has_a_finding_for_each_node_and_each_route_or_rule_between_nodes() {
    let findings = audit_json(&shop());
    let nodes = of_kind(&findings, "node-placement");
    assert_eq!(
        subjects(&findings, "node-placement"),
        ["node:edge-1", "node:pay-1", "node:pay-2"]
    );
    assert_eq!(nodes[0]["severity"], "info");
    assert_eq!(
        nodes[1]["message"],
        "node `pay-1` (`spiffe://shop.example/node/pay-1`) runs 3 places, and its certificate speaks for them: endpoint:carts, function:checkout, function:ledger"
    );
    let line = std::fs::read_to_string(shop().join("septa.toml"))
        .unwrap()
        .lines()
        .position(|l| l == "[node.pay-1]")
        .unwrap()
        + 1;
    assert!(
        nodes[1]["location"]
            .as_str()
            .unwrap()
            .contains(&format!("septa.toml:{line}:")),
        "{}",
        nodes[1]
    );

    let mut flows = subjects(&findings, "cross-node-flow");
    flows.sort();
    assert_eq!(
        flows,
        [
            "allow:storefront-to-carts",
            "allow:storefront-to-checkout",
            "route:api",
            "route:home",
            "route:orders",
            "route:partner-products",
            "route:relay",
        ]
    );
    let checkout = of_kind(&findings, "cross-node-flow")
        .into_iter()
        .find(|f| f["subject"] == "allow:storefront-to-checkout")
        .unwrap();
    assert_eq!(
        checkout["message"],
        "allow rule `storefront-to-checkout` (`function:storefront` → `group:pci-app`) goes between nodes over mTLS: edge-1 → pay-1, pay-2; the receiving node decides each call again"
    );
    assert_eq!(
        checkout["rules"],
        serde_json::json!(["storefront-to-checkout"])
    );
    // Catalog runs on edge-1 alone, but only edge-1 calls it: no node failure cuts it off from
    // a caller that is still up.
    assert_eq!(
        subjects(&findings, "single-node-destination"),
        ["endpoint:carts", "function:relay", "function:storefront"]
    );
}

#[test]
fn a_second_edge_node_leaves_only_the_embedded_store_on_one_node() {
    let dir = shop_variant(|text| {
        text + "\n[node.edge-2]\nhosts = [\"segment:edge\", \"segment:catalog\"]\n"
    });
    let findings = audit_json(dir.path());
    assert_eq!(
        subjects(&findings, "single-node-destination"),
        ["endpoint:carts"]
    );
    let table = audit_table(dir.path());
    assert!(
        table.contains(
            "  node edge-2  runs function:catalog, function:relay, function:storefront\n"
        ),
        "{table}"
    );
    assert!(
        table.contains(
            "gateway → function:storefront         over mTLS: pay-1, pay-2 → edge-1, edge-2\n"
        ),
        "{table}"
    );
    assert!(
        table.contains("over mTLS: edge-1, edge-2 → pay-1, pay-2\n"),
        "{table}"
    );
}

#[test]
fn without_node_tables_there_is_no_placement_anywhere() {
    let dir = shop_without_nodes();
    let table = audit_table(dir.path());
    assert!(table.starts_with("HIGH "), "{table}");
    assert!(!table.contains("placement"), "{table}");
    assert!(!table.contains("mTLS"), "{table}");
    let findings = audit_json(dir.path());
    for kind in [
        "node-placement",
        "cross-node-flow",
        "single-node-destination",
    ] {
        assert!(of_kind(&findings, kind).is_empty(), "{kind}: {findings:#?}");
    }
    // Everything else is found as with the nodes.
    let with_nodes = audit_json(&shop());
    assert_eq!(findings.len() + 13, with_nodes.len());

    let html = run(&["audit", dir.path().to_str().unwrap(), "--format", "html"]);
    assert!(!html.contains("id=\"placement\""));
    assert!(!html.contains("crossnode\""));
    assert!(!html.contains("between nodes"));

    let (ok, lines) = query(
        dir.path(),
        &["--from", "function:storefront", "--to", "function:checkout"],
    );
    assert!(ok);
    assert_eq!(lines.len(), 1, "{lines:#?}");
    assert!(lines[0].starts_with("reachable: "), "{lines:#?}");
}

#[test]
fn a_query_says_where_each_side_runs_and_which_hops_cross() {
    let shop = shop();
    let (ok, lines) = query(
        &shop,
        &["--from", "function:storefront", "--to", "function:ledger"],
    );
    assert!(ok, "{lines:#?}");
    assert!(lines[0].starts_with("reachable: function:storefront ─[rule `storefront-to-checkout`"));
    assert_eq!(
        lines[1..],
        [
            "  `function:storefront` runs on edge-1; `function:ledger` runs on pay-1, pay-2",
            "  function:storefront → function:checkout goes between nodes over mTLS: edge-1 → pay-1, pay-2; the receiving node decides it again",
        ]
    );

    // Denied directly: still where each side runs, and the exit status of a denial.
    let (ok, lines) = query(
        &shop,
        &[
            "--from",
            "function:storefront",
            "--to",
            "function:ledger",
            "--direct",
        ],
    );
    assert!(!ok);
    assert_eq!(
        lines,
        [
            "not reachable: no allow rule from `function:storefront` to `function:ledger`",
            "  `function:storefront` runs on edge-1; `function:ledger` runs on pay-1, pay-2",
        ]
    );

    // A request on a payment node for the storefront is forwarded to edge-1.
    let (ok, lines) = query(
        &shop,
        &[
            "--from",
            "gateway",
            "--to",
            "function:storefront",
            "--method",
            "GET",
            "--path",
            "/",
        ],
    );
    assert!(ok, "{lines:#?}");
    assert_eq!(
        lines[1..],
        [
            "  `gateway` runs on every node (edge-1, pay-1, pay-2); `function:storefront` runs on edge-1",
            "  gateway → function:storefront goes between nodes over mTLS: pay-1, pay-2 → edge-1; the receiving node decides it again",
        ]
    );

    // Relay and catalog share edge-1: the call never leaves it.
    let (ok, lines) = query(
        &shop,
        &["--from", "function:relay", "--to", "function:catalog"],
    );
    assert!(ok, "{lines:#?}");
    assert_eq!(
        lines[2],
        "  no hop goes between nodes: each node that runs a hop's source runs its destination too"
    );

    // A selector of several places: where any of them runs.
    let (_, lines) = query(
        &shop,
        &["--from", "segment:edge", "--to", "segment:payments"],
    );
    assert_eq!(
        lines[1],
        "  `segment:edge` (2 places) runs on edge-1; `segment:payments` (2 places) runs on pay-1, pay-2"
    );
}

#[test]
fn the_html_report_has_the_placement_and_dash_dots_the_flows_between_nodes() {
    let html = run(&["audit", shop().to_str().unwrap(), "--format", "html"]);
    assert!(
        html.contains("<h2 id=\"placement\">Placement</h2>"),
        "{html}"
    );
    assert!(html.contains("Trust domain <code>shop.example</code>"));
    assert!(html.contains(
        "<tr><td>pay-2</td><td><code>spiffe://shop.example/node/pay-2</code></td><td>function:checkout, function:ledger</td></tr>"
    ));
    // Five routes to edge-1's functions, storefront to checkout and to the carts.
    assert_eq!(html.matches("crossnode\" d=").count(), 7, "{html}");
    assert!(html.contains(
        "function:storefront → function:checkout: allow `storefront-to-checkout` (POST /charge); over mTLS: edge-1 → pay-1, pay-2</title>"
    ));
    assert!(html.contains("<th>between nodes (over mTLS)</th>"));
    assert!(html.contains(
        "<td>function:checkout</td><td>function:ledger</td><td>Allow</td><td>checkout-to-ledger</td><td>GET|POST /entries</td><td></td></tr>"
    ));
}

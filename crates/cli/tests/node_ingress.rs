//! Ingress on any node: every node's gateway routes every route, a request for a function another
//! node runs is forwarded to it over mutual TLS with the principal and claims the first gateway
//! verified, and the receiving node decides it again. A peer cannot use forwarding to reach a
//! function it did not name, nor have a client's credential read where the principal belongs.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::cluster::{Cluster, Node};
use common::peer::{Peer, PeerResponse};
use common::repo;
use septa_testkit::NatsServer;
use serde_json::Value;

/// A token the shop accepts, from `examples/shop/mint-token` (as the README shows).
fn mint(subject: &str, scope: &str) -> String {
    let out = std::process::Command::new(repo().join("examples/shop/mint-token"))
        .args([subject, scope])
        .output()
        .unwrap();
    assert!(out.status.success(), "mint-token failed: {out:?}");
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

/// The ingress record of `path` on `node` that names `peer`.
fn forwarded_record(node: &Node, path: &str, peer: &str) -> Value {
    node.wait_flow(&format!("of {path} forwarded with {peer}"), |f| {
        f["kind"] == "ingress" && f["path"] == path && f["peer"] == peer
    })
}

#[test]
fn every_node_routes_every_route_and_forwards_what_it_does_not_run() {
    let (cluster, revision) = Cluster::shop(vec![NatsServer::start()]);
    let (edge, pay1, pay2) = (
        cluster.node("edge-1"),
        cluster.node("pay-1"),
        cluster.node("pay-2"),
    );

    // The storefront runs on edge-1 only; pay-1's gateway routes `/` to it there.
    let home = pay1.request("GET", "/", &[], "");
    assert_eq!(home.status, 200, "{home:?}");
    assert!(home.body.contains("septa shop"), "{}", home.body);
    let sent = forwarded_record(pay1, "/", "edge-1");
    let served = forwarded_record(edge, "/", "pay-1");
    assert_eq!(sent["trace"], served["trace"], "{sent} / {served}");
    for (record, node) in [(&sent, "pay-1"), (&served, "edge-1")] {
        assert_eq!(record["node"], node, "{record}");
        assert_eq!(record["verdict"], "allow", "{record}");
        assert_eq!(record["rule"], "home", "{record}");
        assert_eq!(record["dst"], "function:storefront", "{record}");
        assert_eq!(record["policy"], revision.as_str(), "{record}");
        assert_eq!(record["status"], 200, "{record}");
    }
    // The receiving node knows the client the first gateway saw.
    assert_eq!(served["client"], "127.0.0.1", "{served}");

    // A guarded route: pay-2 verifies the token, edge-1 serves with the principal and the
    // forwarded claim, a cross-node call to checkout and back included.
    let token = mint("alice", "orders:read");
    let bearer = format!("Bearer {token}");
    let orders = pay2.request("GET", "/api/orders", &[("authorization", &bearer)], "");
    assert_eq!(orders.status, 200, "{orders:?}");
    let body = orders.json();
    assert_eq!(body["customer"], "alice", "{body}");
    assert_eq!(body["email"], "alice@shop.example", "{body}");
    let served = forwarded_record(edge, "/api/orders", "pay-2");
    assert_eq!(served["rule"], "orders", "{served}");

    // Refusals are the first gateway's: no token, the wrong scope. Nothing is forwarded.
    let missing = pay2.request("GET", "/api/orders", &[], "");
    assert_eq!(missing.status, 401, "{missing:?}");
    let scope = format!("Bearer {}", mint("bob", "profile"));
    let wrong = pay2.request("GET", "/api/orders", &[("authorization", &scope)], "");
    assert_eq!(wrong.status, 403, "{wrong:?}");
    let refused = pay2.wait_flows("of refused orders", 2, |f| {
        f["path"] == "/api/orders" && f["verdict"] == "deny"
    });
    assert!(refused.iter().all(|f| f["peer"].is_null()), "{refused:?}");
    let reached = edge
        .flows()
        .into_iter()
        .filter(|f| f["path"] == "/api/orders" && f["peer"] == "pay-2")
        .count();
    assert_eq!(reached, 1, "only the admitted request reached edge-1");

    // A cross-node call behind a forwarded request: pay-1's gateway -> edge-1's storefront ->
    // checkout on a payment node.
    let charged = pay1.request(
        "POST",
        "/api/checkout",
        &[("content-type", "application/json")],
        r#"{"amount_cents":1250}"#,
    );
    assert_eq!(charged.status, 200, "{charged:?}");
    assert_eq!(
        charged.json()["result"]["charged"],
        true,
        "{}",
        charged.body
    );
}

/// `method path` from `peer` (a node's certificate) to edge-1's mesh port as a forwarded gateway
/// request for `callee`, with `headers` besides.
fn forward_as(
    peer: &Peer,
    edge: &Node,
    callee: &str,
    path: &str,
    headers: &[(&str, &str)],
) -> PeerResponse {
    let mut all = vec![
        ("septa-caller", "gateway"),
        ("septa-trace", "00000000000f0001"),
    ];
    all.extend_from_slice(headers);
    peer.call(
        edge.mesh,
        &edge.name,
        "GET",
        &format!("https://{callee}.internal{path}"),
        &all,
        "",
    )
    .unwrap()
}

#[test]
fn a_peer_cannot_use_forwarding_to_read_a_credential_or_reach_another_function() {
    let (cluster, _) = Cluster::shop(vec![NatsServer::start()]);
    let edge = cluster.node("edge-1");
    let pay1 = Peer::with_certificate(&cluster.tls_dir("pay-1"));
    let client = ("septa-client", "192.0.2.7");

    // A well-formed forward of an open route is served, as gateway, for the client named.
    let home = forward_as(&pay1, edge, "storefront", "/", &[client]);
    assert_eq!(home.status, 200, "{home:?}");
    let served = forwarded_record(edge, "/", "pay-1");
    assert_eq!(served["client"], "192.0.2.7", "{served}");

    // The principal travels only as the forwarding gateway's word; a client's credential is
    // never read on this side, however valid.
    let bearer = format!("Bearer {}", mint("alice", "orders:read"));
    let token_only = forward_as(
        &pay1,
        edge,
        "storefront",
        "/api/orders",
        &[client, ("authorization", &bearer)],
    );
    assert_eq!(token_only.status, 401, "{token_only:?}");

    // Forwarded "for catalog", the path takes a route to the storefront here: refused, recorded.
    let elsewhere = forward_as(&pay1, edge, "catalog", "/", &[client]);
    assert_eq!(elsewhere.status, 403, "{elsewhere:?}");
    let record = edge.wait_flow("of the forward for catalog", |f| {
        f["kind"] == "ingress"
            && f["peer"] == "pay-1"
            && f["verdict"] == "deny"
            && f["reason"]
                .as_str()
                .is_some_and(|r| r.contains("forwarded for `function:catalog`"))
    });
    assert_eq!(record["status"], 403, "{record}");

    // A forward without the client it came for, or with a principal that is none, is refused.
    let no_client = forward_as(&pay1, edge, "storefront", "/", &[]);
    assert_eq!(no_client.status, 400, "{no_client:?}");
    let garbled = forward_as(
        &pay1,
        edge,
        "storefront",
        "/api/orders",
        &[client, ("septa-forwarded-principal", "7b7d")],
    );
    assert_eq!(garbled.status, 400, "{garbled:?}");

    // A node of the cluster cannot forward to a node for a function that node does not run.
    let pay2 = cluster.node("pay-2");
    let not_here = pay1
        .call(
            pay2.mesh,
            &pay2.name,
            "GET",
            "https://storefront.internal/",
            &[("septa-caller", "gateway"), client],
            "",
        )
        .unwrap();
    assert_eq!(not_here.status, 403, "{not_here:?}");
    assert!(
        not_here
            .deny_reason
            .as_deref()
            .is_some_and(|r| r.contains("does not run on node `pay-2`")),
        "{not_here:?}"
    );
}

//! The example shop as three `septa node`s on loopback, with real NATS servers and real mutual
//! TLS: a publish reaches every node, a call crosses nodes under one trace, every spoofing attempt
//! at a node's mesh port is refused and recorded, a killed replica is failed over, nodes outlive
//! NATS, and a broken revision leaves every node on the one before.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::time::{Duration, Instant};

use common::Response;
use common::cluster::{Cluster, Node, SHOP_NODES, entry, shop_copy};
use common::peer::{Peer, PeerResponse};
use septa_testkit::NatsServer;
use serde_json::Value;

/// `POST /api/checkout` on `node`'s gateway: the storefront calls checkout, which the shop places
/// on the payment nodes only.
fn checkout(node: &Node) -> Response {
    node.request(
        "POST",
        "/api/checkout",
        &[("content-type", "application/json")],
        r#"{"amount_cents":1250}"#,
    )
}

fn assert_charged(response: &Response) {
    assert_eq!(response.status, 200, "{response:?}");
    let json = response.json();
    assert_eq!(json["result"]["charged"], true, "{json}");
    assert_eq!(json["result"]["caller"], "function:storefront", "{json}");
}

fn hosts(entry: &Value) -> Vec<&str> {
    entry["hosts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h.as_str().unwrap())
        .collect()
}

/// The caller's record of a mesh call from storefront to checkout.
fn is_outbound_charge(f: &Value) -> bool {
    f["kind"] == "mesh" && f["src"] == "function:storefront" && f["dst"] == "function:checkout"
}

#[test]
fn one_publish_reaches_every_node_and_a_call_crosses_nodes_under_one_trace() {
    // Each node talks to its own server of a three-server NATS cluster; publishes go to the first.
    let nats: Vec<NatsServer> = NatsServer::cluster_of_three().into();
    let (cluster, revision) = Cluster::shop(nats);
    for name in SHOP_NODES {
        let node = cluster.node(name);
        assert!(
            node.startup
                .iter()
                .any(|l| l.contains(&format!("serves revision {revision}"))),
            "{name}: {:?}",
            node.startup
        );
    }
    let entries = cluster.wait_applied(&SHOP_NODES, &revision);
    let status = cluster.status();
    assert_eq!(status["revision"]["id"], revision.as_str(), "{status:#}");
    for (name, entry) in SHOP_NODES.iter().zip(&entries) {
        let node = cluster.node(name);
        assert_eq!(entry["address"], node.addr.to_string(), "{entry}");
        assert_eq!(entry["mesh_address"], node.mesh.to_string(), "{entry}");
        assert!(entry["heartbeat_at_ms"].as_u64().unwrap() > 0, "{entry}");
        assert!(entry.get("failed").is_none(), "{entry}");
    }
    let [edge, pay1, pay2] = [&entries[0], &entries[1], &entries[2]];
    for f in ["function:storefront", "function:relay", "function:catalog"] {
        assert!(hosts(edge).contains(&f), "{edge}");
    }
    for f in ["function:checkout", "function:ledger", "endpoint:carts"] {
        assert!(!hosts(edge).contains(&f), "{edge}");
        assert!(hosts(pay1).contains(&f), "{pay1}");
    }
    assert!(hosts(pay2).contains(&"function:checkout"), "{pay2}");
    assert!(!hosts(pay2).contains(&"endpoint:carts"), "{pay2}");

    // Through edge-1's gateway, storefront calls checkout on a payment node.
    let edge = cluster.node("edge-1");
    assert_charged(&checkout(edge));
    let out = edge.wait_flow("of storefront calling checkout", is_outbound_charge);
    assert_eq!(out["node"], "edge-1", "{out}");
    assert_eq!(out["verdict"], "allow", "{out}");
    assert_eq!(out["rule"], "storefront-to-checkout", "{out}");
    assert_eq!(out["status"], 200, "{out}");
    let trace = out["trace"].as_str().unwrap().to_owned();
    let peer = out["peer"].as_str().unwrap().to_owned();
    assert!(peer == "pay-1" || peer == "pay-2", "{out}");
    let ingress = edge.wait_flow("of the request", |f| f["kind"] == "ingress");
    assert_eq!(ingress["trace"], trace.as_str(), "{ingress}");

    // The callee's node decided again and wrote its own record of the same call.
    let callee = cluster.node(&peer);
    let inbound = callee.wait_flow("of the call from edge-1", |f| {
        f["kind"] == "mesh" && f["dst"] == "function:checkout" && f["trace"] == trace.as_str()
    });
    assert_eq!(inbound["node"], peer.as_str(), "{inbound}");
    assert_eq!(inbound["peer"], "edge-1", "{inbound}");
    assert_eq!(inbound["src"], "function:storefront", "{inbound}");
    assert_eq!(inbound["verdict"], "allow", "{inbound}");
    assert_eq!(inbound["rule"], "storefront-to-checkout", "{inbound}");
    assert_eq!(inbound["status"], 200, "{inbound}");
    // Each record names the revision that decided it: one revision here.
    assert_eq!(out["policy"], revision.as_str(), "{out}");
    assert_eq!(inbound["policy"], revision.as_str(), "{inbound}");

    // A publish while the nodes run reaches all of them, through their own servers.
    let app = shop_copy(
        &cluster.scratch("second"),
        |m| {
            m.replace(
                "description = \"a storefront",
                "description = \"again, a storefront",
            )
        },
        &[],
    );
    let second = cluster.publish(&app);
    assert_ne!(second, revision);
    cluster.wait_applied(&SHOP_NODES, &second);
    assert_charged(&checkout(edge));
}

/// `POST https://CALLEE.internal/charge` sent by `peer` straight to `node`'s mesh port, naming
/// `caller` (if any) and a trace the test picks, so that the node's record of it can be found.
fn call_mesh(
    peer: &Peer,
    node: &Node,
    callee: &str,
    caller: Option<&str>,
    trace: &str,
) -> Result<PeerResponse, String> {
    // One hop deep, as a node calling for a function behind its gateway says.
    let mut headers = vec![
        ("content-type", "application/json"),
        ("septa-trace", trace),
        ("septa-depth", "1"),
    ];
    if let Some(caller) = caller {
        headers.push(("septa-caller", caller));
    }
    let uri = format!("https://{callee}.internal/charge");
    peer.call(
        node.mesh,
        &node.name,
        "POST",
        &uri,
        &headers,
        r#"{"amount_cents":100}"#,
    )
}

/// `node`'s record of the call to `callee` with `trace`.
fn record(node: &Node, callee: &str, trace: &str) -> Value {
    node.wait_flow(
        &format!("of the call to {callee} with trace {trace}"),
        |f| f["dst"] == format!("function:{callee}") && f["trace"] == trace,
    )
}

#[test]
fn spoofed_peers_are_refused_at_the_door_and_recorded() {
    let (cluster, _) = Cluster::shop(vec![NatsServer::start()]);
    let pay1 = cluster.node("pay-1");

    // edge-1's own certificate, speaking for storefront, which edge-1 hosts: allowed.
    let edge_cert = Peer::with_certificate(&cluster.tls_dir("edge-1"));
    let legit = "000000000000a001";
    let answer = call_mesh(
        &edge_cert,
        pay1,
        "checkout",
        Some("function:storefront"),
        legit,
    );
    let answer = answer.unwrap();
    assert_eq!(answer.status, 200, "{answer:?}");
    let body: Value = serde_json::from_str(&answer.body).unwrap();
    assert_eq!(body["caller"], "function:storefront", "{body}");
    let allowed = record(pay1, "checkout", legit);
    assert_eq!(allowed["verdict"], "allow", "{allowed}");
    assert_eq!(allowed["peer"], "edge-1", "{allowed}");

    // Refused by the policy after the handshake: (peer certificate, caller named, callee, trace,
    // what the refusal says).
    let other_domain = cluster.scratch("other-domain");
    issue_raw(
        &cluster,
        "spiffe://other.example/node/edge-1",
        1,
        &other_domain,
    );
    let intruder = cluster.tls_dir("intruder");
    let pay2_cert = cluster.tls_dir("pay-2");
    let refused: [(&Peer, Option<&str>, &str, &str, &str); 5] = [
        // pay-2's certificate speaking for storefront, which pay-2 does not host.
        (
            &Peer::with_certificate(&pay2_cert),
            Some("function:storefront"),
            "checkout",
            "000000000000b001",
            "does not place on it (spoofing attempt)",
        ),
        // No caller named at all.
        (
            &edge_cert,
            None,
            "checkout",
            "000000000000b002",
            "spoofing attempt",
        ),
        // A callee pay-1 does not host.
        (
            &edge_cert,
            Some("function:storefront"),
            "catalog",
            "000000000000b003",
            "`function:catalog` does not run on node `pay-1`",
        ),
        // A certificate of the same CA for another trust domain.
        (
            &Peer::with_certificate(&other_domain),
            Some("function:storefront"),
            "checkout",
            "000000000000b004",
            "is not in trust domain `shop.example`",
        ),
        // A certificate of the same CA for a node the cluster does not have.
        (
            &Peer::with_certificate(&intruder),
            Some("function:storefront"),
            "checkout",
            "000000000000b005",
            "node `intruder` is not a node of this revision's cluster",
        ),
    ];
    for (peer, caller, callee, trace, why) in refused {
        let answer = call_mesh(peer, pay1, callee, caller, trace).unwrap();
        assert_eq!(answer.status, 403, "{trace}: {answer:?}");
        let reason = answer.deny_reason.unwrap_or_default();
        assert!(reason.contains(why), "{trace}: {reason}");
        let flow = record(pay1, callee, trace);
        assert_eq!(flow["verdict"], "deny", "{flow}");
        assert_eq!(flow["node"], "pay-1", "{flow}");
        assert!(flow["reason"].as_str().unwrap().contains(why), "{flow}");
    }
    let spoof = record(pay1, "checkout", "000000000000b001");
    assert_eq!(
        spoof["peer"], "pay-2",
        "the peer is who its certificate says: {spoof}"
    );
    assert_eq!(spoof["src"], "function:storefront", "{spoof}");

    // Refused by the handshake: no certificate, one from another CA, an expired one.
    let other_ca = cluster.scratch("other-ca");
    let (ok, _, err) = common::septa(&[
        "ca",
        "init",
        other_ca.to_str().unwrap(),
        "--trust-domain",
        "shop.example",
    ]);
    assert!(ok, "{err}");
    let foreign = cluster.scratch("foreign");
    let (ok, _, err) = common::septa(&[
        "ca",
        "issue",
        other_ca.to_str().unwrap(),
        "--node",
        "edge-1",
        "--out",
        foreign.to_str().unwrap(),
    ]);
    assert!(ok, "{err}");
    let expired = cluster.scratch("expired");
    issue_raw(&cluster, "spiffe://shop.example/node/edge-1", -1, &expired);
    let at_the_door = [
        (
            "no certificate",
            Peer::without_certificate(),
            "peer sent no certificates",
        ),
        (
            "another CA",
            Peer::with_certificate(&foreign),
            "invalid peer certificate",
        ),
        (
            "expired",
            Peer::with_certificate(&expired),
            "certificate expired",
        ),
    ];
    for (n, (what, peer, why)) in at_the_door.iter().enumerate() {
        let answer = call_mesh(
            peer,
            pay1,
            "checkout",
            Some("function:storefront"),
            "000000000000c001",
        );
        assert!(answer.is_err(), "{what}: {answer:?}");
        let refusals = pay1.wait_flows("of refused handshakes", n + 1, |f| {
            f["reason"]
                .as_str()
                .is_some_and(|r| r.contains("tls handshake failed"))
        });
        let last = refusals.last().unwrap();
        assert_eq!(last["verdict"], "deny", "{what}: {last}");
        assert_eq!(last["dst"], "node:pay-1", "{what}: {last}");
        assert!(
            last["reason"].as_str().unwrap().contains(why),
            "{what}: {last}"
        );
        assert!(
            last["src"].as_str().unwrap().starts_with("peer:127.0.0.1:"),
            "{what}: {last}"
        );
    }

    // A client of the gateway cannot name the caller either: the host sets it.
    let edge = cluster.node("edge-1");
    let forged = edge.request(
        "POST",
        "/api/checkout",
        &[
            ("content-type", "application/json"),
            ("septa-caller", "function:ledger"),
        ],
        r#"{"amount_cents":1}"#,
    );
    assert_charged(&forged);

    // No refused call reached a guest: checkout's calls to the ledger carry the traces of
    // allowed charges only.
    let traces: Vec<String> = pay1
        .flows()
        .iter()
        .filter(|f| f["src"] == "function:checkout")
        .map(|f| f["trace"].as_str().unwrap_or_default().to_owned())
        .collect();
    assert!(traces.iter().any(|t| t == legit), "{traces:?}");
    assert!(
        traces
            .iter()
            .all(|t| !t.starts_with("000000000000b") && !t.starts_with("000000000000c")),
        "{traces:?}"
    );
}

/// Signs a certificate for `spiffe_id` with the cluster's CA, valid until `days` from now (in
/// the past when negative), into `out` as `septa ca issue` would lay it out.
fn issue_raw(cluster: &Cluster, spiffe_id: &str, days: i64, out: &std::path::Path) {
    use time::{Duration as Days, OffsetDateTime};
    let ca = septa_identity::ca::Ca::open(&cluster.ca()).unwrap();
    let now = OffsetDateTime::now_utc();
    let not_after = now + Days::days(days);
    let not_before = not_after.min(now) - Days::days(2);
    ca.issue(spiffe_id, not_before, not_after, out).unwrap();
}

#[test]
fn a_killed_replica_is_failed_over_and_what_it_alone_hosted_answers_503() {
    let (mut cluster, _) = Cluster::shop(vec![NatsServer::start()]);
    let url = cluster.nats_url(0);
    // Round robin: calls reach both payment nodes.
    let edge = cluster.node("edge-1");
    for _ in 0..4 {
        assert_charged(&checkout(edge));
    }
    let before = edge.wait_flows("of charges", 4, is_outbound_charge);
    for node in ["pay-1", "pay-2"] {
        assert!(
            before.iter().any(|f| f["peer"] == node),
            "{node} never answered: {before:#?}"
        );
    }

    cluster.node_mut("pay-1").kill();
    let edge = cluster.node("edge-1");
    for i in 0..6 {
        let started = Instant::now();
        let response = checkout(edge);
        assert_eq!(
            response.status, 200,
            "call {i} after the kill: {response:?}"
        );
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "call {i} after the kill took {:?}",
            started.elapsed()
        );
    }
    let after = edge.wait_flows("of charges", 10, is_outbound_charge);
    assert!(
        after[4..].iter().all(|f| f["peer"] == "pay-2"),
        "{:#?}",
        &after[4..]
    );

    // The carts' store lives on pay-1 alone: node unavailable, within the caller's deadline.
    let started = Instant::now();
    let cart = edge.request("POST", "/api/cart/c1", &[], r#"{"items":[]}"#);
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(cart.status, 502, "{cart:?}");
    assert_eq!(cart.json()["upstream_status"], 503, "{cart:?}");
    let unavailable = edge.wait_flow("of the call to the carts", |f| f["dst"] == "endpoint:carts");
    assert_eq!(unavailable["status"], 503, "{unavailable}");
    assert!(
        unavailable["error"]
            .as_str()
            .is_some_and(|e| e.contains("node unavailable")),
        "{unavailable}"
    );

    // pay-1 comes back on its address: calls reach it again.
    cluster.node_mut("pay-1").start(&url);
    let edge = cluster.node("edge-1");
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut n = 10;
    loop {
        assert_charged(&checkout(edge));
        n += 1;
        let flows = edge.wait_flows("of charges", n, is_outbound_charge);
        if flows[10..].iter().any(|f| f["peer"] == "pay-1") {
            break;
        }
        assert!(Instant::now() < deadline, "pay-1 never answered again");
    }
    let cart = edge.request("POST", "/api/cart/c1", &[], r#"{"items":[]}"#);
    assert_eq!(cart.status, 200, "{cart:?}");
}

#[test]
fn nodes_outlive_nats_and_a_restart_serves_the_saved_revision() {
    let (mut cluster, revision) = Cluster::shop(vec![NatsServer::start()]);
    let url = cluster.nats_url(0);
    cluster.nats[0].kill();
    assert_charged(&checkout(cluster.node("edge-1")));

    // edge-1 restarted while NATS is down: the saved revision, and the saved peers.
    let edge = cluster.node_mut("edge-1");
    edge.kill();
    edge.start(&url);
    assert!(
        edge.startup
            .iter()
            .any(|l| l.contains(&format!("serves revision {revision}"))),
        "{:?}",
        edge.startup
    );
    let edge = cluster.node("edge-1");
    assert_charged(&checkout(edge));
    let out = edge.wait_flow("of the charge", is_outbound_charge);
    assert_eq!(out["verdict"], "allow", "{out}");

    // A node with neither NATS nor a saved revision serves nothing rather than anything.
    let (status, stderr) = cluster.start_node_expecting_exit("pay-2", &url);
    assert!(!status.success(), "{stderr}");
    assert!(
        stderr.contains("cannot connect to NATS")
            && stderr.contains("refusing to start without a policy"),
        "{stderr}"
    );
}

#[test]
fn a_broken_revision_leaves_every_node_on_the_one_before() {
    let (cluster, good) = Cluster::shop(vec![NatsServer::start()]);
    cluster.wait_applied(&SHOP_NODES, &good);

    // A revision of another trust domain than the nodes' certificates: valid, so published, and
    // refused by every node.
    let other = shop_copy(
        &cluster.scratch("other-domain"),
        |m| {
            m.replace(
                "trust_domain = \"shop.example\"",
                "trust_domain = \"other.example\"",
            )
        },
        &[],
    );
    let other = cluster.publish(&other);
    let entries = refused_everywhere(&cluster, &good, &other);
    for e in &entries {
        let reason = e["failed"]["reason"].as_str().unwrap();
        assert!(reason.contains("`other.example`"), "{e}");
    }
    assert_charged(&checkout(cluster.node("edge-1")));

    // A revision whose components do not load, on every node.
    let broken = shop_copy(
        &cluster.scratch("broken"),
        |m| m.to_owned() + "\n# broken\n",
        &["storefront", "relay", "catalog", "checkout", "ledger"],
    );
    let broken = cluster.publish(&broken);
    refused_everywhere(&cluster, &good, &broken);
    assert_charged(&checkout(cluster.node("edge-1")));

    // The good revision published again is what every node serves, with nothing refused.
    let again = cluster.publish(&common::repo().join("examples/shop"));
    assert_eq!(again, good);
    cluster.wait_status("every node on the good revision, nothing refused", |s| {
        SHOP_NODES.iter().all(|n| {
            entry(s, n).is_some_and(|e| e["revision"] == good.as_str() && e.get("failed").is_none())
        })
    });
}

/// Waits until every node reports `refused` as failed while serving `serving`; returns the
/// entries.
fn refused_everywhere(cluster: &Cluster, serving: &str, refused: &str) -> Vec<Value> {
    let status = cluster.wait_status(&format!("every node refusing {refused}"), |s| {
        SHOP_NODES
            .iter()
            .all(|n| entry(s, n).is_some_and(|e| e["failed"]["revision"] == refused))
    });
    assert_eq!(status["revision"]["id"], refused, "{status:#}");
    SHOP_NODES
        .iter()
        .map(|n| {
            let e = entry(&status, n).unwrap();
            assert_eq!(e["revision"], serving, "{e}");
            assert!(!e["failed"]["reason"].as_str().unwrap().is_empty(), "{e}");
            e
        })
        .collect()
}

#[test]
fn a_renewed_certificate_is_taken_while_the_node_runs() {
    let (cluster, _) = Cluster::shop(vec![NatsServer::start()]);
    let edge = cluster.node("edge-1");
    assert_charged(&checkout(edge));
    let fingerprint = |status: &Value| entry(status, "edge-1").unwrap()["fingerprint"].clone();
    let before = fingerprint(&cluster.status());

    // Renewed as an operator would: new files written beside the old ones, renamed over them.
    let renewed = cluster.scratch("renewed-edge-1");
    issue_raw(&cluster, "spiffe://shop.example/node/edge-1", 30, &renewed);
    for file in ["ca.crt", "node.key", "node.crt"] {
        let staged = edge.tls_dir.join(format!(".{file}.new"));
        std::fs::copy(renewed.join(file), &staged).unwrap();
        std::fs::rename(&staged, edge.tls_dir.join(file)).unwrap();
    }
    let status = cluster.wait_status("edge-1 on its renewed certificate", |s| {
        fingerprint(s) != before
    });
    assert_ne!(fingerprint(&status), before);

    // Calls out of edge-1 go on, and so do calls into it: pay-1's gateway forwards `/` to
    // edge-1, whose listener now presents the renewed certificate.
    for _ in 0..4 {
        assert_charged(&checkout(edge));
    }
    let home = cluster.node("pay-1").request("GET", "/", &[], "");
    assert_eq!(home.status, 200, "{home:?}");
}

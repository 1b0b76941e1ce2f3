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

/// A node that advertises a name (`--mesh-advertise localhost:PORT`, as an exported Deployment
/// advertises its cell's Service) is registered under that name and reached through it: the
/// caller's node resolves the name when it dials, and still checks the callee's certificate.
#[test]
fn a_node_advertising_a_name_is_reached_through_it() {
    let mut cluster = Cluster::new(vec![NatsServer::start()]);
    let url = cluster.nats_url(0);
    let revision = cluster.publish(&common::repo().join("examples/shop"));
    cluster.start_node("edge-1", &url);
    for name in ["pay-1", "pay-2"] {
        cluster.start_node_advertising(name, &url, "localhost");
    }
    cluster.wait_peers_known(&SHOP_NODES);
    let entries = cluster.wait_applied(&SHOP_NODES, &revision);
    for (name, entry) in SHOP_NODES.iter().zip(&entries).skip(1) {
        let node = cluster.node(name);
        let advertised = format!("localhost:{}", node.mesh.port());
        assert_eq!(entry["mesh_address"], advertised.as_str(), "{entry}");
        assert!(
            node.startup
                .iter()
                .any(|l| l.contains(&format!("advertises its mesh as {advertised}"))),
            "{name}: {:?}",
            node.startup
        );
    }

    let edge = cluster.node("edge-1");
    for _ in 0..2 {
        assert_charged(&checkout(edge));
    }
    let outs = edge.wait_flows("of storefront calling checkout", 2, is_outbound_charge);
    for out in &outs {
        assert_eq!(out["verdict"], "allow", "{out}");
        assert_eq!(out["status"], 200, "{out}");
        let peer = out["peer"].as_str().unwrap();
        assert!(peer == "pay-1" || peer == "pay-2", "{out}");
    }
}

/// What `septa export kubernetes` deploys, run here without the cluster: the publish Job's
/// command on an application laid out as the image holds it (`/app`, its `septa.toml` replaced by
/// the ConfigMap's node manifest), then every cell's node as its Deployment names it, each
/// advertising its address by name as it advertises its Service. The cells serve the revision
/// the Job published, and a checkout crosses them.
#[test]
fn the_exported_cells_run_what_the_publish_job_publishes() {
    use septa_export::kubernetes::{self, Options, Profile};

    let policy = septa_policy::Policy::compile(
        septa_manifest::load(&common::repo().join("examples/shop")).unwrap(),
    )
    .unwrap();
    let options = Options {
        profile: Profile::Istio,
        granularity: septa_export::Granularity::Cell,
        image: "septa:test".to_owned(),
    };
    let export = kubernetes::export(&policy, &options).unwrap();
    let of_kind = |kind: &'static str| export.objects.iter().filter(move |o| o.kind() == kind);
    let args = |pod: &Value| -> Vec<String> {
        pod["spec"]["containers"][0]["args"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a.as_str().unwrap().to_owned())
            .collect()
    };
    let job = of_kind("Job").next().unwrap();
    assert_eq!(job.value["metadata"]["namespace"], "septa-system");
    let pod = &job.value["spec"]["template"];
    assert_eq!(args(pod), ["publish", "/app", "--nats", "$(SEPTA_NATS)"]);
    let mount = &pod["spec"]["containers"][0]["volumeMounts"][0];
    assert_eq!(mount["mountPath"], "/app/septa.toml", "{mount}");
    assert_eq!(mount["subPath"], "septa.toml", "{mount}");
    let config = of_kind("ConfigMap")
        .find(|o| o.value["metadata"]["namespace"] == "septa-system")
        .unwrap();
    assert_eq!(
        pod["spec"]["volumes"][0]["configMap"]["name"],
        config.value["metadata"]["name"]
    );
    let node_manifest = config.value["data"]["septa.toml"]
        .as_str()
        .unwrap()
        .to_owned();

    let mut cluster = Cluster::new(vec![NatsServer::start()]);
    let url = cluster.nats_url(0);
    let app = shop_copy(&cluster.scratch("app"), |_| node_manifest, &[]);
    let revision = cluster.publish(&app);
    let names: Vec<String> = of_kind("Deployment")
        .map(|d| {
            let args = args(&d.value["spec"]["template"]);
            args[args.iter().position(|a| a == "--name").unwrap() + 1].clone()
        })
        .collect();
    for name in &names {
        cluster.start_node_advertising(name, &url, "localhost");
    }
    let names: Vec<&str> = names.iter().map(String::as_str).collect();
    cluster.wait_peers_known(&names);
    cluster.wait_applied(&names, &revision);
    assert_charged(&checkout(cluster.node("edge-web")));
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

/// A callee on another node works no longer than its caller waits: the calling node sends what
/// the chain has left (`septa-deadline-ms`), and the callee's node stops the callee then, records
/// why, and frees its slot, however long the callee's own timeout.
#[test]
fn a_callee_on_another_node_stops_at_its_callers_deadline() {
    let mut cluster = Cluster::new(vec![NatsServer::start()]);
    let wasm = common::test_component;
    let app = cluster.scratch("deadline-app");
    std::fs::create_dir_all(&app).unwrap();
    for name in ["caller", "sleeper"] {
        std::fs::copy(wasm(name), app.join(format!("{name}.wasm"))).unwrap();
    }
    let manifest = String::from(
        "septa_manifest_version = 1\n[application]\nname = \"deadlines\"\n\
         [cluster]\ntrust_domain = \"shop.example\"\n\
         [node.edge-1]\nhosts = [\"function:waiter\"]\n\
         [node.pay-1]\nhosts = [\"function:slow\"]\n\
         [segment.lab]\nsubnets = { web = \"public\" }\n\
         [function.waiter]\nsource = \"caller.wasm\"\nplacement = \"lab/web\"\n\
         limits = { timeout_ms = 3000 }\n\
         [function.slow]\nsource = \"sleeper.wasm\"\nplacement = \"lab/web\"\n\
         limits = { timeout_ms = 60000, max_concurrency = 1 }\n\
         [[route]]\npath = \"/waiter/...\"\nfunction = \"waiter\"\n\
         [[route]]\npath = \"/slow/...\"\nfunction = \"slow\"\n\
         [[allow]]\nid = \"waiter-to-slow\"\nfrom = \"function:waiter\"\nto = \"function:slow\"\n",
    );
    std::fs::write(app.join("septa.toml"), manifest).unwrap();
    cluster.publish(&app);
    let url = cluster.nats_url(0);
    cluster.start_node("pay-1", &url);
    cluster.start_node("edge-1", &url);
    cluster.wait_peers_known(&["edge-1", "pay-1"]);
    let (edge, pay) = (cluster.node("edge-1"), cluster.node("pay-1"));

    let started = Instant::now();
    let target = common::encode("http://slow.internal/sleep");
    let waited = edge.request("GET", &format!("/waiter/?to={target}"), &[], "");
    assert_eq!(waited.status, 504, "{waited:?}");
    // pay-1 stopped `slow` at the caller's deadline (3 s, time enough to reach pay-1 on a
    // loaded machine), not at its own minute. Which end notices first is a race of a few
    // milliseconds: pay-1's own copy of the deadline (504), or edge-1 hanging up the stream.
    let ended = |f: &Value| {
        let error = f["error"].as_str().unwrap_or_default();
        error.contains("deadline passed") || error.contains("caller stopped waiting")
    };
    let stopped = pay.wait_flow("of the call to slow", |f| {
        f["kind"] == "mesh" && f["dst"] == "function:slow" && ended(f)
    });
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "slow ran on for {:?}",
        started.elapsed()
    );
    assert_eq!(stopped["peer"], "edge-1", "{stopped}");
    assert!(
        stopped["latency_us"].as_u64().unwrap() < 10_000_000,
        "{stopped}"
    );
    // Its only slot is free again: at once, or within the few milliseconds by which pay-1's copy
    // of the deadline trails edge-1's hanging up (never the minute `slow` asked for).
    let freed_by = Instant::now() + Duration::from_secs(3);
    loop {
        let free = pay.request("GET", "/slow/sleep?ms=1", &[], "");
        if free.status == 200 {
            break;
        }
        assert!(
            Instant::now() < freed_by,
            "slow's slot is still held: {free:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Anyone who reaches a node's mesh port can open connections and never start a handshake. A
/// node allowed 256 open files, flooded with 400 of them, still takes a real node's call at once,
/// still serves its gateway, and records the refused handshakes within a budget rather than one
/// line each.
#[test]
fn a_flood_of_unfinished_handshakes_leaves_the_node_serving() {
    let mut cluster = Cluster::new(vec![NatsServer::start()]);
    cluster.publish(&common::repo().join("examples/shop"));
    let url = cluster.nats_url(0);
    cluster.start_node_with_fd_limit("pay-1", &url, 256);
    cluster.start_node("pay-2", &url);
    cluster.start_node("edge-1", &url);
    cluster.wait_peers_known(&SHOP_NODES);
    let (edge, pay) = (cluster.node("edge-1"), cluster.node("pay-1"));

    let flood: Vec<std::net::TcpStream> = (0..400)
        .filter_map(|_| {
            std::net::TcpStream::connect_timeout(&pay.mesh, Duration::from_millis(50)).ok()
        })
        .collect();
    assert!(
        flood.len() >= 300,
        "only {} connections opened",
        flood.len()
    );
    std::thread::sleep(Duration::from_millis(200));

    // A node's call is taken at once, not after the flood's handshakes time out.
    let started = Instant::now();
    let peer = Peer::with_certificate(&edge.tls_dir);
    let answered = call_mesh(
        &peer,
        pay,
        "checkout",
        Some("function:storefront"),
        "00000000000d0001",
    );
    let took = started.elapsed();
    let answered = answered.expect("pay-1 takes edge-1's call during the flood");
    assert_eq!(answered.status, 200, "{answered:?}");
    assert!(took < Duration::from_secs(1), "the call took {took:?}");
    // The gateway shares the descriptors, and still serves.
    let home = pay.request("GET", "/", &[], "");
    assert_eq!(home.status, 200, "{home:?}");

    drop(flood);
    // The refused handshakes are recorded, within the budget.
    pay.wait_flow("of a refused handshake", |f| {
        f["reason"]
            .as_str()
            .is_some_and(|r| r.contains("tls handshake failed"))
    });
    std::thread::sleep(Duration::from_millis(500));
    let recorded = pay
        .flows()
        .iter()
        .filter(|f| {
            f["reason"]
                .as_str()
                .is_some_and(|r| r.contains("tls handshake failed"))
        })
        .count();
    assert!(recorded <= 100, "{recorded} records of refused handshakes");
}

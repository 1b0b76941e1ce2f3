//! Metrics from flow records: the exact lines a scrape shows, labels that only the policy can
//! name, capped series, histograms, and the gauges the host sets.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use septa_flows::{FlowKind, FlowLog, FlowObserver, FlowRecord, Verdict};
use septa_monitor::{GuestCpu, Metrics, ReloadOutcome, manifest_hash};
use septa_policy::Policy;

const MANIFEST: &str = r#"
septa_manifest_version = 1
[application]
name = "shop"
[segment.edge]
subnets = { web = "public" }
[segment.payments]
subnets = { app = "private" }
[segment.empty]
subnets = { app = "private" }
[function.storefront]
source = "storefront.wasm"
placement = "edge/web"
[function.checkout]
source = "checkout.wasm"
placement = "payments/app"
[[route]]
id = "api"
path = "/api/..."
function = "storefront"
[[allow]]
id = "storefront-to-checkout"
from = "function:storefront"
to = "function:checkout"
[[egress]]
id = "checkout-to-processor"
from = "function:checkout"
to = ["https://api.payments.example:443"]
"#;

fn policy() -> Policy {
    let manifest = septa_manifest::parse(Path::new("septa.toml"), MANIFEST).unwrap();
    Policy::compile(manifest).unwrap()
}

fn metrics() -> Metrics {
    let metrics = Metrics::new();
    metrics.load_policy(&policy(), manifest_hash(MANIFEST.as_bytes()));
    metrics
}

fn flow(kind: FlowKind, src: &str, dst: &str, verdict: Verdict) -> FlowRecord {
    let mut record = FlowRecord::new(kind, src, dst, verdict, "because");
    record.segment = Some("edge".to_owned());
    record.latency_us = 700;
    record
}

fn ingress(path: &str, status: u16) -> FlowRecord {
    let mut record = flow(
        FlowKind::Ingress,
        "gateway",
        "function:storefront",
        Verdict::Allow,
    );
    record.rule = Some("api".to_owned());
    record.route = Some("api".to_owned());
    record.path = Some(path.to_owned());
    record.status = Some(status);
    record
}

fn observe(metrics: &Metrics, records: Vec<FlowRecord>) {
    let batch: Vec<Arc<FlowRecord>> = records.into_iter().map(Arc::new).collect();
    metrics.observe(&batch);
}

fn lines(page: &str, prefix: &str) -> Vec<String> {
    page.lines()
        .filter(|l| l.starts_with(prefix))
        .map(str::to_owned)
        .collect()
}

#[test]
fn flows_are_counted_by_the_names_the_policy_gives_them() {
    let metrics = metrics();
    let mut mesh = flow(
        FlowKind::Mesh,
        "function:storefront",
        "function:checkout",
        Verdict::Allow,
    );
    mesh.rule = Some("storefront-to-checkout".to_owned());
    let denied = flow(
        FlowKind::Mesh,
        "function:storefront",
        "function:ledger",
        Verdict::Deny,
    );
    observe(
        &metrics,
        vec![ingress("/api/a", 200), ingress("/api/b", 200), mesh, denied],
    );
    let page = metrics.render();
    assert_eq!(
        lines(&page, "septa_flows_total"),
        [
            r#"septa_flows_total{kind="ingress",verdict="allow",rule="api",segment="edge",destination="function:storefront",route="api"} 2"#,
            r#"septa_flows_total{kind="mesh",verdict="allow",rule="storefront-to-checkout",segment="edge",destination="function:checkout",route=""} 1"#,
            r#"septa_flows_total{kind="mesh",verdict="deny",rule="",segment="edge",destination="unknown",route=""} 1"#,
        ]
    );
    assert_eq!(
        lines(&page, "septa_denials_total"),
        [r#"septa_denials_total{kind="mesh",segment="edge",destination="unknown"} 1"#]
    );
    assert!(page.contains("# TYPE septa_flows_total counter\n"));
    assert!(page.contains("# TYPE septa_flow_latency_seconds histogram\n"));
    assert!(
        !page.contains("/api/a"),
        "a request path became a label:\n{page}"
    );
}

#[test]
fn values_the_policy_does_not_name_cannot_make_new_series() {
    let metrics = metrics();
    let mut records = Vec::new();
    for i in 0..50 {
        let mut egress = flow(
            FlowKind::Egress,
            "function:checkout",
            &format!("https://attacker-{i}.example:443"),
            Verdict::Deny,
        );
        egress.rule = Some(format!("made-up-{i}"));
        egress.segment = Some(format!("segment-{i}"));
        records.push(egress);
    }
    let mut allowed = flow(
        FlowKind::Egress,
        "function:checkout",
        "https://api.payments.example:443",
        Verdict::Allow,
    );
    allowed.rule = Some("checkout-to-processor".to_owned());
    records.push(allowed);
    observe(&metrics, records);
    assert_eq!(
        lines(&metrics.render(), "septa_flows_total"),
        [
            r#"septa_flows_total{kind="egress",verdict="allow",rule="checkout-to-processor",segment="edge",destination="https://api.payments.example:443",route=""} 1"#,
            r#"septa_flows_total{kind="egress",verdict="deny",rule="other",segment="other",destination="external",route=""} 50"#,
        ]
    );
}

#[test]
fn a_full_family_drops_new_series_and_counts_them() {
    let metrics = Metrics::with_max_series(1);
    metrics.load_policy(&policy(), "hash");
    let mut denied = ingress("/nope", 404);
    denied.verdict = Verdict::Deny;
    observe(&metrics, vec![ingress("/api", 200), denied.clone(), denied]);
    let page = metrics.render();
    assert_eq!(lines(&page, "septa_flows_total").len(), 1);
    assert!(
        page.contains("septa_metrics_dropped_series_total{metric=\"septa_flows_total\"} 2\n"),
        "{page}"
    );
    // The denial family was empty, so its first series fit.
    assert!(
        page.contains("septa_metrics_dropped_series_total{metric=\"septa_denials_total\"} 0\n")
    );
}

#[test]
fn latency_is_a_cumulative_histogram_in_seconds() {
    let metrics = metrics();
    let mut records = Vec::new();
    for latency_us in [50, 100, 101, 3_000, 20_000_000] {
        let mut record = ingress("/api", 200);
        record.latency_us = latency_us;
        records.push(record);
    }
    observe(&metrics, records);
    let page = metrics.render();
    let series = |le: &str| {
        format!(
            r#"septa_flow_latency_seconds_bucket{{kind="ingress",destination="function:storefront",le="{le}"}}"#
        )
    };
    for (le, count) in [
        ("0.0001", 2),
        ("0.00025", 3),
        ("0.0025", 3),
        ("0.005", 4),
        ("10", 4),
        ("+Inf", 5),
    ] {
        assert!(
            page.contains(&format!("{} {count}\n", series(le))),
            "{le}:\n{page}"
        );
    }
    assert!(page.contains(
        "septa_flow_latency_seconds_sum{kind=\"ingress\",destination=\"function:storefront\"} 20.003251\n"
    ));
    assert!(page.contains(
        "septa_flow_latency_seconds_count{kind=\"ingress\",destination=\"function:storefront\"} 5\n"
    ));
}

#[test]
fn rate_limit_refusals_are_ingress_429s_by_route() {
    let metrics = metrics();
    let mut limited = ingress("/api", 429);
    limited.verdict = Verdict::Deny;
    let mut mesh_429 = flow(
        FlowKind::Mesh,
        "function:storefront",
        "function:checkout",
        Verdict::Allow,
    );
    mesh_429.status = Some(429);
    observe(&metrics, vec![limited.clone(), limited, mesh_429]);
    assert_eq!(
        lines(&metrics.render(), "septa_rate_limited_total"),
        [r#"septa_rate_limited_total{route="api"} 2"#]
    );
}

#[test]
fn the_host_sets_policy_reload_function_instance_and_flow_log_gauges() {
    let metrics = metrics();
    metrics.count_reload(ReloadOutcome::Failure);
    metrics.watch_instances(Box::new(|| {
        vec![("storefront".to_owned(), 3), ("checkout".to_owned(), 0)]
    }));
    metrics.watch_flow_log(FlowLog::disabled().stats());
    let page = metrics.render();
    let hash = manifest_hash(MANIFEST.as_bytes());
    assert_eq!(hash.len(), 64);
    assert!(page.contains(&format!(
        "septa_policy_info{{hash=\"{hash}\",application=\"shop\"}} 1\n"
    )));
    assert!(page.contains("septa_reloads_total{outcome=\"success\"} 0\n"));
    assert!(page.contains("septa_reloads_total{outcome=\"failure\"} 1\n"));
    assert_eq!(
        lines(&page, "septa_functions{"),
        [
            r#"septa_functions{segment="edge"} 1"#,
            r#"septa_functions{segment="empty"} 0"#,
            r#"septa_functions{segment="payments"} 1"#,
        ]
    );
    assert_eq!(
        lines(&page, "septa_function_instances_in_use{"),
        [
            r#"septa_function_instances_in_use{function="checkout"} 0"#,
            r#"septa_function_instances_in_use{function="storefront"} 3"#,
        ]
    );
    assert!(page.contains("septa_flow_log_backpressure_total 0\n"));
    assert!(page.contains("septa_flow_log_write_failures_total 0\n"));
    let loaded = metrics.loaded_policy().unwrap();
    assert_eq!((loaded.application.as_str(), loaded.functions), ("shop", 2));
}

#[test]
fn guest_cpu_is_read_at_scrape_by_segment_and_function() {
    let metrics = metrics();
    metrics.watch_guest_cpu(Box::new(|| {
        vec![
            GuestCpu {
                segment: "payments".to_owned(),
                function: "checkout".to_owned(),
                cpu: Duration::from_millis(1_500),
                waited: Duration::from_millis(250),
                preemptions: 12,
            },
            GuestCpu {
                segment: "edge".to_owned(),
                function: "storefront".to_owned(),
                cpu: Duration::from_micros(40),
                waited: Duration::ZERO,
                preemptions: 0,
            },
        ]
    }));
    let page = metrics.render();
    assert_eq!(
        lines(&page, "septa_cpu_seconds_total{"),
        [
            r#"septa_cpu_seconds_total{segment="edge",function="storefront"} 0.00004"#,
            r#"septa_cpu_seconds_total{segment="payments",function="checkout"} 1.5"#,
        ]
    );
    assert_eq!(
        lines(&page, "septa_cpu_wait_seconds_total{"),
        [
            r#"septa_cpu_wait_seconds_total{segment="edge",function="storefront"} 0"#,
            r#"septa_cpu_wait_seconds_total{segment="payments",function="checkout"} 0.25"#,
        ]
    );
    assert_eq!(
        lines(&page, "septa_preemptions_total{"),
        [
            r#"septa_preemptions_total{segment="edge",function="storefront"} 0"#,
            r#"septa_preemptions_total{segment="payments",function="checkout"} 12"#,
        ]
    );
    assert!(page.contains("# TYPE septa_cpu_seconds_total counter"));
}

#[test]
fn every_family_has_help_and_type_before_its_samples() {
    let metrics = metrics();
    observe(&metrics, vec![ingress("/api", 429)]);
    let page = metrics.render();
    let mut declared: Vec<String> = Vec::new();
    for line in page.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let name = rest.split(' ').next().unwrap();
            let help = format!("# HELP {name} ");
            assert!(page.contains(&help), "{name} has no HELP");
            declared.push(name.to_owned());
        } else if !line.starts_with('#') {
            let name = line.split(['{', ' ']).next().unwrap();
            let family = declared.last().unwrap();
            let base = ["_bucket", "_sum", "_count"]
                .iter()
                .find_map(|suffix| name.strip_suffix(suffix))
                .filter(|base| base == family)
                .unwrap_or(name);
            assert_eq!(base, family, "sample `{line}` outside its family");
        }
    }
}

#[test]
fn flows_with_another_node_are_counted_by_peer_and_outcome() {
    let text = format!(
        "{MANIFEST}\n[cluster]\ntrust_domain = \"shop.example\"\n[node.edge-1]\nhosts = [\"segment:edge\"]\n[node.pay-1]\nhosts = [\"segment:payments\"]\n"
    );
    let manifest = septa_manifest::parse(Path::new("septa.toml"), &text).unwrap();
    let metrics = Metrics::new();
    metrics.load_policy(
        &Policy::compile(manifest).unwrap(),
        manifest_hash(text.as_bytes()),
    );
    metrics.watch_peers(Box::new(|| vec![("pay-1".to_owned(), 3)]));
    let mesh = |peer: &str, verdict, status| {
        let mut record = flow(
            FlowKind::Mesh,
            "function:storefront",
            "function:checkout",
            verdict,
        );
        record.peer = Some(peer.to_owned());
        record.status = Some(status);
        record
    };
    let mut forwarded = ingress("/api/x", 200);
    forwarded.peer = Some("pay-1".to_owned());
    observe(
        &metrics,
        vec![
            mesh("pay-1", Verdict::Allow, 200),
            mesh("pay-1", Verdict::Allow, 503),
            mesh("pay-1", Verdict::Deny, 403),
            // A name the policy does not give a node cannot make a series of its own.
            mesh("intruder", Verdict::Deny, 403),
            forwarded,
            // Not a flow between nodes.
            ingress("/api/y", 200),
        ],
    );
    let page = metrics.render();
    assert_eq!(
        lines(&page, "septa_peer_flows_total"),
        [
            r#"septa_peer_flows_total{peer="other",kind="mesh",outcome="denied"} 1"#,
            r#"septa_peer_flows_total{peer="pay-1",kind="ingress",outcome="allowed"} 1"#,
            r#"septa_peer_flows_total{peer="pay-1",kind="mesh",outcome="allowed"} 1"#,
            r#"septa_peer_flows_total{peer="pay-1",kind="mesh",outcome="denied"} 1"#,
            r#"septa_peer_flows_total{peer="pay-1",kind="mesh",outcome="failed"} 1"#,
        ]
    );
    assert!(
        page.contains(r#"septa_peer_latency_seconds_count{peer="pay-1"} 4"#),
        "{page}"
    );
    assert!(page.contains(r#"septa_peer_latency_seconds_bucket{peer="pay-1",le="0.001"} 4"#));
    assert!(page.contains(r#"septa_peer_unreachable_total{peer="pay-1"} 3"#));
}

//! `septa probe` against a running shop: full agreement with its own manifest; against a
//! manifest one rule apart, exactly the pair that rule changes, and a non-zero exit. The probe
//! grant: bearer token only, ends when revoked, and probes deliver nothing.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::io::Write;
use std::net::TcpListener;
use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use common::{Septa, case, repo, send_to};
use serde_json::{Value, json};

const TOKEN: &str = "test-admin-token-probe-0123456789";

fn shop() -> Septa {
    Septa::start_with_env(
        &repo().join("examples/shop"),
        &["--admin", "127.0.0.1:0", "--no-watch"],
        &[("SEPTA_ADMIN_TOKEN", TOKEN)],
    )
}

/// The shop's manifest with every relative file made absolute, so a copy elsewhere loads the
/// same components and keys.
fn shop_manifest() -> String {
    let dir = repo().join("examples/shop");
    let text = std::fs::read_to_string(dir.join("septa.toml")).unwrap();
    let mut out = String::new();
    for line in text.lines() {
        let absolute = ["source = \"", "jwks_file = \"", "keys_file = \""]
            .iter()
            .find_map(|key| {
                let rest = line.strip_prefix(key)?;
                (!rest.starts_with('/')).then(|| format!("{key}{}/{rest}", dir.display()))
            });
        out.push_str(absolute.as_deref().unwrap_or(line));
        out.push('\n');
    }
    out
}

/// Runs `septa probe DIR --admin ADDR --format json`; (exit code, report).
fn probe(dir: &Path, septa: &Septa) -> (i32, Value) {
    let output = Command::new(env!("CARGO_BIN_EXE_septa"))
        .arg("probe")
        .arg(dir)
        .args([
            "--admin",
            &septa.admin.unwrap().to_string(),
            "--format",
            "json",
        ])
        .env("SEPTA_ADMIN_TOKEN", TOKEN)
        .env_remove("RUST_BACKTRACE")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let report = serde_json::from_str(&stdout).unwrap_or_else(|e| {
        panic!(
            "probe printed no JSON ({e}): {stdout}\n{}",
            String::from_utf8_lossy(&output.stderr)
        )
    });
    (output.status.code().unwrap(), report)
}

fn disagreeing(report: &Value) -> Vec<(String, String)> {
    report["pairs"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["agree"] == false)
        .map(|p| {
            (
                p["from"].as_str().unwrap().to_owned(),
                p["to"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

#[test]
fn the_shop_agrees_with_itself_and_one_rule_apart_shows_exactly_its_pair() {
    let septa = shop();

    let (code, report) = probe(&repo().join("examples/shop"), &septa);
    assert_eq!(
        disagreeing(&report),
        Vec::<(String, String)>::new(),
        "{report:#}"
    );
    assert_eq!(code, 0, "{report:#}");
    let pairs = report["pairs"].as_array().unwrap();
    // The gateway, five functions and one endpoint: every ordered pair of distinct places.
    assert_eq!(pairs.len(), 6 * 6, "{report:#}");
    let pair = |from: &str, to: &str| {
        pairs
            .iter()
            .find(|p| p["from"] == from && p["to"] == to)
            .unwrap_or_else(|| panic!("no pair {from} -> {to}"))
            .clone()
    };
    let allowed = pair("function:storefront", "function:checkout");
    assert_eq!(allowed["observed"], "allow", "{allowed}");
    assert_eq!(allowed["observed_rules"], json!(["storefront-to-checkout"]));
    let denied = pair("function:relay", "function:ledger");
    assert_eq!(denied["observed"], "deny", "{denied}");
    assert_eq!(denied["predicted"], "deny", "{denied}");
    let public = pair("gateway", "function:checkout");
    assert_eq!(public["observed"], "deny", "{public}");

    // One rule fewer in the manifest: the running septa still allows it.
    let without = tempfile::tempdir().unwrap();
    let rule = "[[allow]]\nid = \"storefront-to-checkout\"\nfrom = \"function:storefront\"\nto = \"group:pci-app\"\nmethods = [\"POST\"]\npaths = [\"/charge\"]\n";
    let manifest = shop_manifest();
    assert!(manifest.contains(rule));
    std::fs::write(
        without.path().join("septa.toml"),
        manifest.replace(rule, ""),
    )
    .unwrap();
    let (code, report) = probe(without.path(), &septa);
    assert_eq!(code, 1, "{report:#}");
    assert_eq!(
        disagreeing(&report),
        [(
            "function:storefront".to_owned(),
            "function:checkout".to_owned()
        )],
        "{report:#}"
    );

    // One rule more: the running septa denies it.
    let with = tempfile::tempdir().unwrap();
    let extra = "\n[[allow]]\nid = \"relay-to-ledger\"\nfrom = \"function:relay\"\nto = \"function:ledger\"\nmethods = [\"GET\"]\npaths = [\"/entries\"]\n";
    std::fs::write(with.path().join("septa.toml"), manifest + extra).unwrap();
    let (code, report) = probe(with.path(), &septa);
    assert_eq!(code, 1, "{report:#}");
    assert_eq!(
        disagreeing(&report),
        [("function:relay".to_owned(), "function:ledger".to_owned())],
        "{report:#}"
    );

    // Every probe flow is marked, and none was delivered: no flow but the probes' own.
    let flows = septa.stop();
    assert!(!flows.is_empty());
    let unmarked: Vec<_> = flows.iter().filter(|f| f["probe"] != true).collect();
    assert!(
        unmarked.is_empty(),
        "flows the probe did not make: {unmarked:#?}"
    );
}

fn admin(
    septa: &Septa,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> (u16, Value) {
    let mut raw = format!(
        "{method} {path} HTTP/1.1\r\nhost: localhost\r\nconnection: close\r\ncontent-length: {}\r\n",
        body.len()
    );
    for (name, value) in headers {
        raw.push_str(&format!("{name}: {value}\r\n"));
    }
    raw.push_str("\r\n");
    raw.push_str(body);
    let response = send_to(septa.admin.unwrap(), &raw);
    let json = serde_json::from_str(&response.body).unwrap_or(Value::Null);
    (response.status, json)
}

#[test]
fn a_probe_needs_the_token_and_a_live_grant_and_delivers_nothing() {
    let septa = shop();
    let bearer = format!("Bearer {TOKEN}");
    let auth = ("authorization", bearer.as_str());
    let put = r#"[{"from":"function:storefront","to":"endpoint:carts","method":"PUT","path":"/kv/carts/probe"}]"#;

    assert_eq!(admin(&septa, "POST", "/probe/grant", &[], "").0, 401);
    assert_eq!(
        admin(
            &septa,
            "POST",
            "/probe/grant",
            &[("authorization", "Bearer wrong")],
            ""
        )
        .0,
        401
    );
    assert_eq!(admin(&septa, "POST", "/probe", &[auth], put).0, 403);
    assert_eq!(
        admin(
            &septa,
            "POST",
            "/probe",
            &[auth, ("septa-probe-grant", "made-up")],
            put
        )
        .0,
        403
    );
    assert_eq!(
        admin(&septa, "POST", "/probe/grant?ttl_s=0", &[auth], "").0,
        400
    );
    assert_eq!(
        admin(&septa, "POST", "/probe/grant?ttl_s=601", &[auth], "").0,
        400
    );
    // The gateway has no probe.
    assert_eq!(septa.request("POST", "/probe/grant", &[], "").status, 404);

    let (status, grant) = admin(&septa, "POST", "/probe/grant?ttl_s=30", &[auth], "");
    assert_eq!(status, 201, "{grant}");
    let id = grant["grant"].as_str().unwrap().to_owned();
    let with_grant = [auth, ("septa-probe-grant", id.as_str())];
    let (status, report) = admin(&septa, "POST", "/probe", &with_grant, put);
    assert_eq!(status, 200, "{report}");
    assert_eq!(report["outcomes"][0]["verdict"], "allow", "{report}");
    assert_eq!(
        report["outcomes"][0]["rule"], "storefront-to-carts",
        "{report}"
    );
    let bad = r#"[{"from":"function:storefront","to":"carts","method":"GET","path":"/"}]"#;
    assert_eq!(admin(&septa, "POST", "/probe", &with_grant, bad).0, 400);
    assert_eq!(
        admin(&septa, "POST", "/probe", &with_grant, "not json").0,
        400
    );

    // The PUT was decided, not delivered: the cart is not there.
    let fetch = "[{\"from\":\"function:storefront\",\"to\":\"endpoint:carts\",\"method\":\"GET\",\"path\":\"/kv/carts/probe\"}]";
    let (_, report) = admin(&septa, "POST", "/probe", &with_grant, fetch);
    assert_eq!(report["outcomes"][0]["verdict"], "allow", "{report}");
    let cart = septa.get("/api/cart/probe");
    assert_eq!(cart.status, 404, "{cart:?}");

    assert_eq!(
        admin(&septa, "DELETE", "/probe/grant", &with_grant, "").0,
        200
    );
    assert_eq!(admin(&septa, "POST", "/probe", &with_grant, put).0, 403);
    assert_eq!(
        admin(&septa, "DELETE", "/probe/grant", &with_grant, "").0,
        403
    );
}

/// A loopback listener that counts every connection it accepts.
fn counting_listener() -> (u16, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let hits = Arc::new(AtomicUsize::new(0));
    let counter = hits.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            counter.fetch_add(1, Ordering::SeqCst);
            if let Ok(mut stream) = stream {
                let _ = stream.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n");
            }
        }
    });
    (port, hits)
}

#[test]
fn a_probe_naming_a_destination_outside_the_platform_sends_nothing() {
    let (port, hits) = counting_listener();
    // `caller` may reach 127.0.0.1 (its rule, and a relaxed ceiling): a probe as `caller` must
    // still not reach it.
    let septa = Septa::start_with_env(
        &case("egress-relaxed"),
        &["--admin", "127.0.0.1:0", "--no-watch"],
        &[("SEPTA_ADMIN_TOKEN", TOKEN)],
    );
    let bearer = format!("Bearer {TOKEN}");
    let auth = ("authorization", bearer.as_str());
    let (status, grant) = admin(&septa, "POST", "/probe/grant?ttl_s=30", &[auth], "");
    assert_eq!(status, 201, "{grant}");
    let id = grant["grant"].as_str().unwrap().to_owned();
    let with_grant = [auth, ("septa-probe-grant", id.as_str())];

    let fine =
        json!({"from": "function:caller", "to": "function:echo", "method": "GET", "path": "/"});
    for to in [
        format!("function:127.0.0.1:{port}/x?"),
        format!("endpoint:127.0.0.1:{port}/"),
        format!("function:localhost:{port}#"),
        format!("function:user@127.0.0.1:{port}/"),
        "function:echo.internal@127.0.0.1".to_owned(),
    ] {
        let outside = json!({"from": "function:caller", "to": to, "method": "GET", "path": "/"});
        // Alone, and after an attempt that is fine: the batch is refused before anything runs.
        for batch in [json!([outside]), json!([fine, outside])] {
            let (status, answer) = admin(&septa, "POST", "/probe", &with_grant, &batch.to_string());
            assert_eq!(status, 400, "{to}: {answer}");
            assert!(
                answer.to_string().contains("never leaves the platform"),
                "{to}: {answer}"
            );
        }
    }
    let (status, report) = admin(
        &septa,
        "POST",
        "/probe",
        &with_grant,
        &json!([fine]).to_string(),
    );
    assert_eq!(status, 200, "{report}");
    assert_eq!(report["outcomes"][0]["verdict"], "deny", "{report}");
    std::thread::sleep(std::time::Duration::from_millis(200));
    assert_eq!(
        hits.load(Ordering::SeqCst),
        0,
        "a probe connected to the listener"
    );
    let flows = septa.stop();
    let egress: Vec<_> = flows.iter().filter(|f| f["kind"] == "egress").collect();
    assert!(egress.is_empty(), "{egress:#?}");
    // Only the one good attempt ran.
    assert_eq!(flows.len(), 1, "{flows:#?}");
}

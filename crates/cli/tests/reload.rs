//! Hot reload, end to end: the manifest changes twenty times under load, some versions valid and
//! some not; no request fails because of it, no request is decided by a mix of policies, and an
//! invalid version never decides anything. Reloads come from `POST /reload`, `SIGHUP` and the
//! file watcher; rate-limit buckets survive a reload that does not change their limit.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{Connection, Septa, build_components};
use serde_json::Value;

const TOKEN: &str = "test-admin-token-reload-0123456789";

fn component(name: &str) -> String {
    let path = common::test_component(name);
    path.display().to_string()
}

/// A valid manifest, version `n`: the caller may call echo under rule `caller-to-echo-vN`, and
/// a route that exists only in this version comes and goes.
fn valid(n: usize) -> String {
    format!(
        r#"septa_manifest_version = 1
[application]
name = "reload"
[segment.edge]
subnets = {{ web = "public" }}
[function.caller]
source = "{caller}"
placement = "edge/web"
[function.echo]
source = "{echo}"
placement = "edge/web"
[[route]]
id = "call"
path = "/call/..."
function = "caller"
[[route]]
id = "extra-v{n}"
path = "/extra-v{n}/..."
function = "echo"
[[allow]]
id = "caller-to-echo-v{n}"
from = "function:caller"
to = "function:echo"
methods = ["GET"]
paths = ["/v/..."]
"#,
        caller = component("caller"),
        echo = component("echo"),
    )
}

/// An invalid manifest of kind `kind`, each with a rule that would show in the flows had it
/// been applied, and what its refusal must mention.
fn invalid(kind: usize) -> (String, &'static str) {
    let leak = "[[allow]]\nid = \"caller-to-echo-bad\"\nfrom = \"function:caller\"\nto = \"function:echo\"\n";
    match kind % 4 {
        0 => (format!("{}{leak}[[allow]\n", valid(99)), "septa.toml:"),
        1 => (
            format!(
                "{}{leak}[[allow]]\nid = \"to-nowhere\"\nfrom = \"function:caller\"\nto = \"function:nosuch\"\n",
                valid(98)
            ),
            "nosuch",
        ),
        2 => (
            format!(
                "{}{leak}[[invariant]]\nid = \"echo-unreachable\"\ndeny_path = {{ from = \"gateway\", to = \"function:echo\" }}\n",
                valid(97)
            ),
            "echo-unreachable",
        ),
        _ => (
            valid(96).replace(&component("caller"), "/nonexistent/caller.wasm") + leak,
            "/nonexistent/caller.wasm",
        ),
    }
}

fn revision(text: &str) -> String {
    let digest = ring::digest::digest(&ring::digest::SHA256, text.as_bytes());
    digest.as_ref()[..6]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn start(app: &Path, extra: &[&str]) -> Septa {
    let mut args = vec!["--admin", "127.0.0.1:0"];
    args.extend_from_slice(extra);
    Septa::start_with_env(app, &args, &[("SEPTA_ADMIN_TOKEN", TOKEN)])
}

/// Polls `GET /reload` until the last attempt read `text`, and returns it.
fn attempt_for(septa: &Septa, text: &str) -> Value {
    let wanted = revision(text);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let last = septa.admin_get("/reload", Some(TOKEN)).json();
        let read = last["attempted_hash"].as_str().unwrap_or_default();
        if read.starts_with(&wanted) {
            return last;
        }
        assert!(
            Instant::now() < deadline,
            "no reload attempt of revision {wanted}; last: {last}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn twenty_changes_under_load_fail_no_request_and_never_mix_policies() {
    build_components();
    let app = tempfile::tempdir().unwrap();
    let manifest = app.path().join("septa.toml");
    std::fs::write(&manifest, valid(0)).unwrap();
    let septa = start(app.path(), &["--no-watch"]);

    // The load: two clients on keep-alive connections, each request a gateway → caller → echo
    // chain, until the changes are done.
    let stop = Arc::new(AtomicBool::new(false));
    let sent = Arc::new(AtomicUsize::new(0));
    let failures = Arc::new(Mutex::new(Vec::new()));
    let clients: Vec<_> = (0..2)
        .map(|_| {
            let (stop, sent, failures) = (stop.clone(), sent.clone(), failures.clone());
            let addr = septa.addr;
            std::thread::spawn(move || {
                let mut connection = Connection::open(addr);
                let deadline = Instant::now() + Duration::from_secs(120);
                while !stop.load(Ordering::Relaxed) && Instant::now() < deadline {
                    let (status, body) =
                        connection.get_with_body("/call/?to=http://echo.internal/v/ping", &[]);
                    sent.fetch_add(1, Ordering::Relaxed);
                    let relayed: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
                    if status != 200 || relayed["status"] != 200 || relayed["denied"] != false {
                        failures.lock().unwrap().push(format!("{status} {body}"));
                    }
                }
            })
        })
        .collect();

    let mut applied = vec![valid(0)];
    let mut refused = Vec::new();
    for change in 1..=20 {
        let before = sent.load(Ordering::Relaxed);
        let (text, must_mention) = if change % 4 == 3 {
            let (text, mention) = invalid(change / 4);
            (text, Some(mention))
        } else {
            (valid(change), None)
        };
        std::fs::write(&manifest, &text).unwrap();
        let attempt = if change % 5 == 0 {
            septa.signal("HUP");
            let attempt = attempt_for(&septa, &text);
            assert_eq!(attempt["trigger"], "signal", "{attempt}");
            attempt
        } else {
            let response = septa.admin_request("POST", "/reload", Some(TOKEN));
            let attempt = response.json();
            let expected = if must_mention.is_some() { 422 } else { 200 };
            assert_eq!(response.status, expected, "change {change}: {attempt}");
            assert_eq!(attempt["trigger"], "admin", "{attempt}");
            attempt
        };
        let message = attempt["message"].as_str().unwrap();
        match must_mention {
            Some(mention) => {
                assert_eq!(attempt["applied"], false, "change {change}: {attempt}");
                assert!(
                    message.contains(mention),
                    "change {change}: the refusal should mention `{mention}`: {message}"
                );
                assert!(
                    attempt["policy_hash"]
                        .as_str()
                        .unwrap()
                        .starts_with(&revision(applied.last().unwrap())),
                    "a refused reload keeps the old policy: {attempt}"
                );
                refused.push(text);
            }
            None => {
                assert_eq!(attempt["applied"], true, "change {change}: {attempt}");
                assert!(message.contains("1 from cache") || message.contains("2 from cache"));
                applied.push(text);
            }
        }
        // Let some requests run on each version before the next change.
        let deadline = Instant::now() + Duration::from_secs(10);
        while sent.load(Ordering::Relaxed) < before + 5 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
    }
    stop.store(true, Ordering::Relaxed);
    for client in clients {
        client.join().unwrap();
    }
    let failures = failures.lock().unwrap();
    let total = sent.load(Ordering::Relaxed);
    assert!(
        failures.is_empty(),
        "{} of {total} requests failed during reloads: {:#?}",
        failures.len(),
        &failures[..failures.len().min(5)]
    );
    assert!(total >= 100, "only {total} requests were sent");
    assert_eq!((applied.len(), refused.len()), (16, 5));

    let health = septa.admin_get("/healthz", Some(TOKEN)).json();
    assert_eq!(
        health["policy_hash"].as_str().unwrap()[..12],
        revision(applied.last().unwrap())
    );
    let metrics = septa.admin_get("/metrics", Some(TOKEN)).body;
    assert!(metrics.contains("septa_reloads_total{outcome=\"success\"} 15"));
    assert!(metrics.contains("septa_reloads_total{outcome=\"failure\"} 5"));

    // The flow log: which policy decided each flow, and the flows of each request together.
    let flows = septa.stop();
    let version_of: HashMap<String, usize> = applied
        .iter()
        .map(|text| {
            let n = text
                .split("id = \"caller-to-echo-v")
                .nth(1)
                .and_then(|rest| rest.split('"').next())
                .unwrap()
                .parse()
                .unwrap();
            (revision(text), n)
        })
        .collect();
    let never: BTreeSet<String> = refused.iter().map(|t| revision(t)).collect();
    let mut chains: BTreeMap<String, Vec<&Value>> = BTreeMap::new();
    for flow in &flows {
        let policy = flow["policy"].as_str().unwrap_or_default();
        assert!(
            !never.contains(policy),
            "a refused version decided a flow: {flow}"
        );
        assert!(
            version_of.contains_key(policy),
            "a flow names no applied policy: {flow}"
        );
        assert_ne!(flow["rule"], "caller-to-echo-bad", "{flow}");
        chains
            .entry(flow["trace"].as_str().unwrap().to_owned())
            .or_default()
            .push(flow);
    }
    let mut versions_seen = BTreeSet::new();
    for (trace, chain) in &chains {
        let ingress: Vec<_> = chain.iter().filter(|f| f["kind"] == "ingress").collect();
        let mesh: Vec<_> = chain.iter().filter(|f| f["kind"] == "mesh").collect();
        assert_eq!(
            (ingress.len(), mesh.len()),
            (1, 1),
            "trace {trace}: {chain:#?}"
        );
        let (ingress, mesh) = (ingress[0], mesh[0]);
        assert_eq!(
            ingress["policy"], mesh["policy"],
            "trace {trace}: a request decided by two policies:\n{ingress}\n{mesh}"
        );
        let version = version_of[ingress["policy"].as_str().unwrap()];
        assert_eq!(mesh["rule"], format!("caller-to-echo-v{version}"), "{mesh}");
        assert_eq!(mesh["verdict"], "allow", "{mesh}");
        assert_eq!(ingress["status"], 200, "{ingress}");
        versions_seen.insert(version);
    }
    assert_eq!(chains.len(), total, "one chain of flows per request");
    assert!(
        versions_seen.len() >= 10,
        "requests ran on only {} of 16 versions: {versions_seen:?}",
        versions_seen.len()
    );
}

#[test]
fn a_changed_file_is_reloaded_and_a_broken_one_is_refused_while_the_old_policy_serves() {
    build_components();
    let app = tempfile::tempdir().unwrap();
    let manifest = app.path().join("septa.toml");
    std::fs::write(&manifest, valid(1)).unwrap();
    let septa = start(app.path(), &[]);
    assert_eq!(septa.get("/extra-v1/").status, 200);

    std::fs::write(&manifest, valid(2)).unwrap();
    let attempt = attempt_for(&septa, &valid(2));
    assert_eq!(attempt["trigger"], "file_change", "{attempt}");
    assert_eq!(attempt["applied"], true, "{attempt}");
    assert_eq!(attempt["generation"], 2, "{attempt}");
    assert_eq!(septa.get("/extra-v1/").status, 404);
    assert_eq!(septa.get("/extra-v2/").status, 200);

    let (broken, mention) = invalid(1);
    std::fs::write(&manifest, &broken).unwrap();
    let attempt = attempt_for(&septa, &broken);
    assert_eq!(attempt["trigger"], "file_change", "{attempt}");
    assert_eq!(attempt["applied"], false, "{attempt}");
    assert_eq!(attempt["generation"], 2, "{attempt}");
    assert!(attempt["message"].as_str().unwrap().contains(mention));
    // The old policy still serves, and the broken file is not tried again and again.
    assert_eq!(septa.get("/extra-v2/").status, 200);
    let relayed = septa.get("/call/?to=http://echo.internal/v/ping").json();
    assert_eq!(relayed["status"], 200, "{relayed}");
    std::thread::sleep(Duration::from_millis(800));
    let metrics = septa.admin_get("/metrics", Some(TOKEN)).body;
    assert!(
        metrics.contains("septa_reloads_total{outcome=\"failure\"} 1"),
        "{metrics}"
    );
    let flows = septa.stop();
    let mesh = flows.iter().rev().find(|f| f["kind"] == "mesh").unwrap();
    assert_eq!(mesh["rule"], "caller-to-echo-v2", "{mesh}");
}

#[test]
fn reloading_needs_the_admin_token_and_the_gateway_has_no_reload() {
    build_components();
    let app = tempfile::tempdir().unwrap();
    let manifest = app.path().join("septa.toml");
    std::fs::write(&manifest, valid(1)).unwrap();
    let septa = start(app.path(), &["--no-watch"]);
    std::fs::write(&manifest, valid(2)).unwrap();

    let refused = septa.admin_request("POST", "/reload", None);
    assert_eq!(refused.status, 401, "{refused:?}");
    let refused = septa.admin_request("POST", "/reload", Some("not-the-token"));
    assert_eq!(refused.status, 401, "{refused:?}");
    let on_gateway = septa.request("POST", "/reload", &[], "");
    assert_eq!(on_gateway.status, 404, "{on_gateway:?}");
    // None of them reloaded anything.
    assert_eq!(septa.get("/extra-v1/").status, 200);
    assert_eq!(septa.get("/extra-v2/").status, 404);
    let last = septa.admin_get("/reload", Some(TOKEN)).json();
    assert_eq!(last["last_reload"], Value::Null, "{last}");
    let wrong_method = septa.admin_request("DELETE", "/reload", Some(TOKEN));
    assert_eq!(wrong_method.status, 405, "{wrong_method:?}");

    let reloaded = septa.admin_request("POST", "/reload", Some(TOKEN));
    assert_eq!(reloaded.status, 200, "{reloaded:?}");
    assert_eq!(septa.get("/extra-v2/").status, 200);
}

#[test]
fn rate_limit_buckets_survive_a_reload_unless_their_limit_changes() {
    build_components();
    let app = tempfile::tempdir().unwrap();
    let manifest = app.path().join("septa.toml");
    let limited = |n: usize, per_second: u32| {
        valid(n).replace(
            "function = \"caller\"\n",
            &format!(
                "function = \"caller\"\nrate_limit = {{ key = \"ip\", per_second = {per_second}, burst = 3 }}\n"
            ),
        )
    };
    std::fs::write(&manifest, limited(1, 1)).unwrap();
    let septa = start(app.path(), &["--no-watch"]);
    let call = || septa.get("/call/whoami").status;
    assert_eq!([call(), call(), call()], [200, 200, 200]);
    assert_eq!(call(), 429);

    // Another rule changes, the limit does not: the spent burst stays spent.
    std::fs::write(&manifest, limited(2, 1)).unwrap();
    let reloaded = septa.admin_request("POST", "/reload", Some(TOKEN));
    assert_eq!(reloaded.status, 200, "{reloaded:?}");
    assert_eq!(call(), 429, "a reload must not hand out a fresh burst");

    // The limit itself changes: its buckets start afresh.
    std::fs::write(&manifest, limited(3, 2)).unwrap();
    let reloaded = septa.admin_request("POST", "/reload", Some(TOKEN));
    assert_eq!(reloaded.status, 200, "{reloaded:?}");
    assert_eq!(call(), 200);
}

#[test]
fn an_embedded_endpoint_keeps_its_store_and_data_across_reloads() {
    build_components();
    let app = tempfile::tempdir().unwrap();
    let manifest = app.path().join("septa.toml");
    let with_store = |n: usize, timeout_ms: u32| {
        valid(n)
            + &format!(
                "[endpoint.store]\nplacement = \"edge/web\"\nlimits = {{ timeout_ms = {timeout_ms} }}\n[[allow]]\nid = \"caller-to-store\"\nfrom = \"function:caller\"\nto = \"endpoint:store\"\nmethods = [\"GET\", \"PUT\"]\npaths = [\"/kv/...\"]\n"
            )
    };
    std::fs::write(&manifest, with_store(1, 2000)).unwrap();
    let septa = start(app.path(), &["--no-watch"]);
    let url = common::encode("http://store.internal/kv/k");
    let put = septa.get(&format!("/call/?to={url}&method=PUT&body=kept"));
    assert_eq!(put.json()["status"], 200, "{}", put.body);

    std::fs::write(&manifest, with_store(2, 2000)).unwrap();
    let reloaded = septa.admin_request("POST", "/reload", Some(TOKEN));
    assert_eq!(reloaded.status, 200, "{reloaded:?}");
    let read = septa.get(&format!("/call/?to={url}"));
    assert_eq!(read.json()["status"], 200, "{}", read.body);
    assert!(
        read.json()["body"].as_str().unwrap().contains("kept"),
        "{}",
        read.body
    );

    // Its file is open: new limits for it wait for a restart, and say so.
    std::fs::write(&manifest, with_store(3, 500)).unwrap();
    let refused = septa.admin_request("POST", "/reload", Some(TOKEN));
    assert_eq!(refused.status, 422, "{refused:?}");
    assert!(
        refused.json()["message"].as_str().unwrap().contains(
            "endpoint `store`: the limits of an embedded endpoint change only with a restart"
        ),
        "{refused:?}"
    );
    let read = septa.get(&format!("/call/?to={url}"));
    assert_eq!(read.json()["status"], 200, "{}", read.body);
}

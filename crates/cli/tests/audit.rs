//! Audit mode lets would-be denials through and records them as `audit`, and nothing more.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::{Septa, case, encode};

#[test]
fn audit_mode_records_what_enforce_would_deny_and_lets_it_through() {
    let septa = Septa::start(&case("audit"));
    let url = encode("http://echo.internal/orders?id=7");
    let learned = septa
        .get(&format!("/learner/?to={url}&method=POST&body=hello"))
        .json();
    assert_eq!(learned["status"], 200, "{learned}");
    let echoed: serde_json::Value =
        serde_json::from_str(learned["body"].as_str().unwrap()).unwrap();
    assert_eq!(echoed["caller"], "function:learner", "{echoed}");
    assert_eq!(echoed["body"], "hello", "{echoed}");

    let strict = septa.get(&format!("/strict/?to={url}")).json();
    assert_eq!(strict["denied"], true, "{strict}");

    // Audit mode never opens the operator ceiling.
    let outside = septa
        .get(&format!("/learner/?to={}", encode("http://127.0.0.1:9/")))
        .json();
    assert_eq!(outside["denied"], true, "{outside}");

    let flows = septa.stop();
    let audit = flows
        .iter()
        .find(|f| f["kind"] == "mesh" && f["src"] == "function:learner")
        .unwrap();
    assert_eq!(audit["verdict"], "audit", "{audit}");
    assert_eq!(
        audit["reason"],
        "no allow rule from `function:learner` to `function:echo`"
    );
    assert_eq!(audit["status"], 200);
    assert_eq!(audit["path"], "/orders");
    assert_eq!(audit["bytes_in"], 5, "{audit}");
    let strict = flows
        .iter()
        .find(|f| f["kind"] == "mesh" && f["src"] == "function:strict")
        .unwrap();
    assert_eq!(strict["verdict"], "deny");
    let ceiling = flows
        .iter()
        .find(|f| f["kind"] == "egress" && f["src"] == "function:learner")
        .unwrap();
    assert_eq!(ceiling["verdict"], "deny", "{ceiling}");
    assert!(
        ceiling["reason"].as_str().unwrap().contains("loopback"),
        "{ceiling}"
    );
}

/// The learner's traffic, in audit mode and again after the suggested rules are applied.
fn learner_traffic(septa: &Septa) {
    for (url, method) in [
        ("http://echo.internal/orders?id=7", "POST"),
        ("http://echo.internal/orders/7", "GET"),
        ("http://echo.internal/orders?id=8", "POST"),
    ] {
        let r = septa
            .get(&format!("/learner/?to={}&method={method}", encode(url)))
            .json();
        assert_eq!(r["status"], 200, "{r}");
    }
}

#[test]
fn suggested_rules_leave_no_audit_records_on_a_replay() {
    let septa = Septa::start(&case("audit"));
    learner_traffic(&septa);
    let kept = tempfile::tempdir().unwrap();
    let log = kept.path().join("flows.jsonl");
    let flows = septa.stop_keeping_log(&log);
    assert_eq!(flows.iter().filter(|f| f["verdict"] == "audit").count(), 3);

    let dir = case("audit");
    let (ok, patch, stderr) = common::septa(&[
        "suggest",
        dir.to_str().unwrap(),
        "--flows",
        log.to_str().unwrap(),
    ]);
    assert!(ok, "{stderr}");
    assert!(patch.contains("id = \"learner-to-echo\""), "{patch}");
    assert!(patch.contains("methods = [\"GET\", \"POST\"]"), "{patch}");
    assert!(
        patch.contains("paths = [\"/orders\", \"/orders/7\"]"),
        "{patch}"
    );
    assert_eq!(patch.matches("[[allow]]").count(), 1, "{patch}");

    // Apply it to a copy of the manifest (component paths made absolute) and replay.
    let components = common::repo().join("tests/components");
    let text = std::fs::read_to_string(dir.join("septa.toml"))
        .unwrap()
        .replace("../../components", components.to_str().unwrap());
    let patched = tempfile::tempdir().unwrap();
    std::fs::write(
        patched.path().join("septa.toml"),
        format!("{text}\n{patch}"),
    )
    .unwrap();
    let septa = Septa::start(patched.path());
    learner_traffic(&septa);
    let flows = septa.stop();
    let mesh: Vec<_> = flows.iter().filter(|f| f["kind"] == "mesh").collect();
    assert_eq!(mesh.len(), 3, "{flows:#?}");
    for f in mesh {
        assert_eq!(f["verdict"], "allow", "{f}");
        assert_eq!(f["rule"], "learner-to-echo", "{f}");
    }
    assert_eq!(
        flows.iter().filter(|f| f["verdict"] == "audit").count(),
        0,
        "{flows:#?}"
    );
}

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

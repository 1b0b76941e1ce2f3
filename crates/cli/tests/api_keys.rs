//! API keys at the gateway: stored as SHA-256 hashes (in the manifest or a file it names),
//! each with a consumer the function sees as the principal.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::Septa;

fn sha256_hex(key: &str) -> String {
    ring::digest::digest(&ring::digest::SHA256, key.as_bytes())
        .as_ref()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[test]
fn api_keys_admit_their_consumers_and_nobody_else() {
    let rest = format!(
        r#"[api_keys.partners]
keys = [{{ consumer = "acme", sha256 = "{}" }}]
keys_file = "partners.txt"
[[route]]
id = "partner"
path = "/partner/..."
function = "echo"
auth = {{ api_key = "partners" }}
"#,
        sha256_hex("acme-secret")
    );
    let dir = common::echo_app("keys", &rest);
    std::fs::write(
        dir.path().join("partners.txt"),
        format!(
            "# consumer sha256\nglobex {}\n",
            sha256_hex("globex-secret")
        ),
    )
    .unwrap();
    let septa = Septa::start(dir.path());
    for (key, consumer) in [("acme-secret", "acme"), ("globex-secret", "globex")] {
        let r = septa.request("GET", "/partner/x", &[("x-api-key", key)], "");
        assert_eq!(r.status, 200, "{r:?}");
        assert_eq!(r.json()["headers"]["septa-principal"], consumer);
        // The key reaches the function only as what it is; the principal is the host's.
        let spoof = septa.request(
            "GET",
            "/partner/x",
            &[("x-api-key", key), ("septa-principal", "root")],
            "",
        );
        assert_eq!(spoof.json()["headers"]["septa-principal"], consumer);
    }
    let wrong = septa.request("GET", "/partner/wrong", &[("x-api-key", "acme-secreT")], "");
    assert_eq!(wrong.status, 401);
    assert_eq!(
        wrong.header("www-authenticate"),
        Some("ApiKey realm=\"septa\", error=\"invalid_key\"")
    );
    let none = septa.get("/partner/none");
    assert_eq!(none.status, 401);
    assert_eq!(
        none.header("www-authenticate"),
        Some("ApiKey realm=\"septa\"")
    );

    let flows = septa.stop();
    let reason = |path: &str| {
        flows.iter().find(|f| f["path"] == path).unwrap()["reason"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    assert_eq!(reason("/partner/wrong"), "api key: unknown key");
    assert_eq!(reason("/partner/none"), "api key: none presented");
}

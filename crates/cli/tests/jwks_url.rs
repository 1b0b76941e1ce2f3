//! Keys fetched from an issuer's `jwks_url`: through the operator ceiling as egress from the
//! gateway, over TLS verified against the issuer's `ca_file`, refreshed in the background and early
//! when a token names a key septa has not seen, and fail closed when there are no keys.
//!
//! The issuer is a real HTTPS server on loopback inside the test, with a certificate authority
//! and leaf made by the `openssl` CLI; it can swap the document it serves.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::pki::{HttpsServer, Pki, make_pki};
use common::{Septa, b64, encode, unix_now};
use ring::rand::SystemRandom;
use ring::signature::{Ed25519KeyPair, KeyPair};
use serde_json::{Value, json};

/// An Ed25519 signing key with its `kid`.
struct SigningKey {
    kid: &'static str,
    pair: Ed25519KeyPair,
}

impl SigningKey {
    fn generate(kid: &'static str) -> Self {
        let rng = SystemRandom::new();
        let pkcs8 = Ed25519KeyPair::generate_pkcs8(&rng).unwrap();
        Self {
            kid,
            pair: Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).unwrap(),
        }
    }

    fn jwk(&self) -> Value {
        json!({ "kty": "OKP", "crv": "Ed25519", "kid": self.kid, "x": b64(self.pair.public_key().as_ref()) })
    }

    /// A token for `alice`, valid for ten minutes.
    fn token(&self) -> String {
        let now = unix_now();
        let header = json!({ "alg": "EdDSA", "kid": self.kid, "typ": "JWT" });
        let claims =
            json!({ "iss": "https://auth.test", "aud": "shop", "sub": "alice", "exp": now + 600 });
        let input = format!(
            "{}.{}",
            b64(header.to_string().as_bytes()),
            b64(claims.to_string().as_bytes())
        );
        let signature = self.pair.sign(input.as_bytes());
        format!("{input}.{}", b64(signature.as_ref()))
    }
}

fn jwks(keys: &[&SigningKey]) -> String {
    json!({ "keys": keys.iter().map(|k| k.jwk()).collect::<Vec<_>>() }).to_string()
}

/// What the issuer answers: a status and a body.
type Served = Arc<Mutex<(u16, String)>>;

/// An HTTPS issuer on loopback serving `/jwks.json`, with a document the test can swap.
struct Issuer {
    addr: SocketAddr,
    served: Served,
    /// Requests that completed a TLS handshake.
    hits: Arc<AtomicUsize>,
}

impl Issuer {
    fn start(pki: &Pki, document: String) -> Self {
        let served: Served = Arc::new(Mutex::new((200, document)));
        let state = served.clone();
        let server = HttpsServer::start(pki, move |_| state.lock().unwrap().clone());
        Self {
            addr: server.addr,
            served,
            hits: server.connections,
        }
    }

    fn url(&self) -> String {
        format!("https://{}/jwks.json", self.addr)
    }

    fn serve(&self, status: u16, body: String) {
        *self.served.lock().unwrap() = (status, body);
    }
}

/// An application with route `/orders/...` behind issuer `main`, whose keys come from `issuer`
/// trusting `ca`; `relax` carves 127.0.0.1 out of the ceiling. `caller` (a function that makes
/// egress calls on request) has no egress rule.
fn start(issuer: &Issuer, ca: &Path, relax: bool) -> (Septa, tempfile::TempDir) {
    let caller = common::test_component("caller");
    let ceiling = if relax {
        "[ceiling]\nrelax = [\"127.0.0.1/32\"]\n"
    } else {
        ""
    };
    let dir = common::echo_app(
        "jwks-url",
        &format!(
            r#"[function.caller]
source = {caller:?}
placement = "edge/web"
[jwt.main]
issuer = "https://auth.test"
audiences = ["shop"]
algorithms = ["EdDSA"]
jwks_url = "{url}"
jwks_refresh_s = 10
ca_file = {ca:?}
[[route]]
id = "orders"
path = "/orders/..."
function = "echo"
auth = {{ jwt = "main" }}
[[route]]
id = "caller"
path = "/caller/..."
function = "caller"
{ceiling}"#,
            url = issuer.url(),
        ),
    );
    let septa = Septa::start(dir.path());
    (septa, dir)
}

fn call(septa: &Septa, path: &str, token: &str) -> common::Response {
    septa.request(
        "GET",
        path,
        &[("authorization", &format!("Bearer {token}"))],
        "",
    )
}

/// Calls `path` with `token` until the status is `want`, for at most `within`.
fn wait_status(septa: &Septa, path: &str, token: &str, want: u16, within: Duration) {
    let start = Instant::now();
    loop {
        let r = call(septa, path, token);
        if r.status == want {
            return;
        }
        assert!(
            start.elapsed() < within,
            "{path}: still {} after {within:?}, wanted {want}",
            r.status
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Waits until a flow record satisfies `pred`, for at most `within`.
fn wait_for_flow(septa: &Septa, what: &str, within: Duration, pred: impl Fn(&Value) -> bool) {
    let start = Instant::now();
    while !septa.flows().iter().any(&pred) {
        assert!(
            start.elapsed() < within,
            "no flow record {what} after {within:?}: {:#?}",
            septa.flows()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn is_fetch(f: &Value, issuer: &Issuer) -> bool {
    f["kind"] == "egress" && f["src"] == "gateway" && f["dst"] == issuer.url().as_str()
}

#[test]
fn a_fetched_key_verifies_tokens_and_the_fetch_is_an_egress_flow_of_the_gateway() {
    let pki_dir = tempfile::tempdir().unwrap();
    let pki = make_pki(pki_dir.path(), "issuer");
    let key = SigningKey::generate("k1");
    let issuer = Issuer::start(&pki, jwks(&[&key]));
    let (septa, _dir) = start(&issuer, &pki.ca, true);
    assert!(
        septa
            .startup
            .iter()
            .any(|l| l == "septa: jwt issuer `main`: 1 keys fetched"),
        "{:?}",
        septa.startup
    );

    let r = call(&septa, "/orders/1", &key.token());
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.json()["headers"]["septa-principal"], "alice");
    assert_eq!(call(&septa, "/orders/1", "not.a.token").status, 401);

    // The issuer's URL is its own egress and nobody else's: a function without a rule for it is
    // refused, relaxed ceiling or not.
    let fetches_before = issuer.hits.load(Ordering::SeqCst);
    let function = septa
        .get(&format!("/caller/?to={}", encode(&issuer.url())))
        .json();
    assert_eq!(function["denied"], true, "{function}");
    assert_eq!(issuer.hits.load(Ordering::SeqCst), fetches_before);

    let flows = septa.stop();
    let fetch = flows.iter().find(|f| is_fetch(f, &issuer)).unwrap();
    assert_eq!(fetch["verdict"], "allow", "{fetch}");
    assert_eq!(fetch["rule"], "jwt.main", "{fetch}");
    assert_eq!(fetch["status"], 200, "{fetch}");
    assert_eq!(fetch["method"], "GET", "{fetch}");
    assert_eq!(fetch["path"], "/jwks.json", "{fetch}");
    assert_eq!(fetch["target"], issuer.addr.to_string().as_str(), "{fetch}");
    assert_eq!(fetch["reason"], "the keys of jwt issuer `main`", "{fetch}");
    assert!(fetch.get("error").is_none(), "{fetch}");
    let refused = flows
        .iter()
        .find(|f| f["kind"] == "egress" && f["src"] == "function:caller")
        .unwrap();
    assert_eq!(refused["verdict"], "deny", "{refused}");
}

#[test]
fn without_a_relaxed_ceiling_the_fetch_is_refused_and_tokens_get_401() {
    let pki_dir = tempfile::tempdir().unwrap();
    let pki = make_pki(pki_dir.path(), "issuer");
    let key = SigningKey::generate("k1");
    let issuer = Issuer::start(&pki, jwks(&[&key]));
    let (septa, _dir) = start(&issuer, &pki.ca, false);
    let said = septa
        .startup
        .iter()
        .find(|l| l.starts_with("septa: jwt issuer `main`: cannot fetch keys"))
        .unwrap_or_else(|| panic!("{:?}", septa.startup));
    assert!(said.contains("operator ceiling"), "{said}");
    assert!(said.contains("answer 401 until a fetch succeeds"), "{said}");

    let r = call(&septa, "/orders/1", &key.token());
    assert_eq!(r.status, 401, "{r:?}");
    assert!(
        r.header("www-authenticate")
            .unwrap()
            .contains("invalid_token")
    );
    // Refused on the resolved address, before any connection.
    assert_eq!(issuer.hits.load(Ordering::SeqCst), 0);

    let flows = septa.stop();
    let fetch = flows.iter().find(|f| is_fetch(f, &issuer)).unwrap();
    assert_eq!(fetch["verdict"], "deny", "{fetch}");
    let reason = fetch["reason"].as_str().unwrap();
    assert!(
        reason.contains(
            "`127.0.0.1` is in the operator ceiling's blocked range `127.0.0.0/8` (loopback)"
        ),
        "{fetch}"
    );
    assert!(fetch.get("status").is_none(), "{fetch}");
    let denied = flows.iter().find(|f| f["path"] == "/orders/1").unwrap();
    assert_eq!(denied["reason"], "jwt: no keys loaded for the issuer yet");
}

#[test]
fn a_certificate_the_ca_did_not_sign_is_refused() {
    let pki_dir = tempfile::tempdir().unwrap();
    let trusted = make_pki(pki_dir.path(), "trusted");
    let rogue = make_pki(pki_dir.path(), "rogue");
    let key = SigningKey::generate("k1");
    let issuer = Issuer::start(&rogue, jwks(&[&key]));
    let (septa, _dir) = start(&issuer, &trusted.ca, true);
    assert!(
        septa
            .startup
            .iter()
            .any(|l| l.starts_with("septa: jwt issuer `main`: cannot fetch keys")),
        "{:?}",
        septa.startup
    );
    assert_eq!(call(&septa, "/orders/1", &key.token()).status, 401);

    let flows = septa.stop();
    let fetch = flows.iter().find(|f| is_fetch(f, &issuer)).unwrap();
    // Allowed by the issuer's declaration; it failed after that, and says why.
    assert_eq!(fetch["verdict"], "allow", "{fetch}");
    assert!(
        fetch["error"]
            .as_str()
            .unwrap()
            .contains("tls certificate of `127.0.0.1` is not valid"),
        "{fetch}"
    );
}

#[test]
fn without_keys_routes_fail_closed_until_a_retry_succeeds() {
    let pki_dir = tempfile::tempdir().unwrap();
    let pki = make_pki(pki_dir.path(), "issuer");
    let key = SigningKey::generate("k1");
    let issuer = Issuer::start(&pki, "{}".to_owned());
    issuer.serve(503, "down for maintenance".to_owned());
    let (septa, _dir) = start(&issuer, &pki.ca, true);
    assert_eq!(call(&septa, "/orders/1", &key.token()).status, 401);

    // A document over 1 MiB is refused, however valid.
    let padding = " ".repeat(1024 * 1024);
    issuer.serve(200, format!("{{\"keys\": []{padding}}}"));
    wait_for_flow(
        &septa,
        "refusing a document over 1 MiB",
        Duration::from_secs(30),
        |f| {
            is_fetch(f, &issuer)
                && f["error"]
                    .as_str()
                    .is_some_and(|r| r.contains("the document is larger than 1048576 bytes"))
        },
    );

    issuer.serve(200, "<html>not a key set</html>".to_owned());
    wait_for_flow(
        &septa,
        "refusing a document that is not JSON",
        Duration::from_secs(30),
        |f| {
            is_fetch(f, &issuer)
                && f["status"] == 200
                && f["error"]
                    .as_str()
                    .is_some_and(|r| r.contains("bad JWKS document: not JSON"))
        },
    );
    assert_eq!(call(&septa, "/orders/1", &key.token()).status, 401);

    // Retries back off (1 s, 2 s, 4 s, ...), so the fixed document is picked up soon.
    issuer.serve(200, jwks(&[&key]));
    wait_status(
        &septa,
        "/orders/1",
        &key.token(),
        200,
        Duration::from_secs(30),
    );

    let flows = septa.stop();
    let fetches: Vec<&Value> = flows.iter().filter(|f| is_fetch(f, &issuer)).collect();
    let unavailable = fetches.iter().find(|f| f["status"] == 503).unwrap();
    assert!(
        unavailable["error"]
            .as_str()
            .unwrap()
            .contains("the server answered 503; only 200 is accepted"),
        "{unavailable}"
    );
    assert!(
        fetches.iter().any(|f| f.get("error").is_none()),
        "{fetches:#?}"
    );
}

#[test]
fn rotated_keys_verify_after_an_early_refresh_and_removed_keys_stop_verifying() {
    let pki_dir = tempfile::tempdir().unwrap();
    let pki = make_pki(pki_dir.path(), "issuer");
    let (k1, k2, k3) = (
        SigningKey::generate("k1"),
        SigningKey::generate("k2"),
        SigningKey::generate("k3"),
    );
    let issuer = Issuer::start(&pki, jwks(&[&k1]));
    let (septa, _dir) = start(&issuer, &pki.ca, true);
    let old = k1.token();
    assert_eq!(call(&septa, "/orders/old", &old).status, 200);
    // Verified once, now cached.
    assert_eq!(call(&septa, "/orders/old", &old).status, 200);

    // The issuer rotates: k2 in, k1 out. A token with the new kid is refused at once (never
    // waiting on a fetch) and asks for an early refresh, after which it verifies.
    issuer.serve(200, jwks(&[&k2]));
    let new = k2.token();
    let first = call(&septa, "/orders/new-first", &new);
    assert_eq!(first.status, 401, "{first:?}");
    wait_status(&septa, "/orders/new", &new, 200, Duration::from_secs(10));
    // The same refresh removed k1: the cached token no longer passes.
    assert_eq!(call(&septa, "/orders/old-after", &old).status, 401);

    // Without any unknown kid to hurry it, the periodic refresh (every 10 s here) removes k2.
    issuer.serve(200, jwks(&[&k3]));
    wait_status(&septa, "/orders/new", &new, 401, Duration::from_secs(25));
    assert_eq!(call(&septa, "/orders/k3", &k3.token()).status, 200);

    // A failed refresh keeps the keys in use.
    issuer.serve(200, "{\"keys\": 42}".to_owned());
    wait_for_flow(
        &septa,
        "of a failed refresh",
        Duration::from_secs(25),
        |f| is_fetch(f, &issuer) && f.get("error").is_some(),
    );
    assert_eq!(call(&septa, "/orders/k3-kept", &k3.token()).status, 200);

    let flows = septa.stop();
    let flow = |path: &str| flows.iter().find(|f| f["path"] == path).unwrap().clone();
    assert_eq!(flow("/orders/new-first")["reason"], "jwt: unknown key id");
    assert_eq!(flow("/orders/old-after")["reason"], "jwt: unknown key id");
    let failed = flows
        .iter()
        .find(|f| is_fetch(f, &issuer) && f.get("error").is_some())
        .unwrap();
    assert!(
        failed["error"]
            .as_str()
            .unwrap()
            .contains("bad JWKS document: no `keys` array"),
        "{failed}"
    );
}

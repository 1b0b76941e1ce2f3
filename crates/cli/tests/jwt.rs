//! JWT authentication at the gateway, with keys generated in the test: every way a token can be
//! wrong is refused with the right status and a flow record saying why.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::process::Command;

use common::{Septa, b64, unix_now as now};
use ring::rand::SystemRandom;
use ring::signature::{self, EcdsaKeyPair, Ed25519KeyPair, KeyPair, RsaKeyPair};
use serde_json::{Value, json};

struct Keys {
    ed: Ed25519KeyPair,
    ec: EcdsaKeyPair,
    rsa: RsaKeyPair,
}

impl Keys {
    fn generate() -> Self {
        let rng = SystemRandom::new();
        let ed = Ed25519KeyPair::from_pkcs8(Ed25519KeyPair::generate_pkcs8(&rng).unwrap().as_ref())
            .unwrap();
        let ec_pkcs8 =
            EcdsaKeyPair::generate_pkcs8(&signature::ECDSA_P256_SHA256_FIXED_SIGNING, &rng)
                .unwrap();
        let ec = EcdsaKeyPair::from_pkcs8(
            &signature::ECDSA_P256_SHA256_FIXED_SIGNING,
            ec_pkcs8.as_ref(),
            &rng,
        )
        .unwrap();
        // ring cannot generate RSA keys; openssl does, in the test.
        let dir = tempfile::tempdir().unwrap();
        let pem = dir.path().join("rsa.pem");
        let der = dir.path().join("rsa.der");
        let ok = Command::new("openssl")
            .args([
                "genpkey",
                "-algorithm",
                "RSA",
                "-pkeyopt",
                "rsa_keygen_bits:2048",
                "-out",
            ])
            .arg(&pem)
            .status()
            .unwrap()
            .success()
            && Command::new("openssl")
                .args(["pkcs8", "-topk8", "-nocrypt", "-outform", "DER", "-in"])
                .arg(&pem)
                .arg("-out")
                .arg(&der)
                .status()
                .unwrap()
                .success();
        assert!(ok, "openssl could not generate an RSA key");
        let rsa = RsaKeyPair::from_pkcs8(&std::fs::read(der).unwrap()).unwrap();
        Self { ed, ec, rsa }
    }

    fn jwks(&self) -> Value {
        let ec = self.ec.public_key().as_ref();
        let rsa: signature::RsaPublicKeyComponents<Vec<u8>> = self.rsa.public().into();
        json!({ "keys": [
            { "kty": "OKP", "crv": "Ed25519", "kid": "ed", "x": b64(self.ed.public_key().as_ref()) },
            { "kty": "EC", "crv": "P-256", "kid": "ec", "x": b64(&ec[1..33]), "y": b64(&ec[33..65]) },
            { "kty": "RSA", "kid": "rsa",
              "n": b64(&rsa.n),
              "e": b64(&rsa.e) },
        ]})
    }

    fn sign(&self, header: &Value, claims: &Value) -> String {
        let input = format!(
            "{}.{}",
            b64(header.to_string().as_bytes()),
            b64(claims.to_string().as_bytes())
        );
        let rng = SystemRandom::new();
        let sig = match header["alg"].as_str().unwrap() {
            "EdDSA" => self.ed.sign(input.as_bytes()).as_ref().to_vec(),
            "ES256" => self
                .ec
                .sign(&rng, input.as_bytes())
                .unwrap()
                .as_ref()
                .to_vec(),
            "RS256" => {
                let mut sig = vec![0; self.rsa.public().modulus_len()];
                self.rsa
                    .sign(
                        &signature::RSA_PKCS1_SHA256,
                        &rng,
                        input.as_bytes(),
                        &mut sig,
                    )
                    .unwrap();
                sig
            }
            "HS256" => {
                // The classic confusion attack: HMAC keyed with the issuer's public key.
                let key =
                    ring::hmac::Key::new(ring::hmac::HMAC_SHA256, self.ed.public_key().as_ref());
                ring::hmac::sign(&key, input.as_bytes()).as_ref().to_vec()
            }
            _ => Vec::new(),
        };
        format!("{input}.{}", b64(&sig))
    }
}

fn claims() -> Value {
    json!({ "iss": "https://auth.test", "aud": "shop", "sub": "alice", "exp": now() + 600, "scope": "orders:read profile" })
}

fn start(keys: &Keys) -> (Septa, tempfile::TempDir) {
    let dir = common::echo_app(
        "jwt",
        r#"[jwt.main]
issuer = "https://auth.test"
audiences = ["shop"]
algorithms = ["EdDSA", "ES256", "RS256"]
jwks_file = "jwks.json"
leeway_s = 5
[[route]]
id = "orders"
path = "/orders/..."
function = "echo"
auth = { jwt = "main", scopes = ["orders:read"] }
[[route]]
id = "admin"
path = "/admin/..."
function = "echo"
auth = { jwt = "main", scopes = ["admin"] }
[[route]]
id = "open"
path = "/open/..."
function = "echo"
[[route]]
id = "tenant"
path = "/tenant/..."
function = "echo"
auth = { jwt = "main", claims = { tenant = ["acme", "globex"], email_verified = true }, forward_claims = ["tenant", "email", "groups"] }
rate_limit = { key = "claim:tenant", per_second = 1, burst = 2 }
[[route]]
id = "trial"
path = "/trial/..."
function = "echo"
mode = "audit"
auth = { jwt = "main", scopes = ["admin"] }
"#,
    );
    std::fs::write(dir.path().join("jwks.json"), keys.jwks().to_string()).unwrap();
    (Septa::start(dir.path()), dir)
}

fn call(septa: &Septa, path: &str, token: &str) -> common::Response {
    septa.request(
        "GET",
        path,
        &[("authorization", &format!("Bearer {token}"))],
        "",
    )
}

#[test]
fn valid_tokens_of_every_algorithm_pass_and_the_function_sees_the_principal() {
    let keys = Keys::generate();
    let (septa, _dir) = start(&keys);
    for (alg, kid) in [("EdDSA", "ed"), ("ES256", "ec"), ("RS256", "rsa")] {
        let token = keys.sign(&json!({ "alg": alg, "kid": kid, "typ": "JWT" }), &claims());
        let r = call(&septa, "/orders/1", &token);
        assert_eq!(r.status, 200, "{alg}: {r:?}");
        let seen = r.json();
        assert_eq!(seen["headers"]["septa-principal"], "alice", "{seen}");
        assert_eq!(seen["caller"], "gateway");
        // The second use of the same token comes from the cache and still passes.
        assert_eq!(call(&septa, "/orders/2", &token).status, 200);
    }
    // A client cannot claim a principal on an open route.
    let r = septa.request("GET", "/open/x", &[("septa-principal", "mallory")], "");
    assert_eq!(r.status, 200);
    assert!(
        r.json()["headers"].get("septa-principal").is_none(),
        "{}",
        r.body
    );
}

#[test]
fn every_way_a_token_can_be_wrong_is_refused_and_recorded() {
    let keys = Keys::generate();
    let (septa, _dir) = start(&keys);
    let ed = json!({ "alg": "EdDSA", "kid": "ed" });
    let with = |patch: Value| {
        let mut c = claims();
        for (k, v) in patch.as_object().unwrap() {
            c[k] = v.clone();
        }
        c
    };
    let tampered = {
        let token = keys.sign(&ed, &claims());
        let parts: Vec<&str> = token.split('.').collect();
        let forged = b64(with(json!({ "scope": "orders:read admin" }))
            .to_string()
            .as_bytes());
        format!("{}.{forged}.{}", parts[0], parts[2])
    };
    let cases: Vec<(&str, String, u16, &str)> = vec![
        (
            "expired",
            keys.sign(&ed, &with(json!({ "exp": now() - 60 }))),
            401,
            "jwt: token expired",
        ),
        (
            "not yet valid",
            keys.sign(&ed, &with(json!({ "nbf": now() + 600 }))),
            401,
            "jwt: token not yet valid",
        ),
        (
            "wrong issuer",
            keys.sign(&ed, &with(json!({ "iss": "https://evil.test" }))),
            401,
            "jwt: wrong issuer",
        ),
        (
            "wrong audience",
            keys.sign(&ed, &with(json!({ "aud": ["other"] }))),
            401,
            "jwt: wrong audience",
        ),
        (
            "alg none",
            format!(
                "{}.{}.",
                b64(br#"{"alg":"none","kid":"ed"}"#),
                b64(claims().to_string().as_bytes())
            ),
            401,
            "jwt: algorithm `none` is not accepted",
        ),
        (
            "HS256 with the public key",
            keys.sign(&json!({ "alg": "HS256", "kid": "ed" }), &claims()),
            401,
            "jwt: algorithm `HS256` is not accepted",
        ),
        (
            "unknown kid",
            keys.sign(&json!({ "alg": "EdDSA", "kid": "nope" }), &claims()),
            401,
            "jwt: unknown key id",
        ),
        (
            "kid with path characters",
            keys.sign(
                &json!({ "alg": "EdDSA", "kid": "../../jwks.json" }),
                &claims(),
            ),
            401,
            "jwt: unknown key id",
        ),
        (
            "key of another algorithm",
            keys.sign(&json!({ "alg": "ES256", "kid": "ed" }), &claims()),
            401,
            "jwt: key and algorithm do not match",
        ),
        ("tampered payload", tampered, 401, "jwt: bad signature"),
        (
            "crit names an extension",
            keys.sign(
                &json!({ "alg": "EdDSA", "kid": "ed", "crit": ["exp-policy"], "exp-policy": "strict" }),
                &claims(),
            ),
            401,
            "jwt: critical header `exp-policy` is not understood",
        ),
        (
            "crit unencoded payload",
            keys.sign(
                &json!({ "alg": "EdDSA", "kid": "ed", "crit": ["b64"], "b64": false }),
                &claims(),
            ),
            401,
            "jwt: critical header `b64` is not understood",
        ),
        (
            "crit empty",
            keys.sign(&json!({ "alg": "EdDSA", "kid": "ed", "crit": [] }), &claims()),
            401,
            "jwt: malformed token",
        ),
        (
            "missing scope",
            keys.sign(&ed, &claims()),
            403,
            "jwt: missing scope `admin`",
        ),
        (
            "claim mismatch",
            keys.sign(
                &ed,
                &with(json!({ "tenant": "initech", "email_verified": true })),
            ),
            403,
            "jwt: claim `tenant` is not \"acme\" or \"globex\"",
        ),
        (
            "garbage",
            "not.a.token".to_owned(),
            401,
            "jwt: malformed token",
        ),
    ];
    let path_of = |name: &str| match name {
        "missing scope" => "/admin/x".to_owned(),
        "claim mismatch" => "/tenant/x".to_owned(),
        _ => format!("/orders/{}", name.replace(' ', "-")),
    };
    for (name, token, status, _) in &cases {
        let path = path_of(name);
        let r = call(&septa, &path, token);
        assert_eq!(r.status, *status, "{name}: {r:?}");
        let challenge = r.header("www-authenticate").unwrap_or_default();
        let expected = if *status == 401 {
            "error=\"invalid_token\""
        } else {
            "error=\"insufficient_scope\""
        };
        assert!(challenge.contains(expected), "{name}: {challenge}");
        // The client is told only what RFC 6750 says, never which check failed.
        assert!(!r.body.contains("jwt:"), "{name}: {}", r.body);
    }
    let r = septa.get("/orders/none");
    assert_eq!(r.status, 401);
    assert_eq!(r.header("www-authenticate"), Some("Bearer realm=\"septa\""));

    let flows = septa.stop();
    for (name, _, status, reason) in &cases {
        let path = path_of(name);
        let f = flows
            .iter()
            .find(|f| f["path"] == path.as_str())
            .unwrap_or_else(|| panic!("no flow for {name}"));
        assert_eq!(f["verdict"], "deny", "{name}: {f}");
        assert_eq!(f["status"], *status, "{name}: {f}");
        assert!(
            f["reason"].as_str().unwrap().starts_with(reason),
            "{name}: {f}"
        );
    }
}

#[test]
fn claims_authorize_reach_the_function_as_headers_and_key_rate_limits() {
    let keys = Keys::generate();
    let (septa, _dir) = start(&keys);
    let ed = json!({ "alg": "EdDSA", "kid": "ed" });
    let token = |sub: &str, tenant: &str, verified: bool| {
        let mut c = claims();
        c["sub"] = json!(sub);
        c["tenant"] = json!(tenant);
        c["email_verified"] = json!(verified);
        c["email"] = json!(format!("{sub}@example.test"));
        c["groups"] = json!(["buyers", "beta"]);
        keys.sign(&ed, &c)
    };

    // Claims that match are forwarded as headers; a client's own `septa-claim-*` is dropped.
    let r = septa.request(
        "GET",
        "/tenant/a",
        &[
            (
                "authorization",
                &format!("Bearer {}", token("alice", "acme", true)),
            ),
            ("septa-claim-tenant", "globex"),
            ("Septa-Claim-Role", "admin"),
        ],
        "",
    );
    assert_eq!(r.status, 200, "{r:?}");
    let headers = &r.json()["headers"];
    assert_eq!(headers["septa-principal"], "alice", "{headers}");
    assert_eq!(headers["septa-claim-tenant"], "acme", "{headers}");
    assert_eq!(headers["septa-claim-email"], "alice@example.test");
    assert_eq!(headers["septa-claim-groups"], r#"["buyers","beta"]"#);
    assert!(headers.get("septa-claim-role").is_none(), "{headers}");
    assert_eq!(r.header("ratelimit-limit"), Some("2"));
    assert_eq!(r.header("ratelimit-remaining"), Some("1"));

    // A claim that does not match is a 403 and spends nothing of the tenant's bucket.
    let r = call(&septa, "/tenant/b", &token("mallory", "acme", false));
    assert_eq!(r.status, 403, "{r:?}");
    // The bucket is the tenant's: bob shares acme's, carol's globex is untouched.
    assert_eq!(
        call(&septa, "/tenant/c", &token("bob", "acme", true)).status,
        200
    );
    let limited = call(&septa, "/tenant/d", &token("alice", "acme", true));
    assert_eq!(limited.status, 429, "{limited:?}");
    assert_eq!(
        call(&septa, "/tenant/e", &token("carol", "globex", true)).status,
        200
    );

    let flows = septa.stop();
    let f = flows.iter().find(|f| f["path"] == "/tenant/b").unwrap();
    assert_eq!(
        f["reason"],
        "jwt: claim `email_verified` is not true (subject `mallory`)"
    );
    let f = flows.iter().find(|f| f["path"] == "/tenant/d").unwrap();
    assert_eq!(f["status"], 429);
    assert!(
        f["reason"]
            .as_str()
            .unwrap()
            .ends_with("by claim:tenant (`claim:tenant=acme`)"),
        "{f}"
    );
}

#[test]
fn a_route_in_audit_mode_lets_refusals_through_and_records_what_enforcing_would_do() {
    let keys = Keys::generate();
    let (septa, _dir) = start(&keys);
    let ed = json!({ "alg": "EdDSA", "kid": "ed" });
    let no_token = septa.get("/trial/anonymous");
    assert_eq!(no_token.status, 200, "{no_token:?}");
    assert!(no_token.json()["headers"].get("septa-principal").is_none());
    let reader = call(&septa, "/trial/reader", &keys.sign(&ed, &claims()));
    assert_eq!(reader.status, 200, "{reader:?}");
    let mut admin = claims();
    admin["scope"] = json!("admin");
    let admin = call(&septa, "/trial/admin", &keys.sign(&ed, &admin));
    assert_eq!(admin.status, 200);
    assert_eq!(admin.json()["headers"]["septa-principal"], "alice");

    let flows = septa.stop();
    let flow = |path: &str| flows.iter().find(|f| f["path"] == path).unwrap().clone();
    let f = flow("/trial/anonymous");
    assert_eq!(f["verdict"], "audit", "{f}");
    assert_eq!(f["rule"], "trial");
    assert_eq!(f["status"], 200);
    // The verdict says audit mode let it through; the reason is what enforcing would refuse.
    assert_eq!(f["reason"], "jwt: no bearer token");
    let f = flow("/trial/reader");
    assert_eq!(f["verdict"], "audit", "{f}");
    assert_eq!(f["rule"], "trial");
    assert_eq!(
        f["reason"], "jwt: missing scope `admin` (subject `alice`)",
        "{f}"
    );
    let f = flow("/trial/admin");
    assert_eq!(f["verdict"], "allow", "{f}");
    assert_eq!(f["rule"], "trial");
}

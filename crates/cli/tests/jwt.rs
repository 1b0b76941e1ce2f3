//! JWT authentication at the gateway, with keys generated in the test: every way a token can be
//! wrong is refused with the right status and a flow record saying why.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::process::Command;
use std::time::{SystemTime, UNIX_EPOCH};

use common::Septa;
use ring::rand::SystemRandom;
use ring::signature::{self, EcdsaKeyPair, Ed25519KeyPair, KeyPair, RsaKeyPair};
use serde_json::{Value, json};

fn b64(bytes: &[u8]) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |acc, (i, &b)| acc | (u32::from(b) << (16 - 8 * i)));
        for i in 0..=chunk.len() {
            out.push(A[((n >> (18 - 6 * i)) & 63) as usize] as char);
        }
    }
    out
}

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

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
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
            "missing scope",
            keys.sign(&ed, &claims()),
            403,
            "jwt: missing scope `admin`",
        ),
        (
            "garbage",
            "not.a.token".to_owned(),
            401,
            "jwt: malformed token",
        ),
    ];
    for (name, token, status, _) in &cases {
        let path = if *name == "missing scope" {
            "/admin/x".to_owned()
        } else {
            format!("/orders/{}", name.replace(' ', "-"))
        };
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
        let path = if *name == "missing scope" {
            "/admin/x".to_owned()
        } else {
            format!("/orders/{}", name.replace(' ', "-"))
        };
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

//! A bearer token → `JwtVerifier::verify`, and a JWKS document → the key set parser.
//!
//! The verifier is the gateway's, loaded from a JWKS file holding one Ed25519 key (`ed`) and one
//! P-256 key (`ec`). The first byte picks what the rest is:
//!
//! - `0`: token text, verified as sent. Nothing the fuzzer writes can carry a valid signature,
//!   so this reaches the parsing before the signature check.
//! - `1`: a header and a payload separated by `\0`, base64url-encoded and signed here with the
//!   `ed` key, so the checks after the signature (`exp`, `nbf`, `iss`, `aud`, scopes) see
//!   whatever the fuzzer writes. The verdict must be what a plain reading of RFC 7519 with
//!   septa's rules gives ([`expected`]).
//! - anything else: a JWKS document, parsed as a fetched one is.
//!
//! Every token is verified twice: the second answer comes from the cache of verified tokens and
//! must be the first one.

#![no_main]

use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::{SystemTime, UNIX_EPOCH};

use libfuzzer_sys::fuzz_target;
use ring::rand::SystemRandom;
use ring::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, Ed25519KeyPair, KeyPair};
use septa_gateway::auth::jwt::JwtVerifier;
use serde_json::{Value, json};

const ISSUER: &str = "https://issuer.fuzz";
const AUDIENCE: &str = "fuzz";
const LEEWAY_S: u64 = 60;

struct Fixture {
    verifier: JwtVerifier,
    signer: Ed25519KeyPair,
}

fn b64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |acc, (i, &b)| acc | (u32::from(b) << (16 - 8 * i)));
        for i in 0..=chunk.len() {
            out.push(char::from(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize]));
        }
    }
    out
}

fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        // A fixed seed: a crash input reproduces with the same signature.
        let signer = Ed25519KeyPair::from_seed_unchecked(&[7; 32]).expect("ed25519 seed");
        let rng = SystemRandom::new();
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng)
            .expect("p-256 key");
        let ec = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref(), &rng)
            .expect("p-256 key");
        let point = ec.public_key().as_ref();
        let jwks = json!({ "keys": [
            { "kty": "OKP", "crv": "Ed25519", "kid": "ed", "x": b64(signer.public_key().as_ref()) },
            { "kty": "EC", "crv": "P-256", "kid": "ec", "x": b64(&point[1..33]), "y": b64(&point[33..]) },
        ]});
        let path = scratch().join(format!("septa-fuzz-jwks-{}.json", std::process::id()));
        std::fs::write(&path, jwks.to_string()).expect("write the jwks");
        let manifest = format!(
            "septa_manifest_version = 1\n[application]\nname = \"fuzz\"\n\
             [jwt.main]\nissuer = \"{ISSUER}\"\naudiences = [\"{AUDIENCE}\"]\n\
             algorithms = [\"EdDSA\", \"ES256\", \"RS256\"]\nleeway_s = {LEEWAY_S}\n\
             jwks_file = {:?}\n",
            path.display().to_string()
        );
        let manifest = septa_manifest::parse(Path::new("septa.toml"), &manifest)
            .unwrap_or_else(|e| panic!("fixture manifest: {e}"));
        let issuer = manifest.jwt.values().next().expect("one issuer");
        let verifier = JwtVerifier::load(issuer).expect("load the jwks");
        let _ = std::fs::remove_file(&path);
        Fixture { verifier, signer }
    })
}

/// Memory-backed when the system has it, so the fixture costs no disk.
fn scratch() -> PathBuf {
    let shm = Path::new("/dev/shm");
    if shm.is_dir() {
        shm.to_owned()
    } else {
        std::env::temp_dir()
    }
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// What verifying a validly `ed`-signed token with this `header` and `payload` must give: its
/// subject when accepted, `None` when refused, and `Err` when the answer depends on the second
/// the clock reads (a time within a second of a bound).
fn expected(header: &[u8], payload: &[u8]) -> Result<Option<String>, ()> {
    let (Ok(header), Ok(payload)) = (
        serde_json::from_slice::<Value>(header),
        serde_json::from_slice::<Value>(payload),
    ) else {
        return Ok(None);
    };
    let header_ok = header.get("alg").and_then(Value::as_str) == Some("EdDSA")
        && header.get("kid").and_then(Value::as_str) == Some("ed")
        && header.get("crit").is_none();
    let Value::Object(claims) = &payload else {
        return Ok(None);
    };
    if !header_ok {
        return Ok(None);
    }
    let now = u128::from(now());
    let leeway = u128::from(LEEWAY_S);
    // Wide integers: no bound overflows here, whatever the token says.
    let Some(exp) = claims.get("exp").and_then(Value::as_u64).map(u128::from) else {
        return Ok(None);
    };
    if (exp + leeway).abs_diff(now) <= 1 {
        return Err(());
    }
    let fresh = exp + leeway > now;
    let started = match claims.get("nbf") {
        None => true,
        Some(nbf) => match nbf.as_u64().map(u128::from) {
            None => false,
            Some(nbf) if nbf.abs_diff(now + leeway) <= 1 => return Err(()),
            Some(nbf) => nbf <= now + leeway,
        },
    };
    let issuer = claims.get("iss").and_then(Value::as_str) == Some(ISSUER);
    let audience = match claims.get("aud") {
        Some(Value::String(aud)) => aud == AUDIENCE,
        Some(Value::Array(list)) => list.iter().any(|a| a.as_str() == Some(AUDIENCE)),
        _ => false,
    };
    let sub = claims
        .get("sub")
        .and_then(Value::as_str)
        .unwrap_or_default();
    Ok((fresh && started && issuer && audience).then(|| sub.to_owned()))
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let fixture = fixture();
    match mode {
        0 => {
            let Ok(token) = std::str::from_utf8(rest) else {
                return;
            };
            let first = fixture
                .verifier
                .verify(token)
                .map(|c| c.subject().to_owned());
            let again = fixture
                .verifier
                .verify(token)
                .map(|c| c.subject().to_owned());
            assert_eq!(
                first.is_ok(),
                again.is_ok(),
                "{token:?}: {first:?} then {again:?}"
            );
        }
        1 => {
            let (header, payload) = match rest.iter().position(|&b| b == 0) {
                Some(at) => (&rest[..at], &rest[at + 1..]),
                None => (rest, &b"{}"[..]),
            };
            let input = format!("{}.{}", b64(header), b64(payload));
            let signature = fixture.signer.sign(input.as_bytes());
            let token = format!("{input}.{}", b64(signature.as_ref()));
            let first = fixture.verifier.verify(&token);
            let again = fixture.verifier.verify(&token);
            let subject = |r: &Result<septa_policy::Claims, _>| {
                r.as_ref().ok().map(|c| c.subject().to_owned())
            };
            assert_eq!(
                subject(&first),
                subject(&again),
                "the cached answer differs for {token:?}: {first:?} then {again:?}"
            );
            if let Ok(model) = expected(header, payload) {
                assert_eq!(
                    subject(&first),
                    model,
                    "header {:?}, payload {:?}: verified as {first:?}",
                    String::from_utf8_lossy(header),
                    String::from_utf8_lossy(payload)
                );
            }
        }
        _ => {
            let _ = septa_gateway::fuzzing::parse_jwks(rest);
        }
    }
});

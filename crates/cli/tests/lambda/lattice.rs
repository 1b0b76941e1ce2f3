//! A stand-in for a callee's VPC Lattice service: HTTPS on loopback with a certificate of the
//! test's own authority, checking each request's SigV4 signature as Lattice does, by computing
//! it again from the request with the test credentials (its own implementation, not septa's).
//! A request whose signature holds gets 200 and a JSON echo of what arrived; any other gets 403
//! saying why.

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::atomic::AtomicUsize;
use std::sync::{Arc, Mutex};

use ring::{digest, hmac};
use serde_json::{Value, json};

use crate::common::pki::{HttpsServer, Pki};

pub const ACCESS_KEY_ID: &str = "ASIATESTLATTICECALLER";
pub const SECRET_ACCESS_KEY: &str = "lattice/test/secret+key";
pub const SESSION_TOKEN: &str = "FwoGZXIvYXdzEXAMPLE//session+token=";
pub const REGION: &str = "eu-west-3";

/// One request as it arrived, and what the check made of it.
#[derive(Clone, Debug)]
pub struct Arrived {
    pub method: String,
    pub target: String,
    pub headers: Vec<(String, String)>,
    /// Why the signature does not hold, or `None` when it does.
    pub refused: Option<String>,
}

impl Arrived {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

pub struct FakeLattice {
    pub addr: SocketAddr,
    pub arrived: Arc<Mutex<Vec<Arrived>>>,
    /// TLS handshakes completed.
    pub connections: Arc<AtomicUsize>,
}

impl FakeLattice {
    pub fn start(pki: &Pki) -> Self {
        let arrived: Arc<Mutex<Vec<Arrived>>> = Arc::default();
        let log = arrived.clone();
        let server = HttpsServer::start(pki, move |head| {
            let arrived = check(head);
            let answer = match &arrived.refused {
                None => (
                    200,
                    json!({
                        "lattice": "signed",
                        "method": arrived.method,
                        "target": arrived.target,
                    }),
                ),
                Some(why) => (403, json!({ "refused": why })),
            };
            log.lock().unwrap().push(arrived);
            (answer.0, answer.1.to_string())
        });
        Self {
            addr: server.addr,
            arrived,
            connections: server.connections,
        }
    }

    pub fn arrived(&self) -> Vec<Arrived> {
        self.arrived.lock().unwrap().clone()
    }
}

/// Parses the request head and checks its signature.
fn check(head: &str) -> Arrived {
    let mut lines = head.split("\r\n");
    let mut request_line = lines.next().unwrap_or("").split(' ');
    let method = request_line.next().unwrap_or("").to_owned();
    let target = request_line.next().unwrap_or("").to_owned();
    let headers: Vec<(String, String)> = lines
        .take_while(|l| !l.is_empty())
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    let mut arrived = Arrived {
        method,
        target,
        headers,
        refused: None,
    };
    arrived.refused = verify(&arrived).err();
    arrived
}

/// What Lattice checks of a signed request, with the test's credentials.
fn verify(request: &Arrived) -> Result<(), String> {
    let header = |name: &str| {
        request
            .header(name)
            .ok_or_else(|| format!("no `{name}` header"))
    };
    let authorization = header("authorization")?;
    let fields = authorization
        .strip_prefix("AWS4-HMAC-SHA256 ")
        .ok_or("not AWS4-HMAC-SHA256")?;
    let field = |key: &str| {
        fields
            .split(", ")
            .find_map(|f| f.strip_prefix(key))
            .ok_or_else(|| format!("no `{key}` in the authorization"))
    };
    let credential = field("Credential=")?;
    let signed_headers = field("SignedHeaders=")?;
    let signature = field("Signature=")?;
    let amz_date = header("x-amz-date")?;
    let date = &amz_date[..8];
    let scope = format!("{date}/{REGION}/vpc-lattice-svcs/aws4_request");
    if credential != format!("{ACCESS_KEY_ID}/{scope}") {
        return Err(format!("credential `{credential}`"));
    }
    if header("x-amz-security-token")? != SESSION_TOKEN {
        return Err("wrong session token".to_owned());
    }
    let payload = header("x-amz-content-sha256")?;
    let mut canonical_headers = String::new();
    for name in signed_headers.split(';') {
        let _ = writeln!(canonical_headers, "{name}:{}", header(name)?);
    }
    let (path, query) = request
        .target
        .split_once('?')
        .unwrap_or((&request.target, ""));
    let mut pairs: Vec<&str> = query.split('&').filter(|p| !p.is_empty()).collect();
    pairs.sort_unstable();
    let canonical = format!(
        "{}\n{path}\n{}\n{canonical_headers}\n{signed_headers}\n{payload}",
        request.method,
        pairs.join("&")
    );
    let to_sign = format!(
        "AWS4-HMAC-SHA256\n{amz_date}\n{scope}\n{}",
        hex(digest::digest(&digest::SHA256, canonical.as_bytes()).as_ref())
    );
    let mut key = format!("AWS4{SECRET_ACCESS_KEY}").into_bytes();
    for part in [date, REGION, "vpc-lattice-svcs", "aws4_request"] {
        key = mac(&key, part);
    }
    let expected = hex(&mac(&key, &to_sign));
    if expected != signature {
        return Err(format!("signature mismatch over:\n{canonical}"));
    }
    Ok(())
}

fn mac(key: &[u8], data: &str) -> Vec<u8> {
    hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, key), data.as_bytes())
        .as_ref()
        .to_vec()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The signed answer's body, as the relay reports it.
pub fn echoed(relayed: &Value) -> Value {
    serde_json::from_str(relayed["body"].as_str().unwrap()).unwrap()
}

//! `septa lambda` against a Lambda Runtime API the test serves: API Gateway (HTTP API 2.0 and
//! REST) and VPC Lattice (v2 and v1) events reach the function and its answers come back in
//! each shape, binary bodies as base64; egress, the ceiling and the deadline hold as on a node;
//! bad events and bad manifests are reported to the API, never a crash.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;
#[path = "lambda/lattice.rs"]
mod lattice;
#[path = "lambda/runtime_api.rs"]
mod runtime_api;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde_json::{Value, json};

use common::pki::make_pki;
use common::{build_components, case, encode};
use lattice::FakeLattice;
use runtime_api::RuntimeApi;

/// A deadline that never comes first.
const LONG: Duration = Duration::from_secs(30);

/// The first 16 hex digits of the test API's request ids: every invocation's trace.
const TRACE: &str = "8476a536e9f411e8";

/// A running `septa lambda` and the Runtime API it polls.
struct Lambda {
    child: Child,
    /// What it printed to standard output.
    stdout: Arc<Mutex<Vec<String>>>,
    api: RuntimeApi,
    flow_log: PathBuf,
    /// Invocations queued so far.
    invocations: usize,
    _state: tempfile::TempDir,
}

impl Lambda {
    /// Starts `septa lambda` for `function` of the test application.
    fn start(function: &str) -> Self {
        Self::start_in(&case("lambda"), function)
    }

    fn start_in(dir: &Path, function: &str) -> Self {
        Self::start_with(dir, function, &[])
    }

    /// Starts `septa lambda` for `function` of `dir` with `env` (a `None` value unset).
    fn start_with(dir: &Path, function: &str, env: &[(&str, Option<String>)]) -> Self {
        build_components();
        let state = tempfile::tempdir().unwrap();
        let flow_log = state.path().join("flows.jsonl");
        let cache = Path::new(env!("CARGO_TARGET_TMPDIR")).join("septa-test-cache");
        let mut command = Command::new(env!("CARGO_BIN_EXE_septa"));
        command
            .arg("lambda")
            .arg(dir)
            .args(["--function", function])
            .arg("--flow-log")
            .arg(&flow_log)
            .arg("--cache-dir")
            .arg(&cache)
            .env_remove("LAMBDA_TASK_ROOT");
        for (name, value) in env {
            match value {
                Some(value) => command.env(name, value),
                None => command.env_remove(name),
            };
        }
        Self::spawn(command, state, flow_log)
    }

    /// Runs `command` as Lambda runs a bootstrap: the Runtime API's address in
    /// `AWS_LAMBDA_RUNTIME_API`.
    fn spawn(mut command: Command, state: tempfile::TempDir, flow_log: PathBuf) -> Self {
        let api = RuntimeApi::start();
        let child = command
            .env("AWS_LAMBDA_RUNTIME_API", api.addr.to_string())
            .env_remove("RUST_BACKTRACE")
            .env_remove("SEPTA_FUNCTION")
            .env_remove("_HANDLER")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start septa lambda");
        let mut child = child;
        let stdout = child.stdout.take().unwrap();
        let lines: Arc<Mutex<Vec<String>>> = Arc::default();
        let sink = lines.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { return };
                sink.lock().unwrap().push(line);
            }
        });
        Self {
            stdout: lines,
            child,
            api,
            flow_log,
            invocations: 0,
            _state: state,
        }
    }

    fn invoke(&mut self, event: &Value) -> runtime_api::Answer {
        self.invocations += 1;
        self.api.invoke(event, LONG)
    }

    fn invoke_within(&mut self, event: &Value, within: Duration) -> runtime_api::Answer {
        self.invocations += 1;
        self.api.invoke(event, within)
    }

    fn invoke_raw(&mut self, event: &[u8]) -> runtime_api::Answer {
        self.invocations += 1;
        self.api.invoke_raw(event.to_vec(), LONG)
    }

    /// Waits until every invocation is answered and its records flushed, and reads the flow
    /// log.
    fn flows(&self) -> Vec<Value> {
        self.api.wait_polls(self.invocations + 1);
        std::fs::read_to_string(&self.flow_log)
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }
}

impl Drop for Lambda {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The body of a response document, parsed as JSON.
fn body_json(document: &Value) -> Value {
    assert_eq!(document["isBase64Encoded"], false, "{document}");
    serde_json::from_str(document["body"].as_str().unwrap()).unwrap()
}

/// An API Gateway HTTP API event, payload format 2.0, as API Gateway sends it.
fn http_api_v2(method: &str, raw_path: &str, raw_query: &str, body: Option<(&str, bool)>) -> Value {
    json!({
        "version": "2.0",
        "routeKey": "$default",
        "rawPath": raw_path,
        "rawQueryString": raw_query,
        "cookies": ["c1=v1", "c2=v2"],
        "headers": {
            "accept": "*/*",
            "content-type": "text/plain",
            "host": "abcdef1234.execute-api.eu-west-1.amazonaws.com",
            "user-agent": "curl/8.5.0",
            "x-amzn-trace-id": "Root=1-65f0a1b2-0123456789abcdef01234567",
            "x-forwarded-for": "203.0.113.9",
            "x-forwarded-port": "443",
            "x-forwarded-proto": "https",
            "x-custom": "one,two",
            // A client's claim of identity, which the host replaces.
            "septa-caller": "function:caller"
        },
        "queryStringParameters": {},
        "requestContext": {
            "accountId": "123456789012",
            "apiId": "abcdef1234",
            "domainName": "abcdef1234.execute-api.eu-west-1.amazonaws.com",
            "domainPrefix": "abcdef1234",
            "http": {
                "method": method,
                "path": raw_path,
                "protocol": "HTTP/1.1",
                "sourceIp": "203.0.113.9",
                "userAgent": "curl/8.5.0"
            },
            "requestId": "JKJaXmPLvHcESHA=",
            "routeKey": "$default",
            "stage": "$default",
            "time": "06/Dec/2026:19:03:58 +0000",
            "timeEpoch": 1796670238000_u64
        },
        "body": body.map(|(b, _)| b),
        "isBase64Encoded": body.is_some_and(|(_, encoded)| encoded)
    })
}

/// An API Gateway REST API event (payload format 1.0).
fn rest_v1(method: &str, path: &str, query: Value, body: Option<(&str, bool)>) -> Value {
    json!({
        "resource": "/{proxy+}",
        "path": path,
        "httpMethod": method,
        "headers": {"Host": "abc.execute-api.eu-west-1.amazonaws.com", "X-Custom": "two"},
        "multiValueHeaders": {
            "Host": ["abc.execute-api.eu-west-1.amazonaws.com"],
            "X-Custom": ["one", "two"],
            "Septa-Principal": ["forged"]
        },
        "queryStringParameters": query.as_object().map(|q| {
            q.iter().map(|(k, v)| (k.clone(), v.as_array().unwrap().last().unwrap().clone())).collect::<serde_json::Map<_, _>>()
        }),
        "multiValueQueryStringParameters": query,
        "pathParameters": {"proxy": path.trim_start_matches('/')},
        "stageVariables": null,
        "requestContext": {
            "accountId": "123456789012",
            "apiId": "abc",
            "httpMethod": method,
            "identity": {"sourceIp": "198.51.100.7", "userAgent": "curl/8.5.0"},
            "path": format!("/prod{path}"),
            "protocol": "HTTP/1.1",
            "requestId": "c6af9ac6-7b61-11e6-9a41-93e8deadbeef",
            "resourcePath": "/{proxy+}",
            "stage": "prod"
        },
        "body": body.map(|(b, _)| b),
        "isBase64Encoded": body.is_some_and(|(_, encoded)| encoded)
    })
}

/// A VPC Lattice event v2, from the Lambda function whose role session is `session`.
fn lattice_v2(method: &str, path: &str, session: Option<&str>, body: Option<&str>) -> Value {
    let mut identity = json!({
        "sourceVpcArn": "arn:aws:ec2:eu-west-1:123456789012:vpc/vpc-0b8276c84697e7339",
        "type": "AWS_IAM"
    });
    if let Some(session) = session {
        identity["principal"] = json!(format!(
            "arn:aws:sts::123456789012:assumed-role/lambda-role/{session}"
        ));
    }
    json!({
        "version": "2.0",
        "path": path,
        "method": method,
        "headers": {
            "host": ["echo-0a1b2c.7d67968.vpc-lattice-svcs.eu-west-1.on.aws"],
            "user-agent": ["relay"],
            "x-forwarded-for": ["10.0.1.17"],
            "x-amzn-lattice-network": ["SourceVpcArn=arn:aws:ec2:eu-west-1:123456789012:vpc/vpc-0b8276c84697e7339"],
            "x-multi": ["a", "b"],
            "septa-caller": ["gateway"]
        },
        "queryStringParameters": {"k": ["v w"]},
        "body": body,
        "isBase64Encoded": false,
        "requestContext": {
            "serviceNetworkArn": "arn:aws:vpc-lattice:eu-west-1:123456789012:servicenetwork/sn-0bf3f2882e9cc805a",
            "serviceArn": "arn:aws:vpc-lattice:eu-west-1:123456789012:service/svc-0a40eebed65f8d69c",
            "targetGroupArn": "arn:aws:vpc-lattice:eu-west-1:123456789012:targetgroup/tg-6d0ecf831eec9f09",
            "identity": identity,
            "region": "eu-west-1",
            "timeEpoch": "1796670238000000"
        }
    })
}

/// A VPC Lattice event of the first structure, the caller in Lattice's identity header.
fn lattice_v1(method: &str, raw_path: &str, session: &str, body: &str) -> Value {
    json!({
        "raw_path": raw_path,
        "method": method,
        "headers": {
            "host": "echo-0a1b2c.7d67968.vpc-lattice-svcs.eu-west-1.on.aws",
            "x-amzn-lattice-identity": format!("Principal=arn:aws:sts::123456789012:assumed-role/lambda-role/{session}; SessionName={session}; Type=AWSIAM"),
            "x-amzn-source-vpc": "vpc-0b8276c84697e7339",
            "content-type": "application/json"
        },
        "query_string_parameters": {},
        "body": body,
        "is_base64_encoded": false
    })
}

/// Bytes that are not UTF-8.
const BINARY: &[u8] = &[0x00, 0x9f, 0x92, 0x96, 0xff, 0xfe, b'\n', 0x80];

#[test]
fn an_http_api_v2_event_reaches_the_function_and_its_answer_comes_back() {
    let mut lambda = Lambda::start("echo");
    let document = lambda.invoke(&http_api_v2("GET", "/echo/hi", "x=1&y=a%20b", None));
    let answer = document.response();
    assert_eq!(answer["statusCode"], 200, "{answer}");
    assert_eq!(answer["headers"]["content-type"], "application/json");
    let echoed = body_json(answer);
    assert_eq!(echoed["method"], "GET");
    assert_eq!(echoed["path_with_query"], "/echo/hi?x=1&y=a%20b");
    assert_eq!(
        echoed["caller"], "gateway",
        "the host sets the caller: {echoed}"
    );
    assert_eq!(echoed["headers"]["cookie"], "c1=v1; c2=v2");
    assert_eq!(echoed["headers"]["x-custom"], "one,two");
    assert_eq!(
        echoed["headers"]["x-amzn-trace-id"],
        "Root=1-65f0a1b2-0123456789abcdef01234567"
    );

    // A text body goes in as it is; a binary one, base64 both ways, byte for byte.
    let post = lambda.invoke(&http_api_v2(
        "POST",
        "/echo/text",
        "",
        Some(("héllo", false)),
    ));
    assert_eq!(body_json(post.response())["body"], "héllo");
    let encoded = BASE64.encode(BINARY);
    let raw = lambda.invoke(&http_api_v2(
        "POST",
        "/echo/raw/x",
        "",
        Some((&encoded, true)),
    ));
    let raw = raw.response();
    assert_eq!(raw["statusCode"], 201, "{raw}");
    assert_eq!(raw["isBase64Encoded"], true, "{raw}");
    assert_eq!(
        BASE64.decode(raw["body"].as_str().unwrap()).unwrap(),
        BINARY
    );
    assert_eq!(raw["cookies"], json!(["a=1; Path=/", "b=2; Path=/"]));
    assert_eq!(raw["headers"]["content-type"], "application/octet-stream");
    assert!(raw["headers"].get("set-cookie").is_none(), "{raw}");

    // The route decides again: a path whose route leads elsewhere, or to no route, is refused
    // as the gateway refuses it.
    let elsewhere = lambda.invoke(&http_api_v2("GET", "/sleep/x", "", None));
    assert_eq!(elsewhere.response()["statusCode"], 403);
    assert_eq!(body_json(elsewhere.response())["trace_id"], TRACE);
    let nowhere = lambda.invoke(&http_api_v2("GET", "/nothing", "", None));
    assert_eq!(nowhere.response()["statusCode"], 404);

    let flows = lambda.flows();
    let ingress: Vec<&Value> = flows.iter().filter(|f| f["kind"] == "ingress").collect();
    assert_eq!(ingress.len(), 5, "{flows:#?}");
    let first = ingress[0];
    assert_eq!(first["src"], "gateway");
    assert_eq!(first["dst"], "function:echo");
    assert_eq!(first["verdict"], "allow");
    assert_eq!(first["rule"], "echo");
    assert_eq!(first["status"], 200);
    assert_eq!(first["client"], "203.0.113.9");
    assert_eq!(first["trace"], TRACE);
    assert!(
        first["policy"].as_str().is_some_and(|p| p.len() == 12),
        "{first}"
    );
    assert_eq!(ingress[2]["bytes_in"], BINARY.len());
    let refused = ingress[3];
    assert_eq!(refused["verdict"], "deny");
    assert_eq!(refused["status"], 403);
    assert_eq!(
        refused["reason"],
        "delivered to `function:echo`, the request takes route `sleep` to `function:sleeper`"
    );
    assert_eq!(ingress[4]["verdict"], "deny");
    assert_eq!(ingress[4]["status"], 404);
}

#[test]
fn a_rest_event_gets_every_header_and_query_value() {
    let mut lambda = Lambda::start("echo");
    let query = json!({"q": ["a b", "c"], "é": ["1"]});
    let answer = lambda.invoke(&rest_v1("GET", "/echo/rest", query, None));
    let answer = answer.response();
    assert_eq!(answer["statusCode"], 200, "{answer}");
    assert_eq!(
        answer["multiValueHeaders"]["content-type"],
        json!(["application/json"])
    );
    let echoed = body_json(answer);
    assert_eq!(echoed["path_with_query"], "/echo/rest?q=a%20b&q=c&%C3%A9=1");
    assert_eq!(echoed["headers"]["x-custom"], "one, two", "{echoed}");
    assert!(
        echoed["headers"].get("septa-principal").is_none(),
        "a forged identity header reached the function: {echoed}"
    );
    assert_eq!(echoed["caller"], "gateway");

    let encoded = BASE64.encode(BINARY);
    let raw = lambda.invoke(&rest_v1(
        "PUT",
        "/echo/raw/y",
        json!({}),
        Some((&encoded, true)),
    ));
    let raw = raw.response();
    assert_eq!(raw["statusCode"], 201);
    assert_eq!(raw["isBase64Encoded"], true);
    assert_eq!(
        BASE64.decode(raw["body"].as_str().unwrap()).unwrap(),
        BINARY
    );
    assert_eq!(
        raw["multiValueHeaders"]["set-cookie"],
        json!(["a=1; Path=/", "b=2; Path=/"])
    );
    assert!(raw["headers"].get("set-cookie").is_none(), "{raw}");
    assert_eq!(raw["headers"]["content-type"], "application/octet-stream");
    let flows = lambda.flows();
    assert_eq!(flows[0]["client"], "198.51.100.7", "{flows:#?}");
}

#[test]
fn lattice_events_are_decided_again_by_their_verified_caller() {
    let mut lambda = Lambda::start("echo");
    // `lambda-caller` is function `caller` as the AWS export names it; the rule admits POST.
    let event = lattice_v2(
        "POST",
        "/echo/from-caller",
        Some("lambda-caller"),
        Some("ping"),
    );
    let answer = lambda.invoke(&event);
    let answer = answer.response();
    assert_eq!(answer["statusCode"], 200, "{answer}");
    assert_eq!(answer["statusDescription"], "200 OK");
    assert_eq!(answer["headers"]["content-type"], "application/json");
    let echoed = body_json(answer);
    assert_eq!(echoed["caller"], "function:caller", "{echoed}");
    assert_eq!(echoed["path_with_query"], "/echo/from-caller?k=v%20w");
    assert_eq!(echoed["headers"]["x-multi"], "a, b", "{echoed}");
    assert_eq!(echoed["body"], "ping");

    // The same call from a function no rule admits, by a method the rule does not admit, and
    // with no IAM principal at all: refused, the caller told why.
    let neighbour = lambda.invoke(&lattice_v2("POST", "/echo/x", Some("neighbour"), None));
    let neighbour = neighbour.response();
    assert_eq!(neighbour["statusCode"], 403, "{neighbour}");
    assert_eq!(neighbour["statusDescription"], "403 Forbidden");
    assert_eq!(
        body_json(neighbour)["reason"],
        "no allow rule from `function:neighbour` to `function:echo`"
    );
    let get = lambda.invoke(&lattice_v2("GET", "/echo/x", Some("caller"), None));
    assert_eq!(get.response()["statusCode"], 403);
    let anonymous = lambda.invoke(&lattice_v2("POST", "/echo/x", None, None));
    let anonymous = anonymous.response();
    assert_eq!(anonymous["statusCode"], 403);
    assert!(
        body_json(anonymous)["reason"]
            .as_str()
            .unwrap()
            .contains("is no function of this application"),
        "{anonymous}"
    );

    // The first event structure: the caller from Lattice's identity header.
    let v1 = lambda.invoke(&lattice_v1("POST", "/echo/v1?a=1", "caller", "{\"v\":1}"));
    let v1 = v1.response();
    assert_eq!(v1["statusCode"], 200, "{v1}");
    let echoed = body_json(v1);
    assert_eq!(echoed["path_with_query"], "/echo/v1?a=1");
    assert_eq!(echoed["caller"], "function:caller");
    assert_eq!(echoed["body"], "{\"v\":1}");

    let flows = lambda.flows();
    let mesh: Vec<&Value> = flows.iter().filter(|f| f["kind"] == "mesh").collect();
    assert_eq!(mesh.len(), 5, "{flows:#?}");
    assert_eq!(mesh[0]["src"], "function:caller");
    assert_eq!(mesh[0]["dst"], "function:echo");
    assert_eq!(mesh[0]["rule"], "caller-to-echo");
    assert_eq!(mesh[0]["verdict"], "allow");
    assert_eq!(mesh[0]["status"], 200);
    assert_eq!(mesh[0]["trace"], TRACE);
    assert_eq!(mesh[1]["verdict"], "deny");
    assert_eq!(mesh[1]["src"], "function:neighbour");
    assert!(
        mesh[3]["src"].as_str().unwrap().starts_with("lattice:"),
        "{:#?}",
        mesh[3]
    );
    assert_eq!(mesh[4]["verdict"], "allow");
}

/// A loopback HTTP server outside septa that counts the connections it gets.
fn outside_listener() -> (u16, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let hits = Arc::new(AtomicUsize::new(0));
    let counter = hits.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            counter.fetch_add(1, Ordering::SeqCst);
            let mut buf = [0u8; 4096];
            let _ = stream.read(&mut buf);
            let _ = stream.write_all(
                b"HTTP/1.1 200 OK\r\ncontent-length: 18\r\nconnection: close\r\n\r\nhello-from-outside",
            );
        }
    });
    (port, hits)
}

#[test]
fn egress_follows_the_rules_and_the_ceiling_as_on_a_node() {
    let (port, hits) = outside_listener();
    let to = |host: &str| {
        let url = encode(&format!("http://{host}:{port}/"));
        format!("to={url}")
    };
    let mut caller = Lambda::start("caller");
    let allowed = caller.invoke(&http_api_v2("GET", "/caller/", &to("127.0.0.1"), None));
    let relayed = body_json(allowed.response());
    assert_eq!(relayed["status"], 200, "{relayed}");
    assert_eq!(relayed["body"], "hello-from-outside");
    assert_eq!(hits.load(Ordering::SeqCst), 1);
    // The operator relaxed the ceiling for 127.0.0.1 only: the rest of loopback stays shut,
    // whatever the rule's port range.
    let other = caller.invoke(&http_api_v2("GET", "/caller/", &to("127.0.0.2"), None));
    assert_eq!(body_json(other.response())["denied"], true);

    // The same component as a function without a rule is refused before anything is dialled.
    let mut neighbour = Lambda::start("neighbour");
    let refused = neighbour.invoke(&http_api_v2("GET", "/neighbour/", &to("127.0.0.1"), None));
    assert_eq!(body_json(refused.response())["denied"], true);
    assert_eq!(hits.load(Ordering::SeqCst), 1, "a refused call got through");

    let flows = caller.flows();
    let egress: Vec<&Value> = flows.iter().filter(|f| f["kind"] == "egress").collect();
    assert_eq!(egress.len(), 2, "{flows:#?}");
    assert_eq!(egress[0]["verdict"], "allow");
    assert_eq!(egress[0]["rule"], "caller-to-test-listener");
    assert_eq!(egress[0]["src"], "function:caller");
    assert_eq!(egress[0]["trace"], TRACE);
    assert_eq!(egress[1]["verdict"], "deny");
    assert!(
        egress[1]["reason"].as_str().unwrap().contains("loopback"),
        "{:#?}",
        egress[1]
    );
    let flows = neighbour.flows();
    let denied = flows.iter().find(|f| f["kind"] == "egress").unwrap();
    assert_eq!(denied["verdict"], "deny");
    assert!(
        denied["reason"]
            .as_str()
            .unwrap()
            .contains("no egress rule admits"),
        "{denied}"
    );
}

#[test]
fn a_function_past_its_deadline_is_an_invocation_error_and_polling_goes_on() {
    let mut lambda = Lambda::start("sleeper");
    // Past its own timeout (400 ms).
    let started = Instant::now();
    let timeout = lambda.invoke(&http_api_v2("GET", "/sleep/sleep", "ms=60000", None));
    let (error_type, body) = timeout.error();
    assert_eq!(error_type, "Function.Timeout");
    assert_eq!(body["errorType"], "Function.Timeout");
    assert!(
        body["errorMessage"]
            .as_str()
            .unwrap()
            .contains("exceeded its timeout"),
        "{body}"
    );
    // Lambda's deadline, when it comes first, stops it too.
    let short = lambda.invoke_within(
        &http_api_v2("GET", "/sleep/sleep", "ms=60000", None),
        Duration::from_millis(200),
    );
    assert_eq!(short.error().0, "Function.Timeout");
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "the deadlines did not stop the guest"
    );
    // The runtime polls on and serves the next one.
    let ok = lambda.invoke(&http_api_v2("GET", "/sleep/sleep", "ms=1", None));
    assert_eq!(body_json(ok.response())["slept_ms"], 1);

    // A response larger than Lambda carries is an error naming the limit, and the runtime goes
    // on after it too.
    let flood = lambda.invoke(&http_api_v2("GET", "/sleep/flood", "", None));
    let (error_type, body) = flood.error();
    assert_eq!(error_type, "Runtime.ResponseTooLarge");
    assert!(
        body["errorMessage"]
            .as_str()
            .unwrap()
            .contains("6 MB (6291456 bytes)"),
        "{body}"
    );
    let ok = lambda.invoke(&http_api_v2("GET", "/sleep/other", "", None));
    assert_eq!(body_json(ok.response())["ok"], true);

    let flows = lambda.flows();
    let timed_out = &flows[0];
    assert_eq!(timed_out["status"], 504, "{timed_out}");
    assert!(
        timed_out["error"]
            .as_str()
            .unwrap()
            .contains("exceeded its timeout"),
        "{timed_out}"
    );
}

#[test]
fn a_malformed_event_is_an_invocation_error_not_a_crash() {
    let mut lambda = Lambda::start("echo");
    let cases: Vec<(Vec<u8>, &str)> = vec![
        (b"not json".to_vec(), "the event is not JSON"),
        (
            br#"{"Records": [{"eventSource": "aws:sqs"}]}"#.to_vec(),
            "none of the shapes septa lambda serves",
        ),
        (b"[]".to_vec(), "not a JSON object"),
        (
            http_api_v2("POST", "/echo/x", "", Some(("***", true)))
                .to_string()
                .into_bytes(),
            "field `body` is marked base64 but is not valid base64",
        ),
        (
            json!({"httpMethod": "GET", "path": "/echo/x", "multiValueHeaders": {"x": [1]}})
                .to_string()
                .into_bytes(),
            "field `multiValueHeaders` holds a list with a value that is not a string",
        ),
        (
            json!({"httpMethod": "GET", "path": "/echo/x", "headers": {"bad name": "v"}})
                .to_string()
                .into_bytes(),
            "header `bad name` is not a valid HTTP header",
        ),
    ];
    for (event, expected) in cases {
        let answer = lambda.invoke_raw(&event);
        let (error_type, body) = answer.error();
        assert_eq!(error_type, "Runtime.InvalidEvent", "{body}");
        let message = body["errorMessage"].as_str().unwrap();
        assert!(message.contains(expected), "{message}");
    }
    let ok = lambda.invoke(&http_api_v2("GET", "/echo/still-here", "", None));
    assert_eq!(ok.response()["statusCode"], 200);
}

#[test]
fn a_broken_manifest_is_an_init_error_and_the_runtime_exits() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("septa.toml"),
        "septa_manifest_version = 1\n[application]\nname = \"broken\"\n[segmnt.edge]\n",
    )
    .unwrap();
    let mut lambda = Lambda::start_in(dir.path(), "echo");
    let answer = lambda.api.init_error();
    let (error_type, body) = answer.error();
    assert_eq!(error_type, "Runtime.InvalidManifest");
    let message = body["errorMessage"].as_str().unwrap();
    assert!(message.contains("septa.toml:4:"), "{message}");
    assert!(message.contains("segmnt"), "{message}");
    let status = wait_exit(&mut lambda.child);
    assert!(!status.success(), "{status}");

    // A function the manifest does not declare.
    let mut lambda = Lambda::start("nosuch");
    let answer = lambda.api.init_error();
    let (error_type, body) = answer.error();
    assert_eq!(error_type, "Runtime.UnknownFunction");
    assert!(
        body["errorMessage"]
            .as_str()
            .unwrap()
            .contains("`nosuch` is no function of"),
        "{body}"
    );
    assert!(!wait_exit(&mut lambda.child).success());
}

fn wait_exit(child: &mut Child) -> std::process::ExitStatus {
    let until = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        assert!(Instant::now() < until, "septa lambda did not exit");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn the_packaged_zip_runs_as_lambda_runs_it() {
    build_components();
    let work = tempfile::tempdir().unwrap();
    let zip = work.path().join("echo.zip");
    let packaged = Command::new(common::repo().join("scripts/package-lambda"))
        .args([
            "--function",
            "echo",
            "--binary",
            env!("CARGO_BIN_EXE_septa"),
            "--out",
        ])
        .arg(&zip)
        .arg(case("lambda"))
        .stdout(Stdio::null())
        .status()
        .unwrap();
    assert!(packaged.success(), "{packaged}");
    let task = work.path().join("task");
    let unzipped = Command::new("unzip")
        .args(["-q", "-d"])
        .arg(&task)
        .arg(&zip)
        .status()
        .unwrap();
    assert!(unzipped.success());

    // What Lambda runs: `bootstrap`, executable, at the root; only this function's component.
    use std::os::unix::fs::PermissionsExt;
    let bootstrap = task.join("bootstrap");
    let mode = std::fs::metadata(&bootstrap).unwrap().permissions().mode();
    assert_eq!(mode & 0o111, 0o111, "bootstrap is not executable: {mode:o}");
    let components = task.join("app/components/target/wasm32-wasip2/release");
    assert!(components.join("echo.wasm").is_file());
    assert!(!components.join("sleeper.wasm").exists());

    // Run as Lambda runs it: from the task root, told only where the Runtime API is. Its flow
    // records go to standard output, for CloudWatch.
    let mut command = Command::new(&bootstrap);
    command
        .current_dir(&task)
        .env("LAMBDA_TASK_ROOT", &task)
        .env("TMPDIR", work.path());
    let mut lambda = Lambda::spawn(command, work, PathBuf::new());
    let answer = lambda.invoke(&http_api_v2("GET", "/echo/packaged", "", None));
    let echoed = body_json(answer.response());
    assert_eq!(echoed["path_with_query"], "/echo/packaged");
    lambda.api.wait_polls(2);
    let printed = lambda.stdout.lock().unwrap().clone();
    let record: Value = printed
        .iter()
        .find_map(|l| serde_json::from_str(l).ok())
        .unwrap_or_else(|| panic!("no flow record on stdout: {printed:#?}"));
    assert_eq!(record["kind"], "ingress", "{record}");
    assert_eq!(record["dst"], "function:echo");
    assert_eq!(record["trace"], TRACE);
}

#[test]
fn a_route_credential_is_verified_as_the_gateway_verifies_it() {
    let mut lambda = Lambda::start("echo");
    let keyed = |key: Option<&str>| {
        let mut event = http_api_v2("GET", "/echo/keyed/orders", "", None);
        if let Some(key) = key {
            event["headers"]["x-api-key"] = json!(key);
        }
        event
    };
    let missing = lambda.invoke(&keyed(None));
    let missing = missing.response();
    assert_eq!(missing["statusCode"], 401, "{missing}");
    assert_eq!(
        missing["headers"]["www-authenticate"],
        "ApiKey realm=\"septa\""
    );
    let wrong = lambda.invoke(&keyed(Some("not-the-key")));
    let wrong = wrong.response();
    assert_eq!(wrong["statusCode"], 401);
    assert_eq!(
        wrong["headers"]["www-authenticate"],
        "ApiKey realm=\"septa\", error=\"invalid_key\""
    );
    let good = lambda.invoke(&keyed(Some("lambda-test-key")));
    let echoed = body_json(good.response());
    assert_eq!(echoed["headers"]["septa-principal"], "acme", "{echoed}");
    assert_eq!(echoed["caller"], "gateway");

    let flows = lambda.flows();
    let verdicts: Vec<(&str, &str, u64)> = flows
        .iter()
        .map(|f| {
            (
                f["verdict"].as_str().unwrap(),
                f["rule"].as_str().unwrap(),
                f["status"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        verdicts,
        [
            ("deny", "keyed", 401),
            ("deny", "keyed", 401),
            ("allow", "keyed", 200)
        ],
        "{flows:#?}"
    );
}

/// What `septa export aws` and Lambda give function `caller`: `echo`'s Lattice endpoint (the
/// fake's address), the role session's credentials and region, and the test's authority.
fn lattice_env(lattice: &FakeLattice, ca: &Path) -> Vec<(&'static str, Option<String>)> {
    vec![
        ("SEPTA_LATTICE_ECHO", Some(lattice.addr.to_string())),
        ("AWS_ACCESS_KEY_ID", Some(lattice::ACCESS_KEY_ID.to_owned())),
        (
            "AWS_SECRET_ACCESS_KEY",
            Some(lattice::SECRET_ACCESS_KEY.to_owned()),
        ),
        ("AWS_SESSION_TOKEN", Some(lattice::SESSION_TOKEN.to_owned())),
        ("AWS_REGION", Some(lattice::REGION.to_owned())),
        ("SEPTA_LAMBDA_EXTRA_CA", Some(ca.display().to_string())),
    ]
}

/// The query making the relay call `http://echo.internal{path}` with `method`, as `extra` says.
fn call_echo(method: &str, path: &str, extra: &str) -> String {
    let url = encode(&format!("http://echo.internal{path}"));
    format!("to={url}&method={method}{extra}")
}

#[test]
fn an_allowed_call_to_another_function_goes_to_its_lattice_service_signed() {
    let dir = tempfile::tempdir().unwrap();
    let pki = make_pki(dir.path(), "lattice");
    let lattice = FakeLattice::start(&pki);
    let mut caller = Lambda::start_with(&case("lambda"), "caller", &lattice_env(&lattice, &pki.ca));
    // The rule admits POST on `/echo/...`; the guest's own `septa-caller` is not sent on.
    let forged = format!("&header={}", encode("septa-caller:function:admin"));
    let allowed = caller.invoke(&http_api_v2(
        "GET",
        "/caller/",
        &call_echo("POST", "/echo/hi?b=2&a=1", &forged),
        None,
    ));
    let relayed = body_json(allowed.response());
    assert_eq!(relayed["status"], 200, "{relayed}");
    let echoed = lattice::echoed(&relayed);
    assert_eq!(echoed["lattice"], "signed", "{echoed}");
    assert_eq!(echoed["method"], "POST");
    assert_eq!(echoed["target"], "/echo/hi?b=2&a=1");
    let arrived = lattice.arrived();
    assert_eq!(arrived.len(), 1, "{arrived:#?}");
    let request = &arrived[0];
    assert_eq!(request.refused, None, "{request:#?}");
    let authorization = request.header("authorization").unwrap();
    assert!(
        authorization.contains(&format!("Credential={}/", lattice::ACCESS_KEY_ID))
            && authorization.contains(&format!(
                "/{}/vpc-lattice-svcs/aws4_request",
                lattice::REGION
            ))
            && authorization.contains(
                "SignedHeaders=host;x-amz-content-sha256;x-amz-date;x-amz-security-token,"
            ),
        "{authorization}"
    );
    assert_eq!(
        request.header("x-amz-security-token"),
        Some(lattice::SESSION_TOKEN)
    );
    assert_eq!(
        request.header("x-amz-content-sha256"),
        Some("UNSIGNED-PAYLOAD")
    );
    assert_eq!(
        request.header("host"),
        Some(lattice.addr.to_string().as_str())
    );
    // Only the chain septa carries on: the guest's own `septa-caller` stayed behind.
    let sent: Vec<&str> = request
        .headers
        .iter()
        .map(|(name, _)| name.as_str())
        .filter(|name| name.starts_with("septa-"))
        .collect();
    assert_eq!(
        sent,
        ["septa-trace", "septa-depth", "septa-deadline-ms"],
        "{request:#?}"
    );
    assert_eq!(request.header("septa-trace"), Some(TRACE));
    assert_eq!(request.header("septa-depth"), Some("1"));

    // A method the rule does not admit: refused here, never sent.
    let denied = caller.invoke(&http_api_v2(
        "GET",
        "/caller/",
        &call_echo("GET", "/echo/hi", ""),
        None,
    ));
    let relayed = body_json(denied.response());
    assert_eq!(relayed["status"], 403, "{relayed}");
    assert_eq!(relayed["denied"], true);
    assert_eq!(lattice.connections.load(Ordering::SeqCst), 1);
    assert_eq!(lattice.arrived().len(), 1);

    let flows = caller.flows();
    let mesh: Vec<&Value> = flows.iter().filter(|f| f["kind"] == "mesh").collect();
    assert_eq!(mesh.len(), 2, "{flows:#?}");
    assert_eq!(mesh[0]["src"], "function:caller");
    assert_eq!(mesh[0]["dst"], "function:echo");
    assert_eq!(mesh[0]["verdict"], "allow");
    assert_eq!(mesh[0]["rule"], "caller-to-echo");
    assert_eq!(mesh[0]["status"], 200);
    assert_eq!(mesh[0]["trace"], TRACE);
    assert_eq!(mesh[1]["verdict"], "deny");
}

#[test]
fn without_an_endpoint_or_credentials_an_allowed_call_answers_503_saying_what_is_missing() {
    let dir = tempfile::tempdir().unwrap();
    let pki = make_pki(dir.path(), "lattice");
    let lattice = FakeLattice::start(&pki);
    let unset = |name: &'static str| {
        let mut env = lattice_env(&lattice, &pki.ca);
        env.retain(|(n, _)| *n != name);
        env.push((name, None));
        env
    };
    for (missing, said) in [
        ("SEPTA_LATTICE_ECHO", "`SEPTA_LATTICE_ECHO` is not set"),
        ("AWS_SECRET_ACCESS_KEY", "`AWS_SECRET_ACCESS_KEY` not set"),
    ] {
        let mut caller = Lambda::start_with(&case("lambda"), "caller", &unset(missing));
        let answer = caller.invoke(&http_api_v2(
            "GET",
            "/caller/",
            &call_echo("POST", "/echo/hi", ""),
            None,
        ));
        let relayed = body_json(answer.response());
        assert_eq!(relayed["status"], 503, "{relayed}");
        let flows = caller.flows();
        let mesh = flows.iter().find(|f| f["kind"] == "mesh").unwrap();
        assert_eq!(mesh["verdict"], "allow", "{mesh}");
        assert_eq!(mesh["status"], 503, "{mesh}");
        assert!(
            mesh["error"].as_str().unwrap().contains(said),
            "{missing}: {mesh}"
        );
    }
    assert_eq!(lattice.connections.load(Ordering::SeqCst), 0);
}

/// `event` with `headers` added, in its shape (a list of values for Lattice v2, one for API
/// Gateway).
fn with_headers(mut event: Value, headers: &[(&str, &str)]) -> Value {
    let lists = event["version"] == "2.0" && event.get("method").is_some();
    for (name, value) in headers {
        event["headers"][*name] = if lists { json!([value]) } else { json!(value) };
    }
    event
}

/// A Lattice v2 event from function `neighbour` to `caller`, asking it to relay POST
/// `/echo/chained`.
fn relay_through_lattice(chain: &[(&str, &str)]) -> Value {
    let mut event = lattice_v2("GET", "/caller/", Some("neighbour"), None);
    event["queryStringParameters"] = json!({
        "to": ["http://echo.internal/echo/chained"],
        "method": ["POST"]
    });
    with_headers(event, chain)
}

#[test]
fn a_lattice_event_goes_on_in_its_callers_chain_and_a_loop_through_lattice_ends() {
    let dir = tempfile::tempdir().unwrap();
    let pki = make_pki(dir.path(), "lattice");
    let lattice = FakeLattice::start(&pki);
    let mut caller = Lambda::start_with(&case("lambda"), "caller", &lattice_env(&lattice, &pki.ca));
    let chain = "feedc0de12345678";

    // Three calls deep, with 20 s left: the next call leaves one deeper, in the same trace,
    // with less time left.
    let three = caller.invoke(&relay_through_lattice(&[
        ("septa-trace", chain),
        ("septa-depth", "3"),
        ("septa-deadline-ms", "20000"),
    ]));
    let relayed = body_json(three.response());
    assert_eq!(relayed["status"], 200, "{relayed}");
    let arrived = lattice.arrived();
    assert_eq!(arrived.len(), 1, "{arrived:#?}");
    assert_eq!(arrived[0].header("septa-trace"), Some(chain));
    assert_eq!(arrived[0].header("septa-depth"), Some("4"));
    let left: u64 = arrived[0]
        .header("septa-deadline-ms")
        .unwrap()
        .parse()
        .unwrap();
    assert!(left > 0 && left <= 20_000, "{left}");

    // At the deepest a chain may be, or without a depth (as a call between nodes without one),
    // the function runs but its call is refused here: a loop of functions calling each other
    // through Lattice (`caller` and `neighbour` may) ends.
    let deepest = caller.invoke(&relay_through_lattice(&[("septa-depth", "8")]));
    let relayed = body_json(deepest.response());
    assert!(
        relayed["status"].is_null() && relayed["error"].is_string(),
        "{relayed}"
    );
    let unknown = caller.invoke(&relay_through_lattice(&[]));
    assert!(body_json(unknown.response())["error"].is_string());
    assert_eq!(lattice.arrived().len(), 1);

    // An API Gateway client's chain headers are not believed: its request starts a chain.
    let event = http_api_v2(
        "GET",
        "/caller/",
        &call_echo("POST", "/echo/from-client", ""),
        None,
    );
    let client = caller.invoke(&with_headers(
        event,
        &[
            ("septa-depth", "8"),
            ("septa-trace", chain),
            ("septa-deadline-ms", "1"),
        ],
    ));
    assert_eq!(body_json(client.response())["status"], 200);
    let arrived = lattice.arrived();
    assert_eq!(arrived.len(), 2);
    assert_eq!(arrived[1].header("septa-depth"), Some("1"));
    assert_eq!(arrived[1].header("septa-trace"), Some(TRACE));

    let flows = caller.flows();
    let calls: Vec<&Value> = flows
        .iter()
        .filter(|f| f["kind"] == "mesh" && f["dst"] == "function:echo")
        .collect();
    assert_eq!(calls.len(), 4, "{flows:#?}");
    assert_eq!(calls[0]["trace"], chain);
    assert_eq!(calls[0]["verdict"], "allow");
    for refused in &calls[1..3] {
        assert_eq!(refused["verdict"], "deny", "{refused}");
        assert_eq!(
            refused["reason"], "call chain deeper than 8 hops (a loop?)",
            "{refused}"
        );
    }
    assert_eq!(calls[3]["verdict"], "allow");
    // The invocation itself is recorded in the caller's trace too.
    let invoked = flows
        .iter()
        .find(|f| f["kind"] == "mesh" && f["dst"] == "function:caller")
        .unwrap();
    assert_eq!(invoked["trace"], chain, "{invoked}");
    assert_eq!(invoked["rule"], "neighbour-to-caller");
}

#[test]
fn a_lattice_event_ends_by_its_callers_deadline() {
    let mut sleeper = Lambda::start("sleeper");
    let event = with_headers(
        lattice_v2("GET", "/sleep/sleep", Some("caller"), None),
        &[("septa-depth", "1"), ("septa-deadline-ms", "100")],
    );
    let mut event = event;
    event["queryStringParameters"] = json!({ "ms": ["60000"] });
    let started = Instant::now();
    let stopped = sleeper.invoke(&event);
    let (error_type, body) = stopped.error();
    assert_eq!(error_type, "Function.Timeout");
    let message = body["errorMessage"].as_str().unwrap();
    assert!(
        message.contains("its caller's deadline passed"),
        "{message}"
    );
    // Its own timeout is 400 ms; the caller's 100 ms came first.
    assert!(started.elapsed() < Duration::from_secs(20));
    let flows = sleeper.flows();
    assert_eq!(flows[0]["status"], 504, "{flows:#?}");
}

//! A Lambda Runtime API for `septa lambda` to poll: the real protocol on a loopback socket
//! (`invocation/next`, `invocation/ID/response`, `invocation/ID/error`, `init/error`), fed
//! from a queue of events the test pushes, recording what the runtime posts back.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, dead_code)]

use std::collections::{HashMap, VecDeque};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant, SystemTime};

use serde_json::Value;

/// What the runtime posted for one invocation, or at start-up.
#[derive(Debug, Clone)]
pub enum Answer {
    /// `POST invocation/ID/response`: the response document.
    Response(Value),
    /// `POST invocation/ID/error` or `init/error`: `Lambda-Runtime-Function-Error-Type` and
    /// the JSON body.
    Error { error_type: String, body: Value },
}

impl Answer {
    /// The response document; panics on an error.
    pub fn response(&self) -> &Value {
        match self {
            Self::Response(document) => document,
            Self::Error { error_type, body } => {
                panic!("expected a response, got error {error_type}: {body}")
            }
        }
    }

    /// The error type and body; panics on a response.
    pub fn error(&self) -> (&str, &Value) {
        match self {
            Self::Error { error_type, body } => (error_type, body),
            Self::Response(document) => panic!("expected an error, got response {document}"),
        }
    }
}

#[derive(Default)]
struct State {
    queue: VecDeque<(String, u64, Vec<u8>)>,
    answers: HashMap<String, Answer>,
    init_errors: Vec<Answer>,
    /// `invocation/next` calls received.
    polls: usize,
}

/// A Runtime API server on 127.0.0.1.
pub struct RuntimeApi {
    pub addr: SocketAddr,
    state: Arc<(Mutex<State>, Condvar)>,
    ids: AtomicU64,
}

/// How long a test waits for the runtime to do something.
const PATIENCE: Duration = Duration::from_secs(60);

impl RuntimeApi {
    pub fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let state: Arc<(Mutex<State>, Condvar)> = Arc::default();
        let shared = state.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { continue };
                let state = shared.clone();
                std::thread::spawn(move || serve(stream, &state));
            }
        });
        Self {
            addr,
            state,
            ids: AtomicU64::new(1),
        }
    }

    /// Queues `event` with a deadline `within` from now and waits for what the runtime posts
    /// for it.
    pub fn invoke(&self, event: &Value, within: Duration) -> Answer {
        self.invoke_raw(event.to_string().into_bytes(), within)
    }

    /// Like [`invoke`](Self::invoke), with the event's bytes as they are.
    pub fn invoke_raw(&self, event: Vec<u8>, within: Duration) -> Answer {
        let n = self.ids.fetch_add(1, Ordering::Relaxed);
        let id = format!("8476a536-e9f4-11e8-9739-{n:012x}");
        let deadline = unix_ms() + within.as_millis() as u64;
        let (lock, ready) = &*self.state;
        lock.lock()
            .unwrap()
            .queue
            .push_back((id.clone(), deadline, event));
        ready.notify_all();
        self.wait(|s| s.answers.get(&id).cloned())
    }

    /// Waits for the runtime's first report of a failed start.
    pub fn init_error(&self) -> Answer {
        self.wait(|s| s.init_errors.first().cloned())
    }

    /// Waits until the runtime has asked for `n` invocations, so that it has finished (and
    /// flushed the flow records of) everything before the last.
    pub fn wait_polls(&self, n: usize) {
        self.wait(|s| (s.polls >= n).then_some(()));
    }

    fn wait<T>(&self, mut found: impl FnMut(&State) -> Option<T>) -> T {
        let (lock, changed) = &*self.state;
        let until = Instant::now() + PATIENCE;
        let mut state = lock.lock().unwrap();
        loop {
            if let Some(found) = found(&state) {
                return found;
            }
            let left = until.saturating_duration_since(Instant::now());
            assert!(!left.is_zero(), "the runtime did not answer in time");
            state = changed.wait_timeout(state, left).unwrap().0;
        }
    }
}

fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

/// Serves the requests of one connection.
fn serve(stream: TcpStream, state: &(Mutex<State>, Condvar)) {
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut stream = stream;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 {
            return;
        }
        let mut parts = line.split_whitespace();
        let (method, path) = (
            parts.next().unwrap_or_default().to_owned(),
            parts.next().unwrap_or_default().to_owned(),
        );
        let mut headers = HashMap::new();
        loop {
            let mut header = String::new();
            reader.read_line(&mut header).unwrap();
            let header = header.trim_end();
            if header.is_empty() {
                break;
            }
            let (name, value) = header.split_once(':').unwrap();
            headers.insert(name.trim().to_ascii_lowercase(), value.trim().to_owned());
        }
        let length: usize = headers
            .get("content-length")
            .map_or(0, |l| l.parse().unwrap());
        let mut body = vec![0; length];
        reader.read_exact(&mut body).unwrap();
        let answer = handle(&method, &path, &headers, &body, state);
        if stream.write_all(&answer).is_err() {
            return;
        }
    }
}

fn handle(
    method: &str,
    path: &str,
    headers: &HashMap<String, String>,
    body: &[u8],
    state: &(Mutex<State>, Condvar),
) -> Vec<u8> {
    let (lock, changed) = state;
    let route = path.strip_prefix("/2018-06-01/runtime/").unwrap_or("");
    if method == "GET" && route == "invocation/next" {
        let mut s = lock.lock().unwrap();
        s.polls += 1;
        changed.notify_all();
        let (id, deadline, event) = loop {
            if let Some(next) = s.queue.pop_front() {
                break next;
            }
            s = changed.wait(s).unwrap();
        };
        drop(s);
        let mut head = format!(
            "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nLambda-Runtime-Aws-Request-Id: {id}\r\nLambda-Runtime-Deadline-Ms: {deadline}\r\nLambda-Runtime-Invoked-Function-Arn: arn:aws:lambda:eu-west-1:123456789012:function:test\r\nLambda-Runtime-Trace-Id: Root=1-5bef4de7-ad49b0e87f6ef6c87fc2e700;Parent=9a9197af755a6419;Sampled=1\r\n\r\n",
            event.len()
        )
        .into_bytes();
        head.extend_from_slice(&event);
        return head;
    }
    let json: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    let error = || Answer::Error {
        error_type: headers
            .get("lambda-runtime-function-error-type")
            .cloned()
            .unwrap_or_default(),
        body: json.clone(),
    };
    let recorded = match route.split('/').collect::<Vec<_>>().as_slice() {
        ["invocation", id, "response"] if method == "POST" => {
            let mut s = lock.lock().unwrap();
            s.answers
                .insert((*id).to_owned(), Answer::Response(json.clone()));
            true
        }
        ["invocation", id, "error"] if method == "POST" => {
            let mut s = lock.lock().unwrap();
            s.answers.insert((*id).to_owned(), error());
            true
        }
        ["init", "error"] if method == "POST" => {
            lock.lock().unwrap().init_errors.push(error());
            true
        }
        _ => false,
    };
    changed.notify_all();
    let (status, text) = if recorded {
        ("202 Accepted", r#"{"status":"OK"}"#)
    } else {
        ("404 Not Found", r#"{"errorMessage":"no such path"}"#)
    };
    format!(
        "HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{text}",
        text.len()
    )
    .into_bytes()
}

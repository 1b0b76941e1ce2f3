//! Sending alerts, off the flow log's writer thread: a bounded queue to one delivery thread,
//! which posts webhooks and runs commands a few at a time, each within its timeout. A failure is
//! logged and counted, never retried; a full queue drops the alert (counted) rather than wait.

use std::io::Write;
use std::path::Path;
use std::process::{Command, ExitStatus, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::header::{CONTENT_TYPE, HOST, USER_AGENT};
use http::{Request, StatusCode};
use http_body_util::Full;
use hyper_util::rt::TokioIo;
use septa_flows::LogThrottle;
use septa_manifest::{AlertSink, WebhookUrl};
use tokio::sync::{Semaphore, mpsc};
use tokio::task::JoinSet;

use super::counts::{AlertCounts, AlertOutcome};
use super::evaluate::Delivery;
use crate::token::TOKEN_ENV;

/// Alerts that may wait for the delivery thread; more are dropped.
pub(crate) const QUEUE_CAPACITY: usize = 256;

/// Deliveries in progress at once.
const CONCURRENT_DELIVERIES: usize = 4;

/// How often a running command is checked for having exited.
const COMMAND_POLL: Duration = Duration::from_millis(10);

/// The header naming the alert on a webhook request.
const ALERT_HEADER: &str = "septa-alert";

/// Why a delivery failed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum DeliveryError {
    #[error("cannot encode the alert: {0}")]
    Encode(#[from] serde_json::Error),
    #[error("cannot connect to `{url}`: {source}")]
    Connect { url: String, source: std::io::Error },
    #[error("the exchange with `{url}` failed: {source}")]
    Exchange { url: String, source: hyper::Error },
    #[error("cannot build the request to `{url}`: {source}")]
    Request { url: String, source: http::Error },
    #[error("`{url}` answered {status}")]
    Status { url: String, status: StatusCode },
    #[error("`{url}` did not answer within {} ms", .timeout.as_millis())]
    Timeout { url: String, timeout: Duration },
    #[error("cannot run `{program}`: {source}")]
    Spawn {
        program: String,
        source: std::io::Error,
    },
    #[error("cannot wait for `{program}`: {source}")]
    Wait {
        program: String,
        source: std::io::Error,
    },
    #[error("`{program}` failed: {status}")]
    Exit { program: String, status: ExitStatus },
    #[error("`{program}` ran past {} ms and was killed", .timeout.as_millis())]
    Killed { program: String, timeout: Duration },
}

/// The writer thread's end of the delivery queue.
#[derive(Debug)]
pub(crate) struct Courier {
    queue: mpsc::Sender<Box<Delivery>>,
}

impl Courier {
    /// Starts the delivery thread, which counts each delivery's outcome into `counts` and ends
    /// once the courier is dropped and the queue is drained.
    pub(crate) fn start(counts: AlertCounts) -> std::io::Result<Self> {
        let (queue, receiver) = mpsc::channel(QUEUE_CAPACITY);
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        std::thread::Builder::new()
            .name("septa-alerts".to_owned())
            .spawn(move || runtime.block_on(deliver_all(receiver, counts)))?;
        Ok(Self { queue })
    }

    /// Queues `delivery` without waiting; a full queue drops it, and says so.
    pub(crate) fn send(&self, delivery: Box<Delivery>) -> Result<(), Box<Delivery>> {
        self.queue.try_send(delivery).map_err(|e| match e {
            mpsc::error::TrySendError::Full(d) | mpsc::error::TrySendError::Closed(d) => d,
        })
    }
}

async fn deliver_all(mut queue: mpsc::Receiver<Box<Delivery>>, counts: AlertCounts) {
    let slots = Arc::new(Semaphore::new(CONCURRENT_DELIVERIES));
    let mut running = JoinSet::new();
    while let Some(delivery) = queue.recv().await {
        let Ok(slot) = slots.clone().acquire_owned().await else {
            break;
        };
        let counts = counts.clone();
        running.spawn(async move {
            let alert = delivery.event.alert.clone();
            let outcome = match deliver(&delivery).await {
                Ok(()) => {
                    tracing::debug!(alert = %alert, "alert sent");
                    AlertOutcome::Sent
                }
                Err(error) => {
                    // A sink that is down fails every alert: a few lines, the others counted.
                    static FAILED: LogThrottle<()> = LogThrottle::per_request();
                    if let Some(suppressed) = FAILED.admit(()) {
                        tracing::warn!(alert = %alert, %error, suppressed, "alert not delivered");
                    }
                    AlertOutcome::Failed
                }
            };
            counts.count(&alert, outcome);
            drop(slot);
        });
        while running.try_join_next().is_some() {}
    }
    while running.join_next().await.is_some() {}
}

/// Sends one alert to its sink, within the sink's timeout.
pub(crate) async fn deliver(delivery: &Delivery) -> Result<(), DeliveryError> {
    let mut body = serde_json::to_vec(&delivery.event)?;
    let sink = &delivery.sink;
    let alert = &delivery.event.alert;
    match &sink.target {
        AlertSink::Webhook(url) => {
            let post = post(url, alert, Bytes::from(body));
            match tokio::time::timeout(sink.timeout, post).await {
                Ok(result) => result,
                Err(_) => Err(DeliveryError::Timeout {
                    url: url.to_string(),
                    timeout: sink.timeout,
                }),
            }
        }
        AlertSink::Command { program, args } => {
            body.push(b'\n');
            run(program, args, &sink.dir, alert, body, sink.timeout).await
        }
    }
}

/// `POST`s `body` to `url`; any 2xx answer is success.
async fn post(url: &WebhookUrl, alert: &str, body: Bytes) -> Result<(), DeliveryError> {
    let shown = || url.to_string();
    let stream = tokio::net::TcpStream::connect((url.host(), url.port()))
        .await
        .map_err(|source| DeliveryError::Connect {
            url: shown(),
            source,
        })?;
    let exchange = |source| DeliveryError::Exchange {
        url: shown(),
        source,
    };
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(exchange)?;
    let request = Request::post(url.path_and_query())
        .header(HOST, url.authority())
        .header(CONTENT_TYPE, "application/json")
        .header(USER_AGENT, concat!("septa/", env!("CARGO_PKG_VERSION")))
        .header(ALERT_HEADER, alert)
        .body(Full::new(body))
        .map_err(|source| DeliveryError::Request {
            url: shown(),
            source,
        })?;
    // The connection is driven here rather than spawned, so nothing outlives the timeout.
    // A receiver that answers and closes at once may end the connection before the answer is
    // taken: the answer (or why there is none) is then still waiting in `response`.
    let mut connection = std::pin::pin!(connection);
    let mut response = std::pin::pin!(sender.send_request(request));
    let response = tokio::select! {
        response = &mut response => response,
        ended = &mut connection => {
            ended.map_err(exchange)?;
            response.await
        }
    }
    .map_err(exchange)?;
    let status = response.status();
    if !status.is_success() {
        return Err(DeliveryError::Status {
            url: shown(),
            status,
        });
    }
    Ok(())
}

/// Runs `program` with `args` in `dir`, no shell, `input` on its standard input; exit status 0
/// is success. Killed once it runs past `timeout`.
async fn run(
    program: &Path,
    args: &[String],
    dir: &Path,
    alert: &str,
    input: Vec<u8>,
    timeout: Duration,
) -> Result<(), DeliveryError> {
    let shown = || program.display().to_string();
    let mut child = Command::new(program)
        .args(args)
        .current_dir(dir)
        // The admin token is septa's; an alert command has no business with it.
        .env_remove(TOKEN_ENV)
        .env("SEPTA_ALERT", alert)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .map_err(|source| DeliveryError::Spawn {
            program: shown(),
            source,
        })?;
    if let Some(mut stdin) = child.stdin.take() {
        // On a thread of its own: a program that never reads its input must not hold up the
        // deadline below. Killing the program breaks the pipe, which ends the thread.
        let writer = std::thread::Builder::new()
            .name("septa-alert-stdin".to_owned())
            .spawn(move || {
                let _ = stdin.write_all(&input);
            });
        if let Err(source) = writer {
            let _ = child.kill();
            let _ = child.wait();
            return Err(DeliveryError::Spawn {
                program: shown(),
                source,
            });
        }
    }
    let deadline = Instant::now() + timeout;
    loop {
        match child.try_wait() {
            Ok(Some(status)) if status.success() => return Ok(()),
            Ok(Some(status)) => {
                return Err(DeliveryError::Exit {
                    program: shown(),
                    status,
                });
            }
            Ok(None) => {}
            Err(source) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(DeliveryError::Wait {
                    program: shown(),
                    source,
                });
            }
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            return Err(DeliveryError::Killed {
                program: shown(),
                timeout,
            });
        }
        tokio::time::sleep(COMMAND_POLL).await;
    }
}

#[cfg(test)]
mod tests {
    use std::io::{BufRead, BufReader, Read};
    use std::net::{SocketAddr, TcpListener, TcpStream};
    use std::sync::mpsc as std_mpsc;

    use septa_flows::{FlowKind, FlowRecord, Verdict};

    use super::*;
    use crate::alerts::event::{AlertEvent, Header};
    use crate::alerts::rules::Sink;

    /// One request a test receiver got: its head (request line and headers) and its body.
    struct Received {
        head: String,
        body: String,
    }

    /// A webhook receiver on 127.0.0.1 answering every request with `status`.
    fn receiver(status: u16) -> (SocketAddr, std_mpsc::Receiver<Received>) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let (tx, rx) = std_mpsc::channel();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { return };
                let received = read_request(&stream);
                let answer = format!("HTTP/1.1 {status} X\r\ncontent-length: 0\r\n\r\n");
                let _ = (&stream).write_all(answer.as_bytes());
                if tx.send(received).is_err() {
                    return;
                }
            }
        });
        (addr, rx)
    }

    fn read_request(stream: &TcpStream) -> Received {
        let mut reader = BufReader::new(stream);
        let mut head = String::new();
        loop {
            let mut line = String::new();
            reader.read_line(&mut line).unwrap();
            if line == "\r\n" || line.is_empty() {
                break;
            }
            head.push_str(&line);
        }
        let length: usize = head
            .lines()
            .find_map(|l| {
                l.to_ascii_lowercase()
                    .strip_prefix("content-length:")
                    .map(|v| v.trim().parse().unwrap())
            })
            .unwrap_or(0);
        let mut body = vec![0; length];
        reader.read_exact(&mut body).unwrap();
        Received {
            head,
            body: String::from_utf8(body).unwrap(),
        }
    }

    /// A receiver that accepts connections and never answers.
    fn silent() -> SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        std::thread::spawn(move || {
            let mut held = Vec::new();
            for stream in listener.incoming() {
                held.push(stream);
            }
        });
        addr
    }

    fn delivery(target: AlertSink, timeout_ms: u64) -> Delivery {
        let mut record = FlowRecord::new(
            FlowKind::Mesh,
            "function:front",
            "function:vault",
            Verdict::Deny,
            "no allow rule matches",
        );
        record.method = Some("GET".to_owned());
        let header = Header {
            alert: Arc::from("lateral"),
            on: "lateral_movement",
            application: Arc::from("alerting"),
            suppressed: 0,
        };
        Delivery {
            sink: Arc::new(Sink {
                target,
                timeout: Duration::from_millis(timeout_ms),
                dir: Arc::from(std::env::temp_dir().as_path()),
            }),
            event: AlertEvent::lateral_movement(header, &Arc::new(record)),
        }
    }

    fn webhook(addr: SocketAddr, path: &str) -> AlertSink {
        AlertSink::Webhook(WebhookUrl::parse(&format!("http://{addr}{path}")).unwrap())
    }

    fn command(argv: &[&str]) -> AlertSink {
        AlertSink::Command {
            program: argv[0].into(),
            args: argv[1..].iter().map(|a| (*a).to_owned()).collect(),
        }
    }

    #[tokio::test]
    async fn a_webhook_gets_the_alert_as_a_json_post() {
        let (addr, got) = receiver(204);
        let sent = delivery(webhook(addr, "/hooks/septa?team=sec"), 5_000);
        deliver(&sent).await.unwrap();
        let request = got.recv_timeout(Duration::from_secs(5)).unwrap();
        assert!(
            request
                .head
                .starts_with("POST /hooks/septa?team=sec HTTP/1.1\r\n"),
            "{}",
            request.head
        );
        let head = request.head.to_ascii_lowercase();
        assert!(head.contains("content-type: application/json"), "{head}");
        assert!(head.contains("septa-alert: lateral"), "{head}");
        assert!(head.contains(&format!("host: {addr}")), "{head}");
        let json: serde_json::Value = serde_json::from_str(&request.body).unwrap();
        assert_eq!(json["alert"], "lateral");
        assert_eq!(json["on"], "lateral_movement");
        assert_eq!(json["application"], "alerting");
        assert_eq!(json["source"], "function:front");
        assert_eq!(json["flows"][0]["dst"], "function:vault");
        assert_eq!(json["flows"][0]["reason"], "no allow rule matches");
        assert!(json.get("reload").is_none() && json.get("denials").is_none());
    }

    #[tokio::test]
    async fn a_webhook_that_refuses_is_down_or_hangs_fails_in_time() {
        let (addr, _got) = receiver(500);
        let e = deliver(&delivery(webhook(addr, "/"), 5_000))
            .await
            .unwrap_err();
        assert!(
            e.to_string()
                .ends_with("answered 500 Internal Server Error"),
            "{e}"
        );

        let closed = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap();
        let e = deliver(&delivery(webhook(closed, "/"), 5_000))
            .await
            .unwrap_err();
        assert!(e.to_string().starts_with("cannot connect to"), "{e}");

        let started = Instant::now();
        let e = deliver(&delivery(webhook(silent(), "/"), 200))
            .await
            .unwrap_err();
        assert!(
            e.to_string().ends_with("did not answer within 200 ms"),
            "{e}"
        );
        assert!(started.elapsed() < Duration::from_secs(2));
    }

    #[tokio::test]
    async fn a_command_gets_the_alert_on_stdin_and_no_admin_token() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("alert.json");
        let script =
            "cat > \"$1\"; printf '%s' \"${SEPTA_ADMIN_TOKEN-unset} $SEPTA_ALERT\" > \"$1.env\"";
        let argv = ["/bin/sh", "-c", script, "sh", out.to_str().unwrap()];
        deliver(&delivery(command(&argv), 5_000)).await.unwrap();
        let json: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&out).unwrap()).unwrap();
        assert_eq!(json["alert"], "lateral");
        assert_eq!(json["flows"][0]["src"], "function:front");
        let env = std::fs::read_to_string(dir.path().join("alert.json.env")).unwrap();
        assert_eq!(env, "unset lateral");
    }

    #[tokio::test]
    async fn a_command_that_fails_is_missing_or_overruns_is_a_failure() {
        let e = deliver(&delivery(command(&["/bin/false"]), 5_000))
            .await
            .unwrap_err();
        assert!(e.to_string().contains("failed: exit status: 1"), "{e}");

        let e = deliver(&delivery(command(&["/nonexistent/page"]), 5_000))
            .await
            .unwrap_err();
        assert!(
            e.to_string().starts_with("cannot run `/nonexistent/page`"),
            "{e}"
        );

        let started = Instant::now();
        // It never reads its input, and would run for a minute.
        let e = deliver(&delivery(command(&["/bin/sleep", "60"]), 200))
            .await
            .unwrap_err();
        assert!(
            e.to_string().ends_with("ran past 200 ms and was killed"),
            "{e}"
        );
        assert!(started.elapsed() < Duration::from_secs(5));
    }

    #[test]
    fn a_full_queue_drops_instead_of_waiting() {
        let counts = AlertCounts::default();
        let courier = Courier::start(counts.clone()).unwrap();
        let addr = silent();
        let mut dropped = 0;
        let started = Instant::now();
        for _ in 0..QUEUE_CAPACITY + 50 {
            let sent = Box::new(delivery(webhook(addr, "/"), 60_000));
            if courier.send(sent).is_err() {
                dropped += 1;
            }
        }
        assert!(started.elapsed() < Duration::from_secs(1), "sending waited");
        // At most the deliveries in flight and one in hand left the queue.
        assert!(
            (50 - CONCURRENT_DELIVERIES - 1..=50).contains(&dropped),
            "{dropped} dropped"
        );
    }
}

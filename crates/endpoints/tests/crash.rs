//! A put the embedded backend acknowledged survives `kill -9` of the process that made it.
//!
//! The test binary runs itself again as a writer (the `writer` test, which does nothing unless
//! `SEPTA_CRASH_WRITER` names a file): it puts keys in a loop and prints each key once its put
//! returned. The parent kills it with SIGKILL mid-loop, reopens the file and checks that every
//! printed key is there with its value. Several rounds write into the same file, each killed
//! after a different number of acknowledgements.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use septa_endpoints::{Backend, Condition, Store, StoreOptions};

const WRITER_ENV: &str = "SEPTA_CRASH_WRITER";
const ROUND_ENV: &str = "SEPTA_CRASH_ROUND";
const ACK: &str = "acked ";
/// The writer stops on its own after this many puts, if nobody killed it.
const MAX_PUTS: usize = 20_000;

fn value_of(key: &str) -> String {
    format!("value of {key}")
}

async fn open(path: &std::path::Path) -> Store {
    let backend = Backend::Embedded {
        path: path.to_owned(),
    };
    Store::open("crash", &backend, StoreOptions::default())
        .await
        .unwrap()
}

/// The child's side: put keys until killed (or `MAX_PUTS`), printing each acknowledged key.
#[tokio::test]
async fn writer() {
    let Some(path) = std::env::var_os(WRITER_ENV) else {
        return;
    };
    let round = std::env::var(ROUND_ENV).unwrap();
    let store = open(path.as_ref()).await;
    let mut stdout = std::io::stdout().lock();
    for i in 0..MAX_PUTS {
        let key = format!("round-{round}/{i:05}");
        store
            .put(&key, value_of(&key).into(), None, Condition::Any)
            .await
            .unwrap();
        writeln!(stdout, "{ACK}{key}").unwrap();
        stdout.flush().unwrap();
    }
}

#[tokio::test]
async fn acknowledged_puts_survive_kill_9() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("endpoint.redb");
    let mut acknowledged = Vec::new();
    for (round, kill_after) in [5usize, 40, 150].into_iter().enumerate() {
        let acked = run_writer_and_kill(&path, round, kill_after);
        assert!(
            acked.len() >= kill_after,
            "round {round}: the writer acknowledged only {} puts before the deadline",
            acked.len()
        );
        acknowledged.extend(acked);

        let store = open(&path).await;
        for key in &acknowledged {
            let entry = store
                .get(key)
                .await
                .unwrap_or_else(|e| panic!("round {round}: acknowledged `{key}` is lost: {e}"));
            assert_eq!(
                entry.value,
                value_of(key).as_bytes(),
                "round {round}: `{key}`"
            );
        }
        // The file takes writes again after the crash.
        store
            .put("after-crash", "ok".into(), None, Condition::Any)
            .await
            .unwrap();
    }
}

/// Runs the writer until it has acknowledged `kill_after` puts (or 20 s passed), kills it
/// with SIGKILL, and returns every key it acknowledged, including any printed before it died.
fn run_writer_and_kill(path: &std::path::Path, round: usize, kill_after: usize) -> Vec<String> {
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args(["writer", "--exact", "--nocapture", "--test-threads=1"])
        .env(WRITER_ENV, path)
        .env(ROUND_ENV, round.to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (lines_tx, lines) = mpsc::channel();
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if let Some(key) = line.strip_prefix(ACK)
                && lines_tx.send(key.to_owned()).is_err()
            {
                break;
            }
        }
    });

    let mut acked = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    while acked.len() < kill_after {
        let left = deadline.saturating_duration_since(Instant::now());
        match lines.recv_timeout(left) {
            Ok(key) => acked.push(key),
            Err(_) => break,
        }
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    reader.join().unwrap();
    acked.extend(lines.try_iter());
    acked
}

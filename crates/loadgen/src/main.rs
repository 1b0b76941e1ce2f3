//! `septa-load`: a closed-loop HTTP/1.1 load generator for septa's benchmarks.
//!
//! `--connections` keep-alive connections each send the next request as soon as the previous
//! answer has been read, for `--duration` after a `--warmup`, on one thread (pin it to a core of
//! its own with `taskset`). It prints one JSON object: requests, requests per second, latency
//! percentiles in microseconds, and the count of each status, so scripts can compute ratios
//! between runs made back to back on the same machine.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use bytes::Bytes;
use clap::Parser;
use http_body_util::{BodyExt, Empty};
use hyper::Request;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

#[derive(Parser, Debug)]
#[command(
    name = "septa-load",
    about = "closed-loop HTTP/1.1 load: fixed connections for a fixed time"
)]
struct Args {
    /// The server, `HOST:PORT` (loopback in benchmarks).
    #[arg(long)]
    addr: SocketAddr,
    /// The request path, with its query.
    #[arg(long, default_value = "/")]
    path: String,
    /// Extra request headers, `NAME: VALUE`, repeatable.
    #[arg(long = "header", short = 'H')]
    headers: Vec<String>,
    /// Keep-alive connections, each with one request in flight.
    #[arg(long, default_value_t = 32)]
    connections: usize,
    /// Seconds of measured load.
    #[arg(long, default_value_t = 10.0)]
    duration: f64,
    /// Seconds of load before measuring (caches, pools, branch predictors).
    #[arg(long, default_value_t = 2.0)]
    warmup: f64,
}

/// What one connection saw during the measured window.
#[derive(Default)]
struct Tally {
    latencies_us: Vec<u32>,
    statuses: BTreeMap<u16, u64>,
    errors: u64,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let mut headers = Vec::new();
    for h in &args.headers {
        let Some((name, value)) = h.split_once(':') else {
            bail!("header `{h}` is not `NAME: VALUE`");
        };
        headers.push((name.trim().to_owned(), value.trim().to_owned()));
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the runtime")?;
    let warmup = Duration::from_secs_f64(args.warmup);
    let measure = Duration::from_secs_f64(args.duration);
    let tallies = runtime.block_on(async {
        let start = Instant::now();
        let tasks: Vec<_> = (0..args.connections)
            .map(|_| {
                let headers = headers.clone();
                let path = args.path.clone();
                tokio::spawn(connection(args.addr, path, headers, start, warmup, measure))
            })
            .collect();
        let mut tallies = Vec::new();
        for t in tasks {
            tallies.push(t.await.context("a connection task failed")?);
        }
        anyhow::Ok(tallies)
    });
    let tallies = tallies?;
    let mut latencies: Vec<u32> = tallies
        .iter()
        .flat_map(|t| t.latencies_us.iter().copied())
        .collect();
    latencies.sort_unstable();
    let mut statuses: BTreeMap<u16, u64> = BTreeMap::new();
    for t in &tallies {
        for (s, n) in &t.statuses {
            *statuses.entry(*s).or_default() += n;
        }
    }
    let errors: u64 = tallies.iter().map(|t| t.errors).sum();
    let percentile = |p: f64| -> u32 {
        if latencies.is_empty() {
            return 0;
        }
        let i = ((latencies.len() as f64 - 1.0) * p).round() as usize;
        latencies[i.min(latencies.len() - 1)]
    };
    let report = serde_json::json!({
        "path": args.path,
        "connections": args.connections,
        "seconds": args.duration,
        "requests": latencies.len(),
        "rps": latencies.len() as f64 / args.duration,
        "p50_us": percentile(0.50),
        "p90_us": percentile(0.90),
        "p99_us": percentile(0.99),
        "max_us": latencies.last().copied().unwrap_or(0),
        "statuses": statuses,
        "errors": errors,
    });
    println!("{report}");
    Ok(())
}

/// One keep-alive connection: requests back to back until the window closes, reconnecting
/// when the server closes.
async fn connection(
    addr: SocketAddr,
    path: String,
    headers: Vec<(String, String)>,
    start: Instant,
    warmup: Duration,
    measure: Duration,
) -> Tally {
    let mut tally = Tally::default();
    let end = warmup + measure;
    while start.elapsed() < end {
        let Ok(stream) = TcpStream::connect(addr).await else {
            tally.errors += 1;
            tokio::time::sleep(Duration::from_millis(10)).await;
            continue;
        };
        let _ = stream.set_nodelay(true);
        let Ok((mut sender, conn)) =
            hyper::client::conn::http1::handshake::<_, Empty<Bytes>>(TokioIo::new(stream)).await
        else {
            tally.errors += 1;
            continue;
        };
        tokio::spawn(conn);
        while start.elapsed() < end {
            let mut request = Request::get(path.as_str()).header("host", addr.to_string());
            for (name, value) in &headers {
                request = request.header(name.as_str(), value.as_str());
            }
            let Ok(request) = request.body(Empty::new()) else {
                tally.errors += 1;
                return tally;
            };
            let sent = Instant::now();
            let outcome = match sender.send_request(request).await {
                Ok(response) => {
                    let status = response.status().as_u16();
                    response.into_body().collect().await.map(|_| status).ok()
                }
                Err(_) => None,
            };
            let counted = sent.duration_since(start) >= warmup && start.elapsed() < end;
            match outcome {
                Some(status) if counted => {
                    let us = u32::try_from(sent.elapsed().as_micros()).unwrap_or(u32::MAX);
                    tally.latencies_us.push(us);
                    *tally.statuses.entry(status).or_default() += 1;
                }
                Some(_) => {}
                None => {
                    if counted {
                        tally.errors += 1;
                    }
                    break;
                }
            }
            if sender.ready().await.is_err() {
                break;
            }
        }
    }
    tally
}

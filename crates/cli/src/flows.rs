//! `septa flows tail`: follow a running septa's flows in the terminal, one line per flow, from
//! the admin listener's live stream.

use std::fmt::Write as _;
use std::io::{IsTerminal, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, bail};
use bytes::Bytes;
use clap::{Args, Subcommand};
use http_body_util::{BodyExt, Empty};
use hyper::header::{AUTHORIZATION, HOST};
use hyper::{Request, StatusCode};
use septa_flows::{FlowRecord, Verdict};
use septa_monitor::{AdminToken, FlowFilter, TOKEN_ENV};

/// Where `septa flows tail` looks for the admin listener unless told.
pub(crate) const DEFAULT_ADMIN: &str = "127.0.0.1:8081";

/// `septa flows ...`.
#[derive(Subcommand)]
pub(crate) enum FlowsCommand {
    /// Print each flow a running septa decides, as it happens, from its admin listener
    /// (`septa up --admin ADDR`). Denials are red and audits yellow on a terminal.
    Tail(TailArgs),
}

/// Options of `septa flows tail`.
#[derive(Args)]
pub(crate) struct TailArgs {
    /// The application directory: its `.septa/admin-token` is used when no other token is given.
    #[arg(default_value = ".")]
    dir: PathBuf,
    /// The admin listener's address.
    #[arg(long, value_name = "ADDR", default_value = DEFAULT_ADMIN)]
    admin: SocketAddr,
    /// A file holding the admin token. Default: `SEPTA_ADMIN_TOKEN`, else DIR/.septa/admin-token.
    #[arg(long, value_name = "PATH")]
    token_file: Option<PathBuf>,
    /// Only flows of this segment.
    #[arg(long)]
    segment: Option<String>,
    /// Only flows from or to this function or endpoint.
    #[arg(long)]
    function: Option<String>,
    /// Only flows with this verdict: allow, deny or audit.
    #[arg(long)]
    verdict: Option<String>,
    /// Only flows of this kind: ingress, mesh, egress or endpoint.
    #[arg(long)]
    kind: Option<String>,
}

pub(crate) fn run(command: FlowsCommand) -> anyhow::Result<ExitCode> {
    match command {
        FlowsCommand::Tail(args) => tail(&args),
    }
}

fn tail(args: &TailArgs) -> anyhow::Result<ExitCode> {
    let filter = filter(args)?;
    let (token, origin) = token(args.token_file.as_deref(), &args.dir)?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start a runtime")?;
    runtime.block_on(follow(args.admin, &token, &origin, &filter))
}

/// The filter the flags ask for, parsed here exactly as the admin listener will parse it, so
/// that a typo is named by its flag before anything is sent.
fn filter(args: &TailArgs) -> anyhow::Result<FlowFilter> {
    let flags = [
        ("segment", &args.segment),
        ("function", &args.function),
        ("verdict", &args.verdict),
        ("kind", &args.kind),
    ];
    let query: Vec<String> = flags
        .iter()
        .filter_map(|(name, value)| value.as_ref().map(|v| format!("{name}={}", encode(v))))
        .collect();
    FlowFilter::from_query(Some(&query.join("&")))
        .map_err(|e| anyhow::anyhow!("invalid `--{}`: {}", e.parameter, e.message))
}

/// Percent-encodes every byte but ASCII letters and digits.
fn encode(value: &str) -> String {
    value
        .bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() {
                char::from(b).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// The token to present to the admin listener of the application in `dir`, and where it came
/// from (to say so if it is refused): `token_file`, else `SEPTA_ADMIN_TOKEN`, else the
/// `.septa/admin-token` that `septa up` wrote.
pub(crate) fn token(token_file: Option<&Path>, dir: &Path) -> anyhow::Result<(AdminToken, String)> {
    if let Some(path) = token_file {
        return Ok((read_token(path)?, format!("`{}`", path.display())));
    }
    if let Some(text) = std::env::var(TOKEN_ENV).ok().filter(|v| !v.is_empty()) {
        let origin = format!("`{TOKEN_ENV}`");
        return Ok((AdminToken::new(&text, &origin)?, origin));
    }
    let path = crate::admin::token_path(dir);
    if path.exists() {
        return Ok((read_token(&path)?, format!("`{}`", path.display())));
    }
    bail!(
        "no admin token: pass `--token-file PATH`, set `{TOKEN_ENV}`, or name the application directory whose `.septa/admin-token` `septa up` wrote (looked for `{}`)",
        path.display()
    )
}

fn read_token(path: &Path) -> anyhow::Result<AdminToken> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read the admin token file `{}`", path.display()))?;
    Ok(AdminToken::new(
        &text,
        &format!("file `{}`", path.display()),
    )?)
}

async fn follow(
    addr: SocketAddr,
    token: &AdminToken,
    origin: &str,
    filter: &FlowFilter,
) -> anyhow::Result<ExitCode> {
    let unreachable = || crate::admin::unreachable(addr);
    let mut sender = crate::admin::connect(addr).await?;
    let query = filter.to_query();
    let request = Request::get(format!("/flows/stream?{query}"))
        .header(HOST, addr.to_string())
        .header(AUTHORIZATION, format!("Bearer {}", token.secret()))
        .body(Empty::<Bytes>::new())
        .context("cannot build the stream request")?;
    let response = sender
        .send_request(request)
        .await
        .with_context(unreachable)?;
    let status = response.status();
    if status == StatusCode::UNAUTHORIZED {
        bail!("the admin listener at `{addr}` refused the token from {origin}");
    }
    if status != StatusCode::OK {
        let body = response.into_body().collect().await.map(|b| b.to_bytes());
        let text = body.map(|b| String::from_utf8_lossy(&b).into_owned());
        let message = text.unwrap_or_default();
        bail!("the admin listener at `{addr}` answered {status}: {message}");
    }
    eprintln!("septa: following flows from http://{addr}/flows/stream (Ctrl-C to stop)");

    let colour = Colour::detect();
    let mut body = response.into_body();
    let mut pending: Vec<u8> = Vec::new();
    while let Some(frame) = body.frame().await {
        let frame = frame.with_context(|| format!("the stream from `{addr}` broke"))?;
        let Some(data) = frame.data_ref() else {
            continue;
        };
        pending.extend_from_slice(data);
        while let Some(end) = pending.windows(2).position(|w| w == b"\n\n") {
            let event: Vec<u8> = pending.drain(..end + 2).collect();
            let Some(line) = render_event(&String::from_utf8_lossy(&event), colour) else {
                continue;
            };
            let mut out = std::io::stdout().lock();
            if writeln!(out, "{line}").and_then(|()| out.flush()).is_err() {
                // The reader went away (`| head`): that ends the tail, it is no failure.
                return Ok(ExitCode::SUCCESS);
            }
        }
    }
    bail!("the admin listener at `{addr}` ended the stream (did septa stop?)")
}

/// Whether to colour lines: only on a terminal, and never when `NO_COLOR` is set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Colour {
    On,
    Off,
}

impl Colour {
    fn detect() -> Self {
        let no_color = std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty());
        if std::io::stdout().is_terminal() && !no_color {
            Self::On
        } else {
            Self::Off
        }
    }
}

/// The line to print for one server-sent event, if any (comments print nothing).
fn render_event(event: &str, colour: Colour) -> Option<String> {
    let mut kind = "message";
    let mut data = String::new();
    for line in event.lines() {
        if let Some(value) = line.strip_prefix("event:") {
            kind = value.trim();
        } else if let Some(value) = line.strip_prefix("data:") {
            data.push_str(value.strip_prefix(' ').unwrap_or(value));
        }
    }
    match kind {
        "lost" => {
            let lost = serde_json::from_str::<serde_json::Value>(&data)
                .ok()
                .and_then(|v| v["lost"].as_u64())
                .unwrap_or(0);
            eprintln!("septa: {lost} flows were skipped because this terminal fell behind");
            None
        }
        _ if data.is_empty() => None,
        _ => match serde_json::from_str::<FlowRecord>(&data) {
            Ok(record) => Some(render_record(&record, colour)),
            Err(error) => {
                eprintln!("septa: a stream event is not a flow record ({error}): {data}");
                None
            }
        },
    }
}

/// `20:41:03.123 ingress gateway → function:storefront GET /api/products allow rule api 200 1.2ms`
fn render_record(record: &FlowRecord, colour: Colour) -> String {
    // The time of day is enough on a live tail; the date is in /flows.
    let time = record.time.get(11..23).unwrap_or(&record.time);
    let mut line = format!(
        "{time} {:<8} {} → {}",
        record.kind.as_str(),
        record.src,
        record.dst
    );
    match (&record.method, &record.path) {
        (Some(method), Some(path)) => {
            let _ = write!(line, " {method} {path}");
        }
        _ => {
            if let Some(target) = &record.target {
                let _ = write!(line, " {target}");
            }
        }
    }
    let _ = write!(line, " {}", record.verdict.as_str());
    match (record.verdict, &record.rule) {
        (Verdict::Allow, Some(rule)) => {
            let _ = write!(line, " rule {rule}");
        }
        (Verdict::Allow, None) => {}
        (_, Some(rule)) => {
            let _ = write!(line, " rule {rule}: {}", record.reason);
        }
        (_, None) => {
            let _ = write!(line, " {}", record.reason);
        }
    }
    if let Some(status) = record.status {
        let _ = write!(line, " {status}");
    }
    let _ = write!(line, " {}", latency(record.latency_us));
    let paint = match (colour, record.verdict) {
        (Colour::On, Verdict::Deny) => Some("\x1b[31m"),
        (Colour::On, Verdict::Audit) => Some("\x1b[33m"),
        _ => None,
    };
    match paint {
        Some(code) => format!("{code}{line}\x1b[0m"),
        None => line,
    }
}

fn latency(micros: u64) -> String {
    match micros {
        0..1_000 => format!("{micros}µs"),
        1_000..1_000_000 => format!("{:.1}ms", micros as f64 / 1e3),
        _ => format!("{:.2}s", micros as f64 / 1e6),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use septa_flows::FlowKind;

    use super::*;

    fn denial() -> FlowRecord {
        let mut record = FlowRecord::new(
            FlowKind::Mesh,
            "function:storefront",
            "function:ledger",
            Verdict::Deny,
            "no allow rule from `function:storefront` to `function:ledger`",
        );
        record.time = "2026-11-29T20:41:03.123Z".to_owned();
        record.method = Some("GET".to_owned());
        record.path = Some("/entries".to_owned());
        record.status = Some(403);
        record.latency_us = 1_234;
        record
    }

    #[test]
    fn a_denial_reads_as_one_line_with_its_reason_and_is_red_only_when_asked() {
        let plain = render_record(&denial(), Colour::Off);
        assert_eq!(
            plain,
            "20:41:03.123 mesh     function:storefront → function:ledger GET /entries deny no allow rule from `function:storefront` to `function:ledger` 403 1.2ms"
        );
        let red = render_record(&denial(), Colour::On);
        assert_eq!(red, format!("\x1b[31m{plain}\x1b[0m"));
    }

    #[test]
    fn an_allow_names_its_rule_and_is_never_painted() {
        let mut record = denial();
        record.verdict = Verdict::Allow;
        record.rule = Some("storefront-to-ledger".to_owned());
        record.latency_us = 80;
        let line = render_record(&record, Colour::On);
        assert!(
            line.ends_with("allow rule storefront-to-ledger 403 80µs"),
            "{line}"
        );
        assert!(!line.contains('\x1b'));
    }

    #[test]
    fn events_print_records_and_skip_comments() {
        let data = serde_json::to_string(&denial()).unwrap();
        let line = render_event(&format!("data: {data}\n\n"), Colour::Off).unwrap();
        assert!(line.contains("deny"));
        assert_eq!(render_event(": heartbeat\n\n", Colour::Off), None);
        assert_eq!(
            render_event("event: lost\ndata: {\"lost\":3}\n\n", Colour::Off),
            None
        );
    }
}

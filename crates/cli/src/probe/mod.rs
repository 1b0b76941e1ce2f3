//! `septa probe`: a live segmentation test. For every ordered pair of the gateway, functions and
//! endpoints, attempt the flow through the running septa's real enforcement path, under a probe
//! grant its admin API hands out for the probe only, and compare each verdict with what the
//! static model of a manifest predicts: the auditor's reachability graph for the pair, and the
//! compiled policy's decision for each attempt. Prints the evidence (every pair, predicted and
//! observed, with the rules) and exits 1 on any disagreement.
//!
//! Each pair is tried with every method and path a rule or route of either side names (the
//! manifest's, and the running policy's from `/model`), plus `GET /`, so a rule that exists on
//! one side only is exercised on both.

mod attempt;

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, bail};
use bytes::Bytes;
use clap::Args;
use http::header::{AUTHORIZATION, CONTENT_TYPE, HOST};
use http::{Request, StatusCode};
use http_body_util::{BodyExt, Full};
use septa_audit::{EdgeKind, Graph};
use septa_manifest::Methods;
use septa_monitor::{AdminToken, ProbeAttempt, ProbeGrant, ProbeOutcome, ProbeReport};
use septa_policy::{IngressRequest, NoFacts, Policy};
use serde_json::{Value, json};

pub(crate) use attempt::{attempt_all, new_grant_id, same_grant};

/// (method, path) pairs to attempt.
type Samples = BTreeSet<(String, String)>;

/// Attempts sent in one request.
const BATCH: usize = 2_000;

/// Options of `septa probe`.
#[derive(Args)]
pub(crate) struct ProbeArgs {
    /// The application directory (or manifest) whose policy predicts the verdicts; its
    /// `.septa/admin-token` is used when no other token is given.
    #[arg(default_value = ".")]
    dir: PathBuf,
    /// The admin listener of the running septa (`septa up --admin ADDR`).
    #[arg(long)]
    admin: SocketAddr,
    /// A file holding the admin token. Default: `SEPTA_ADMIN_TOKEN`, else DIR/.septa/admin-token.
    #[arg(long, value_name = "PATH")]
    token_file: Option<PathBuf>,
    /// `table` (every pair, then the matrix) or `json`.
    #[arg(long, default_value = "table")]
    format: Format,
    /// How long the probe grant lasts, in seconds (it is revoked when the probe ends).
    #[arg(long, default_value_t = 120)]
    grant_ttl_s: u64,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum Format {
    Table,
    Json,
}

/// One ordered pair, predicted and observed.
struct Pair {
    from: String,
    to: String,
    /// The rules of the graph's edges from `from` to `to`; empty: no flow predicted.
    predicted: BTreeSet<String>,
    /// The rules that allowed an attempt on the running septa; empty: every attempt denied.
    observed: BTreeSet<String>,
    /// Attempts whose live verdict differs from the manifest's decision.
    differing: Vec<String>,
}

impl Pair {
    fn agrees(&self) -> bool {
        self.predicted.is_empty() == self.observed.is_empty() && self.differing.is_empty()
    }
}

pub(crate) fn run(args: ProbeArgs) -> anyhow::Result<ExitCode> {
    let manifest = match septa_manifest::load(&args.dir) {
        Ok(m) => m,
        Err(diagnostics) => {
            eprintln!("{diagnostics}");
            return Ok(ExitCode::from(2));
        }
    };
    let file = manifest.file.clone();
    let policy = match crate::check::compile(manifest) {
        Ok(policy) => policy,
        Err(diagnostics) => {
            eprintln!("{diagnostics}");
            return Ok(ExitCode::from(2));
        }
    };
    let dir = policy.manifest().dir.clone();
    let (token, origin) = crate::flows::token(args.token_file.as_deref(), &dir)?;
    let admin = AdminClient {
        addr: args.admin,
        token,
        origin,
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let (pairs, live) = runtime.block_on(probe(&admin, &policy, args.grant_ttl_s))?;
    let disagreements = pairs.iter().filter(|p| !p.agrees()).count();
    let mut out = std::io::stdout().lock();
    match args.format {
        Format::Json => {
            let json = json!({
                "manifest": file.display().to_string(),
                "running": { "policy_hash": live.policy_hash, "generation": live.generation },
                "attempts": live.outcomes.len(),
                "agree": disagreements == 0,
                "pairs": pairs.iter().map(|p| json!({
                    "from": p.from, "to": p.to,
                    "predicted": if p.predicted.is_empty() { "deny" } else { "allow" },
                    "predicted_rules": p.predicted,
                    "observed": if p.observed.is_empty() { "deny" } else { "allow" },
                    "observed_rules": p.observed,
                    "differing_attempts": p.differing,
                    "agree": p.agrees(),
                })).collect::<Vec<_>>(),
            });
            writeln!(out, "{json:#}")?;
        }
        Format::Table => print_table(&mut out, &file, &live, &pairs)?,
    }
    Ok(if disagreements == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// Grants, probes every pair, revokes.
async fn probe(
    admin: &AdminClient,
    policy: &Policy,
    ttl_s: u64,
) -> anyhow::Result<(Vec<Pair>, ProbeReport)> {
    let model = admin.call("GET", "/model", None, None).await?;
    let (sources, destinations) = places(policy, &model);
    let (gateway_samples, mesh_samples) = samples(policy, &model);
    let mut attempts = Vec::new();
    for from in &sources {
        let samples = if from == "gateway" {
            &gateway_samples
        } else {
            &mesh_samples
        };
        for to in destinations.iter().filter(|to| *to != from) {
            for (method, path) in samples {
                attempts.push(ProbeAttempt {
                    from: from.clone(),
                    to: to.clone(),
                    method: method.clone(),
                    path: path.clone(),
                });
            }
        }
    }

    let granted = admin
        .call("POST", &format!("/probe/grant?ttl_s={ttl_s}"), None, None)
        .await?;
    let grant: ProbeGrant = serde_json::from_value(granted.clone()).map_err(|e| {
        anyhow::anyhow!("the admin listener granted something unreadable ({e}): {granted}")
    })?;
    let mut report: Option<ProbeReport> = None;
    let mut result = Ok(());
    for batch in attempts.chunks(BATCH) {
        let body = serde_json::to_vec(batch)?;
        match admin
            .call("POST", "/probe", Some(&grant.grant), Some(body))
            .await
            .and_then(|v| Ok(serde_json::from_value::<ProbeReport>(v)?))
        {
            Ok(part) => match &mut report {
                Some(report) if report.policy_hash != part.policy_hash => {
                    result = Err(anyhow::anyhow!(
                        "the running policy changed during the probe (a reload?): probe again"
                    ));
                    break;
                }
                Some(report) => report.outcomes.extend(part.outcomes),
                None => report = Some(part),
            },
            Err(error) => {
                result = Err(error);
                break;
            }
        }
    }
    // Revoked whatever happened: the grant must not outlive the probe.
    let revoked = admin
        .call("DELETE", "/probe/grant", Some(&grant.grant), None)
        .await;
    result?;
    revoked.context("cannot revoke the probe grant (it expires on its own)")?;
    let Some(live) = report else {
        bail!("nothing to probe: the manifest has no functions");
    };

    let graph = Graph::build(policy);
    let mut predicted: BTreeMap<(String, String), BTreeSet<String>> = BTreeMap::new();
    for edge in graph.edges() {
        if matches!(
            edge.kind,
            EdgeKind::Route | EdgeKind::Allow | EdgeKind::Audit
        ) {
            let key = (
                graph.name(edge.from).to_owned(),
                graph.name(edge.to).to_owned(),
            );
            predicted.entry(key).or_default().insert(edge.rule.clone());
        }
    }
    let mut pairs: BTreeMap<(String, String), Pair> = BTreeMap::new();
    for (attempt, outcome) in attempts.iter().zip(&live.outcomes) {
        let key = (attempt.from.clone(), attempt.to.clone());
        let pair = pairs.entry(key.clone()).or_insert_with(|| Pair {
            from: attempt.from.clone(),
            to: attempt.to.clone(),
            predicted: predicted.get(&key).cloned().unwrap_or_default(),
            observed: BTreeSet::new(),
            differing: Vec::new(),
        });
        let observed = outcome.verdict != "deny";
        if observed {
            pair.observed.insert(
                outcome
                    .rule
                    .clone()
                    .unwrap_or_else(|| "audit mode".to_owned()),
            );
        }
        let expected = decide(policy, attempt);
        if expected.is_some() != observed {
            pair.differing.push(format!(
                "{} {}: manifest says {}, running septa says {} ({})",
                attempt.method,
                attempt.path,
                expected.map_or("deny".to_owned(), |r| format!("allow ({r})")),
                outcome.verdict,
                describe(outcome)
            ));
        }
    }
    Ok((pairs.into_values().collect(), live))
}

/// What the manifest's compiled policy decides for `attempt`: the allowing rule, or `None`.
fn decide(policy: &Policy, attempt: &ProbeAttempt) -> Option<String> {
    let id_of = |identity: &str| {
        policy
            .functions()
            .iter()
            .find(|f| f.identity == identity)
            .map(|f| f.id)
    };
    if attempt.from == "gateway" {
        let request = IngressRequest::probe(&attempt.method, &attempt.path);
        let decided = policy.decide_ingress(&request, &mut NoFacts);
        return match decided.route {
            Some(route)
                if policy.function(route.function).identity == attempt.to
                    && decided.decision.verdict.permits() =>
            {
                Some(route.id.to_string())
            }
            _ => None,
        };
    }
    let (from, to) = (id_of(&attempt.from)?, id_of(&attempt.to)?);
    let decision = policy.decide_mesh(from, to, &attempt.method, &attempt.path);
    decision.verdict.permits().then(|| {
        decision
            .rule
            .map_or_else(|| "audit mode".to_owned(), |r| r.to_string())
    })
}

fn describe(outcome: &ProbeOutcome) -> String {
    match &outcome.rule {
        Some(rule) => format!("rule `{rule}`"),
        None => outcome.reason.clone(),
    }
}

/// The sources (the gateway, functions, endpoints) and destinations (functions, endpoints) of
/// the manifest and of the running policy together.
fn places(policy: &Policy, model: &Value) -> (Vec<String>, Vec<String>) {
    let mut places: BTreeSet<String> = policy
        .functions()
        .iter()
        .map(|f| f.identity.clone())
        .collect();
    for node in model["nodes"].as_array().into_iter().flatten() {
        // Only names inside the platform: the running septa refuses anything else anyway.
        if matches!(node["kind"].as_str(), Some("function" | "endpoint"))
            && let Some(id) = node["id"].as_str()
            && attempt::internal_name(id).is_ok()
        {
            places.insert(id.to_owned());
        }
    }
    let destinations: Vec<String> = places.into_iter().collect();
    let mut sources = vec!["gateway".to_owned()];
    sources.extend(destinations.iter().cloned());
    (sources, destinations)
}

/// The (method, path) pairs to try: from the gateway, every route's; between functions,
/// every allow rule's; each from the manifest and the running policy, plus `GET /`.
fn samples(policy: &Policy, model: &Value) -> (Samples, Samples) {
    let root = ("GET".to_owned(), "/".to_owned());
    let mut gateway = Samples::from([root.clone()]);
    let mut mesh = Samples::from([root]);
    for route in policy.routes() {
        for method in methods_of(&route.methods) {
            gateway.insert((method, concrete(route.pattern.as_str())));
        }
    }
    for rule in policy.allow_rules() {
        let paths: Vec<String> = match rule.paths {
            None => vec!["/".to_owned()],
            Some(paths) => paths.iter().map(|p| concrete(p.as_str())).collect(),
        };
        for method in methods_of(rule.methods) {
            for path in &paths {
                mesh.insert((method.clone(), path.clone()));
            }
        }
    }
    let texts = |v: &Value| -> Vec<String> {
        v.as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|x| x.as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default()
    };
    for route in model["routes"].as_array().into_iter().flatten() {
        let methods = texts(&route["methods"]);
        let methods = if methods.is_empty() {
            vec!["GET".to_owned()]
        } else {
            methods
        };
        if let Some(path) = route["path"].as_str() {
            for method in methods {
                gateway.insert((method, concrete(path)));
            }
        }
    }
    for edge in model["edges"].as_array().into_iter().flatten() {
        for rule in edge["rules"].as_array().into_iter().flatten() {
            if rule["kind"] != "allow" {
                continue;
            }
            let methods = texts(&rule["methods"]);
            let methods = if methods.is_empty() {
                vec!["GET".to_owned()]
            } else {
                methods
            };
            let paths = texts(&rule["paths"]);
            let paths = if paths.is_empty() {
                vec!["/".to_owned()]
            } else {
                paths.iter().map(|p| concrete(p)).collect()
            };
            for method in &methods {
                for path in &paths {
                    mesh.insert((method.clone(), path.clone()));
                }
            }
        }
    }
    (gateway, mesh)
}

fn methods_of(methods: &Methods) -> Vec<String> {
    match methods {
        Methods::Any => vec!["GET".to_owned()],
        Methods::Only(list) => list.iter().map(|m| m.to_string()).collect(),
    }
}

/// A path a pattern matches: each `{param}` and a trailing `...` become `probe`.
fn concrete(pattern: &str) -> String {
    let path: Vec<&str> = pattern
        .split('/')
        .map(|segment| {
            if segment == "..." || (segment.starts_with('{') && segment.ends_with('}')) {
                "probe"
            } else {
                segment
            }
        })
        .collect();
    path.join("/")
}

fn print_table(
    out: &mut impl Write,
    file: &std::path::Path,
    live: &ProbeReport,
    pairs: &[Pair],
) -> std::io::Result<()> {
    let short = live.policy_hash.get(..12).unwrap_or(&live.policy_hash);
    writeln!(
        out,
        "septa probe: the running policy {short} (generation {}) against {}",
        live.generation,
        file.display()
    )?;
    writeln!(
        out,
        "{} attempts through the real enforcement path, each stopped before delivery\n",
        live.outcomes.len()
    )?;
    let width = pairs
        .iter()
        .map(|p| p.from.len().max(p.to.len()))
        .max()
        .unwrap_or(8);
    let rules = |set: &BTreeSet<String>| {
        if set.is_empty() {
            "deny".to_owned()
        } else {
            format!(
                "allow ({})",
                set.iter().cloned().collect::<Vec<_>>().join(", ")
            )
        }
    };
    writeln!(
        out,
        "{:width$}  {:width$}  {:40}  {:40}  RESULT",
        "FROM", "TO", "PREDICTED", "OBSERVED"
    )?;
    for pair in pairs {
        writeln!(
            out,
            "{:width$}  {:width$}  {:40}  {:40}  {}",
            pair.from,
            pair.to,
            rules(&pair.predicted),
            rules(&pair.observed),
            if pair.agrees() { "agree" } else { "DISAGREE" }
        )?;
        for difference in &pair.differing {
            writeln!(out, "    {difference}")?;
        }
    }
    let disagreements: Vec<&Pair> = pairs.iter().filter(|p| !p.agrees()).collect();
    writeln!(
        out,
        "\n{} pairs: {} agree, {} disagree",
        pairs.len(),
        pairs.len() - disagreements.len(),
        disagreements.len()
    )?;
    for pair in disagreements {
        writeln!(
            out,
            "disagree: {} -> {}: predicted {}, observed {}",
            pair.from,
            pair.to,
            rules(&pair.predicted),
            rules(&pair.observed)
        )?;
    }
    Ok(())
}

/// Requests to the admin listener with the token.
struct AdminClient {
    addr: SocketAddr,
    token: AdminToken,
    origin: String,
}

impl AdminClient {
    /// Sends one request and returns its JSON, or says what the listener answered.
    async fn call(
        &self,
        method: &str,
        path: &str,
        grant: Option<&str>,
        body: Option<Vec<u8>>,
    ) -> anyhow::Result<Value> {
        let addr = self.addr;
        let unreachable = || crate::admin::unreachable(addr);
        let mut sender = crate::admin::connect(addr).await?;
        let mut request = Request::builder()
            .method(method)
            .uri(path)
            .header(HOST, addr.to_string())
            .header(AUTHORIZATION, format!("Bearer {}", self.token.secret()))
            .header(CONTENT_TYPE, "application/json");
        if let Some(grant) = grant {
            request = request.header(septa_monitor::PROBE_GRANT_HEADER, grant);
        }
        let request = request
            .body(Full::new(Bytes::from(body.unwrap_or_default())))
            .context("cannot build the admin request")?;
        let response = sender
            .send_request(request)
            .await
            .with_context(unreachable)?;
        let status = response.status();
        let bytes = response
            .into_body()
            .collect()
            .await
            .map(|b| b.to_bytes())
            .with_context(unreachable)?;
        if status == StatusCode::UNAUTHORIZED {
            bail!(
                "the admin listener at `{addr}` refused the token from {}",
                self.origin
            );
        }
        let value: Value = serde_json::from_slice(&bytes)
            .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()));
        if !status.is_success() {
            let message = value["error"]
                .as_str()
                .map_or(value.to_string(), str::to_owned);
            bail!(
                "`{method} {path}` on the admin listener at `{addr}` answered {status}: {message}"
            );
        }
        Ok(value)
    }
}

//! The running side of `septa probe`: each attempt goes through the enforcement path of the
//! generation in force, as the identity it names, and stops where it would be delivered.

use std::collections::HashMap;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use septa_flows::Verdict;
use septa_gateway::Gateway;
use septa_monitor::{ProbeAttempt, ProbeOutcome, ProbeRefusal};
use septa_policy::{FunctionId, Policy};
use septa_runtime::{Caller, Chain, Host, Outbound};

/// A new grant id: 32 random bytes, hex.
pub(crate) fn new_grant_id() -> String {
    let mut bytes = [0u8; 32];
    // Without randomness no grant is handed out that could be guessed: the id is then empty,
    // and an empty id never matches (see `same_grant`).
    if ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut bytes).is_err() {
        return String::new();
    }
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Whether `presented` is grant `id`, compared in constant time; an empty id is never a grant.
pub(crate) fn same_grant(id: &str, presented: &str) -> bool {
    let (a, b) = (id.as_bytes(), presented.as_bytes());
    !a.is_empty()
        && a.len() == b.len()
        && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Attempts every flow of `attempts`, in order.
pub(crate) fn attempt_all(
    policy: &Policy,
    gateway: &Gateway,
    host: &Host,
    attempts: &[ProbeAttempt],
) -> Result<Vec<ProbeOutcome>, ProbeRefusal> {
    let ids: HashMap<&str, FunctionId> = policy
        .functions()
        .iter()
        .map(|f| (f.identity.as_str(), f.id))
        .collect();
    let outbound = host.outbound();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| ProbeRefusal::BadAttempt {
            index: 0,
            message: format!("cannot start a runtime for the probe: {e}"),
        })?;
    // The probe's flows are traced from a random start, one trace per attempt.
    let seed = new_grant_id();
    let trace = u64::from_str_radix(seed.get(..16).unwrap_or("0"), 16).unwrap_or(0);
    // Every attempt is checked before the first one runs, so a bad one refuses the whole batch
    // with nothing attempted.
    for (index, attempt) in attempts.iter().enumerate() {
        check(attempt).map_err(|message| ProbeRefusal::BadAttempt { index, message })?;
    }
    runtime.block_on(async {
        let mut outcomes = Vec::with_capacity(attempts.len());
        for (index, attempt) in attempts.iter().enumerate() {
            let bad = |message: String| ProbeRefusal::BadAttempt { index, message };
            let trace = trace.wrapping_add(index as u64);
            let outcome = if attempt.from == septa_gateway::ingress::GATEWAY_IDENTITY {
                from_gateway(gateway, attempt, trace)
            } else {
                let Some(&caller) = ids.get(attempt.from.as_str()) else {
                    outcomes.push(denied(format!(
                        "`{}` is not in the running policy",
                        attempt.from
                    )));
                    continue;
                };
                let Some(outbound) = &outbound else {
                    return Err(bad("the mesh is not running".to_owned()));
                };
                from_function(&**outbound, caller, attempt, trace)
                    .await
                    .map_err(bad)?
            };
            outcomes.push(outcome);
        }
        Ok(outcomes)
    })
}

/// Refuses an attempt that is not a flow inside the platform: a method that is not one, a path
/// that is not absolute, a destination that is not a function or endpoint name.
fn check(attempt: &ProbeAttempt) -> Result<(), String> {
    if http::Method::from_bytes(attempt.method.as_bytes()).is_err() {
        return Err(format!("`{}` is not an HTTP method", attempt.method));
    }
    if !attempt.path.starts_with('/') {
        return Err(format!("path `{}` does not start with `/`", attempt.path));
    }
    internal_name(&attempt.to).map(|_| ())
}

/// The function or endpoint name of `to`: only a name the manifest could declare, since
/// anything else (`evil.example:80/x?`) would turn the mesh address `http://NAME.internal/...`
/// into a URL outside the platform.
pub(crate) fn internal_name(to: &str) -> Result<&str, String> {
    to.strip_prefix("function:")
        .or_else(|| to.strip_prefix("endpoint:"))
        .filter(|name| septa_manifest::Name::new(name).is_ok())
        .ok_or_else(|| {
            format!(
                "destination `{to}` is not `function:NAME` or `endpoint:NAME`; a probe never leaves the platform"
            )
        })
}

fn from_gateway(gateway: &Gateway, attempt: &ProbeAttempt, trace: u64) -> ProbeOutcome {
    let probe = gateway.probe(&attempt.method, &attempt.path, trace);
    match probe.destination {
        Some(to) if to == attempt.to && probe.verdict != Verdict::Deny => ProbeOutcome {
            verdict: probe.verdict.as_str().to_owned(),
            rule: probe.rule,
            reason: probe.reason,
        },
        Some(to) if to == attempt.to => denied(probe.reason),
        Some(other) => denied(format!(
            "route `{}` leads to `{other}`, not to `{}`",
            probe.rule.unwrap_or_default(),
            attempt.to
        )),
        None => denied(probe.reason),
    }
}

async fn from_function(
    outbound: &dyn Outbound,
    caller: FunctionId,
    attempt: &ProbeAttempt,
    trace: u64,
) -> Result<ProbeOutcome, String> {
    let name = internal_name(&attempt.to)?;
    let request = http::Request::builder()
        .method(attempt.method.as_str())
        .uri(format!("http://{name}.internal{}", attempt.path))
        .body(
            Empty::<Bytes>::new()
                .map_err(|never| match never {})
                .boxed_unsync(),
        )
        .map_err(|e| {
            format!(
                "cannot make a request to `{}{}`: {e}",
                attempt.to, attempt.path
            )
        })?;
    let caller = Caller {
        function: caller,
        chain: Chain::probe(trace),
    };
    let response = match outbound.send_request(caller, request, None).await {
        Ok(response) => response,
        Err(error) => return Ok(denied(format!("the mesh refused the call: {error}"))),
    };
    let status = response.status();
    let reason = response
        .headers()
        .get(septa_mesh::DENY_REASON_HEADER)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let body = response
        .into_body()
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    if status == http::StatusCode::OK {
        // Only the probe's own answer is a 200: nothing is delivered.
        if let Ok(outcome) = serde_json::from_slice::<ProbeOutcome>(&body) {
            return Ok(outcome);
        }
    }
    let reason = reason.unwrap_or_else(|| {
        serde_json::from_slice::<serde_json::Value>(&body)
            .ok()
            .and_then(|v| v["reason"].as_str().map(str::to_owned))
            .unwrap_or_else(|| format!("answered {status}"))
    });
    Ok(denied(reason))
}

fn denied(reason: String) -> ProbeOutcome {
    ProbeOutcome {
        verdict: "deny".to_owned(),
        rule: None,
        reason,
    }
}

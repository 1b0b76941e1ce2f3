//! Keeping fetched key sets fresh.
//!
//! An issuer with a `jwks_url` gets its keys from a [`JwksFetcher`], which the binary wires to
//! the mesh's egress path, so the gateway never dials on its own and the operator ceiling decides
//! the address it reaches. [`KeyRefresh`] runs one loop per such issuer on a thread of its own,
//! off the request path: fetch, install, sleep `jwks_refresh_s`; after a failure, retry with
//! backoff and keep the last good keys (or none: the issuer's routes answer 401 until a fetch
//! succeeds). A token naming an unknown key wakes the loop early through the issuer's
//! refresh signal, at most once per [`EARLY_REFRESH_INTERVAL`], so rotation works without a
//! restart while a stream of made-up `kid`s cannot turn the gateway into a fetch amplifier.
//!
//! Every fetch is one egress flow record from `gateway` to the URL, decided by
//! `Policy::decide_key_fetch` (the issuer's declaration opens it) and by the policy's decision
//! on the address dialled (`deny` inside the ceiling); a fetch that fails after that (TLS, an
//! HTTP status, a document that is not a key set) says why in the record's `error`.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, mpsc};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use septa_flows::{FlowGuard, FlowKind, FlowLog};
use septa_manifest::{JwksSource, JwtIssuer};
use septa_policy::{Decision, Policy};
use tokio::sync::{Notify, oneshot};

use super::jwks::KeySet;
use super::jwt::JwtVerifier;
use crate::ingress::GATEWAY_IDENTITY;

/// The shortest time between two refreshes asked for by tokens with unknown keys, per issuer.
pub const EARLY_REFRESH_INTERVAL: Duration = Duration::from_secs(30);

/// The first retry after a failed fetch; each further failure doubles it, up to
/// [`MAX_RETRY_DELAY`] (and never beyond the issuer's refresh interval).
pub const FIRST_RETRY_DELAY: Duration = Duration::from_secs(1);

/// The longest wait between retries of a failing fetch.
pub const MAX_RETRY_DELAY: Duration = Duration::from_secs(60);

/// How a fetch failed, as the fetcher explains it (recorded as the flow's reason).
pub type FetchError = Box<dyn std::error::Error + Send + Sync>;

/// The future of one fetch: the document's bytes, or why there are none.
pub type FetchFuture<'a> = Pin<Box<dyn Future<Output = Result<Vec<u8>, FetchError>> + Send + 'a>>;

/// Fetches an issuer's JWKS document as egress from the gateway.
///
/// Implemented outside the gateway (the binary wires it to the mesh's pinned, ceiling-checked
/// dialling), so the gateway does not grow a second way out of the platform.
pub trait JwksFetcher: Send + Sync + 'static {
    /// Fetches the document at `issuer`'s `jwks_url`. `flow` is the fetch's egress record, already
    /// allowed as the issuer's own; the fetcher adds the target and the HTTP status, and may
    /// narrow the verdict (a ceiling refusal). Any error fails the fetch.
    fn fetch<'a>(&'a self, issuer: &'a JwtIssuer, flow: &'a mut FlowGuard) -> FetchFuture<'a>;
}

/// How requests ask an issuer's refresh loop for an early fetch.
#[derive(Debug)]
pub(crate) struct RefreshSignal {
    notify: Notify,
    epoch: Instant,
    /// Milliseconds after `epoch` of the last early refresh asked for; `u64::MAX` for never.
    last_ms: AtomicU64,
}

impl RefreshSignal {
    pub(crate) fn new() -> Self {
        Self {
            notify: Notify::new(),
            epoch: Instant::now(),
            last_ms: AtomicU64::new(u64::MAX),
        }
    }

    /// Wakes the refresh loop, unless an early refresh was asked for less than
    /// [`EARLY_REFRESH_INTERVAL`] ago. Never blocks. Returns whether it woke the loop.
    pub(crate) fn request(&self) -> bool {
        let now = u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX - 1);
        let last = self.last_ms.load(Ordering::Relaxed);
        let window = u64::try_from(EARLY_REFRESH_INTERVAL.as_millis()).unwrap_or(u64::MAX);
        if last != u64::MAX && now.saturating_sub(last) < window {
            return false;
        }
        // One of the requests racing here wins the window; the others see it taken.
        if self
            .last_ms
            .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
            .is_err()
        {
            return false;
        }
        self.notify.notify_one();
        true
    }
}

/// How an issuer's first fetch went: the number of keys installed, or why there are none.
#[derive(Debug, Clone)]
pub struct FirstFetch {
    /// The issuer's name in the manifest.
    pub issuer: String,
    /// Keys installed, or the reason the fetch failed.
    pub outcome: Result<usize, String>,
}

/// The background refresh of every fetched key set; stops when dropped.
pub struct KeyRefresh {
    stop: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
    first: mpsc::Receiver<FirstFetch>,
    issuers: Vec<String>,
}

impl KeyRefresh {
    /// Starts a thread refreshing each of `issuers`' keys through `fetcher`, each fetch decided
    /// by `policy` ([`Policy::decide_key_fetch`]) and recorded to `flows`. Issuers whose keys
    /// come from a file are left alone; with none fetched, no thread starts.
    pub fn start(
        issuers: Vec<(Arc<JwtVerifier>, JwtIssuer)>,
        fetcher: Arc<dyn JwksFetcher>,
        flows: FlowLog,
        policy: &Policy,
    ) -> std::io::Result<Self> {
        let issuers: Vec<_> = issuers
            .into_iter()
            .filter(|(v, _)| v.is_fetched())
            .map(|(verifier, issuer)| {
                let decision = policy.decide_key_fetch(&issuer.name);
                (verifier, issuer, decision)
            })
            .collect();
        let (first_tx, first) = mpsc::channel();
        let names: Vec<String> = issuers
            .iter()
            .map(|(v, _, _)| v.name().to_owned())
            .collect();
        if issuers.is_empty() {
            return Ok(Self {
                stop: None,
                thread: None,
                first,
                issuers: names,
            });
        }
        let (stop, stopped) = oneshot::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("septa-jwks".to_owned())
            .spawn(move || {
                let runtime = match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(rt) => rt,
                    Err(e) => {
                        tracing::error!(error = %e, "cannot start the key refresh runtime");
                        return;
                    }
                };
                runtime.block_on(async move {
                    for (verifier, issuer, decision) in issuers {
                        tokio::spawn(keep_fresh(
                            verifier,
                            issuer,
                            decision,
                            fetcher.clone(),
                            flows.clone(),
                            first_tx.clone(),
                        ));
                    }
                    // Sender gone or a stop sent: either way, stop.
                    let _ = stopped.await;
                });
                // A DNS lookup in flight runs on a blocking thread; do not wait on it for long.
                runtime.shutdown_timeout(Duration::from_secs(1));
            })?;
        Ok(Self {
            stop: Some(stop),
            thread: Some(thread),
            first,
            issuers: names,
        })
    }

    /// The names of the issuers whose keys are fetched, in manifest order.
    pub fn issuers(&self) -> &[String] {
        &self.issuers
    }

    /// Waits up to `timeout` for every fetched issuer's first fetch and returns those that
    /// finished, in the order they did. Issuers missing from the answer are still fetching; their
    /// tokens are refused until they succeed.
    pub fn wait_first(&self, timeout: Duration) -> Vec<FirstFetch> {
        let deadline = Instant::now() + timeout;
        let mut out = Vec::new();
        while out.len() < self.issuers.len() {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.first.recv_timeout(left) {
                Ok(first) => out.push(first),
                Err(_) => break,
            }
        }
        out
    }
}

impl Drop for KeyRefresh {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// The delay before retry number `failures` (1 for the first).
fn retry_delay(failures: u32, interval: Duration) -> Duration {
    let doubled = FIRST_RETRY_DELAY.saturating_mul(1u32 << failures.saturating_sub(1).min(16));
    doubled.min(MAX_RETRY_DELAY).min(interval)
}

/// One issuer's loop: fetch now, then every refresh interval, sooner after a failure or when a
/// request asks.
async fn keep_fresh(
    verifier: Arc<JwtVerifier>,
    issuer: JwtIssuer,
    decision: Decision,
    fetcher: Arc<dyn JwksFetcher>,
    flows: FlowLog,
    first: mpsc::Sender<FirstFetch>,
) {
    let JwksSource::Url { refresh_s, .. } = &issuer.jwks else {
        return;
    };
    let Some(signal) = verifier.refresh_signal() else {
        return;
    };
    let interval = Duration::from_secs(u64::from(*refresh_s));
    let mut first = Some(first);
    let mut failures = 0u32;
    loop {
        let outcome = fetch_once(&verifier, &issuer, &decision, fetcher.as_ref(), &flows).await;
        let wait = match &outcome {
            Ok(_) => {
                failures = 0;
                interval
            }
            Err(_) => {
                failures = failures.saturating_add(1);
                retry_delay(failures, interval)
            }
        };
        if let Some(first) = first.take() {
            let _ = first.send(FirstFetch {
                issuer: issuer.name.to_string(),
                outcome,
            });
        }
        tokio::select! {
            () = tokio::time::sleep(wait) => {}
            () = signal.notify.notified() => {}
        }
    }
}

/// Fetches and installs `issuer`'s keys once, as one flow record decided by `decision`.
/// Returns the number of keys.
async fn fetch_once(
    verifier: &JwtVerifier,
    issuer: &JwtIssuer,
    decision: &Decision,
    fetcher: &dyn JwksFetcher,
    flows: &FlowLog,
) -> Result<usize, String> {
    let JwksSource::Url { url, .. } = &issuer.jwks else {
        return Err("the issuer's keys come from a file".to_owned());
    };
    let name = &issuer.name;
    let mut flow = flows.guard(FlowKind::Egress, GATEWAY_IDENTITY, url.to_string());
    flow.set_method("GET")
        .set_path(url.path_and_query())
        .set_decision(decision);
    if !decision.verdict.permits() {
        return Err(decision.reason.to_string());
    }
    let fetched = match fetcher.fetch(issuer, &mut flow).await {
        Ok(body) => KeySet::parse(&body).map_err(|e| format!("bad JWKS document: {e}")),
        Err(e) => Err(e.to_string()),
    };
    match fetched {
        Ok(keys) => {
            let count = keys.len();
            let what = if verifier.install(keys) {
                "installed"
            } else {
                "unchanged"
            };
            tracing::debug!(issuer = %name, %url, count, what, "fetched jwks");
            Ok(count)
        }
        Err(reason) => {
            let reason = format!("jwt issuer `{name}`: cannot fetch keys: {reason}");
            if verifier.has_keys() {
                tracing::warn!(%url, "{reason}; keeping the keys in use");
            } else {
                tracing::warn!(%url, "{reason}; its tokens are refused until a fetch succeeds");
            }
            flow.set_error(reason.clone());
            Err(reason)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retries_back_off_up_to_a_minute_and_never_past_the_interval() {
        let hour = Duration::from_secs(3600);
        let delays: Vec<u64> = (1..=9).map(|n| retry_delay(n, hour).as_secs()).collect();
        assert_eq!(delays, [1, 2, 4, 8, 16, 32, 60, 60, 60]);
        assert_eq!(retry_delay(40, hour), MAX_RETRY_DELAY);
        assert_eq!(
            retry_delay(9, Duration::from_secs(10)),
            Duration::from_secs(10)
        );
    }

    #[test]
    fn early_refreshes_are_asked_for_at_most_once_per_window() {
        let mut signal = RefreshSignal::new();
        if let Some(earlier) = Instant::now().checked_sub(Duration::from_secs(120)) {
            signal.epoch = earlier;
        }
        assert!(signal.request());
        assert!(!signal.request());
        assert!(!signal.request());
        // As if the last early refresh had been asked for 31 s ago.
        let now = u64::try_from(signal.epoch.elapsed().as_millis()).unwrap_or(u64::MAX);
        signal
            .last_ms
            .store(now.saturating_sub(31_000), Ordering::Relaxed);
        assert!(signal.request());
        assert!(!signal.request());
    }
}

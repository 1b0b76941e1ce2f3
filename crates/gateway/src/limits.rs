//! Rate limits: a GCRA token bucket per route and consumer key, with bounded memory, under a
//! gateway-wide ceiling.
//!
//! The key is taken after authentication and normalization, from what the host established:
//! the client address (a client-supplied `X-Forwarded-For` buys nothing unless it came through
//! a declared trusted proxy), the authenticated principal or one of its verified claims, or a
//! header the route names. When a route's key table is full and nothing in it
//! has expired, new keys are refused rather than old buckets reset, so flooding keys cannot
//! buy anyone a fresh bucket.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use http::{HeaderName, HeaderValue, StatusCode};
use septa_manifest::{RateLimit, RateLimitKey};
use septa_policy::Policy;

use crate::{Admission, Admit, Rejection};

/// Keys one route remembers at most.
const MAX_KEYS: usize = 100_000;

struct Buckets {
    limit: RateLimit,
    /// The emission interval: one request per this long, sustained.
    interval: Duration,
    /// How far ahead of now a key's theoretical arrival time may run (the burst).
    tolerance: Duration,
    /// Theoretical arrival time per key.
    tat: HashMap<String, Instant>,
}

enum Outcome {
    /// Admitted, with this many more requests admissible at once and the time until the key's
    /// bucket is full again.
    Admitted {
        remaining: u64,
        reset: Duration,
    },
    Limited {
        retry_after: Duration,
    },
    Full,
}

impl Buckets {
    fn new(limit: RateLimit) -> Self {
        let interval = Duration::from_secs(1) / limit.per_second;
        let tolerance = interval * (limit.burst - 1);
        Self {
            limit,
            interval,
            tolerance,
            tat: HashMap::new(),
        }
    }

    fn check(&mut self, key: &str, now: Instant) -> Outcome {
        if !self.tat.contains_key(key) && self.tat.len() >= MAX_KEYS {
            self.tat.retain(|_, tat| *tat > now);
            if self.tat.len() >= MAX_KEYS {
                return Outcome::Full;
            }
        }
        let tat = self.tat.get(key).copied().unwrap_or(now).max(now);
        if tat > now + self.tolerance {
            return Outcome::Limited {
                retry_after: tat - (now + self.tolerance),
            };
        }
        let next = tat + self.interval;
        match self.tat.get_mut(key) {
            Some(slot) => *slot = next,
            None => {
                self.tat.insert(key.to_owned(), next);
            }
        }
        let headroom = (now + self.tolerance + self.interval).saturating_duration_since(next);
        Outcome::Admitted {
            remaining: (headroom.as_nanos() / self.interval.as_nanos().max(1)) as u64,
            reset: next - now,
        }
    }

    /// Checks `key`, answering a refusal with the standard headers and `what` in the reason.
    fn admit(
        &mut self,
        key: &str,
        what: &str,
        response_headers: &mut Vec<(HeaderName, HeaderValue)>,
    ) -> Result<(), Rejection> {
        let outcome = self.check(key, Instant::now());
        let limit = &self.limit;
        let burst = limit.burst.to_string();
        match outcome {
            Outcome::Admitted { remaining, reset } => {
                response_headers.extend([
                    header("ratelimit-limit", burst),
                    header("ratelimit-remaining", remaining.to_string()),
                    header("ratelimit-reset", seconds(reset).to_string()),
                ]);
                Ok(())
            }
            Outcome::Limited { retry_after } => {
                let seconds = seconds(retry_after).to_string();
                Err(Rejection {
                    status: StatusCode::TOO_MANY_REQUESTS,
                    headers: vec![
                        header("retry-after", seconds.clone()),
                        header("ratelimit-limit", burst),
                        header("ratelimit-remaining", "0".to_owned()),
                        header("ratelimit-reset", seconds),
                    ],
                    reason: format!(
                        "rate limit of {what}: {} per second, burst {}, by {} (`{key}`)",
                        limit.per_second, limit.burst, limit.key
                    ),
                })
            }
            Outcome::Full => Err(Rejection {
                status: StatusCode::TOO_MANY_REQUESTS,
                headers: vec![header("retry-after", "1".to_owned())],
                reason: format!("rate limit of {what}: its key table is full"),
            }),
        }
    }
}

/// Whole seconds, rounded up, as `Retry-After` and `RateLimit-Reset` count them.
fn seconds(d: Duration) -> u64 {
    d.as_secs() + u64::from(d.subsec_nanos() > 0)
}

type SharedBuckets = Arc<Mutex<Buckets>>;

/// Every bucket table of one gateway, by what it limits (`gateway` for the ceiling,
/// `route:ID` for a route), kept so that a reloaded gateway carries them over: a limit that did
/// not change keeps its buckets, so a reload never hands anyone a fresh burst. A changed limit
/// starts afresh.
#[derive(Default)]
pub(crate) struct LimitTables {
    tables: HashMap<String, SharedBuckets>,
}

impl LimitTables {
    /// The buckets for `what` under `limit`: `previous`'s when it limited `what` the same way,
    /// else empty ones. Either way they are now this table's.
    fn adopt(
        &mut self,
        what: String,
        limit: &RateLimit,
        previous: Option<&LimitTables>,
    ) -> SharedBuckets {
        let carried = previous
            .and_then(|p| p.tables.get(&what))
            .filter(|b| b.lock().is_ok_and(|b| b.limit == *limit))
            .cloned();
        let buckets = carried.unwrap_or_else(|| Arc::new(Mutex::new(Buckets::new(limit.clone()))));
        self.tables.insert(what, buckets.clone());
        buckets
    }
}

/// The rate limits of every route that declares one.
pub struct RateLimitAdmission {
    routes: HashMap<String, SharedBuckets>,
}

impl RateLimitAdmission {
    /// Buckets for every rate-limited route of `policy`, carried over from `previous` where
    /// the route's limit is unchanged, and recorded in `tables`.
    pub(crate) fn new(
        policy: &Policy,
        tables: &mut LimitTables,
        previous: Option<&LimitTables>,
    ) -> Self {
        let routes = policy
            .routes()
            .filter_map(|r| {
                let limit = r.rate_limit.as_ref()?;
                let buckets = tables.adopt(format!("route:{}", r.id), limit, previous);
                Some((r.id.to_string(), buckets))
            })
            .collect();
        Self { routes }
    }
}

fn unavailable() -> Rejection {
    Rejection {
        status: StatusCode::SERVICE_UNAVAILABLE,
        headers: Vec::new(),
        reason: "rate limiter unavailable".to_owned(),
    }
}

fn key_of(limit: &RateLimit, admit: &Admit<'_>) -> String {
    let ip = || format!("ip:{}", admit.client);
    match &limit.key {
        RateLimitKey::Ip => ip(),
        // A route without authentication has no principal: its callers share the address key.
        RateLimitKey::Principal | RateLimitKey::ApiKey => admit
            .principal
            .as_ref()
            .map(|p| format!("principal:{}", p.name))
            .unwrap_or_else(ip),
        // Tokens without the claim share one bucket: leaving it out buys nothing.
        RateLimitKey::Claim(claim) => {
            let value = admit
                .principal
                .as_ref()
                .and_then(|p| p.claims.as_ref())
                .and_then(|c| c.text(claim));
            match value {
                Some(v) => format!("claim:{claim}={v}"),
                None => format!("claim:{claim}"),
            }
        }
        RateLimitKey::Header(name) => format!(
            "header:{}",
            admit
                .request
                .headers
                .get(name)
                .map(|v| String::from_utf8_lossy(v.as_bytes()))
                .unwrap_or_default()
        ),
        RateLimitKey::Route => "route".to_owned(),
    }
}

fn header(name: &'static str, value: String) -> (HeaderName, HeaderValue) {
    (
        HeaderName::from_static(name),
        HeaderValue::from_str(&value).unwrap_or_else(|_| HeaderValue::from_static("0")),
    )
}

impl Admission for RateLimitAdmission {
    fn admit(&self, admit: &mut Admit<'_>) -> Result<(), Rejection> {
        let Some(buckets) = self.routes.get(admit.route.id.as_str()) else {
            return Ok(());
        };
        let Ok(mut buckets) = buckets.lock() else {
            return Err(unavailable());
        };
        let key = key_of(&buckets.limit, admit);
        let what = format!("route `{}`", admit.route.id);
        buckets.admit(&key, &what, &mut admit.response_headers)
    }
}

/// `[gateway] rate_limit`: one bucket for every routed request, checked before anything that
/// costs (token verification), and enforced on routes in audit mode too.
pub struct GatewayCeiling {
    buckets: SharedBuckets,
}

impl GatewayCeiling {
    /// The ceiling `limit` declares, its buckets carried over from `previous` if unchanged.
    pub(crate) fn new(
        limit: &RateLimit,
        tables: &mut LimitTables,
        previous: Option<&LimitTables>,
    ) -> Self {
        Self {
            buckets: tables.adopt("gateway".to_owned(), limit, previous),
        }
    }
}

impl Admission for GatewayCeiling {
    fn admit(&self, _: &mut Admit<'_>) -> Result<(), Rejection> {
        let Ok(mut buckets) = self.buckets.lock() else {
            return Err(unavailable());
        };
        // The route's own limit, when it has one, sets the headers the client sees.
        let mut ignored = Vec::new();
        buckets.admit("gateway", "the gateway", &mut ignored)
    }

    fn enforced_in_audit_mode(&self) -> bool {
        true
    }
}

//! Rate limits: a GCRA token bucket per route and consumer key, with bounded memory, under a
//! gateway-wide limit. The buckets count; `Policy::decide_ingress` decides what a full bucket
//! means for the request and words the refusal.
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

use http::{HeaderMap, HeaderName, HeaderValue};
use septa_manifest::{RateLimit, RateLimitKey};
use septa_policy::{LimitOutcome, LimitRefusal, Policy, Principal};

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

    /// Counts one request of `key`, adding the standard `RateLimit-*` headers to `admitted`
    /// (for the response, whatever the function answers) or `refused` (for the refusal).
    fn count(&mut self, key: &str, headers: &mut LimitHeaders) -> LimitOutcome {
        let burst = self.limit.burst.to_string();
        match self.check(key, Instant::now()) {
            Outcome::Admitted { remaining, reset } => {
                headers.admitted.extend([
                    header("ratelimit-limit", burst),
                    header("ratelimit-remaining", remaining.to_string()),
                    header("ratelimit-reset", seconds(reset).to_string()),
                ]);
                LimitOutcome::Admitted
            }
            Outcome::Limited { retry_after } => {
                let seconds = seconds(retry_after).to_string();
                headers.refused.extend([
                    header("retry-after", seconds.clone()),
                    header("ratelimit-limit", burst),
                    header("ratelimit-remaining", "0".to_owned()),
                    header("ratelimit-reset", seconds),
                ]);
                LimitOutcome::Refused(LimitRefusal::Exceeded {
                    key: key.to_owned(),
                })
            }
            Outcome::Full => {
                headers.refused.push(header("retry-after", "1".to_owned()));
                LimitOutcome::Refused(LimitRefusal::TableFull)
            }
        }
    }
}

/// The headers a rate limit wants sent: with the response when it admitted the request, with
/// the refusal when it refused it.
#[derive(Default)]
pub(crate) struct LimitHeaders {
    pub(crate) admitted: Vec<(HeaderName, HeaderValue)>,
    pub(crate) refused: Vec<(HeaderName, HeaderValue)>,
}

/// Whole seconds, rounded up, as `Retry-After` and `RateLimit-Reset` count them.
fn seconds(d: Duration) -> u64 {
    d.as_secs() + u64::from(d.subsec_nanos() > 0)
}

type SharedBuckets = Arc<Mutex<Buckets>>;

/// Every bucket table of one gateway, by what it limits (`gateway` for the gateway-wide limit,
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

/// The buckets of `[gateway] rate_limit` and of every route that declares a limit.
pub(crate) struct RateLimits {
    gateway: Option<SharedBuckets>,
    routes: HashMap<String, SharedBuckets>,
    tables: LimitTables,
}

impl RateLimits {
    /// Buckets for every limit of `policy`, carried over from `previous` where the limit is
    /// unchanged (a reload hands no one a fresh burst).
    pub(crate) fn new(policy: &Policy, previous: Option<&RateLimits>) -> Self {
        let previous = previous.map(|p| &p.tables);
        let mut tables = LimitTables::default();
        let gateway = policy
            .gateway()
            .rate_limit
            .as_ref()
            .map(|limit| tables.adopt("gateway".to_owned(), limit, previous));
        let routes = policy
            .routes()
            .filter_map(|r| {
                let limit = r.rate_limit.as_ref()?;
                let buckets = tables.adopt(format!("route:{}", r.id), limit, previous);
                Some((r.id.to_string(), buckets))
            })
            .collect();
        Self {
            gateway,
            routes,
            tables,
        }
    }

    /// Counts one request against the gateway-wide limit. Its headers are not sent: the route's
    /// own limit, when it has one, sets what the client sees.
    pub(crate) fn count_gateway(&self) -> LimitOutcome {
        let Some(buckets) = &self.gateway else {
            return LimitOutcome::Admitted;
        };
        let Ok(mut buckets) = buckets.lock() else {
            return LimitOutcome::Refused(LimitRefusal::Unavailable);
        };
        buckets.count("gateway", &mut LimitHeaders::default())
    }

    /// Counts one request against route `route`'s limit under `key`.
    pub(crate) fn count_route(
        &self,
        route: &str,
        key: &str,
        headers: &mut LimitHeaders,
    ) -> LimitOutcome {
        let Some(buckets) = self.routes.get(route) else {
            return LimitOutcome::Admitted;
        };
        let Ok(mut buckets) = buckets.lock() else {
            return LimitOutcome::Refused(LimitRefusal::Unavailable);
        };
        buckets.count(key, headers)
    }
}

/// The key a request counts under for `limit`, from what the host established: the client
/// address, the principal or its verified claims, or a header the route names.
pub(crate) fn key_of(
    limit: &RateLimit,
    client: std::net::IpAddr,
    principal: Option<&Principal>,
    headers: &HeaderMap,
) -> String {
    let ip = || format!("ip:{client}");
    match &limit.key {
        RateLimitKey::Ip => ip(),
        // A route without authentication has no principal: its callers share the address key.
        RateLimitKey::Principal | RateLimitKey::ApiKey => principal
            .map(|p| format!("principal:{}", p.name))
            .unwrap_or_else(ip),
        // Tokens without the claim share one bucket: leaving it out buys nothing.
        RateLimitKey::Claim(claim) => {
            let value = principal
                .and_then(|p| p.claims.as_ref())
                .and_then(|c| c.text(claim));
            match value {
                Some(v) => format!("claim:{claim}={v}"),
                None => format!("claim:{claim}"),
            }
        }
        RateLimitKey::Header(name) => format!(
            "header:{}",
            headers
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

//! Rate limits: a GCRA token bucket per route and consumer key, with bounded memory.
//!
//! The key is taken after authentication and normalization, from what the host established:
//! the peer address (a client-supplied `X-Forwarded-For` buys nothing), the authenticated
//! principal, or a header the route names. When a route's key table is full and nothing in it
//! has expired, new keys are refused rather than old buckets reset, so flooding keys cannot
//! buy anyone a fresh bucket.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use http::{HeaderName, HeaderValue, StatusCode};
use septa_manifest::{RateLimit, RateLimitKey};
use septa_policy::{CompiledRoute, Policy};

use crate::auth::PRINCIPAL_HEADER;
use crate::{Admission, Rejection};

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
    Admitted,
    Limited { retry_after: Duration },
    Full,
}

impl Buckets {
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
        self.tat.insert(key.to_owned(), tat + self.interval);
        Outcome::Admitted
    }
}

/// The rate limits of every route that declares one.
pub struct RateLimitAdmission {
    routes: HashMap<String, Mutex<Buckets>>,
}

impl RateLimitAdmission {
    /// Buckets for every rate-limited route of `policy`.
    pub fn new(policy: &Policy) -> Self {
        let routes = policy
            .routes()
            .filter_map(|r| {
                let limit = r.rate_limit.clone()?;
                let interval = Duration::from_secs(1) / limit.per_second;
                let tolerance = interval * (limit.burst - 1);
                Some((
                    r.id.to_string(),
                    Mutex::new(Buckets {
                        limit,
                        interval,
                        tolerance,
                        tat: HashMap::new(),
                    }),
                ))
            })
            .collect();
        Self { routes }
    }
}

fn key_of(limit: &RateLimit, client: SocketAddr, request: &http::request::Parts) -> String {
    let header = |name: &str| {
        request
            .headers
            .get(name)
            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
    };
    match &limit.key {
        RateLimitKey::Ip => format!("ip:{}", client.ip()),
        // A route without authentication has no principal: its callers share the address key.
        RateLimitKey::Principal => header(PRINCIPAL_HEADER)
            .map(|p| format!("principal:{p}"))
            .unwrap_or_else(|| format!("ip:{}", client.ip())),
        RateLimitKey::Header(name) => format!("header:{}", header(name).unwrap_or_default()),
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
    fn admit(
        &self,
        route: &CompiledRoute,
        client: SocketAddr,
        request: &mut http::request::Parts,
    ) -> Result<(), Rejection> {
        let Some(buckets) = self.routes.get(route.id.as_str()) else {
            return Ok(());
        };
        let Ok(mut buckets) = buckets.lock() else {
            return Err(Rejection {
                status: StatusCode::SERVICE_UNAVAILABLE,
                headers: Vec::new(),
                reason: "rate limiter unavailable".to_owned(),
            });
        };
        let key = key_of(&buckets.limit, client, request);
        let limit = buckets.limit.clone();
        match buckets.check(&key, Instant::now()) {
            Outcome::Admitted => Ok(()),
            Outcome::Limited { retry_after } => {
                let seconds = retry_after.as_secs() + u64::from(retry_after.subsec_nanos() > 0);
                Err(Rejection {
                    status: StatusCode::TOO_MANY_REQUESTS,
                    headers: vec![
                        header("retry-after", seconds.to_string()),
                        header("ratelimit-limit", limit.burst.to_string()),
                        header("ratelimit-remaining", "0".to_owned()),
                        header("ratelimit-reset", seconds.to_string()),
                    ],
                    reason: format!(
                        "rate limit of route `{}`: {} per second, burst {}, by {} (`{key}`)",
                        route.id, limit.per_second, limit.burst, limit.key
                    ),
                })
            }
            Outcome::Full => Err(Rejection {
                status: StatusCode::TOO_MANY_REQUESTS,
                headers: vec![header("retry-after", "1".to_owned())],
                reason: format!("rate limit of route `{}`: its key table is full", route.id),
            }),
        }
    }
}

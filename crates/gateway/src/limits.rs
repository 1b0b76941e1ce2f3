//! Rate limits: a GCRA token bucket per route and consumer key, with bounded memory, under a
//! gateway-wide limit per client, and each client's budget of refusals. The buckets count;
//! `Policy::decide_ingress` decides what a full bucket means for the request and words the
//! refusal.
//!
//! The key is taken after authentication and normalization, from what the host established:
//! the client address (a client-supplied `X-Forwarded-For` buys nothing unless it came through
//! a declared trusted proxy), the authenticated principal or one of its verified claims, or a
//! header the route names. A table stores a fixed-size keyed digest of each key, never the key
//! itself, so its memory is bounded by its key count whatever clients send. When a route's
//! key table is full and nothing in it has expired, new keys are refused rather than old
//! buckets reset, so flooding keys cannot buy anyone a fresh bucket; a table keyed by client
//! address forgets its least used half instead (see [`WhenFull`]).

mod keys;

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use http::{HeaderName, HeaderValue};
use septa_manifest::RateLimit;
use septa_policy::{LimitOutcome, LimitRefusal, Policy};

pub(crate) use keys::key_of;
use keys::{KeyDigest, client_key, digest};

/// Keys one table remembers at most: with a fixed-size digest per key, a few MiB a table.
const MAX_KEYS: usize = 100_000;

/// How often a client past its refusal budget gets a record of its own, standing for the
/// refusals since its last one.
const AGGREGATE_INTERVAL: Duration = Duration::from_secs(1);

/// What a table does when it remembers [`MAX_KEYS`] keys, none expired, and a new one comes.
#[derive(Clone, Copy, PartialEq, Eq)]
enum WhenFull {
    /// Refuse the new key: a route's limit by principal, claim or header must not hand a
    /// consumer a fresh bucket because someone flooded keys.
    Refuse,
    /// Forget the half of the keys nearest to a full bucket: a table keyed by client address,
    /// where an attacker with that many addresses already holds that many fresh buckets, so
    /// forgetting one buys it nothing, while refusing would shut out every new client.
    ForgetNearlyFull,
}

/// One key's state.
#[derive(Clone, Copy)]
struct Slot {
    /// Theoretical arrival time: the bucket is full again at this instant.
    tat: Instant,
    /// For a refusal budget: when the key's last record past the budget was written.
    recorded_at: Option<Instant>,
    /// For a refusal budget: refusals past the budget since then, not recorded one by one.
    unrecorded: u64,
}

struct Buckets {
    limit: RateLimit,
    /// The emission interval: one request per this long, sustained.
    interval: Duration,
    /// How far ahead of now a key's theoretical arrival time may run (the burst).
    tolerance: Duration,
    when_full: WhenFull,
    slots: HashMap<KeyDigest, Slot>,
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
    fn new(limit: RateLimit, when_full: WhenFull) -> Self {
        let interval = Duration::from_secs(1) / limit.per_second;
        let tolerance = interval * (limit.burst - 1);
        Self {
            limit,
            interval,
            tolerance,
            when_full,
            slots: HashMap::new(),
        }
    }

    /// Makes room for one more key, if the table may; false when it may not.
    fn make_room(&mut self, now: Instant) -> bool {
        if self.slots.len() < MAX_KEYS {
            return true;
        }
        self.slots.retain(|_, slot| slot.tat > now);
        if self.slots.len() < MAX_KEYS {
            return true;
        }
        if self.when_full == WhenFull::Refuse {
            return false;
        }
        // Linear once per MAX_KEYS / 2 new keys, so constant per request on average.
        let mut tats: Vec<Instant> = self.slots.values().map(|slot| slot.tat).collect();
        let middle = tats.len() / 2;
        let (_, median, _) = tats.select_nth_unstable(middle);
        let median = *median;
        self.slots.retain(|_, slot| slot.tat > median);
        true
    }

    fn check(&mut self, key: &KeyDigest, now: Instant) -> Outcome {
        if !self.slots.contains_key(key) && !self.make_room(now) {
            return Outcome::Full;
        }
        let slot = self.slots.entry(*key).or_insert(Slot {
            tat: now,
            recorded_at: None,
            unrecorded: 0,
        });
        let tat = slot.tat.max(now);
        if tat > now + self.tolerance {
            return Outcome::Limited {
                retry_after: tat - (now + self.tolerance),
            };
        }
        let next = tat + self.interval;
        slot.tat = next;
        let headroom = (now + self.tolerance + self.interval).saturating_duration_since(next);
        Outcome::Admitted {
            remaining: (headroom.as_nanos() / self.interval.as_nanos().max(1)) as u64,
            reset: next - now,
        }
    }

    /// For a key past its budget: whether this refusal gets a record of its own (one per
    /// [`AGGREGATE_INTERVAL`]), and how many refusals before it went unrecorded.
    fn sample(&mut self, key: &KeyDigest, now: Instant) -> Option<u64> {
        let slot = self.slots.get_mut(key)?;
        let due = slot
            .recorded_at
            .is_none_or(|at| now.saturating_duration_since(at) >= AGGREGATE_INTERVAL);
        if !due {
            slot.unrecorded = slot.unrecorded.saturating_add(1);
            return None;
        }
        slot.recorded_at = Some(now);
        Some(std::mem::take(&mut slot.unrecorded))
    }

    /// Counts one request of `key`, adding the standard `RateLimit-*` headers to `admitted`
    /// (for the response, whatever the function answers) or `refused` (for the refusal).
    fn count(&mut self, key: &str, headers: &mut LimitHeaders) -> LimitOutcome {
        self.count_digest(key, &digest(key), Instant::now(), headers)
    }

    fn count_digest(
        &mut self,
        key: &str,
        digest: &KeyDigest,
        now: Instant,
        headers: &mut LimitHeaders,
    ) -> LimitOutcome {
        let burst = self.limit.burst.to_string();
        match self.check(digest, now) {
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
/// `refusals` for the refusal budget, `route:ID` for a route), kept so that a reloaded gateway
/// carries them over: a limit that did not change keeps its buckets, so a reload never hands
/// anyone a fresh burst. A changed limit starts afresh.
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
        when_full: WhenFull,
        previous: Option<&LimitTables>,
    ) -> SharedBuckets {
        let carried = previous
            .and_then(|p| p.tables.get(&what))
            .filter(|b| b.lock().is_ok_and(|b| b.limit == *limit))
            .cloned();
        let buckets =
            carried.unwrap_or_else(|| Arc::new(Mutex::new(Buckets::new(limit.clone(), when_full))));
        self.tables.insert(what, buckets.clone());
        buckets
    }
}

/// What the refusal budget said about one more refusal of a client.
pub(crate) struct BudgetOutcome {
    /// Whether the refusal is within the budget.
    pub(crate) outcome: LimitOutcome,
    /// Whether the refusal gets a flow record of its own: always within the budget, once per
    /// [`AGGREGATE_INTERVAL`] past it (that record counts the ones in between).
    pub(crate) recorded: bool,
}

/// The buckets of `[gateway] rate_limit` and `refusal_budget` (per client) and of every route
/// that declares a limit.
pub(crate) struct RateLimits {
    gateway: Option<SharedBuckets>,
    refusals: SharedBuckets,
    routes: HashMap<String, SharedBuckets>,
    ipv6_prefix: u8,
    tables: LimitTables,
}

impl RateLimits {
    /// Buckets for every limit of `policy`, carried over from `previous` where the limit is
    /// unchanged (a reload hands no one a fresh burst).
    pub(crate) fn new(policy: &Policy, previous: Option<&RateLimits>) -> Self {
        let previous = previous.map(|p| &p.tables);
        let mut tables = LimitTables::default();
        let spec = policy.gateway();
        let per_client = WhenFull::ForgetNearlyFull;
        let gateway = spec
            .rate_limit
            .as_ref()
            .map(|limit| tables.adopt("gateway".to_owned(), limit, per_client, previous));
        let refusals = tables.adopt(
            "refusals".to_owned(),
            &spec.refusal_budget,
            per_client,
            previous,
        );
        let routes = policy
            .routes()
            .filter_map(|r| {
                let limit = r.rate_limit.as_ref()?;
                let what = format!("route:{}", r.id);
                let buckets = tables.adopt(what, limit, WhenFull::Refuse, previous);
                Some((r.id.to_string(), buckets))
            })
            .collect();
        Self {
            gateway,
            refusals,
            routes,
            ipv6_prefix: spec.client_ipv6_prefix,
            tables,
        }
    }

    /// The key of the client at `ip` in every table keyed by client.
    pub(crate) fn client_key(&self, ip: IpAddr) -> String {
        client_key(ip, self.ipv6_prefix)
    }

    /// Counts one request of `client` (from [`RateLimits::client_key`]) against the gateway-wide
    /// limit. Its headers are sent only with a refusal: the route's own limit, when it has one,
    /// sets what an admitted client sees.
    pub(crate) fn count_gateway(&self, client: &str, headers: &mut LimitHeaders) -> LimitOutcome {
        let Some(buckets) = &self.gateway else {
            return LimitOutcome::Admitted;
        };
        let Ok(mut buckets) = buckets.lock() else {
            return LimitOutcome::Refused(LimitRefusal::Unavailable);
        };
        let mut own = LimitHeaders::default();
        let outcome = buckets.count(client, &mut own);
        headers.refused.extend(own.refused);
        outcome
    }

    /// Counts one refusal of `client` against its refusal budget. Past the budget, the refusal
    /// is recorded once per [`AGGREGATE_INTERVAL`] as an aggregate of those in between.
    pub(crate) fn count_refusal(&self, client: &str, headers: &mut LimitHeaders) -> BudgetOutcome {
        let Ok(mut buckets) = self.refusals.lock() else {
            return BudgetOutcome {
                outcome: LimitOutcome::Refused(LimitRefusal::Unavailable),
                recorded: true,
            };
        };
        let (digest, now) = (digest(client), Instant::now());
        let mut own = LimitHeaders::default();
        let outcome = buckets.count_digest(client, &digest, now, &mut own);
        headers.refused.extend(own.refused);
        let LimitOutcome::Refused(LimitRefusal::Exceeded { key }) = outcome else {
            return BudgetOutcome {
                outcome,
                recorded: true,
            };
        };
        match buckets.sample(&digest, now) {
            Some(unrecorded) => BudgetOutcome {
                outcome: LimitOutcome::Refused(LimitRefusal::Aggregated { key, unrecorded }),
                recorded: true,
            },
            None => BudgetOutcome {
                outcome: LimitOutcome::Refused(LimitRefusal::Exceeded { key }),
                recorded: false,
            },
        }
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

fn header(name: &'static str, value: String) -> (HeaderName, HeaderValue) {
    (
        HeaderName::from_static(name),
        HeaderValue::from_str(&value).unwrap_or_else(|_| HeaderValue::from_static("0")),
    )
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use septa_manifest::RateLimitKey;

    use super::*;

    fn table(when_full: WhenFull) -> Buckets {
        let limit = RateLimit {
            key: RateLimitKey::Ip,
            per_second: 1,
            burst: 5,
        };
        Buckets::new(limit, when_full)
    }

    fn flood(buckets: &mut Buckets, keys: usize) -> usize {
        let now = Instant::now();
        (0..keys)
            .filter(|i| {
                let key = format!("ip:{i}");
                matches!(buckets.check(&digest(&key), now), Outcome::Full)
            })
            .count()
    }

    #[test]
    fn a_table_keyed_by_client_stays_bounded_and_keeps_admitting_new_clients() {
        let mut buckets = table(WhenFull::ForgetNearlyFull);
        assert_eq!(flood(&mut buckets, MAX_KEYS + MAX_KEYS / 2), 0);
        assert!(buckets.slots.len() <= MAX_KEYS);
        let newcomer = digest("ip:newcomer");
        assert!(matches!(
            buckets.check(&newcomer, Instant::now()),
            Outcome::Admitted { .. }
        ));
    }

    #[test]
    fn a_route_table_refuses_new_keys_when_full_rather_than_reset_old_ones() {
        let mut buckets = table(WhenFull::Refuse);
        assert_eq!(flood(&mut buckets, MAX_KEYS + 10), 10);
        assert_eq!(buckets.slots.len(), MAX_KEYS);
    }

    #[test]
    fn past_the_budget_one_refusal_a_second_is_recorded_with_the_count_before_it() {
        let mut buckets = table(WhenFull::ForgetNearlyFull);
        let key = digest("ip:scanner");
        let start = Instant::now();
        assert_eq!(buckets.sample(&key, start), None, "no slot yet");
        buckets.check(&key, start);
        assert_eq!(buckets.sample(&key, start), Some(0));
        for _ in 0..7 {
            assert_eq!(
                buckets.sample(&key, start + Duration::from_millis(10)),
                None
            );
        }
        assert_eq!(buckets.sample(&key, start + AGGREGATE_INTERVAL), Some(7));
    }
}

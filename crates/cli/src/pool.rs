//! The instance pool as `septa up` sizes it and `septa check` weighs a manifest against it.
//!
//! `--instances` is how many function instances may exist at once. Each is sized for the
//! largest of the application's components (a Rust component takes three core instances, a
//! memory and two tables), so the pool runs out of instances, never of their parts first. A
//! manifest whose concurrency limits add up to more than the pool is allowed, but warned about:
//! past the pool, requests are refused with 503 whichever segment they are for.

use septa_manifest::Manifest;
use septa_policy::Policy;
use septa_runtime::{InstanceNeeds, PoolSize, promised_instances};

/// Instance slots when `--instances` is not given.
pub(crate) const DEFAULT_INSTANCES: u32 = 1000;

/// A pool of `instances` instances, each large enough for every component of `manifest` that
/// can be read now. One that cannot is left to the host to report when it loads it.
pub(crate) fn sized_for(manifest: &Manifest, instances: u32) -> PoolSize {
    let needs = manifest
        .components()
        .filter_map(|f| f.component())
        .filter_map(|c| std::fs::read(&c.source).ok())
        .filter_map(|bytes| InstanceNeeds::of_component(&bytes).ok())
        .fold(InstanceNeeds::default(), InstanceNeeds::max);
    PoolSize::new(instances).fitting(needs)
}

/// The warning for a policy whose functions may together run more instances than the pool
/// holds, or `None` when they fit.
pub(crate) fn overcommit_warning(policy: &Policy, instances: u32) -> Option<String> {
    let promised = promised_instances(policy);
    (promised > u64::from(instances)).then(|| {
        format!(
            "the functions' concurrency limits allow {promised} instances at once (each function's `max_concurrency`, within its segment's), but the instance pool holds {instances} (`--instances`): past it, requests are refused with 503 in whatever segment they arrive; raise `--instances` or lower the limits"
        )
    })
}

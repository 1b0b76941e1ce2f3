//! The flow guard: records a flow exactly once, when the flow finishes or when it is dropped.

use std::time::Instant;

use crate::log::FlowLog;
use septa_policy::{Decision, Verdict};

use crate::record::{FlowKind, FlowRecord};

/// The reason a flow carries when it ends before anyone recorded a decision for it: it was not
/// allowed, so it is recorded as denied.
const UNDECIDED_REASON: &str = "flow ended before a decision was made";

/// Records one flow exactly once.
///
/// Created when a flow starts (which fixes its `time`), filled in as the flow is decided and
/// served, and recorded by [`finish`](Self::finish), or on drop if `finish` was never called, so
/// an early return or an error path cannot skip the record. Latency is measured from creation to
/// `finish` or drop. Until a decision is set the flow counts as denied.
///
/// It is `Send`, so it can move into a response-body wrapper and finish on another task when the
/// body is done.
#[derive(Debug)]
#[must_use = "a flow guard records its flow when dropped; bind it to a variable that lives as long as the flow"]
pub struct FlowGuard {
    log: FlowLog,
    started: Instant,
    /// `None` once recorded.
    record: Option<FlowRecord>,
}

impl FlowGuard {
    /// Starts guarding a flow of `kind` from `src` to `dst` that will be recorded to `log`.
    pub fn new(
        log: &FlowLog,
        kind: FlowKind,
        src: impl Into<String>,
        dst: impl Into<String>,
    ) -> Self {
        let mut record = FlowRecord::new(kind, src, dst, Verdict::Deny, UNDECIDED_REASON);
        record.node = log.node().map(str::to_owned);
        Self {
            log: log.clone(),
            started: Instant::now(),
            record: Some(record),
        }
    }

    /// Sets the request this flow is part of (see [`FlowRecord::trace`]).
    pub fn set_trace(&mut self, trace: u64) -> &mut Self {
        self.update(|record| record.trace = Some(format!("{trace:016x}")))
    }

    /// Sets the policy that decides this flow (see [`FlowRecord::policy`]); an empty revision
    /// (a policy nobody named) sets nothing.
    pub fn set_policy(&mut self, revision: &str) -> &mut Self {
        if revision.is_empty() {
            return self;
        }
        let revision = revision.to_owned();
        self.update(|record| record.policy = Some(revision))
    }

    /// Sets the other node of a flow between nodes (see [`FlowRecord::peer`]).
    pub fn set_peer(&mut self, node: impl Into<String>) -> &mut Self {
        let node = node.into();
        self.update(|record| record.peer = Some(node))
    }

    /// Marks the flow as a segmentation probe's (see [`FlowRecord::probe`]).
    pub fn set_probe(&mut self) -> &mut Self {
        self.update(|record| record.probe = true)
    }

    /// The record as it stands (`None` only after it has been recorded, which `finish` and drop
    /// do).
    pub fn record(&self) -> Option<&FlowRecord> {
        self.record.as_ref()
    }

    /// Records what the policy decided: its verdict, the rule it names and its reason, as the
    /// policy worded it. A flow has one decision; setting another replaces it.
    pub fn set_decision(&mut self, decision: &Decision) -> &mut Self {
        self.update(|record| {
            record.verdict = decision.verdict;
            record.rule = decision.rule.as_ref().map(ToString::to_string);
            record.reason = decision.reason.to_string();
        })
    }

    /// Records what went wrong after the decision (see [`FlowRecord::error`]); the decision
    /// stands.
    pub fn set_error(&mut self, error: impl Into<String>) -> &mut Self {
        let error = error.into();
        self.update(|record| record.error = Some(error))
    }

    /// Sets the HTTP method.
    pub fn set_method(&mut self, method: impl Into<String>) -> &mut Self {
        let method = method.into();
        self.update(|record| record.method = Some(method))
    }

    /// Sets which enforcement point the flow belongs to, once it is known (a mesh call turns
    /// out to be an endpoint call when its destination is resolved).
    pub fn set_kind(&mut self, kind: FlowKind) -> &mut Self {
        self.update(|record| record.kind = kind)
    }

    /// Sets the client address the gateway established (the peer, or what trusted proxies
    /// forwarded for).
    pub fn set_client(&mut self, client: impl Into<String>) -> &mut Self {
        let client = client.into();
        self.update(|record| record.client = Some(client))
    }

    /// Sets the request path.
    pub fn set_path(&mut self, path: impl Into<String>) -> &mut Self {
        let path = path.into();
        self.update(|record| record.path = Some(path))
    }

    /// Sets the `host:port` of an egress flow.
    pub fn set_target(&mut self, target: impl Into<String>) -> &mut Self {
        let target = target.into();
        self.update(|record| record.target = Some(target))
    }

    /// Sets the HTTP status returned to the caller.
    pub fn set_status(&mut self, status: u16) -> &mut Self {
        self.update(|record| record.status = Some(status))
    }

    /// Sets the destination, once it is known (the gateway learns it by routing).
    pub fn set_destination(&mut self, dst: impl Into<String>) -> &mut Self {
        let dst = dst.into();
        self.update(|record| record.dst = dst)
    }

    /// Sets the gateway route that matched.
    pub fn set_route(&mut self, route: impl Into<String>) -> &mut Self {
        let route = route.into();
        self.update(|record| record.route = Some(route))
    }

    /// Sets the segment the flow belongs to.
    pub fn set_segment(&mut self, segment: impl Into<String>) -> &mut Self {
        let segment = segment.into();
        self.update(|record| record.segment = Some(segment))
    }

    /// Counts `bytes` more received from the caller.
    pub fn add_bytes_in(&mut self, bytes: u64) -> &mut Self {
        self.update(|record| record.bytes_in = record.bytes_in.saturating_add(bytes))
    }

    /// Counts `bytes` more sent back to the caller.
    pub fn add_bytes_out(&mut self, bytes: u64) -> &mut Self {
        self.update(|record| record.bytes_out = record.bytes_out.saturating_add(bytes))
    }

    /// Records the flow now.
    pub fn finish(mut self) {
        self.record_now();
    }

    /// Ends the flow without a record of its own: for a refusal the policy counted into a
    /// later aggregate record (a client past its refusal budget), so that a flood of refusals
    /// cannot flood the log.
    pub fn discard(mut self) {
        self.record = None;
    }

    fn update(&mut self, change: impl FnOnce(&mut FlowRecord)) -> &mut Self {
        if let Some(record) = &mut self.record {
            change(record);
        }
        self
    }

    fn record_now(&mut self) {
        if let Some(mut record) = self.record.take() {
            let elapsed = self.started.elapsed().as_micros();
            record.latency_us = u64::try_from(elapsed).unwrap_or(u64::MAX);
            self.log.record(record);
        }
    }
}

impl Drop for FlowGuard {
    fn drop(&mut self) {
        self.record_now();
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    fn assert_send<T: Send + 'static>() {}

    #[test]
    fn guard_and_log_can_move_to_other_tasks() {
        assert_send::<FlowGuard>();
        assert_send::<FlowLog>();
    }

    #[test]
    fn dropped_without_finish_records_once_as_denied() {
        let log = FlowLog::memory();
        {
            let _guard = log.guard(FlowKind::Ingress, "gateway", "function:storefront");
        }
        let records = log.snapshot().unwrap();
        assert_eq!(records.len(), 1);
        assert_eq!(records[0].verdict, Verdict::Deny);
        assert_eq!(records[0].reason, UNDECIDED_REASON);
    }

    #[test]
    fn setters_end_up_in_the_record() {
        let log = FlowLog::memory();
        let mut guard = log.guard(FlowKind::Mesh, "function:storefront", "function:checkout");
        let rule = septa_manifest::Name::new("storefront-to-checkout").unwrap();
        guard
            .set_decision(&septa_policy::Decision::allow(septa_policy::RuleId::Allow(
                rule,
            )))
            .set_method("POST")
            .set_path("/charge")
            .set_status(200)
            .set_segment("payments")
            .add_bytes_in(10)
            .add_bytes_in(5)
            .add_bytes_out(7);
        guard.finish();
        let records = log.snapshot().unwrap();
        assert_eq!(records.len(), 1);
        let record = &records[0];
        assert_eq!(record.verdict, Verdict::Allow);
        assert_eq!(record.rule.as_deref(), Some("storefront-to-checkout"));
        assert_eq!(record.method.as_deref(), Some("POST"));
        assert_eq!(record.path.as_deref(), Some("/charge"));
        assert_eq!(record.status, Some(200));
        assert_eq!(record.segment.as_deref(), Some("payments"));
        assert_eq!((record.bytes_in, record.bytes_out), (15, 7));
    }
}

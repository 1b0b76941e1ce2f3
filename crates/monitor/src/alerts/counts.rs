//! How each alert's firings ended, for `septa_alerts_total{alert,outcome}`.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

/// How one firing of an alert ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AlertOutcome {
    /// The webhook answered 2xx, or the command exited 0.
    Sent,
    /// The webhook could not be reached, answered otherwise or too late; the command could not
    /// start, failed, or overran its timeout and was killed. Not retried.
    Failed,
    /// The delivery queue was full; never sent.
    Dropped,
    /// Within `min_interval_s` of the last alert sent for the same source, or past the alert's
    /// cap of alerts a minute; reported in the next alert sent for that source.
    Suppressed,
}

impl AlertOutcome {
    /// Every outcome, in the order metrics list them.
    pub const ALL: [Self; 4] = [Self::Sent, Self::Failed, Self::Dropped, Self::Suppressed];

    /// The `outcome` label: `sent`, `failed`, `dropped` or `suppressed`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Sent => "sent",
            Self::Failed => "failed",
            Self::Dropped => "dropped",
            Self::Suppressed => "suppressed",
        }
    }

    fn index(self) -> usize {
        match self {
            Self::Sent => 0,
            Self::Failed => 1,
            Self::Dropped => 2,
            Self::Suppressed => 3,
        }
    }
}

/// One alert's counts, by outcome in the order of [`AlertOutcome::ALL`].
pub type ByOutcome = [(AlertOutcome, u64); 4];

/// Counts of alert outcomes by alert id, shared between the writer thread (suppressed, dropped),
/// the delivery thread (sent, failed) and the metrics page. Alert ids come from the manifest, so
/// the series are as many as the alerts ever declared.
#[derive(Debug, Clone, Default)]
pub struct AlertCounts {
    counts: Arc<Mutex<BTreeMap<Arc<str>, [u64; 4]>>>,
}

impl AlertCounts {
    /// Counts one firing of `alert` that ended as `outcome`.
    pub fn count(&self, alert: &Arc<str>, outcome: AlertOutcome) {
        let mut counts = self.lock();
        let row = counts.entry(alert.clone()).or_default();
        row[outcome.index()] += 1;
    }

    /// Shows `alerts` with zero counts until they fire.
    pub(crate) fn declare<'a>(&self, alerts: impl IntoIterator<Item = &'a str>) {
        let mut counts = self.lock();
        for alert in alerts {
            if !counts.contains_key(alert) {
                counts.insert(Arc::from(alert), [0; 4]);
            }
        }
    }

    /// How many firings of `alert` ended as `outcome`.
    pub fn get(&self, alert: &str, outcome: AlertOutcome) -> u64 {
        self.lock().get(alert).map_or(0, |row| row[outcome.index()])
    }

    /// Every alert and its counts by outcome, ordered by id.
    pub fn snapshot(&self) -> Vec<(Arc<str>, ByOutcome)> {
        self.lock()
            .iter()
            .map(|(alert, row)| {
                let by_outcome = AlertOutcome::ALL.map(|o| (o, row[o.index()]));
                (alert.clone(), by_outcome)
            })
            .collect()
    }

    fn lock(&self) -> MutexGuard<'_, BTreeMap<Arc<str>, [u64; 4]>> {
        // Counters are never left half written.
        self.counts.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

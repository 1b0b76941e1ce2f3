//! Flow records, the durable flow log and the guard that records each flow exactly once.
//!
//! Every enforcement point (gateway, mesh, egress hooks, endpoints) describes each flow it decided
//! as one [`FlowRecord`]. Records leave the request path through a [`FlowLog`]: a cheap handle
//! that hands them over a bounded channel to a writer thread, which appends them as JSON lines.
//! A [`FlowGuard`] ties a record to a flow's lifetime so that an early return cannot skip it.
//! [`FlowObserver`]s (metrics, recent flows, live streams) see every record on the writer
//! thread, after it is written. [`read_records`] reads a flow log back. A [`LogThrottle`] keeps a
//! warning that can repeat per request from flooding septa's own log.
//!
//! A record holds the policy's [`septa_policy::Decision`] as the policy worded it: a guard takes
//! the decision itself ([`FlowGuard::set_decision`]), so no enforcer translates or rewords one,
//! and what went wrong after the decision is its own field ([`FlowRecord::error`]).

mod guard;
mod log;
mod observe;
mod read;
mod record;
mod throttle;
mod time;
mod writer;

pub use guard::FlowGuard;
pub use log::{FlowLog, FlowLogError, FlowLogOptions, FlowLogStats};
pub use observe::{FlowObserver, FlowObservers};
pub use read::{FlowReadError, read_records, read_records_from};
pub use record::{FlowKind, FlowRecord};
/// What the policy decided, as flow records spell it.
pub use septa_policy::Verdict;
pub use throttle::LogThrottle;
pub use time::{format_rfc3339_millis, parse_rfc3339_millis};

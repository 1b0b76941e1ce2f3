//! Flow records, the durable flow log and the guard that records each flow exactly once.
//!
//! Every enforcement point (gateway, mesh, egress hooks, endpoints) describes each flow it decided
//! as one [`FlowRecord`]. Records leave the request path through a [`FlowLog`]: a cheap handle
//! that hands them over a bounded channel to a writer thread, which serializes them for a sink
//! thread that appends them as JSON lines, rotating a file by size ([`Rotation`]).
//! A [`FlowGuard`] ties a record to a flow's lifetime so that an early return cannot skip it.
//! [`FlowObserver`]s (metrics, recent flows, live streams) see every record on the writer
//! thread. [`read_records`] reads a flow log back, rotated files included.
//!
//! Everything is bounded: each field of a record ([`FlowRecord::bound`]), the records waiting
//! for the writer, the bytes waiting for the sink, and the files on disk. A stalled sink or a
//! full disk drops records and counts them ([`FlowLog::dropped`]) rather than holding up a
//! request, unless the log was opened with [`Overflow::Block`]. Septa's own log is bounded too:
//! a [`LogThrottle`] keeps a warning that can repeat per request from flooding it.
//!
//! A record holds the policy's [`septa_policy::Decision`] as the policy worded it: a guard takes
//! the decision itself ([`FlowGuard::set_decision`]), so no enforcer translates or rewords one,
//! and what went wrong after the decision is its own field ([`FlowRecord::error`]).

mod bound;
mod guard;
mod log;
mod observe;
mod read;
mod record;
mod rotate;
mod sink;
mod throttle;
mod time;
mod writer;

pub use bound::{
    CUT_MARKER, MAX_DESTINATION_BYTES, MAX_MESSAGE_BYTES, MAX_NAME_BYTES, MAX_PATH_BYTES,
    MAX_SHORT_BYTES,
};
pub use guard::FlowGuard;
pub use log::{FlowLog, FlowLogError, FlowLogOptions, FlowLogStats, Overflow};
pub use observe::{FlowObserver, FlowObservers};
pub use read::{FlowReadError, read_records, read_records_from};
pub use record::{FlowKind, FlowRecord};
pub use rotate::{Rotation, log_files};
/// What the policy decided, as flow records spell it.
pub use septa_policy::Verdict;
pub use throttle::LogThrottle;
pub use time::{format_rfc3339_millis, parse_rfc3339_millis};

//! Flow records, the durable flow log and the guard that records each flow exactly once.
//!
//! Every enforcement point (gateway, mesh, egress hooks, endpoints) describes each flow it decided
//! as one [`FlowRecord`]. Records leave the request path through a [`FlowLog`]: a cheap handle
//! that hands them over a bounded channel to a writer thread, which appends them as JSON lines.
//! A [`FlowGuard`] ties a record to a flow's lifetime so that an early return cannot skip it.
//! [`FlowObserver`]s (metrics, recent flows, live streams) see every record on the writer
//! thread, after it is written. [`read_records`] reads a flow log back.
//!
//! This crate depends on no other septa crate: enforcers translate their decisions into the plain
//! strings and enums a record holds.

mod guard;
mod log;
mod observe;
mod read;
mod record;
mod time;
mod writer;

pub use guard::FlowGuard;
pub use log::{FlowLog, FlowLogError, FlowLogOptions, FlowLogStats};
pub use observe::{FlowObserver, FlowObservers};
pub use read::{FlowReadError, read_records, read_records_from};
pub use record::{FlowKind, FlowRecord, FlowVerdict};
pub use time::{format_rfc3339_millis, parse_rfc3339_millis};

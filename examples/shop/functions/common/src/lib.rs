//! Plumbing shared by every septa guest component: read the request, answer it, call
//! another function or an outside host.
//!
//! A guest is a thin router: [`serve`] hands it a fully read [`Request`] and sends the
//! [`Reply`] it returns. All wasi stream and pollable handling lives here, so the rule
//! that a child resource (a stream, a pollable) is dropped before its parent is kept in
//! one place instead of in every function.
//!
//! The platform contract these helpers lean on:
//! - the host sets [`CALLER_HEADER`] on every request a function receives;
//! - a mesh call is a plain outgoing request to `http://NAME.internal/PATH` ([`mesh_url`]);
//! - a mesh call the policy denies comes back as a real 403 response carrying
//!   [`DENY_REASON_HEADER`], while a denied call to an outside host fails with
//!   `ErrorCode::HttpRequestDenied` ([`CallError::is_denied`]).

mod body;
mod headers;
mod incoming;
mod outgoing;
mod query;
pub mod relay;
mod reply;
mod tcp;

pub use headers::{CALLER_HEADER, DENY_REASON_HEADER, HeaderList};
pub use incoming::{ReadError, Request};
pub use outgoing::{Call, CallError, Fetched, mesh_url};
pub use query::{parse_query, percent_decode};
pub use reply::{Reply, serve};
pub use tcp::{ConnectOutcome, try_connect};

//! Ingress HTTP: the connection layer, the facts a request's decision needs, and dispatch to
//! functions.
//!
//! The gateway is the only door from outside into the segments. A request goes through the
//! phases of [`ingress`] in order on the thread that accepted it: `Policy::decide_ingress`
//! normalizes, routes and checks it, asking this crate's verifiers ([`auth`]) and rate limiters
//! ([`limits`]) for what only the gateway can establish; the gateway then refuses or dispatches
//! as decided. Every request, refused or served, is one flow record.

mod accept;
pub mod auth;
pub mod client;
mod connections;
mod current;
mod facts;
mod framing;
#[cfg(feature = "fuzzing")]
#[doc(hidden)]
pub mod fuzzing;
pub mod ingress;
pub mod limits;
mod respond;
pub mod server;

pub use accept::{connection_cap, raise_fd_limit};
pub use current::CurrentGateway;
pub use ingress::{Gateway, GatewayProbe};
pub use respond::{Headers, refusal_headers, status_of};
pub use server::{ConnectionLimits, Listening, serve};

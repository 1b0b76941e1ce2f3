//! Ingress HTTP: normalization, routing, the admission seam, and dispatch to functions.
//!
//! The gateway is the only door from outside into the segments. A request goes through the
//! phases of [`ingress`] in order — normalize, route, admit, dispatch — on the thread that
//! accepted it, and every request, refused or served, is one flow record.

pub mod auth;
pub mod client;
mod current;
mod framing;
pub mod ingress;
pub mod limits;
pub mod server;

pub use current::CurrentGateway;
pub use ingress::{Admission, Admit, Gateway, GatewayProbe, Rejection};
pub use server::{ConnectionLimits, Listening, serve};

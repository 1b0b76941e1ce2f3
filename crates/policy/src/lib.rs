//! The compiled segmentation policy: selectors, rules, indexes and decisions; pure, no I/O.
//!
//! Every flow in septa — ingress through the gateway, function to function through the mesh,
//! function to the outside world — is decided by one [`Policy`], compiled once per load from a
//! validated [`septa_manifest::Manifest`]. Search for `decide_` to find where a flow is decided.

pub mod ceiling;
mod decision;
mod engine;
pub mod host;
mod mesh_index;
mod methods;
pub mod path;

pub use decision::{Decision, Identity, Reason, Verdict};
pub use engine::{
    CompileError, CompiledRoute, EgressEdge, EgressHost, FunctionId, FunctionInfo, MeshEdge,
    Policy, RouteOutcome, selects,
};

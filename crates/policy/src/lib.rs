//! The compiled segmentation policy: selectors, rules, indexes and decisions; pure, no I/O.
//!
//! Every flow in septa — ingress through the gateway, function to function through the mesh,
//! function to the outside world — is decided by one [`Policy`], compiled once per load from a
//! validated [`septa_manifest::Manifest`]. Each flow kind has one decision, and searching for
//! `fn decide_` finds them all: [`Policy::decide_ingress`] (`ingress`), [`Policy::decide_mesh`]
//! for functions and endpoints (`mesh`), [`Policy::decide_egress`] by name before DNS and
//! [`Policy::decide_dialled_address`] after it (`egress`). Every refusal is a typed [`Reason`],
//! worded in `reason` and nowhere else.

pub mod ceiling;
mod counted_elsewhere;
mod decision;
mod egress;
mod engine;
mod event;
mod functions;
pub mod hostname;
mod ingress;
mod mesh;
mod mesh_index;
mod methods;
pub mod path;
mod placement;
mod principal;
mod reason;
mod routes;
mod rules;
mod selection;

pub use counted_elsewhere::{Authenticator, LimitsCountedElsewhere};
pub use decision::{Decision, Identity, RuleId, Verdict};
pub use egress::{EgressEdge, EgressHost, SocketUse};
pub use engine::{CompileError, Policy};
pub use event::{EventRefusal, LatticeDecision};
pub use functions::{FunctionId, FunctionInfo, selects};
pub use ingress::{
    Authentication, IngressDecision, IngressFacts, IngressRequest, LimitOutcome, NoFacts,
};
pub use mesh::MeshEdge;
pub use placement::{PeerCaller, Placement};
pub use principal::{Claims, Principal};
pub use reason::{
    CredentialKind, CredentialProblem, LimitRefusal, LimitScope, PeerRefusal, Reason,
};
pub use routes::CompiledRoute;
pub use rules::{AllowRuleView, EgressRuleView};
pub use selection::{Selection, SelectorId};

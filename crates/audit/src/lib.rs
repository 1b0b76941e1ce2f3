//! Proof of the segmentation before it runs: the reachability graph of the compiled policy,
//! paths through it, invariants, findings and queries.
//!
//! Everything here reads the same [`septa_policy::Policy`] the enforcers decide with — its mesh
//! and egress indexes, its routes, [`septa_manifest::Selector::selects`] — so what is proven is
//! what runs. Nothing here re-implements a rule check.

mod diff;
mod findings;
mod graph;
mod html;
mod pci;
mod query;
mod rules;
mod sarif;
mod selection;
mod suggest;

pub use diff::{Diff, diff};
pub use findings::{Finding, Severity, audit, check_invariants};
pub use graph::{Edge, EdgeKind, Graph, Node, Reach};
pub use html::render as render_html;
pub use pci::{PackCheck, pci};
pub use query::{Answer, query};
pub use sarif::render as render_sarif;
pub use suggest::{Observed, Suggestion, not_allowed, suggest};

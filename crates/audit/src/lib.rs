//! Proof of the segmentation before it runs: the reachability graph of the compiled policy,
//! paths through it, invariants, findings, queries, the dashboard's model of it, and, when the
//! application spans several nodes, where each place runs and which flows go between nodes
//! ([`cluster`]).
//!
//! Everything here reads the same [`septa_policy::Policy`] the enforcers decide with — what
//! each selector selects ([`septa_policy::Policy::selected`]), what each allow and egress rule
//! connects ([`septa_policy::Policy::allow_rules`], [`septa_policy::Policy::egress_rules`]),
//! its routes, and its decisions — so what is proven is what runs. Nothing here re-implements a
//! rule check or reads the manifest's rules; the few declarations that are not rules (segments,
//! labels, invariants, where things are declared) are read in one module, `declared`.

pub mod cluster;
mod declared;
mod diff;
mod findings;
mod graph;
mod html;
pub mod model;
mod nested_routes;
mod pci;
mod query;
mod rules;
mod sarif;
mod shadowed;
mod suggest;

pub use cluster::{Cluster, Crossing, Hop, HopsText, Opener};
pub use diff::{Diff, diff};
pub use findings::{Finding, Severity, audit, check_invariants};
pub use graph::{Edge, EdgeKind, Graph, Node, Reach};
pub use html::render as render_html;
pub use pci::{PackCheck, pci};
pub use query::{Answer, query, query_on_nodes};
pub use sarif::render as render_sarif;
pub use suggest::{Observed, Suggestion, not_allowed, suggest};

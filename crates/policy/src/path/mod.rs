//! Request paths: normalization of what clients send, the patterns routes and allow rules are
//! written in, and the router that picks the most specific pattern for a path.
//!
//! The gateway normalizes a path once ([`normalize_path`]); every later step — routing, mesh
//! allow rules, the path the function sees — reads that one canonical form, so no two steps can
//! disagree about which path a request is for.

mod captures;
mod fold;
mod normalize;
mod pattern;
mod router;

pub use captures::{Captures, CapturesIter};
pub use fold::{fold_path, fold_pattern};
pub use normalize::{NormalizedPath, PathError, normalize_path, split_path_query};
pub use pattern::{PathPattern, PatternError, Specificity};
pub use router::{PathMatch, PathRouter, RouterError};

//! The declarations the audit reads that are not rules: the application's name, the file and
//! positions findings point into, segments, labels, invariants and where nodes are declared.
//!
//! The rules themselves — routes, allow and egress rules, issuers — come from the compiled
//! policy and never from here, so that what the audit proves about them is what the engine
//! enforces. This is the one place in the crate that opens the manifest.

use std::path::Path;

use septa_manifest::{Invariant, Location, Manifest, Name, Segment};
use septa_policy::{FunctionInfo, Policy};

fn manifest(policy: &Policy) -> &Manifest {
    policy.manifest()
}

/// The application's name.
pub(crate) fn application(policy: &Policy) -> &str {
    manifest(policy).application.as_str()
}

/// The manifest file the policy was compiled from.
pub(crate) fn file(policy: &Policy) -> &Path {
    &manifest(policy).file
}

/// `FILE:LINE:COL` of a declaration at `location`.
pub(crate) fn at(policy: &Policy, location: Location) -> String {
    format!("{}:{location}", file(policy).display())
}

/// Every segment, in name order.
pub(crate) fn segments(policy: &Policy) -> impl Iterator<Item = &Segment> {
    manifest(policy).segments.values()
}

/// The segment called `name`.
pub(crate) fn segment<'p>(policy: &'p Policy, name: &str) -> Option<&'p Segment> {
    segments(policy).find(|s| s.name.as_str() == name)
}

/// The labels of `f`: its own and its segment's.
pub(crate) fn labels<'p>(
    policy: &'p Policy,
    f: &'p FunctionInfo,
) -> impl Iterator<Item = &'p Name> {
    manifest(policy).function_labels(&f.spec)
}

/// Every `[[invariant]]`, in file order.
pub(crate) fn invariants(policy: &Policy) -> &[Invariant] {
    &manifest(policy).invariants
}

/// Where `[node.NAME]` is declared.
pub(crate) fn node_location(policy: &Policy, name: &str) -> Option<Location> {
    let cluster = manifest(policy).cluster.as_ref()?;
    cluster
        .nodes
        .values()
        .find(|n| n.name.as_str() == name)
        .map(|n| n.location)
}

//! The functions and endpoints of a compiled policy: their ids, what the enforcers need to know of
//! each, and the selectors that describe each one.

use septa_manifest::{Function, Manifest, Mode, Selector};

/// A function's index in the compiled policy.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct FunctionId(pub(crate) u32);

impl FunctionId {
    /// The index, for tables sized by [`crate::Policy::functions`].
    pub fn index(self) -> usize {
        self.0 as usize
    }
}

/// What the enforcers need to know about a function.
#[derive(Clone, Debug)]
pub struct FunctionInfo {
    /// Its id in this policy.
    pub id: FunctionId,
    /// The manifest's declaration.
    pub spec: Function,
    /// `function:NAME`: the identity the host sets on its requests.
    pub identity: String,
    /// Whether denials involving it are only recorded.
    pub audit: bool,
}

/// Every function and endpoint of `manifest`, numbered in the manifest's order.
pub(crate) fn compile_functions(manifest: &Manifest) -> Vec<FunctionInfo> {
    manifest
        .functions
        .values()
        .enumerate()
        .map(|(i, f)| FunctionInfo {
            id: FunctionId(i as u32),
            identity: f.identity(),
            audit: f.mode == Mode::Audit,
            spec: f.clone(),
        })
        .collect()
}

/// Every selector that selects `f`: its function, segment, subnet, groups and labels.
pub(crate) fn describing_selectors(manifest: &Manifest, f: &Function) -> Vec<Selector> {
    let own = if f.is_endpoint() {
        Selector::Endpoint(f.name.clone())
    } else {
        Selector::Function(f.name.clone())
    };
    let mut out = vec![
        own,
        Selector::Segment(f.placement.segment.clone()),
        Selector::Subnet(f.placement.segment.clone(), f.placement.subnet.clone()),
    ];
    out.extend(f.groups.iter().cloned().map(Selector::Group));
    out.extend(manifest.function_labels(f).cloned().map(Selector::Label));
    out.sort();
    out.dedup();
    out
}

/// Whether `selector` selects function `f` in `manifest`.
pub fn selects(manifest: &Manifest, selector: &Selector, f: &Function) -> bool {
    selector.selects(&manifest.segments, f)
}

//! The instance pool: how many instances of which shape the pooling allocator holds, what one
//! instance of a component really takes from it, and how many instances a manifest may ask for
//! at once.
//!
//! One instance of a component is more than one pooled slot: a Rust `wasm32-wasip2` component
//! instantiates three core modules (its code, and the shim and fixup modules `wit-component`
//! adds), with a memory and two tables between them. A pool sized as if each instance were one
//! core instance runs out long before its component-instance count, and every function fails at
//! once. So the pool is sized per instance from what the components need, counted from their
//! binaries ([`InstanceNeeds::of_component`]) exactly as wasmtime counts them when it
//! instantiates; a component that needs more than the pool gives an instance is refused when
//! it is loaded, not when a request meets it.

use septa_policy::Policy;
use wasmparser::{
    ComponentAlias, ComponentExternalKind, ComponentInstance, ComponentOuterAliasKind,
    ComponentTypeRef, Encoding, Instance, Parser, Payload,
};

/// What one instance of a component takes from the pool.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct InstanceNeeds {
    /// Core module instances.
    pub core_instances: u32,
    /// Linear memories defined by those instances.
    pub memories: u32,
    /// Tables defined by those instances.
    pub tables: u32,
}

impl InstanceNeeds {
    /// The shape of a Rust `wasm32-wasip2` component: the smallest the pool is ever sized for,
    /// so a pool built before its components are known still fits the usual ones.
    pub const RUST_COMPONENT: Self = Self {
        core_instances: 3,
        memories: 1,
        tables: 2,
    };

    /// What instantiating the component in `bytes` takes, counted as wasmtime counts it: every
    /// core module instantiated (nested components included, once per instantiation), with the
    /// memories and tables each defines (imported ones belong to another instance).
    ///
    /// # Errors
    ///
    /// When `bytes` is not a well-formed component.
    pub fn of_component(bytes: &[u8]) -> Result<Self, NeedsError> {
        let mut stack: Vec<Frame> = Vec::new();
        for payload in Parser::new(0).parse_all(bytes) {
            match payload? {
                Payload::Version { encoding, .. } => {
                    if stack.is_empty() && encoding != Encoding::Component {
                        return Err(NeedsError::NotAComponent);
                    }
                    stack.push(Frame::new(encoding));
                }
                Payload::MemorySection(section) => {
                    top(&mut stack)?.own.memories += section.count();
                }
                Payload::TableSection(section) => top(&mut stack)?.own.tables += section.count(),
                Payload::InstanceSection(section) => {
                    let frame = top(&mut stack)?;
                    for instance in section {
                        if let Instance::Instantiate { module_index, .. } = instance? {
                            let module = frame.module(module_index);
                            frame.own = frame.own.plus(module);
                        }
                    }
                }
                Payload::ComponentInstanceSection(section) => {
                    let frame = top(&mut stack)?;
                    for instance in section {
                        if let ComponentInstance::Instantiate {
                            component_index, ..
                        } = instance?
                        {
                            let component = frame.component(component_index);
                            frame.own = frame.own.plus(component);
                        }
                    }
                }
                Payload::ComponentAliasSection(section) => {
                    for alias in section {
                        alias_into(&mut stack, &alias?)?;
                    }
                }
                Payload::ComponentImportSection(section) => {
                    let frame = top(&mut stack)?;
                    for import in section {
                        match import?.ty {
                            ComponentTypeRef::Module(_) => frame.modules.push(UNKNOWN_MODULE),
                            ComponentTypeRef::Component(_) => frame.components.push(None),
                            _ => {}
                        }
                    }
                }
                Payload::ComponentExportSection(section) => {
                    let frame = top(&mut stack)?;
                    // An export of a module or component gives it another index.
                    for export in section {
                        let export = export?;
                        match export.kind {
                            ComponentExternalKind::Module => {
                                let module = frame.modules.get(export.index as usize).copied();
                                frame.modules.push(module.unwrap_or(UNKNOWN_MODULE));
                            }
                            ComponentExternalKind::Component => {
                                let component =
                                    frame.components.get(export.index as usize).copied();
                                frame.components.push(component.flatten());
                            }
                            _ => {}
                        }
                    }
                }
                Payload::End(_) => {
                    let Some(done) = stack.pop() else {
                        return Err(NeedsError::Malformed);
                    };
                    let needs = match done.encoding {
                        // A module's needs are those of one instance of it.
                        Encoding::Module => done.own.plus(InstanceNeeds {
                            core_instances: 1,
                            ..InstanceNeeds::default()
                        }),
                        Encoding::Component => done.own,
                    };
                    match (stack.last_mut(), done.encoding) {
                        (None, _) => return Ok(needs),
                        (Some(parent), Encoding::Module) => parent.modules.push(needs),
                        (Some(parent), Encoding::Component) => parent.components.push(Some(needs)),
                    }
                }
                _ => {}
            }
        }
        Err(NeedsError::Malformed)
    }

    /// The larger of each count.
    pub fn max(self, other: Self) -> Self {
        Self {
            core_instances: self.core_instances.max(other.core_instances),
            memories: self.memories.max(other.memories),
            tables: self.tables.max(other.tables),
        }
    }

    /// Whether an instance needing `self` fits in a slot that gives `slot`.
    pub fn fits(self, slot: Self) -> bool {
        self.core_instances <= slot.core_instances
            && self.memories <= slot.memories
            && self.tables <= slot.tables
    }

    fn plus(self, other: Self) -> Self {
        Self {
            core_instances: self.core_instances.saturating_add(other.core_instances),
            memories: self.memories.saturating_add(other.memories),
            tables: self.tables.saturating_add(other.tables),
        }
    }
}

impl std::fmt::Display for InstanceNeeds {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} core instances, {} memories, {} tables",
            self.core_instances, self.memories, self.tables
        )
    }
}

/// A module the component does not define itself (imported, or reached through an instance's
/// exports): counted as one instance with a memory and a table, the usual shape.
const UNKNOWN_MODULE: InstanceNeeds = InstanceNeeds {
    core_instances: 1,
    memories: 1,
    tables: 1,
};

/// Why a component's needs could not be counted.
#[derive(Debug, thiserror::Error)]
pub enum NeedsError {
    /// The binary is a core module or something else, not a component.
    #[error("it is not a WebAssembly component")]
    NotAComponent,
    /// The binary ends or nests where it should not.
    #[error("its sections are not properly nested")]
    Malformed,
    /// wasmparser could not read it.
    #[error(transparent)]
    Parse(#[from] wasmparser::BinaryReaderError),
}

/// A module or component being read: what it needs so far, and what its module and component
/// index spaces hold.
struct Frame {
    encoding: Encoding,
    own: InstanceNeeds,
    modules: Vec<InstanceNeeds>,
    /// `None` for a component whose needs are unknown (imported).
    components: Vec<Option<InstanceNeeds>>,
}

impl Frame {
    fn new(encoding: Encoding) -> Self {
        Self {
            encoding,
            own: InstanceNeeds::default(),
            modules: Vec::new(),
            components: Vec::new(),
        }
    }

    fn module(&self, index: u32) -> InstanceNeeds {
        self.modules
            .get(index as usize)
            .copied()
            .unwrap_or(UNKNOWN_MODULE)
    }

    fn component(&self, index: u32) -> InstanceNeeds {
        self.components
            .get(index as usize)
            .copied()
            .flatten()
            .unwrap_or(UNKNOWN_MODULE)
    }
}

fn top(stack: &mut [Frame]) -> Result<&mut Frame, NeedsError> {
    stack.last_mut().ok_or(NeedsError::Malformed)
}

/// Adds what an alias brings into the module and component index spaces.
fn alias_into(stack: &mut [Frame], alias: &ComponentAlias<'_>) -> Result<(), NeedsError> {
    let depth = stack.len();
    match *alias {
        ComponentAlias::Outer { kind, count, index } => {
            let outer = depth
                .checked_sub(1 + count as usize)
                .and_then(|i| stack.get(i))
                .ok_or(NeedsError::Malformed)?;
            match kind {
                ComponentOuterAliasKind::CoreModule => {
                    let module = outer.module(index);
                    top(stack)?.modules.push(module);
                }
                ComponentOuterAliasKind::Component => {
                    let component = outer.components.get(index as usize).copied().flatten();
                    top(stack)?.components.push(component);
                }
                ComponentOuterAliasKind::CoreType | ComponentOuterAliasKind::Type => {}
            }
        }
        ComponentAlias::InstanceExport { kind, .. } => match kind {
            ComponentExternalKind::Module => top(stack)?.modules.push(UNKNOWN_MODULE),
            ComponentExternalKind::Component => top(stack)?.components.push(None),
            _ => {}
        },
        ComponentAlias::CoreInstanceExport { .. } => {}
    }
    Ok(())
}

/// The pool: how many instances can exist at once across all functions, and what each may take.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PoolSize {
    /// Component instances at once (`--instances`).
    pub instances: u32,
    /// What each instance may take.
    pub per_instance: InstanceNeeds,
}

impl PoolSize {
    /// `instances` instances of the shape of a Rust component.
    pub fn new(instances: u32) -> Self {
        Self {
            instances,
            per_instance: InstanceNeeds::RUST_COMPONENT,
        }
    }

    /// The same number of instances, each large enough for `needs` too.
    pub fn fitting(self, needs: InstanceNeeds) -> Self {
        Self {
            per_instance: self.per_instance.max(needs),
            ..self
        }
    }

    /// Every core instance, memory and table of the pool.
    pub fn total(&self) -> InstanceNeeds {
        let per = self.per_instance;
        InstanceNeeds {
            core_instances: per.core_instances.saturating_mul(self.instances),
            memories: per.memories.saturating_mul(self.instances),
            tables: per.tables.saturating_mul(self.instances),
        }
    }
}

/// How many instances `policy`'s functions may run at once by their declared limits: each
/// function's `max_concurrency`, a segment's functions together no more than the segment's own
/// cap. Endpoints run no instance and are not counted.
pub fn promised_instances(policy: &Policy) -> u64 {
    let manifest = policy.manifest();
    let mut by_segment = std::collections::BTreeMap::new();
    for function in manifest.components() {
        *by_segment
            .entry(&function.placement.segment)
            .or_insert(0u64) += u64::from(function.limits.max_concurrency);
    }
    by_segment
        .into_iter()
        .map(|(segment, sum)| {
            let cap = manifest
                .segments
                .get(segment)
                .and_then(|s| s.max_concurrency);
            cap.map_or(sum, |cap| sum.min(u64::from(cap)))
        })
        .sum()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use wasm_encoder::{
        Component, ComponentAliasSection, ComponentInstanceSection, InstanceSection, MemorySection,
        MemoryType, Module, ModuleSection, NestedComponentSection, RefType, TableSection,
        TableType,
    };

    use super::*;

    fn module(memories: u32, tables: u32) -> Module {
        let mut module = Module::new();
        let mut memory = MemorySection::new();
        for _ in 0..memories {
            memory.memory(MemoryType {
                minimum: 1,
                maximum: None,
                memory64: false,
                shared: false,
                page_size_log2: None,
            });
        }
        let mut table = TableSection::new();
        for _ in 0..tables {
            table.table(TableType {
                element_type: RefType::FUNCREF,
                table64: false,
                minimum: 1,
                maximum: None,
                shared: false,
            });
        }
        module.section(&table).section(&memory);
        module
    }

    /// The shape `wit-component` gives a Rust component: the code, a shim and its fixups.
    fn rust_shaped() -> Component {
        let mut component = Component::new();
        component.section(&ModuleSection(&module(1, 1)));
        component.section(&ModuleSection(&module(0, 1)));
        component.section(&ModuleSection(&module(0, 0)));
        let mut instances = InstanceSection::new();
        instances.instantiate(1, Vec::<(&str, _)>::new());
        instances.instantiate(0, Vec::<(&str, _)>::new());
        instances.instantiate(2, Vec::<(&str, _)>::new());
        instances.export_items(Vec::<(&str, _, u32)>::new());
        component.section(&instances);
        component
    }

    #[test]
    fn counts_every_module_instantiated_with_what_it_defines() {
        let needs = InstanceNeeds::of_component(&rust_shaped().finish()).unwrap();
        assert_eq!(needs, InstanceNeeds::RUST_COMPONENT);
    }

    #[test]
    fn a_module_instantiated_twice_counts_twice_and_one_never_instantiated_not_at_all() {
        let mut component = Component::new();
        component.section(&ModuleSection(&module(1, 0)));
        component.section(&ModuleSection(&module(4, 4)));
        let mut instances = InstanceSection::new();
        instances.instantiate(0, Vec::<(&str, _)>::new());
        instances.instantiate(0, Vec::<(&str, _)>::new());
        component.section(&instances);
        let needs = InstanceNeeds::of_component(&component.finish()).unwrap();
        assert_eq!(
            needs,
            InstanceNeeds {
                core_instances: 2,
                memories: 2,
                tables: 0
            }
        );
    }

    #[test]
    fn nested_components_count_once_per_instantiation_and_outer_aliases_resolve() {
        let mut inner = Component::new();
        let mut alias = ComponentAliasSection::new();
        alias.alias(wasm_encoder::Alias::Outer {
            kind: wasm_encoder::ComponentOuterAliasKind::CoreModule,
            count: 1,
            index: 0,
        });
        inner.section(&alias);
        let mut instances = InstanceSection::new();
        instances.instantiate(0, Vec::<(&str, _)>::new());
        inner.section(&instances);

        let mut outer = Component::new();
        outer.section(&ModuleSection(&module(1, 2)));
        outer.section(&NestedComponentSection(&inner));
        let mut components = ComponentInstanceSection::new();
        components.instantiate(0, Vec::<(&str, _, u32)>::new());
        components.instantiate(0, Vec::<(&str, _, u32)>::new());
        outer.section(&components);
        let needs = InstanceNeeds::of_component(&outer.finish()).unwrap();
        assert_eq!(
            needs,
            InstanceNeeds {
                core_instances: 2,
                memories: 2,
                tables: 4
            }
        );
    }

    #[test]
    fn a_core_module_is_not_a_component() {
        let error = InstanceNeeds::of_component(&module(1, 1).finish()).unwrap_err();
        assert!(matches!(error, NeedsError::NotAComponent), "{error}");
        assert!(InstanceNeeds::of_component(b"\0asm\x0d\0\x01\0\x01").is_err());
    }

    #[test]
    fn the_pool_is_sized_per_instance_for_the_largest_component() {
        let large = InstanceNeeds {
            core_instances: 7,
            memories: 2,
            tables: 1,
        };
        let pool = PoolSize::new(10).fitting(large);
        assert_eq!(
            pool.total(),
            InstanceNeeds {
                core_instances: 70,
                memories: 20,
                tables: 20
            }
        );
        assert!(InstanceNeeds::RUST_COMPONENT.fits(pool.per_instance));
        assert!(!large.fits(PoolSize::new(10).per_instance));
    }

    #[test]
    fn promised_instances_add_functions_within_their_segment_caps() {
        let manifest = septa_manifest::parse(
            std::path::Path::new("septa.toml"),
            "septa_manifest_version = 1\n[application]\nname = \"a\"\n\
             [segment.capped]\nsubnets = { web = \"public\" }\nlimits = { max_concurrency = 5 }\n\
             [segment.open]\nsubnets = { web = \"public\" }\n\
             [function.a]\nsource = \"a.wasm\"\nplacement = \"capped/web\"\nlimits = { max_concurrency = 4 }\n\
             [function.b]\nsource = \"b.wasm\"\nplacement = \"capped/web\"\nlimits = { max_concurrency = 4 }\n\
             [function.c]\nsource = \"c.wasm\"\nplacement = \"open/web\"\nlimits = { max_concurrency = 3 }\n\
             [endpoint.kv]\nplacement = \"open/web\"\n",
        )
        .unwrap();
        let policy = Policy::compile(manifest).unwrap();
        assert_eq!(promised_instances(&policy), 5 + 3);
    }
}

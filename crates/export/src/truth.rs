//! septa's own truth table: which cell may reach which, on which methods and paths, and through
//! which rule, at the granularity an export places functions in.
//!
//! Nothing here decides: the flows come from [`Policy::mesh_edges`] and a single probe is
//! answered by [`Policy::decide_mesh`] for every function pair of the two cells, exactly as
//! `septa query --direct` and the running platform decide it. Every export compares what it
//! emitted with this table.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use septa_manifest::{Methods, Name};
use septa_policy::{FunctionId, MeshEdge, Policy, Verdict};

use crate::report::TruthRow;

/// How finely an export places functions into workloads.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Granularity {
    /// One workload per subnet, hosting every function and endpoint placed in it.
    Cell,
    /// One workload per function or endpoint.
    Function,
}

impl Granularity {
    /// The name the command line and the report use.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Cell => "cell",
            Self::Function => "function",
        }
    }
}

impl fmt::Display for Granularity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A cell's index in [`Cells`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CellId(pub usize);

/// One workload of an export: the functions and endpoints that run together.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Cell {
    /// Its segment.
    pub segment: Name,
    /// Its name within the segment: the subnet, or the function at function granularity.
    pub name: Name,
    /// The subnet its functions are placed in.
    pub subnet: Name,
    /// What it runs, in id order.
    pub functions: Vec<FunctionId>,
}

impl fmt::Display for Cell {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.segment, self.name)
    }
}

/// The cells of a policy at one granularity, in (segment, name) order.
#[derive(Clone, Debug)]
pub struct Cells {
    granularity: Granularity,
    cells: Vec<Cell>,
    /// The cell of each function, indexed by [`FunctionId::index`].
    of: Vec<CellId>,
}

impl Cells {
    /// Places every function and endpoint of `policy` into cells.
    pub fn new(policy: &Policy, granularity: Granularity) -> Self {
        let mut grouped: BTreeMap<(Name, Name), (Name, Vec<FunctionId>)> = BTreeMap::new();
        for f in policy.functions() {
            let placement = &f.spec.placement;
            let name = match granularity {
                Granularity::Cell => placement.subnet.clone(),
                Granularity::Function => f.spec.name.clone(),
            };
            grouped
                .entry((placement.segment.clone(), name))
                .or_insert_with(|| (placement.subnet.clone(), Vec::new()))
                .1
                .push(f.id);
        }
        let mut of = vec![CellId(0); policy.functions().len()];
        let cells = grouped
            .into_iter()
            .enumerate()
            .map(|(i, ((segment, name), (subnet, functions)))| {
                for f in &functions {
                    of[f.index()] = CellId(i);
                }
                Cell {
                    segment,
                    name,
                    subnet,
                    functions,
                }
            })
            .collect();
        Self {
            granularity,
            cells,
            of,
        }
    }

    /// The granularity they were placed at.
    pub fn granularity(&self) -> Granularity {
        self.granularity
    }

    /// The cell running function `f`.
    pub fn of(&self, f: FunctionId) -> CellId {
        self.of[f.index()]
    }

    /// The cell `id`.
    pub fn get(&self, id: CellId) -> &Cell {
        &self.cells[id.0]
    }

    /// Every cell with its id, in (segment, name) order.
    pub fn iter(&self) -> impl Iterator<Item = (CellId, &Cell)> {
        self.cells.iter().enumerate().map(|(i, c)| (CellId(i), c))
    }
}

/// What septa does with one request between two cells.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Truth {
    /// Allowed, by this rule.
    Allow(Name),
    /// Refused by the rules but let through, recorded, because a side runs in audit mode.
    Audit,
    /// Refused.
    Deny,
}

impl Truth {
    /// Whether the request gets through.
    pub fn permits(&self) -> bool {
        !matches!(self, Self::Deny)
    }
}

/// One allow rule connecting two functions, as the truth table lists it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Access {
    /// The rule.
    pub rule: Name,
    /// The calling function.
    pub from: FunctionId,
    /// The called function or endpoint.
    pub to: FunctionId,
    /// The methods it admits.
    pub methods: Methods,
    /// The path patterns it admits, as written; `None` admits any.
    pub paths: Option<Vec<String>>,
}

impl Access {
    fn of(edge: &MeshEdge<'_>) -> Self {
        Self {
            rule: edge.rule.clone(),
            from: edge.from,
            to: edge.to,
            methods: edge.methods.clone(),
            paths: edge
                .paths
                .map(|list| list.iter().map(|p| p.as_str().to_owned()).collect()),
        }
    }
}

/// septa's truth table at one granularity: every allow rule connecting two functions, grouped by
/// the cells they run in.
#[derive(Debug)]
pub struct TruthTable<'p> {
    policy: &'p Policy,
    cells: Cells,
    flows: BTreeMap<(CellId, CellId), Vec<Access>>,
}

impl<'p> TruthTable<'p> {
    /// The truth table of `policy` with functions placed at `granularity`.
    pub fn build(policy: &'p Policy, granularity: Granularity) -> Self {
        let cells = Cells::new(policy, granularity);
        let mut flows: BTreeMap<(CellId, CellId), Vec<Access>> = BTreeMap::new();
        for edge in policy.mesh_edges() {
            let key = (cells.of(edge.from), cells.of(edge.to));
            flows.entry(key).or_default().push(Access::of(&edge));
        }
        Self {
            policy,
            cells,
            flows,
        }
    }

    /// The policy it was built from.
    pub fn policy(&self) -> &'p Policy {
        self.policy
    }

    /// The cells.
    pub fn cells(&self) -> &Cells {
        &self.cells
    }

    /// Every pair of cells some rule connects (a cell with itself among them), with the rules,
    /// in cell order.
    pub fn flows(&self) -> impl Iterator<Item = (CellId, CellId, &[Access])> {
        self.flows
            .iter()
            .map(|(&(from, to), access)| (from, to, access.as_slice()))
    }

    /// The table as report rows: one per allow rule and pair of cells, in order, each on `port`,
    /// the port the target carries calls between cells on (a cell's mesh port, Lattice's
    /// listener). Every target lists its truth this one way, so reports compare across targets.
    pub fn rows(&self, port: u16) -> Vec<TruthRow> {
        let mut rows = BTreeSet::new();
        for (from, to, access) in self.flows() {
            for a in access {
                rows.insert(TruthRow {
                    from: self.cells.get(from).to_string(),
                    to: self.cells.get(to).to_string(),
                    port,
                    methods: match &a.methods {
                        Methods::Any => vec!["*".to_owned()],
                        Methods::Only(list) => list.clone(),
                    },
                    paths: a.paths.clone().unwrap_or_else(|| vec!["*".to_owned()]),
                    rule: a.rule.to_string(),
                });
            }
        }
        rows.into_iter().collect()
    }

    /// The rules connecting cell `from` to cell `to`, none when nothing does.
    pub fn flow(&self, from: CellId, to: CellId) -> &[Access] {
        self.flows.get(&(from, to)).map_or(&[], Vec::as_slice)
    }

    /// What septa does with `method` on normalized `path` from cell `from` to cell `to`: allowed
    /// when some function of `from` may call some function of `to` with it, decided by
    /// [`Policy::decide_mesh`].
    pub fn decide(&self, from: CellId, to: CellId, method: &str, path: &str) -> Truth {
        let mut audit = false;
        for &caller in &self.cells.get(from).functions {
            for &callee in &self.cells.get(to).functions {
                let decision = self.policy.decide_mesh(caller, callee, method, path);
                match decision.verdict {
                    Verdict::Allow => {
                        if let Some(rule) = decision.rule {
                            return Truth::Allow(rule.name().clone());
                        }
                    }
                    Verdict::Audit => audit = true,
                    Verdict::Deny => {}
                }
            }
        }
        if audit { Truth::Audit } else { Truth::Deny }
    }

    /// Function pairs that a flow between their cells opens wider than septa does: in a cell pair
    /// some rule connects, each (caller, callee) that is not connected by every rule of the
    /// pair. Empty at function granularity.
    pub fn widened_pairs(&self, from: CellId, to: CellId) -> Vec<(FunctionId, FunctionId)> {
        let access = self.flow(from, to);
        if access.is_empty() {
            return Vec::new();
        }
        let mut rules: Vec<&Name> = access.iter().map(|a| &a.rule).collect();
        rules.sort();
        rules.dedup();
        let mut widened = Vec::new();
        for &caller in &self.cells.get(from).functions {
            if self.policy.function(caller).spec.is_endpoint() {
                continue;
            }
            for &callee in &self.cells.get(to).functions {
                let own = rules
                    .iter()
                    .filter(|rule| {
                        access
                            .iter()
                            .any(|a| a.from == caller && a.to == callee && &a.rule == **rule)
                    })
                    .count();
                if own < rules.len() {
                    widened.push((caller, callee));
                }
            }
        }
        widened
    }
}

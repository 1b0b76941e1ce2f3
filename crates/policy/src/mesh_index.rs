//! The allow rules laid out for the mesh decision: a few independent probes of one flat table,
//! each answer a run of candidates that carry what the request is checked against, and no
//! allocation.
//!
//! A function is a source through two *origins*: its own name (rules written `from =
//! "function:NAME"`) and its *source class*, the set of wider `from` selectors (segment, subnet,
//! group, label) that select it. Functions with the same wide selectors share a class, so a rule
//! `from = "segment:x"` is indexed once per class in that segment, not once per function. The
//! table is keyed by (origin, destination selector), so a decision is two probes per selector
//! that describes the callee, all independent of one another and of the number of rules.
//!
//! The price is memory where classes are many: at worst, every function its own class, a wide
//! rule is indexed once per function it selects. [`MeshIndex::heap_bytes`] says what it came to.

use std::collections::{HashMap, HashSet};

use septa_manifest::{Methods, Name, Selector};

use crate::functions::FunctionInfo;
use crate::methods::{MethodKey, MethodSet};
use crate::path::PathPattern;
use crate::selection::makes_calls;

/// No origin: a function no rule names in its `from`, or an endpoint.
const NO_ORIGIN: u32 = u32::MAX;
/// An empty table slot. Never a real key: origins are never [`NO_ORIGIN`].
const EMPTY: u64 = u64::MAX;

/// What the index needs of one allow rule.
pub(crate) struct IndexedRule<'a> {
    pub(crate) id: &'a Name,
    pub(crate) from: &'a Selector,
    pub(crate) to: &'a Selector,
    pub(crate) methods: &'a Methods,
    /// `None` admits any path.
    pub(crate) paths: Option<&'a [PathPattern]>,
}

/// The paths a candidate admits.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum PathsRef {
    Any,
    /// The rule's only pattern, the common case, checked without another lookup.
    One(u32),
    /// A run of [`MeshIndex::path_lists`]; empty admits nothing.
    Many {
        start: u32,
        len: u32,
    },
}

/// Which methods outside the standard ones a rule admits.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum OtherMethods {
    None,
    Any,
    /// Those it lists, in [`MeshIndex::listed_methods`].
    Listed,
}

/// One rule as a decision checks it: everything an allowed call reads is here, the rule's name
/// included, so a decision touches no other memory per rule.
#[derive(Clone, Debug)]
struct Candidate {
    id: Name,
    /// The rule's position in the manifest.
    rule: u32,
    /// The standard methods it admits, as [`MethodSet::standard_mask`] says.
    standard_methods: u16,
    other_methods: OtherMethods,
    paths: PathsRef,
}

impl Candidate {
    /// What decides which calls it admits: candidates of one kind admit the same calls. Rules
    /// that list other methods each count as their own kind.
    fn kind(&self) -> (u16, OtherMethods, PathsRef, Option<u32>) {
        let listed = (self.other_methods == OtherMethods::Listed).then_some(self.rule);
        (
            self.standard_methods,
            self.other_methods,
            self.paths,
            listed,
        )
    }
}

/// One (origin, destination selector) pair and its candidates, in one cache line: most pairs
/// hold a single rule, kept here, so an allowed call reads no memory past its slot.
#[derive(Clone, Debug)]
#[repr(align(64))]
struct Slot {
    key: u64,
    run: Run,
}

impl Slot {
    const EMPTY: Self = Self {
        key: EMPTY,
        run: Run::Many {
            start: 0,
            len: 0,
            deciding: 0,
        },
    };
}

/// The candidates of one (origin, destination selector) pair, in file order.
#[derive(Clone, Debug)]
enum Run {
    One(Candidate),
    /// In [`MeshIndex::candidates`]: first, from `start`, the `deciding` candidates that are the
    /// first of their kind (methods and paths), then all `len` of them.
    Many {
        start: u32,
        len: u32,
        deciding: u32,
    },
}

/// Which candidates of a run a lookup wants.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Wanted {
    /// All of them.
    All,
    /// Those that can decide a call: a candidate with the same methods and paths as an earlier
    /// one admits exactly what that one does, so it never comes first. Runs of rules from one
    /// wide selector to another repeat the same few kinds.
    Deciding,
}

/// Destination selectors a function's [`Ends`] holds itself; more are kept apart.
const INLINE_DEST_KEYS: usize = 5;

/// What the index knows about one function, in half a cache line: a decision reads the two
/// functions' and then goes straight to the table.
#[derive(Clone, Copy, Debug)]
#[repr(align(32))]
struct Ends {
    /// Its own origin and its source class's, [`NO_ORIGIN`] where it has none.
    origins: [u32; 2],
    /// How many `to` selectors describe it.
    dest_len: u32,
    /// Those selectors when they fit, else where they start in [`MeshIndex::spilled_dest_keys`].
    dest_keys: [u32; INLINE_DEST_KEYS],
}

/// Allow rules by (origin, destination selector), each run in file order.
#[derive(Debug)]
pub(crate) struct MeshIndex {
    ends: Vec<Ends>,
    spilled_dest_keys: Vec<u32>,
    /// Two bits per key, a word picked by the key: most pairs a decision asks about hold no
    /// rule, and this answers them from a few hundred kilobytes instead of the table.
    filter: Box<[u64]>,
    /// Open addressing with linear probing, at most half full, so a probe that finds nothing
    /// usually stops at the first slot.
    slots: Box<[Slot]>,
    candidates: Vec<Candidate>,
    /// The methods of the rules that list some outside the standard ones.
    listed_methods: HashMap<u32, MethodSet>,
    /// Pattern ids of the rules with several paths.
    path_lists: Vec<u32>,
    /// Each distinct pattern once: rules repeat the same few, which then stay in cache.
    patterns: Vec<PathPattern>,
}

impl MeshIndex {
    /// Indexes `rules` (in file order) over `functions`, given the selectors that describe each
    /// function.
    pub(crate) fn new<'a>(
        functions: &[FunctionInfo],
        describing: &[Vec<Selector>],
        rules: &[IndexedRule<'a>],
    ) -> Self {
        let mut selector_ids: HashMap<&Selector, u32> = HashMap::new();
        let mut intern = |s| {
            let next = selector_ids.len() as u32;
            *selector_ids.entry(s).or_insert(next)
        };
        let rule_ends: Vec<(u32, u32)> = rules
            .iter()
            .map(|r| (intern(r.from), intern(r.to)))
            .collect();
        let origins = Origins::new(functions, describing, &selector_ids, &rule_ends);
        let runs = Runs::new(rules, &rule_ends, &origins.of_selector);
        let (filter, slots, candidates) = table(runs.by_key);
        Self {
            ends: origins.ends,
            spilled_dest_keys: origins.spilled_dest_keys,
            filter,
            slots,
            candidates,
            listed_methods: runs.listed_methods,
            path_lists: runs.path_lists,
            patterns: runs.patterns,
        }
    }

    /// The first rule in file order that connects `from` to `to` and admits `method` on `path`,
    /// and whether any rule connects them at all.
    pub(crate) fn first_admitting(
        &self,
        from: usize,
        to: usize,
        method: &str,
        path: &str,
    ) -> (Option<&Name>, bool) {
        let method = MethodKey::new(method);
        let mut paths = PathMatches::new(path);
        let mut first: Option<&Candidate> = None;
        let mut connected = false;
        self.for_each_run(from, to, Wanted::Deciding, |run| {
            connected = true;
            // Each run is in file order: stop at the first that admits, or at the first that
            // comes after one already found.
            for c in run {
                if first.is_some_and(|found| c.rule >= found.rule) {
                    break;
                }
                if self.admits(c, method, &mut paths) {
                    first = Some(c);
                    break;
                }
            }
        });
        (first.map(|c| &c.id), connected)
    }

    /// For a call no rule admits, the rules that came nearest, by name in file order: those
    /// connecting `from` to `to` that admit `method` if there are any (`true`: only the path is
    /// refused), else every rule connecting them (`false`: the method is refused).
    pub(crate) fn nearest(&self, from: usize, to: usize, method: &str) -> (bool, Vec<Name>) {
        let method = MethodKey::new(method);
        // The connecting rules, in one walk of the table, on the stack when they are few (they
        // usually are), so the list of names is the only allocation.
        const ON_STACK: usize = 32;
        let mut stack = [None; ON_STACK];
        let mut spilled = Vec::new();
        let mut connecting = 0;
        self.for_each_run(from, to, Wanted::All, |run| {
            for c in run {
                match stack.get_mut(connecting) {
                    Some(entry) => *entry = Some(c),
                    None => spilled.push(Some(c)),
                }
                connecting += 1;
            }
        });
        let all: &mut [Option<&Candidate>] = if spilled.is_empty() {
            &mut stack[..connecting.min(ON_STACK)]
        } else {
            spilled = stack.into_iter().chain(spilled).collect();
            &mut spilled
        };
        // Each rule is in exactly one run (see `connecting`), and each run is in file order, but
        // runs interleave.
        all.sort_unstable_by_key(|c| c.map(|c| c.rule));
        let method_ok = all.iter().flatten().any(|c| self.admits_method(c, method));
        let names = all
            .iter()
            .flatten()
            .filter(|c| !method_ok || self.admits_method(c, method))
            .map(|c| c.id.clone())
            .collect();
        (method_ok, names)
    }

    /// Every rule that connects `from` to `to`, in file order.
    pub(crate) fn connecting(&self, from: usize, to: usize) -> Vec<u32> {
        let mut out = Vec::new();
        self.for_each_run(from, to, Wanted::All, |run| {
            out.extend(run.iter().map(|c| c.rule))
        });
        // A rule's `from` is one origin of the caller and its `to` one selector of the callee, so
        // it is in exactly one run: sorting is all the merging needed.
        out.sort_unstable();
        out
    }

    /// What the index holds on the heap, in bytes.
    pub(crate) fn heap_bytes(&self) -> usize {
        use std::mem::size_of;
        let patterns: usize = self.patterns.iter().map(PathPattern::heap_bytes).sum();
        // Rule names are held inline (only long ones are shared with the manifest), so only the
        // `Name` values count.
        self.ends.capacity() * size_of::<Ends>()
            + self.spilled_dest_keys.capacity() * size_of::<u32>()
            + self.filter.len() * size_of::<u64>()
            + self.slots.len() * size_of::<Slot>()
            + self.candidates.capacity() * size_of::<Candidate>()
            + self.listed_methods.capacity() * size_of::<(u32, MethodSet, u64)>()
            + self.path_lists.capacity() * size_of::<u32>()
            + self.patterns.capacity() * size_of::<PathPattern>()
            + patterns
    }

    /// Calls `visit` with each non-empty run of candidates connecting `from` to `to`.
    fn for_each_run<'s>(
        &'s self,
        from: usize,
        to: usize,
        wanted: Wanted,
        mut visit: impl FnMut(&'s [Candidate]),
    ) {
        let (Some(source), Some(dest)) = (self.ends.get(from), self.ends.get(to)) else {
            return;
        };
        let len = dest.dest_len as usize;
        let dest_keys = match dest.dest_keys.get(..len) {
            Some(inline) => inline,
            None => {
                let start = dest.dest_keys[0] as usize;
                self.spilled_dest_keys
                    .get(start..start + len)
                    .unwrap_or_default()
            }
        };
        for &origin in &source.origins {
            if origin == NO_ORIGIN {
                continue;
            }
            for &selector in dest_keys {
                let run = self.run(pack(origin, selector), wanted);
                if !run.is_empty() {
                    visit(run);
                }
            }
        }
    }

    fn run(&self, key: u64, wanted: Wanted) -> &[Candidate] {
        let h = hash(key);
        let (word, bits) = filter_bits(h, self.filter.len());
        if self.filter[word] & bits != bits {
            return &[];
        }
        let mask = self.slots.len() - 1;
        let mut at = h as usize & mask;
        // The table is at most half full, so there is always an empty slot to stop at.
        loop {
            let slot = &self.slots[at];
            if slot.key == key {
                return match &slot.run {
                    Run::One(only) => std::slice::from_ref(only),
                    &Run::Many {
                        start,
                        len,
                        deciding,
                    } => {
                        let (start, len) = match wanted {
                            Wanted::All => (start + deciding, len),
                            Wanted::Deciding => (start, deciding),
                        };
                        let start = start as usize;
                        self.candidates
                            .get(start..start + len as usize)
                            .unwrap_or_default()
                    }
                };
            }
            if slot.key == EMPTY {
                return &[];
            }
            at = (at + 1) & mask;
        }
    }

    fn admits(&self, c: &Candidate, method: MethodKey<'_>, path: &mut PathMatches<'_>) -> bool {
        self.admits_method(c, method)
            && match c.paths {
                PathsRef::Any => true,
                PathsRef::One(id) => path.matches(&self.patterns, id),
                PathsRef::Many { start, len } => {
                    let start = start as usize;
                    self.path_lists
                        .get(start..start + len as usize)
                        .unwrap_or_default()
                        .iter()
                        .any(|&id| path.matches(&self.patterns, id))
                }
            }
    }

    /// Whether the candidate admits `method`: exactly when its rule's [`Methods::admits`] says
    /// so.
    fn admits_method(&self, c: &Candidate, method: MethodKey<'_>) -> bool {
        match (method.bit(), c.other_methods) {
            (Some(bit), _) => c.standard_methods & bit != 0,
            (None, OtherMethods::None) => false,
            (None, OtherMethods::Any) => true,
            (None, OtherMethods::Listed) => self
                .listed_methods
                .get(&c.rule)
                .is_some_and(|set| set.admits(method)),
        }
    }
}

/// Which patterns one request's path matches, each worked out once: rules repeat the same few
/// patterns, and a refused call between functions that wide rules connect checks dozens of
/// candidates.
struct PathMatches<'a> {
    path: &'a str,
    /// Of the first 64 pattern ids, those already matched against `path`...
    known: u64,
    /// ...and of those, the ones it matches.
    matching: u64,
}

impl<'a> PathMatches<'a> {
    fn new(path: &'a str) -> Self {
        Self {
            path,
            known: 0,
            matching: 0,
        }
    }

    fn matches(&mut self, patterns: &[PathPattern], id: u32) -> bool {
        let Some(bit) = 1u64.checked_shl(id) else {
            return patterns[id as usize].matches(self.path);
        };
        if self.known & bit == 0 {
            self.known |= bit;
            if patterns[id as usize].matches(self.path) {
                self.matching |= bit;
            }
        }
        self.matching & bit != 0
    }
}

/// Each function's origins and destination keys, and the origins each `from` selector stands
/// for.
struct Origins {
    ends: Vec<Ends>,
    spilled_dest_keys: Vec<u32>,
    /// Per selector used in a rule's `from`: the origins it selects.
    of_selector: HashMap<u32, Vec<u32>>,
}

impl Origins {
    /// Origins are functions first, by index, then one per distinct source class.
    fn new(
        functions: &[FunctionInfo],
        describing: &[Vec<Selector>],
        selector_ids: &HashMap<&Selector, u32>,
        rule_ends: &[(u32, u32)],
    ) -> Self {
        let used_from: Vec<bool> = mark(selector_ids.len(), rule_ends.iter().map(|e| e.0));
        let used_to: Vec<bool> = mark(selector_ids.len(), rule_ends.iter().map(|e| e.1));
        let mut own_origin: HashMap<u32, u32> = HashMap::new();
        let mut classes: HashMap<Vec<u32>, u32> = HashMap::new();
        let mut ends = Vec::with_capacity(functions.len());
        let mut spilled_dest_keys = Vec::new();
        for (f, selectors) in functions.iter().zip(describing) {
            let ids = || {
                selectors
                    .iter()
                    .filter_map(|s| selector_ids.get(s).copied())
            };
            let mut origins = [NO_ORIGIN; 2];
            // An endpoint never makes a call: however wide a rule's `from`, it is no source.
            if makes_calls(&f.spec) {
                let own = selector_ids
                    .get(&Selector::Function(f.spec.name.clone()))
                    .copied();
                if let Some(own) = own.filter(|&id| used_from[id as usize]) {
                    origins[0] = f.id.index() as u32;
                    own_origin.insert(own, origins[0]);
                }
                let mut wide: Vec<u32> = ids()
                    .filter(|&id| used_from[id as usize] && Some(id) != own)
                    .collect();
                if !wide.is_empty() {
                    wide.sort_unstable();
                    let next = (functions.len() + classes.len()) as u32;
                    origins[1] = *classes.entry(wide).or_insert(next);
                }
            }
            let dest: Vec<u32> = ids().filter(|&id| used_to[id as usize]).collect();
            let mut inline = [0; INLINE_DEST_KEYS];
            match inline.get_mut(..dest.len()) {
                Some(fits) => fits.copy_from_slice(&dest),
                None => {
                    inline[0] = spilled_dest_keys.len() as u32;
                    spilled_dest_keys.extend_from_slice(&dest);
                }
            }
            ends.push(Ends {
                origins,
                dest_len: dest.len() as u32,
                dest_keys: inline,
            });
        }
        let mut of_selector: HashMap<u32, Vec<u32>> = own_origin
            .into_iter()
            .map(|(selector, origin)| (selector, vec![origin]))
            .collect();
        for (wide, &class) in &classes {
            for &selector in wide {
                of_selector.entry(selector).or_default().push(class);
            }
        }
        Self {
            ends,
            spilled_dest_keys,
            of_selector,
        }
    }
}

/// Every rule as a candidate, filed under each (origin, destination selector) key it opens, with
/// the method sets and path patterns the candidates point into.
struct Runs {
    by_key: HashMap<u64, Vec<Candidate>>,
    listed_methods: HashMap<u32, MethodSet>,
    path_lists: Vec<u32>,
    patterns: Vec<PathPattern>,
}

impl Runs {
    fn new<'a>(
        rules: &[IndexedRule<'a>],
        rule_ends: &[(u32, u32)],
        origins_of: &HashMap<u32, Vec<u32>>,
    ) -> Self {
        let mut pattern_ids: HashMap<&str, u32> = HashMap::new();
        let mut patterns = Vec::new();
        let mut path_lists = Vec::new();
        let mut by_key: HashMap<u64, Vec<Candidate>> = HashMap::new();
        let mut listed_methods = HashMap::new();
        for (i, (rule, &(from, to))) in rules.iter().zip(rule_ends).enumerate() {
            let method_set = MethodSet::new(rule.methods);
            let mut pattern_id = |p: &'a PathPattern| {
                *pattern_ids.entry(p.as_str()).or_insert_with(|| {
                    patterns.push(p.clone());
                    patterns.len() as u32 - 1
                })
            };
            let paths = match rule.paths {
                None => PathsRef::Any,
                Some([only]) => PathsRef::One(pattern_id(only)),
                Some(list) => {
                    let start = path_lists.len() as u32;
                    path_lists.extend(list.iter().map(&mut pattern_id));
                    PathsRef::Many {
                        start,
                        len: list.len() as u32,
                    }
                }
            };
            let other_methods = match rule.methods {
                Methods::Any => OtherMethods::Any,
                Methods::Only(_) if method_set.lists_others() => OtherMethods::Listed,
                Methods::Only(_) => OtherMethods::None,
            };
            let candidate = Candidate {
                id: rule.id.clone(),
                rule: i as u32,
                standard_methods: method_set.standard_mask(),
                other_methods,
                paths,
            };
            if other_methods == OtherMethods::Listed {
                listed_methods.insert(i as u32, method_set);
            }
            for &origin in origins_of.get(&from).into_iter().flatten() {
                by_key
                    .entry(pack(origin, to))
                    .or_default()
                    .push(candidate.clone());
            }
        }
        Self {
            by_key,
            listed_methods,
            path_lists,
            patterns,
        }
    }
}

/// The filter, the open-addressing table and the candidate runs of `by_key`.
fn table(by_key: HashMap<u64, Vec<Candidate>>) -> (Box<[u64]>, Box<[Slot]>, Vec<Candidate>) {
    let mut slots =
        vec![Slot::EMPTY; (by_key.len() * 2).next_power_of_two().max(2)].into_boxed_slice();
    let mask = slots.len() - 1;
    // At least eight bits per key: about one pair in twenty that holds no rule gets past.
    let mut filter = vec![0; by_key.len().div_ceil(8).next_power_of_two()].into_boxed_slice();
    let mut candidates = Vec::with_capacity(
        by_key
            .values()
            .map(Vec::len)
            .filter(|&len| len > 1)
            .sum::<usize>()
            * 2,
    );
    for (key, run) in by_key {
        let h = hash(key);
        let (word, bits) = filter_bits(h, filter.len());
        filter[word] |= bits;
        let mut at = h as usize & mask;
        while slots[at].key != EMPTY {
            at = (at + 1) & mask;
        }
        let run = match <[Candidate; 1]>::try_from(run) {
            Ok([only]) => Run::One(only),
            Err(run) => {
                let start = candidates.len() as u32;
                let mut kinds = HashSet::new();
                candidates.extend(run.iter().filter(|c| kinds.insert(c.kind())).cloned());
                let deciding = candidates.len() as u32 - start;
                let len = run.len() as u32;
                candidates.extend(run);
                Run::Many {
                    start,
                    len,
                    deciding,
                }
            }
        };
        slots[at] = Slot { key, run };
    }
    (filter, slots, candidates)
}

/// A flag per selector id: whether `used` names it.
fn mark(len: usize, used: impl Iterator<Item = u32>) -> Vec<bool> {
    let mut out = vec![false; len];
    for id in used {
        out[id as usize] = true;
    }
    out
}

fn pack(origin: u32, selector: u32) -> u64 {
    (u64::from(origin) << 32) | u64::from(selector)
}

/// Where a key hashed to `h` is in a filter of `words` words (a power of two): a word and two
/// bits in it, from bits of `h` the table's slot index does not use.
fn filter_bits(h: u64, words: usize) -> (usize, u64) {
    (
        (h >> 32) as usize & (words - 1),
        (1 << (h >> 58)) | (1 << ((h >> 52) & 63)),
    )
}

/// Hashes a packed key: one multiplication (Fibonacci hashing), then the well-mixed high half
/// folded into the low. The keys are ids the compiler assigned, never input a client chooses, so
/// a keyed hash would buy nothing against flooding and cost more than the rest of the lookup.
fn hash(key: u64) -> u64 {
    let h = key.wrapping_mul(0x9e37_79b9_7f4a_7c15);
    h ^ (h >> 29)
}

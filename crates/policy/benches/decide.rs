//! What one mesh decision costs at 1,000, 10,000 and 100,000 allow rules.
//!
//! ```sh
//! cargo bench -p septa-policy --bench decide
//! ```
//!
//! The manifests are generated here, deterministically, in the shape of a large deployment: a
//! function per ten rules, a hundred functions per segment, four rules in five from one function
//! to a function mostly of its own segment, the rest naming a security group, a subnet or a
//! whole segment, and nine rules in ten restricted to a method and a path pattern. Each
//! measurement cycles through 1,024 different (caller, callee, method, path) queries, so the
//! indexes are read from memory rather than from one hot cache line:
//!
//! - `allow`: queries that a function-to-function rule admits;
//! - `deny`: random pairs of functions that no rule connects (a denial builds its reason);
//! - `allow_repeated`: one admitted query over and over, its data in cache: the decision's own
//!   work without the memory latency of large indexes.
//!
//! - `deny` mixes the refusals: at 100,000 rules about four in five name no rule at all, the rest
//!   list the nearest rules (method or path refused); at 1,000 and 10,000 most list them.
//!
//! Each size first prints the mesh index's heap size (`Policy::mesh_index_bytes`).
//!
//! The target (issue 7) is under 200 ns per decision at 100,000 rules, and no growth with the
//! rule count.

#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic, missing_docs)]

use std::fmt::Write as _;
use std::hint::black_box;
use std::path::Path;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use septa_policy::{FunctionId, Policy, Verdict};

/// Rule counts measured.
const SIZES: [usize; 3] = [1_000, 10_000, 100_000];
/// Distinct queries each measurement cycles through.
const QUERIES: usize = 1024;

const PATTERNS: [(&str, &str); 5] = [
    ("/v1/items", "/v1/items"),
    ("/v1/items/{id}", "/v1/items/42"),
    ("/v1/orders/{id}/lines", "/v1/orders/7/lines"),
    ("/health", "/health"),
    ("/v1/reports/...", "/v1/reports/2026/11"),
];
const METHODS: [&str; 2] = ["GET", "POST"];

/// A small linear congruential generator: the same manifest and queries on every run.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: usize) -> usize {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((self.0 >> 33) as usize) % n.max(1)
    }
}

/// One query: caller, callee, method, path.
type Query = (FunctionId, FunctionId, &'static str, &'static str);

/// The generated manifest and, for each function-to-function rule, a request it admits.
struct Generated {
    toml: String,
    admitted: Vec<(usize, usize, &'static str, &'static str)>,
    functions: usize,
}

fn generate(rules: usize) -> Generated {
    let functions = (rules / 10).max(2);
    let segments = functions.div_ceil(100);
    let groups = (functions / 50).max(1);
    let mut rng = Rng(0x5e97a);
    let mut m = String::from("septa_manifest_version = 1\n[application]\nname = \"bench\"\n");
    for s in 0..segments {
        let _ = writeln!(
            m,
            "[segment.s{s:04}]\nsubnets = {{ app = \"private\", data = \"isolated\" }}"
        );
    }
    for g in 0..groups {
        let _ = writeln!(m, "[group.g{g:04}]");
    }
    for f in 0..functions {
        let subnet = if f % 10 == 9 { "data" } else { "app" };
        let _ = writeln!(
            m,
            "[function.f{f:06}]\nsource = \"f.wasm\"\nplacement = \"s{:04}/{subnet}\"\ngroups = [\"g{:04}\"]",
            f / 100,
            rng.below(groups)
        );
    }
    let mut admitted = Vec::new();
    for r in 0..rules {
        let from = rng.below(functions);
        let near = (from / 100 * 100 + rng.below(100)).min(functions - 1);
        let (from_sel, to_sel, pair) = match rng.below(100) {
            0..=79 => (
                format!("function:f{from:06}"),
                format!("function:f{near:06}"),
                Some((from, near)),
            ),
            80..=89 => (
                format!("function:f{from:06}"),
                format!("group:g{:04}", rng.below(groups)),
                None,
            ),
            90..=96 => (
                format!("subnet:s{:04}/app", rng.below(segments)),
                format!("function:f{near:06}"),
                None,
            ),
            _ => (
                format!("segment:s{:04}", rng.below(segments)),
                format!("subnet:s{:04}/app", rng.below(segments)),
                None,
            ),
        };
        let _ = write!(
            m,
            "[[allow]]\nid = \"r{r:06}\"\nfrom = \"{from_sel}\"\nto = \"{to_sel}\"\n"
        );
        let (method, (pattern, path)) = (METHODS[rng.below(2)], PATTERNS[rng.below(5)]);
        if rng.below(10) != 0 {
            let _ = writeln!(m, "methods = [\"{method}\"]\npaths = [\"{pattern}\"]");
        }
        if let Some((a, b)) = pair {
            admitted.push((a, b, method, path));
        }
    }
    Generated {
        toml: m,
        admitted,
        functions,
    }
}

fn compile(generated: &Generated) -> Policy {
    let manifest = septa_manifest::parse(Path::new("/bench/septa.toml"), &generated.toml)
        .unwrap_or_else(|d| panic!("generated manifest does not load: {d}"));
    Policy::compile(manifest)
        .unwrap_or_else(|e| panic!("generated manifest does not compile: {e:?}"))
}

/// `QUERIES` queries that `policy` decides as `want`.
fn queries(policy: &Policy, generated: &Generated, want: Verdict) -> Vec<Query> {
    let id = |i: usize| {
        policy
            .function_id(&format!("f{i:06}"))
            .expect("generated function")
    };
    let mut rng = Rng(7);
    let mut out = Vec::with_capacity(QUERIES);
    for _ in 0..QUERIES * 100 {
        let query = match want {
            Verdict::Allow => {
                let (a, b, method, path) = generated.admitted[rng.below(generated.admitted.len())];
                (id(a), id(b), method, path)
            }
            _ => {
                let (a, b) = (
                    rng.below(generated.functions),
                    rng.below(generated.functions),
                );
                (
                    id(a),
                    id(b),
                    METHODS[rng.below(2)],
                    PATTERNS[rng.below(5)].1,
                )
            }
        };
        if policy
            .decide_mesh(query.0, query.1, query.2, query.3)
            .verdict
            == want
        {
            out.push(query);
            if out.len() == QUERIES {
                return out;
            }
        }
    }
    panic!("fewer than {QUERIES} queries decided {want:?}");
}

fn decide(c: &mut Criterion) {
    let mut group = c.benchmark_group("decide_mesh");
    group.throughput(Throughput::Elements(1));
    for rules in SIZES {
        let generated = generate(rules);
        let policy = compile(&generated);
        eprintln!(
            "{rules} rules, {} functions: mesh index {:.2} MiB",
            generated.functions,
            policy.mesh_index_bytes() as f64 / f64::from(1 << 20)
        );
        for want in [Verdict::Allow, Verdict::Deny] {
            let queries = queries(&policy, &generated, want);
            let name = if want == Verdict::Allow {
                "allow"
            } else {
                "deny"
            };
            group.bench_function(BenchmarkId::new(name, rules), |b| {
                let mut next = queries.iter().cycle();
                b.iter(|| {
                    let &(from, to, method, path) = next.next().expect("a cycle never ends");
                    black_box(policy.decide_mesh(from, to, black_box(method), black_box(path)))
                });
            });
            if want == Verdict::Allow {
                // One query over and over: what a decision costs once its data is in cache.
                let (from, to, method, path) = queries[0];
                group.bench_function(BenchmarkId::new("allow_repeated", rules), |b| {
                    b.iter(|| {
                        black_box(policy.decide_mesh(
                            black_box(from),
                            black_box(to),
                            black_box(method),
                            black_box(path),
                        ))
                    });
                });
            }
        }
    }
    group.finish();
}

criterion_group!(benches, decide);
criterion_main!(benches);

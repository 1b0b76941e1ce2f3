//! Writes a large, deterministic `septa.toml` for measuring `septa audit` at scale.
//!
//! ```sh
//! cargo run --release -p septa-audit --example generate_manifest -- DIR FUNCTIONS SEGMENTS RULES
//! ```
//!
//! The shape follows a large deployment rather than the easiest case for the auditor: most
//! rules connect one function to another, a tenth name a security group, and a few in a hundred
//! open whole subnets or segments (one rule from `segment:a` to `segment:b` connects ten
//! thousand pairs of functions). One segment runs in audit mode, a tenth of the segments carry
//! the `pci` label, and there are routes, egress rules and invariants. `scripts/bench-audit`
//! runs it at two sizes and measures `septa audit` on both.

use std::fmt::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;

/// A small linear congruential generator: the same manifest on every run, without a crate.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: usize) -> usize {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((self.0 >> 33) as usize) % n.max(1)
    }

    fn chance(&mut self, percent: usize) -> bool {
        self.below(100) < percent
    }
}

const PATHS: [&str; 6] = [
    "/v1/items",
    "/v1/items/{id}",
    "/v1/orders/{id}",
    "/v1/orders/{id}/lines",
    "/health",
    "/v1/reports/...",
];

struct Shape {
    functions: usize,
    segments: usize,
    rules: usize,
}

/// Where function `f` lives: its segment and subnet.
fn placement(shape: &Shape, f: usize) -> (usize, &'static str) {
    let per_segment = shape.functions.div_ceil(shape.segments);
    let segment = f / per_segment;
    let subnet = match f % 10 {
        // The first tenth of the segments face the internet.
        0..=2 if segment < shape.segments.div_ceil(10) => "web",
        9 => "data",
        _ => "app",
    };
    (segment, subnet)
}

fn generate(shape: &Shape) -> String {
    let mut rng = Rng(0x5e97a);
    let mut m = String::new();
    let _ = writeln!(
        m,
        "septa_manifest_version = 1\n[application]\nname = \"generated\"\n"
    );
    let audit_segment = shape.segments / 2;
    for s in 0..shape.segments {
        let web = if s < shape.segments.div_ceil(10) {
            "web = \"public\", "
        } else {
            ""
        };
        let _ = writeln!(
            m,
            "[segment.s{s:03}]\nsubnets = {{ {web}app = \"private\", data = \"isolated\" }}"
        );
        if s >= shape.segments - shape.segments.div_ceil(10) {
            let _ = writeln!(m, "labels = [\"pci\"]");
        }
        if s == audit_segment {
            let _ = writeln!(m, "mode = \"audit\"");
        }
    }
    let groups = (shape.functions / 50).max(1);
    for g in 0..groups {
        let _ = writeln!(m, "[group.g{g:03}]");
    }
    for f in 0..shape.functions {
        let (segment, subnet) = placement(shape, f);
        let _ = write!(
            m,
            "[function.f{f:05}]\nsource = \"f.wasm\"\nplacement = \"s{segment:03}/{subnet}\"\n"
        );
        match rng.below(4) {
            0 => {}
            1 | 2 => {
                let _ = writeln!(m, "groups = [\"g{:03}\"]", rng.below(groups));
            }
            _ => {
                let _ = writeln!(
                    m,
                    "groups = [\"g{:03}\", \"g{:03}\"]",
                    rng.below(groups),
                    rng.below(groups)
                );
            }
        }
    }
    // Routes to the public functions, half of them rate limited.
    let public: Vec<usize> = (0..shape.functions)
        .filter(|&f| placement(shape, f).1 == "web")
        .collect();
    for (i, &f) in public.iter().enumerate().take(shape.functions / 50) {
        let _ = write!(
            m,
            "[[route]]\nid = \"route{i:04}\"\npath = \"/api/f{f:05}/...\"\nmethods = [\"GET\", \"POST\"]\nfunction = \"f{f:05}\"\n"
        );
        if i % 2 == 0 {
            let _ = writeln!(
                m,
                "rate_limit = {{ key = \"ip\", per_second = 10, burst = 20 }}"
            );
        }
    }
    for r in 0..shape.rules {
        let (from, to) = selectors(shape, &mut rng, groups);
        let _ = write!(
            m,
            "[[allow]]\nid = \"r{r:05}\"\nfrom = \"{from}\"\nto = \"{to}\"\n"
        );
        // A tenth of the rules admit any method on any path; the rest name both.
        if !rng.chance(10) {
            let methods = ["[\"GET\"]", "[\"POST\"]", "[\"GET\", \"POST\"]"][rng.below(3)];
            let first = PATHS[rng.below(PATHS.len())];
            let second = PATHS[rng.below(PATHS.len())];
            let paths = if first == second || rng.chance(50) {
                format!("[\"{first}\"]")
            } else {
                format!("[\"{first}\", \"{second}\"]")
            };
            let _ = writeln!(m, "methods = {methods}\npaths = {paths}");
        }
    }
    // Egress from non-isolated functions, a few of them wide.
    let mut egress = 0;
    for f in (0..shape.functions).step_by(10) {
        if placement(shape, f).1 == "data" {
            continue;
        }
        let to = if egress % 50 == 0 {
            "\"https://*.example.com\"".to_owned()
        } else {
            format!("\"https://api{}.example.com:443\"", rng.below(200))
        };
        let _ = writeln!(
            m,
            "[[egress]]\nid = \"e{egress:05}\"\nfrom = \"function:f{f:05}\"\nto = [{to}]"
        );
        egress += 1;
    }
    let gate = public.first().copied().unwrap_or(0);
    let _ = writeln!(
        m,
        "[[invariant]]\nid = \"pci-through-gate\"\ndeny_path = {{ from = \"gateway\", to = \"label:pci\", except_through = [\"function:f{gate:05}\"] }}"
    );
    let _ = writeln!(
        m,
        "[[invariant]]\nid = \"first-never-reaches-last\"\ndeny_path = {{ from = \"segment:s000\", to = \"segment:s{:03}\" }}",
        shape.segments - 1
    );
    m
}

/// The two sides of one allow rule.
fn selectors(shape: &Shape, rng: &mut Rng, groups: usize) -> (String, String) {
    let function = |rng: &mut Rng| format!("function:f{:05}", rng.below(shape.functions));
    // Most calls stay near the caller: the callee is in the same segment seven times in ten.
    let near = |rng: &mut Rng, from: &str| {
        let caller: usize = from
            .strip_prefix("function:f")
            .and_then(|n| n.parse().ok())
            .unwrap_or(0);
        let per_segment = shape.functions.div_ceil(shape.segments);
        if rng.chance(70) {
            let base = caller / per_segment * per_segment;
            format!(
                "function:f{:05}",
                (base + rng.below(per_segment)).min(shape.functions - 1)
            )
        } else {
            format!("function:f{:05}", rng.below(shape.functions))
        }
    };
    let group = |rng: &mut Rng| format!("group:g{:03}", rng.below(groups));
    let segment = |rng: &mut Rng| format!("segment:s{:03}", rng.below(shape.segments));
    let subnet = |rng: &mut Rng| {
        let s = rng.below(shape.segments);
        format!("subnet:s{s:03}/app")
    };
    match rng.below(100) {
        0..=79 => {
            let from = function(rng);
            let to = near(rng, &from);
            (from, to)
        }
        80..=84 => (function(rng), group(rng)),
        85..=89 => (group(rng), function(rng)),
        90..=93 => (subnet(rng), function(rng)),
        94..=96 => (function(rng), subnet(rng)),
        97..=98 => (segment(rng), subnet(rng)),
        _ => (segment(rng), segment(rng)),
    }
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [dir, functions, segments, rules] = args.as_slice() else {
        eprintln!("usage: generate_manifest DIR FUNCTIONS SEGMENTS RULES");
        return ExitCode::from(2);
    };
    let number = |name: &str, text: &str| {
        text.parse::<usize>()
            .ok()
            .filter(|&n| n > 0)
            .ok_or_else(|| format!("{name} `{text}` is not a positive number"))
    };
    let shape = match (
        number("FUNCTIONS", functions),
        number("SEGMENTS", segments),
        number("RULES", rules),
    ) {
        (Ok(functions), Ok(segments), Ok(rules)) if segments <= functions => Shape {
            functions,
            segments,
            rules,
        },
        (Err(e), _, _) | (_, Err(e), _) | (_, _, Err(e)) => {
            eprintln!("generate_manifest: {e}");
            return ExitCode::from(2);
        }
        _ => {
            eprintln!("generate_manifest: more segments than functions");
            return ExitCode::from(2);
        }
    };
    let dir = PathBuf::from(dir);
    let file = dir.join("septa.toml");
    if let Err(e) =
        std::fs::create_dir_all(&dir).and_then(|()| std::fs::write(&file, generate(&shape)))
    {
        eprintln!("generate_manifest: cannot write `{}`: {e}", file.display());
        return ExitCode::FAILURE;
    }
    println!(
        "wrote `{}`: {} functions, {} segments, {} allow rules",
        file.display(),
        shape.functions,
        shape.segments,
        shape.rules
    );
    ExitCode::SUCCESS
}

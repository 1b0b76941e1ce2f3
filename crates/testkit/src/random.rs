//! Random manifests for differential and property tests: three segments, four functions in
//! random groups, and up to six allow rules with random selectors, methods and paths. The
//! generator is deterministic, so a failure names its seed.

/// A small deterministic generator, so a failure names its seed.
pub struct Rng(pub u64);

impl Rng {
    /// A number below `n`.
    pub fn next(&mut self, n: usize) -> usize {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((self.0 >> 33) as usize) % n
    }
}

/// How many functions a random manifest has (`f0`..).
pub const FUNCTIONS: usize = 4;
/// The methods its rules name.
pub const METHODS: [&str; 2] = ["GET", "POST"];
/// Paths that tell its rules' patterns apart.
pub const PATHS: [&str; 4] = ["/a", "/a/1", "/b/x", "/c"];

/// A random manifest whose functions all run `source` (the caller component).
pub fn random_manifest(rng: &mut Rng, source: &str) -> String {
    let mut m = String::from("septa_manifest_version = 1\n[application]\nname = \"random\"\n");
    for s in 0..3 {
        m.push_str(&format!(
            "[segment.s{s}]\nsubnets = {{ web = \"public\" }}\n"
        ));
    }
    m.push_str("[group.g0]\n[group.g1]\n");
    for f in 0..FUNCTIONS {
        let groups = ["[]", "[\"g0\"]", "[\"g1\"]", "[\"g0\", \"g1\"]"][rng.next(4)];
        m.push_str(&format!(
            "[function.f{f}]\nsource = {source:?}\nplacement = \"s{}/web\"\ngroups = {groups}\n[[route]]\npath = \"/f{f}/...\"\nfunction = \"f{f}\"\n",
            rng.next(3)
        ));
    }
    let selector = |rng: &mut Rng| match rng.next(4) {
        0 => format!("segment:s{}", rng.next(3)),
        1 => format!("subnet:s{}/web", rng.next(3)),
        2 => format!("group:g{}", rng.next(2)),
        _ => format!("function:f{}", rng.next(FUNCTIONS)),
    };
    for r in 0..rng.next(6) + 1 {
        let from = selector(rng);
        let to = selector(rng);
        m.push_str(&format!(
            "[[allow]]\nid = \"r{r}\"\nfrom = \"{from}\"\nto = \"{to}\"\n"
        ));
        match rng.next(4) {
            0 => {}
            1 => m.push_str("methods = [\"GET\"]\n"),
            2 => m.push_str("methods = [\"POST\"]\n"),
            _ => m.push_str("methods = [\"GET\", \"POST\"]\n"),
        }
        match rng.next(3) {
            0 => {}
            1 => m.push_str("paths = [\"/a\", \"/b/...\"]\n"),
            _ => m.push_str("paths = [\"/a/{id}\"]\n"),
        }
    }
    m
}

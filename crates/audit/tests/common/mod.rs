//! What the tests of the audit share: random applications from a seeded generator.

#![allow(dead_code)]

/// A small deterministic generator, so a failure names its seed.
pub struct Rng(pub u64);

impl Rng {
    /// A number below `n`.
    pub fn below(&mut self, n: usize) -> usize {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((self.0 >> 33) as usize) % n
    }
}

/// How many functions a random manifest has (`f0`…), besides its endpoint `store`.
pub const FUNCTIONS: usize = 7;

/// A random application: three segments (one labelled `pci`, some in audit mode), two groups,
/// [`FUNCTIONS`] functions with routes to the public ones and some egress, the embedded endpoint
/// `store`, and up to ten allow rules between random selectors.
pub fn random_manifest(rng: &mut Rng) -> String {
    let mut m = String::from("septa_manifest_version = 1\n[application]\nname = \"random\"\n");
    for s in 0..3 {
        let mode = if rng.below(6) == 0 {
            "mode = \"audit\"\n"
        } else {
            ""
        };
        let labels = if s == 2 { "labels = [\"pci\"]\n" } else { "" };
        m.push_str(&format!(
            "[segment.s{s}]\nsubnets = {{ web = \"public\", app = \"private\", vault = \"isolated\" }}\n{labels}{mode}"
        ));
    }
    m.push_str("[group.g0]\n[group.g1]\n");
    for f in 0..FUNCTIONS {
        let groups = ["[]", "[\"g0\"]", "[\"g1\"]", "[\"g0\", \"g1\"]"][rng.below(4)];
        let subnet = ["web", "app", "vault"][rng.below(3)];
        let mode = if rng.below(8) == 0 {
            "mode = \"audit\"\n"
        } else {
            ""
        };
        m.push_str(&format!(
            "[function.f{f}]\nsource = \"f.wasm\"\nplacement = \"s{}/{subnet}\"\ngroups = {groups}\n{mode}",
            rng.below(3)
        ));
        if subnet == "web" {
            m.push_str(&format!(
                "[[route]]\npath = \"/f{f}/...\"\nfunction = \"f{f}\"\n"
            ));
        }
        if subnet != "vault" && rng.below(2) == 0 {
            m.push_str(&format!(
                "[[egress]]\nid = \"e{f}\"\nfrom = \"function:f{f}\"\nto = [\"https://api{}.example:443\"]\n",
                rng.below(3)
            ));
        }
    }
    m.push_str("[endpoint.store]\nplacement = \"s2/vault\"\n");
    let selector = |rng: &mut Rng| match rng.below(5) {
        0 => format!("segment:s{}", rng.below(3)),
        1 => format!("subnet:s{}/app", rng.below(3)),
        2 => format!("group:g{}", rng.below(2)),
        3 => "label:pci".to_owned(),
        _ => format!("function:f{}", rng.below(FUNCTIONS)),
    };
    for r in 0..rng.below(10) + 1 {
        let from = selector(rng);
        let to = if rng.below(6) == 0 {
            "endpoint:store".to_owned()
        } else {
            selector(rng)
        };
        let methods = ["", "methods = [\"GET\"]\n", "methods = []\n"][rng.below(3)];
        m.push_str(&format!(
            "[[allow]]\nid = \"r{r}\"\nfrom = \"{from}\"\nto = \"{to}\"\n{methods}"
        ));
    }
    m
}

//! Differential test: on random manifests, what `septa query --direct` says one function can
//! reach is exactly what the running platform lets through, driven pair by pair.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::{Septa, encode, repo};
use septa_audit::{Answer, Graph, query};
use septa_manifest::Selector;
use septa_policy::Policy;

/// A small deterministic generator, so a failure names its seed.
struct Rng(u64);

impl Rng {
    fn next(&mut self, n: usize) -> usize {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((self.0 >> 33) as usize) % n
    }
}

const FUNCTIONS: usize = 4;
const METHODS: [&str; 2] = ["GET", "POST"];
const PATHS: [&str; 4] = ["/a", "/a/1", "/b/x", "/c"];

fn random_manifest(rng: &mut Rng) -> String {
    let caller = repo().join("tests/components/target/wasm32-wasip2/release/caller.wasm");
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
            "[function.f{f}]\nsource = {:?}\nplacement = \"s{}/web\"\ngroups = {groups}\n[[route]]\npath = \"/f{f}/...\"\nfunction = \"f{f}\"\n",
            caller.to_str().unwrap(),
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

#[test]
fn what_query_says_is_what_the_platform_lets_through() {
    for seed in [7_u64, 1234, 99_999] {
        let mut rng = Rng(seed);
        let dir = tempfile::tempdir().unwrap();
        let text = random_manifest(&mut rng);
        std::fs::write(dir.path().join("septa.toml"), &text).unwrap();
        let policy = Policy::compile(septa_manifest::load(dir.path()).unwrap()).unwrap();
        let graph = Graph::build(&policy);
        let septa = Septa::start(dir.path());
        let mut allowed = 0;
        for a in 0..FUNCTIONS {
            for b in 0..FUNCTIONS {
                for method in METHODS {
                    for path in PATHS {
                        let url = encode(&format!("http://f{b}.internal{path}"));
                        let r = septa
                            .get(&format!("/f{a}/?to={url}&method={method}"))
                            .json();
                        let ran = r["denied"] != true;
                        let from = Selector::parse(&format!("function:f{a}")).unwrap();
                        let to = Selector::parse(&format!("function:f{b}")).unwrap();
                        let said = matches!(
                            query(&policy, &graph, &from, &to, Some(method), Some(path), true),
                            Answer::Reachable(_)
                        );
                        assert_eq!(
                            ran, said,
                            "seed {seed}: f{a} -> f{b} {method} {path}: platform {r}, manifest:\n{text}"
                        );
                        allowed += usize::from(ran);
                    }
                }
            }
        }
        // The generator must exercise both answers, or the comparison proves little.
        assert!(
            allowed > 0 && allowed < FUNCTIONS * FUNCTIONS * 8,
            "seed {seed}: {allowed} allowed"
        );
    }
}

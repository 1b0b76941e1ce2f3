//! The allow rules by the pair of selectors they are written with, laid out for the mesh
//! decision: one cheap hash and one slice of a shared array per lookup, and no allocation.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

/// Allow-rule numbers (their file order) by (`from` selector id, `to` selector id).
#[derive(Debug, Default)]
pub(crate) struct MeshIndex {
    /// Where each pair's rules are in `rules`: (start, length), by the pair packed in a `u64`.
    spans: HashMap<u64, (u32, u32), BuildHasherDefault<PairHasher>>,
    /// Every pair's rules, one run per pair, each run in file order.
    rules: Vec<u32>,
}

impl MeshIndex {
    /// Lays out `by_pair`, whose lists are in file order.
    pub(crate) fn new(by_pair: HashMap<(u32, u32), Vec<u32>>) -> Self {
        let mut index = Self {
            spans: HashMap::with_capacity_and_hasher(by_pair.len(), Default::default()),
            rules: Vec::with_capacity(by_pair.values().map(Vec::len).sum()),
        };
        for ((from, to), rules) in by_pair {
            let start = index.rules.len() as u32;
            index.rules.extend_from_slice(&rules);
            index
                .spans
                .insert(pack(from, to), (start, rules.len() as u32));
        }
        index
    }

    /// The rules written from selector `from` to selector `to`, in file order.
    pub(crate) fn get(&self, from: u32, to: u32) -> &[u32] {
        match self.spans.get(&pack(from, to)) {
            Some(&(start, len)) => {
                let start = start as usize;
                self.rules.get(start..start + len as usize).unwrap_or(&[])
            }
            None => &[],
        }
    }
}

fn pack(from: u32, to: u32) -> u64 {
    (u64::from(from) << 32) | u64::from(to)
}

/// A fast hash for the packed pairs (MurmurHash3's 64-bit finalizer). The keys are selector ids
/// the compiler assigned, never input a client chooses, so a keyed hash (the standard library's
/// SipHash) would buy nothing against flooding and cost more than the rest of the lookup.
#[derive(Default)]
pub(crate) struct PairHasher(u64);

impl Hasher for PairHasher {
    fn write(&mut self, bytes: &[u8]) {
        // Only `u64` keys are hashed here; this keeps any other use correct, if slower.
        for &b in bytes {
            self.write_u64(u64::from(b));
        }
    }

    fn write_u64(&mut self, n: u64) {
        let mut x = self.0 ^ n;
        x ^= x >> 33;
        x = x.wrapping_mul(0xff51_afd7_ed55_8ccd);
        x ^= x >> 33;
        x = x.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
        x ^= x >> 33;
        self.0 = x;
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_pair_finds_its_own_rules_in_order_and_others_none() {
        let mut by_pair = HashMap::new();
        by_pair.insert((0, 1), vec![0, 4, 9]);
        by_pair.insert((1, 0), vec![2]);
        by_pair.insert((7, 7), vec![3, 5]);
        let index = MeshIndex::new(by_pair);
        assert_eq!(index.get(0, 1), &[0, 4, 9]);
        assert_eq!(index.get(1, 0), &[2]);
        assert_eq!(index.get(7, 7), &[3, 5]);
        assert!(index.get(1, 1).is_empty());
        assert!(index.get(0, 7).is_empty());
    }
}

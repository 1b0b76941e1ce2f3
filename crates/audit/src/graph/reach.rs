//! What each place reaches, computed once for all of them: the strongly connected components
//! of places and hubs (Tarjan's, without recursion), then, from the last component to the
//! first, the union of what each component's successors are and reach.

use super::Graph;

/// What each place reaches, computed once for all of them: the strongly connected components
/// of places and hubs, then, from the last component to the first, the union of what each
/// component's successors are and reach. One bit per place, so 10,000 functions cost about
/// 1.3 KB per component.
pub struct Reach {
    component: Vec<u32>,
    reached: Vec<Vec<u64>>,
}

impl Reach {
    pub(super) fn new(graph: &Graph<'_>) -> Self {
        let places = graph.nodes.len();
        let words = places.div_ceil(64);
        let (component, order) = components(graph);
        let mut reached: Vec<Vec<u64>> = vec![Vec::new(); order.len()];
        // `components` lists them so that every component comes after the ones it reaches.
        for (c, members) in order.iter().enumerate() {
            let mut set = vec![0u64; words];
            let cyclic = members.len() > 1
                || members
                    .iter()
                    .any(|&n| graph.links[n].iter().any(|l| l.to as usize == n));
            for &n in members {
                if cyclic && n < places {
                    set[n / 64] |= 1 << (n % 64);
                }
                for link in &graph.links[n] {
                    let to = link.to as usize;
                    let other = component[to] as usize;
                    if other == c {
                        continue;
                    }
                    if to < places {
                        set[to / 64] |= 1 << (to % 64);
                    }
                    for (word, theirs) in set.iter_mut().zip(&reached[other]) {
                        *word |= theirs;
                    }
                }
            }
            reached[c] = set;
        }
        Self { component, reached }
    }

    /// How many places `node` reaches by one or more hops, itself left out.
    pub fn count(&self, node: usize) -> usize {
        let set = &self.reached[self.component[node] as usize];
        let all: u32 = set.iter().map(|w| w.count_ones()).sum();
        let itself = set
            .get(node / 64)
            .is_some_and(|w| w & (1 << (node % 64)) != 0);
        all as usize - usize::from(itself)
    }

    /// The places `node` reaches by one or more hops, itself left out, in index order.
    pub fn from(&self, node: usize) -> impl Iterator<Item = usize> + '_ {
        let set = &self.reached[self.component[node] as usize];
        set.iter()
            .enumerate()
            .flat_map(|(w, &word)| {
                let mut rest = word;
                std::iter::from_fn(move || {
                    (rest != 0).then(|| {
                        let bit = rest.trailing_zeros() as usize;
                        rest &= rest - 1;
                        w * 64 + bit
                    })
                })
            })
            .filter(move |&n| n != node)
    }
}

/// Tarjan's strongly connected components, without recursion: each node's component, and the
/// components in the order they complete (a component completes after every one it reaches).
fn components(graph: &Graph<'_>) -> (Vec<u32>, Vec<Vec<usize>>) {
    const UNSEEN: u32 = u32::MAX;
    let n = graph.links.len();
    let mut index = vec![UNSEEN; n];
    let mut low = vec![0u32; n];
    let mut on_stack = vec![false; n];
    let mut component = vec![UNSEEN; n];
    let mut stack: Vec<usize> = Vec::new();
    let mut order: Vec<Vec<usize>> = Vec::new();
    let mut next = 0u32;
    // (node, position in its links)
    let mut calls: Vec<(usize, usize)> = Vec::new();
    for root in 0..n {
        if index[root] != UNSEEN {
            continue;
        }
        calls.push((root, 0));
        index[root] = next;
        low[root] = next;
        next += 1;
        stack.push(root);
        on_stack[root] = true;
        while let Some(&mut (node, ref mut at)) = calls.last_mut() {
            if let Some(link) = graph.links[node].get(*at) {
                *at += 1;
                let to = link.to as usize;
                if index[to] == UNSEEN {
                    index[to] = next;
                    low[to] = next;
                    next += 1;
                    stack.push(to);
                    on_stack[to] = true;
                    calls.push((to, 0));
                } else if on_stack[to] {
                    low[node] = low[node].min(index[to]);
                }
                continue;
            }
            calls.pop();
            if let Some(&(parent, _)) = calls.last() {
                low[parent] = low[parent].min(low[node]);
            }
            if low[node] == index[node] {
                let id = order.len() as u32;
                let mut members = Vec::new();
                while let Some(m) = stack.pop() {
                    on_stack[m] = false;
                    component[m] = id;
                    members.push(m);
                    if m == node {
                        break;
                    }
                }
                order.push(members);
            }
        }
    }
    (component, order)
}

//! Shortest paths through the graph: a breadth-first search over places and hubs that
//! remembers how each node was first reached, and folds the links it took back into hops
//! between places, each naming the rule that opens it.

use std::collections::{HashSet, VecDeque};

use super::{Edge, Graph, Link};

impl Graph<'_> {
    /// The shortest path (as hops between places, at least one) from any of `sources` to any of
    /// `targets` that never enters a `blocked` place.
    pub fn shortest_path(
        &self,
        sources: &[usize],
        targets: &HashSet<usize>,
        blocked: &HashSet<usize>,
    ) -> Option<Vec<Edge>> {
        let mut search = Search::new(self, sources);
        let (node, link) = search.run(self, |next| {
            if blocked.contains(&next) {
                Step::Skip
            } else if targets.contains(&next) {
                Step::Stop
            } else {
                Step::Go
            }
        })?;
        Some(search.hops(self, node, link))
    }

    /// From `source`, the shortest path to every place it reaches, in one search.
    pub(crate) fn shortest_paths_from(&self, source: usize) -> ShortestPaths<'_> {
        let mut search = Search::new(self, &[source]);
        let _ = search.run(self, |_| Step::Go);
        ShortestPaths {
            graph: self,
            search,
        }
    }
}

/// What the search does on reaching a place.
enum Step {
    /// Go on through it.
    Go,
    /// Do not enter it.
    Skip,
    /// It is the target: stop.
    Stop,
}

/// A breadth-first search over places and hubs, remembering how each node was first reached.
struct Search {
    /// Per node: the node and link it was first reached through.
    via: Vec<Option<(u32, Link)>>,
    seen: Vec<bool>,
    queue: VecDeque<usize>,
}

impl Search {
    fn new(graph: &Graph<'_>, sources: &[usize]) -> Self {
        let mut seen = vec![false; graph.links.len()];
        for &s in sources {
            seen[s] = true;
        }
        Self {
            via: vec![None; graph.links.len()],
            seen,
            queue: sources.iter().copied().collect(),
        }
    }

    /// Runs until `step` says stop at a place (returning the node left and the link taken) or
    /// the queue is empty.
    fn run(
        &mut self,
        graph: &Graph<'_>,
        mut step: impl FnMut(usize) -> Step,
    ) -> Option<(usize, Link)> {
        while let Some(node) = self.queue.pop_front() {
            for &link in &graph.links[node] {
                let next = link.to as usize;
                if graph.is_place(next) {
                    match step(next) {
                        Step::Skip => continue,
                        Step::Stop => return Some((node, link)),
                        Step::Go => {}
                    }
                }
                if !self.seen[next] {
                    self.seen[next] = true;
                    self.via[next] = Some((node as u32, link));
                    self.queue.push_back(next);
                }
            }
        }
        None
    }

    /// The hops of the path that ends by taking `link` out of `node`, folded from links into
    /// hops between places.
    fn hops(&self, graph: &Graph<'_>, node: usize, link: Link) -> Vec<Edge> {
        let mut links = vec![(node, link)];
        let mut at = node;
        while let Some((prev, link)) = self.via[at] {
            links.push((prev as usize, link));
            at = prev as usize;
        }
        links.reverse();
        let mut hops = Vec::new();
        let (mut start, mut label) = (at, None);
        for (_, link) in links {
            label = link.label.or(label);
            let to = link.to as usize;
            if graph.is_place(to) {
                if let Some(l) = label.take() {
                    hops.push(graph.edge(start, to, l));
                }
                start = to;
            }
        }
        hops
    }
}

/// The shortest paths from one place, found by one search.
pub(crate) struct ShortestPaths<'g> {
    graph: &'g Graph<'g>,
    search: Search,
}

impl ShortestPaths<'_> {
    /// The shortest path to `target`, if the source reaches it.
    pub(crate) fn to(&self, target: usize) -> Option<Vec<Edge>> {
        let (node, link) = self.search.via[target]?;
        Some(self.search.hops(self.graph, node as usize, link))
    }
}

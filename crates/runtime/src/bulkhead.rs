//! Bulkheads: how many requests each function, and each segment as a whole, may serve at once.
//!
//! A function's cap is its `limits.max_concurrency`; a segment's is `[segment.NAME]
//! limits.max_concurrency`, shared by its functions and endpoints, so one busy function cannot
//! take every slot of its neighbours in other segments. Past a cap a request is refused at once
//! (503), never queued: overload answers quickly instead of piling up.

use std::sync::Arc;

use septa_policy::{FunctionId, Policy};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::InvokeError;

struct Slots {
    name: String,
    limit: usize,
    free: Arc<Semaphore>,
}

impl Slots {
    fn new(name: &str, limit: u32) -> Self {
        let limit = limit as usize;
        Self {
            name: name.to_owned(),
            limit,
            free: Arc::new(Semaphore::new(limit)),
        }
    }
}

/// The caps of every function and segment of one policy.
pub struct Bulkheads {
    /// By function id.
    functions: Vec<Slots>,
    /// By function id: the index of its segment's slots, if the segment has a cap.
    segment_of: Vec<Option<usize>>,
    segments: Vec<Slots>,
}

/// The slots one request holds until it is dropped.
#[derive(Debug)]
pub struct Admitted {
    _function: OwnedSemaphorePermit,
    _segment: Option<OwnedSemaphorePermit>,
}

impl Bulkheads {
    /// The caps `policy` declares.
    pub fn new(policy: &Policy) -> Self {
        let manifest = policy.manifest();
        let mut segments = Vec::new();
        let mut index = std::collections::HashMap::new();
        for segment in manifest.segments.values() {
            if let Some(limit) = segment.max_concurrency {
                index.insert(segment.name.clone(), segments.len());
                segments.push(Slots::new(segment.name.as_str(), limit));
            }
        }
        let functions = policy
            .functions()
            .iter()
            .map(|f| Slots::new(f.spec.name.as_str(), f.spec.limits.max_concurrency))
            .collect();
        let segment_of = policy
            .functions()
            .iter()
            .map(|f| index.get(&f.spec.placement.segment).copied())
            .collect();
        Self {
            functions,
            segment_of,
            segments,
        }
    }

    /// Each function's name and the requests it is serving right now (slots taken), in function
    /// id order. Reads each semaphore's count; takes no lock and no slot.
    pub fn in_use(&self) -> impl Iterator<Item = (&str, usize)> + '_ {
        self.functions.iter().map(|slots| {
            let taken = slots.limit.saturating_sub(slots.free.available_permits());
            (slots.name.as_str(), taken)
        })
    }

    /// Takes a slot of function `id` and of its segment, or says which is full.
    pub fn enter(&self, id: FunctionId) -> Result<Admitted, InvokeError> {
        let Some(function) = self.functions.get(id.index()) else {
            return Err(InvokeError::Host {
                function: format!("#{}", id.index()),
                message: "no such function in the loaded policy".to_owned(),
            });
        };
        let segment = match self.segment_of.get(id.index()).copied().flatten() {
            Some(i) => {
                let slots = &self.segments[i];
                let permit = slots.free.clone().try_acquire_owned().map_err(|_| {
                    InvokeError::SegmentOverloaded {
                        segment: slots.name.clone(),
                        limit: slots.limit,
                    }
                })?;
                Some(permit)
            }
            None => None,
        };
        let permit =
            function
                .free
                .clone()
                .try_acquire_owned()
                .map_err(|_| InvokeError::Overloaded {
                    function: function.name.clone(),
                    limit: function.limit,
                })?;
        Ok(Admitted {
            _function: permit,
            _segment: segment,
        })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    #[test]
    fn in_use_counts_the_slots_taken_until_they_are_released() {
        let manifest = septa_manifest::parse(
            std::path::Path::new("septa.toml"),
            "septa_manifest_version = 1\n[application]\nname = \"a\"\n[segment.s]\nsubnets = { web = \"public\" }\n[function.one]\nsource = \"one.wasm\"\nplacement = \"s/web\"\n[function.two]\nsource = \"two.wasm\"\nplacement = \"s/web\"\n",
        )
        .unwrap();
        let policy = Policy::compile(manifest).unwrap();
        let bulkheads = Bulkheads::new(&policy);
        let one = policy.function_id("one").unwrap();
        let first = bulkheads.enter(one).unwrap();
        let second = bulkheads.enter(one).unwrap();
        let in_use = |b: &Bulkheads| -> Vec<(String, usize)> {
            b.in_use().map(|(n, c)| (n.to_owned(), c)).collect()
        };
        assert_eq!(
            in_use(&bulkheads),
            [("one".to_owned(), 2), ("two".to_owned(), 0)]
        );
        drop((first, second));
        assert_eq!(
            in_use(&bulkheads),
            [("one".to_owned(), 0), ("two".to_owned(), 0)]
        );
    }
}

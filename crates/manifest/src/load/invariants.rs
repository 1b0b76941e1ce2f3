//! `[[invariant]]`s: unique ids and the places their `deny_path` names, where `gateway` (the
//! internet) is a place.

use std::collections::HashSet;

use super::Loader;
use super::references::References;
use crate::diagnostic::Location;
use crate::model::*;
use crate::raw::*;
use crate::selector::Selector;

impl Loader {
    pub(super) fn invariants(
        &mut self,
        raw: &[(Location, RawInvariant)],
        refs: &References,
    ) -> Vec<Invariant> {
        let mut out = Vec::new();
        let mut ids = HashSet::new();
        for (at, r) in raw {
            let id = self.entry_id(&r.id, &mut ids, "invariant");
            let from = self.invariant_selector(&r.deny_path.from, refs);
            let to = self.invariant_selector(&r.deny_path.to, refs);
            let except: Vec<Option<Selector>> = r
                .deny_path
                .except_through
                .iter()
                .map(|s| self.invariant_selector(s, refs))
                .collect();
            let (Some(id), Some(from), Some(to)) = (id, from, to) else {
                continue;
            };
            let Some(except_through) = except.into_iter().collect::<Option<Vec<_>>>() else {
                continue;
            };
            out.push(Invariant {
                id,
                rule: InvariantRule::DenyPath {
                    from,
                    to,
                    except_through,
                },
                location: *at,
            });
        }
        out
    }
}

//! Invariants: properties of the whole policy, such as a path that must not exist, checked
//! before the platform starts.

use super::Name;
use crate::diagnostic::Location;
use crate::selector::Selector;

/// A property the policy must satisfy, checked before the platform starts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Invariant {
    /// Its id, named by every violation.
    pub id: Name,
    /// What it requires.
    pub rule: InvariantRule,
    /// Where it is declared.
    pub location: Location,
}

/// The kinds of invariant.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum InvariantRule {
    /// No path of allowed flows leads from `from` to anything `to` selects without passing
    /// through (or ending at) something `except_through` selects.
    DenyPath {
        /// Where paths start (`gateway` is the internet).
        from: Selector,
        /// What they must not reach.
        to: Selector,
        /// The only gates paths may go through.
        except_through: Vec<Selector>,
    },
}

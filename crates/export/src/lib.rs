//! Exports of the compiled policy to a platform's own machinery, and the report of how far each
//! export is from the policy it came from.
//!
//! An export reads the same [`septa_policy::Policy`] the enforcers decide with. The parts every
//! target shares live here: septa's own [`TruthTable`] of who may reach whom at the export's
//! [`Granularity`], the documented [`ReasonCode`]s a difference may carry, the [`Report`] with
//! its Markdown and JSON forms, a deterministic YAML writer ([`yaml`]) and the atomic writing of
//! an output directory ([`write_atomically`]). Each target is a module: [`kubernetes`] and [`aws`].

pub mod aws;
pub mod kubernetes;
mod reason;
mod report;
mod truth;
mod write;
pub mod yaml;

pub use reason::{ReasonCode, markdown_table as reason_table};
pub use report::{Difference, Direction, PairRow, Report, TruthRow};
pub use truth::{Access, Cell, CellId, Cells, Granularity, Truth, TruthTable};
pub use write::{WriteError, write_atomically};

//! The export report, `export-report.md` and `export-report.json`: what was emitted, septa's
//! truth table at the export's granularity, and every difference between it and what the
//! export allows, each with the septa rule, the exported object, its direction and its reason
//! code. Shared by every target.

use std::fmt::Write as _;

use serde::Serialize;

use crate::reason::ReasonCode;

/// Whether an export lets through more or less than septa.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    /// The export allows something septa refuses.
    Wider,
    /// The export refuses something septa allows.
    Narrower,
}

impl Direction {
    fn as_str(self) -> &'static str {
        match self {
            Self::Wider => "wider",
            Self::Narrower => "narrower",
        }
    }
}

/// One difference between septa's truth table and an export.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct Difference {
    /// Why; `None` fails the check.
    pub code: Option<ReasonCode>,
    /// Whether the export allows more or less.
    pub direction: Direction,
    /// The source: a cell, a function, or `gateway`.
    pub from: String,
    /// The destination: a cell, a function, an endpoint, or an outside host.
    pub to: String,
    /// The septa rules involved (allow, egress or route ids); empty when none allows it.
    pub rules: Vec<String>,
    /// The exported objects involved, as `KIND NAMESPACE/NAME`.
    pub objects: Vec<String>,
    /// What differs, in a sentence.
    pub detail: String,
    /// Requests that show it (`METHOD PATH` or `PORT`), at most a few.
    pub examples: Vec<String>,
}

/// One row of septa's truth table at the export's granularity.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct TruthRow {
    /// The source cell.
    pub from: String,
    /// The destination cell.
    pub to: String,
    /// The port the flow uses.
    pub port: u16,
    /// The methods, `*` for any.
    pub methods: Vec<String>,
    /// The path patterns, `*` for any.
    pub paths: Vec<String>,
    /// The allow rule.
    pub rule: String,
}

/// What septa and the export let through between one pair of cells, over the requests the
/// check probed.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct PairRow {
    /// The source cell.
    pub from: String,
    /// The destination cell.
    pub to: String,
    /// The probed requests septa allows (`METHOD PATH`); empty: denied.
    pub septa: Vec<String>,
    /// The probed requests the export allows, as the analyzer computed.
    pub export: Vec<String>,
}

/// What an export wrote and how far it is from septa's truth table.
#[derive(Clone, Debug, Serialize)]
pub struct Report {
    /// The target, e.g. `kubernetes`.
    pub target: String,
    /// The application.
    pub application: String,
    /// The target's profile, e.g. `istio`.
    pub profile: String,
    /// The granularity.
    pub granularity: String,
    /// The files written, relative to the output directory, in order.
    pub files: Vec<String>,
    /// septa's truth table.
    pub truth: Vec<TruthRow>,
    /// The analyzer that computed what the export allows, with its version, when `--check` ran.
    pub analyzer: Option<String>,
    /// Every difference, in order.
    pub differences: Vec<Difference>,
    /// Every pair of distinct cells, as the check probed it; empty without `--check`.
    pub pairs: Vec<PairRow>,
}

impl Report {
    /// The differences without a reason code: any fails the check.
    pub fn uncoded(&self) -> impl Iterator<Item = &Difference> {
        self.differences.iter().filter(|d| d.code.is_none())
    }

    /// The differences the export is wider by.
    pub fn wider(&self) -> impl Iterator<Item = &Difference> {
        self.differences
            .iter()
            .filter(|d| d.direction == Direction::Wider)
    }

    /// `export-report.json`: the report, pretty-printed, with a final newline.
    pub fn to_json(&self) -> String {
        let mut text = serde_json::to_string_pretty(self).unwrap_or_default();
        text.push('\n');
        text
    }

    /// `export-report.md`: the report for people.
    pub fn to_markdown(&self) -> String {
        let mut md = String::new();
        let _ = writeln!(
            md,
            "# septa export {}: `{}`\n\nprofile `{}`, granularity `{}`\n",
            self.target, self.application, self.profile, self.granularity
        );
        let _ = writeln!(md, "## Files\n");
        for file in &self.files {
            let _ = writeln!(md, "- `{file}`");
        }
        let _ = writeln!(
            md,
            "\n## septa's truth table\n\n| from | to | port | methods | paths | rule |\n|---|---|---|---|---|---|"
        );
        for row in &self.truth {
            let _ = writeln!(
                md,
                "| {} | {} | {} | {} | {} | `{}` |",
                row.from,
                row.to,
                row.port,
                row.methods.join(" "),
                code_list(&row.paths),
                row.rule
            );
        }
        let _ = writeln!(md, "\n## Differences\n");
        match &self.analyzer {
            Some(analyzer) => {
                let _ = writeln!(md, "What the export allows was computed by {analyzer}.\n");
            }
            None => {
                let _ = writeln!(
                    md,
                    "Not checked with an analyzer (run with `--check`); the differences below are \
                     those the translation knows of.\n"
                );
            }
        }
        let uncoded = self.uncoded().count();
        let _ = writeln!(
            md,
            "{} differences, {} wider, {} without a reason code.\n",
            self.differences.len(),
            self.wider().count(),
            uncoded
        );
        if !self.differences.is_empty() {
            let _ = writeln!(
                md,
                "| code | export is | from | to | septa rules | exported objects | what differs | e.g. |\n|---|---|---|---|---|---|---|---|"
            );
        }
        for d in &self.differences {
            let code = d
                .code
                .map_or_else(|| "**NONE**".to_owned(), |c| format!("`{c}`"));
            let _ = writeln!(
                md,
                "| {code} | {} | {} | {} | {} | {} | {} | {} |",
                d.direction.as_str(),
                d.from,
                d.to,
                code_list(&d.rules),
                code_list(&d.objects),
                d.detail.replace('|', "\\|"),
                code_list(&d.examples),
            );
        }
        if !self.pairs.is_empty() {
            let _ = writeln!(
                md,
                "\n## Every pair of cells, as probed\n\n| from | to | septa allows | the export allows |\n|---|---|---|---|"
            );
            for p in &self.pairs {
                let list = |l: &[String]| {
                    if l.is_empty() {
                        "denied".to_owned()
                    } else {
                        code_list(l)
                    }
                };
                let _ = writeln!(
                    md,
                    "| {} | {} | {} | {} |",
                    p.from,
                    p.to,
                    list(&p.septa),
                    list(&p.export)
                );
            }
        }
        let mut codes: Vec<ReasonCode> = self.differences.iter().filter_map(|d| d.code).collect();
        codes.sort();
        codes.dedup();
        if !codes.is_empty() {
            let _ = writeln!(md, "\n## Reason codes\n\n| code | meaning |\n|---|---|");
            for code in codes {
                let _ = writeln!(md, "| `{code}` | {} |", code.meaning());
            }
        }
        md
    }
}

/// `a`, `b` as inline code, separated by spaces; `-` for none.
fn code_list(items: &[String]) -> String {
    if items.is_empty() {
        return "-".to_owned();
    }
    items
        .iter()
        .map(|i| format!("`{}`", i.replace('|', "\\|")))
        .collect::<Vec<_>>()
        .join(" ")
}

//! Reading `septa.toml`: syntax, then schema section by section, then references.
//!
//! Stage one (here) checks syntax and each entry's schema. [`resolve`] then resolves the sections
//! in the order their references need: [`settings`] (ceiling and gateway), [`places`] (segments,
//! subnets, groups), [`functions`] (components and endpoints), [`jwt`] and [`api_keys`] (what
//! routes authenticate against), [`routes`] with their [`route_auth`], [`rules`] (allow and
//! egress), [`invariants`] and [`alerts`]; [`references`] is what rules may name. Each stage keeps
//! going after an error so one run reports every problem it can find.

use std::ops::{Range, RangeInclusive};
use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;
use serde_spanned::Spanned;
use toml::de::{DeTable, DeValue, ValueDeserializer};

use crate::diagnostic::{Diagnostic, Diagnostics, LineIndex, Location, did_you_mean};
use crate::model::*;
use crate::raw::*;

/// The manifest's file name inside an application directory.
pub const MANIFEST_FILE: &str = "septa.toml";

const TOP_LEVEL_KEYS: [&str; 17] = [
    "septa_manifest_version",
    "application",
    "ceiling",
    "gateway",
    "segment",
    "group",
    "function",
    "endpoint",
    "route",
    "allow",
    "egress",
    "invariant",
    "jwt",
    "api_keys",
    "alert",
    "cluster",
    "node",
];

/// Loads `septa.toml` from `path`, which is the application directory or the file itself.
pub fn load(path: &Path) -> Result<Manifest, Diagnostics> {
    let file = if path.is_dir() {
        path.join(MANIFEST_FILE)
    } else {
        path.to_owned()
    };
    let text = std::fs::read_to_string(&file).map_err(|e| {
        Diagnostics::new(
            &file,
            vec![Diagnostic::whole_file(format!(
                "cannot read the manifest: {e}"
            ))],
        )
    })?;
    parse(&file, &text)
}

/// Parses manifest `text` as if read from `file` (relative paths resolve against its directory).
pub fn parse(file: &Path, text: &str) -> Result<Manifest, Diagnostics> {
    let mut loader = Loader {
        lines: LineIndex::new(text),
        errors: Vec::new(),
    };
    let manifest = loader.manifest(file, text);
    match manifest {
        Some(m) if loader.errors.is_empty() => Ok(m),
        _ => Err(Diagnostics::new(file, loader.errors)),
    }
}

struct Loader {
    lines: LineIndex,
    errors: Vec<Diagnostic>,
}

/// The sections of the file once each entry has its schema checked.
#[derive(Default)]
struct Sections {
    version: Option<Spanned<i64>>,
    application: Option<RawApplication>,
    ceiling: RawCeiling,
    gateway: RawGateway,
    segments: Vec<(Spanned<String>, RawSegment)>,
    groups: Vec<(Spanned<String>, RawGroup)>,
    functions: Vec<(Spanned<String>, RawFunction)>,
    endpoints: Vec<(Spanned<String>, RawEndpoint)>,
    routes: Vec<(Location, RawRoute)>,
    allows: Vec<(Location, RawAllow)>,
    egress: Vec<(Location, RawEgress)>,
    invariants: Vec<(Location, RawInvariant)>,
    jwt: Vec<(Spanned<String>, RawJwt)>,
    api_keys: Vec<(Spanned<String>, RawApiKeys)>,
    alerts: Vec<(Location, RawAlert)>,
    /// `[cluster]`, with the span of its key.
    cluster: Option<(Spanned<()>, RawCluster)>,
    nodes: Vec<(Spanned<String>, RawNode)>,
}

impl Loader {
    fn loc(&self, span: &Range<usize>) -> Location {
        self.lines.span_location(span)
    }

    fn error(&mut self, span: &Range<usize>, message: impl Into<String>) {
        let at = self.loc(span);
        self.errors.push(Diagnostic::at(at, message));
    }

    fn error_help(
        &mut self,
        span: &Range<usize>,
        message: impl Into<String>,
        help: impl Into<String>,
    ) {
        let at = self.loc(span);
        self.errors
            .push(Diagnostic::at(at, message).with_help(help));
    }

    /// A reference to something never declared: the closest declared name, if one is close,
    /// and how to declare it.
    fn unknown(
        &mut self,
        span: &Range<usize>,
        what: &str,
        name: &str,
        hint: Option<&str>,
        declare: &str,
    ) {
        let message = match hint {
            Some(h) => format!("unknown {what} `{name}` (did you mean `{h}`?)"),
            None => format!("unknown {what} `{name}`"),
        };
        self.error_help(span, message, format!("declare it with `{declare}`"));
    }

    fn manifest(&mut self, file: &Path, text: &str) -> Option<Manifest> {
        let (doc, syntax) = DeTable::parse_recoverable(text);
        for e in &syntax {
            let d = match e.span() {
                Some(span) => {
                    Diagnostic::at(self.loc(&span), format!("invalid TOML: {}", e.message()))
                }
                None => Diagnostic::whole_file(format!("invalid TOML: {}", e.message())),
            };
            self.errors.push(d);
        }
        if !syntax.is_empty() {
            return None;
        }
        let sections = self.sections(doc.into_inner());
        let dir = file
            .parent()
            .map(Path::to_path_buf)
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or_else(|| PathBuf::from("."));
        self.resolve(file, &dir, sections)
    }

    /// Checks every entry against its schema, one at a time, so one bad entry does not hide the
    /// errors in the next.
    fn sections(&mut self, doc: DeTable<'_>) -> Sections {
        let mut s = Sections::default();
        for (key, value) in doc {
            let span = key.span();
            match key.get_ref().as_ref() {
                "septa_manifest_version" => match value.get_ref() {
                    DeValue::Integer(i) => {
                        let n = i64::from_str_radix(i.as_str(), i.radix()).unwrap_or(-1);
                        s.version = Some(Spanned::new(value.span(), n));
                    }
                    _ => self.error(
                        &value.span(),
                        "`septa_manifest_version` must be the integer `1`",
                    ),
                },
                "application" => s.application = self.entry(value),
                "ceiling" => s.ceiling = self.entry(value).unwrap_or_default(),
                "gateway" => s.gateway = self.entry(value).unwrap_or_default(),
                "segment" => s.segments = self.named_entries("segment", value),
                "group" => s.groups = self.named_entries("group", value),
                "function" => s.functions = self.named_entries("function", value),
                "endpoint" => s.endpoints = self.named_entries("endpoint", value),
                "route" => s.routes = self.array_entries("route", value),
                "allow" => s.allows = self.array_entries("allow", value),
                "egress" => s.egress = self.array_entries("egress", value),
                "invariant" => s.invariants = self.array_entries("invariant", value),
                "jwt" => s.jwt = self.named_entries("jwt", value),
                "api_keys" => s.api_keys = self.named_entries("api_keys", value),
                "alert" => s.alerts = self.array_entries("alert", value),
                "cluster" => s.cluster = self.entry(value).map(|c| (Spanned::new(span, ()), c)),
                "node" => s.nodes = self.named_entries("node", value),
                other => {
                    let known = TOP_LEVEL_KEYS.map(|k| format!("`{k}`")).join(", ");
                    let message = match did_you_mean(other, TOP_LEVEL_KEYS) {
                        Some(k) => format!("unknown key `{other}` (did you mean `{k}`?)"),
                        None => format!("unknown key `{other}`"),
                    };
                    self.error_help(&span, message, format!("the top-level keys are {known}"));
                }
            }
        }
        s
    }

    fn entry<T: DeserializeOwned>(&mut self, value: Spanned<DeValue<'_>>) -> Option<T> {
        let span = value.span();
        match T::deserialize(ValueDeserializer::from(value)) {
            Ok(v) => Some(v),
            Err(e) => {
                let at = e.span().unwrap_or(span);
                self.error(&at, e.message().to_owned());
                None
            }
        }
    }

    /// `[section.NAME]` tables.
    fn named_entries<T: DeserializeOwned>(
        &mut self,
        section: &str,
        value: Spanned<DeValue<'_>>,
    ) -> Vec<(Spanned<String>, T)> {
        let span = value.span();
        let DeValue::Table(table) = value.into_inner() else {
            self.error(
                &span,
                format!("`{section}` must be a table of `[{section}.NAME]` entries"),
            );
            return Vec::new();
        };
        let mut out = Vec::new();
        for (name, entry) in table {
            let name = Spanned::new(name.span(), name.get_ref().to_string());
            if !matches!(entry.get_ref(), DeValue::Table(_)) {
                self.error(
                    &name.span(),
                    format!("`{section}.{}` must be a table", name.get_ref()),
                );
                continue;
            }
            if let Some(raw) = self.entry(entry) {
                out.push((name, raw));
            }
        }
        out
    }

    /// `[[section]]` arrays of tables.
    fn array_entries<T: DeserializeOwned>(
        &mut self,
        section: &str,
        value: Spanned<DeValue<'_>>,
    ) -> Vec<(Location, T)> {
        let span = value.span();
        let DeValue::Array(items) = value.into_inner() else {
            self.error(
                &span,
                format!("`{section}` must be written as `[[{section}]]` entries"),
            );
            return Vec::new();
        };
        let mut out = Vec::new();
        for item in items {
            let at = self.loc(&item.span());
            if let Some(raw) = self.entry(item) {
                out.push((at, raw));
            }
        }
        out
    }

    fn name(&mut self, s: &Spanned<String>) -> Option<Name> {
        match Name::new(s.get_ref()) {
            Ok(n) => Some(n),
            Err(e) => {
                self.error(&s.span(), e);
                None
            }
        }
    }

    /// The id of a `kind` entry (`alert`, `invariant`): a valid name not used by another entry
    /// of the same kind, whose names are in `seen`.
    fn entry_id(
        &mut self,
        s: &Spanned<String>,
        seen: &mut std::collections::HashSet<Name>,
        kind: &str,
    ) -> Option<Name> {
        let id = self.name(s)?;
        if !seen.insert(id.clone()) {
            self.error(&s.span(), format!("duplicate {kind} id `{id}`"));
        }
        Some(id)
    }

    /// A rule's id: a valid name not used by any other route, allow or egress rule.
    fn rule_id(&mut self, raw: &Spanned<String>, refs: &mut References) -> Option<Name> {
        let id = self.name(raw)?;
        refs.claim_id(self, &id, &raw.span());
        Some(id)
    }

    fn names(&mut self, list: &[Spanned<String>]) -> Vec<Name> {
        list.iter().filter_map(|s| self.name(s)).collect()
    }

    /// `value` within `range`, or `default` when absent; `None` (with an error) when out of it.
    fn bounded(
        &mut self,
        value: Option<&Spanned<u32>>,
        field: &str,
        range: RangeInclusive<u32>,
        default: u32,
    ) -> Option<u32> {
        match value {
            None => Some(default),
            Some(value) => self.within(value, field, range),
        }
    }

    /// `value` if it is within `range`; `None`, with an error naming `field`, if not.
    fn within(
        &mut self,
        value: &Spanned<u32>,
        field: &str,
        range: RangeInclusive<u32>,
    ) -> Option<u32> {
        let n = *value.get_ref();
        if range.contains(&n) {
            return Some(n);
        }
        self.error(
            &value.span(),
            format!(
                "`{field}` must be between {} and {}, not {n}",
                range.start(),
                range.end()
            ),
        );
        None
    }
}

mod alerts;
mod api_keys;
mod cluster;
mod functions;
mod invariants;
mod jwt;
mod places;
mod references;
mod resolve;
mod route_auth;
mod routes;
mod rules;
mod settings;

use references::References;

//! Reading `septa.toml`: syntax, then schema section by section, then references.
//!
//! Each stage keeps going after an error so one run reports every problem it can find.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::ops::Range;
use std::path::{Path, PathBuf};

use ipnet::IpNet;
use serde::de::DeserializeOwned;
use serde_spanned::Spanned;
use toml::de::{DeTable, DeValue, ValueDeserializer};

use crate::diagnostic::{Diagnostic, Diagnostics, LineIndex, Location, did_you_mean};
use crate::egress::EgressTarget;
use crate::model::*;
use crate::raw::*;
use crate::selector::Selector;

/// The manifest's file name inside an application directory.
pub const MANIFEST_FILE: &str = "septa.toml";

const TOP_LEVEL_KEYS: [&str; 9] = [
    "septa_manifest_version",
    "application",
    "ceiling",
    "segment",
    "group",
    "function",
    "route",
    "allow",
    "egress",
];

const METHODS: [&str; 9] = [
    "GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "CONNECT", "TRACE",
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
    segments: Vec<(Spanned<String>, RawSegment)>,
    groups: Vec<(Spanned<String>, RawGroup)>,
    functions: Vec<(Spanned<String>, RawFunction)>,
    routes: Vec<(Location, RawRoute)>,
    allows: Vec<(Location, RawAllow)>,
    egress: Vec<(Location, RawEgress)>,
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
                "segment" => s.segments = self.named_entries("segment", value),
                "group" => s.groups = self.named_entries("group", value),
                "function" => s.functions = self.named_entries("function", value),
                "route" => s.routes = self.array_entries("route", value),
                "allow" => s.allows = self.array_entries("allow", value),
                "egress" => s.egress = self.array_entries("egress", value),
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

    /// A rule's id: a valid name not used by any other route, allow or egress rule.
    fn rule_id(&mut self, raw: &Spanned<String>, refs: &mut References) -> Option<Name> {
        let id = self.name(raw)?;
        refs.claim_id(self, &id, &raw.span());
        Some(id)
    }

    fn names(&mut self, list: &[Spanned<String>]) -> Vec<Name> {
        list.iter().filter_map(|s| self.name(s)).collect()
    }

    fn resolve(&mut self, file: &Path, dir: &Path, s: Sections) -> Option<Manifest> {
        match &s.version {
            Some(v) if *v.get_ref() == 1 => {}
            Some(v) => self.error(
                &v.span(),
                format!(
                    "unsupported `septa_manifest_version` `{}`; this septa reads version `1`",
                    v.get_ref()
                ),
            ),
            None => self.errors.push(
                Diagnostic::whole_file("missing `septa_manifest_version`")
                    .with_help("add `septa_manifest_version = 1` as the first line"),
            ),
        }
        let application = match &s.application {
            Some(app) => self.name(&app.name),
            None => {
                self.errors.push(
                    Diagnostic::whole_file("missing `[application]`")
                        .with_help("add `[application]` with `name = \"...\"`"),
                );
                None
            }
        };
        let ceiling = self.ceiling(&s.ceiling);
        let segments = self.segments(&s.segments);
        let groups = self.groups(&s.groups);
        let functions = self.functions(dir, &s.functions, &segments, &groups);
        let mut refs = References::new(&segments, &groups, &functions);
        let routes = self.routes(&s.routes, &functions, &mut refs);
        let allows = self.allows(&s.allows, &mut refs);
        let egress = self.egress(&s.egress, &mut refs);
        Some(Manifest {
            file: file.to_owned(),
            dir: dir.to_owned(),
            application: application?,
            ceiling,
            segments,
            groups,
            functions,
            routes,
            allows,
            egress,
        })
    }

    fn ceiling(&mut self, raw: &RawCeiling) -> CeilingSpec {
        let mut nets = |list: &[Spanned<String>]| -> Vec<IpNet> {
            list.iter()
                .filter_map(|s| {
                    let text = s.get_ref();
                    let parsed = text
                        .parse::<IpNet>()
                        .or_else(|_| text.parse::<std::net::IpAddr>().map(IpNet::from));
                    match parsed {
                        Ok(n) => Some(n.trunc()),
                        Err(_) => {
                            self.error(
                                &s.span(),
                                format!("`{text}` is not an IP network such as `127.0.0.1/32`"),
                            );
                            None
                        }
                    }
                })
                .collect()
        };
        CeilingSpec {
            relax: nets(&raw.relax),
            block: nets(&raw.block),
        }
    }

    fn segments(&mut self, raw: &[(Spanned<String>, RawSegment)]) -> BTreeMap<Name, Segment> {
        let mut out = BTreeMap::new();
        for (name, seg) in raw {
            let Some(segment_name) = self.name(name) else {
                continue;
            };
            if seg.subnets.is_empty() {
                self.error(&name.span(), format!("segment `{segment_name}` has no subnets; add `subnets = {{ NAME = \"public\" | \"private\" | \"isolated\" }}`"));
            }
            let mut subnets = BTreeMap::new();
            for (subnet, kind) in &seg.subnets {
                match Name::new(subnet) {
                    Ok(n) => {
                        subnets.insert(n, *kind.get_ref());
                    }
                    Err(e) => self.error(
                        &kind.span(),
                        format!("subnet of segment `{segment_name}`: {e}"),
                    ),
                }
            }
            let labels = self.names(&seg.labels);
            out.insert(
                segment_name.clone(),
                Segment {
                    name: segment_name,
                    subnets,
                    labels,
                    mode: seg.mode.unwrap_or_default(),
                    location: self.loc(&name.span()),
                },
            );
        }
        out
    }

    fn groups(&mut self, raw: &[(Spanned<String>, RawGroup)]) -> BTreeMap<Name, Group> {
        let mut out = BTreeMap::new();
        for (name, group) in raw {
            let Some(n) = self.name(name) else { continue };
            out.insert(
                n.clone(),
                Group {
                    name: n,
                    description: group.description.clone(),
                    location: self.loc(&name.span()),
                },
            );
        }
        out
    }

    fn functions(
        &mut self,
        dir: &Path,
        raw: &[(Spanned<String>, RawFunction)],
        segments: &BTreeMap<Name, Segment>,
        groups: &BTreeMap<Name, Group>,
    ) -> BTreeMap<Name, Function> {
        let mut out = BTreeMap::new();
        for (name, f) in raw {
            let Some(fname) = self.name(name) else {
                continue;
            };
            let placement = self.placement(&f.placement, segments);
            for g in &f.groups {
                if !groups.contains_key(g.get_ref().as_str()) {
                    let hint = did_you_mean(g.get_ref(), groups.keys().map(Name::as_str));
                    self.unknown(&g.span(), "group", g.get_ref(), hint, "[group.NAME]");
                }
            }
            let fgroups = self.names(&f.groups);
            let labels = self.names(&f.labels);
            let limits = self.limits(&f.limits);
            if f.source.get_ref().is_empty() {
                self.error(
                    &f.source.span(),
                    "`source` must name a `.wasm` component file",
                );
            }
            let build = f.build.as_ref().map(|b| Build {
                command: b.command.get_ref().clone(),
                workdir: dir.join(b.workdir.as_deref().unwrap_or(".")),
            });
            let Some((placement, subnet_kind, segment_mode)) = placement else {
                continue;
            };
            out.insert(
                fname.clone(),
                Function {
                    name: fname,
                    source: dir.join(f.source.get_ref()),
                    placement,
                    subnet_kind,
                    groups: fgroups,
                    labels,
                    mode: f.mode.unwrap_or(segment_mode),
                    limits,
                    build,
                    location: self.loc(&name.span()),
                },
            );
        }
        out
    }

    fn placement(
        &mut self,
        raw: &Spanned<String>,
        segments: &BTreeMap<Name, Segment>,
    ) -> Option<(Placement, SubnetKind, Mode)> {
        let text = raw.get_ref();
        let Some((seg, sub)) = text.split_once('/') else {
            self.error(
                &raw.span(),
                format!("placement `{text}` must be `SEGMENT/SUBNET`"),
            );
            return None;
        };
        let Some(segment) = segments.get(seg) else {
            let hint = did_you_mean(seg, segments.keys().map(Name::as_str));
            self.unknown(&raw.span(), "segment", seg, hint, "[segment.NAME]");
            return None;
        };
        let Some((subnet, kind)) = segment.subnets.get_key_value(sub) else {
            let hint = did_you_mean(sub, segment.subnets.keys().map(Name::as_str));
            self.unknown(
                &raw.span(),
                &format!("subnet of segment `{seg}`"),
                sub,
                hint,
                "subnets = { NAME = \"private\" }",
            );
            return None;
        };
        Some((
            Placement {
                segment: segment.name.clone(),
                subnet: subnet.clone(),
            },
            *kind,
            segment.mode,
        ))
    }

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

    fn limits(&mut self, raw: &RawLimits) -> Limits {
        let defaults = Limits::default();
        let mut field = |v: &Option<Spanned<u32>>, name: &str, max: u32, default: u32| match v {
            Some(v) if *v.get_ref() == 0 || *v.get_ref() > max => {
                self.error(
                    &v.span(),
                    format!(
                        "`limits.{name}` must be between 1 and {max}, not {}",
                        v.get_ref()
                    ),
                );
                default
            }
            Some(v) => *v.get_ref(),
            None => default,
        };
        Limits {
            memory_mb: field(
                &raw.memory_mb,
                "memory_mb",
                Limits::MAX_MEMORY_MB,
                defaults.memory_mb,
            ),
            timeout_ms: field(
                &raw.timeout_ms,
                "timeout_ms",
                Limits::MAX_TIMEOUT_MS,
                defaults.timeout_ms,
            ),
            max_concurrency: field(
                &raw.max_concurrency,
                "max_concurrency",
                Limits::MAX_CONCURRENCY,
                defaults.max_concurrency,
            ),
        }
    }

    fn methods(&mut self, raw: &Option<Vec<Spanned<String>>>) -> Methods {
        let Some(list) = raw else { return Methods::Any };
        if list.len() == 1 && list[0].get_ref() == "*" {
            return Methods::Any;
        }
        let mut out = Vec::new();
        for m in list {
            let text = m.get_ref();
            if METHODS.contains(&text.as_str()) {
                out.push(text.clone());
            } else if METHODS.contains(&text.to_ascii_uppercase().as_str()) {
                self.error(
                    &m.span(),
                    format!(
                        "method `{text}` must be upper-case: `{}`",
                        text.to_ascii_uppercase()
                    ),
                );
            } else {
                self.error_help(
                    &m.span(),
                    format!("unknown method `{text}`"),
                    format!(
                        "methods are {} or `[\"*\"]` for any",
                        METHODS.map(|m| format!("`{m}`")).join(", ")
                    ),
                );
            }
        }
        Methods::Only(out)
    }

    fn path_text(&mut self, raw: &Spanned<String>) -> PathText {
        if !raw.get_ref().starts_with('/') {
            self.error(
                &raw.span(),
                format!("path `{}` must start with `/`", raw.get_ref()),
            );
        }
        PathText {
            text: raw.get_ref().clone(),
            location: self.loc(&raw.span()),
        }
    }

    fn routes(
        &mut self,
        raw: &[(Location, RawRoute)],
        functions: &BTreeMap<Name, Function>,
        refs: &mut References,
    ) -> Vec<Route> {
        let mut out = Vec::new();
        for (at, r) in raw {
            let id_text =
                r.id.as_ref()
                    .map(|i| i.get_ref().clone())
                    .unwrap_or_else(|| route_id_from_path(r.path.get_ref()));
            let id_span =
                r.id.as_ref()
                    .map(Spanned::span)
                    .unwrap_or_else(|| r.path.span());
            let id = match Name::new(&id_text) {
                Ok(id) => Some(id),
                Err(e) => {
                    self.error(&id_span, format!("route id: {e}"));
                    None
                }
            };
            if let Some(id) = &id {
                refs.claim_id(self, id, &id_span);
            }
            let function = r.function.get_ref();
            match functions.get(function.as_str()) {
                None => {
                    let hint = did_you_mean(function, functions.keys().map(Name::as_str));
                    self.unknown(&r.function.span(), "function", function, hint, "[function.NAME]");
                }
                Some(f) if f.subnet_kind != SubnetKind::Public => self.error_help(
                    &r.function.span(),
                    format!(
                        "route `{}` targets function `{function}` in {} subnet `{}`; the gateway only routes to public subnets",
                        r.path.get_ref(),
                        f.subnet_kind,
                        f.placement
                    ),
                    "route to a public function that calls it through an `[[allow]]` rule",
                ),
                Some(_) => {}
            }
            let path = self.path_text(&r.path);
            let methods = self.methods(&r.methods);
            let (Some(id), Some(f)) = (id, functions.get(function.as_str())) else {
                continue;
            };
            out.push(Route {
                id,
                path,
                methods,
                function: f.name.clone(),
                location: *at,
            });
        }
        out
    }

    fn allows(&mut self, raw: &[(Location, RawAllow)], refs: &mut References) -> Vec<AllowRule> {
        let mut out = Vec::new();
        for (at, r) in raw {
            let id = self.rule_id(&r.id, refs);
            let from = self.selector(&r.from, refs, "from");
            let to = self.selector(&r.to, refs, "to");
            let methods = self.methods(&r.methods);
            let paths = match &r.paths {
                None => Paths::Any,
                Some(list) => Paths::Only(list.iter().map(|p| self.path_text(p)).collect()),
            };
            let (Some(id), Some(from), Some(to)) = (id, from, to) else {
                continue;
            };
            out.push(AllowRule {
                id,
                from,
                to,
                methods,
                paths,
                location: *at,
            });
        }
        out
    }

    fn egress(&mut self, raw: &[(Location, RawEgress)], refs: &mut References) -> Vec<EgressRule> {
        let mut out = Vec::new();
        for (at, r) in raw {
            let id = self.rule_id(&r.id, refs);
            let from = self.selector(&r.from, refs, "from");
            if let Some(sel) = &from {
                let isolated: Vec<&str> = refs.isolated_functions_in(sel);
                if !isolated.is_empty() {
                    self.error_help(
                        &r.from.span(),
                        format!(
                            "egress rule `{}` selects {} in an isolated subnet; isolated subnets have no egress at all",
                            r.id.get_ref(),
                            isolated.iter().map(|f| format!("function `{f}`")).collect::<Vec<_>>().join(", ")
                        ),
                        "move the function to a private subnet, or narrow `from`",
                    );
                }
            }
            let mut to = Vec::new();
            for t in &r.to {
                match EgressTarget::parse(t.get_ref()) {
                    Ok(target) => to.push(target),
                    Err(e) => self.error(&t.span(), e),
                }
            }
            let (Some(id), Some(from)) = (id, from) else {
                continue;
            };
            out.push(EgressRule {
                id,
                from,
                to,
                location: *at,
            });
        }
        out
    }

    /// Parses a rule's `from` or `to` and checks that what it names exists.
    fn selector(
        &mut self,
        raw: &Spanned<String>,
        refs: &References,
        field: &str,
    ) -> Option<Selector> {
        let sel = match Selector::parse(raw.get_ref()) {
            Ok(s) => s,
            Err(e) => {
                self.error(&raw.span(), e);
                return None;
            }
        };
        let span = raw.span();
        match &sel {
            Selector::Gateway => {
                self.error_help(
                    &span,
                    format!("`{field} = \"gateway\"` is not a rule: the gateway is opened only by `[[route]]` entries"),
                    "declare a `[[route]]` to a function in a public subnet",
                );
                return None;
            }
            Selector::Segment(n) if !refs.segments.contains_key(n) => {
                let hint = did_you_mean(n.as_str(), refs.segments.keys().map(Name::as_str));
                self.unknown(&span, "segment", n.as_str(), hint, "[segment.NAME]");
                return None;
            }
            Selector::Subnet(seg, sub) => {
                let known = refs
                    .segments
                    .get(seg)
                    .is_some_and(|s| s.subnets.contains_key(sub));
                if !known {
                    self.unknown(
                        &span,
                        "subnet",
                        &format!("{seg}/{sub}"),
                        None,
                        "subnets = { NAME = ... } in its segment",
                    );
                    return None;
                }
            }
            Selector::Group(n) if !refs.groups.contains(n.as_str()) => {
                let hint = did_you_mean(n.as_str(), refs.groups.iter().copied());
                self.unknown(&span, "group", n.as_str(), hint, "[group.NAME]");
                return None;
            }
            Selector::Function(n) if !refs.functions.contains_key(n) => {
                let hint = did_you_mean(n.as_str(), refs.functions.keys().map(Name::as_str));
                self.unknown(&span, "function", n.as_str(), hint, "[function.NAME]");
                return None;
            }
            Selector::Label(n) if !refs.labels.contains(n.as_str()) => {
                let hint = did_you_mean(n.as_str(), refs.labels.iter().map(String::as_str));
                self.error_help(
                    &span,
                    match hint {
                        Some(h) => {
                            format!("no segment or function has label `{n}` (did you mean `{h}`?)")
                        }
                        None => format!("no segment or function has label `{n}`"),
                    },
                    "add it to `labels = [...]` of a segment or function",
                );
                return None;
            }
            _ => {}
        }
        Some(sel)
    }
}

/// A route without an `id` is named after its path: `/api/checkout` → `api-checkout`.
fn route_id_from_path(path: &str) -> String {
    let mut id = String::new();
    for c in path.chars() {
        if c.is_ascii_alphanumeric() {
            id.push(c.to_ascii_lowercase());
        } else if !id.is_empty() && !id.ends_with('-') {
            id.push('-');
        }
    }
    while id.ends_with('-') {
        id.pop();
    }
    if id.is_empty() {
        id.push_str("root");
    }
    id
}

/// What rules may refer to, and the rule ids claimed so far.
struct References<'a> {
    segments: &'a BTreeMap<Name, Segment>,
    groups: BTreeSet<&'a str>,
    functions: &'a BTreeMap<Name, Function>,
    labels: BTreeSet<String>,
    ids: HashSet<Name>,
}

impl<'a> References<'a> {
    fn new(
        segments: &'a BTreeMap<Name, Segment>,
        groups: &'a BTreeMap<Name, Group>,
        functions: &'a BTreeMap<Name, Function>,
    ) -> Self {
        let labels = segments
            .values()
            .flat_map(|s| s.labels.iter())
            .chain(functions.values().flat_map(|f| f.labels.iter()))
            .map(|l| l.as_str().to_owned())
            .collect();
        Self {
            segments,
            groups: groups.keys().map(Name::as_str).collect(),
            functions,
            labels,
            ids: HashSet::new(),
        }
    }

    fn claim_id(&mut self, loader: &mut Loader, id: &Name, span: &Range<usize>) {
        if !self.ids.insert(id.clone()) {
            loader.error_help(
                span,
                format!("duplicate rule id `{id}`"),
                "route, allow and egress ids share one namespace; give each rule its own id",
            );
        }
    }

    fn isolated_functions_in(&self, sel: &Selector) -> Vec<&'a str> {
        self.functions
            .values()
            .filter(|f| f.subnet_kind == SubnetKind::Isolated && self.selects(sel, f))
            .map(|f| f.name.as_str())
            .collect()
    }

    fn selects(&self, sel: &Selector, f: &Function) -> bool {
        sel.selects(self.segments, f)
    }
}

//! Which flows someone asked for: `segment`, `function`, `verdict`, `kind`, `since` and `limit`,
//! parsed from a query string with an error naming the parameter that is wrong.

use std::fmt;

use septa_flows::{FlowKind, FlowRecord, Verdict, parse_rfc3339_millis};
use serde::Serialize;

/// Records `GET /flows` returns when no `limit` is given.
pub const DEFAULT_LIMIT: usize = 1_000;

const PARAMETERS: &str = "segment, function, verdict, kind, since, limit";

/// A filter over flow records. Every condition given must hold.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FlowFilter {
    /// The record's segment is this one.
    pub segment: Option<String>,
    /// The record's source or destination is this function or endpoint: `function:NAME` or
    /// `endpoint:NAME` for a bare `NAME`, exactly this identity when it holds a `:`.
    pub function: Option<String>,
    /// The record's verdict.
    pub verdict: Option<Verdict>,
    /// The record's enforcement point.
    pub kind: Option<FlowKind>,
    /// The record's flow started at or after this time, in milliseconds since the Unix epoch.
    pub since: Option<i64>,
    /// At most this many records, the newest ones.
    pub limit: Option<usize>,
}

/// A query parameter that is not a valid filter.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, thiserror::Error)]
#[error("invalid `{parameter}`: {message}")]
pub struct FilterError {
    /// The parameter.
    pub parameter: String,
    /// What is wrong with it, and what would be right.
    pub message: String,
}

impl FilterError {
    fn new(parameter: &str, message: impl fmt::Display) -> Self {
        Self {
            parameter: parameter.to_owned(),
            message: message.to_string(),
        }
    }
}

impl FlowFilter {
    /// Parses a query string (`segment=payments&verdict=deny`, percent-encoded, `+` for a
    /// space). An unknown parameter, a repeated one, or a value that cannot be what its parameter
    /// means is an error naming it.
    pub fn from_query(query: Option<&str>) -> Result<Self, FilterError> {
        let mut filter = Self::default();
        for pair in query.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
            let (raw_name, raw_value) = pair.split_once('=').unwrap_or((pair, ""));
            let name = percent_decode(raw_name).ok_or_else(|| {
                FilterError::new(raw_name, "the name is not valid percent-encoded UTF-8")
            })?;
            let value = percent_decode(raw_value).ok_or_else(|| {
                FilterError::new(&name, "the value is not valid percent-encoded UTF-8")
            })?;
            filter.set(&name, value)?;
        }
        Ok(filter)
    }

    fn set(&mut self, name: &str, value: String) -> Result<(), FilterError> {
        let repeated = match name {
            "segment" => self.segment.replace(name_value(name, value)?).is_some(),
            "function" => self.function.replace(name_value(name, value)?).is_some(),
            "verdict" => self.verdict.replace(verdict(&value)?).is_some(),
            "kind" => self.kind.replace(kind(&value)?).is_some(),
            "since" => {
                let since = parse_rfc3339_millis(&value).ok_or_else(|| {
                    FilterError::new(
                        name,
                        format!("`{value}` is not an RFC 3339 time such as `2026-11-29T20:41:03Z`"),
                    )
                })?;
                self.since.replace(since).is_some()
            }
            "limit" => {
                let limit = value
                    .parse::<usize>()
                    .ok()
                    .filter(|l| *l > 0)
                    .ok_or_else(|| {
                        FilterError::new(name, format!("`{value}` is not a whole number above 0"))
                    })?;
                self.limit.replace(limit).is_some()
            }
            other => {
                return Err(FilterError::new(
                    other,
                    format!("unknown parameter; the filters are {PARAMETERS}"),
                ));
            }
        };
        if repeated {
            return Err(FilterError::new(name, "given more than once"));
        }
        Ok(())
    }

    /// Whether `record` passes every condition but `limit`.
    pub fn matches(&self, record: &FlowRecord) -> bool {
        if let Some(segment) = &self.segment
            && record.segment.as_deref() != Some(segment.as_str())
        {
            return false;
        }
        if let Some(function) = &self.function
            && !(is_identity(&record.src, function) || is_identity(&record.dst, function))
        {
            return false;
        }
        if self.verdict.is_some_and(|v| v != record.verdict)
            || self.kind.is_some_and(|k| k != record.kind)
        {
            return false;
        }
        match self.since {
            // A record whose time cannot be read is kept: better shown than silently lost.
            Some(since) => parse_rfc3339_millis(&record.time).is_none_or(|t| t >= since),
            None => true,
        }
    }

    /// The query string that asks for this filter (what [`from_query`](Self::from_query)
    /// reads back), without the `?`.
    pub fn to_query(&self) -> String {
        let mut pairs = Vec::new();
        let mut push = |name: &str, value: &str| {
            pairs.push(format!("{name}={}", percent_encode(value)));
        };
        if let Some(segment) = &self.segment {
            push("segment", segment);
        }
        if let Some(function) = &self.function {
            push("function", function);
        }
        if let Some(verdict) = self.verdict {
            push("verdict", verdict.as_str());
        }
        if let Some(kind) = self.kind {
            push("kind", kind.as_str());
        }
        if let Some(since) = self.since {
            let time = std::time::UNIX_EPOCH
                .checked_add(std::time::Duration::from_millis(
                    since.max(0).unsigned_abs(),
                ))
                .unwrap_or(std::time::UNIX_EPOCH);
            push("since", &septa_flows::format_rfc3339_millis(time));
        }
        if let Some(limit) = self.limit {
            push("limit", &limit.to_string());
        }
        pairs.join("&")
    }
}

/// Whether `identity` (a record's `src` or `dst`) is the function or endpoint `wanted`.
fn is_identity(identity: &str, wanted: &str) -> bool {
    if wanted.contains(':') {
        return identity == wanted;
    }
    let name = identity
        .strip_prefix("function:")
        .or_else(|| identity.strip_prefix("endpoint:"));
    name == Some(wanted)
}

/// A segment or function name: what a manifest could declare, or an identity with its prefix.
fn name_value(parameter: &str, value: String) -> Result<String, FilterError> {
    let valid = !value.is_empty()
        && value.len() <= 128
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.:".contains(&b));
    if valid {
        Ok(value)
    } else {
        Err(FilterError::new(
            parameter,
            format!("`{value}` is not a name (letters, digits, `-`, `_`, `.`, `:`)"),
        ))
    }
}

fn verdict(value: &str) -> Result<Verdict, FilterError> {
    match value {
        "allow" => Ok(Verdict::Allow),
        "deny" => Ok(Verdict::Deny),
        "audit" => Ok(Verdict::Audit),
        other => Err(FilterError::new(
            "verdict",
            format!("`{other}` is not one of allow, deny, audit"),
        )),
    }
}

fn kind(value: &str) -> Result<FlowKind, FilterError> {
    match value {
        "ingress" => Ok(FlowKind::Ingress),
        "mesh" => Ok(FlowKind::Mesh),
        "egress" => Ok(FlowKind::Egress),
        "endpoint" => Ok(FlowKind::Endpoint),
        other => Err(FilterError::new(
            "kind",
            format!("`{other}` is not one of ingress, mesh, egress, endpoint"),
        )),
    }
}

/// Decodes `%XX` escapes and `+`; `None` when an escape is malformed or the result is not UTF-8.
pub(crate) fn percent_decode(text: &str) -> Option<String> {
    let mut bytes = Vec::with_capacity(text.len());
    let mut rest = text.as_bytes();
    while let Some((&b, tail)) = rest.split_first() {
        rest = tail;
        match b {
            b'+' => bytes.push(b' '),
            b'%' => {
                let hex = rest.get(..2)?;
                let hex = std::str::from_utf8(hex).ok()?;
                bytes.push(u8::from_str_radix(hex, 16).ok()?);
                rest = &rest[2..];
            }
            b => bytes.push(b),
        }
    }
    String::from_utf8(bytes).ok()
}

fn percent_encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~:".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    fn record(kind: FlowKind, src: &str, dst: &str, verdict: Verdict) -> FlowRecord {
        let mut record = FlowRecord::new(kind, src, dst, verdict, "because");
        record.time = "2026-11-29T20:41:03.123Z".to_owned();
        record.segment = Some("payments".to_owned());
        record
    }

    #[test]
    fn every_parameter_parses_and_round_trips() {
        let query = "segment=payments&function=checkout&verdict=deny&kind=mesh&since=2026-11-29T21%3A41%3A03%2B01%3A00&limit=5";
        let filter = FlowFilter::from_query(Some(query)).unwrap();
        assert_eq!(filter.segment.as_deref(), Some("payments"));
        assert_eq!(filter.function.as_deref(), Some("checkout"));
        assert_eq!(filter.verdict, Some(Verdict::Deny));
        assert_eq!(filter.kind, Some(FlowKind::Mesh));
        assert_eq!(filter.since, Some(1_795_984_863_000));
        assert_eq!(filter.limit, Some(5));
        let again = FlowFilter::from_query(Some(&filter.to_query())).unwrap();
        assert_eq!(again, filter);
        assert_eq!(FlowFilter::from_query(None).unwrap(), FlowFilter::default());
    }

    #[test]
    fn bad_values_name_their_parameter() {
        for (query, parameter) in [
            ("verdict=maybe", "verdict"),
            ("kind=lateral", "kind"),
            ("since=yesterday", "since"),
            ("limit=0", "limit"),
            ("limit=-3", "limit"),
            ("limit=ten", "limit"),
            ("segment=", "segment"),
            ("function=a%20b", "function"),
            ("function=%zz", "function"),
            ("colour=red", "colour"),
            ("verdict=deny&verdict=allow", "verdict"),
        ] {
            let error = FlowFilter::from_query(Some(query)).unwrap_err();
            assert_eq!(error.parameter, parameter, "{query}: {error}");
        }
    }

    #[test]
    fn function_matches_either_end_as_function_or_endpoint() {
        let filter = FlowFilter::from_query(Some("function=cards")).unwrap();
        let to_endpoint = record(
            FlowKind::Endpoint,
            "function:checkout",
            "endpoint:cards",
            Verdict::Allow,
        );
        assert!(filter.matches(&to_endpoint));
        let exact = FlowFilter::from_query(Some("function=function:checkout")).unwrap();
        assert!(exact.matches(&to_endpoint));
        let other = FlowFilter::from_query(Some("function=check")).unwrap();
        assert!(!other.matches(&to_endpoint));
        let gateway = FlowFilter::from_query(Some("function=gateway")).unwrap();
        assert!(!gateway.matches(&record(
            FlowKind::Ingress,
            "gateway",
            "function:storefront",
            Verdict::Allow
        )));
    }

    #[test]
    fn since_verdict_kind_and_segment_all_apply() {
        let flow = record(FlowKind::Mesh, "function:a", "function:b", Verdict::Deny);
        let passes = |query: &str| FlowFilter::from_query(Some(query)).unwrap().matches(&flow);
        assert!(passes(
            "since=2026-11-29T20:41:03.123Z&verdict=deny&kind=mesh&segment=payments"
        ));
        assert!(!passes("since=2026-11-29T20:41:03.124Z"));
        assert!(!passes("verdict=allow"));
        assert!(!passes("kind=egress"));
        assert!(!passes("segment=edge"));
    }
}

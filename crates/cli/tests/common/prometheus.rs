//! A strict reader of the Prometheus text exposition format 0.0.4, enough to prove that a
//! `/metrics` page parses: every sample belongs to a family declared by `# TYPE` (with its
//! `# HELP`), names and label names are valid, label values are properly escaped, values are
//! numbers, no series appears twice, and histogram buckets are cumulative up to `+Inf` = count.

use std::collections::{BTreeMap, HashMap};

type Labels = Vec<(String, String)>;

/// One sample: the metric name, its labels in order, its value.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub name: String,
    pub labels: Labels,
    pub value: f64,
}

impl Sample {
    pub fn label(&self, name: &str) -> Option<&str> {
        self.labels
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// Parses `page`, panicking with the line at fault on anything the format does not allow.
pub fn parse(page: &str) -> Vec<Sample> {
    let mut types: HashMap<String, String> = HashMap::new();
    let mut helps: HashMap<String, String> = HashMap::new();
    let mut current: Option<String> = None;
    let mut samples = Vec::new();
    let mut seen = std::collections::HashSet::new();
    assert!(page.ends_with('\n'), "the page must end with a newline");
    for (number, line) in page.lines().enumerate() {
        let at = format!("line {}: `{line}`", number + 1);
        if let Some(rest) = line.strip_prefix("# HELP ") {
            let (name, help) = rest.split_once(' ').unwrap_or((rest, ""));
            assert!(valid_name(name), "{at}: bad metric name");
            assert!(
                helps.insert(name.to_owned(), help.to_owned()).is_none(),
                "{at}: second HELP"
            );
            continue;
        }
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest
                .split_once(' ')
                .unwrap_or_else(|| panic!("{at}: no type"));
            assert!(valid_name(name), "{at}: bad metric name");
            assert!(
                ["counter", "gauge", "histogram", "summary", "untyped"].contains(&kind),
                "{at}: unknown type"
            );
            assert!(
                helps.contains_key(name),
                "{at}: TYPE without HELP before it"
            );
            assert!(
                types.insert(name.to_owned(), kind.to_owned()).is_none(),
                "{at}: second TYPE"
            );
            current = Some(name.to_owned());
            continue;
        }
        if line.starts_with('#') || line.is_empty() {
            continue;
        }
        let sample = parse_sample(line, &at);
        let family = current
            .as_deref()
            .unwrap_or_else(|| panic!("{at}: sample before any TYPE"));
        let kind = &types[family];
        let belongs = match kind.as_str() {
            "histogram" => ["_bucket", "_sum", "_count"]
                .iter()
                .any(|suffix| sample.name == format!("{family}{suffix}")),
            _ => sample.name == family,
        };
        assert!(belongs, "{at}: sample outside its family `{family}`");
        if kind == "counter" {
            assert!(
                family.ends_with("_total"),
                "{at}: a counter should end in _total"
            );
            assert!(sample.value >= 0.0, "{at}: negative counter");
        }
        let key = format!("{}{:?}", sample.name, sample.labels);
        assert!(seen.insert(key), "{at}: series given twice");
        samples.push(sample);
    }
    check_histograms(&samples, &types);
    samples
}

fn parse_sample(line: &str, at: &str) -> Sample {
    let name_end = line
        .find(['{', ' '])
        .unwrap_or_else(|| panic!("{at}: no value"));
    let name = &line[..name_end];
    assert!(valid_name(name), "{at}: bad metric name");
    let mut rest = &line[name_end..];
    let mut labels = Vec::new();
    if let Some(inner) = rest.strip_prefix('{') {
        let mut pos = 0;
        loop {
            let tail = &inner[pos..];
            if let Some(after) = tail.strip_prefix('}') {
                rest = after;
                break;
            }
            let eq = tail
                .find('=')
                .unwrap_or_else(|| panic!("{at}: label without ="));
            let label = &tail[..eq];
            assert!(valid_label_name(label), "{at}: bad label name `{label}`");
            let mut chars = tail[eq + 1..].char_indices();
            assert_eq!(
                chars.next(),
                Some((0, '"')),
                "{at}: label value must be quoted"
            );
            let mut value = String::new();
            let end = loop {
                match chars.next() {
                    Some((_, '\\')) => match chars.next() {
                        Some((_, '\\')) => value.push('\\'),
                        Some((_, '"')) => value.push('"'),
                        Some((_, 'n')) => value.push('\n'),
                        other => panic!("{at}: bad escape {other:?}"),
                    },
                    Some((i, '"')) => break i + 1,
                    Some((_, c)) => value.push(c),
                    None => panic!("{at}: unterminated label value"),
                }
            };
            labels.push((label.to_owned(), value));
            pos += eq + 1 + end;
            match inner[pos..].chars().next() {
                Some(',') => pos += 1,
                Some('}') => {}
                other => panic!("{at}: expected , or }} after a label, got {other:?}"),
            }
        }
    }
    let mut names: Vec<&str> = labels.iter().map(|(k, _)| k.as_str()).collect();
    names.sort_unstable();
    let before = names.len();
    names.dedup();
    assert_eq!(names.len(), before, "{at}: a label given twice");
    let value_text = rest
        .strip_prefix(' ')
        .unwrap_or_else(|| panic!("{at}: no space before the value"));
    let value_text = value_text.split(' ').next().unwrap_or("");
    let value = match value_text {
        "+Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        "NaN" => f64::NAN,
        text => text
            .parse()
            .unwrap_or_else(|_| panic!("{at}: value `{text}` is not a number")),
    };
    Sample {
        name: name.to_owned(),
        labels,
        value,
    }
}

fn check_histograms(samples: &[Sample], types: &HashMap<String, String>) {
    for (family, _) in types.iter().filter(|(_, kind)| *kind == "histogram") {
        let bucket = format!("{family}_bucket");
        let mut series: BTreeMap<Labels, Vec<(f64, f64)>> = BTreeMap::new();
        for sample in samples.iter().filter(|s| s.name == bucket) {
            let le = sample.label("le").expect("a bucket without le");
            let le: f64 = if le == "+Inf" {
                f64::INFINITY
            } else {
                le.parse().unwrap()
            };
            let rest: Vec<_> = sample
                .labels
                .iter()
                .filter(|(k, _)| k != "le")
                .cloned()
                .collect();
            series.entry(rest).or_default().push((le, sample.value));
        }
        for (labels, buckets) in series {
            let mut last = (f64::NEG_INFINITY, 0.0);
            for &(le, count) in &buckets {
                assert!(le > last.0, "{family}{labels:?}: buckets out of order");
                assert!(
                    count >= last.1,
                    "{family}{labels:?}: buckets not cumulative"
                );
                last = (le, count);
            }
            assert_eq!(last.0, f64::INFINITY, "{family}{labels:?}: no +Inf bucket");
            let count = samples
                .iter()
                .find(|s| s.name == format!("{family}_count") && s.labels == labels)
                .unwrap_or_else(|| panic!("{family}{labels:?}: no _count"));
            assert_eq!(
                count.value, last.1,
                "{family}{labels:?}: +Inf bucket is not the count"
            );
            assert!(
                samples
                    .iter()
                    .any(|s| s.name == format!("{family}_sum") && s.labels == labels),
                "{family}{labels:?}: no _sum"
            );
        }
    }
}

fn valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == ':')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}

fn valid_label_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
        && !name.starts_with("__")
}

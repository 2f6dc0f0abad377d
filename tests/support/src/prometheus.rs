//! A strict parser for the Prometheus text exposition format (0.0.4), as
//! lifeguard's `GET /metrics` serves it: every sample's family has `# HELP`
//! and `# TYPE`, families are contiguous, counters are not negative, series
//! are not repeated, histograms are cumulative and end with `+Inf` equal to
//! `_count`. It panics on the first violation.

use crate::admin_get;
use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;

/// One sample line.
#[derive(Debug, Clone)]
pub struct Sample {
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub value: f64,
}

#[derive(Debug, Default)]
pub struct Exposition {
    /// Family name → (help, type).
    pub families: BTreeMap<String, (String, String)>,
    pub samples: Vec<Sample>,
}

fn valid_metric_name(n: &str) -> bool {
    let mut c = n.chars();
    c.next()
        .is_some_and(|f| f.is_ascii_alphabetic() || f == '_' || f == ':')
        && c.all(|ch| ch.is_ascii_alphanumeric() || ch == '_' || ch == ':')
}

fn valid_label_name(n: &str) -> bool {
    let mut c = n.chars();
    c.next()
        .is_some_and(|f| f.is_ascii_alphabetic() || f == '_')
        && c.all(|ch| ch.is_ascii_alphanumeric() || ch == '_')
}

fn parse_value(v: &str) -> Option<f64> {
    match v {
        "+Inf" => Some(f64::INFINITY),
        "-Inf" => Some(f64::NEG_INFINITY),
        "NaN" => Some(f64::NAN),
        _ => v.parse::<f64>().ok().filter(|x| x.is_finite()),
    }
}

/// Parses `{a="b",c="d"}` at the start of `s`; returns the labels and the rest.
fn parse_labels(s: &str, line: &str) -> (BTreeMap<String, String>, String) {
    let mut labels = BTreeMap::new();
    let mut chars = s.chars().peekable();
    assert_eq!(chars.next(), Some('{'));
    if chars.peek() == Some(&'}') {
        chars.next();
        return (labels, chars.collect());
    }
    loop {
        let mut name = String::new();
        for ch in chars.by_ref() {
            if ch == '=' {
                break;
            }
            name.push(ch);
        }
        assert!(valid_label_name(&name), "bad label name {name:?}: {line}");
        assert_eq!(chars.next(), Some('"'), "label value not quoted: {line}");
        let mut value = String::new();
        loop {
            match chars.next() {
                Some('\\') => match chars.next() {
                    Some('\\') => value.push('\\'),
                    Some('"') => value.push('"'),
                    Some('n') => value.push('\n'),
                    other => panic!("bad escape \\{other:?}: {line}"),
                },
                Some('"') => break,
                Some('\n') | None => panic!("unterminated label value: {line}"),
                Some(ch) => value.push(ch),
            }
        }
        assert!(
            labels.insert(name.clone(), value).is_none(),
            "label {name} repeated: {line}"
        );
        match chars.next() {
            Some(',') => continue,
            Some('}') => break,
            other => panic!("expected , or }} after a label, got {other:?}: {line}"),
        }
    }
    (labels, chars.collect())
}

/// Parses the whole exposition, panicking on the first violation.
pub fn parse_exposition(text: &str) -> Exposition {
    assert!(text.ends_with('\n'), "exposition must end with a newline");
    let mut exp = Exposition::default();
    let mut helps: BTreeSet<String> = BTreeSet::new();
    let mut types: BTreeMap<String, String> = BTreeMap::new();
    // Families whose samples have started, and the one in progress.
    let mut started: BTreeSet<String> = BTreeSet::new();
    let mut current: Option<String> = None;
    let mut seen_series: BTreeSet<String> = BTreeSet::new();

    for line in text.lines() {
        assert!(!line.is_empty(), "empty line in the exposition");
        if let Some(rest) = line.strip_prefix("# HELP ") {
            let (name, help) = rest.split_once(' ').unwrap_or((rest, ""));
            assert!(valid_metric_name(name), "bad name in HELP: {line}");
            assert!(helps.insert(name.to_owned()), "second HELP for {name}");
            assert!(!started.contains(name), "HELP for {name} after its samples");
            exp.families
                .entry(name.to_owned())
                .or_default()
                .0
                .push_str(help);
            continue;
        }
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, ty) = rest.split_once(' ').expect("TYPE name type");
            assert!(valid_metric_name(name), "bad name in TYPE: {line}");
            assert!(
                ["counter", "gauge", "histogram", "summary", "untyped"].contains(&ty),
                "bad type: {line}"
            );
            assert!(
                types.insert(name.to_owned(), ty.to_owned()).is_none(),
                "second TYPE for {name}"
            );
            assert!(!started.contains(name), "TYPE for {name} after its samples");
            exp.families.entry(name.to_owned()).or_default().1 = ty.to_owned();
            continue;
        }
        assert!(!line.starts_with('#'), "unexpected comment line: {line}");

        // A sample: name{labels} value [timestamp]
        let name_end = line
            .find(['{', ' '])
            .unwrap_or_else(|| panic!("sample without value: {line}"));
        let name = &line[..name_end];
        assert!(valid_metric_name(name), "bad metric name: {line}");
        let (labels, rest) = if line[name_end..].starts_with('{') {
            parse_labels(&line[name_end..], line)
        } else {
            (BTreeMap::new(), line[name_end..].to_owned())
        };
        let rest = rest
            .strip_prefix(' ')
            .unwrap_or_else(|| panic!("no space before the value: {line}"));
        let mut fields = rest.split(' ');
        let value = fields
            .next()
            .and_then(parse_value)
            .unwrap_or_else(|| panic!("bad value: {line}"));
        if let Some(ts) = fields.next() {
            assert!(ts.parse::<i64>().is_ok(), "bad timestamp: {line}");
        }
        assert!(fields.next().is_none(), "trailing fields: {line}");

        // Which family is it?
        let family = if types.contains_key(name) {
            name.to_owned()
        } else {
            let base = ["_bucket", "_sum", "_count"]
                .iter()
                .find_map(|s| name.strip_suffix(s))
                .unwrap_or_else(|| panic!("sample without a TYPE line: {line}"));
            let ty = types
                .get(base)
                .unwrap_or_else(|| panic!("sample without a TYPE line: {line}"));
            assert!(
                ty == "histogram" || (ty == "summary" && !name.ends_with("_bucket")),
                "{name} in a {ty} family: {line}"
            );
            base.to_owned()
        };
        assert!(helps.contains(&family), "no HELP for {family}: {line}");
        if current.as_deref() != Some(&family) {
            assert!(
                started.insert(family.clone()),
                "samples of {family} are not contiguous: {line}"
            );
            current = Some(family.clone());
        }
        let ty = types[&family].as_str();
        if ty == "counter" {
            assert!(value >= 0.0, "negative counter: {line}");
        }
        if ty == "histogram" {
            assert_eq!(
                labels.contains_key("le"),
                name.ends_with("_bucket"),
                "le label only on buckets: {line}"
            );
        }
        let key = series_key(name, &labels);
        assert!(seen_series.insert(key), "duplicate series: {line}");
        exp.samples.push(Sample {
            name: name.to_owned(),
            labels,
            value,
        });
    }
    for (name, (_, ty)) in &exp.families {
        assert!(!ty.is_empty(), "HELP without TYPE for {name}");
        assert!(helps.contains(name), "TYPE without HELP for {name}");
        assert!(started.contains(name), "{name} declared but has no sample");
    }
    check_histograms(&exp);
    exp
}

fn series_key(name: &str, labels: &BTreeMap<String, String>) -> String {
    let l: Vec<String> = labels.iter().map(|(k, v)| format!("{k}={v:?}")).collect();
    format!("{name}{{{}}}", l.join(","))
}

/// Buckets ascend in `le`, are cumulative, end with `+Inf` = `_count`, and
/// each series has a `_sum`.
fn check_histograms(exp: &Exposition) {
    for (family, (_, ty)) in &exp.families {
        if ty != "histogram" {
            continue;
        }
        let bucket = format!("{family}_bucket");
        let mut series: BTreeMap<String, Vec<(f64, f64)>> = BTreeMap::new();
        for s in exp.samples.iter().filter(|s| s.name == bucket) {
            let mut rest = s.labels.clone();
            let le = rest.remove("le").expect("le");
            let le = parse_value(&le).unwrap_or_else(|| panic!("bad le {le:?} in {bucket}"));
            series
                .entry(series_key(family, &rest))
                .or_default()
                .push((le, s.value));
        }
        assert!(!series.is_empty(), "histogram {family} without buckets");
        for (key, buckets) in &series {
            for w in buckets.windows(2) {
                assert!(w[0].0 < w[1].0, "{key}: le not ascending: {buckets:?}");
                assert!(
                    w[0].1 <= w[1].1,
                    "{key}: buckets not cumulative: {buckets:?}"
                );
            }
            let (last_le, last_count) = *buckets.last().unwrap();
            assert_eq!(last_le, f64::INFINITY, "{key}: last bucket is not +Inf");
            let labels: BTreeMap<String, String> = exp
                .samples
                .iter()
                .find(|s| s.name == bucket && &series_key(family, &without_le(&s.labels)) == key)
                .map(|s| without_le(&s.labels))
                .unwrap();
            let count = exp
                .value(&format!("{family}_count"), &labels)
                .unwrap_or_else(|| panic!("{key}: no _count"));
            assert_eq!(last_count, count, "{key}: +Inf bucket != _count");
            assert!(
                exp.value(&format!("{family}_sum"), &labels).is_some(),
                "{key}: no _sum"
            );
        }
    }
}

fn without_le(labels: &BTreeMap<String, String>) -> BTreeMap<String, String> {
    let mut l = labels.clone();
    l.remove("le");
    l
}

impl Exposition {
    pub fn value(&self, name: &str, labels: &BTreeMap<String, String>) -> Option<f64> {
        self.samples
            .iter()
            .find(|s| s.name == name && &s.labels == labels)
            .map(|s| s.value)
    }

    /// The value of one series, which must exist.
    pub fn get(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        let l: BTreeMap<String, String> = labels
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        self.value(name, &l)
            .unwrap_or_else(|| panic!("missing series {}", series_key(name, &l)))
    }

    /// Every series of `name`, keyed by its labels (as `k=v,k=v`).
    pub fn all(&self, name: &str) -> BTreeMap<String, f64> {
        self.samples
            .iter()
            .filter(|s| s.name == name)
            .map(|s| {
                let l: Vec<String> = s.labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
                (l.join(","), s.value)
            })
            .collect()
    }

    pub fn ty(&self, family: &str) -> &str {
        self.families
            .get(family)
            .map(|(_, t)| t.as_str())
            .unwrap_or_else(|| panic!("no family {family}"))
    }
}

/// Asserts every series of `name` equals `expected`, where unlisted label
/// sets must be 0.
#[track_caller]
pub fn assert_series(exp: &Exposition, name: &str, expected: &[(&str, f64)]) {
    let all = exp.all(name);
    for (labels, want) in expected {
        assert!(
            all.contains_key(*labels),
            "{name}{{{labels}}} missing: {all:?}"
        );
        assert_eq!(all[*labels], *want, "{name}{{{labels}}}: {all:?}");
    }
    for (labels, got) in &all {
        if !expected.iter().any(|(l, _)| l == labels) {
            assert_eq!(*got, 0.0, "{name}{{{labels}}} should be 0: {all:?}");
        }
    }
}

/// `GET /metrics` on the admin port, parsed (and so checked).
pub async fn scrape(admin: SocketAddr) -> Exposition {
    let (status, text) = admin_get(admin, "/metrics").await;
    assert_eq!(status, 200);
    parse_exposition(&text)
}

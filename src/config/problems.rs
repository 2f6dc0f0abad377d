//! Field-named problems collected while a config is validated, and the
//! typed readers (section, unknown keys, address, bounded duration, size and
//! count, flag, text) that push them. Every config section's validator takes
//! a `&mut Problems`, so one bad field never hides another. Each message
//! says what was found and what is allowed, in the config's own words
//! (`16 KiB to 1 MiB`, `10ms to 1m`), never in Rust's.

use super::raw::{show, DurationText, Field, SizeText, Text};
use super::units::{
    format_duration, human_size, parse_duration, parse_size, DURATION_FORMS, SIZE_FORMS,
};
use schemars::JsonSchema;
use serde_yaml::{Mapping, Value};
use std::time::Duration;

/// One thing wrong with a config: the field it concerns (as written in
/// the YAML, e.g. `app.endpoints[1]`) and what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub field: String,
    pub message: String,
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.field, self.message)
    }
}

/// The keys a section (a struct of `raw`) knows, in declaration order.
pub(super) fn known_keys<T: JsonSchema>() -> Vec<String> {
    let schema = schemars::schema_for!(T);
    schema
        .get("properties")
        .and_then(|p| p.as_object())
        .map(|p| p.keys().cloned().collect())
        .unwrap_or_default()
}

/// Collects field-named problems while a config is being validated.
#[derive(Debug, Default)]
pub(super) struct Problems(pub(super) Vec<Problem>);

impl Problems {
    pub(super) fn push(&mut self, field: &str, msg: impl std::fmt::Display) {
        self.0.push(Problem {
            field: field.to_owned(),
            message: msg.to_string(),
        });
    }

    /// A value of the wrong type.
    fn wrong_type(&mut self, field: &str, found: &Value, allowed: &str) {
        self.push(field, format!("found {}; allowed: {allowed}", show(found)));
    }

    /// The value of `f`, if present and of the right type.
    pub(super) fn get<T: Clone>(&mut self, field: &str, f: &Field<T>, allowed: &str) -> Option<T> {
        match f {
            Field::Missing => None,
            Field::Ok(v) => Some(v.clone()),
            Field::Bad(found) => {
                self.wrong_type(field, found, allowed);
                None
            }
        }
    }

    /// A section (a mapping of keys), with its unknown keys reported; the
    /// default section when it is absent or not a mapping.
    pub(super) fn section<T: Default + JsonSchema>(
        &mut self,
        name: &str,
        f: Field<T>,
        unknown: impl Fn(&T) -> &Mapping,
    ) -> T {
        match f {
            Field::Missing => T::default(),
            Field::Ok(section) => {
                self.unknown_keys::<T>(&format!("{name}."), unknown(&section));
                section
            }
            Field::Bad(found) => {
                let allowed = format!("a mapping of {}", known_keys::<T>().join(", "));
                self.wrong_type(name, &found, &allowed);
                T::default()
            }
        }
    }

    /// Every key of `unknown` (those `T` does not know), each named with a
    /// close match if there is one and the keys that are allowed.
    pub(super) fn unknown_keys<T: JsonSchema>(&mut self, prefix: &str, unknown: &Mapping) {
        if unknown.is_empty() {
            return;
        }
        let known = known_keys::<T>();
        for key in unknown.keys() {
            let name = match key {
                Value::String(s) => s.clone(),
                other => show(other),
            };
            let close = closest(&known, &name).cloned().or_else(|| {
                // A key of a section written at the top (`interval:` for
                // `health.interval`).
                if prefix.is_empty() {
                    closest(&nested_keys::<T>(), &name).cloned()
                } else {
                    None
                }
            });
            let hint = close.map_or(String::new(), |k| format!(" (did you mean `{k}`?)"));
            self.push(
                &format!("{prefix}{name}"),
                format!(
                    "unknown field `{name}`{hint}; allowed: {}",
                    known.join(", ")
                ),
            );
        }
    }

    /// A duration within `[min, max]`.
    pub(super) fn duration(
        &mut self,
        field: &str,
        f: &Field<DurationText>,
        default: Duration,
        min: Duration,
        max: Duration,
    ) -> Duration {
        let range = format!("{} to {}", format_duration(min), format_duration(max));
        let allowed = format!("a duration from {range}, written {DURATION_FORMS}");
        let Some(DurationText(text)) = self.get(field, f, &allowed) else {
            return default;
        };
        match parse_duration(&text) {
            Ok(d) if d < min => {
                let m = format_duration(min);
                self.push(
                    field,
                    format!("{text} is below the minimum of {m}; allowed: {range}"),
                );
                default
            }
            Ok(d) if d > max => {
                let m = format_duration(max);
                self.push(
                    field,
                    format!("{text} is above the maximum of {m}; allowed: {range}"),
                );
                default
            }
            Ok(d) => d,
            Err(e) => {
                self.push(field, format!("{e}; allowed: {range}"));
                default
            }
        }
    }

    /// A byte size within `[min, max]` (`u64::MAX`: no maximum).
    pub(super) fn size(
        &mut self,
        field: &str,
        f: &Field<SizeText>,
        default: u64,
        min: u64,
        max: u64,
    ) -> u64 {
        let range = if max == u64::MAX {
            format!("{} or more", human_size(min))
        } else {
            format!("{} to {}", human_size(min), human_size(max))
        };
        let allowed = format!("a size of {range}, written {SIZE_FORMS}");
        let Some(SizeText(text)) = self.get(field, f, &allowed) else {
            return default;
        };
        match parse_size(&text) {
            Ok(n) if n < min => {
                let m = human_size(min);
                self.push(
                    field,
                    format!("{text} is below the minimum of {m}; allowed: {range}"),
                );
                default
            }
            Ok(n) if n > max => {
                let m = human_size(max);
                self.push(
                    field,
                    format!("{text} is above the maximum of {m}; allowed: {range}"),
                );
                default
            }
            Ok(n) => n,
            Err(e) => {
                self.push(field, format!("{e}; allowed: {range}"));
                default
            }
        }
    }

    /// A whole number within `[min, max]` (`u32::MAX`: no maximum).
    pub(super) fn count(
        &mut self,
        field: &str,
        f: &Field<u32>,
        default: u32,
        min: u32,
        max: u32,
    ) -> u32 {
        let range = if max == u32::MAX {
            format!("a whole number, at least {min}")
        } else {
            format!("a whole number from {min} to {max}")
        };
        if let Field::Bad(Value::Number(big)) = f {
            if big.as_u64().is_some() {
                // A whole number, but past u32.
                self.push(
                    field,
                    format!("{big} is above the maximum of {max}; allowed: {range}"),
                );
                return default;
            }
        }
        let Some(n) = self.get(field, f, &range) else {
            return default;
        };
        if n < min {
            self.push(
                field,
                format!("{n} is below the minimum of {min}; allowed: {range}"),
            );
            default
        } else if n > max {
            self.push(
                field,
                format!("{n} is above the maximum of {max}; allowed: {range}"),
            );
            default
        } else {
            n
        }
    }

    /// `true` or `false`.
    pub(super) fn flag(&mut self, field: &str, f: &Field<bool>, default: bool) -> bool {
        self.get(field, f, "true or false").unwrap_or(default)
    }

    /// A string, if set.
    pub(super) fn text(&mut self, field: &str, f: &Field<Text>) -> Option<String> {
        self.get(field, f, "a string").map(|Text(s)| s)
    }

    /// A list of strings, if set.
    pub(super) fn texts(&mut self, field: &str, f: &Field<Vec<Text>>) -> Option<Vec<String>> {
        self.get(field, f, "a list of strings")
            .map(|list| list.into_iter().map(|Text(s)| s).collect())
    }
}

/// The entry of `known` closest to `name`, if close enough to be a typo of
/// it (or `name` is its last `.` part).
fn closest<'a>(known: &'a [String], name: &str) -> Option<&'a String> {
    let distance = |k: &str| {
        let last = k.rsplit('.').next().unwrap_or(k);
        edit_distance(k, name).min(edit_distance(last, name))
    };
    known
        .iter()
        .filter(|k| distance(k) <= 2.max(name.len() / 4))
        .min_by_key(|k| distance(k))
}

/// Every `section.key` of a config struct whose properties are sections.
fn nested_keys<T: JsonSchema>() -> Vec<String> {
    let settings =
        schemars::generate::SchemaSettings::draft07().with(|s| s.inline_subschemas = true);
    let schema = settings.into_generator().into_root_schema_for::<T>();
    let mut keys = Vec::new();
    if let Some(sections) = schema.get("properties").and_then(|p| p.as_object()) {
        for (section, sub) in sections {
            if let Some(props) = sub.get("properties").and_then(|p| p.as_object()) {
                keys.extend(props.keys().map(|k| format!("{section}.{k}")));
            }
        }
    }
    keys
}

/// Levenshtein distance, for "did you mean" (keys are short).
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut prev = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let cur = row[j + 1];
            row[j + 1] = (prev + usize::from(ca != *cb)).min(row[j] + 1).min(cur + 1);
            prev = cur;
        }
    }
    row[b.len()]
}

pub(super) const MS: Duration = Duration::from_millis(1);
pub(super) const HOUR: Duration = Duration::from_secs(3600);
pub(super) const DAY: Duration = Duration::from_secs(86400);

#[cfg(test)]
mod tests {
    use super::edit_distance;

    #[test]
    fn numbers_past_u32_are_above_the_maximum() {
        let p = crate::config::Config::from_yaml("client:\n  max_connections: 99999999999\n", "t")
            .unwrap_err()
            .problems();
        assert_eq!(
            p,
            ["client.max_connections: 99999999999 is above the maximum of 4294967295; allowed: a whole number, at least 1"]
        );
    }

    #[test]
    fn distances() {
        assert_eq!(edit_distance("connect_timeout", "conect_timeout"), 1);
        assert_eq!(edit_distance("interval", "intervall"), 1);
        assert_eq!(edit_distance("", "abc"), 3);
        assert_eq!(edit_distance("abc", "abc"), 0);
    }
}

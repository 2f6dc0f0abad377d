//! Field-named problems collected while a config is validated, and the
//! typed readers (address, bounded duration, bounded size) that push them.
//! Every config section's validator takes a `&mut Problems`, so one bad
//! field never hides another.

use super::units::{parse_duration, parse_size};
use std::net::SocketAddr;
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

    pub(super) fn addr(&mut self, field: &str, value: Option<&str>, default: &str) -> SocketAddr {
        let text = value.unwrap_or(default);
        text.parse().unwrap_or_else(|_| {
            self.push(
                field,
                format!("invalid socket address \"{text}\" (expected IP:PORT)"),
            );
            placeholder_addr()
        })
    }

    /// A duration within `[min, max]`.
    pub(super) fn duration(
        &mut self,
        field: &str,
        value: Option<&str>,
        default: Duration,
        min: Duration,
        max: Duration,
    ) -> Duration {
        let Some(text) = value else { return default };
        match parse_duration(text) {
            Ok(d) if d < min => {
                self.push(
                    field,
                    format!(
                        "{text} is below the minimum of {}",
                        humantime::format_duration(min)
                    ),
                );
                default
            }
            Ok(d) if d > max => {
                self.push(
                    field,
                    format!(
                        "{text} is above the maximum of {}",
                        humantime::format_duration(max)
                    ),
                );
                default
            }
            Ok(d) => d,
            Err(e) => {
                self.push(field, e);
                default
            }
        }
    }

    /// A byte size within `[min, max]`.
    pub(super) fn size(
        &mut self,
        field: &str,
        value: Option<&str>,
        default: u64,
        min: u64,
        max: u64,
    ) -> u64 {
        let Some(text) = value else { return default };
        match parse_size(text) {
            Ok(n) if n < min || n > max => {
                self.push(
                    field,
                    format!("{text} is outside the allowed range {min}..={max} bytes"),
                );
                default
            }
            Ok(n) => n,
            Err(e) => {
                self.push(field, e);
                default
            }
        }
    }
}

fn placeholder_addr() -> SocketAddr {
    SocketAddr::from(([0, 0, 0, 0], 0))
}

pub(super) const MS: Duration = Duration::from_millis(1);
pub(super) const HOUR: Duration = Duration::from_secs(3600);
pub(super) const DAY: Duration = Duration::from_secs(86400);

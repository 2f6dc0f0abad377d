//! A secret read from a file named in the config (the admin bearer token, the
//! maintenance bypass token): compared in constant time, never printed.

use super::files::{read_text, TOKEN_CAP};
use super::problems::Problems;
use std::fmt;
use std::path::Path;

/// A token that must not leak through logs, `Debug` output or timing.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: String) -> Secret {
        Secret(value)
    }

    /// Whether `given` is this secret. Compares without an early exit, so
    /// response timing does not reveal how much of a guess was right.
    pub fn matches(&self, given: &[u8]) -> bool {
        constant_time_eq(given, self.0.as_bytes())
    }

    /// The value itself, for the few places that must send it (tests, the
    /// `lifeguard drain` client).
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

/// Reads a secret from the file at `path` (a regular file of at most 4 KiB,
/// see `files`; trimmed; empty is a problem), naming `field` in any problem.
pub(super) fn read_secret(field: &str, path: &str, p: &mut Problems) -> Option<Secret> {
    match read_text(Path::new(path), TOKEN_CAP) {
        Ok(t) if !t.trim().is_empty() => Some(Secret::new(t.trim().to_owned())),
        Ok(_) => {
            p.push(field, format!("\"{path}\" is empty"));
            None
        }
        Err(e) => {
            p.push(field, e);
            None
        }
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compares_and_redacts() {
        let s = Secret::new("secret".to_owned());
        assert!(s.matches(b"secret"));
        assert!(!s.matches(b"secreT"));
        assert!(!s.matches(b"secret2"));
        assert!(!format!("{s:?}").contains("secret"));
    }
}

//! `health.expect_status`: the HTTP statuses that prove an app healthy,
//! written as codes, classes and ranges (`200`, `2xx`, `200-399`,
//! `200, 204`). The default, `100-499`, takes any answer below 500 as proof
//! that the app is alive: an app without a health route answers 404, and
//! that app is up.

use std::fmt;

/// A set of status codes, as inclusive ranges in the order written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatusSet(Vec<(u16, u16)>);

impl StatusSet {
    /// Any answer below 500.
    pub fn below_500() -> StatusSet {
        StatusSet(vec![(100, 499)])
    }

    pub fn contains(&self, status: u16) -> bool {
        self.0.iter().any(|(lo, hi)| (*lo..=*hi).contains(&status))
    }

    /// Parses `200`, `2xx`, `200-399`, or several of them comma-separated.
    pub fn parse(text: &str) -> Result<StatusSet, String> {
        let mut ranges = Vec::new();
        for item in text.split(',') {
            let item = item.trim();
            let range = match item.split_once('-') {
                Some((lo, hi)) => (code(lo.trim())?, code(hi.trim())?),
                None => match item.strip_suffix("xx") {
                    Some(class) => {
                        let c = code(&format!("{class}00"))?;
                        (c, c + 99)
                    }
                    None => {
                        let c = code(item)?;
                        (c, c)
                    }
                },
            };
            if range.0 > range.1 {
                return Err(format!("\"{item}\" is an empty range"));
            }
            ranges.push(range);
        }
        Ok(StatusSet(ranges))
    }
}

fn code(text: &str) -> Result<u16, String> {
    match text.parse::<u16>() {
        Ok(c) if (100..=599).contains(&c) => Ok(c),
        _ => Err(format!("\"{text}\" is not a status code from 100 to 599")),
    }
}

impl fmt::Display for StatusSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, (lo, hi)) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            if lo == hi {
                write!(f, "{lo}")?;
            } else {
                write!(f, "{lo}-{hi}")?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn written_forms() {
        let s = StatusSet::parse("2xx, 304").unwrap();
        assert!(s.contains(200) && s.contains(299) && s.contains(304));
        assert!(!s.contains(301) && !s.contains(404));
        assert_eq!(s.to_string(), "200-299, 304");
        assert_eq!(StatusSet::parse("200-399").unwrap().to_string(), "200-399");
        assert_eq!(StatusSet::parse("204").unwrap().to_string(), "204");
        let any = StatusSet::below_500();
        assert!(any.contains(404) && any.contains(200) && !any.contains(500));
        assert_eq!(StatusSet::parse(&any.to_string()).unwrap(), any);
        for bad in ["", "abc", "600", "99", "6xx", "300-200", "2xx-3xx"] {
            assert!(StatusSet::parse(bad).is_err(), "{bad}");
        }
    }
}

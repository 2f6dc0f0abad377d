//! Parsing and printing of the two value kinds humans write in the config:
//! durations (`250ms`, `5s`, `1m`) and byte sizes (`64KiB`, `1MiB`,
//! Kubernetes' `64Ki`, `4096`), plus the human form of their ranges
//! (`16 KiB to 1 MiB`, `10ms to 1m`) used in error messages.

use std::time::Duration;

/// How durations are written, for error messages.
pub(super) const DURATION_FORMS: &str = "a number with a unit: 250ms, 5s, 1m, 1h";

/// How sizes are written, for error messages.
pub(super) const SIZE_FORMS: &str =
    "bytes (65536) or a number with a unit: 64KiB, 1MiB, 64Ki, 1Mi, 10MB";

/// Parses a duration such as `250ms`, `5s`, `1m30s`. A bare number is refused:
/// `5` could mean seconds or milliseconds, and guessing wrong is a silent outage.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let t = text.trim();
    if t.is_empty() {
        return Err(format!("empty duration; write {DURATION_FORMS}"));
    }
    if t == "0" {
        return Ok(Duration::ZERO);
    }
    if t.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!(
            "invalid duration \"{t}\": give a unit, e.g. \"{t}s\" or \"{t}ms\""
        ));
    }
    // humantime's own message ends in "(and few variations)"; say what to write.
    humantime::parse_duration(t)
        .map_err(|_| format!("invalid duration \"{t}\": write {DURATION_FORMS}"))
}

/// Parses a byte size: a plain integer, or a number with a unit (B; KB, MB,
/// GB and Kubernetes' k, M, G are powers of 1000; KiB, MiB, GiB and
/// Kubernetes' Ki, Mi, Gi powers of 1024).
pub fn parse_size(text: &str) -> Result<u64, String> {
    let t = text.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: u64 = num
        .parse()
        .map_err(|_| format!("invalid size \"{t}\": write {SIZE_FORMS}"))?;
    let mult: u64 = match unit.trim() {
        "" | "B" => 1,
        "KB" | "kB" | "k" => 1000,
        "KiB" | "Ki" => 1024,
        "MB" | "M" => 1000 * 1000,
        "MiB" | "Mi" => 1024 * 1024,
        "GB" | "G" => 1000 * 1000 * 1000,
        "GiB" | "Gi" => 1024 * 1024 * 1024,
        other => {
            return Err(format!(
                "invalid size \"{t}\": unknown unit \"{other}\" (use B, KiB, MiB, GiB, Ki, Mi, Gi, KB, MB, GB)"
            ))
        }
    };
    n.checked_mul(mult)
        .ok_or_else(|| format!("invalid size \"{t}\": too large"))
}

/// A duration as the config writes it, e.g. `250ms`, `5s`, `1m30s`, `24h`
/// (read back by [`parse_duration`] to the same value).
pub fn format_duration(d: Duration) -> String {
    if d.is_zero() {
        return "0s".into();
    }
    let secs = d.as_secs();
    let nanos = d.subsec_nanos();
    let parts = [
        (secs / 3600, "h"),
        (secs / 60 % 60, "m"),
        (secs % 60, "s"),
        (u64::from(nanos / 1_000_000), "ms"),
        (u64::from(nanos / 1000 % 1000), "us"),
        (u64::from(nanos % 1000), "ns"),
    ];
    parts
        .iter()
        .filter(|(n, _)| *n > 0)
        .map(|(n, unit)| format!("{n}{unit}"))
        .collect()
}

const UNITS: [(u64, &str); 3] = [(1 << 30, "GiB"), (1 << 20, "MiB"), (1 << 10, "KiB")];

/// A size as the config writes it: `32KiB` when a whole number of a binary
/// unit, else bytes (`0`, `1000`).
pub fn format_size(n: u64) -> String {
    UNITS
        .iter()
        .find(|(unit, _)| n > 0 && n.is_multiple_of(*unit))
        .map_or_else(
            || n.to_string(),
            |(unit, name)| format!("{}{name}", n / unit),
        )
}

/// A size for people: `16 KiB`, `1 MiB`, `1000 bytes`.
pub(super) fn human_size(n: u64) -> String {
    UNITS
        .iter()
        .find(|(unit, _)| n > 0 && n.is_multiple_of(*unit))
        .map_or_else(
            || format!("{n} bytes"),
            |(unit, name)| format!("{} {name}", n / unit),
        )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("250ms").unwrap(), Duration::from_millis(250));
        assert_eq!(parse_duration("5s").unwrap(), Duration::from_secs(5));
        assert_eq!(parse_duration("1m 30s").unwrap(), Duration::from_secs(90));
        assert_eq!(parse_duration("1m30s").unwrap(), Duration::from_secs(90));
        assert_eq!(parse_duration("0").unwrap(), Duration::ZERO);
        assert!(parse_duration("5").unwrap_err().contains("give a unit"));
        let fast = parse_duration("fast").unwrap_err();
        assert_eq!(
            fast,
            "invalid duration \"fast\": write a number with a unit: 250ms, 5s, 1m, 1h"
        );
        assert!(parse_duration("").is_err());
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_size("64KiB").unwrap(), 65536);
        assert_eq!(parse_size("64Ki").unwrap(), 65536);
        assert_eq!(parse_size("1Mi").unwrap(), 1 << 20);
        assert_eq!(parse_size("1Gi").unwrap(), 1 << 30);
        assert_eq!(parse_size("2k").unwrap(), 2000);
        assert_eq!(parse_size("1MiB").unwrap(), 1 << 20);
        assert_eq!(parse_size("10MB").unwrap(), 10_000_000);
        assert_eq!(parse_size("4096").unwrap(), 4096);
        assert_eq!(parse_size("64 KiB").unwrap(), 65536);
        assert!(parse_size("12XB").unwrap_err().contains("unknown unit"));
        assert!(parse_size("lots").is_err());
        assert!(parse_size("-1").is_err());
        assert!(parse_size("99999999999GiB")
            .unwrap_err()
            .contains("too large"));
    }

    #[test]
    fn printed_values_read_back_the_same() {
        for ms in [
            0, 1, 10, 250, 1000, 1500, 60_000, 90_000, 3_600_000, 86_400_000,
        ] {
            let d = Duration::from_millis(ms);
            assert_eq!(parse_duration(&format_duration(d)).unwrap(), d, "{ms}ms");
        }
        assert_eq!(format_duration(Duration::from_millis(250)), "250ms");
        assert_eq!(format_duration(Duration::from_secs(90)), "1m30s");
        assert_eq!(format_duration(Duration::from_secs(86400)), "24h");
        for n in [0, 1, 1000, 16 << 10, 32 << 10, 1 << 20, 3 << 30, 1_000_000] {
            assert_eq!(parse_size(&format_size(n)).unwrap(), n, "{n}");
        }
        assert_eq!(format_size(32 << 10), "32KiB");
        assert_eq!(human_size(16 << 10), "16 KiB");
        assert_eq!(human_size(1 << 20), "1 MiB");
        assert_eq!(human_size(1000), "1000 bytes");
    }
}

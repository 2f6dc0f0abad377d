//! Writing YAML that means the same to every reader. kubectl and the API
//! server read YAML 1.1, where a plain `yes`, `on` or `0644` is a boolean
//! or an octal number; serde_yaml writes YAML 1.2 and leaves such strings
//! unquoted (a ConfigMap's `FEATURE: "yes"` would come back as `true`).
//! Here a string is written plain only when it is a string in both, and
//! double-quoted (JSON escapes, valid YAML) otherwise; multi-line strings
//! as literal blocks where that is exact.

use serde_yaml::Value;

/// A value that cannot be written (tags, non-string keys that are not
/// scalars).
#[derive(Debug)]
pub(super) struct Unsupported(pub String);

/// One document, block style, ending with a newline.
pub(super) fn document(v: &Value) -> Result<String, Unsupported> {
    let mut out = String::new();
    match v {
        Value::Mapping(m) if !m.is_empty() => mapping(&mut out, m, 0)?,
        Value::Sequence(s) if !s.is_empty() => sequence(&mut out, s, 0)?,
        other => {
            out.push_str(&inline(other)?);
            out.push('\n');
        }
    }
    Ok(out)
}

fn pad(out: &mut String, n: usize) {
    out.extend(std::iter::repeat_n(' ', n));
}

fn mapping(out: &mut String, m: &serde_yaml::Mapping, indent: usize) -> Result<(), Unsupported> {
    for (k, v) in m {
        pad(out, indent);
        out.push_str(&key(k)?);
        out.push(':');
        value_after(out, v, indent, true)?;
    }
    Ok(())
}

fn sequence(out: &mut String, s: &[Value], indent: usize) -> Result<(), Unsupported> {
    for item in s {
        // The item as if at indent + 2, its first indentation replaced by
        // "- ".
        let mut inner = String::new();
        match item {
            Value::Mapping(m) if !m.is_empty() => mapping(&mut inner, m, indent + 2)?,
            Value::Sequence(s) if !s.is_empty() => sequence(&mut inner, s, indent + 2)?,
            other => {
                pad(&mut inner, indent + 2);
                let mut rest = String::new();
                value_after(&mut rest, other, indent, false)?;
                inner.push_str(rest.trim_start_matches(' '));
            }
        }
        pad(out, indent);
        out.push_str("- ");
        out.push_str(&inner[indent + 2..]);
    }
    Ok(())
}

/// The value after `key:` (or `- `): nested blocks on the next lines.
fn value_after(
    out: &mut String,
    v: &Value,
    indent: usize,
    in_map: bool,
) -> Result<(), Unsupported> {
    match v {
        Value::Mapping(m) if !m.is_empty() => {
            out.push('\n');
            mapping(out, m, indent + 2)
        }
        Value::Sequence(s) if !s.is_empty() => {
            out.push('\n');
            // kubectl's style: a list under a key at the key's indentation.
            sequence(out, s, if in_map { indent } else { indent + 2 })
        }
        Value::String(s) if literal_ok(s) => {
            out.push_str(if s.ends_with('\n') { " |\n" } else { " |-\n" });
            for line in s.strip_suffix('\n').unwrap_or(s).split('\n') {
                if !line.is_empty() {
                    pad(out, indent + 2);
                    out.push_str(line);
                }
                out.push('\n');
            }
            Ok(())
        }
        other => {
            out.push(' ');
            out.push_str(&inline(other)?);
            out.push('\n');
            Ok(())
        }
    }
}

/// A multi-line string a literal block keeps exactly.
fn literal_ok(s: &str) -> bool {
    s.contains('\n')
        && !s.ends_with("\n\n")
        && !s.starts_with([' ', '\t', '\n'])
        && !s.chars().any(|c| c.is_control() && c != '\n' && c != '\t')
        && !s.lines().any(|l| l.ends_with([' ', '\t']))
}

fn key(k: &Value) -> Result<String, Unsupported> {
    match k {
        Value::String(_) | Value::Number(_) | Value::Bool(_) | Value::Null => inline(k),
        other => Err(Unsupported(format!(
            "a mapping key that is not a scalar: {other:?}"
        ))),
    }
}

/// A scalar (or an empty collection) on one line.
fn inline(v: &Value) -> Result<String, Unsupported> {
    Ok(match v {
        Value::Null => "null".to_owned(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        Value::String(s) => string(s),
        Value::Mapping(m) if m.is_empty() => "{}".to_owned(),
        Value::Sequence(s) if s.is_empty() => "[]".to_owned(),
        Value::Tagged(t) => {
            return Err(Unsupported(format!("a tagged value ({})", t.tag)));
        }
        // Non-empty collections are written as blocks by the callers; a
        // flow collection (JSON) would be valid too.
        Value::Mapping(_) | Value::Sequence(_) => {
            serde_json::to_string(v).map_err(|e| Unsupported(format!("a collection: {e}")))?
        }
    })
}

/// Words YAML 1.1 or 1.2 reads as booleans or null.
const KEYWORDS: [&str; 22] = [
    "y", "yes", "n", "no", "true", "false", "on", "off", "null", "~", "", "nan", ".nan", "inf",
    ".inf", "-.inf", "+.inf", "=", "<<", "-", "?", ":",
];

/// A string, plain when every YAML version reads it back as this string.
fn string(s: &str) -> String {
    let plain = !KEYWORDS.contains(&s.to_ascii_lowercase().as_str())
        // Nothing that starts like a number (ints, floats, octal, hex,
        // sexagesimal 1:20) or an indicator.
        && s.starts_with(|c: char| c.is_ascii_alphabetic() || c == '/' || c == '_')
        && s.chars().all(|c| {
            c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '/' | '-' | '@' | ' ' | '=' | '+' | ',' | '(' | ')' | ';' | '*' | '$' | '%')
        })
        && !s.ends_with(' ')
        && !s.contains("  ");
    if plain {
        s.to_owned()
    } else {
        // A JSON string is a YAML double-quoted scalar.
        serde_json::to_string(s).unwrap_or_else(|_| "\"\"".to_owned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trip(text: &str) {
        let v: Value = serde_yaml::from_str(text).unwrap();
        let out = document(&v).unwrap();
        let back: Value = serde_yaml::from_str(&out).unwrap();
        assert_eq!(v, back, "{out}");
    }

    #[test]
    fn strings_that_yaml_1_1_would_misread_are_quoted() {
        for s in [
            "yes", "No", "on", "OFF", "y", "0644", "1:20", "1_000", "012", "0x1F", "1e3", "-", "~",
            "null", ".5", "+1", "true",
        ] {
            assert!(string(s).starts_with('"'), "{s}");
        }
        for s in [
            "nginx",
            "app.kubernetes.io/name",
            "/health",
            "web-1",
            "IfNotPresent",
        ] {
            assert_eq!(string(s), s);
        }
    }

    #[test]
    fn documents_read_back_the_same() {
        round_trip("a: 1\nb: [x, {c: d, e: [1, 2]}, []]\nf: {}\ng: \"yes\"\nh: null\ni: 1.5\n");
        round_trip("data:\n  config.yaml: |\n    listen: 1\n    nested:\n      - x\n\n    end\n  nonl: \"a\\nb\"\n  lead: \"  x\\ny\\n\"\n  two: \"a\\n\\n\"\n");
        round_trip("- - a\n  - b\n- c: 1\n  d: 2\n- - - deep\n");
        round_trip("k: \"it's: a # test\"\nl: 'x \"q\"'\nm: \"tab\\tin\"\n");
    }

    #[test]
    fn tags_are_refused() {
        let v: Value = serde_yaml::from_str("a: !custom x\n").unwrap();
        assert!(document(&v).is_err());
    }
}

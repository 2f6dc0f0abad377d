//! JSON log lines, one object a line, written straight into the line buffer
//! tracing-subscriber lends each event: no map of values built first, no
//! string allocated per field. Same shape as tracing-subscriber's own JSON
//! format with `flatten_event` (`timestamp`, `level`, the event's fields with
//! `message` among them, `target`, and, when spans are enabled, `span` and
//! `spans`), which cost an allocation per field and about 5 µs per access-log
//! line; this costs about 1.

use std::fmt::{self, Write};
use tracing::field::{Field, Visit};
use tracing::{Event, Subscriber};
use tracing_subscriber::fmt::format::{JsonFields, Writer};
use tracing_subscriber::fmt::time::{FormatTime, SystemTime};
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormattedFields};
use tracing_subscriber::registry::LookupSpan;

/// The event formatter of `log.format: json`.
#[derive(Debug, Default)]
pub(super) struct JsonLine;

impl<S> FormatEvent<S, JsonFields> for JsonLine
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, JsonFields>,
        mut w: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        w.write_str("{\"timestamp\":\"")?;
        SystemTime.format_time(&mut w)?;
        write!(w, "\",\"level\":\"{}\"", event.metadata().level())?;
        let mut fields = Fields {
            w: &mut w,
            result: Ok(()),
        };
        event.record(&mut fields);
        fields.result?;
        w.write_str(",\"target\":")?;
        string(&mut w, event.metadata().target())?;
        if let Some(scope) = ctx.event_scope() {
            let mut spans = String::new();
            let mut current = String::new();
            for span in scope.from_root() {
                let ext = span.extensions();
                let body = ext
                    .get::<FormattedFields<JsonFields>>()
                    .map(|f| f.fields.as_str())
                    .unwrap_or("{}");
                current.clear();
                write!(current, "{{\"name\":\"{}\"", span.name())?;
                // The span's fields are a JSON object already: splice its
                // members in after the name.
                let members = body.trim().trim_start_matches('{').trim_end_matches('}');
                if !members.is_empty() {
                    current.push(',');
                    current.push_str(members);
                }
                current.push('}');
                spans.push_str(if spans.is_empty() { "[" } else { "," });
                spans.push_str(&current);
            }
            if !spans.is_empty() {
                write!(w, ",\"span\":{current},\"spans\":{spans}]")?;
            }
        }
        w.write_str("}\n")
    }
}

/// Writes each field as `,"name":value`.
struct Fields<'a, 'w> {
    w: &'a mut Writer<'w>,
    result: fmt::Result,
}

impl Fields<'_, '_> {
    fn put(&mut self, field: &Field, value: impl FnOnce(&mut Writer<'_>) -> fmt::Result) {
        if self.result.is_err() {
            return;
        }
        self.result = (|| {
            self.w.write_char(',')?;
            string(self.w, field.name())?;
            self.w.write_char(':')?;
            value(self.w)
        })();
    }
}

impl Visit for Fields<'_, '_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.put(field, |w| string(w, value));
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        self.put(field, |w| write!(w, "{value}"));
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.put(field, |w| write!(w, "{value}"));
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        self.put(field, |w| write!(w, "{value}"));
    }

    fn record_f64(&mut self, field: &Field, value: f64) {
        // JSON has no NaN or infinity (serde_json writes null too).
        match value.is_finite() {
            true => self.put(field, |w| write!(w, "{value}")),
            false => self.put(field, |w| w.write_str("null")),
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.put(field, |w| {
            w.write_char('"')?;
            write!(Escaped(w), "{value:?}")?;
            w.write_char('"')
        });
    }
}

/// A JSON string.
fn string(w: &mut Writer<'_>, s: &str) -> fmt::Result {
    w.write_char('"')?;
    Escaped(w).write_str(s)?;
    w.write_char('"')
}

/// Writes through to `0`, escaped for the inside of a JSON string.
struct Escaped<'a, 'w>(&'a mut Writer<'w>);

impl Write for Escaped<'_, '_> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let mut plain = 0;
        for (i, b) in s.bytes().enumerate() {
            let escape = match b {
                b'"' => "\\\"",
                b'\\' => "\\\\",
                b'\n' => "\\n",
                b'\r' => "\\r",
                b'\t' => "\\t",
                0..=0x1f => "",
                _ => continue,
            };
            self.0.write_str(&s[plain..i])?;
            match escape {
                "" => write!(self.0, "\\u{b:04x}")?,
                e => self.0.write_str(e)?,
            }
            plain = i + 1;
        }
        self.0.write_str(&s[plain..])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn escaped(s: &str) -> String {
        let mut out = String::new();
        Escaped(&mut Writer::new(&mut out)).write_str(s).unwrap();
        out
    }

    #[test]
    fn strings_are_escaped_as_json_wants() {
        assert_eq!(escaped("plain"), "plain");
        assert_eq!(escaped("a\"b\\c"), "a\\\"b\\\\c");
        assert_eq!(escaped("l1\nl2\r\t\u{1}é"), "l1\\nl2\\r\\t\\u0001é");
        let json = format!("\"{}\"", escaped("x\"\n\u{7}\\ü"));
        assert_eq!(
            serde_json::from_str::<String>(&json).unwrap(),
            "x\"\n\u{7}\\ü"
        );
    }
}

//! The maintenance page, rendered once per config load (never per request):
//! the operator's template or the built-in page, with `{{retry_after}}`
//! filled in.

use bytes::Bytes;
use std::time::Duration;

const DEFAULT_PAGE: &str = "<!doctype html>
<html><head><meta charset=\"utf-8\"><meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">
<title>Down for maintenance</title></head>
<body style=\"font-family:sans-serif;max-width:40em;margin:4em auto;padding:0 1em\">
<h1>Down for maintenance</h1>
<p>This service is being updated and will be back shortly. Please try again in {{retry_after}}.</p>
</body></html>
";

/// Renders the page once per config load: `template` (the `maintenance.page`
/// file) or the built-in page, with `{{retry_after}}` replaced (e.g. `5m`).
pub(crate) fn render_page(template: Option<&[u8]>, retry_after: Duration) -> Bytes {
    let template = template.unwrap_or(DEFAULT_PAGE.as_bytes());
    match std::str::from_utf8(template) {
        Ok(text) => {
            let wait = humantime::format_duration(retry_after).to_string();
            Bytes::from(text.replace("{{retry_after}}", &wait))
        }
        // Not UTF-8: served as it is.
        Err(_) => Bytes::copy_from_slice(template),
    }
}

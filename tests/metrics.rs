//! Observability: `GET /metrics` (Prometheus text exposition, prefix
//! `lifeguard_`) and `GET /status` (JSON). After a scripted scenario against
//! one app endpoint every counter is asserted to its exact value, and the
//! whole exposition is parsed by a strict hand-written parser (every sample's
//! family has `# HELP` and `# TYPE`, families are contiguous, histograms are
//! cumulative and end with `+Inf` equal to `_count`).


use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};
use support::admin::status_json;
use support::upstream::{read_request, reset};
use support::*;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;

// ---------------------------------------------------------------------------
// A strict parser for the Prometheus text exposition format (0.0.4)
// ---------------------------------------------------------------------------

#[derive(Debug, Clone)]
struct Sample {
    name: String,
    labels: BTreeMap<String, String>,
    value: f64,
}

#[derive(Debug, Default)]
struct Exposition {
    /// Family name → (help, type).
    families: BTreeMap<String, (String, String)>,
    samples: Vec<Sample>,
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
fn parse_exposition(text: &str) -> Exposition {
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
    fn value(&self, name: &str, labels: &BTreeMap<String, String>) -> Option<f64> {
        self.samples
            .iter()
            .find(|s| s.name == name && &s.labels == labels)
            .map(|s| s.value)
    }

    /// The value of one series, which must exist.
    fn get(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        let l: BTreeMap<String, String> = labels
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        self.value(name, &l)
            .unwrap_or_else(|| panic!("missing series {}", series_key(name, &l)))
    }

    /// Every series of `name`, keyed by its labels (as `k=v,k=v`).
    fn all(&self, name: &str) -> BTreeMap<String, f64> {
        self.samples
            .iter()
            .filter(|s| s.name == name)
            .map(|s| {
                let l: Vec<String> = s.labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
                (l.join(","), s.value)
            })
            .collect()
    }

    fn ty(&self, family: &str) -> &str {
        self.families
            .get(family)
            .map(|(_, t)| t.as_str())
            .unwrap_or_else(|| panic!("no family {family}"))
    }
}

/// Asserts every series of `name` equals `expected`, where unlisted label
/// sets must be 0.
#[track_caller]
fn assert_series(exp: &Exposition, name: &str, expected: &[(&str, f64)]) {
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

#[test]
fn the_parser_rejects_what_it_should() {
    let ok = "# HELP a_total A.\n# TYPE a_total counter\na_total{x=\"1\"} 3\n";
    assert_eq!(parse_exposition(ok).get("a_total", &[("x", "1")]), 3.0);
    let bad = [
        "a_total 3\n",                                                   // no TYPE/HELP
        "# TYPE a_total counter\na_total 3\n",                           // no HELP
        "# HELP a_total A.\n# TYPE a_total counter\na_total 3",           // no final newline
        "# HELP a_total A.\n# TYPE a_total counter\na_total{x=1} 3\n",    // unquoted
        "# HELP a_total A.\n# TYPE a_total counter\na_total -1\n",        // negative counter
        "# HELP a_total A.\n# TYPE a_total counter\na_total 3\na_total 4\n", // duplicate
        "# HELP h A.\n# TYPE h histogram\nh_bucket{le=\"1\"} 2\nh_bucket{le=\"+Inf\"} 1\nh_sum 1\nh_count 1\n",
        "# HELP h A.\n# TYPE h histogram\nh_bucket{le=\"1\"} 1\nh_bucket{le=\"+Inf\"} 2\nh_sum 1\nh_count 3\n",
        "# HELP h A.\n# TYPE h histogram\nh_bucket{le=\"1\"} 1\nh_sum 1\nh_count 1\n",
    ];
    for text in bad {
        let r = std::panic::catch_unwind(|| parse_exposition(text));
        assert!(r.is_err(), "accepted: {text:?}");
    }
}

// ---------------------------------------------------------------------------
// A scripted app: one endpoint whose behaviour is chosen by the path
// ---------------------------------------------------------------------------

/// A raw-TCP app answering one request per connection, always with
/// `Connection: close` (so nothing is pooled): `/health` and `/ok` → 200,
/// `/slow/<ms>` → 200 after `<ms>`, `/crash` → RST before any response byte,
/// `/truncate` → response head and part of the body, then RST, `/garbage` →
/// not HTTP, `/stall` → never answers.
struct ScriptApp {
    addr: SocketAddr,
    /// `METHOD target` of every request other than `/health`.
    seen: Arc<Mutex<Vec<String>>>,
    accept: tokio::task::JoinHandle<()>,
    conns: Arc<Mutex<JoinSet<()>>>,
}

impl ScriptApp {
    async fn start() -> ScriptApp {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let seen: Arc<Mutex<Vec<String>>> = Arc::default();
        let conns: Arc<Mutex<JoinSet<()>>> = Arc::default();
        let (s2, c2) = (seen.clone(), conns.clone());
        let accept = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let seen = s2.clone();
                c2.lock().unwrap().spawn(serve_script(stream, seen));
            }
        });
        ScriptApp {
            addr,
            seen,
            accept,
            conns,
        }
    }

    fn seen(&self) -> Vec<String> {
        self.seen.lock().unwrap().clone()
    }

    /// Stops listening and closes every connection: connects are refused.
    async fn stop(&mut self) {
        self.accept.abort();
        let _ = (&mut self.accept).await;
        let mut set = std::mem::take(&mut *self.conns.lock().unwrap());
        set.shutdown().await;
    }
}

async fn serve_script(mut s: TcpStream, seen: Arc<Mutex<Vec<String>>>) {
    let Some(req) = read_request(&mut s).await else {
        return;
    };
    let head = String::from_utf8_lossy(&req).into_owned();
    let mut first = head.lines().next().unwrap_or("").split(' ');
    let method = first.next().unwrap_or("").to_owned();
    let target = first.next().unwrap_or("").to_owned();
    let path = target.split('?').next().unwrap_or("").to_owned();
    if path != "/health" {
        seen.lock().unwrap().push(format!("{method} {target}"));
    }
    let ok = |body: &str| {
        format!(
            "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        )
    };
    match path.as_str() {
        "/crash" => reset(s),
        "/stall" => tokio::time::sleep(Duration::from_secs(3600)).await,
        "/garbage" => {
            let _ = s.write_all(b"garbage\r\n\r\n").await;
            let _ = s.shutdown().await;
        }
        "/truncate" => {
            let _ = s
                .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\npartial")
                .await;
            let _ = s.flush().await;
            tokio::time::sleep(Duration::from_millis(100)).await;
            reset(s);
        }
        p => {
            if let Some(ms) = p.strip_prefix("/slow/").and_then(|m| m.parse().ok()) {
                tokio::time::sleep(Duration::from_millis(ms)).await;
            }
            let _ = s.write_all(ok(&format!("done {p}")).as_bytes()).await;
            let _ = s.shutdown().await;
        }
    }
}

// ---------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------

async fn scrape(admin: SocketAddr) -> Exposition {
    let (status, text) = admin_get(admin, "/metrics").await;
    assert_eq!(status, 200);
    parse_exposition(&text)
}

async fn send(addr: SocketAddr, method: &str, path: &str) -> RawResponse {
    let body = if method == "POST" { "x" } else { "" };
    let req = format!(
        "{method} {path} HTTP/1.1\r\nHost: t\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    raw_exchange(addr, req.as_bytes(), 10).await.response()
}

fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

// ---------------------------------------------------------------------------
// /metrics
// ---------------------------------------------------------------------------

#[tokio::test]
async fn every_series_exists_from_the_start_and_reads_zero() {
    let app = ScriptApp::start().await;
    let proxy = Proxy::with_endpoints(&[app.addr], "").await;
    let exp = scrape(proxy.admin()).await;
    let ep = app.addr.to_string();
    let ep = ep.as_str();

    for (family, ty) in [
        ("lifeguard_requests_total", "counter"),
        ("lifeguard_request_duration_seconds", "histogram"),
        ("lifeguard_requests_in_flight", "gauge"),
        ("lifeguard_client_connections_open", "gauge"),
        ("lifeguard_client_connections_accepted_total", "counter"),
        ("lifeguard_client_aborts_total", "counter"),
        ("lifeguard_app_endpoint_up", "gauge"),
        ("lifeguard_app_endpoint_state_changes_total", "counter"),
        ("lifeguard_health_probes_total", "counter"),
        ("lifeguard_health_probe_duration_seconds", "histogram"),
        ("lifeguard_upstream_failures_total", "counter"),
        ("lifeguard_synthesized_responses_total", "counter"),
        ("lifeguard_outcome_unknown_total", "counter"),
        ("lifeguard_app_crashes_total", "counter"),
        ("lifeguard_retries_total", "counter"),
        ("lifeguard_retry_budget_exhausted_total", "counter"),
        ("lifeguard_queue_wait_seconds", "histogram"),
        ("lifeguard_draining", "gauge"),
        ("lifeguard_maintenance", "gauge"),
        ("lifeguard_config_generation", "gauge"),
        ("lifeguard_config_reloads_total", "counter"),
        (
            "lifeguard_config_last_reload_success_timestamp_seconds",
            "gauge",
        ),
        ("lifeguard_build_info", "gauge"),
        ("lifeguard_tunnels_open", "gauge"),
    ] {
        assert_eq!(exp.ty(family), ty, "{family}");
    }
    for family in exp.families.keys() {
        assert!(
            family.starts_with("lifeguard_"),
            "unprefixed family {family}"
        );
    }

    // Closed label sets, pre-created at zero.
    let requests = exp.all("lifeguard_requests_total");
    assert_eq!(requests.len(), 50, "10 methods x 5 classes: {requests:?}");
    for m in [
        "GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "TRACE", "CONNECT", "other",
    ] {
        for c in ["1xx", "2xx", "3xx", "4xx", "5xx"] {
            assert_eq!(
                exp.get(
                    "lifeguard_requests_total",
                    &[("method", m), ("code_class", c)]
                ),
                0.0
            );
        }
    }
    assert_series(&exp, "lifeguard_requests_total", &[]);
    let reasons = exp.all("lifeguard_synthesized_responses_total");
    let want: BTreeSet<String> = [
        "app_down",
        "app_crashed",
        "timeout",
        "overload",
        "bad_response",
        "maintenance",
        "draining",
        "bad_request",
    ]
    .iter()
    .map(|r| format!("reason={r}"))
    .collect();
    assert_eq!(reasons.keys().cloned().collect::<BTreeSet<_>>(), want);
    assert_series(&exp, "lifeguard_synthesized_responses_total", &[]);
    let kinds = exp.all("lifeguard_upstream_failures_total");
    assert_eq!(kinds.len(), 7, "{kinds:?}");
    for k in [
        "refused",
        "connect_timeout",
        "connect_failed",
        "reset_before_response",
        "response_timeout",
        "bad_response",
        "reset_after_response",
    ] {
        assert_eq!(
            exp.get(
                "lifeguard_upstream_failures_total",
                &[("endpoint", ep), ("kind", k)]
            ),
            0.0
        );
    }
    assert_eq!(
        exp.get("lifeguard_app_crashes_total", &[("endpoint", ep)]),
        0.0
    );
    for r in ["success", "invalid", "unchanged", "error"] {
        assert_eq!(
            exp.get("lifeguard_config_reloads_total", &[("result", r)]),
            0.0
        );
    }
    assert_eq!(exp.get("lifeguard_config_generation", &[]), 1.0);
    assert_eq!(
        exp.get("lifeguard_build_info", &[("version", "0.1.0")]),
        1.0
    );
    assert_eq!(exp.all("lifeguard_build_info").len(), 1);
    assert_eq!(exp.get("lifeguard_draining", &[]), 0.0);
    assert_eq!(exp.get("lifeguard_requests_in_flight", &[]), 0.0);
    assert_eq!(
        exp.get("lifeguard_request_duration_seconds_count", &[]),
        0.0
    );
    let loaded = exp.get(
        "lifeguard_config_last_reload_success_timestamp_seconds",
        &[],
    );
    assert!(
        (loaded - unix_now()).abs() < 60.0,
        "config load timestamp {loaded} vs now {}",
        unix_now()
    );
}

/// 3 GETs answered, a PURGE answered, a POST whose app connection is reset
/// (outcome unknown, not retried), two GETs reset on every attempt (retried
/// until `retry.attempts`, then until the budget runs out), a response cut
/// after its head, garbage from the app, a response timeout, a request
/// refused by the overload queue, a refused connect, and a request while the
/// endpoint is known down. Then every counter, exactly.
#[tokio::test]
async fn counters_after_a_scripted_scenario_are_exact() {
    let mut app = ScriptApp::start().await;
    // Probes: once at start and when a request suggests a crash, so a probe
    // never finds the stopped app before the request does.
    let proxy = Proxy::start(&format!(
        "app:\n  endpoints: [\"{}\"]\n  response_timeout: 300ms\n  max_in_flight: 1\n  queue_timeout: 100ms\n\
         health:\n  interval: 1h\n  slow_start: 0s\n\
         unavailable:\n  hold: 0s\n",
        app.addr
    ))
    .await;
    let (addr, admin) = (proxy.addr(), proxy.admin());
    let ep = app.addr.to_string();
    let ep = ep.as_str();
    wait_ready(admin).await;

    for i in 0..3 {
        let r = send(addr, "GET", &format!("/ok?i={i}")).await;
        assert_eq!(r.status, 200, "{r:?}");
    }
    let r = send(addr, "PURGE", "/ok").await;
    assert_eq!(r.status, 200, "{r:?}");
    let r = send(addr, "POST", "/crash").await;
    assert_eq!(r.status, 503, "{r:?}");
    assert!(
        r.header("proxy-status")
            .is_some_and(|v| v.contains("connection_terminated")),
        "{r:?}"
    );
    // retry.attempts (2): three sends, all reset.
    let r = send(addr, "GET", "/crash?n=1").await;
    assert_eq!(r.status, 503, "{r:?}");
    // The budget (floor 3 per ~10 s) has one resend left.
    let r = send(addr, "GET", "/crash?n=2").await;
    assert_eq!(r.status, 503, "{r:?}");
    let out = raw_exchange(addr, b"GET /truncate HTTP/1.1\r\nHost: t\r\n\r\n", 10).await;
    match out {
        RawOutcome::Response(r) => {
            assert_eq!(r.status, 200, "{r:?}");
            assert!(r.truncated, "{r:?}");
        }
        other => panic!("truncated response expected: {other:?}"),
    }
    let r = send(addr, "GET", "/garbage").await;
    assert_eq!(r.status, 502, "{r:?}");

    // A request stalls (then times out) while holding the only slot; another
    // waits queue_timeout for it and is turned away.
    let stall = tokio::spawn(async move { send(addr, "GET", "/stall").await });
    let seen = app.seen.clone();
    eventually_async(Duration::from_secs(3), "the app got /stall", move || {
        let got = seen.lock().unwrap().iter().any(|s| s == "GET /stall");
        async move { got }
    })
    .await;
    let r = send(addr, "GET", "/ok?queued").await;
    assert_eq!(r.status, 503, "{r:?}");
    assert!(
        r.header("proxy-status")
            .is_some_and(|v| v.contains("connection_limit_reached")),
        "{r:?}"
    );
    let r = stall.await.unwrap();
    assert_eq!(r.status, 504, "{r:?}");

    let before = scrape(admin).await;
    assert_eq!(
        before.get("lifeguard_app_endpoint_up", &[("endpoint", ep)]),
        1.0
    );

    // The app goes away: the next request's connect is refused, the one
    // after is answered without a connect (the endpoint is known down).
    app.stop().await;
    let r = send(addr, "GET", "/ok?refused").await;
    assert_eq!(r.status, 503, "{r:?}");
    assert!(
        r.header("proxy-status")
            .is_some_and(|v| v.contains("connection_refused")),
        "{r:?}"
    );
    let r = send(addr, "GET", "/ok?down").await;
    assert_eq!(r.status, 503, "{r:?}");
    assert!(
        r.header("proxy-status")
            .is_some_and(|v| v.contains("destination_unavailable")),
        "{r:?}"
    );

    assert_eq!(
        app.seen(),
        [
            "GET /ok?i=0",
            "GET /ok?i=1",
            "GET /ok?i=2",
            "PURGE /ok",
            "POST /crash",
            "GET /crash?n=1",
            "GET /crash?n=1",
            "GET /crash?n=1",
            "GET /crash?n=2",
            "GET /crash?n=2",
            "GET /truncate",
            "GET /garbage",
            "GET /stall",
        ]
    );

    // Connections and requests settle to zero (clients have closed).
    eventually_async(
        Duration::from_secs(3),
        "connections closed",
        move || async move {
            let e = scrape(admin).await;
            e.get("lifeguard_client_connections_open", &[]) == 0.0
                && e.get("lifeguard_requests_in_flight", &[]) == 0.0
        },
    )
    .await;
    // Probes keep running (the endpoint is down): scrape until the probe
    // counter and the probe histogram agree.
    let mut exp = scrape(admin).await;
    for _ in 0..20 {
        let probes: f64 = exp.all("lifeguard_health_probes_total").values().sum();
        if probes
            == exp.get(
                "lifeguard_health_probe_duration_seconds_count",
                &[("endpoint", ep)],
            )
        {
            break;
        }
        exp = scrape(admin).await;
    }

    assert_series(
        &exp,
        "lifeguard_requests_total",
        &[
            ("code_class=2xx,method=GET", 4.0),
            ("code_class=2xx,method=other", 1.0),
            ("code_class=5xx,method=POST", 1.0),
            ("code_class=5xx,method=GET", 7.0),
        ],
    );
    assert_eq!(
        exp.get("lifeguard_request_duration_seconds_count", &[]),
        13.0
    );
    assert_series(
        &exp,
        "lifeguard_synthesized_responses_total",
        &[
            ("reason=app_down", 2.0),
            ("reason=app_crashed", 3.0),
            ("reason=timeout", 1.0),
            ("reason=overload", 1.0),
            ("reason=bad_response", 1.0),
        ],
    );
    let e = |kind: &str| format!("endpoint={ep},kind={kind}");
    assert_series(
        &exp,
        "lifeguard_upstream_failures_total",
        &[
            (&e("refused"), 1.0),
            (&e("reset_before_response"), 6.0),
            (&e("reset_after_response"), 1.0),
            (&e("response_timeout"), 1.0),
            (&e("bad_response"), 1.0),
        ],
    );
    assert_eq!(exp.get("lifeguard_outcome_unknown_total", &[]), 1.0);
    assert_eq!(
        exp.get("lifeguard_app_crashes_total", &[("endpoint", ep)]),
        7.0
    );
    assert_eq!(exp.get("lifeguard_retries_total", &[]), 3.0);
    assert_eq!(exp.get("lifeguard_retry_budget_exhausted_total", &[]), 1.0);
    assert_eq!(
        exp.get("lifeguard_client_connections_accepted_total", &[]),
        13.0
    );
    assert_eq!(exp.get("lifeguard_client_aborts_total", &[]), 0.0);
    assert_eq!(exp.get("lifeguard_requests_in_flight", &[]), 0.0);
    assert_eq!(exp.get("lifeguard_client_connections_open", &[]), 0.0);
    assert_eq!(exp.get("lifeguard_tunnels_open", &[]), 0.0);
    assert_eq!(exp.get("lifeguard_queue_wait_seconds_count", &[]), 1.0);
    let waited = exp.get("lifeguard_queue_wait_seconds_sum", &[]);
    assert!((0.09..1.0).contains(&waited), "queue wait sum {waited}");
    assert_eq!(
        exp.get("lifeguard_app_endpoint_up", &[("endpoint", ep)]),
        0.0
    );
    assert_series(
        &exp,
        "lifeguard_app_endpoint_state_changes_total",
        &[
            (&format!("endpoint={ep},to=up"), 1.0),
            (&format!("endpoint={ep},to=down"), 1.0),
        ],
    );
    let probe = |r: &str| {
        exp.get(
            "lifeguard_health_probes_total",
            &[("endpoint", ep), ("result", r)],
        )
    };
    assert!(
        probe("healthy") >= 1.0,
        "{:?}",
        exp.all("lifeguard_health_probes_total")
    );
    assert!(
        probe("refused") >= 1.0,
        "{:?}",
        exp.all("lifeguard_health_probes_total")
    );
    for r in ["bad_status", "timeout", "failed"] {
        assert_eq!(probe(r), 0.0, "{r}");
    }
    let probes: f64 = exp.all("lifeguard_health_probes_total").values().sum();
    assert_eq!(
        probes,
        exp.get(
            "lifeguard_health_probe_duration_seconds_count",
            &[("endpoint", ep)]
        ),
        "every probe is timed"
    );
    assert_eq!(exp.get("lifeguard_config_generation", &[]), 1.0);
    assert_eq!(
        exp.get("lifeguard_build_info", &[("version", "0.1.0")]),
        1.0
    );
    assert_eq!(exp.get("lifeguard_draining", &[]), 0.0);
    assert_eq!(exp.get("lifeguard_maintenance", &[]), 0.0);

    // The drain shows.
    let r = raw_exchange(
        admin,
        b"POST /admin/drain HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\n\r\n",
        5,
    )
    .await
    .response();
    assert_eq!(r.status, 202, "{r:?}");
    let exp = scrape(admin).await;
    assert_eq!(exp.get("lifeguard_draining", &[]), 1.0);
    // Scrapes are not requests.
    assert_eq!(
        exp.get("lifeguard_request_duration_seconds_count", &[]),
        13.0
    );
}

// ---------------------------------------------------------------------------
// /status
// ---------------------------------------------------------------------------

#[tokio::test]
async fn status_reports_config_endpoints_in_flight_and_crashes() {
    let app = ScriptApp::start().await;
    let p = ProxyProcess::start(&format!(
        "app:\n  endpoints: [\"{}\"]\nunavailable:\n  hold: 0s\n",
        app.addr
    ))
    .await;
    let (addr, admin) = (p.addr, p.admin);
    wait_ready(admin).await;

    let sha = std::process::Command::new("sha256sum")
        .arg(&p.config_path)
        .output()
        .expect("sha256sum");
    let sha = String::from_utf8_lossy(&sha.stdout)
        .split_whitespace()
        .next()
        .expect("sha256sum output")
        .to_owned();
    assert_eq!(sha.len(), 64);

    let t_before = unix_now() * 1000.0;
    let s = status_json(admin).await;
    assert_eq!(s["version"], "0.1.0", "{s}");
    assert_eq!(s["phase"], "running", "{s}");
    assert_eq!(s["ready"], true, "{s}");
    assert_eq!(s["config"]["generation"], 1, "{s}");
    assert_eq!(s["config"]["sha256"], sha.as_str(), "{s}");
    assert_eq!(s["in_flight"], 0, "{s}");
    assert_eq!(s["client_connections"], 0, "{s}");
    assert_eq!(s["tunnels"], 0, "{s}");
    assert_eq!(s["drain_outcome"], Value::Null, "{s}");
    assert_eq!(s["recent_crashes"], serde_json::json!([]), "{s}");
    let eps = s["endpoints"].as_array().expect("endpoints");
    assert_eq!(eps.len(), 1, "{s}");
    let e = &eps[0];
    assert_eq!(e["endpoint"], app.addr.to_string(), "{e}");
    assert_eq!(e["state"], "up", "{e}");
    assert_eq!(e["in_flight"], 0, "{e}");
    assert!(e["idle_connections"].as_u64().is_some(), "{e}");
    assert_eq!(e["last_change_reason"], "first probe answered 200", "{e}");
    assert_eq!(e["last_probe"]["result"], "healthy", "{e}");
    assert_eq!(e["last_probe"]["status"], 200, "{e}");
    assert!(
        e["last_probe"]["latency_ms"].as_f64().unwrap() >= 0.0,
        "{e}"
    );
    let probed = e["last_probe"]["at_unix_ms"].as_f64().unwrap();
    assert!(
        probed <= t_before + 1000.0 && probed > t_before - 10_000.0,
        "last probe at {probed}, now {t_before}"
    );
    let changed = e["last_change_unix_ms"].as_f64().unwrap();
    assert!(
        changed <= probed + 1000.0 && changed > t_before - 10_000.0,
        "{e}"
    );

    // A request in flight shows, globally and on its endpoint.
    let slow = tokio::spawn(async move { send(addr, "GET", "/slow/600").await });
    eventually_async(
        Duration::from_secs(3),
        "in flight in /status",
        move || async move {
            let s = status_json(admin).await;
            s["in_flight"] == 1
                && s["endpoints"][0]["in_flight"] == 1
                && s["client_connections"] == 1
        },
    )
    .await;
    assert_eq!(slow.await.unwrap().status, 200);
    eventually_async(
        Duration::from_secs(3),
        "nothing in flight",
        move || async move {
            let s = status_json(admin).await;
            s["in_flight"] == 0 && s["endpoints"][0]["in_flight"] == 0
        },
    )
    .await;

    // A crash is reported with the request that was on the connection.
    let r = send(addr, "POST", "/crash").await;
    assert_eq!(r.status, 503);
    let t_crash = unix_now() * 1000.0;
    let s = status_json(admin).await;
    let crashes = s["recent_crashes"].as_array().expect("recent_crashes");
    assert_eq!(crashes.len(), 1, "{s}");
    let c = &crashes[0];
    assert_eq!(c["endpoint"], app.addr.to_string(), "{c}");
    assert_eq!(c["trigger"], "reset_before_response", "{c}");
    let at = c["at_unix_ms"].as_f64().unwrap();
    assert!(at <= t_crash + 1000.0 && at > t_crash - 5000.0, "{c}");
    let reqs = c["requests"].as_array().expect("requests");
    assert_eq!(reqs.len(), 1, "{c}");
    assert_eq!(reqs[0]["method"], "POST", "{c}");
    assert_eq!(reqs[0]["path"], "/crash", "{c}");
    assert_eq!(reqs[0]["endpoint"], app.addr.to_string(), "{c}");
    assert_eq!(reqs[0]["bytes_sent"], 1, "{c}");
    // The status still reads as a healthy, running proxy.
    assert_eq!(s["phase"], "running");
    assert_eq!(s["config"]["sha256"], sha.as_str());
}

//! A real Prometheus (scripts/install-prometheus.sh) scrapes a live lifeguard
//! in front of a real Node.js app, with the relabelling the Prometheus
//! Operator generates for the chart's PodMonitor and the chart's alert rules
//! loaded. The app crashes with a POST in flight, three times: the test
//! asserts which alerts fire, with which labels (lifeguard's `upstream`
//! label beside the Operator's `endpoint`, never `exported_endpoint`), that
//! two crashes are not yet a crash loop and that the third is.

use crate::render::{self, seq};
use serde_json::Value as Json;
use serde_yaml::Value;
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::Duration;
use support::node::NodeApp;
use support::process::ProxyProcess;
use support::{eventually_async, raw_exchange};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// `GET path` over HTTP/1.0 (the answer ends at the close): status and
/// body, or None when the server is not (yet) there.
async fn http_get(addr: SocketAddr, path: &str) -> Option<(u16, String)> {
    let exchange = async {
        let mut s = tokio::net::TcpStream::connect(addr).await.ok()?;
        s.write_all(format!("GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").as_bytes())
            .await
            .ok()?;
        let mut buf = Vec::new();
        s.read_to_end(&mut buf).await.ok()?;
        let text = String::from_utf8_lossy(&buf).into_owned();
        let (head, body) = text.split_once("\r\n\r\n")?;
        let code = head.split(' ').nth(1)?.parse().ok()?;
        Some((code, body.to_owned()))
    };
    tokio::time::timeout(Duration::from_secs(5), exchange)
        .await
        .ok()
        .flatten()
}

/// The pod the scrape target stands for (matched by the chart's default
/// rule selector: namespace "demo", pods of the release "demo").
const NAMESPACE: &str = "demo";
const POD: &str = "demo-lifeguard-7c9f8d6b4-x2x4z";

/// A Prometheus server, killed (by its pid) when dropped.
struct Prometheus {
    child: Child,
    addr: SocketAddr,
    _dir: tempfile::TempDir,
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Prometheus {
    async fn start(config: &str, rules: &str) -> Prometheus {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("prometheus.yml"), config).unwrap();
        std::fs::write(dir.path().join("rules.yaml"), rules).unwrap();
        let addr = SocketAddr::from(([127, 0, 0, 1], render::closed_port()));
        let child = Command::new(render::prometheus_tools().join("prometheus"))
            .current_dir(dir.path())
            .arg("--config.file=prometheus.yml")
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address={addr}"))
            .arg("--log.level=warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start prometheus");
        let p = Prometheus {
            child,
            addr,
            _dir: dir,
        };
        eventually_async(Duration::from_secs(30), "prometheus ready", || async {
            tokio::time::sleep(Duration::from_millis(100)).await;
            http_get(p.addr, "/-/ready")
                .await
                .is_some_and(|(code, _)| code == 200)
        })
        .await;
        p
    }

    async fn api(&self, path: &str) -> Json {
        let (code, body) = http_get(self.addr, path)
            .await
            .unwrap_or_else(|| panic!("prometheus did not answer {path}"));
        assert_eq!(code, 200, "{path}: {body}");
        let v: Json = serde_json::from_str(&body).expect("API answers JSON");
        assert_eq!(v["status"], "success", "{path}: {v}");
        v["data"].clone()
    }

    /// The firing alerts.
    async fn firing(&self) -> Vec<Json> {
        self.api("/api/v1/alerts").await["alerts"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|a| a["state"] == "firing")
            .cloned()
            .collect()
    }

    /// The series of an instant query (a PromQL expression without spaces
    /// or characters that need escaping in a URL).
    async fn query(&self, expr: &str) -> Vec<Json> {
        self.api(&format!("/api/v1/query?query={expr}")).await["result"]
            .as_array()
            .unwrap()
            .clone()
    }

    async fn wait_alert(&self, name: &str) -> Json {
        for _ in 0..200 {
            if let Some(a) = self
                .firing()
                .await
                .into_iter()
                .find(|a| a["labels"]["alertname"] == name)
            {
                return a;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        panic!(
            "{name} did not fire within 40 s: {:?}",
            self.api("/api/v1/alerts").await
        );
    }

    /// The series of `expr`, once there is at least one (within 20 s).
    async fn wait_series(&self, expr: &str) -> Vec<Json> {
        for _ in 0..100 {
            let series = self.query(expr).await;
            if !series.is_empty() {
                return series;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        panic!("no series for {expr} within 20 s");
    }
}

/// What the Prometheus Operator generates for a PodMonitor endpoint (the
/// `podMonitor/<namespace>/<name>/<i>` scrape job): keep the pods its
/// selector matches and the container port it names, then set `namespace`,
/// `container`, `pod`, `job` (`<namespace>/<name>`) and `endpoint` (the port
/// name), with `honor_labels: false`. Kubernetes service discovery is played
/// by a static target carrying the `__meta_kubernetes_*` labels it would
/// set for the chart's pod.
fn scrape_config(pm: &Value, target: SocketAddr, pod_labels: &Value) -> String {
    let name = pm["metadata"]["name"].as_str().unwrap();
    let endpoint = &seq(&pm["spec"]["podMetricsEndpoints"])[0];
    let port = endpoint["port"].as_str().expect("port by name");
    let path = endpoint["path"].as_str().unwrap();
    let sanitize = |k: &str| k.replace(['.', '/', '-'], "_");

    let mut meta = vec![
        (
            "__meta_kubernetes_namespace".to_owned(),
            NAMESPACE.to_owned(),
        ),
        ("__meta_kubernetes_pod_name".to_owned(), POD.to_owned()),
        (
            "__meta_kubernetes_pod_container_name".to_owned(),
            "lifeguard".to_owned(),
        ),
        (
            "__meta_kubernetes_pod_container_port_name".to_owned(),
            port.to_owned(),
        ),
        (
            "__meta_kubernetes_pod_phase".to_owned(),
            "Running".to_owned(),
        ),
    ];
    for (k, v) in pod_labels.as_mapping().unwrap() {
        let k = sanitize(k.as_str().unwrap());
        meta.push((
            format!("__meta_kubernetes_pod_label_{k}"),
            v.as_str().unwrap().to_owned(),
        ));
        meta.push((
            format!("__meta_kubernetes_pod_labelpresent_{k}"),
            "true".to_owned(),
        ));
    }
    let mut relabel = String::new();
    relabel.push_str(
        "      - source_labels: [job]\n        target_label: __tmp_prometheus_job_name\n",
    );
    for (k, v) in pm["spec"]["selector"]["matchLabels"].as_mapping().unwrap() {
        let k = sanitize(k.as_str().unwrap());
        relabel.push_str(&format!(
            "      - action: keep\n        source_labels: [__meta_kubernetes_pod_label_{k}, __meta_kubernetes_pod_labelpresent_{k}]\n        regex: ({});true\n",
            v.as_str().unwrap()
        ));
    }
    relabel.push_str(&format!(
        "      - action: drop\n        source_labels: [__meta_kubernetes_pod_phase]\n        regex: (Failed|Succeeded)\n\
         \x20     - action: keep\n        source_labels: [__meta_kubernetes_pod_container_port_name]\n        regex: {port}\n\
         \x20     - source_labels: [__meta_kubernetes_namespace]\n        target_label: namespace\n\
         \x20     - source_labels: [__meta_kubernetes_pod_container_name]\n        target_label: container\n\
         \x20     - source_labels: [__meta_kubernetes_pod_name]\n        target_label: pod\n\
         \x20     - target_label: job\n        replacement: {NAMESPACE}/{name}\n\
         \x20     - target_label: endpoint\n        replacement: {port}\n"
    ));
    let labels: String = meta
        .iter()
        .map(|(k, v)| format!("          {k}: \"{v}\"\n"))
        .collect();
    format!(
        "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n  evaluation_interval: 1s\n\
         rule_files: [rules.yaml]\n\
         scrape_configs:\n\
         \x20 - job_name: podMonitor/{NAMESPACE}/{name}/0\n\
         \x20   honor_labels: false\n\
         \x20   metrics_path: {path}\n\
         \x20   static_configs:\n\
         \x20     - targets: [\"{target}\"]\n\
         \x20       labels:\n{labels}\
         \x20   relabel_configs:\n{relabel}"
    )
}

fn crash_request() -> Vec<u8> {
    b"POST /crash HTTP/1.1\r\nHost: app.test\r\nContent-Length: 0\r\n\r\n".to_vec()
}

/// Crashes the app with a request in flight, waits for lifeguard to count
/// it, restarts the app on the same port and waits until lifeguard sees it up.
async fn crash_and_restart(app: NodeApp, proxy: &ProxyProcess, crashes: u32) -> NodeApp {
    let port = app.port();
    let mut app = app;
    let r = raw_exchange(proxy.addr, &crash_request(), 10)
        .await
        .response();
    assert_eq!(
        r.status, 503,
        "lifeguard answers for the crashed app: {r:?}"
    );
    app.wait_exit(5).await.expect("the app dies");
    let upstream = format!("127.0.0.1:{port}");
    let series = format!("lifeguard_app_crashes_total{{upstream=\"{upstream}\"}}");
    eventually_async(Duration::from_secs(5), &series, || async {
        support::admin::metric(proxy.admin, &series).await == f64::from(crashes)
    })
    .await;
    let again = NodeApp::start_app("crash_app.js", &[&port.to_string()]).await;
    let up = format!("lifeguard_app_endpoint_up{{upstream=\"{upstream}\"}}");
    eventually_async(Duration::from_secs(10), &up, || async {
        support::admin::metric(proxy.admin, &up).await == 1.0
    })
    .await;
    again
}

fn labels(alert: &Json) -> Vec<(String, String)> {
    let mut v: Vec<(String, String)> = alert["labels"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_owned()))
        .collect();
    v.sort();
    v
}

fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
    let mut v: Vec<(String, String)> = list
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    v.sort();
    v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prometheus_fires_the_crash_alerts_with_the_operators_labels() {
    let chart = render::helm_template(Some("monitoring-values.yaml"), &[]);
    let pm = chart.one("PodMonitor");
    let rules = serde_yaml::to_string(&chart.one("PrometheusRule")["spec"]).unwrap();
    let pod_labels = chart.pod().labels.clone();

    let app = NodeApp::start_app("crash_app.js", &["0"]).await;
    let upstream = app.addr.to_string();
    let proxy =
        ProxyProcess::with_endpoints(&[app.addr], "health:\n  mode: tcp\n  interval: 250ms\n")
            .await;
    let prom = Prometheus::start(&scrape_config(pm, proxy.admin, &pod_labels), &rules).await;

    // The target is scraped, with the Operator's labels beside lifeguard's.
    let series = prom.wait_series("lifeguard_app_endpoint_up").await;
    assert_eq!(series.len(), 1, "{series:?}");
    let metric = &series[0]["metric"];
    for (k, v) in [
        ("namespace", NAMESPACE),
        ("pod", POD),
        ("container", "lifeguard"),
        ("endpoint", "admin"),
        ("job", "demo/demo-lifeguard"),
        ("upstream", upstream.as_str()),
        ("instance", &proxy.admin.to_string()),
    ] {
        assert_eq!(metric[k], v, "{k}: {metric}");
    }
    assert!(metric.get("exported_endpoint").is_none(), "{metric}");
    assert!(prom.firing().await.is_empty(), "{:?}", prom.firing().await);

    // One crash: LifeguardAppCrashed, naming the app's address.
    let app = crash_and_restart(app, &proxy, 1).await;
    let crashed = prom.wait_alert("LifeguardAppCrashed").await;
    assert_eq!(
        labels(&crashed),
        pairs(&[
            ("alertname", "LifeguardAppCrashed"),
            ("namespace", NAMESPACE),
            ("pod", POD),
            ("upstream", &upstream),
            ("severity", "warning"),
        ]),
        "{crashed}"
    );
    let description = crashed["annotations"]["description"].as_str().unwrap();
    assert!(
        description.starts_with(&format!("{NAMESPACE}/{POD}: the app at {upstream} lost")),
        "{description}"
    );
    assert!(crashed["annotations"]["runbook_url"]
        .as_str()
        .unwrap()
        .ends_with("/docs/alerts.md#lifeguardappcrashed"));

    // Two crashes are no crash loop (threshold 3), once Prometheus has seen
    // the second one.
    let app = crash_and_restart(app, &proxy, 2).await;
    eventually_async(
        Duration::from_secs(20),
        "Prometheus sees 2 crashes",
        || async {
            tokio::time::sleep(Duration::from_millis(200)).await;
            prom.query("lifeguard_app_crashes_total").await[0]["value"][1] == "2"
        },
    )
    .await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let firing = prom.firing().await;
    assert!(
        firing
            .iter()
            .all(|a| a["labels"]["alertname"] != "LifeguardAppCrashLooping"),
        "{firing:?}"
    );

    // The third: a crash loop.
    let _app = crash_and_restart(app, &proxy, 3).await;
    let looping = prom.wait_alert("LifeguardAppCrashLooping").await;
    assert_eq!(
        labels(&looping),
        pairs(&[
            ("alertname", "LifeguardAppCrashLooping"),
            ("namespace", NAMESPACE),
            ("pod", POD),
            ("severity", "critical"),
        ]),
        "{looping}"
    );
    // The crashed POSTs were sent to the app: their outcome is unknown.
    let unknown = prom.wait_alert("LifeguardOutcomeUnknown").await;
    assert_eq!(
        labels(&unknown),
        pairs(&[
            ("alertname", "LifeguardOutcomeUnknown"),
            ("namespace", NAMESPACE),
            ("pod", POD),
            ("severity", "info"),
        ]),
        "{unknown}"
    );
    // Nothing else fires: the ratio alerts need more traffic and minutes,
    // the endpoint alerts minutes of the app down.
    let mut names: Vec<String> = prom
        .firing()
        .await
        .iter()
        .map(|a| a["labels"]["alertname"].as_str().unwrap().to_owned())
        .collect();
    names.sort();
    assert_eq!(
        names,
        [
            "LifeguardAppCrashLooping",
            "LifeguardAppCrashed",
            "LifeguardOutcomeUnknown"
        ],
        "{names:?}"
    );
}

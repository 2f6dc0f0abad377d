//! What every injected pod must be, compared with the pod it came from:
//! everything of the user's kept; one lifeguard container (classic: a
//! container; native: an init container with restartPolicy Always) that has
//! taken over the app's named port; the app's probes still on the app; the
//! app's preStop wait (classic); the grace period raised to fit the drain,
//! never lowered; Services that reach the pod reach lifeguard, not the app;
//! lifeguard's config matching the pod's ports. Documents of other kinds
//! come out with the same values.

use serde_yaml::{Mapping, Value};

pub(crate) struct Report {
    pub injected: usize,
    /// The generated config.yaml files (for `lifeguard check`).
    pub configs: Vec<String>,
}

/// YAML 1.1's octal file modes (`defaultMode: 0644`) as the integers
/// Kubernetes reads.
pub(crate) fn normalise_modes(v: &Value) -> Value {
    match v {
        Value::Mapping(m) => Value::Mapping(
            m.iter()
                .map(|(k, x)| {
                    let octal = matches!(k.as_str(), Some("defaultMode" | "mode"))
                        .then(|| x.as_str())
                        .flatten()
                        .filter(|s| s.len() > 1 && s.starts_with('0'))
                        .and_then(|s| u64::from_str_radix(&s[1..], 8).ok());
                    match octal {
                        Some(n) => (k.clone(), Value::Number(n.into())),
                        None => (k.clone(), normalise_modes(x)),
                    }
                })
                .collect(),
        ),
        Value::Sequence(s) => Value::Sequence(s.iter().map(normalise_modes).collect()),
        other => other.clone(),
    }
}

fn seq(v: &Value) -> Vec<&Value> {
    v.as_sequence()
        .map(|s| s.iter().collect())
        .unwrap_or_default()
}

/// Top-level documents and List items.
fn objects(docs: &[Value]) -> Vec<&Value> {
    let mut out = Vec::new();
    for d in docs {
        if d["kind"].as_str().is_some_and(|k| k.ends_with("List")) {
            out.extend(seq(&d["items"]));
        } else {
            out.push(d);
        }
    }
    out
}

fn key(v: &Value) -> (String, String, String) {
    let s = |x: &Value| x.as_str().unwrap_or("").to_owned();
    (
        s(&v["kind"]),
        s(&v["metadata"]["namespace"]),
        s(&v["metadata"]["name"]),
    )
}

fn template(v: &Value) -> Option<&Value> {
    match v["kind"].as_str()? {
        "Pod" => Some(v),
        "CronJob" => Some(&v["spec"]["jobTemplate"]["spec"]["template"]),
        "Deployment" | "StatefulSet" | "DaemonSet" | "ReplicaSet" | "Job" => {
            Some(&v["spec"]["template"])
        }
        _ => None,
    }
}

fn named<'a>(list: &'a Value, name: &str) -> Option<&'a Value> {
    seq(list)
        .into_iter()
        .find(|c| c["name"].as_str() == Some(name))
}

/// A port given by number or name, resolved in `containers`.
fn resolve(port: &Value, containers: &[&Value]) -> Option<u64> {
    if let Some(n) = port.as_u64() {
        return Some(n);
    }
    let name = port.as_str()?;
    containers
        .iter()
        .flat_map(|c| seq(&c["ports"]))
        .find(|p| p["name"].as_str() == Some(name))
        .and_then(|p| p["containerPort"].as_u64())
}

fn port_of(addr: &str) -> u64 {
    addr.rsplit(':').next().unwrap().parse().unwrap()
}

const HANDLERS: [[&str; 3]; 10] = [
    ["readinessProbe", "httpGet", ""],
    ["readinessProbe", "tcpSocket", ""],
    ["livenessProbe", "httpGet", ""],
    ["livenessProbe", "tcpSocket", ""],
    ["startupProbe", "httpGet", ""],
    ["startupProbe", "tcpSocket", ""],
    ["lifecycle", "postStart", "httpGet"],
    ["lifecycle", "postStart", "tcpSocket"],
    ["lifecycle", "preStop", "httpGet"],
    ["lifecycle", "preStop", "tcpSocket"],
];

fn at<'a>(v: &'a Value, path: &[&str; 3]) -> &'a Value {
    path.iter().filter(|k| !k.is_empty()).fold(v, |v, k| &v[*k])
}

/// Checks `output` against `input`; `args` are inject's.
pub(crate) fn check(ctx: &str, input: &[Value], output: &[Value], args: &[&str]) -> Report {
    let native = args.windows(2).any(|w| w == ["--mode", "native"]);
    let drain_timeout = 25;
    let input: Vec<Value> = input.iter().map(normalise_modes).collect();
    let ins = objects(&input);
    let outs = objects(output);
    let mut report = Report {
        injected: 0,
        configs: Vec::new(),
    };
    let generated: Vec<&Value> = outs
        .iter()
        .copied()
        .filter(|o| {
            o["kind"] == "ConfigMap"
                && o["metadata"]["annotations"]
                    .get("lifeguard.io/injected")
                    .is_some()
        })
        .collect();
    // Every input object is in the output, in order (generated ConfigMaps
    // come last).
    assert_eq!(
        ins.len() + generated.len(),
        outs.len(),
        "{ctx}: object count"
    );
    let mut services = Vec::new();
    for (i, o) in ins.iter().zip(&outs) {
        assert_eq!(key(i), key(o), "{ctx}: objects reordered");
        let k = key(i);
        let ctx = format!("{ctx}: {}/{}", k.0, k.2);
        if k.0 == "Service" {
            services.push((*i, *o));
        }
        let (Some(ti), Some(to)) = (template(i), template(o)) else {
            if k.0 != "Service" {
                assert_eq!(i, o, "{ctx}: changed");
            }
            continue;
        };
        if to["metadata"]["annotations"]
            .get("lifeguard.io/injected")
            .is_none()
        {
            assert_eq!(i, o, "{ctx}: changed though not injected");
            continue;
        }
        report.injected += 1;
        // Outside the pod template, nothing changed.
        let mut i_rest = (*i).clone();
        let mut o_rest = (*o).clone();
        if k.0 != "Pod" {
            strip_template(&mut i_rest);
            strip_template(&mut o_rest);
            assert_eq!(i_rest, o_rest, "{ctx}: changed outside the pod template");
        }
        check_pod(&ctx, ti, to, native, drain_timeout, &generated, &mut report);
    }
    // Services: whatever reached an injected pod's app port now reaches
    // lifeguard.
    for (si, so) in services {
        let ctx = format!("{ctx}: Service {}", key(si).2);
        for o in &outs {
            let Some(t) = template(o) else { continue };
            if t["metadata"]["annotations"]
                .get("lifeguard.io/injected")
                .is_none()
            {
                continue;
            }
            let labels = &t["metadata"]["labels"];
            let sel = so["spec"]["selector"].as_mapping();
            let selects = key(o).1 == key(so).1
                && sel.is_some_and(|m| {
                    !m.is_empty() && m.iter().all(|(k, v)| labels.get(k) == Some(v))
                });
            if !selects {
                continue;
            }
            let (app_port, lifeguard) = app_and_lifeguard(t);
            let containers: Vec<&Value> = seq(&t["spec"]["containers"])
                .into_iter()
                .chain(seq(&t["spec"]["initContainers"]))
                .collect();
            for p in seq(&so["spec"]["ports"]) {
                let target = if p["targetPort"].is_null() {
                    &p["port"]
                } else {
                    &p["targetPort"]
                };
                let n = resolve(target, &containers)
                    .unwrap_or_else(|| panic!("{ctx}: targetPort {target:?} resolves to nothing"));
                assert_ne!(
                    n, app_port,
                    "{ctx}: port {:?} bypasses lifeguard",
                    p["port"]
                );
                let was = seq(&si["spec"]["ports"])
                    .into_iter()
                    .find(|q| q["port"] == p["port"])
                    .unwrap();
                let was_target = if was["targetPort"].is_null() {
                    &was["port"]
                } else {
                    &was["targetPort"]
                };
                let reached_app = was_target.as_u64() == Some(app_port)
                    || was_target.as_str().is_some_and(|name| {
                        seq(&lifeguard["ports"]).iter().any(|lp| {
                            lp["name"].as_str() == Some(name) && lp["name"] != "lifeguard-admin"
                        })
                    });
                if reached_app {
                    assert_eq!(
                        Some(n),
                        seq(&lifeguard["ports"])[0]["containerPort"].as_u64(),
                        "{ctx}: port {:?} does not reach lifeguard",
                        p["port"]
                    );
                }
            }
        }
        // Outside the ports and lifeguard's annotation, nothing changed.
        let mut a = si.clone();
        let mut b = so.clone();
        for v in [&mut a, &mut b] {
            if let Some(ports) = v["spec"].get_mut("ports").and_then(Value::as_sequence_mut) {
                for p in ports {
                    if let Some(m) = p.as_mapping_mut() {
                        m.remove("targetPort");
                    }
                }
            }
            if let Some(m) = v["metadata"]
                .get_mut("annotations")
                .and_then(Value::as_mapping_mut)
            {
                m.remove("lifeguard.io/original-target-ports");
                if m.is_empty() {
                    v["metadata"]
                        .as_mapping_mut()
                        .unwrap()
                        .remove("annotations");
                }
            }
        }
        assert_eq!(a, b, "{ctx}: changed beyond targetPort");
    }
    report
}

fn strip_template(v: &mut Value) {
    let t = match v["kind"].as_str() {
        Some("CronJob") => v["spec"]["jobTemplate"]["spec"].as_mapping_mut(),
        _ => v["spec"].as_mapping_mut(),
    };
    if let Some(m) = t {
        m.remove("template");
    }
}

/// The app's port (from the injection record) and the lifeguard container.
fn app_and_lifeguard(t: &Value) -> (u64, &Value) {
    let spec = &t["spec"];
    let lifeguard = named(&spec["containers"], "lifeguard")
        .or_else(|| named(&spec["initContainers"], "lifeguard"))
        .expect("a lifeguard container");
    let record: serde_json::Value = serde_json::from_str(
        t["metadata"]["annotations"]["lifeguard.io/inject-record"]
            .as_str()
            .unwrap(),
    )
    .unwrap();
    (record["app_port"].as_u64().expect("app_port"), lifeguard)
}

fn check_pod(
    ctx: &str,
    ti: &Value,
    to: &Value,
    native: bool,
    drain_timeout: u64,
    generated: &[&Value],
    report: &mut Report,
) {
    let si = &ti["spec"];
    let so = &to["spec"];
    // Metadata: labels kept, annotations kept and added to.
    assert_eq!(
        ti["metadata"]["labels"], to["metadata"]["labels"],
        "{ctx}: labels"
    );
    if let Some(a) = ti["metadata"]["annotations"].as_mapping() {
        for (k, v) in a {
            assert_eq!(
                to["metadata"]["annotations"].get(k),
                Some(v),
                "{ctx}: annotation {k:?}"
            );
        }
    }
    assert_eq!(
        to["metadata"]["annotations"]["lifeguard.io/injected"].as_str(),
        Some(env!("CARGO_PKG_VERSION")),
        "{ctx}"
    );
    // Pod-level fields other than the lists and the grace period: kept.
    let mut a: Mapping = si.as_mapping().unwrap().clone();
    let mut b: Mapping = so.as_mapping().unwrap().clone();
    for k in [
        "containers",
        "initContainers",
        "volumes",
        "terminationGracePeriodSeconds",
    ] {
        a.remove(k);
        b.remove(k);
    }
    assert_eq!(a, b, "{ctx}: pod spec fields changed");

    // Grace period: fits the drain, never lowered.
    let grace_in = si["terminationGracePeriodSeconds"].as_u64().unwrap_or(30);
    let grace_out = so["terminationGracePeriodSeconds"].as_u64().unwrap_or(30);
    assert!(grace_out >= grace_in, "{ctx}: grace lowered");
    assert!(grace_out >= drain_timeout + 10, "{ctx}: grace {grace_out}s");
    if grace_in >= drain_timeout + 10 {
        assert_eq!(
            si["terminationGracePeriodSeconds"], so["terminationGracePeriodSeconds"],
            "{ctx}"
        );
    }

    // Exactly one lifeguard, where the mode puts it; the user's init
    // containers first and unchanged, their volumes unchanged.
    let in_containers = named(&so["containers"], "lifeguard");
    let in_inits = named(&so["initContainers"], "lifeguard");
    let lifeguard = match (native, in_containers, in_inits) {
        (false, Some(l), None) => l,
        (true, None, Some(l)) => {
            assert_eq!(l["restartPolicy"], "Always", "{ctx}: not a native sidecar");
            assert_eq!(
                seq(&so["initContainers"]).last().map(|c| &c["name"]),
                Some(&Value::from("lifeguard")),
                "{ctx}: lifeguard is not after the user's init containers"
            );
            l
        }
        other => panic!("{ctx}: lifeguard placement {other:?}"),
    };
    let inits_out: Vec<&Value> = seq(&so["initContainers"])
        .into_iter()
        .filter(|c| c["name"] != "lifeguard")
        .collect();
    assert_eq!(
        seq(&si["initContainers"]),
        inits_out,
        "{ctx}: init containers changed"
    );
    let vols_out: Vec<&Value> = seq(&so["volumes"])
        .into_iter()
        .filter(|v| v["name"] != "lifeguard-config")
        .collect();
    assert_eq!(seq(&si["volumes"]), vols_out, "{ctx}: volumes changed");

    // Containers: the same, in order; only the app's ports, probe ports and
    // preStop may differ.
    let cin = seq(&si["containers"]);
    let cout: Vec<&Value> = seq(&so["containers"])
        .into_iter()
        .filter(|c| c["name"] != "lifeguard")
        .collect();
    assert_eq!(cin.len(), cout.len(), "{ctx}: containers");
    let record: serde_json::Value = serde_json::from_str(
        to["metadata"]["annotations"]["lifeguard.io/inject-record"]
            .as_str()
            .unwrap(),
    )
    .unwrap();
    let app_name = record["app"].as_str().unwrap();
    let lg_port = seq(&lifeguard["ports"])[0].clone();
    let admin_port = seq(&lifeguard["ports"])[1]["containerPort"]
        .as_u64()
        .unwrap();
    assert_eq!(
        seq(&lifeguard["ports"])[1]["name"],
        "lifeguard-admin",
        "{ctx}"
    );
    let mut app_port = None;
    for (a, b) in cin.iter().zip(&cout) {
        if a["name"].as_str() != Some(app_name) {
            assert_eq!(a, b, "{ctx}: container {:?} changed", a["name"]);
            continue;
        }
        // The app's probes and hooks reach the same port as before.
        for path in HANDLERS {
            let before = at(a, &path);
            if before.is_null() {
                continue;
            }
            let p_in = resolve(&before["port"], &[a]);
            let p_out = resolve(&at(b, &path)["port"], &[b]);
            assert_eq!(p_in, p_out, "{ctx}: {path:?} moved");
            assert!(p_out.is_some(), "{ctx}: {path:?} names no port of the app");
        }
        // The app's port: renamed, lifeguard took the name.
        let port_in = seq(&a["ports"]);
        let port_out = seq(&b["ports"]);
        assert_eq!(port_in.len(), port_out.len(), "{ctx}");
        for (p, q) in port_in.iter().zip(&port_out) {
            assert_eq!(p["containerPort"], q["containerPort"], "{ctx}");
            if p["name"] != q["name"] {
                assert_eq!(
                    p["name"], lg_port["name"],
                    "{ctx}: lifeguard did not take the name"
                );
                app_port = p["containerPort"].as_u64();
            }
        }
        // The preStop wait (classic), unless the app had its own.
        let pre_in = &a["lifecycle"]["preStop"];
        let pre_out = &b["lifecycle"]["preStop"];
        if native || !pre_in.is_null() {
            assert_eq!(pre_in, pre_out, "{ctx}: app preStop");
        } else {
            assert_eq!(
                pre_out["httpGet"]["port"].as_u64(),
                Some(admin_port),
                "{ctx}"
            );
            assert_eq!(
                pre_out["httpGet"]["path"].as_str(),
                Some(format!("/admin/drained?wait={}s", drain_timeout + 5).as_str()),
                "{ctx}"
            );
        }
    }

    // No two ports of the pod share a number or a name.
    let all_ports: Vec<&Value> = seq(&so["containers"])
        .into_iter()
        .chain(seq(&so["initContainers"]))
        .flat_map(|c| seq(&c["ports"]))
        .collect();
    let mut numbers: Vec<u64> = all_ports
        .iter()
        .filter_map(|p| p["containerPort"].as_u64())
        .collect();
    let mut names: Vec<&str> = all_ports
        .iter()
        .filter_map(|p| p["name"].as_str())
        .collect();
    let (n, m) = (numbers.len(), names.len());
    numbers.sort();
    numbers.dedup();
    names.sort();
    names.dedup();
    assert_eq!(
        (numbers.len(), names.len()),
        (n, m),
        "{ctx}: port clash: {all_ports:?}"
    );
    for name in names {
        assert!(
            name.len() <= 15 && !name.starts_with('-') && !name.ends_with('-'),
            "{ctx}: bad port name {name}"
        );
    }

    // lifeguard's config: mounted from a ConfigMap, or (--config-annotation)
    // from the pod's own annotation through a downwardAPI volume; generated
    // ones match.
    let volume = named(&so["volumes"], "lifeguard-config").expect("config volume");
    let text = if let Some(items) = volume["downwardAPI"]["items"].as_sequence() {
        assert_eq!(items.len(), 1, "{ctx}: {volume:?}");
        assert_eq!(items[0]["path"].as_str(), Some("config.yaml"), "{ctx}");
        assert_eq!(
            items[0]["fieldRef"]["fieldPath"].as_str(),
            Some("metadata.annotations['lifeguard.io/config']"),
            "{ctx}"
        );
        to["metadata"]["annotations"]["lifeguard.io/config"]
            .as_str()
            .unwrap_or_else(|| panic!("{ctx}: no lifeguard.io/config annotation"))
    } else {
        let cm_name = volume["configMap"]["name"].as_str().unwrap();
        let Some(cm) = generated
            .iter()
            .find(|c| c["metadata"]["name"].as_str() == Some(cm_name))
        else {
            return; // --config-map: the user's
        };
        cm["data"]["config.yaml"].as_str().unwrap()
    };
    let config: Value = serde_yaml::from_str(text).unwrap();
    assert_eq!(
        port_of(config["listen"].as_str().unwrap()),
        lg_port["containerPort"].as_u64().unwrap(),
        "{ctx}: config listen"
    );
    assert_eq!(
        port_of(config["admin"]["listen"].as_str().unwrap()),
        admin_port,
        "{ctx}"
    );
    let endpoint = seq(&config["app"]["endpoints"])[0].as_str().unwrap();
    assert!(endpoint.starts_with("127.0.0.1:"), "{ctx}: {endpoint}");
    if let Some(p) = app_port {
        assert_eq!(port_of(endpoint), p, "{ctx}: config app endpoint");
    }
    assert_eq!(
        port_of(endpoint),
        record["app_port"].as_u64().unwrap(),
        "{ctx}: config app endpoint"
    );
    assert_eq!(
        config["drain"]["grace_period"].as_str(),
        Some(format!("{grace_out}s").as_str()),
        "{ctx}"
    );
    report.configs.push(text.to_owned());
}

//! One `admission.k8s.io/v1` AdmissionReview, read and answered. Pure: the
//! review's bytes in, the answer out. The answer always allows the Pod:
//! injected (a JSON Patch made by `inject::inject`, the function `lifeguard
//! inject` runs), or unchanged (not opted in, injected already, not a Pod,
//! or the injection failed: lifeguard never stops a pod from being
//! created). A body that is not an AdmissionReview at all is a
//! [`BadReview`] (answered 400: there is no `uid` to answer).

use super::patch;
use crate::inject::{self, Options, INJECTED};
use base64::Engine;
use serde_json::{json, Value};
use std::panic::{catch_unwind, AssertUnwindSafe};

const API_VERSION: &str = "admission.k8s.io/v1";

/// What became of a reviewed object (the `outcome` of the log line).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Answered with a patch.
    Injected,
    /// Not annotated (or, in an opted-in namespace, annotated `disabled`).
    NotOptedIn,
    /// Carries `lifeguard.io/injected` already.
    AlreadyInjected,
    /// Opted in but cannot be injected (no port, a Pod that runs to
    /// completion in classic mode…): the warnings say why.
    Skipped,
    /// Not a Pod, a subresource, or not a CREATE.
    Ignored,
    /// The injection failed; the Pod is admitted unchanged.
    Failed,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Injected => "injected",
            Outcome::NotOptedIn => "not_opted_in",
            Outcome::AlreadyInjected => "already_injected",
            Outcome::Skipped => "skipped",
            Outcome::Ignored => "ignored",
            Outcome::Failed => "failed",
        }
    }
}

/// A body that cannot be answered with an AdmissionReview.
#[derive(Debug, thiserror::Error)]
pub enum BadReview {
    #[error("the body is not JSON: {0}")]
    NotJson(String),
    #[error("not an {API_VERSION} AdmissionReview (found apiVersion {api_version}, kind {kind})")]
    NotAReview { api_version: String, kind: String },
    #[error("the AdmissionReview has no request.uid")]
    NoUid,
}

/// The answer to one review, and what to log about it.
#[derive(Debug)]
pub struct Reviewed {
    /// The AdmissionReview to send back.
    pub answer: Value,
    pub outcome: Outcome,
    pub uid: String,
    /// `namespace/name` of the Pod (its `generateName` when it has no name yet).
    pub object: String,
    pub warnings: Vec<String>,
    /// Why the injection failed ([`Outcome::Failed`]).
    pub error: Option<String>,
}

/// Reads a review and answers it. `opts.all`: every Pod of the namespace is
/// opted in (the namespace-label webhook), else only annotated ones.
pub fn review(body: &[u8], opts: &Options) -> Result<Reviewed, BadReview> {
    let review: Value =
        serde_json::from_slice(body).map_err(|e| BadReview::NotJson(e.to_string()))?;
    let text = |v: &Value| v.as_str().unwrap_or("(none)").to_owned();
    if review["apiVersion"] != API_VERSION || review["kind"] != "AdmissionReview" {
        return Err(BadReview::NotAReview {
            api_version: text(&review["apiVersion"]),
            kind: text(&review["kind"]),
        });
    }
    let request = &review["request"];
    let uid = request["uid"]
        .as_str()
        .filter(|u| !u.is_empty())
        .ok_or(BadReview::NoUid)?
        .to_owned();
    let namespace = request["namespace"].as_str().unwrap_or_default();
    let meta = &request["object"]["metadata"];
    let name = meta["name"]
        .as_str()
        .filter(|n| !n.is_empty())
        .or_else(|| meta["generateName"].as_str())
        .unwrap_or(request["name"].as_str().unwrap_or_default());
    let mut reviewed = Reviewed {
        answer: Value::Null,
        outcome: Outcome::Ignored,
        uid,
        object: format!("{namespace}/{name}"),
        warnings: Vec::new(),
        error: None,
    };
    let kind = &request["kind"];
    let is_pod_create = kind["group"].as_str().unwrap_or_default().is_empty()
        && kind["kind"] == "Pod"
        && request["subResource"]
            .as_str()
            .unwrap_or_default()
            .is_empty()
        && request["operation"] == "CREATE";
    let mut patch = None;
    if is_pod_create {
        // Nothing in the injection should panic; if it ever did, the Pod
        // is still admitted (unchanged) rather than the request dropped.
        let decided = catch_unwind(AssertUnwindSafe(|| {
            decide(&request["object"], namespace, opts)
        }));
        match decided {
            Ok(Ok(d)) => {
                reviewed.outcome = d.outcome;
                reviewed.warnings = d.warnings;
                patch = d.patch;
            }
            Ok(Err(e)) => {
                reviewed.outcome = Outcome::Failed;
                reviewed.error = Some(e);
            }
            Err(_) => {
                reviewed.outcome = Outcome::Failed;
                reviewed.error = Some("the injection panicked".to_owned());
            }
        }
    }
    reviewed.answer = answer(&reviewed, patch);
    Ok(reviewed)
}

struct Decision {
    outcome: Outcome,
    patch: Option<Vec<Value>>,
    warnings: Vec<String>,
}

/// Injects the Pod `object` and diffs the result against it.
fn decide(object: &Value, namespace: &str, opts: &Options) -> Result<Decision, String> {
    if !object["metadata"].is_object() {
        return Err("request.object is not an object with metadata".to_owned());
    }
    let already = !object["metadata"]["annotations"][INJECTED].is_null();
    // The namespace is not in a new Pod's metadata yet; the injection's
    // messages (and the generated config's comment) name it.
    let mut pod = object.clone();
    let has_namespace = pod["metadata"].get("namespace").is_some();
    if !has_namespace && !namespace.is_empty() {
        pod["metadata"]["namespace"] = json!(namespace);
    }
    let yaml = serde_yaml::to_value(&pod).map_err(|e| e.to_string())?;
    let out = inject::inject(vec![yaml], opts).map_err(|e| e.to_string())?;
    let warnings: Vec<String> = out.warnings.iter().map(ToString::to_string).collect();
    if out.changed == 0 {
        let outcome = match (already, warnings.is_empty()) {
            (true, _) => Outcome::AlreadyInjected,
            (false, true) => Outcome::NotOptedIn,
            (false, false) => Outcome::Skipped,
        };
        return Ok(Decision {
            outcome,
            patch: None,
            warnings,
        });
    }
    // The Pod comes first; nothing else is kept (the webhook's config
    // source creates no ConfigMap).
    let Some(injected) = out.docs.first() else {
        return Err("the injection returned no object".to_owned());
    };
    let mut new = serde_json::to_value(injected).map_err(|e| e.to_string())?;
    if !has_namespace {
        if let Some(m) = new["metadata"].as_object_mut() {
            m.remove("namespace");
        }
    }
    Ok(Decision {
        outcome: Outcome::Injected,
        patch: Some(patch::diff(object, &new)),
        warnings,
    })
}

/// The AdmissionReview answer: always allowed; the patch when there is one;
/// the warnings (shown by kubectl) and, on failure, why nothing was done.
fn answer(r: &Reviewed, patch: Option<Vec<Value>>) -> Value {
    let mut response = json!({"uid": r.uid, "allowed": true});
    if let Some(ops) = patch {
        let bytes = serde_json::to_vec(&ops).unwrap_or_default();
        response["patchType"] = json!("JSONPatch");
        response["patch"] = json!(base64::engine::general_purpose::STANDARD.encode(bytes));
    }
    let mut warnings: Vec<String> = r
        .warnings
        .iter()
        .map(|w| format!("lifeguard: {w}"))
        .collect();
    if let Some(e) = &r.error {
        warnings.push(format!(
            "lifeguard: not injected, the webhook failed: {e}; the pod is created without lifeguard"
        ));
    }
    if !warnings.is_empty() {
        response["warnings"] = json!(warnings);
    }
    json!({"apiVersion": API_VERSION, "kind": "AdmissionReview", "response": response})
}

#[cfg(test)]
mod tests {
    use super::*;

    fn review_of(object: Value, kind: &str) -> Vec<u8> {
        serde_json::to_vec(&json!({
            "apiVersion": API_VERSION, "kind": "AdmissionReview",
            "request": {"uid": "u-1", "kind": {"group": "", "version": "v1", "kind": kind},
                        "operation": "CREATE", "namespace": "shop", "object": object}
        }))
        .unwrap()
    }

    fn pod(annotations: Value) -> Value {
        json!({"apiVersion": "v1", "kind": "Pod",
               "metadata": {"generateName": "web-", "annotations": annotations},
               "spec": {"containers": [{"name": "web", "image": "web:1",
                        "ports": [{"name": "http", "containerPort": 3000}]}]}})
    }

    #[test]
    fn outcomes() {
        let opts = Options {
            config: crate::inject::ConfigSource::Annotation,
            ..Options::default()
        };
        let r = review(
            &review_of(pod(json!({"lifeguard.io/inject": "enabled"})), "Pod"),
            &opts,
        )
        .unwrap();
        assert_eq!(r.outcome, Outcome::Injected, "{r:?}");
        assert_eq!(r.object, "shop/web-");
        assert_eq!(r.answer["response"]["uid"], "u-1");
        assert_eq!(r.answer["response"]["patchType"], "JSONPatch");
        let r = review(&review_of(pod(json!({})), "Pod"), &opts).unwrap();
        assert_eq!(r.outcome, Outcome::NotOptedIn);
        assert!(r.answer["response"].get("patch").is_none());
        let r = review(
            &review_of(pod(json!({"lifeguard.io/inject": "maybe"})), "Pod"),
            &opts,
        )
        .unwrap();
        assert_eq!(r.outcome, Outcome::Skipped);
        assert!(r.answer["response"]["warnings"][0]
            .as_str()
            .unwrap()
            .contains("neither enabled nor disabled"));
        let r = review(&review_of(json!({"kind": "Secret"}), "Secret"), &opts).unwrap();
        assert_eq!(r.outcome, Outcome::Ignored);
        let r = review(&review_of(json!("not a pod"), "Pod"), &opts).unwrap();
        assert_eq!(r.outcome, Outcome::Failed);
        assert_eq!(r.answer["response"]["allowed"], true);
    }

    #[test]
    fn bad_reviews() {
        let opts = Options::default();
        assert!(matches!(review(b"{", &opts), Err(BadReview::NotJson(_))));
        assert!(matches!(
            review(br#"{"kind":"Pod"}"#, &opts),
            Err(BadReview::NotAReview { .. })
        ));
        let no_uid =
            br#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{}}"#;
        assert!(matches!(review(no_uid, &opts), Err(BadReview::NoUid)));
    }
}

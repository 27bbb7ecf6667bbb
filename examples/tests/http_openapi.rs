//! `GET /v1/openapi.json`: the bank's and the cart's API as an OpenAPI 3
//! document that a real validator (openapi-spec-validator, installed under
//! target/ by tests/install-openapi-validator.sh) accepts, naming exactly
//! the public handlers, with schemas that follow the Rust types.

#![allow(clippy::unwrap_used)]

mod common;

use std::{collections::BTreeSet, path::Path, process::Command};

use common::Reply;
use reqwest::StatusCode;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use statefn::{
    ingress::{self, IngressConfig},
    prelude::*,
};
use statefn_examples::{
    bank::Account,
    cart::{Cart, Inventory},
};

/// Set to skip the validator where PyPI cannot be reached (the test
/// installs openapi-spec-validator under target/ otherwise).
const SKIP_VALIDATOR: &str = "STATEFN_SKIP_OPENAPI_VALIDATOR";

async fn examples_runtime() -> Runtime {
    Runtime::builder()
        .in_memory()
        .register::<Account>()
        .register::<Cart>()
        .register::<Inventory>()
        .open()
        .await
        .unwrap()
}

/// Serves `runtime` on 127.0.0.1:0; returns the base URL.
async fn serve(runtime: &Runtime, config: IngressConfig) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let app = ingress::router(runtime.clone(), config);
    tokio::spawn(async move { axum::serve(listener, app).await });
    base
}

async fn get(url: &str) -> Reply {
    Reply::from(reqwest::get(url).await.expect("GET")).await
}

async fn served_document(runtime: &Runtime) -> Value {
    let base = serve(runtime, IngressConfig::default()).await;
    let reply = get(&format!("{base}/v1/openapi.json")).await;
    assert_eq!(reply.status, StatusCode::OK, "{reply:?}");
    assert_eq!(
        reply.headers[reqwest::header::CONTENT_TYPE],
        "application/json"
    );
    reply.json
}

/// Where openapi-spec-validator is installed (for `PYTHONPATH`), or why not.
fn validator() -> Result<String, String> {
    let script =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/install-openapi-validator.sh");
    let output = Command::new("bash")
        .arg(&script)
        .output()
        .map_err(|e| format!("cannot run {}: {e}", script.display()))?;
    if !output.status.success() {
        return Err(String::from_utf8_lossy(&output.stderr).into_owned());
    }
    Ok(String::from_utf8_lossy(&output.stdout).trim().to_owned())
}

/// Runs openapi-spec-validator on `document`: `Ok` if it is a valid
/// OpenAPI document, else the validator's complaint.
fn validate(pythonpath: &str, document: &Value) -> Result<(), String> {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("openapi.json");
    std::fs::write(&file, document.to_string()).unwrap();
    let output = Command::new("python3")
        .env("PYTHONPATH", pythonpath)
        .args([
            "-c",
            "import json, sys\n\
             from openapi_spec_validator import validate\n\
             validate(json.load(open(sys.argv[1])))\n",
        ])
        .arg(&file)
        .output()
        .expect("run python3");
    if output.status.success() {
        Ok(())
    } else {
        Err(String::from_utf8_lossy(&output.stderr).into_owned())
    }
}

#[tokio::test]
async fn the_examples_document_is_valid_openapi_3() {
    let runtime = examples_runtime().await;
    let document = served_document(&runtime).await;
    assert_eq!(document["openapi"], "3.0.3");
    let pythonpath = match validator() {
        Ok(path) => path,
        Err(e) if std::env::var_os(SKIP_VALIDATOR).is_some() => {
            eprintln!(
                "openapi-spec-validator unavailable ({e}); skipped because {SKIP_VALIDATOR} is set"
            );
            return;
        }
        Err(e) => panic!(
            "openapi-spec-validator is needed to check /v1/openapi.json and could not be \
             installed: {e} (set {SKIP_VALIDATOR}=1 to skip)"
        ),
    };
    if let Err(complaint) = validate(&pythonpath, &document) {
        panic!("not a valid OpenAPI document:\n{complaint}\n--- the document:\n{document:#}");
    }
    // The validator does refuse what is not OpenAPI: a path parameter
    // that no parameter declares.
    let mut broken = document.clone();
    let deposit = broken["paths"]
        .as_object_mut()
        .unwrap()
        .remove("/v1/Account/{id}/deposit")
        .unwrap();
    broken["paths"]["/v1/Account/{account}/deposit"] = deposit;
    let complaint = validate(&pythonpath, &broken).expect_err("an undeclared path parameter");
    assert!(complaint.contains("account"), "{complaint}");
    runtime.shutdown().await.unwrap();
}

/// `(type, handler)` of every call operation in the document.
fn call_operations(document: &Value) -> BTreeSet<(String, String)> {
    document["paths"]
        .as_object()
        .unwrap()
        .keys()
        .filter_map(|path| {
            let parts: Vec<&str> = path.strip_prefix("/v1/")?.split('/').collect();
            match parts.as_slice() {
                [type_name, "{id}", handler] => {
                    Some(((*type_name).to_owned(), (*handler).to_owned()))
                }
                _ => None,
            }
        })
        .collect()
}

#[tokio::test]
async fn the_document_names_exactly_the_public_handlers() {
    let runtime = examples_runtime().await;
    let document = served_document(&runtime).await;
    let operations = call_operations(&document);
    let public: BTreeSet<(String, String)> = runtime
        .functions()
        .into_iter()
        .flat_map(|(type_name, handlers)| {
            handlers
                .iter()
                .filter(|h| !h.internal)
                .map(move |h| (type_name.clone(), h.name.to_owned()))
        })
        .collect();
    assert_eq!(operations, public);
    let bank: BTreeSet<&str> = operations
        .iter()
        .filter(|(t, _)| t == "Account")
        .map(|(_, h)| h.as_str())
        .collect();
    assert_eq!(
        bank,
        BTreeSet::from(["balance", "deposit", "transfer", "withdraw"])
    );
    // The cart's reply and timer targets are internal: not in the document,
    // neither as calls nor as `/send`, nor anywhere else.
    let internal: Vec<String> = runtime
        .functions()
        .into_iter()
        .flat_map(|(_, handlers)| {
            handlers
                .iter()
                .filter(|h| h.internal)
                .map(|h| h.name.to_owned())
                .collect::<Vec<_>>()
        })
        .collect();
    assert!(internal.contains(&"expire_idle".to_owned()), "{internal:?}");
    let paths: Vec<&String> = document["paths"].as_object().unwrap().keys().collect();
    for handler in &internal {
        assert!(
            !paths
                .iter()
                .any(|p| p.split('/').any(|part| part == handler)),
            "internal handler `{handler}` is in {paths:?}"
        );
    }
    // Each public handler has its `/send` too.
    for (type_name, handler) in &operations {
        let send = &document["paths"][format!("/v1/{type_name}/{{id}}/{handler}/send")]["post"];
        assert!(
            send["responses"]["202"].is_object(),
            "{type_name}.{handler}: {send}"
        );
    }
    runtime.shutdown().await.unwrap();
}

#[tokio::test]
async fn replies_errors_and_headers_are_described_as_the_ingress_answers() {
    let runtime = examples_runtime().await;
    let document = served_document(&runtime).await;
    let deposit = &document["paths"]["/v1/Account/{id}/deposit"]["post"];
    let body = &deposit["requestBody"]["content"]["application/json"]["schema"];
    assert_eq!(body["properties"]["amount"]["type"], "integer", "{body}");
    assert_eq!(body["required"], json!(["amount"]));
    assert_eq!(body["additionalProperties"], false);
    let ok = &deposit["responses"]["200"]["content"]["application/json"]["schema"];
    assert_eq!(ok["type"], "integer", "{ok}");
    // A fallible handler's `Err` is the `details` of a 422.
    let rejected = &deposit["responses"]["422"]["content"]["application/json"]["schema"];
    let details = &rejected["properties"]["error"]["properties"]["details"];
    assert_eq!(
        details["$ref"], "#/components/schemas/BankError",
        "{rejected}"
    );
    let bank_error = document["components"]["schemas"]["BankError"].to_string();
    for variant in ["not_positive", "insufficient_funds", "overflow"] {
        assert!(bank_error.contains(variant), "{bank_error}");
    }
    // A plain handler has no 422.
    let balance = &document["paths"]["/v1/Account/{id}/balance"]["post"];
    assert!(balance["responses"].get("422").is_none(), "{balance}");
    assert_eq!(balance["requestBody"]["required"], false);
    // The errors the ingress gives, with the JSON error body.
    for status in ["400", "404", "409", "413", "415", "500", "503"] {
        assert!(
            deposit["responses"][status].is_object(),
            "{status}: {deposit}"
        );
    }
    let responses = &document["components"]["responses"];
    assert!(responses["Unavailable"]["headers"]["Retry-After"].is_object());
    assert_eq!(
        responses["NotFound"]["content"]["application/json"]["schema"]["$ref"],
        "#/components/schemas/Error"
    );
    let error = &document["components"]["schemas"]["Error"]["properties"]["error"];
    assert_eq!(error["required"], json!(["code", "message"]));
    // The headers that matter, and `/send`'s delay.
    let parameters = &document["components"]["parameters"];
    assert_eq!(parameters["IdempotencyKey"]["name"], "Idempotency-Key");
    assert_eq!(parameters["Traceparent"]["name"], "traceparent");
    let send = &document["paths"]["/v1/Account/{id}/deposit/send"]["post"];
    assert!(
        send["parameters"]
            .as_array()
            .unwrap()
            .contains(&json!({"$ref": "#/components/parameters/Delay"})),
        "{send}"
    );
    assert!(responses["SendUnavailable"]["headers"]["Idempotency-Key"].is_object());
    // Doc comments become descriptions.
    let restock = &document["paths"]["/v1/shop.Inventory/{id}/restock"]["post"];
    assert_eq!(restock["summary"], "Adds stock; returns the new stock.");
    runtime.shutdown().await.unwrap();
}

/// Two builds of one function whose argument type changed.
pub mod v1 {
    use super::*;

    #[derive(Debug, Serialize, Deserialize, schemars::JsonSchema)]
    pub struct Line {
        pub sku: String,
        pub units: u32,
    }

    #[stateful_function(name = "Order")]
    #[derive(Debug, Default, Serialize, Deserialize)]
    pub struct Order {
        lines: u32,
    }

    #[stateful_function]
    impl Order {
        #[handler]
        fn add(&mut self, line: Line) -> u32 {
            self.lines += line.units;
            self.lines
        }
    }
}

pub mod v2 {
    use super::*;

    #[derive(Debug, Serialize, Deserialize, schemars::JsonSchema)]
    pub struct Line {
        pub sku: String,
        pub units: u32,
        /// A note for the packer.
        pub note: Option<String>,
    }

    #[stateful_function(name = "Order")]
    #[derive(Debug, Default, Serialize, Deserialize)]
    pub struct Order {
        lines: u32,
    }

    #[stateful_function]
    impl Order {
        #[handler]
        fn add(&mut self, line: Line) -> u32 {
            self.lines += line.units;
            self.lines
        }
    }
}

#[tokio::test]
async fn a_changed_argument_type_changes_the_document() {
    let old = Runtime::builder()
        .in_memory()
        .register::<v1::Order>()
        .open()
        .await
        .unwrap();
    let new = Runtime::builder()
        .in_memory()
        .register::<v2::Order>()
        .open()
        .await
        .unwrap();
    let (before, after) = (ingress::openapi(&old), ingress::openapi(&new));
    let line = |document: &Value| document["components"]["schemas"]["Line"].clone();
    let properties = |document: &Value| -> BTreeSet<String> {
        line(document)["properties"]
            .as_object()
            .unwrap()
            .keys()
            .cloned()
            .collect()
    };
    assert_eq!(
        properties(&before),
        BTreeSet::from(["sku".into(), "units".into()])
    );
    assert_eq!(
        properties(&after),
        BTreeSet::from(["note".into(), "sku".into(), "units".into()])
    );
    assert_eq!(
        line(&after)["properties"]["note"]["description"],
        "A note for the packer."
    );
    assert_eq!(line(&after)["required"], json!(["sku", "units"]));
    assert_ne!(before["info"]["version"], after["info"]["version"]);
    // The same build gives the same document.
    assert_eq!(before, ingress::openapi(&old));
    old.shutdown().await.unwrap();
    new.shutdown().await.unwrap();
}

/// A type that does not implement `schemars::JsonSchema`.
#[derive(Debug, Serialize, Deserialize)]
pub struct Opaque {
    x: u8,
}

#[stateful_function]
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct Plain {
    n: u32,
}

#[stateful_function]
impl Plain {
    #[handler]
    fn put(&mut self, value: Opaque, label: Option<String>) -> Opaque {
        self.n += 1;
        let _ = label;
        value
    }
}

#[tokio::test]
async fn a_type_without_json_schema_is_any_value_with_a_hint() {
    let runtime = Runtime::builder()
        .in_memory()
        .register::<Plain>()
        .open()
        .await
        .unwrap();
    let document = ingress::openapi(&runtime);
    let put = &document["paths"]["/v1/Plain/{id}/put"]["post"];
    let body = &put["requestBody"]["content"]["application/json"]["schema"];
    let hint = body["properties"]["value"]["description"].as_str().unwrap();
    assert!(
        hint.contains("`Opaque`") && hint.contains("derive"),
        "{hint}"
    );
    assert_eq!(body["properties"]["value"].as_object().unwrap().len(), 1);
    // An `Option` argument may be left out.
    assert_eq!(body["required"], json!(["value"]));
    assert_eq!(body["properties"]["label"]["nullable"], true, "{body}");
    let reply = &put["responses"]["200"]["content"]["application/json"]["schema"];
    assert!(reply["description"].as_str().unwrap().contains("`Opaque`"));
    runtime.shutdown().await.unwrap();
}

#[tokio::test]
async fn the_document_can_be_turned_off() {
    let runtime = examples_runtime().await;
    let base = serve(
        &runtime,
        IngressConfig {
            serve_openapi: false,
            ..IngressConfig::default()
        },
    )
    .await;
    let reply = get(&format!("{base}/v1/openapi.json")).await;
    assert_eq!(reply.status, StatusCode::NOT_FOUND, "{reply:?}");
    assert_eq!(reply.code(), "not_found");
    runtime.shutdown().await.unwrap();
}

#[tokio::test]
async fn following_an_invocation_is_described_as_the_ingress_answers() {
    let runtime = examples_runtime().await;
    let document = served_document(&runtime).await;
    let path = &document["paths"]["/v1/invocations/{invocation_id}"];
    assert!(path["delete"].is_object(), "{path:#}");
    let get_op = &path["get"];
    let listed: BTreeSet<String> =
        get_op["responses"]["200"]["content"]["application/json"]["schema"]["properties"]["status"]
            ["enum"]
            .as_array()
            .unwrap_or_else(|| panic!("no status enum: {get_op:#}"))
            .iter()
            .map(|s| s.as_str().unwrap().to_owned())
            .collect();
    let wait = get_op["parameters"]
        .as_array()
        .unwrap()
        .iter()
        .any(|p| p["name"] == "wait" && p["in"] == "query");
    assert!(wait, "no wait parameter: {get_op:#}");

    // What the ingress really answers for a scheduled and a done invocation.
    let base = serve(&runtime, IngressConfig::default()).await;
    let client = reqwest::Client::new();
    let mut seen = BTreeSet::new();
    for (delay, key) in [("?delay=1h", "later"), ("", "now")] {
        let sent = common::post(
            &client,
            &format!("{base}/v1/Account/a/deposit/send{delay}"),
            Some(json!({"amount": 5})),
            Some(key),
        )
        .await;
        assert_eq!(sent.status, StatusCode::ACCEPTED, "{sent:?}");
        let id = sent.json["invocation_id"].as_str().unwrap().to_owned();
        let status = get(&format!("{base}/v1/invocations/{id}?wait=5s")).await;
        assert_eq!(status.status, StatusCode::OK, "{status:?}");
        seen.insert(status.json["status"].as_str().unwrap().to_owned());
    }
    assert_eq!(
        seen,
        BTreeSet::from(["scheduled".to_owned(), "done".to_owned()])
    );
    assert!(seen.is_subset(&listed), "{seen:?} not all in {listed:?}");
}

/// Every `description` and `summary` of the served document, with its path.
fn texts(value: &Value, at: &str, out: &mut Vec<(String, String)>) {
    match value {
        Value::Object(map) => {
            for (key, value) in map {
                let here = format!("{at}/{key}");
                match value {
                    Value::String(text) if key == "description" || key == "summary" => {
                        out.push((here, text.clone()));
                    }
                    _ => texts(value, &here, out),
                }
            }
        }
        Value::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                texts(item, &format!("{at}/{i}"), out);
            }
        }
        _ => {}
    }
}

/// A description is read by people in API browsers: a string literal
/// broken over source lines without `\` keeps the source's indentation
/// inside its sentences.
#[tokio::test]
async fn descriptions_read_as_prose_without_runs_of_spaces() {
    let runtime = examples_runtime().await;
    let document = served_document(&runtime).await;
    let mut found = Vec::new();
    texts(&document, "", &mut found);
    assert!(found.len() > 10, "the document describes its operations");
    let broken: Vec<_> = found
        .iter()
        // Indentation at a line's start is Markdown; inside a line it is not.
        .filter(|(_, text)| text.lines().any(|line| line.trim_start().contains("    ")))
        .collect();
    assert!(broken.is_empty(), "texts with runs of spaces: {broken:#?}");
    runtime.shutdown().await.unwrap();
}

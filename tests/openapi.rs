//! The OpenAPI documents (openapi/wallet.yaml, openapi/internal.yaml, openapi/cancel-payment.yaml)
//! kept true: the shipped HTTP wallet adapter's requests, recorded by a wallet server, and the
//! internal API's and the public endpoint's answers are validated against them (scripts/fuzz-api
//! then has schemathesis attack the last two). The validator is a small one over the schema subset the documents
//! use; a keyword it does not know fails the test rather than pass unchecked.

mod wallet_server;

mod common;

use mpp_cancel::app::{Application, Components};
use mpp_cancel::config::{Secret, Settings};
use mpp_cancel::domain::{Currency, Money, PaymentStatus, SystemClock};
use mpp_cancel::store::Store;
use mpp_cancel::wallet::{
    CloseOutcome, HttpWallet, HttpWalletConfig, RefundOrder, VoidOrder, VoidOutcome, Wallet,
};
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::Duration;
use wallet_server::{Fault, WalletServer};

// ---------------------------------------------------------------------------------------------
// The documents and the validator

fn document(name: &str) -> Value {
    let path = format!("{}/openapi/{name}", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).unwrap();
    let doc: Value = serde_norway::from_str(&text).unwrap();
    assert_eq!(doc["openapi"], "3.1.0", "{name}");
    doc
}

/// The operation of `doc` for `method` and a concrete `path` (templates matched per segment).
fn operation<'a>(doc: &'a Value, method: &str, path: &str) -> &'a Value {
    let segments: Vec<&str> = path.split('/').collect();
    for (template, item) in doc["paths"].as_object().unwrap() {
        let parts: Vec<&str> = template.split('/').collect();
        let matches = parts.len() == segments.len()
            && parts
                .iter()
                .zip(&segments)
                .all(|(t, s)| (t.starts_with('{') && !s.is_empty()) || t == s);
        if matches && let Some(op) = item.get(method.to_ascii_lowercase()) {
            return op;
        }
    }
    panic!("{method} {path} is not in the document");
}

fn resolve<'a>(doc: &'a Value, node: &'a Value) -> &'a Value {
    match node.get("$ref").and_then(Value::as_str) {
        Some(reference) => {
            let pointer = reference.strip_prefix('#').expect("local references only");
            resolve(doc, doc.pointer(pointer).expect("the reference resolves"))
        }
        None => node,
    }
}

fn request_schema<'a>(doc: &'a Value, op: &'a Value) -> &'a Value {
    let body = resolve(doc, &op["requestBody"]);
    &body["content"]["application/json"]["schema"]
}

fn response_schema<'a>(doc: &'a Value, op: &'a Value, status: u16) -> &'a Value {
    let response = op["responses"]
        .get(status.to_string())
        .unwrap_or_else(|| panic!("status {status} is not documented for {op}"));
    &resolve(doc, response)["content"]["application/json"]["schema"]
}

fn type_name(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_i64() || n.is_u64() => "integer",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// Checks `value` against `schema`; the first violation, with where it is.
fn validate(doc: &Value, schema: &Value, value: &Value, at: &str) -> Result<(), String> {
    let schema = resolve(doc, schema);
    let map = schema.as_object().expect("a schema is an object");
    for keyword in map.keys() {
        assert!(
            [
                "type",
                "properties",
                "required",
                "additionalProperties",
                "enum",
                "minLength",
                "maxLength",
                "minimum",
                "maximum",
                "default",
                "format",
                "items",
                "oneOf",
                "description",
            ]
            .contains(&keyword.as_str()),
            "the validator does not know the keyword {keyword:?} (at {at})"
        );
    }
    if let Some(types) = map.get("type") {
        let allowed: Vec<&str> = match types {
            Value::String(t) => vec![t.as_str()],
            Value::Array(ts) => ts.iter().filter_map(Value::as_str).collect(),
            _ => panic!("bad type at {at}"),
        };
        let actual = type_name(value);
        let widened = actual == "integer" && allowed.contains(&"number");
        if !allowed.contains(&actual) && !widened {
            return Err(format!("{at}: expected {allowed:?}, got {actual}"));
        }
    }
    if let Some(Value::Array(options)) = map.get("enum")
        && !options.contains(value)
    {
        return Err(format!("{at}: {value} is not one of {options:?}"));
    }
    if let Some(Value::Array(options)) = map.get("oneOf") {
        let passing = options
            .iter()
            .filter(|o| validate(doc, o, value, at).is_ok())
            .count();
        if passing != 1 {
            return Err(format!(
                "{at}: {value} matches {passing} of oneOf, not exactly 1"
            ));
        }
    }
    if let Value::String(s) = value {
        let chars = s.chars().count() as u64;
        if map
            .get("minLength")
            .and_then(Value::as_u64)
            .is_some_and(|m| chars < m)
        {
            return Err(format!("{at}: shorter than minLength"));
        }
        if map
            .get("maxLength")
            .and_then(Value::as_u64)
            .is_some_and(|m| chars > m)
        {
            return Err(format!("{at}: longer than maxLength"));
        }
        let ok = match map.get("format").and_then(Value::as_str) {
            None => true,
            Some("date-time") => chrono::DateTime::parse_from_rfc3339(s).is_ok(),
            Some("date") => chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d").is_ok(),
            Some("uuid") => uuid::Uuid::parse_str(s).is_ok(),
            Some("minor-units") => !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()),
            Some("iso-4217") => Currency::parse(s).is_ok(),
            Some(other) => panic!("unknown format {other:?} at {at}"),
        };
        if !ok {
            return Err(format!("{at}: {s:?} is not a valid {}", map["format"]));
        }
    }
    if let Some(n) = value.as_f64() {
        if map
            .get("minimum")
            .and_then(Value::as_f64)
            .is_some_and(|m| n < m)
        {
            return Err(format!("{at}: below minimum"));
        }
        if map
            .get("maximum")
            .and_then(Value::as_f64)
            .is_some_and(|m| n > m)
        {
            return Err(format!("{at}: above maximum"));
        }
    }
    if let Value::Object(fields) = value {
        let properties = map.get("properties").and_then(Value::as_object);
        for required in map
            .get("required")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let name = required.as_str().unwrap();
            if !fields.contains_key(name) {
                return Err(format!("{at}: the required field {name:?} is missing"));
            }
        }
        for (name, field) in fields {
            match properties.and_then(|p| p.get(name)) {
                Some(property) => validate(doc, property, field, &format!("{at}.{name}"))?,
                None if map.get("additionalProperties") == Some(&Value::Bool(false)) => {
                    return Err(format!("{at}: the field {name:?} is not in the document"));
                }
                None => {}
            }
        }
    }
    if let (Value::Array(items), Some(schema)) = (value, map.get("items")) {
        for (i, item) in items.iter().enumerate() {
            validate(doc, schema, item, &format!("{at}[{i}]"))?;
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// The wallet document against the shipped adapter

async fn adapter_exchanges() -> WalletServer {
    let server = WalletServer::start(Fault::None).await;
    server.add("oa-paid", "SUCCESS", 1200, "JPY");
    let wallet = HttpWallet::new(HttpWalletConfig {
        base_url: server.url.clone(),
        token: Some("wallet-token".into()),
        timeout: Duration::from_secs(2),
    })
    .unwrap();
    let payment = wallet.payment("oa-paid").await.unwrap().unwrap();
    assert!(wallet.payment("oa-never-seen").await.unwrap().is_none());
    wallet.close("oa-never-seen").await.unwrap();
    wallet.close("oa-paid").await.unwrap();
    let order = RefundOrder {
        refund_id: uuid::Uuid::new_v4(),
        payment_request_id: "oa-paid".into(),
        payment_id: payment.payment_id.clone(),
        amount: Money::parse("1200", "JPY").unwrap(),
    };
    wallet.refund(&order).await.unwrap();
    wallet.refund(&order).await.unwrap();
    // An authorization: looked up, closed (ALREADY_AUTHORIZED), then released, twice with one
    // voidId as the engine's retry would; the test below validates each request against
    // voidAuthorization and each answer against VoidAnswer.
    server.add("oa-held", "AUTHORIZED", 500, "USD");
    let held = wallet.payment("oa-held").await.unwrap().unwrap();
    assert_eq!(held.status, PaymentStatus::Authorized);
    assert_eq!(
        wallet.close("oa-held").await.unwrap(),
        CloseOutcome::AlreadyAuthorized
    );
    let void = VoidOrder {
        void_id: uuid::Uuid::new_v4(),
        payment_request_id: "oa-held".into(),
        payment_id: held.payment_id,
        amount: Money::parse("500", "USD").unwrap(),
    };
    for _ in 0..2 {
        assert!(matches!(
            wallet.void(&void).await.unwrap(),
            VoidOutcome::Voided { reference: Some(_) }
        ));
    }
    server
}

#[tokio::test]
async fn the_adapter_sends_only_what_the_wallet_document_describes() {
    let doc = document("wallet.yaml");
    let server = adapter_exchanges().await;
    let seen = server.seen();
    assert!(seen.len() >= 10, "{seen:?}");
    // Every operation of the adapter is among the checked requests, the void included.
    for (method, path) in [
        ("GET", "/payments/oa-paid"),
        ("POST", "/payments/oa-never-seen/close"),
        ("POST", "/refunds"),
        ("GET", "/payments/oa-held"),
        ("POST", "/payments/oa-held/close"),
        ("POST", "/payments/oa-held/void"),
    ] {
        assert!(
            seen.iter().any(|s| s.method == method && s.path == path),
            "{method} {path} was not exercised: {seen:?}"
        );
    }
    let voids: Vec<_> = seen
        .iter()
        .filter(|s| s.path == "/payments/oa-held/void")
        .collect();
    assert_eq!(voids.len(), 2, "{voids:?}");
    assert_eq!(
        voids[0].body, voids[1].body,
        "a retry sends the same voidId and body"
    );
    assert_eq!(
        operation(&doc, "POST", "/payments/oa-held/void")["operationId"],
        "voidAuthorization"
    );
    for request in &seen {
        let op = operation(&doc, &request.method, &request.path);
        assert_eq!(
            request.authorization.as_deref(),
            Some("Bearer wallet-token")
        );
        match (&request.body, op.get("requestBody")) {
            (Some(body), Some(_)) => validate(&doc, request_schema(&doc, op), body, "body")
                .unwrap_or_else(|e| panic!("{} {}: {e}", request.method, request.path)),
            (None, None) => {}
            (body, expected) => panic!(
                "{} {}: body {body:?}, documented body {expected:?}",
                request.method, request.path
            ),
        }
    }
    // The server's answers are the document's too, so the adapter was tested on true answers.
    for (method, path, status, body) in server.answers() {
        let op = operation(&doc, &method, &path);
        validate(&doc, response_schema(&doc, op, status), &body, "answer")
            .unwrap_or_else(|e| panic!("{method} {path} -> {status}: {e}"));
    }
}

#[tokio::test]
async fn a_request_field_the_document_lacks_fails_the_check() {
    let doc = document("wallet.yaml");
    let server = adapter_exchanges().await;
    let refund = server
        .seen()
        .into_iter()
        .find(|s| s.path == "/refunds")
        .unwrap();
    let op = operation(&doc, "POST", "/refunds");
    let schema = request_schema(&doc, op);
    let body = refund.body.unwrap();
    assert_eq!(validate(&doc, schema, &body, "body"), Ok(()));

    let mut extra = body.clone();
    extra["note"] = json!("sent by a newer adapter");
    let error = validate(&doc, schema, &extra, "body").unwrap_err();
    assert!(error.contains("\"note\" is not in the document"), "{error}");

    let mut nested = body.clone();
    nested["amount"]["scale"] = json!(2);
    assert!(validate(&doc, schema, &nested, "body").is_err());

    let mut missing = body.clone();
    missing.as_object_mut().unwrap().remove("refundId");
    assert!(validate(&doc, schema, &missing, "body").is_err());

    let mut retyped = body;
    retyped["amount"]["value"] = json!(1200);
    assert!(validate(&doc, schema, &retyped, "body").is_err());
}

#[tokio::test]
async fn void_answers_of_a_contract_true_wallet_match_the_document() {
    let doc = document("wallet.yaml");
    let server = WalletServer::start(Fault::None).await;
    server.add("oa-held", "AUTHORIZED", 500, "USD");
    let body = json!({"voidId": uuid::Uuid::new_v4().to_string(), "paymentRequestId": "oa-held",
                      "paymentId": "wallet-oa-held", "amount": {"value": "500", "currency": "USD"},
                      "reason": "ALIPAY_PLUS_CANCEL"});
    let op = operation(&doc, "POST", "/payments/oa-held/void");
    validate(&doc, request_schema(&doc, op), &body, "body").unwrap();
    let answer: Value = reqwest::Client::new()
        .post(format!("{}/payments/oa-held/void", server.url))
        .json(&body)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    validate(&doc, response_schema(&doc, op, 200), &answer, "answer").unwrap();
    assert_eq!(answer["status"], "VOIDED");
}

// ---------------------------------------------------------------------------------------------
// The internal document against the running service

const TOKEN: &str = "openapi-test-internal-token-0123456789";

/// The service on free ports, the engine off, a wallet server that has never seen any id.
struct Running {
    public: String,
    internal: String,
    settings: Settings,
    pool: sqlx::PgPool,
    handle: mpp_cancel::app::ShutdownHandle,
    _wallet: WalletServer,
}

async fn running_service() -> Running {
    let (_url, pool) = common::fresh_database().await;
    let wallet_server = WalletServer::start(Fault::None).await;
    // Never seen by the wallet: accepted (S) on the day it arrives, awaiting its outcome.
    let wallet = HttpWallet::new(HttpWalletConfig {
        base_url: wallet_server.url.clone(),
        token: None,
        timeout: Duration::from_secs(2),
    })
    .unwrap();
    let mut settings = Settings::local_defaults();
    settings.server.listen = "127.0.0.1:0".into();
    settings.server.workers = 1;
    settings.internal.listen = "127.0.0.1:0".into();
    settings.internal.token = Some(Secret::new(TOKEN));
    settings.alipayplus.verify_signatures = false;
    // Answers are signed (as outside the try-out), so their headers are the document's.
    let key = mpp_cancel::protocol::keys::GeneratedKeyPair::generate_rsa_2048().unwrap();
    settings.alipayplus.private_key = Some(Secret::new(key.private_pem()));
    settings.refunds.workers = 0;
    let components = Components {
        store: Store::new(pool.clone()),
        wallet: Arc::new(wallet),
        clock: Arc::new(SystemClock),
    };
    let application = Application::build(&settings, &components).unwrap();
    let running = Running {
        public: format!("http://127.0.0.1:{}", application.port()),
        internal: format!("http://127.0.0.1:{}", application.internal_port()),
        handle: application.shutdown_handle(),
        settings,
        pool,
        _wallet: wallet_server,
    };
    tokio::spawn(application.run_until_stopped());
    running
}

impl Running {
    /// Alipay+ cancels `id` (S: the wallet has never seen it).
    async fn cancel(&self, id: &str) {
        let answer: Value = reqwest::Client::new()
            .post(format!("{}{}", self.public, self.settings.cancel_path()))
            .header("content-type", "application/json; charset=UTF-8")
            .body(
                json!({"acquirerId": common::ACQUIRER_ID, "pspId": self.settings.alipayplus.psp_id,
                       "paymentRequestId": id})
                .to_string(),
            )
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(answer["result"]["resultStatus"], "S", "{answer}");
    }
}

/// One call of the internal API and the status it must get.
struct Call {
    method: &'static str,
    target: String,
    body: Option<Vec<u8>>,
    status: u16,
}

fn call(method: &'static str, target: impl Into<String>, status: u16) -> Call {
    Call {
        method,
        target: target.into(),
        body: None,
        status,
    }
}

/// Sends `call` with the bearer token: the status, the Content-Type and the body as JSON.
async fn send(http: &reqwest::Client, base: &str, call: &Call) -> (u16, String, Value) {
    let method = reqwest::Method::from_bytes(call.method.as_bytes()).unwrap();
    let mut request = http
        .request(method, format!("{base}{}", call.target))
        .bearer_auth(TOKEN);
    if let Some(body) = &call.body {
        request = request
            .header("content-type", "application/json")
            .body(body.clone());
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    let content_type = response
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    let text = response.text().await.unwrap();
    let body = serde_json::from_str(&text).unwrap_or_else(|_| {
        panic!(
            "{} {} -> {status} ({content_type}): not JSON: {text:?}",
            call.method, call.target
        )
    });
    (status, content_type, body)
}

#[tokio::test]
async fn the_internal_api_answers_as_its_document_says() {
    let doc = document("internal.yaml");
    let service = running_service().await;
    let internal = &service.internal;
    service.cancel("oa-cancelled").await;
    // One row an operator has to look at: a nudge has nothing to do there, a requeue has.
    service.cancel("oa-review").await;
    sqlx::query(
        "UPDATE cancellations SET state = 'manual_review', next_attempt_at = NULL, last_error = 'test: wallet refused'
          WHERE payment_request_id = 'oa-review'",
    )
    .execute(&service.pool)
    .await
    .unwrap();
    let today = chrono::Utc::now()
        .with_timezone(&chrono_tz::Etc::GMTMinus8)
        .date_naive();
    let mut bulk_dry_run = call("POST", "/v1/cancellations/requeue", 200);
    bulk_dry_run.body = Some(br#"{"state":"manual_review","since":null,"dryRun":true}"#.to_vec());
    // Past the extractor's payload limit: refused by actix itself, answered in the API's shape.
    let mut bulk_too_large = call("POST", "/v1/cancellations/requeue", 413);
    bulk_too_large.body = Some(
        format!(
            r#"{{"state":"manual_review","pad":"{}"}}"#,
            "x".repeat(300 * 1024)
        )
        .into_bytes(),
    );

    let calls = [
        call("GET", "/healthz", 200),
        call("GET", "/readyz", 200),
        call("GET", "/v1/cancellations/oa-cancelled", 200),
        call("GET", "/v1/cancellations/oa-never", 404),
        call("GET", "/v1/cancellations?state=awaiting_outcome", 200),
        call("GET", "/v1/cancellations?state=bogus", 400),
        // An empty cursor is a string, as the document says: the first page.
        call(
            "GET",
            "/v1/cancellations?state=awaiting_outcome&cursor=",
            200,
        ),
        // Any integer from 1 is a limit; a page holds at most 1000 rows.
        call(
            "GET",
            "/v1/cancellations?state=awaiting_outcome&limit=99999999999999999999",
            200,
        ),
        // Refused by the query extractor, not the handler: the same JSON error.
        call(
            "GET",
            "/v1/cancellations?state=voided&limit=null&limit=null",
            400,
        ),
        call("GET", "/v1/cancellations?limit=5", 400),
        call("POST", "/v1/cancellations/oa-cancelled/nudge", 200),
        call("POST", "/v1/cancellations/oa-review/nudge", 200),
        call("POST", "/v1/cancellations/oa-never/nudge", 404),
        call("POST", "/v1/cancellations/oa-cancelled/requeue", 409),
        bulk_dry_run,
        bulk_too_large,
        call("POST", "/v1/cancellations/oa-review/requeue", 200),
        call("GET", format!("/v1/settlement-report?date={today}"), 200),
        call("GET", "/v1/settlement-report?date=yesterday", 400),
        call("GET", "/v1/settlement-report?date=null&date=null", 400),
        call("GET", "/v1/settlement-report", 400),
    ];
    let http = reqwest::Client::new();
    for call in &calls {
        let (method, target) = (call.method, &call.target);
        let (status, content_type, body) = send(&http, internal, call).await;
        assert_eq!(status, call.status, "{method} {target}: {body}");
        assert!(
            content_type.starts_with("application/json"),
            "{method} {target} -> {status}: {content_type}"
        );
        let path = target.split('?').next().unwrap();
        let op = operation(&doc, method, path);
        // What the service accepted, the document must accept too.
        if let (Some(sent), true) = (&call.body, status < 300) {
            let sent: Value = serde_json::from_slice(sent).unwrap();
            validate(&doc, request_schema(&doc, op), &sent, "body")
                .unwrap_or_else(|e| panic!("{method} {target}: the document refuses {sent}: {e}"));
        }
        validate(&doc, response_schema(&doc, op, status), &body, "answer")
            .unwrap_or_else(|e| panic!("{method} {target} -> {status}: {e}\n{body}"));
        if target.starts_with("/v1/settlement-report?date=2")
            || target.ends_with("state=awaiting_outcome")
        {
            let body = body.get("cancellations").unwrap_or(&body);
            assert_eq!(body[0]["paymentRequestId"], "oa-cancelled", "{body}");
        }
        if target == "/v1/cancellations/oa-review/nudge" {
            assert_eq!(
                (&body["nudged"], &body["action"], &body["state"]),
                (
                    &json!(false),
                    &json!("nothing_to_do"),
                    &json!("manual_review")
                )
            );
        }
        if status == 400 || status == 413 {
            assert!(
                body["error"].as_str().is_some_and(|e| !e.is_empty()),
                "{body}"
            );
        }
        // The query extractor's own refusal, said by the API (not actix's "Query deserialize
        // error", which the net under every /v1 route would otherwise pass on).
        if target.contains("=null&") || target.ends_with("?limit=5") {
            let error = body["error"].as_str().unwrap();
            assert!(error.starts_with("query string: "), "{target}: {body}");
        }
    }
    service.handle.stop().await;
}

/// The concrete path of a document path (its template filled with an id).
fn concrete(template: &str) -> String {
    template.replace("{paymentRequestId}", "oa-cancelled")
}

#[tokio::test]
async fn undeclared_methods_get_405_with_allow_and_unknown_paths_404_in_the_error_shape() {
    let doc = document("internal.yaml");
    let service = running_service().await;
    service.cancel("oa-cancelled").await;
    let http = reqwest::Client::new();
    let refusal = &resolve(&doc, &doc["components"]["responses"]["MethodNotAllowed"]);
    assert_eq!(refusal["headers"]["Allow"]["required"], true);
    let error_schema = &refusal["content"]["application/json"]["schema"];
    let mut refused = 0;
    for (template, item) in doc["paths"].as_object().unwrap() {
        let declared: std::collections::BTreeSet<String> = item
            .as_object()
            .unwrap()
            .keys()
            .map(|m| m.to_ascii_uppercase())
            .collect();
        for method in [
            "GET", "POST", "PUT", "DELETE", "PATCH", "TRACE", "OPTIONS", "HEAD",
        ] {
            if declared.contains(method) {
                continue;
            }
            let target = concrete(template);
            let request = http
                .request(
                    reqwest::Method::from_bytes(method.as_bytes()).unwrap(),
                    format!("{}{target}", service.internal),
                )
                .bearer_auth(TOKEN);
            let response = request.send().await.unwrap();
            let status = response.status().as_u16();
            let allow: std::collections::BTreeSet<String> = response
                .headers()
                .get("allow")
                .unwrap_or_else(|| panic!("{method} {target} -> {status}: no Allow"))
                .to_str()
                .unwrap()
                .split(',')
                .map(|m| m.trim().to_owned())
                .collect();
            assert_eq!((status, &allow), (405, &declared), "{method} {target}");
            if method == "HEAD" {
                continue;
            }
            let body: Value = response.json().await.unwrap();
            validate(&doc, error_schema, &body, "answer")
                .unwrap_or_else(|e| panic!("{method} {target}: {e}\n{body}"));
            refused += 1;
        }
    }
    assert!(refused >= 40, "{refused}");

    let never = doc["paths"].as_object().unwrap();
    for target in [
        "/nowhere",
        "/v1/nowhere",
        "/v1/cancellations/oa-cancelled/void",
        "/healthz/x",
    ] {
        assert!(!never.contains_key(target));
        let (status, content_type, body) =
            send(&http, &service.internal, &call("GET", target, 404)).await;
        assert_eq!(status, 404, "{target}: {body}");
        assert!(
            content_type.starts_with("application/json"),
            "{target}: {content_type}"
        );
        validate(
            &doc,
            &doc["components"]["schemas"]["Error"],
            &body,
            "answer",
        )
        .unwrap_or_else(|e| panic!("{target}: {e}\n{body}"));
    }
    service.handle.stop().await;
}

// ---------------------------------------------------------------------------------------------
// The public document against the running service

#[tokio::test]
async fn every_public_answer_is_the_documents_signed_200_with_a_result() {
    let doc = document("cancel-payment.yaml");
    let service = running_service().await;
    let path = service.settings.cancel_path();
    let op = operation(&doc, "POST", &path);
    let answer = &op["responses"]["200"];
    assert_eq!(
        op["responses"].as_object().unwrap().len(),
        1,
        "HTTP 200 is the only status"
    );
    let psp = service.settings.alipayplus.psp_id.clone();
    let valid = |id: &str| {
        json!({"acquirerId": common::ACQUIRER_ID, "pspId": psp, "paymentRequestId": id}).to_string()
    };
    let json_type = "application/json; charset=UTF-8";
    let other_psp = json!({"acquirerId": common::ACQUIRER_ID, "pspId": "1022172000000000999",
                           "paymentRequestId": "oa-public-2"})
    .to_string();
    let cases = [
        (
            "POST",
            path.clone(),
            json_type,
            valid("oa-public-1"),
            "SUCCESS",
        ),
        (
            "POST",
            path.clone(),
            json_type,
            valid("oa-public-1"),
            "SUCCESS",
        ),
        ("POST", path.clone(), json_type, other_psp, "ACCESS_DENIED"),
        (
            "POST",
            path.clone(),
            json_type,
            "{not json".into(),
            "PARAM_ILLEGAL",
        ),
        (
            "POST",
            path.clone(),
            json_type,
            r#"{"pspId":5}"#.into(),
            "PARAM_ILLEGAL",
        ),
        (
            "POST",
            path.clone(),
            "text/plain",
            valid("oa-public-3"),
            "MEDIA_TYPE_NOT_ACCEPTABLE",
        ),
        (
            "GET",
            path.clone(),
            json_type,
            String::new(),
            "METHOD_NOT_SUPPORTED",
        ),
        (
            "TRACE",
            path.clone(),
            json_type,
            String::new(),
            "METHOD_NOT_SUPPORTED",
        ),
        (
            "POST",
            "/aps/api/v1/payments/pay".into(),
            json_type,
            valid("oa-public-4"),
            "INVALID_API",
        ),
    ];
    let http = reqwest::Client::new();
    for (method, target, content_type, body, code) in cases {
        let response = http
            .request(
                reqwest::Method::from_bytes(method.as_bytes()).unwrap(),
                format!("{}{target}", service.public),
            )
            .header("content-type", content_type)
            .body(body.clone())
            .send()
            .await
            .unwrap();
        let what = format!("{method} {target} {content_type} {body}");
        assert_eq!(response.status(), 200, "{what}");
        let headers = response.headers().clone();
        for (name, header) in answer["headers"].as_object().unwrap() {
            let header = resolve(&doc, header);
            assert_eq!(header["required"], true, "{name}");
            let value = headers
                .get(name.as_str())
                .unwrap_or_else(|| panic!("{what}: no {name}"));
            assert!(!value.is_empty(), "{what}: empty {name}");
        }
        let time = headers["response-time"].to_str().unwrap();
        assert!(
            time.ends_with("+08:00") && chrono::DateTime::parse_from_rfc3339(time).is_ok(),
            "{time}"
        );
        assert!(
            headers["signature"]
                .to_str()
                .unwrap()
                .starts_with("algorithm=RSA256,"),
            "{what}"
        );
        let media = headers["content-type"].to_str().unwrap();
        assert!(media.starts_with("application/json"), "{what}: {media}");
        let result: Value = response.json().await.unwrap();
        validate(&doc, response_schema(&doc, op, 200), &result, "answer")
            .unwrap_or_else(|e| panic!("{what}: {e}\n{result}"));
        assert_eq!(result["result"]["resultCode"], code, "{what}: {result}");
    }
    service.handle.stop().await;
}

//! Every bad input gets HTTP 200 and an `F` result with its code; nothing is stored and the
//! wallet is never asked.

use crate::support::app::{ACQUIRER_ID, CANCEL_PATH, PSP_ID, Reply, TestApp};
use crate::support::spawn_app;
use reqwest::Method;

async fn assert_refused(app: &TestApp, reply: Reply, code: &str, case: &str) {
    assert_eq!(reply.status, 200, "{case}");
    assert_eq!(
        reply.code(),
        code,
        "{case}: {}",
        String::from_utf8_lossy(&reply.body)
    );
    assert_eq!(reply.status_letter(), "F", "{case}");
    assert!(
        reply.json()["result"]["resultMessage"]
            .as_str()
            .is_some_and(|m| !m.is_empty()),
        "{case}: a message says why"
    );
    assert_eq!(
        app.db.count("SELECT count(*) FROM cancellations").await,
        0,
        "{case}"
    );
    assert_eq!(
        app.db.count("SELECT count(*) FROM audit_events").await,
        0,
        "{case}"
    );
    assert_eq!(
        app.wallet.lookup_count(),
        0,
        "{case}: the wallet is not asked"
    );
}

fn body_with(id: serde_json::Value) -> String {
    serde_json::json!({"acquirerId": ACQUIRER_ID, "pspId": PSP_ID, "paymentRequestId": id})
        .to_string()
}

#[tokio::test]
async fn malformed_bodies_are_param_illegal() {
    let app = spawn_app().await;
    let cases: Vec<(&str, String)> = vec![
        ("malformed JSON", r#"{"acquirerId": "#.into()),
        ("not an object", r#"["a","b","c"]"#.into()),
        ("empty body", String::new()),
        (
            "missing field",
            serde_json::json!({"acquirerId": ACQUIRER_ID, "pspId": PSP_ID}).to_string(),
        ),
        (
            "number instead of string",
            body_with(serde_json::json!(2020010123456789013u64)),
        ),
        ("null field", body_with(serde_json::Value::Null)),
        ("empty string", body_with(serde_json::json!(""))),
        (
            "65 characters",
            body_with(serde_json::json!("1".repeat(65))),
        ),
        (
            "oversized body",
            format!(r#"{{"padding":"{}"}}"#, "x".repeat(20_000)),
        ),
    ];
    for (case, body) in cases {
        let reply = app.post_json(CANCEL_PATH, body).await;
        assert_refused(&app, reply, "PARAM_ILLEGAL", case).await;
    }
}

#[tokio::test]
async fn control_characters_in_any_id_are_param_illegal() {
    // NUL used to reach PostgreSQL, fail the write and answer U on every retry, forever.
    let app = spawn_app().await;
    for bad in [
        "pay\u{0}1",
        "\u{0}",
        "pay\n1",
        "pay\t1",
        "pay\u{7f}",
        "pay\u{9b}1",
    ] {
        for field in ["acquirerId", "pspId", "paymentRequestId"] {
            let mut body = serde_json::json!({"acquirerId": ACQUIRER_ID, "pspId": PSP_ID, "paymentRequestId": "ok-id"});
            body[field] = serde_json::json!(bad);
            let reply = app.post_json(CANCEL_PATH, body.to_string()).await;
            assert_refused(&app, reply, "PARAM_ILLEGAL", &format!("{field} {bad:?}")).await;
        }
    }
}

#[tokio::test]
async fn sixty_four_characters_are_fine() {
    let app = spawn_app().await;
    let reply = app
        .post_json(CANCEL_PATH, body_with(serde_json::json!("7".repeat(64))))
        .await;
    assert_eq!(reply.code(), "SUCCESS");
}

#[tokio::test]
async fn a_psp_id_that_is_not_ours_is_access_denied() {
    let app = spawn_app().await;
    let body = serde_json::json!({
        "acquirerId": ACQUIRER_ID, "pspId": "1022172000000000999", "paymentRequestId": "x1"
    });
    let reply = app.post_json(CANCEL_PATH, body.to_string()).await;
    assert_refused(&app, reply, "ACCESS_DENIED", "wrong pspId").await;
}

#[tokio::test]
async fn envelope_errors_get_their_codes() {
    let app = spawn_app().await;
    let valid = body_with(serde_json::json!("env-1"));
    for method in [Method::GET, Method::PUT, Method::DELETE, Method::PATCH] {
        let reply = app
            .send(
                method.clone(),
                CANCEL_PATH,
                Some("application/json"),
                valid.clone(),
            )
            .await;
        assert_refused(&app, reply, "METHOD_NOT_SUPPORTED", method.as_str()).await;
    }
    for content_type in [
        Some("text/plain"),
        Some("application/x-www-form-urlencoded"),
        None,
    ] {
        let reply = app
            .send(Method::POST, CANCEL_PATH, content_type, valid.clone())
            .await;
        assert_refused(
            &app,
            reply,
            "MEDIA_TYPE_NOT_ACCEPTABLE",
            &format!("{content_type:?}"),
        )
        .await;
    }
    for path in [
        "/aps/api/v1/payments/refund",
        "/aps/api/v1/payments/cancelPayment/extra",
        "/aps/api/",
        "/elsewhere",
    ] {
        let reply = app.post_json(path, valid.clone()).await;
        assert_refused(&app, reply, "INVALID_API", path).await;
    }
}

#[tokio::test]
async fn content_type_parameters_and_case_are_accepted() {
    let app = spawn_app().await;
    let reply = app
        .send(
            Method::POST,
            CANCEL_PATH,
            Some("Application/JSON;charset=utf-8"),
            body_with(serde_json::json!("ct-1")),
        )
        .await;
    assert_eq!(reply.code(), "SUCCESS");
}

#[tokio::test]
async fn unknown_fields_are_ignored() {
    let app = spawn_app().await;
    let body = serde_json::json!({
        "acquirerId": ACQUIRER_ID, "pspId": PSP_ID, "paymentRequestId": "extra-fields",
        "paymentId": "20190608114010800100188820200350000", "future": {"nested": [1, 2]}
    });
    let reply = app.post_json(CANCEL_PATH, body.to_string()).await;
    assert_eq!(reply.code(), "SUCCESS");
}

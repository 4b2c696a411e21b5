//! The internal listener: the guard API over HTTP and the operator's levers, with writes behind
//! the bearer token.

use crate::support::app::{INTERNAL_TOKEN, TestApp};
use crate::support::{at, spawn_app};
use mpp_cancel::domain::PaymentStatus;

async fn get(app: &TestApp, path: &str) -> (u16, String) {
    let response = app
        .http
        .get(format!("{}{path}", app.internal_address))
        .send()
        .await
        .unwrap();
    (response.status().as_u16(), response.text().await.unwrap())
}

async fn post(app: &TestApp, path: &str, token: Option<&str>) -> (u16, serde_json::Value) {
    let mut request = app.http.post(format!("{}{path}", app.internal_address));
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap())
}

#[tokio::test]
async fn the_guard_answers_over_http() {
    let app = spawn_app().await;
    app.wallet.add(
        "guarded",
        PaymentStatus::Success,
        100,
        "JPY",
        app.clock_now(),
    );
    app.cancel("guarded").await;

    let (status, body) = get(&app, "/v1/cancellations/guarded").await;
    let body: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(status, 200);
    assert_eq!(body["cancelled"], true);
    assert_eq!(body["cancellation"]["state"], "refund_pending");
    assert_eq!(body["cancellation"]["attempts"], 0);
    // One casing across the internal API (camelCase, like the settlement report).
    assert_eq!(body["cancellation"]["paymentRequestId"], "guarded");
    assert_eq!(body["cancellation"]["refundStatus"], "queued");
    assert!(body["cancellation"].get("acquirer_id").is_none());

    let (status, body) = get(&app, "/v1/cancellations/never-cancelled").await;
    assert_eq!(status, 404);
    assert!(body.contains(r#""cancelled":false"#));
    assert_eq!(get(&app, "/healthz").await.0, 200);
}

#[tokio::test]
async fn writes_need_the_bearer_token() {
    let app = spawn_app().await;
    app.cancel("unknown-pay").await; // awaiting_outcome: has work

    assert_eq!(
        post(&app, "/v1/cancellations/unknown-pay/nudge", None)
            .await
            .0,
        401
    );
    assert_eq!(
        post(&app, "/v1/cancellations/unknown-pay/nudge", Some("wrong"))
            .await
            .0,
        401
    );
    let (status, body) = post(
        &app,
        "/v1/cancellations/unknown-pay/nudge",
        Some(INTERNAL_TOKEN),
    )
    .await;
    assert_eq!((status, body["nudged"].as_bool()), (200, Some(true)));
    let (status, _) = post(
        &app,
        "/v1/cancellations/unknown-pay/requeue",
        Some(INTERNAL_TOKEN),
    )
    .await;
    assert_eq!(status, 409, "not in manual_review");
}

#[tokio::test]
async fn manual_review_rows_are_listed_and_requeued() {
    let app = spawn_app().await;
    app.wallet
        .add("stuck", PaymentStatus::Success, 100, "JPY", app.clock_now());
    app.cancel("stuck").await;
    sqlx::query(
        "UPDATE cancellations SET state = 'manual_review', next_attempt_at = NULL, last_error = 'x' WHERE payment_request_id = 'stuck'",
    )
    .execute(&app.db.pool)
    .await
    .unwrap();

    let (status, body) = get(&app, "/v1/cancellations?state=manual_review").await;
    let body: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(status, 200);
    assert_eq!(body["cancellations"][0]["paymentRequestId"], "stuck");
    assert_eq!(get(&app, "/v1/cancellations?state=bogus").await.0, 400);

    let (status, body) = post(
        &app,
        "/v1/cancellations/stuck/requeue",
        Some(INTERNAL_TOKEN),
    )
    .await;
    assert_eq!(
        (status, body["state"].as_str()),
        (200, Some("refund_pending"))
    );
    assert_eq!(
        app.db.state_of("stuck").await.as_deref(),
        Some("refund_pending")
    );
    let trail = app.db.store().audit_trail("stuck").await.unwrap();
    assert_eq!(trail.last().unwrap().0, "requeued");
}

#[tokio::test]
async fn the_settlement_report_lists_the_day_in_csv_and_json() {
    let app = spawn_app().await; // now: 2026-11-20 12:00 UTC+8
    app.wallet
        .add("day-1", PaymentStatus::Success, 100, "JPY", app.clock_now());
    let mut refunded = app.wallet.add(
        "day-1-refused",
        PaymentStatus::Success,
        100,
        "JPY",
        app.clock_now(),
    );
    refunded.refunded_minor_units = 100;
    app.wallet.put(refunded);
    app.wallet.add(
        "day-0",
        PaymentStatus::Success,
        100,
        "JPY",
        at("2026-11-19T23:59:00+08:00"),
    );
    app.cancel("day-1").await;
    assert_eq!(app.cancel("day-1-refused").await.code(), "PROCESS_FAIL");
    app.clock.set(at("2026-11-20T00:10:00+08:00"));
    assert_eq!(app.cancel("day-0").await.code(), "SUCCESS");

    let (status, csv) = get(&app, "/v1/settlement-report?date=2026-11-20&format=csv").await;
    assert_eq!(status, 200);
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(
        lines.len(),
        2,
        "the header and day-1, not the refused one: {csv}"
    );
    assert!(lines[0].starts_with("paymentRequestId,"));
    assert!(lines[1].starts_with("day-1,wallet-day-1,"));

    let (_, json) = get(&app, "/v1/settlement-report?date=2026-11-19").await;
    let json: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(json.as_array().unwrap().len(), 1);
    assert_eq!(json[0]["paymentRequestId"], "day-0");
    assert_eq!(
        get(&app, "/v1/settlement-report?date=20261120").await.0,
        400
    );
}

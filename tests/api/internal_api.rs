//! The internal listener: the guard API over HTTP and the operator's levers, every `/v1` route
//! behind the bearer token.

use crate::support::app::{INTERNAL_TOKEN, TestApp, spawn_app_with};
use crate::support::{TestOptions, at, spawn_app};
use mpp_cancel::domain::PaymentStatus;
use serde_json::{Value, json};

/// A GET with the bearer token.
async fn get(app: &TestApp, path: &str) -> (u16, String) {
    get_as(app, path, Some(INTERNAL_TOKEN)).await
}

async fn get_as(app: &TestApp, path: &str, token: Option<&str>) -> (u16, String) {
    let mut request = app.http.get(format!("{}{path}", app.internal_address));
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    let response = request.send().await.unwrap();
    (response.status().as_u16(), response.text().await.unwrap())
}

async fn post_json(app: &TestApp, path: &str, token: Option<&str>, body: Value) -> (u16, Value) {
    let mut request = app
        .http
        .post(format!("{}{path}", app.internal_address))
        .json(&body);
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap())
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

#[tokio::test]
async fn every_v1_route_needs_the_bearer_token_reads_included() {
    let app = spawn_app().await;
    app.wallet.add(
        "secret-1",
        PaymentStatus::Success,
        100,
        "JPY",
        app.clock_now(),
    );
    app.cancel("secret-1").await;
    let reads = [
        "/v1/cancellations/secret-1",
        "/v1/cancellations?state=refund_pending",
        "/v1/settlement-report?date=2026-11-20",
        "/v1/settlement-report?date=2026-11-20&format=csv",
    ];
    for path in reads {
        for token in [None, Some("wrong"), Some(""), Some(&INTERNAL_TOKEN[1..])] {
            let (status, body) = get_as(&app, path, token).await;
            assert_eq!(status, 401, "{path} with {token:?}");
            assert!(!body.contains("secret-1"), "{path}: nothing leaks: {body}");
        }
        assert_eq!(get(&app, path).await.0, 200, "{path} with the token");
    }
    let (status, _) = post_json(
        &app,
        "/v1/cancellations/requeue",
        None,
        json!({"state": "manual_review"}),
    )
    .await;
    assert_eq!(status, 401);
    for open in ["/healthz", "/readyz", "/metrics"] {
        assert_eq!(get_as(&app, open, None).await.0, 200, "{open} stays open");
    }
}

#[tokio::test]
async fn an_empty_configured_token_is_no_token() {
    let app = spawn_app_with(TestOptions {
        configure: |s| s.internal.token = Some(mpp_cancel::config::Secret::new("")),
        ..Default::default()
    })
    .await;
    app.cancel("empty-token").await;
    for path in [
        "/v1/cancellations/empty-token",
        "/v1/cancellations?state=awaiting_outcome",
    ] {
        // `Authorization: Bearer ` (empty) must not match an empty token.
        let (status, body) = get_as(&app, path, Some("")).await;
        assert_eq!(status, 403, "{path}: {body}");
        assert_eq!(get_as(&app, path, None).await.0, 403, "{path}");
    }
    let response = app
        .http
        .post(format!(
            "{}/v1/cancellations/empty-token/nudge",
            app.internal_address
        ))
        .header("Authorization", "Bearer ")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 403);
    assert_eq!(get_as(&app, "/healthz", None).await.0, 200);
}

/// `count` manual_review rows `lst-00001`.. requested a second apart, plus rows in other states.
async fn seed_listing(app: &TestApp, count: i32) {
    sqlx::query(
        "INSERT INTO cancellations (payment_request_id, acquirer_id, psp_id, state, result_code,
                                    result_status, response_body, settlement_date, requested_at,
                                    updated_at)
         SELECT 'lst-' || lpad(i::text, 5, '0'), 'a', 'p',
                CASE WHEN i <= $1 THEN 'manual_review' ELSE 'rejected' END,
                'SUCCESS', 'S', convert_to('{}', 'UTF8'), '2026-11-20',
                timestamptz '2026-11-20 04:00:00+00' + i * interval '1 second', now()
           FROM generate_series(1, $1 + 20) i",
    )
    .bind(count)
    .execute(&app.db.pool)
    .await
    .unwrap();
}

async fn page(app: &TestApp, query: &str) -> (Vec<String>, Option<String>) {
    let (status, body) = get(app, &format!("/v1/cancellations?{query}")).await;
    assert_eq!(status, 200, "{body}");
    let body: Value = serde_json::from_str(&body).unwrap();
    let ids = body["cancellations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["paymentRequestId"].as_str().unwrap().to_owned())
        .collect();
    (ids, body["nextCursor"].as_str().map(str::to_owned))
}

#[tokio::test]
async fn listing_is_capped_and_paged_with_a_cursor() {
    let app = spawn_app().await;
    seed_listing(&app, 1005).await;

    // A limit over the cap is cut to 1000; the cursor leads to the rest, each row once.
    let (first, cursor) = page(&app, "state=manual_review&limit=5000").await;
    assert_eq!(first.len(), 1000);
    let cursor = cursor.expect("more rows: a nextCursor");
    let (rest, end) = page(
        &app,
        &format!("state=manual_review&limit=5000&cursor={cursor}"),
    )
    .await;
    assert_eq!(rest.len(), 5);
    assert_eq!(end, None, "the last page has no nextCursor");
    let all: Vec<String> = first.into_iter().chain(rest).collect();
    let expected: Vec<String> = (1..=1005).map(|i| format!("lst-{i:05}")).collect();
    assert_eq!(
        all, expected,
        "oldest request first, no row twice or missing"
    );

    // Default page: 100. Small pages walk the same order.
    assert_eq!(page(&app, "state=manual_review").await.0.len(), 100);
    let (two, cursor) = page(&app, "state=manual_review&limit=2").await;
    assert_eq!(two, ["lst-00001", "lst-00002"]);
    let (next, _) = page(
        &app,
        &format!("state=manual_review&limit=2&cursor={}", cursor.unwrap()),
    )
    .await;
    assert_eq!(next, ["lst-00003", "lst-00004"]);

    for bad in [
        "state=manual_review&limit=0",
        "state=manual_review&limit=-5",
        "state=manual_review&cursor=not-a-cursor",
        "state=manual_review&cursor=AAAA",
    ] {
        assert_eq!(
            get(&app, &format!("/v1/cancellations?{bad}")).await.0,
            400,
            "{bad}"
        );
    }
}

#[tokio::test]
async fn listing_a_state_is_one_index_range_scan() {
    let app = spawn_app().await;
    seed_listing(&app, 5000).await;
    sqlx::query("ANALYZE cancellations")
        .execute(&app.db.pool)
        .await
        .unwrap();
    // The statement Store::in_state runs, on a page in the middle of the state.
    let plan: Vec<String> = sqlx::query_scalar(
        "EXPLAIN SELECT c.payment_request_id, c.acquirer_id, c.psp_id, c.state, c.result_code,
                        c.result_status, c.payment_id, c.payment_status, c.amount_value, c.currency,
                        c.payment_created_at, c.settlement_date, c.requested_at, c.updated_at,
                        c.attempts, c.next_attempt_at, c.last_error, r.refund_id, r.status
                   FROM cancellations c
                   LEFT JOIN refunds r ON r.payment_request_id = c.payment_request_id
                  WHERE c.state = 'manual_review'
                    AND (c.requested_at, c.payment_request_id)
                        > (timestamptz '2026-11-20 04:40:00+00', 'lst-02400')
                  ORDER BY c.requested_at, c.payment_request_id
                  LIMIT 101",
    )
    .fetch_all(&app.db.pool)
    .await
    .unwrap();
    let plan = plan.join("\n");
    assert!(
        plan.contains("Index Scan using cancellations_by_state"),
        "{plan}"
    );
    assert!(
        plan.contains("Index Cond"),
        "the cursor is an index condition: {plan}"
    );
    assert!(!plan.contains("Sort"), "no sort: {plan}");
}

/// A cancellation of a SUCCESS payment, then sent to manual_review at `updated_at`.
async fn in_manual_review(app: &TestApp, id: &str, updated_at: &str) {
    app.wallet
        .add(id, PaymentStatus::Success, 100, "JPY", app.clock_now());
    assert_eq!(app.cancel(id).await.code(), "SUCCESS");
    sqlx::query(
        "UPDATE cancellations SET state = 'manual_review', next_attempt_at = NULL,
                last_error = 'wallet down', updated_at = $2::timestamptz
          WHERE payment_request_id = $1",
    )
    .bind(id)
    .bind(updated_at)
    .execute(&app.db.pool)
    .await
    .unwrap();
    sqlx::query("UPDATE refunds SET status = 'failed' WHERE payment_request_id = $1")
        .bind(id)
        .execute(&app.db.pool)
        .await
        .unwrap();
}

#[tokio::test]
async fn manual_review_is_requeued_in_bulk_with_a_dry_run_first() {
    let app = spawn_app().await; // now: 2026-11-20 12:00 UTC+8
    in_manual_review(&app, "outage-1", "2026-11-20T11:10:00+08:00").await;
    in_manual_review(&app, "outage-2", "2026-11-20T11:20:00+08:00").await;
    in_manual_review(&app, "before-outage", "2026-11-20T09:00:00+08:00").await;
    let since = "2026-11-20T11:00:00+08:00";

    let (status, dry) = post_json(
        &app,
        "/v1/cancellations/requeue",
        Some(INTERNAL_TOKEN),
        json!({"state": "manual_review", "since": since, "dryRun": true}),
    )
    .await;
    assert_eq!(status, 200, "{dry}");
    assert_eq!(dry["count"], 2);
    assert_eq!(dry["paymentRequestIds"], json!(["outage-1", "outage-2"]));
    assert_eq!(
        app.db.state_of("outage-1").await.as_deref(),
        Some("manual_review"),
        "a dry run changes nothing"
    );

    let (status, done) = post_json(
        &app,
        "/v1/cancellations/requeue",
        Some(INTERNAL_TOKEN),
        json!({"state": "manual_review", "since": since}),
    )
    .await;
    assert_eq!((status, done["count"].as_u64()), (200, Some(2)), "{done}");
    for id in ["outage-1", "outage-2"] {
        assert_eq!(app.db.state_of(id).await.as_deref(), Some("refund_pending"));
        let trail = app.db.store().audit_trail(id).await.unwrap();
        let (event, from, to, detail) = trail.last().unwrap();
        assert_eq!(
            (event.as_str(), from.as_deref(), to.as_deref()),
            ("requeued", Some("manual_review"), Some("refund_pending"))
        );
        assert_eq!(detail["bulk"], true);
    }
    let queued: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM refunds WHERE status = 'queued'
            AND payment_request_id IN ('outage-1', 'outage-2')",
    )
    .fetch_one(&app.db.pool)
    .await
    .unwrap();
    assert_eq!(queued, 2, "their refunds are queued again");
    assert_eq!(
        app.db.state_of("before-outage").await.as_deref(),
        Some("manual_review"),
        "before --since: left alone"
    );

    // Without since: the rest. Again: nothing left.
    let (_, done) = post_json(
        &app,
        "/v1/cancellations/requeue",
        Some(INTERNAL_TOKEN),
        json!({"state": "manual_review"}),
    )
    .await;
    assert_eq!(done["count"], 1);
    let (_, done) = post_json(
        &app,
        "/v1/cancellations/requeue",
        Some(INTERNAL_TOKEN),
        json!({"state": "manual_review"}),
    )
    .await;
    assert_eq!(done["count"], 0);

    for bad in [
        json!({"state": "refunded"}),
        json!({"state": "bogus"}),
        json!({"state": "manual_review", "since": "yesterday"}),
        json!({"state": "manual_review", "dry_run": true}),
        json!({}),
    ] {
        let (status, _) = post_json(
            &app,
            "/v1/cancellations/requeue",
            Some(INTERNAL_TOKEN),
            bad.clone(),
        )
        .await;
        assert_eq!(status, 400, "{bad}");
    }
}

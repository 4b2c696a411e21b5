//! Settlement day T (DESIGN.md, "Settlement"; issue 18 point 4): the report read on T+1 lists
//! every cancellation that may belong to T, a T learnt from the wallet never moves, and a payment
//! unknown at the decision has its window judged again by its true T when it turns up.

use crate::engine::engine_for as engine;
use crate::support::app::{INTERNAL_TOKEN, TestApp, spawn_app_with};
use crate::support::{TestOptions, at};
use mpp_cancel::domain::PaymentStatus;

async fn app_at(now: &str) -> TestApp {
    spawn_app_with(TestOptions {
        now: at(now),
        ..Default::default()
    })
    .await
}

/// The report of `day` through the internal API: (CSV text, JSON lines).
async fn report(app: &TestApp, day: &str) -> (String, Vec<serde_json::Value>) {
    let get = |format: &'static str| {
        app.http
            .get(format!(
                "{}/v1/settlement-report?date={day}&format={format}",
                app.internal_address
            ))
            .bearer_auth(INTERNAL_TOKEN)
            .send()
    };
    let csv = get("csv").await.unwrap().text().await.unwrap();
    let json: serde_json::Value = get("json").await.unwrap().json().await.unwrap();
    (csv, json.as_array().unwrap().clone())
}

fn ids(lines: &[serde_json::Value]) -> Vec<(String, bool, String)> {
    lines
        .iter()
        .map(|l| {
            (
                l["paymentRequestId"].as_str().unwrap().to_owned(),
                l["provisional"].as_bool().unwrap(),
                l["settlementDate"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

#[tokio::test]
async fn an_undecided_cancellation_is_listed_provisional_under_every_day_it_may_belong_to() {
    // 00:10 UTC+8 on the 21st, before the cut-off: a payment the wallet does not know yet may
    // have been made on the 21st or on the 20th.
    let app = app_at("2026-11-21T00:10:00+08:00").await;
    assert_eq!(app.cancel("unknown-early").await.code(), "SUCCESS");
    app.wallet.add(
        "known",
        PaymentStatus::Success,
        100,
        "JPY",
        at("2026-11-20T23:00:00+08:00"),
    );
    assert_eq!(app.cancel("known").await.code(), "SUCCESS");
    // After the cut-off, an unknown payment can only be of the 21st.
    app.clock.set(at("2026-11-21T00:40:00+08:00"));
    assert_eq!(app.cancel("unknown-late").await.code(), "SUCCESS");

    let (csv, t) = report(&app, "2026-11-20").await;
    assert_eq!(
        ids(&t),
        vec![
            ("known".into(), false, "2026-11-20".into()),
            ("unknown-early".into(), true, "2026-11-20".into()),
        ],
        "read on T+1, the report of T holds the undecided one: {t:?}"
    );
    let header: Vec<&str> = csv.lines().next().unwrap().split(',').collect();
    assert_eq!(header.last(), Some(&"provisional"));
    let early = csv
        .lines()
        .find(|l| l.starts_with("unknown-early,"))
        .unwrap();
    assert!(
        early.ends_with(",2026-11-20,2026-11-20T16:10:00+00:00,true"),
        "{early}"
    );
    let known = csv.lines().find(|l| l.starts_with("known,")).unwrap();
    assert!(known.ends_with(",false"), "{known}");

    let (_, next) = report(&app, "2026-11-21").await;
    assert_eq!(
        ids(&next),
        vec![
            ("unknown-early".into(), true, "2026-11-21".into()),
            ("unknown-late".into(), true, "2026-11-21".into()),
        ]
    );
    assert!(report(&app, "2026-11-19").await.1.is_empty());

    // Once the wallet shows the payment, it is listed under its true T only, no longer
    // provisional.
    app.wallet.add(
        "unknown-early",
        PaymentStatus::Success,
        300,
        "JPY",
        at("2026-11-20T23:59:00+08:00"),
    );
    engine(&app).drain().await.unwrap();
    assert_eq!(
        app.db.state_of("unknown-early").await.as_deref(),
        Some("refunded")
    );
    let (_, t) = report(&app, "2026-11-20").await;
    assert_eq!(
        ids(&t),
        vec![
            ("known".into(), false, "2026-11-20".into()),
            ("unknown-early".into(), false, "2026-11-20".into()),
        ]
    );
    assert_eq!(
        ids(&report(&app, "2026-11-21").await.1),
        vec![("unknown-late".into(), true, "2026-11-21".into())]
    );
}

#[tokio::test]
async fn a_settlement_day_learnt_from_the_wallet_is_kept_and_a_lookup_that_moves_it_is_manual_review()
 {
    let app = app_at("2026-11-20T12:00:00+08:00").await;
    app.wallet.add(
        "moved",
        PaymentStatus::Processing,
        500,
        "JPY",
        at("2026-11-20T11:00:00+08:00"),
    );
    assert_eq!(app.cancel("moved").await.code(), "SUCCESS");
    // The payment succeeds after all, and the wallet now dates it a day later.
    app.wallet.add(
        "moved",
        PaymentStatus::Success,
        500,
        "JPY",
        at("2026-11-21T11:00:00+08:00"),
    );
    engine(&app).drain().await.unwrap();

    let record = app.db.store().cancellation("moved").await.unwrap().unwrap();
    assert_eq!(record.state, "manual_review");
    assert_eq!(record.settlement_date.to_string(), "2026-11-20", "T kept");
    assert_eq!(
        record.payment_created_at,
        Some(at("2026-11-20T11:00:00+08:00"))
    );
    let why = record.last_error.unwrap();
    assert!(
        why.contains("settlement day 2026-11-20 was learnt"),
        "{why}"
    );
    assert!(
        app.wallet.refund_calls().is_empty(),
        "a contradiction moves no money"
    );
    assert_eq!(
        ids(&report(&app, "2026-11-20").await.1),
        vec![("moved".into(), false, "2026-11-20".into())]
    );
}

#[tokio::test]
async fn a_payment_found_later_whose_window_had_closed_at_the_arrival_is_not_refunded() {
    // 00:40 UTC+8 on the 21st: the wallet does not know the payment, so it is judged on the
    // arrival's day and accepted.
    let app = app_at("2026-11-21T00:40:00+08:00").await;
    assert_eq!(app.cancel("too-late").await.code(), "SUCCESS");
    assert_eq!(app.cancel("in-time").await.code(), "SUCCESS");
    // Both turn out to exist: one made on the 20th (its window closed at 00:30, before the
    // cancel arrived), one made on the 21st at 00:35 (inside its window).
    app.wallet.add(
        "too-late",
        PaymentStatus::Success,
        700,
        "JPY",
        at("2026-11-20T22:00:00+08:00"),
    );
    app.wallet.add(
        "in-time",
        PaymentStatus::Success,
        800,
        "JPY",
        at("2026-11-21T00:35:00+08:00"),
    );
    engine(&app).drain().await.unwrap();

    let late = app
        .db
        .store()
        .cancellation("too-late")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(late.state, "manual_review");
    let why = late.last_error.unwrap();
    assert!(
        why.contains("closed at 2026-11-20T16:30:00+00:00")
            && why.contains("first arrived at 2026-11-20T16:40:00+00:00"),
        "the facts are given: {why}"
    );
    // Its true T is recorded, so the report and a person see it where it belongs.
    assert_eq!(late.settlement_date.to_string(), "2026-11-20");
    assert_eq!(
        app.db.state_of("in-time").await.as_deref(),
        Some("refunded")
    );
    let refunds = app.wallet.refund_calls();
    assert_eq!(
        refunds.len(),
        1,
        "only the payment inside its window: {refunds:?}"
    );
    assert_eq!(refunds[0].payment_request_id, "in-time");

    // A person who decides to reverse it anyway requeues it.
    assert!(
        app.db
            .store()
            .requeue("too-late", "test")
            .await
            .unwrap()
            .is_some()
    );
    engine(&app).drain().await.unwrap();
    assert_eq!(
        app.db.state_of("too-late").await.as_deref(),
        Some("refunded")
    );
}

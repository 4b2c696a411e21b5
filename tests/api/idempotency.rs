//! The same paymentRequestId always gets the same answer, and at most one refund, however many
//! requests arrive, on however many instances.

use crate::support::app::{ACQUIRER_ID, CANCEL_PATH, PSP_ID};
use crate::support::{at, spawn_app};
use futures_util::future::join_all;
use mpp_cancel::domain::PaymentStatus;
use std::time::Duration;

#[tokio::test]
async fn a_replay_is_the_stored_answer_byte_for_byte_without_asking_the_wallet() {
    let app = spawn_app().await;
    app.wallet.add(
        "replayed",
        PaymentStatus::Success,
        900,
        "PHP",
        app.clock_now(),
    );

    let first = app.cancel("replayed").await;
    let lookups = app.wallet.lookup_count();
    let second = app.cancel("replayed").await;

    assert_eq!(first.code(), "SUCCESS");
    assert_eq!(second, first);
    assert_eq!(
        app.wallet.lookup_count(),
        lookups,
        "a replay never reaches the wallet"
    );
    assert_eq!(app.db.count("SELECT count(*) FROM refunds").await, 1);
    assert_eq!(app.db.count("SELECT count(*) FROM audit_events").await, 1);
}

#[tokio::test]
async fn a_replay_after_the_window_closed_still_gets_success() {
    let app = spawn_app().await;
    app.wallet.add(
        "late-replay",
        PaymentStatus::Success,
        900,
        "KRW",
        app.clock_now(),
    );
    let first = app.cancel("late-replay").await;

    app.clock.advance(chrono::Duration::days(400));
    let again = app.cancel("late-replay").await;

    assert_eq!(first.code(), "SUCCESS");
    assert_eq!(again.body, first.body);
}

#[tokio::test]
async fn a_refused_cancel_is_replayed_as_refused_even_if_the_payment_changes() {
    let app = spawn_app().await;
    let old = at("2026-11-18T12:00:00+08:00");
    app.wallet
        .add("refused", PaymentStatus::Success, 900, "KRW", old);
    let first = app.cancel("refused").await;
    // The wallet's view changes; the answer must not.
    app.wallet.add(
        "refused",
        PaymentStatus::Success,
        900,
        "KRW",
        app.clock_now(),
    );

    let again = app.cancel("refused").await;

    assert_eq!(first.code(), "CANCEL_WINDOW_EXCEED");
    assert_eq!(again.body, first.body);
    assert_eq!(app.db.count("SELECT count(*) FROM refunds").await, 0);
}

#[tokio::test]
async fn the_answer_survives_a_restart() {
    let app = spawn_app().await;
    app.wallet.add(
        "restart",
        PaymentStatus::Success,
        900,
        "SGD",
        app.clock_now(),
    );
    let first = app.cancel("restart").await;
    app.stop().await;

    let restarted = app.another_instance();
    let again = restarted.cancel("restart").await;

    assert_eq!(again, first);
}

#[tokio::test]
async fn a_replay_with_other_ids_is_refused_and_leaves_the_record_alone() {
    let app = spawn_app().await;
    app.wallet.add(
        "mismatch",
        PaymentStatus::Success,
        900,
        "MYR",
        app.clock_now(),
    );
    let first = app.cancel("mismatch").await;
    let before: Vec<u8> = sqlx::query_scalar(
        "SELECT response_body FROM cancellations WHERE payment_request_id = 'mismatch'",
    )
    .fetch_one(&app.db.pool)
    .await
    .unwrap();

    let other_acquirer = serde_json::json!({
        "acquirerId": "1022188000000000999", "pspId": PSP_ID, "paymentRequestId": "mismatch"
    });
    let reply = app.post_json(CANCEL_PATH, other_acquirer.to_string()).await;

    assert_eq!((reply.status, reply.code()), (200, "PARAM_ILLEGAL".into()));
    assert_eq!(before, first.body);
    assert_eq!(
        app.cancel("mismatch").await,
        first,
        "the original request still replays"
    );
    assert_eq!(app.db.count("SELECT count(*) FROM audit_events").await, 1);
}

#[tokio::test]
async fn fifty_concurrent_duplicates_get_one_answer_and_one_refund() {
    let app = spawn_app().await;
    app.wallet
        .add("storm", PaymentStatus::Success, 777, "THB", app.clock_now());
    // Slow lookups so the requests really overlap inside the decision.
    app.wallet.delay_lookups(Duration::from_millis(50));

    let replies = join_all((0..50).map(|_| app.cancel("storm"))).await;

    assert!(replies.iter().all(|r| r.status == 200));
    assert!(
        replies.iter().all(|r| r.body == replies[0].body),
        "identical bodies"
    );
    assert_eq!(replies[0].code(), "SUCCESS");
    assert_eq!(app.db.count("SELECT count(*) FROM refunds").await, 1);
    assert_eq!(app.db.count("SELECT count(*) FROM cancellations").await, 1);
    assert_eq!(app.db.count("SELECT count(*) FROM audit_events").await, 1);
}

#[tokio::test]
async fn duplicates_across_two_instances_get_one_answer_and_one_refund() {
    let first = spawn_app().await;
    let second = first.another_instance();
    first.wallet.add(
        "two-nodes",
        PaymentStatus::Success,
        777,
        "THB",
        first.clock_now(),
    );
    first.wallet.delay_lookups(Duration::from_millis(50));

    let replies = join_all((0..50).map(|i| {
        let app = if i % 2 == 0 { &first } else { &second };
        app.cancel("two-nodes")
    }))
    .await;

    assert!(
        replies
            .iter()
            .all(|r| r.status == 200 && r.body == replies[0].body)
    );
    assert_eq!(replies[0].code(), "SUCCESS");
    assert_eq!(first.db.count("SELECT count(*) FROM refunds").await, 1);
    assert_eq!(
        first.db.count("SELECT count(*) FROM cancellations").await,
        1
    );
}

#[tokio::test]
async fn a_wallet_failure_answers_unknown_stores_nothing_and_the_retry_is_processed() {
    let app = spawn_app().await;
    app.wallet
        .add("flaky", PaymentStatus::Success, 300, "EUR", app.clock_now());
    app.wallet.fail_next_lookups(1);

    let failed = app.cancel("flaky").await;

    assert_eq!(
        (failed.status, failed.code()),
        (200, "UNKNOWN_EXCEPTION".into())
    );
    assert_eq!(failed.status_letter(), "U");
    assert_eq!(app.db.count("SELECT count(*) FROM cancellations").await, 0);

    let retried = app.cancel("flaky").await;
    assert_eq!(retried.code(), "SUCCESS");
    assert_eq!(app.db.count("SELECT count(*) FROM refunds").await, 1);
}

#[tokio::test]
async fn a_wallet_slower_than_the_lookup_timeout_answers_unknown() {
    let app = spawn_app().await; // lookup timeout: 1 s
    app.wallet
        .add("slow", PaymentStatus::Success, 300, "EUR", app.clock_now());
    app.wallet.delay_lookups(Duration::from_millis(1500));

    let reply = app.cancel("slow").await;

    assert_eq!(reply.code(), "UNKNOWN_EXCEPTION");
    assert_eq!(app.db.count("SELECT count(*) FROM cancellations").await, 0);
}

#[tokio::test]
async fn the_acquirer_id_of_the_sample_is_accepted() {
    // The documented sample request, verbatim field order and ids.
    let app = spawn_app().await;
    let body = format!(
        r#"{{"acquirerId": "{ACQUIRER_ID}", "pspId":"{PSP_ID}", "paymentRequestId":"20200101234567890132"}}"#
    );
    let reply = app.post_json(CANCEL_PATH, body).await;
    assert_eq!(reply.code(), "SUCCESS");
}

//! The demo wallet kept in PostgreSQL behaves like a careful ledger.

use crate::support::at;
use crate::support::db::TestDb;
use mpp_cancel::domain::{Currency, Money, PaymentStatus};
use mpp_cancel::wallet::demo::{DemoWallet, NewDemoPayment};
use mpp_cancel::wallet::{
    CloseOutcome, RefundOrder, RefundOutcome, VoidOrder, VoidOutcome, Wallet,
};

fn payment(id: &str, status: PaymentStatus) -> NewDemoPayment {
    NewDemoPayment {
        payment_request_id: id.into(),
        status,
        amount: Money::new(2500, Currency::parse("HKD").unwrap()).unwrap(),
        created_at: at("2026-11-20T09:30:00+08:00"),
        refunded_minor_units: 0,
    }
}

#[tokio::test]
async fn payments_round_trip() {
    let db = TestDb::new().await;
    let wallet = DemoWallet::new(db.pool.clone());
    let payment_id = wallet
        .create_payment(&payment("demo-1", PaymentStatus::Success))
        .await
        .unwrap();

    let found = wallet.payment("demo-1").await.unwrap().unwrap();

    assert_eq!(found.payment_id, payment_id);
    assert_eq!(found.status, PaymentStatus::Success);
    assert_eq!(found.amount.to_string(), "2500 HKD");
    assert_eq!(found.created_at, at("2026-11-20T09:30:00+08:00"));
    assert_eq!(wallet.payment("demo-unknown").await.unwrap(), None);
}

#[tokio::test]
async fn closing_fails_a_processing_payment_and_reports_finished_ones() {
    let db = TestDb::new().await;
    let wallet = DemoWallet::new(db.pool.clone());
    wallet
        .create_payment(&payment("p", PaymentStatus::Processing))
        .await
        .unwrap();
    wallet
        .create_payment(&payment("s", PaymentStatus::Success))
        .await
        .unwrap();
    wallet
        .create_payment(&payment("f", PaymentStatus::Failed))
        .await
        .unwrap();

    assert_eq!(wallet.close("p").await.unwrap(), CloseOutcome::Closed);
    assert_eq!(
        wallet.payment("p").await.unwrap().unwrap().status,
        PaymentStatus::Failed
    );
    assert_eq!(
        wallet.close("p").await.unwrap(),
        CloseOutcome::AlreadyFailed
    );
    assert_eq!(
        wallet.close("s").await.unwrap(),
        CloseOutcome::AlreadySucceeded
    );
    assert_eq!(
        wallet.close("f").await.unwrap(),
        CloseOutcome::AlreadyFailed
    );
}

#[tokio::test]
async fn a_refund_is_performed_once_per_refund_id() {
    let db = TestDb::new().await;
    let wallet = DemoWallet::new(db.pool.clone());
    let payment_id = wallet
        .create_payment(&payment("r", PaymentStatus::Success))
        .await
        .unwrap();
    let order = RefundOrder {
        refund_id: uuid::Uuid::new_v4(),
        payment_request_id: "r".into(),
        payment_id,
        amount: Money::new(2500, Currency::parse("HKD").unwrap()).unwrap(),
    };

    for _ in 0..3 {
        let outcome = wallet.refund(&order).await.unwrap();
        assert!(
            matches!(outcome, RefundOutcome::Succeeded { amount: Some(a), .. } if a == order.amount)
        );
    }

    assert_eq!(
        wallet.refunds_of("r").await.unwrap(),
        vec![(order.refund_id, 2500)]
    );
    assert_eq!(
        wallet
            .payment("r")
            .await
            .unwrap()
            .unwrap()
            .refunded_minor_units,
        2500
    );
}

fn void_order(id: &str, payment_id: &str) -> VoidOrder {
    VoidOrder {
        void_id: uuid::Uuid::new_v4(),
        payment_request_id: id.into(),
        payment_id: payment_id.into(),
        amount: Money::new(2500, Currency::parse("HKD").unwrap()).unwrap(),
    }
}

#[tokio::test]
async fn an_authorization_is_released_once_per_void_id_and_never_twice() {
    let db = TestDb::new().await;
    let wallet = DemoWallet::new(db.pool.clone());
    let payment_id = wallet
        .create_payment(&payment("held", PaymentStatus::Authorized))
        .await
        .unwrap();
    assert_eq!(
        wallet.payment("held").await.unwrap().unwrap().status,
        PaymentStatus::Authorized
    );
    assert_eq!(
        wallet.close("held").await.unwrap(),
        CloseOutcome::AlreadyAuthorized
    );
    let order = void_order("held", &payment_id);

    // The same order, eight times at once: one release, the same answer to every call.
    let answers = futures_util::future::join_all((0..8).map(|_| wallet.void(&order))).await;
    for answer in answers {
        assert!(
            matches!(answer.unwrap(), VoidOutcome::Voided { .. }),
            "a repeat of the void gets the same answer"
        );
    }
    assert_eq!(wallet.voids_of("held").await.unwrap(), [order.void_id]);
    // Released: lookups see a payment that took no money.
    assert_eq!(
        wallet.payment("held").await.unwrap().unwrap().status,
        PaymentStatus::Failed
    );
    // Another void id for the same hold is refused, not performed a second time.
    assert!(matches!(
        wallet.void(&void_order("held", &payment_id)).await.unwrap(),
        VoidOutcome::Failed { .. }
    ));
    assert_eq!(wallet.voids_of("held").await.unwrap().len(), 1);
    assert!(
        !wallet.capture("held").await.unwrap(),
        "a released hold cannot be captured"
    );
}

#[tokio::test]
async fn a_captured_authorization_answers_already_captured() {
    let db = TestDb::new().await;
    let wallet = DemoWallet::new(db.pool.clone());
    let payment_id = wallet
        .create_payment(&payment("taken", PaymentStatus::Authorized))
        .await
        .unwrap();

    assert!(wallet.capture("taken").await.unwrap());
    assert!(!wallet.capture("taken").await.unwrap(), "captured once");

    assert_eq!(
        wallet
            .void(&void_order("taken", &payment_id))
            .await
            .unwrap(),
        VoidOutcome::AlreadyCaptured
    );
    assert!(wallet.voids_of("taken").await.unwrap().is_empty());
    assert_eq!(
        wallet.payment("taken").await.unwrap().unwrap().status,
        PaymentStatus::Success
    );
    assert!(matches!(
        wallet.void(&void_order("nobody", "x")).await.unwrap(),
        VoidOutcome::Failed { .. }
    ));
}

/// Like a real ledger, the demo wallet refuses a refund of a payment that took no money or was
/// already refunded (issue 18); a repeat of a refund it performed is answered as before.
#[tokio::test]
async fn a_refund_of_a_payment_not_charged_or_already_refunded_is_refused() {
    let db = TestDb::new().await;
    let wallet = DemoWallet::new(db.pool.clone());
    for (id, status) in [
        ("failed", PaymentStatus::Failed),
        ("processing", PaymentStatus::Processing),
        ("authorized", PaymentStatus::Authorized),
        ("paid", PaymentStatus::Success),
    ] {
        wallet.create_payment(&payment(id, status)).await.unwrap();
    }
    wallet
        .create_payment(&NewDemoPayment {
            refunded_minor_units: 100,
            ..payment("partly-refunded", PaymentStatus::Success)
        })
        .await
        .unwrap();
    let order = |id: &str, amount: i64| RefundOrder {
        refund_id: uuid::Uuid::new_v4(),
        payment_request_id: id.into(),
        payment_id: format!("demo-{id}"),
        amount: Money::new(amount, Currency::parse("HKD").unwrap()).unwrap(),
    };
    for id in [
        "failed",
        "processing",
        "authorized",
        "partly-refunded",
        "unknown",
    ] {
        let answer = wallet.refund(&order(id, 2500)).await.unwrap();
        assert!(
            matches!(answer, RefundOutcome::Failed { .. }),
            "{id}: {answer:?}"
        );
    }
    assert!(matches!(
        wallet.refund(&order("paid", 2501)).await.unwrap(),
        RefundOutcome::Failed { .. }
    ));
    let first = order("paid", 2500);
    let done = wallet.refund(&first).await.unwrap();
    assert!(matches!(done, RefundOutcome::Succeeded { .. }), "{done:?}");
    assert_eq!(
        wallet.refund(&first).await.unwrap(),
        done,
        "a repeat is answered as before"
    );
    assert!(
        matches!(
            wallet.refund(&order("paid", 2500)).await.unwrap(),
            RefundOutcome::Failed { .. }
        ),
        "a second refund of a refunded payment is refused"
    );
}

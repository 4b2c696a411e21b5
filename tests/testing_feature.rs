//! `mpp_cancel::testing::TestService` (feature `testing`) as an MPP uses it in its own tests: its
//! own wallet, its own PostgreSQL database, signed cancels both ways, the guard, and the engine
//! carrying an accepted cancel to its end (here a card authorization released once).
#![cfg(feature = "testing")]

mod common;

use async_trait::async_trait;
use common::fresh_database;
use mpp_cancel::domain::{Currency, Money, Payment, PaymentStatus};
use mpp_cancel::testing::TestService;
use mpp_cancel::wallet::{
    CloseOutcome, RefundOrder, RefundOutcome, VoidOrder, VoidOutcome, Wallet, WalletError,
};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// The MPP's ledger in this test: payments by id, and the holds released (void id -> payment).
#[derive(Default)]
struct MppLedger {
    payments: Mutex<HashMap<String, Payment>>,
    released: Mutex<HashMap<uuid::Uuid, String>>,
}

#[async_trait]
impl Wallet for MppLedger {
    async fn payment(&self, id: &str) -> Result<Option<Payment>, WalletError> {
        Ok(self.payments.lock().unwrap().get(id).cloned())
    }
    async fn close(&self, id: &str) -> Result<CloseOutcome, WalletError> {
        Ok(
            match self.payments.lock().unwrap().get(id).map(|p| p.status) {
                Some(PaymentStatus::Authorized) => CloseOutcome::AlreadyAuthorized,
                Some(PaymentStatus::Success) => CloseOutcome::AlreadySucceeded,
                Some(_) => CloseOutcome::AlreadyFailed,
                None => CloseOutcome::Closed,
            },
        )
    }
    async fn refund(&self, order: &RefundOrder) -> Result<RefundOutcome, WalletError> {
        Ok(RefundOutcome::Failed {
            reason: format!("this test refunds nothing ({})", order.refund_id),
        })
    }
    async fn void(&self, order: &VoidOrder) -> Result<VoidOutcome, WalletError> {
        let mut released = self.released.lock().unwrap();
        released
            .entry(order.void_id)
            .or_insert_with(|| order.payment_request_id.clone());
        Ok(VoidOutcome::Voided { reference: None })
    }
}

#[tokio::test]
async fn an_mpp_tests_its_wallet_against_the_real_service() {
    let (_, pool) = fresh_database().await;
    let ledger = Arc::new(MppLedger::default());
    ledger.payments.lock().unwrap().insert(
        "card-1".into(),
        Payment {
            payment_request_id: "card-1".into(),
            payment_id: "mpp-card-1".into(),
            status: PaymentStatus::Authorized,
            amount: Money::new(12_000, Currency::parse("KRW").unwrap()).unwrap(),
            created_at: chrono::Utc::now(),
            refunded_minor_units: 0,
        },
    );
    let service = TestService::spawn(pool, ledger.clone()).await.unwrap();

    let answer = service.cancel("card-1").await.unwrap();
    assert_eq!(answer.result_code(), Some("SUCCESS"), "{:?}", answer.body);
    assert_eq!(answer.signature_verified, Some(true));
    assert!(service.guard().is_cancelled("card-1").await.unwrap());

    let mut state = None;
    for _ in 0..100 {
        state = service
            .cancellation("card-1")
            .await
            .unwrap()
            .map(|c| c.state);
        if state.as_deref() == Some("voided") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(state.as_deref(), Some("voided"));
    assert_eq!(
        ledger.released.lock().unwrap().values().collect::<Vec<_>>(),
        ["card-1"],
        "the hold was released once"
    );
    service.stop().await;
}

//! An MPP's existing actix-web application with mpp-cancel embedded: its own ledger behind the
//! [`Wallet`] trait, its own `pay` route asking the guard first, and Alipay+'s cancelPayment
//! mounted beside it, with the refund engine running in the same process.
//!
//! Shared by `main.rs` (the runnable example) and `tests/embed_example.rs`, which sends it a
//! signed cancel.

use actix_web::{App, HttpResponse, HttpServer, web};
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use mpp_cancel::app::Components;
use mpp_cancel::config::Settings;
use mpp_cancel::domain::{Clock, Money, Payment, PaymentStatus, SystemClock};
use mpp_cancel::embed::{Embedded, EngineHandle};
use mpp_cancel::guard::Guard;
use mpp_cancel::store::Store;
use mpp_cancel::wallet::{
    CloseOutcome, RefundOrder, RefundOutcome, VoidOrder, VoidOutcome, Wallet, WalletError,
};
use std::collections::{HashMap, HashSet};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};

/// One payment in the MPP's ledger.
#[derive(Debug, Clone)]
pub struct Entry {
    pub payment_id: String,
    pub status: PaymentStatus,
    pub amount: Money,
    pub created_at: DateTime<Utc>,
    pub refunded_minor_units: i64,
}

/// The MPP's ledger, kept in memory for the example (a real one lives in the MPP's database).
#[derive(Debug, Default)]
pub struct Ledger {
    payments: HashMap<String, Entry>,
    /// Ids closed before any payment: `pay` must refuse them.
    closed: HashSet<String>,
    /// refund_id -> what was refunded: the dedupe the contract asks for.
    refunds: HashMap<uuid::Uuid, Money>,
    /// void_ids of the authorization holds released: the same dedupe for voids.
    voids: HashSet<uuid::Uuid>,
}

/// The ledger as mpp-cancel sees it.
#[derive(Debug, Default, Clone)]
pub struct LedgerWallet {
    ledger: Arc<Mutex<Ledger>>,
}

impl LedgerWallet {
    /// The MPP's own payment flow: refused for ids closed by a cancel.
    pub fn pay(&self, id: &str, amount: Money, now: DateTime<Utc>) -> Result<String, &'static str> {
        let mut ledger = self.ledger.lock().expect("ledger lock");
        if ledger.closed.contains(id) {
            return Err("closed");
        }
        if ledger.payments.contains_key(id) {
            return Err("duplicate");
        }
        let payment_id = format!("ledger-{}", ledger.payments.len() + 1);
        ledger.payments.insert(
            id.to_owned(),
            Entry {
                payment_id: payment_id.clone(),
                status: PaymentStatus::Success,
                amount,
                created_at: now,
                refunded_minor_units: 0,
            },
        );
        Ok(payment_id)
    }

    pub fn entry(&self, id: &str) -> Option<Entry> {
        self.ledger
            .lock()
            .expect("ledger lock")
            .payments
            .get(id)
            .cloned()
    }
}

#[async_trait]
impl Wallet for LedgerWallet {
    async fn payment(&self, id: &str) -> Result<Option<Payment>, WalletError> {
        Ok(self.entry(id).map(|e| Payment {
            payment_request_id: id.to_owned(),
            payment_id: e.payment_id,
            status: e.status,
            amount: e.amount,
            created_at: e.created_at,
            refunded_minor_units: e.refunded_minor_units,
        }))
    }

    async fn close(&self, id: &str) -> Result<CloseOutcome, WalletError> {
        let mut ledger = self.ledger.lock().expect("ledger lock");
        Ok(match ledger.payments.get(id).map(|e| e.status) {
            Some(PaymentStatus::Success) => CloseOutcome::AlreadySucceeded,
            Some(PaymentStatus::Authorized) => CloseOutcome::AlreadyAuthorized,
            Some(PaymentStatus::Failed) => CloseOutcome::AlreadyFailed,
            Some(PaymentStatus::Processing) => CloseOutcome::Pending,
            None => {
                ledger.closed.insert(id.to_owned());
                CloseOutcome::Closed
            }
        })
    }

    async fn refund(&self, order: &RefundOrder) -> Result<RefundOutcome, WalletError> {
        let mut ledger = self.ledger.lock().expect("ledger lock");
        // Dedupe and apply under one lock: a retried or concurrent order moves money once.
        if let Some(amount) = ledger.refunds.get(&order.refund_id) {
            return Ok(RefundOutcome::Succeeded {
                amount: Some(*amount),
                reference: Some(order.refund_id.to_string()),
            });
        }
        let Some(entry) = ledger.payments.get_mut(&order.payment_request_id) else {
            return Ok(RefundOutcome::Failed {
                reason: "no such payment".into(),
            });
        };
        entry.refunded_minor_units += order.amount.minor_units;
        ledger.refunds.insert(order.refund_id, order.amount);
        Ok(RefundOutcome::Succeeded {
            amount: Some(order.amount),
            reference: Some(order.refund_id.to_string()),
        })
    }

    async fn void(&self, order: &VoidOrder) -> Result<VoidOutcome, WalletError> {
        let mut ledger = self.ledger.lock().expect("ledger lock");
        let voided = VoidOutcome::Voided {
            reference: Some(order.void_id.to_string()),
        };
        // Dedupe and release under one lock: a retried or concurrent order releases once.
        if ledger.voids.contains(&order.void_id) {
            return Ok(voided);
        }
        let Some(entry) = ledger.payments.get_mut(&order.payment_request_id) else {
            return Ok(VoidOutcome::Failed {
                reason: "no such payment".into(),
            });
        };
        match entry.status {
            PaymentStatus::Authorized => {
                // Released: the hold never took the user's money.
                entry.status = PaymentStatus::Failed;
                ledger.voids.insert(order.void_id);
                Ok(voided)
            }
            PaymentStatus::Success => Ok(VoidOutcome::AlreadyCaptured),
            other => Ok(VoidOutcome::Failed {
                reason: format!("the payment is {}, not an authorization", other.as_str()),
            }),
        }
    }
}

#[derive(serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct PayRequest {
    payment_request_id: String,
    value: String,
    currency: String,
}

/// The MPP's own `pay`: asks the guard first, so a paymentRequestId Alipay+ cancelled is never
/// charged.
async fn pay(
    body: web::Json<PayRequest>,
    wallet: web::Data<LedgerWallet>,
    guard: web::Data<Guard>,
) -> HttpResponse {
    match guard.is_cancelled(&body.payment_request_id).await {
        Ok(true) => {
            return HttpResponse::Conflict().json(serde_json::json!({"error": "cancelled"}));
        }
        Ok(false) => {}
        // Cannot tell: refuse rather than risk charging a cancelled payment.
        Err(_) => return HttpResponse::ServiceUnavailable().finish(),
    }
    let Ok(amount) = Money::parse(&body.value, &body.currency) else {
        return HttpResponse::BadRequest().json(serde_json::json!({"error": "bad amount"}));
    };
    match wallet.pay(&body.payment_request_id, amount, SystemClock.now()) {
        Ok(payment_id) => HttpResponse::Ok().json(serde_json::json!({"paymentId": payment_id})),
        Err(why) => HttpResponse::Conflict().json(serde_json::json!({"error": why})),
    }
}

/// The running shop: its server, the engine, and its ledger.
pub struct Shop {
    pub server: actix_web::dev::Server,
    pub engine: EngineHandle,
    pub wallet: LedgerWallet,
}

/// Builds the MPP's application on `listener` over `store` (migrated), with mpp-cancel inside.
pub fn build(listener: TcpListener, settings: &Settings, store: Store) -> anyhow::Result<Shop> {
    let wallet = LedgerWallet::default();
    let components = Components {
        store,
        wallet: Arc::new(wallet.clone()),
        clock: Arc::new(SystemClock),
    };
    let cancel = Embedded::new(settings, &components)?;
    let engine = cancel.start_engine();
    let guard = web::Data::new(cancel.guard());
    let ledger = web::Data::new(wallet.clone());
    let server = HttpServer::new(move || {
        App::new()
            .app_data(guard.clone())
            .app_data(ledger.clone())
            // The MPP's own routes...
            .route("/pay", web::post().to(pay))
            // ...and Alipay+'s cancelPayment beside them.
            .configure(|cfg| cancel.configure(cfg))
    })
    .listen(listener)?
    .run();
    Ok(Shop {
        server,
        engine,
        wallet,
    })
}

//! A scriptable in-memory wallet: the one test double (the wallet belongs to the MPP).

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use mpp_cancel::domain::{Currency, Money, Payment, PaymentStatus};
use mpp_cancel::wallet::{
    CloseOutcome, RefundOrder, RefundOutcome, VoidOrder, VoidOutcome, Wallet, WalletError,
};
use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

/// A scripted answer to one `refund` call (after the script: success for the full amount).
#[derive(Debug, Clone, Copy)]
pub enum RefundScript {
    Error,
    /// Answer after this long (longer than the engine's call timeout: a timeout).
    Slow(Duration),
    Pending,
    Failed,
    /// Report success for another amount.
    SucceededWith(i64),
    /// Move the money, then report it with this reference (junk, in the tests that use it).
    SucceededWithReference(&'static str),
    /// The wallet implementation panics.
    Panic,
}

/// A scripted answer to one `void` call (after the script: the ledger decides).
#[derive(Debug, Clone, Copy)]
pub enum VoidScript {
    Error,
    /// Answer after this long (longer than the engine's call timeout: a timeout).
    Slow(Duration),
    Pending,
    Failed,
    /// Release the hold, then report it with this reference (junk, in the tests that use it).
    VoidedWithReference(&'static str),
}

#[derive(Default)]
pub struct TestWallet {
    void_script: Mutex<VecDeque<VoidScript>>,
    /// void_id -> paymentRequestId of the hold it released (the wallet dedupes on void_id).
    pub voided: Mutex<HashMap<uuid::Uuid, String>>,
    pub voids: Mutex<Vec<VoidOrder>>,
    refund_script: Mutex<VecDeque<RefundScript>>,
    /// refund_id -> amount actually given back (the wallet dedupes on refund_id).
    pub refunded: Mutex<HashMap<uuid::Uuid, i64>>,
    payments: Mutex<HashMap<String, Payment>>,
    /// The next N lookups fail with `Unavailable`.
    failing_lookups: AtomicUsize,
    lookup_delay: Mutex<Option<Duration>>,
    pub lookups: AtomicUsize,
    pub refunds: Mutex<Vec<RefundOrder>>,
    /// Scripted answers to `close` (after the script: the payment's status decides).
    close_script: Mutex<VecDeque<CloseOutcome>>,
    /// Refund and void calls in flight per refund (void) id, and the most ever seen at once.
    in_flight: Mutex<HashMap<uuid::Uuid, usize>>,
    pub max_concurrent_per_refund_id: AtomicUsize,
}

impl TestWallet {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn add(
        &self,
        id: &str,
        status: PaymentStatus,
        minor_units: i64,
        currency: &str,
        created_at: DateTime<Utc>,
    ) -> Payment {
        let payment = Payment {
            payment_request_id: id.to_owned(),
            payment_id: format!("wallet-{id}"),
            status,
            amount: Money::new(
                minor_units,
                Currency::parse(currency).expect("test currency"),
            )
            .expect("test amount"),
            created_at,
            refunded_minor_units: 0,
        };
        self.put(payment.clone());
        payment
    }

    pub fn put(&self, payment: Payment) {
        self.payments
            .lock()
            .unwrap()
            .insert(payment.payment_request_id.clone(), payment);
    }

    pub fn fail_next_lookups(&self, n: usize) {
        self.failing_lookups.store(n, Ordering::SeqCst);
    }

    pub fn delay_lookups(&self, by: Duration) {
        *self.lookup_delay.lock().unwrap() = Some(by);
    }

    pub fn script_closes(&self, script: impl IntoIterator<Item = CloseOutcome>) {
        self.close_script.lock().unwrap().extend(script);
    }

    pub fn script_refunds(&self, script: impl IntoIterator<Item = RefundScript>) {
        self.refund_script.lock().unwrap().extend(script);
    }

    pub fn script_voids(&self, script: impl IntoIterator<Item = VoidScript>) {
        self.void_script.lock().unwrap().extend(script);
    }

    /// Every void call received, in order.
    pub fn void_calls(&self) -> Vec<VoidOrder> {
        self.voids.lock().unwrap().clone()
    }

    /// Holds actually released: void id -> paymentRequestId.
    pub fn voided_holds(&self) -> HashMap<uuid::Uuid, String> {
        self.voided.lock().unwrap().clone()
    }

    /// Every refund call received, in order.
    pub fn refund_calls(&self) -> Vec<RefundOrder> {
        self.refunds.lock().unwrap().clone()
    }

    /// Money actually given back, per refund id.
    pub fn refunded_amounts(&self) -> HashMap<uuid::Uuid, i64> {
        self.refunded.lock().unwrap().clone()
    }

    pub fn set_status(&self, id: &str, status: PaymentStatus) {
        if let Some(p) = self.payments.lock().unwrap().get_mut(id) {
            p.status = status;
        }
    }

    pub fn lookup_count(&self) -> usize {
        self.lookups.load(Ordering::SeqCst)
    }
}

#[async_trait]
impl Wallet for TestWallet {
    async fn payment(&self, payment_request_id: &str) -> Result<Option<Payment>, WalletError> {
        self.lookups.fetch_add(1, Ordering::SeqCst);
        let delay = *self.lookup_delay.lock().unwrap();
        if let Some(delay) = delay {
            tokio::time::sleep(delay).await;
        }
        let failing = self
            .failing_lookups
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1));
        if failing.is_ok() {
            return Err(WalletError::Unavailable("scripted failure".into()));
        }
        Ok(self
            .payments
            .lock()
            .unwrap()
            .get(payment_request_id)
            .cloned())
    }

    async fn close(&self, payment_request_id: &str) -> Result<CloseOutcome, WalletError> {
        if let Some(scripted) = self.close_script.lock().unwrap().pop_front() {
            return Ok(scripted);
        }
        let mut payments = self.payments.lock().unwrap();
        Ok(match payments.get_mut(payment_request_id) {
            None => CloseOutcome::Closed,
            Some(p) => match p.status {
                PaymentStatus::Processing => {
                    p.status = PaymentStatus::Failed;
                    CloseOutcome::Closed
                }
                PaymentStatus::Success => CloseOutcome::AlreadySucceeded,
                PaymentStatus::Authorized => CloseOutcome::AlreadyAuthorized,
                PaymentStatus::Failed => CloseOutcome::AlreadyFailed,
            },
        })
    }

    async fn refund(&self, order: &RefundOrder) -> Result<RefundOutcome, WalletError> {
        self.counting_in_flight(order.refund_id, self.refund_inner(order))
            .await
    }

    async fn void(&self, order: &VoidOrder) -> Result<VoidOutcome, WalletError> {
        self.counting_in_flight(order.void_id, self.void_inner(order))
            .await
    }
}

impl TestWallet {
    /// Runs one call for `id`, noting how many calls for it are in flight at once.
    async fn counting_in_flight<T>(&self, id: uuid::Uuid, call: impl Future<Output = T>) -> T {
        let now_in_flight = {
            let mut in_flight = self.in_flight.lock().unwrap();
            let n = in_flight.entry(id).or_insert(0);
            *n += 1;
            *n
        };
        self.max_concurrent_per_refund_id
            .fetch_max(now_in_flight, Ordering::SeqCst);
        // Counted down also when the call is dropped half-way (the engine's call timeout).
        struct Leave<'a>(&'a Mutex<HashMap<uuid::Uuid, usize>>, uuid::Uuid);
        impl Drop for Leave<'_> {
            fn drop(&mut self) {
                let mut in_flight = self.0.lock().unwrap_or_else(|e| e.into_inner());
                *in_flight.entry(self.1).or_insert(1) -= 1;
            }
        }
        let _leave = Leave(&self.in_flight, id);
        call.await
    }

    async fn void_inner(&self, order: &VoidOrder) -> Result<VoidOutcome, WalletError> {
        self.voids.lock().unwrap().push(order.clone());
        let scripted = self.void_script.lock().unwrap().pop_front();
        let reference = match scripted {
            Some(VoidScript::VoidedWithReference(junk)) => junk.to_owned(),
            _ => format!("void-{}", order.void_id),
        };
        match scripted {
            Some(VoidScript::Error) => {
                return Err(WalletError::Unavailable("scripted failure".into()));
            }
            Some(VoidScript::Slow(delay)) => tokio::time::sleep(delay).await,
            Some(VoidScript::Pending) => return Ok(VoidOutcome::Pending),
            Some(VoidScript::Failed) => {
                return Ok(VoidOutcome::Failed {
                    reason: "scripted refusal".into(),
                });
            }
            Some(VoidScript::VoidedWithReference(_)) | None => {}
        }
        // Like a real ledger: the first call with a void id releases the hold, later ones only
        // report it; a hold that became a charge cannot be voided.
        let mut voided = self.voided.lock().unwrap();
        if voided.contains_key(&order.void_id) {
            return Ok(VoidOutcome::Voided {
                reference: Some(reference),
            });
        }
        let mut payments = self.payments.lock().unwrap();
        let Some(payment) = payments.get_mut(&order.payment_request_id) else {
            return Ok(VoidOutcome::Failed {
                reason: "no such payment".into(),
            });
        };
        match payment.status {
            PaymentStatus::Authorized => {
                // Released: the hold took no money.
                payment.status = PaymentStatus::Failed;
                voided.insert(order.void_id, order.payment_request_id.clone());
                Ok(VoidOutcome::Voided {
                    reference: Some(reference),
                })
            }
            PaymentStatus::Success => Ok(VoidOutcome::AlreadyCaptured),
            other => Ok(VoidOutcome::Failed {
                reason: format!("the payment is {}, not an authorization", other.as_str()),
            }),
        }
    }

    async fn refund_inner(&self, order: &RefundOrder) -> Result<RefundOutcome, WalletError> {
        self.refunds.lock().unwrap().push(order.clone());
        let scripted = self.refund_script.lock().unwrap().pop_front();
        match scripted {
            Some(RefundScript::Error) => {
                return Err(WalletError::Unavailable("scripted failure".into()));
            }
            Some(RefundScript::Slow(delay)) => tokio::time::sleep(delay).await,
            Some(RefundScript::Pending) => return Ok(RefundOutcome::Pending),
            Some(RefundScript::Failed) => {
                return Ok(RefundOutcome::Failed {
                    reason: "scripted refusal".into(),
                });
            }
            Some(RefundScript::Panic) => panic!("scripted panic in the wallet"),
            Some(RefundScript::SucceededWithReference(reference)) => {
                self.refunded
                    .lock()
                    .unwrap()
                    .entry(order.refund_id)
                    .or_insert(order.amount.minor_units);
                return Ok(RefundOutcome::Succeeded {
                    amount: Some(order.amount),
                    reference: Some(reference.to_owned()),
                });
            }
            Some(RefundScript::SucceededWith(other)) => {
                return Ok(RefundOutcome::Succeeded {
                    amount: Some(Money::new(other, order.amount.currency).expect("positive")),
                    reference: None,
                });
            }
            None => {}
        }
        // Like a real ledger: the first call with a refund id moves the money, later ones
        // only report it.
        self.refunded
            .lock()
            .unwrap()
            .entry(order.refund_id)
            .or_insert(order.amount.minor_units);
        Ok(RefundOutcome::Succeeded {
            amount: Some(order.amount),
            reference: Some(format!("ref-{}", order.refund_id)),
        })
    }
}

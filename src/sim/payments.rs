//! Test payments in a given state, made at the MPP before the kit cancels them: the checks and
//! scenarios that need a SUCCESS, AUTHORIZED, FAILED or PROCESSING payment (or one created near the
//! cut-off) run only when the kit can make one. Three ways:
//!
//! - our demo wallet (`--demo-wallet`): the kit writes to the same PostgreSQL as the service
//!   and can also count the demo ledger's refunds;
//! - a command (`--create-payment-cmd`): run with `sh -c`, positional arguments
//!   `$1` paymentRequestId, `$2` status, `$3` amount value (minor units), `$4` currency,
//!   `$5` createdAt (RFC 3339), `$6` refunded value, `$7` payment code, and the same in the
//!   environment (`MPPC_PAYMENT_REQUEST_ID`, `MPPC_STATUS`, `MPPC_AMOUNT_VALUE`,
//!   `MPPC_CURRENCY`, `MPPC_CREATED_AT`, `MPPC_REFUNDED_VALUE`, `MPPC_PAYMENT_CODE`); exit 0
//!   when the payment exists in that state;
//! - a URL (`--create-payment-url`): `POST` of `{"paymentRequestId", "status", "amount":
//!   {"value", "currency"}, "createdAt", "refundedAmount": {..}, "paymentCode"}`; any 2xx
//!   means done.
//!
//! Either way the call creates the payment or replaces its state (a scenario moves one payment
//! from PROCESSING or FAILED to SUCCESS, as the wallet's own flow would).

use std::time::Duration;

use anyhow::Context as _;
use chrono::{DateTime, SecondsFormat, Utc};

use crate::domain::{Money, PaymentStatus};
use crate::wallet::demo::{DemoWallet, NewDemoPayment};

/// The payment states the kit asks for. Listed once, so a new state is one more variant here
/// and one more row of [`TestStatus::ALL`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TestStatus {
    Success,
    Failed,
    Processing,
    /// Funds held, not captured (card authorizations).
    Authorized,
}

impl TestStatus {
    pub const ALL: [TestStatus; 4] = [
        TestStatus::Success,
        TestStatus::Failed,
        TestStatus::Processing,
        TestStatus::Authorized,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Success => "SUCCESS",
            Self::Failed => "FAILED",
            Self::Processing => "PROCESSING",
            Self::Authorized => "AUTHORIZED",
        }
    }

    /// The wallet status this maps to.
    pub fn wallet_status(self) -> PaymentStatus {
        match self {
            Self::Success => PaymentStatus::Success,
            Self::Failed => PaymentStatus::Failed,
            Self::Processing => PaymentStatus::Processing,
            Self::Authorized => PaymentStatus::Authorized,
        }
    }

    /// The state a cancellation of such a payment must end in, once the MPP's money work is
    /// done (DESIGN.md's table).
    pub fn settled_state(self) -> &'static str {
        match self {
            Self::Success => "refunded",
            Self::Failed | Self::Processing => "nothing_to_refund",
            Self::Authorized => "voided",
        }
    }
}

/// A payment the kit wants to exist at the MPP.
#[derive(Debug, Clone)]
pub struct TestPayment {
    pub payment_request_id: String,
    pub status: TestStatus,
    pub amount: Money,
    pub created_at: DateTime<Utc>,
    /// Already refunded by the wallet, in minor units.
    pub refunded_minor_units: i64,
    /// The code the user presented (see [`super::codes`]).
    pub payment_code: String,
}

/// Why a payment was not made.
#[derive(Debug, thiserror::Error)]
pub enum CreateError {
    /// The kit has no way to make it: the check is skipped.
    #[error("{0}")]
    Unavailable(String),
    /// The way given failed: the check fails, saying so.
    #[error("creating the test payment: {0:#}")]
    Failed(anyhow::Error),
}

/// How the kit makes payments at the MPP.
#[derive(Debug, Clone)]
pub enum PaymentMaker {
    None,
    Demo(DemoWallet),
    Command(String),
    Url(reqwest::Url),
}

impl PaymentMaker {
    pub fn can_create(&self) -> bool {
        !matches!(self, Self::None)
    }

    /// The demo ledger, when the kit can read it (to count refunds).
    pub fn demo(&self) -> Option<&DemoWallet> {
        match self {
            Self::Demo(wallet) => Some(wallet),
            _ => None,
        }
    }

    pub async fn create(&self, payment: &TestPayment) -> Result<(), CreateError> {
        let status = payment.status.wallet_status();
        let created_at = payment
            .created_at
            .to_rfc3339_opts(SecondsFormat::Millis, true);
        match self {
            Self::None => Err(CreateError::Unavailable(
                "the kit cannot create payments: give --demo-wallet, --create-payment-cmd or \
                 --create-payment-url"
                    .into(),
            )),
            Self::Demo(wallet) => wallet
                .create_payment(&NewDemoPayment {
                    payment_request_id: payment.payment_request_id.clone(),
                    status,
                    amount: payment.amount,
                    created_at: payment.created_at,
                    refunded_minor_units: payment.refunded_minor_units,
                })
                .await
                .map(drop)
                .map_err(|e| CreateError::Failed(e.into())),
            Self::Command(command) => {
                let fields = [
                    (
                        "MPPC_PAYMENT_REQUEST_ID",
                        payment.payment_request_id.clone(),
                    ),
                    ("MPPC_STATUS", payment.status.as_str().to_string()),
                    ("MPPC_AMOUNT_VALUE", payment.amount.minor_units.to_string()),
                    ("MPPC_CURRENCY", payment.amount.currency.code().to_string()),
                    ("MPPC_CREATED_AT", created_at),
                    (
                        "MPPC_REFUNDED_VALUE",
                        payment.refunded_minor_units.to_string(),
                    ),
                    ("MPPC_PAYMENT_CODE", payment.payment_code.clone()),
                ];
                let mut cmd = tokio::process::Command::new("sh");
                cmd.arg("-c").arg(command).arg("mppc-create-payment");
                for (name, value) in &fields {
                    cmd.arg(value).env(name, value);
                }
                cmd.stdin(std::process::Stdio::null()).kill_on_drop(true);
                let output = tokio::time::timeout(Duration::from_secs(60), cmd.output())
                    .await
                    .map_err(|_| CreateError::Failed(anyhow::anyhow!("the command ran 60 s")))?
                    .map_err(|e| CreateError::Failed(anyhow::Error::new(e).context("sh -c")))?;
                if output.status.success() {
                    Ok(())
                } else {
                    let stderr = String::from_utf8_lossy(&output.stderr);
                    Err(CreateError::Failed(anyhow::anyhow!(
                        "--create-payment-cmd exited with {}: {}",
                        output.status,
                        stderr.trim().chars().take(300).collect::<String>()
                    )))
                }
            }
            Self::Url(url) => {
                let money = |value: i64| {
                    serde_json::json!({
                        "value": value.to_string(),
                        "currency": payment.amount.currency.code(),
                    })
                };
                let body = serde_json::json!({
                    "paymentRequestId": payment.payment_request_id,
                    "status": payment.status.as_str(),
                    "amount": money(payment.amount.minor_units),
                    "createdAt": created_at,
                    "refundedAmount": money(payment.refunded_minor_units),
                    "paymentCode": payment.payment_code,
                });
                let response = reqwest::Client::new()
                    .post(url.clone())
                    .timeout(Duration::from_secs(30))
                    .json(&body)
                    .send()
                    .await
                    .with_context(|| format!("POST {url}"))
                    .map_err(CreateError::Failed)?;
                let status = response.status();
                if status.is_success() {
                    Ok(())
                } else {
                    Err(CreateError::Failed(anyhow::anyhow!(
                        "--create-payment-url answered HTTP {status}"
                    )))
                }
            }
        }
    }
}

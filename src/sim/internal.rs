//! The MPP's internal API as the kit reads it (`--internal-url`, `--token`): after Alipay+ is
//! answered, where did the cancellation end, and how many refunds did it make?

use std::time::{Duration, Instant};

use anyhow::Context as _;
use serde_json::Value;

use super::payments::PaymentMaker;

/// `GET {base}/v1/cancellations/{id}` with `Authorization: Bearer {token}`.
#[derive(Debug, Clone)]
pub struct InternalApi {
    base: String,
    token: String,
    http: reqwest::Client,
}

/// States the refund engine leaves alone.
const TERMINAL: [&str; 6] = [
    "refunded",
    "voided",
    "nothing_to_refund",
    "rejected",
    "manual_review",
    "not_found",
];

impl InternalApi {
    pub fn new(base: &str, token: &str) -> anyhow::Result<Self> {
        anyhow::ensure!(
            token.len() >= 32,
            "--token must be the internal API's token (at least 32 characters)"
        );
        Ok(Self {
            base: base.trim_end_matches('/').to_string(),
            token: token.to_string(),
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(10))
                .build()?,
        })
    }

    /// The stored cancellation, `None` when the MPP has none for this id.
    pub async fn cancellation(&self, id: &str) -> anyhow::Result<Option<Value>> {
        let url = format!("{}/v1/cancellations/{}", self.base, encode(id));
        let response = self
            .http
            .get(&url)
            .bearer_auth(&self.token)
            .send()
            .await
            .with_context(|| format!("GET {url}"))?;
        match response.status().as_u16() {
            404 => Ok(None),
            200 => {
                let body: Value = response.json().await.context("the internal API's JSON")?;
                Ok(Some(body["cancellation"].clone()))
            }
            other => anyhow::bail!("GET {url}: HTTP {other}"),
        }
    }

    /// Polls until the cancellation is in `want` or in any terminal state, or `timeout` ends;
    /// returns the last record seen.
    pub async fn wait_for(&self, id: &str, want: &str, timeout: Duration) -> anyhow::Result<Value> {
        let started = Instant::now();
        loop {
            let record = self.cancellation(id).await?.unwrap_or(Value::Null);
            let state = record["state"].as_str().unwrap_or("not_found");
            if state == want
                || started.elapsed() >= timeout
                || (TERMINAL.contains(&state) && state != "not_found")
            {
                return Ok(record);
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

fn encode(id: &str) -> String {
    percent_encoding::utf8_percent_encode(id, percent_encoding::NON_ALPHANUMERIC).to_string()
}

/// After an `S`: the cancellation reached `want` and, for a SUCCESS payment, the money went
/// back once for the full amount; for an AUTHORIZED one (`voided`), the demo ledger released
/// the hold once and refunded nothing. `Ok(evidence)` or `Err(what is wrong)`.
pub async fn check_settled(
    internal: Option<&InternalApi>,
    payments: &PaymentMaker,
    id: &str,
    want: &str,
    amount: i64,
    timeout: Duration,
) -> Result<String, String> {
    let mut evidence = Vec::new();
    match internal {
        Some(api) => {
            let record = api
                .wait_for(id, want, timeout)
                .await
                .map_err(|e| format!("internal API: {e:#}"))?;
            let state = record["state"].as_str().unwrap_or("not_found");
            if state != want {
                return Err(format!("state {state} after {timeout:?}, expected {want}"));
            }
            evidence.push(format!("state {state}"));
            if want == "refunded" {
                let recorded = record["amountValue"].as_i64();
                if recorded != Some(amount) {
                    return Err(format!(
                        "refunded, but the record's amount is {recorded:?}, not {amount}"
                    ));
                }
                match record["refundStatus"].as_str() {
                    Some("succeeded") => evidence.push("its refund succeeded".into()),
                    other => return Err(format!("refunded with refund_status {other:?}")),
                }
            }
        }
        None => evidence.push("states not checked (no --internal-url)".into()),
    }
    if let Some(demo) = payments.demo() {
        let refunds = demo
            .refunds_of(id)
            .await
            .map_err(|e| format!("reading the demo ledger: {e}"))?;
        let expected = usize::from(want == "refunded");
        if refunds.len() != expected {
            return Err(format!(
                "{} refunds in the demo ledger, expected {expected}",
                refunds.len()
            ));
        }
        if let Some((_, value)) = refunds.first() {
            if *value != amount {
                return Err(format!("refunded {value}, the payment was {amount}"));
            }
            evidence.push(format!("one refund of {value} in the wallet"));
        } else {
            evidence.push("no refund in the wallet".into());
        }
        let voids = demo
            .voids_of(id)
            .await
            .map_err(|e| format!("reading the demo ledger: {e}"))?;
        let expected = usize::from(want == "voided");
        if voids.len() != expected {
            return Err(format!(
                "{} voids in the demo ledger, expected {expected}",
                voids.len()
            ));
        }
        if expected == 1 {
            evidence.push("one void in the wallet".into());
        }
    }
    Ok(evidence.join(", "))
}

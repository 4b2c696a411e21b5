//! The HTTP side of `wallet-check`: sends a call, records what came back as an [`Exchange`].
//! Every answer is kept, whatever it is; judging it is [`super::rules`]' job.

use super::{Answer, Exchange};
use anyhow::Context as _;
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use reqwest::header::{ACCEPT, AUTHORIZATION, HeaderMap, HeaderValue};
use serde_json::Value;
use std::time::{Duration, Instant};

/// As the adapter does: everything but RFC 3986's unreserved characters is encoded.
const PATH_SEGMENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// The most of a body kept as evidence.
const MAX_BODY_BYTES: usize = 16 * 1024;

/// `/payments/{id}{suffix}`, the id one encoded path segment.
pub fn payment_path(payment_request_id: &str, suffix: &str) -> String {
    format!(
        "/payments/{}{suffix}",
        utf8_percent_encode(payment_request_id, PATH_SEGMENT)
    )
}

/// A client for one wallet base URL.
#[derive(Clone)]
pub struct WalletClient {
    http: reqwest::Client,
    base: String,
    token: Option<String>,
}

impl WalletClient {
    pub fn new(base_url: &str, token: Option<&str>, timeout: Duration) -> anyhow::Result<Self> {
        let url = reqwest::Url::parse(base_url.trim()).context("--base-url is not a URL")?;
        anyhow::ensure!(
            matches!(url.scheme(), "http" | "https"),
            "--base-url must be http or https"
        );
        anyhow::ensure!(!timeout.is_zero(), "--timeout-ms must be greater than zero");
        let mut headers = HeaderMap::new();
        headers.insert(ACCEPT, HeaderValue::from_static("application/json"));
        if let Some(token) = token {
            let mut value = HeaderValue::from_str(&format!("Bearer {token}"))
                .context("the token must be visible ASCII")?;
            value.set_sensitive(true);
            headers.insert(AUTHORIZATION, value);
        }
        let http = reqwest::Client::builder()
            .default_headers(headers)
            .user_agent(concat!(
                "mpp-cancel-wallet-check/",
                env!("CARGO_PKG_VERSION")
            ))
            .timeout(timeout)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .context("building the HTTP client")?;
        Ok(Self {
            http,
            base: url.as_str().trim_end_matches('/').to_owned(),
            token: token.map(str::to_owned),
        })
    }

    pub async fn get(&self, path: &str) -> Exchange {
        self.call("GET", path, None).await
    }

    pub async fn post(&self, path: &str, body: Option<&Value>) -> Exchange {
        self.call("POST", path, body).await
    }

    /// `count` identical POSTs released together.
    pub async fn post_concurrently(&self, path: &str, body: &Value, count: usize) -> Vec<Exchange> {
        let barrier = std::sync::Arc::new(tokio::sync::Barrier::new(count));
        let calls = (0..count).map(|_| {
            let barrier = barrier.clone();
            async move {
                barrier.wait().await;
                self.post(path, Some(body)).await
            }
        });
        futures_util::future::join_all(calls).await
    }

    async fn call(&self, method: &'static str, path: &str, body: Option<&Value>) -> Exchange {
        let started = Instant::now();
        let mut request = match method {
            "GET" => self.http.get(format!("{}{path}", self.base)),
            _ => self.http.post(format!("{}{path}", self.base)),
        };
        if let Some(body) = body {
            request = request.json(body);
        }
        let answer = match request.send().await {
            Ok(response) => {
                let status = response.status().as_u16();
                match read_capped(response).await {
                    Ok(bytes) => Answer::Http {
                        status,
                        body: self.scrub(String::from_utf8_lossy(&bytes).into_owned()),
                    },
                    Err(e) if e.is_timeout() => Answer::TimedOut,
                    Err(e) => Answer::Failed(self.scrub(e.without_url().to_string())),
                }
            }
            Err(e) if e.is_timeout() => Answer::TimedOut,
            Err(e) => Answer::Failed(self.scrub(e.without_url().to_string())),
        };
        Exchange {
            method,
            path: path.to_owned(),
            request_body: body.cloned(),
            answer,
            elapsed: started.elapsed(),
        }
    }

    /// The token never reaches the report, even if the wallet echoes it.
    fn scrub(&self, text: String) -> String {
        match &self.token {
            Some(token) if !token.is_empty() => text.replace(token.as_str(), "[redacted]"),
            _ => text,
        }
    }
}

async fn read_capped(mut response: reqwest::Response) -> Result<Vec<u8>, reqwest::Error> {
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await? {
        let room = MAX_BODY_BYTES.saturating_sub(body.len());
        body.extend_from_slice(&chunk[..chunk.len().min(room)]);
        if room < chunk.len() {
            break;
        }
    }
    Ok(body)
}

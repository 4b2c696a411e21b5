//! Message security on the public listener: every request verified before anything is parsed or
//! stored, every response signed (F, U and early errors included), as alipayplus.md describes.

use crate::config::Settings;
use crate::domain::Clock;
use crate::protocol::keys::{load_private_key, load_public_key};
use crate::protocol::signature::{AuthError, RequestVerifier, ResponseSigner, check_request_time};
use crate::protocol::signature::{alipay_time, signed_content};
use actix_web::HttpRequest;
use actix_web::http::header::{HeaderMap, HeaderName, HeaderValue};
use anyhow::Context;
use chrono::{DateTime, SecondsFormat, Utc};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// Verifies Alipay+'s requests and signs our responses.
pub struct MessageSecurity {
    /// None when `alipayplus.verify_signatures = false` (local demo only).
    verifier: Option<RequestVerifier>,
    /// None when no private key is configured (allowed only with verification off).
    signer: Option<ResponseSigner>,
    client_id: String,
    max_skew: Option<chrono::Duration>,
    clock: Arc<dyn Clock>,
    /// Signatures made this second, by exact signed content. RSA PKCS#1 v1.5 is deterministic,
    /// so a remembered signature is byte for byte the one a new signing would make; with
    /// Response-Time at whole seconds, the many identical answers of a second (every SUCCESS
    /// body is the same) cost one RSA operation instead of one each.
    recent: Mutex<RecentSignatures>,
}

#[derive(Default)]
struct RecentSignatures {
    second: String,
    by_content: HashMap<Vec<u8>, String>,
}

/// Distinct answers remembered per second; beyond it, responses are signed without memo.
const RECENT_SIGNATURES_PER_SECOND: usize = 64;

impl MessageSecurity {
    /// Loads the keys `settings` name. With verification on, Alipay+'s public keys and our
    /// private key are both required: a service that cannot sign its answers must not start.
    pub fn from_settings(settings: &Settings, clock: Arc<dyn Clock>) -> anyhow::Result<Self> {
        let a = &settings.alipayplus;
        let signer = load_private_key(
            a.private_key.as_ref().map(|k| k.expose()),
            a.private_key_file.as_deref(),
        )
        .context("alipayplus.private_key / private_key_file")?
        .map(|key| ResponseSigner::new(key, a.key_version.clone()));
        let verifier = if a.verify_signatures {
            anyhow::ensure!(
                !a.public_keys.is_empty(),
                "alipayplus.verify_signatures = true needs Alipay+'s public key in \
                 alipayplus.public_keys (keyVersion = key)"
            );
            anyhow::ensure!(
                signer.is_some(),
                "alipayplus.verify_signatures = true needs our private key \
                 (alipayplus.private_key_file) to sign responses; `mpp-cancel keys generate` makes one"
            );
            let keys = a
                .public_keys
                .iter()
                .map(|(version, value)| {
                    load_public_key(value)
                        .map(|key| (version.clone(), key))
                        .with_context(|| format!("alipayplus.public_keys.{version}"))
                })
                .collect::<anyhow::Result<Vec<_>>>()?;
            Some(RequestVerifier::new(&a.client_id, keys))
        } else {
            None
        };
        Ok(Self {
            verifier,
            signer,
            client_id: a.client_id.clone(),
            // try_seconds: a value beyond what chrono holds is no limit at all, not a panic.
            max_skew: (a.max_clock_skew_seconds > 0).then(|| {
                chrono::Duration::try_seconds(a.max_clock_skew_seconds)
                    .unwrap_or(chrono::Duration::MAX)
            }),
            clock,
            recent: Mutex::new(RecentSignatures::default()),
        })
    }

    /// Checks the request's signature (and its age, when configured) over the exact body bytes.
    pub fn authenticate(&self, req: &HttpRequest, body: &[u8]) -> Result<(), AuthError> {
        let Some(verifier) = &self.verifier else {
            return Ok(());
        };
        let header = |name: &str| req.headers().get(name).map(HeaderValue::as_bytes);
        verifier.verify(
            req.method().as_str(),
            req.path(),
            header("client-id"),
            header("request-time"),
            header("signature"),
            body,
        )?;
        if let (Some(max_skew), Some(time)) = (self.max_skew, header("request-time")) {
            let time = std::str::from_utf8(time).unwrap_or_default();
            check_request_time(time, self.clock.now(), max_skew)?;
        }
        Ok(())
    }

    /// Adds `Client-Id`, `Response-Time` and `Signature` over the exact response body.
    pub fn sign(&self, req: &HttpRequest, headers: &mut HeaderMap, body: &[u8]) {
        let Some(signer) = &self.signer else { return };
        let response_time = response_time(self.clock.now());
        let method = req.method().as_str();
        let content = signed_content(method, req.path(), &self.client_id, &response_time, body);
        let remembered = {
            let mut recent = self.recent.lock().unwrap_or_else(|p| p.into_inner());
            if recent.second != response_time {
                recent.second.clone_from(&response_time);
                recent.by_content.clear();
            }
            recent.by_content.get(&content).cloned()
        };
        let signature = remembered.unwrap_or_else(|| {
            let signature = signer.sign(method, req.path(), &self.client_id, &response_time, body);
            let mut recent = self.recent.lock().unwrap_or_else(|p| p.into_inner());
            if recent.second == response_time
                && recent.by_content.len() < RECENT_SIGNATURES_PER_SECOND
            {
                recent.by_content.insert(content, signature.clone());
            }
            signature
        });
        for (name, value) in [
            ("client-id", self.client_id.as_str()),
            ("response-time", response_time.as_str()),
            ("signature", signature.as_str()),
        ] {
            if let Ok(value) = HeaderValue::from_str(value) {
                headers.insert(HeaderName::from_static(name), value);
            }
        }
    }
}

/// Response-Time to the whole second, so identical answers within a second share a signature.
fn response_time(now: DateTime<Utc>) -> String {
    alipay_time(now, SecondsFormat::Secs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn response_time_is_utc8_to_the_second() {
        let now = DateTime::parse_from_rfc3339("2026-11-21T16:30:05.987Z")
            .unwrap()
            .with_timezone(&Utc);
        assert_eq!(response_time(now), "2026-11-22T00:30:05+08:00");
    }
}

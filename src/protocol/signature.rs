//! Alipay+ message signatures, pure: parsing and formatting the `Signature` header, the exact
//! bytes that are signed, verifying requests from Alipay+ (key chosen by `keyVersion`), signing
//! our responses, and the optional clock-skew check on `Request-Time`.
//!
//! The scheme (alipayplus.md, "Message format"): RSASSA-PKCS1-v1_5 with SHA-256 ("RSA256") over
//!
//! ```text
//! POST {path}\n{Client-Id}.{Request-Time or Response-Time}.{raw body}
//! ```
//!
//! carried as `Signature: algorithm=RSA256,keyVersion=1,signature=<url-encoded base64>`.
//! Everything here works on the bytes exactly as received: nothing is re-serialised, trimmed or
//! normalised before verification, because any change would break a valid signature (or, worse,
//! make an invalid one pass).

use std::cmp::Ordering;
use std::collections::BTreeMap;

use base64::Engine as _;
use chrono::{DateTime, FixedOffset, SecondsFormat, Utc};
use percent_encoding::{NON_ALPHANUMERIC, percent_decode_str, utf8_percent_encode};

use super::keys::{KeyError, PrivateKey, PublicKey};
use super::result::ResultCode;

/// The only algorithm Alipay+ uses: RSASSA-PKCS1-v1_5 with SHA-256.
pub const ALGORITHM_RSA256: &str = "RSA256";

/// Far beyond any real header (an RSA-8192 signature is ~1.4 kB encoded); bounds the work an
/// attacker can make us do before the RSA operation.
pub const MAX_SIGNATURE_HEADER_LEN: usize = 8 * 1024;

/// Why a request failed authentication, one variant per Alipay+ result code. The message is a
/// human reason for logs and `resultMessage`; it never contains key material.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// `INVALID_CLIENT`: the Client-Id is missing or not ours.
    #[error("{0}")]
    InvalidClient(String),
    /// `KEY_NOT_FOUND`: the keyVersion names no configured key.
    #[error("{0}")]
    KeyNotFound(String),
    /// `INVALID_SIGNATURE`: anything else (missing or malformed headers, wrong algorithm, a
    /// signature that does not verify).
    #[error("{0}")]
    InvalidSignature(String),
}

impl AuthError {
    /// The Alipay+ result code this failure is answered with (always with status `F`).
    pub fn result_code(&self) -> ResultCode {
        match self {
            Self::InvalidClient(_) => ResultCode::InvalidClient,
            Self::KeyNotFound(_) => ResultCode::KeyNotFound,
            Self::InvalidSignature(_) => ResultCode::InvalidSignature,
        }
    }

    /// The human reason.
    pub fn reason(&self) -> &str {
        match self {
            Self::InvalidClient(r) | Self::KeyNotFound(r) | Self::InvalidSignature(r) => r,
        }
    }
}

fn invalid(reason: impl Into<String>) -> AuthError {
    AuthError::InvalidSignature(reason.into())
}

/// Quotes an untrusted value for an error message: escaped, and cut at 64 characters so a
/// hostile header cannot flood the logs.
fn quote(value: &str) -> String {
    const MAX: usize = 64;
    match value.char_indices().nth(MAX) {
        Some((cut, _)) => format!("{:?}...", &value[..cut]),
        None => format!("{value:?}"),
    }
}

/// A parsed `Signature` header. `signature` holds the raw signature bytes, already URL-decoded
/// and Base64-decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignatureHeader {
    pub algorithm: String,
    pub key_version: Option<String>,
    pub signature: Vec<u8>,
}

/// HTTP's optional whitespace: spaces and tabs.
fn trim_ows(s: &str) -> &str {
    s.trim_matches([' ', '\t'])
}

/// Parses `algorithm=RSA256, keyVersion=1, signature=...` with or without spaces after the
/// commas (the SDKs write none) and around `=`.
///
/// Strict where leniency could hide a forgery or a transport fault: each of the three names at
/// most once (a doubled header joined with `,` is refused rather than first- or last-wins),
/// `algorithm` and `signature` required and non-empty, `%` escapes well formed, and the Base64
/// canonical with its padding, as alipayplus.md specifies. Names are matched case-insensitively;
/// unknown `name=value` parts are ignored so Alipay+ can add some. Never panics.
pub fn parse_signature_header(value: &str) -> Result<SignatureHeader, AuthError> {
    if value.len() > MAX_SIGNATURE_HEADER_LEN {
        return Err(invalid(format!(
            "Signature header is longer than {MAX_SIGNATURE_HEADER_LEN} bytes"
        )));
    }
    let mut algorithm: Option<&str> = None;
    let mut key_version: Option<&str> = None;
    let mut signature: Option<&str> = None;
    for part in value.split(',') {
        let part = trim_ows(part);
        if part.is_empty() {
            continue;
        }
        let Some((name, val)) = part.split_once('=') else {
            return Err(invalid(format!(
                "Signature header part {} is not name=value",
                quote(part)
            )));
        };
        let (name, val) = (trim_ows(name), trim_ows(val));
        let slot = if name.eq_ignore_ascii_case("algorithm") {
            &mut algorithm
        } else if name.eq_ignore_ascii_case("keyVersion") {
            &mut key_version
        } else if name.eq_ignore_ascii_case("signature") {
            &mut signature
        } else {
            continue;
        };
        if slot.is_some() {
            return Err(invalid(format!(
                "Signature header has {} more than once",
                quote(name)
            )));
        }
        if val.is_empty() {
            return Err(invalid(format!(
                "Signature header has an empty {}",
                quote(name)
            )));
        }
        *slot = Some(val);
    }
    let algorithm = algorithm.ok_or_else(|| invalid("Signature header has no algorithm"))?;
    let encoded = signature.ok_or_else(|| invalid("Signature header has no signature"))?;
    Ok(SignatureHeader {
        algorithm: algorithm.to_string(),
        key_version: key_version.map(str::to_string),
        signature: decode_signature_value(encoded)?,
    })
}

/// URL-decode, then Base64-decode (standard alphabet, canonical padding).
fn decode_signature_value(encoded: &str) -> Result<Vec<u8>, AuthError> {
    // percent_decode_str passes a stray `%` through unchanged; a malformed escape means the value
    // was damaged, so say so instead of failing later with a confusing Base64 error.
    let bytes = encoded.as_bytes();
    for (i, &b) in bytes.iter().enumerate() {
        if b == b'%'
            && !(bytes.get(i + 1).is_some_and(u8::is_ascii_hexdigit)
                && bytes.get(i + 2).is_some_and(u8::is_ascii_hexdigit))
        {
            return Err(invalid(format!(
                "signature has a malformed percent-escape at offset {i}"
            )));
        }
    }
    let b64: Vec<u8> = percent_decode_str(encoded).collect();
    let raw = base64::engine::general_purpose::STANDARD
        .decode(&b64)
        .map_err(|e| {
            invalid(format!(
                "signature is not valid Base64 ({})",
                base64_reason(&e)
            ))
        })?;
    if raw.is_empty() {
        return Err(invalid("signature is empty"));
    }
    Ok(raw)
}

fn base64_reason(e: &base64::DecodeError) -> String {
    match e {
        base64::DecodeError::InvalidByte(offset, _) => {
            format!("invalid character at offset {offset}")
        }
        base64::DecodeError::InvalidLength(len) => format!("invalid length {len}"),
        base64::DecodeError::InvalidLastSymbol(offset, _) => {
            format!("non-canonical last symbol at offset {offset}")
        }
        base64::DecodeError::InvalidPadding => "missing or wrong padding".to_string(),
    }
}

/// The header value as the Alipay+ SDKs write it: no spaces, standard padded Base64, then
/// URL-encoded (`+`, `/`, `=` become `%2B`, `%2F`, `%3D`).
pub fn format_signature_header(key_version: &str, signature: &[u8]) -> String {
    let b64 = base64::engine::general_purpose::STANDARD.encode(signature);
    // Base64 output is alphanumeric apart from `+`, `/` and `=`: exactly what gets escaped.
    let encoded = utf8_percent_encode(&b64, NON_ALPHANUMERIC);
    format!("algorithm={ALGORITHM_RSA256},keyVersion={key_version},signature={encoded}")
}

/// The exact bytes signed: `{method} {path}\n{client_id}.{time}.{body}`.
pub fn signed_content(
    method: &str,
    path: &str,
    client_id: &str,
    time: &str,
    body: &[u8],
) -> Vec<u8> {
    let mut content = Vec::with_capacity(
        method.len() + path.len() + client_id.len() + time.len() + body.len() + 4,
    );
    content.extend_from_slice(method.as_bytes());
    content.push(b' ');
    content.extend_from_slice(path.as_bytes());
    content.push(b'\n');
    content.extend_from_slice(client_id.as_bytes());
    content.push(b'.');
    content.extend_from_slice(time.as_bytes());
    content.push(b'.');
    content.extend_from_slice(body);
    content
}

/// Orders key versions: numerically when both are decimal integers (so "10" is after "9"),
/// otherwise as strings. Ties between equal numbers ("01", "1") fall back to the strings so the
/// order is total and the choice deterministic.
pub fn compare_key_versions(a: &str, b: &str) -> Ordering {
    let is_integer = |s: &str| !s.is_empty() && s.bytes().all(|c| c.is_ascii_digit());
    if is_integer(a) && is_integer(b) {
        let (na, nb) = (a.trim_start_matches('0'), b.trim_start_matches('0'));
        na.len()
            .cmp(&nb.len())
            .then_with(|| na.cmp(nb))
            .then_with(|| a.cmp(b))
    } else {
        a.cmp(b)
    }
}

/// Checks an RSA256 `Signature` header value against `content` with one given key, ignoring
/// its keyVersion: for a client (the simulator) that knows which key its peer signs with.
pub fn verify_with_key(
    key: &PublicKey,
    signature_header: &str,
    content: &[u8],
) -> Result<(), AuthError> {
    let header = parse_signature_header(signature_header)?;
    check_algorithm(&header)?;
    if key.verify_pkcs1_sha256(content, &header.signature) {
        Ok(())
    } else {
        Err(invalid("signature does not verify"))
    }
}

/// Verifies a response from an MPP (or any message signed over `POST {path}\n...`): what the
/// simulator does with the service's answer.
pub fn verify_response(
    key: &PublicKey,
    method: &str,
    path: &str,
    client_id: &str,
    response_time: &str,
    signature_header: &str,
    body: &[u8],
) -> Result<(), AuthError> {
    let content = signed_content(method, path, client_id, response_time, body);
    verify_with_key(key, signature_header, &content)
}

fn check_algorithm(header: &SignatureHeader) -> Result<(), AuthError> {
    if header.algorithm == ALGORITHM_RSA256 {
        Ok(())
    } else {
        Err(invalid(format!(
            "unsupported signature algorithm {} (only {ALGORITHM_RSA256})",
            quote(&header.algorithm)
        )))
    }
}

/// Verifies requests from Alipay+: one expected Client-Id, and Alipay+'s public keys by
/// keyVersion, so a new key can be added before Alipay+ switches to it and the old one removed
/// after (rotation without downtime).
#[derive(Debug, Clone)]
pub struct RequestVerifier {
    client_id: String,
    keys: BTreeMap<String, PublicKey>,
    /// The latest key by [`compare_key_versions`]: tried first when a request names no
    /// keyVersion (then every other key is tried too).
    latest: Option<String>,
}

impl RequestVerifier {
    /// A later entry with the same version replaces an earlier one.
    pub fn new(
        client_id: &str,
        public_keys: impl IntoIterator<Item = (String, PublicKey)>,
    ) -> Self {
        let keys: BTreeMap<String, PublicKey> = public_keys.into_iter().collect();
        let latest = keys
            .keys()
            .max_by(|a, b| compare_key_versions(a, b))
            .cloned();
        Self {
            client_id: client_id.to_string(),
            keys,
            latest,
        }
    }

    /// The Client-Id requests must carry.
    pub fn client_id(&self) -> &str {
        &self.client_id
    }

    /// The configured key versions, in [`compare_key_versions`] order (latest last).
    pub fn key_versions(&self) -> Vec<&str> {
        let mut versions: Vec<&str> = self.keys.keys().map(String::as_str).collect();
        versions.sort_by(|a, b| compare_key_versions(a, b));
        versions
    }

    /// The version tried first when a request names none.
    pub fn latest_key_version(&self) -> Option<&str> {
        self.latest.as_deref()
    }

    fn key_for(&self, key_version: Option<&str>) -> Result<&PublicKey, AuthError> {
        match key_version {
            Some(version) => self.keys.get(version).ok_or_else(|| {
                AuthError::KeyNotFound(format!(
                    "no Alipay+ public key with keyVersion {}",
                    quote(version)
                ))
            }),
            None => self
                .latest
                .as_ref()
                .and_then(|v| self.keys.get(v))
                .ok_or_else(|| AuthError::KeyNotFound("no Alipay+ public key configured".into())),
        }
    }

    /// Authenticates one request. Header values are the raw bytes as received (`None` = absent);
    /// `path` is the request path without host (and without query string: Alipay+ sends none).
    ///
    /// Checks, in this order: Client-Id (missing, not UTF-8 or not ours -> `InvalidClient`);
    /// Request-Time present and UTF-8; Signature present, UTF-8, well formed and `RSA256`
    /// (else `InvalidSignature`); the keyVersion known (else `KeyNotFound`); finally the RSA
    /// signature over the exact bytes (else `InvalidSignature`).
    pub fn verify(
        &self,
        method: &str,
        path: &str,
        client_id: Option<&[u8]>,
        request_time: Option<&[u8]>,
        signature: Option<&[u8]>,
        body: &[u8],
    ) -> Result<(), AuthError> {
        let client_id = match client_id.map(std::str::from_utf8) {
            None => {
                return Err(AuthError::InvalidClient(
                    "Client-Id header is missing".into(),
                ));
            }
            Some(Err(_)) => {
                return Err(AuthError::InvalidClient(
                    "Client-Id is not valid UTF-8".into(),
                ));
            }
            Some(Ok("")) => return Err(AuthError::InvalidClient("Client-Id is empty".into())),
            Some(Ok(id)) => id,
        };
        if client_id != self.client_id {
            return Err(AuthError::InvalidClient(format!(
                "unknown Client-Id {}",
                quote(client_id)
            )));
        }
        let request_time = required_header("Request-Time", request_time)?;
        let signature = required_header("Signature", signature)?;
        let header = parse_signature_header(signature)?;
        check_algorithm(&header)?;
        let content = signed_content(method, path, client_id, request_time, body);
        let verifies = |key: &PublicKey| key.verify_pkcs1_sha256(&content, &header.signature);
        let verified = match header.key_version.as_deref() {
            Some(_) => verifies(self.key_for(header.key_version.as_deref())?),
            // Without keyVersion, during a rotation Alipay+ may sign with either key: each
            // configured key is tried, the latest first.
            None => {
                self.key_for(None)?;
                self.key_versions()
                    .into_iter()
                    .rev()
                    .any(|version| verifies(&self.keys[version]))
            }
        };
        if verified {
            Ok(())
        } else {
            Err(invalid(
                "signature does not verify over the method, path, Client-Id, Request-Time and body",
            ))
        }
    }
}

fn required_header<'a>(name: &str, value: Option<&'a [u8]>) -> Result<&'a str, AuthError> {
    match value.map(std::str::from_utf8) {
        None => Err(invalid(format!("{name} header is missing"))),
        Some(Err(_)) => Err(invalid(format!("{name} is not valid UTF-8"))),
        Some(Ok("")) => Err(invalid(format!("{name} is empty"))),
        Some(Ok(v)) => Ok(v),
    }
}

/// Signs our responses (and, for the simulator and load generator, requests as Alipay+ would):
/// our private key and the keyVersion Alipay+ knows it by.
#[derive(Debug, Clone)]
pub struct ResponseSigner {
    key: PrivateKey,
    key_version: String,
}

impl ResponseSigner {
    /// `key_version` goes verbatim into the header, so it must not contain `,`.
    pub fn new(key: PrivateKey, key_version: String) -> Self {
        Self { key, key_version }
    }

    pub fn key_version(&self) -> &str {
        &self.key_version
    }

    /// The public half, for logging its fingerprint at start.
    pub fn public_key(&self) -> PublicKey {
        self.key.public_key()
    }

    /// The `Signature` header value for a response: over the request's method and path, our
    /// Client-Id header value, the Response-Time header value and the exact response bytes.
    pub fn sign(
        &self,
        method: &str,
        path: &str,
        client_id: &str,
        response_time: &str,
        body: &[u8],
    ) -> String {
        self.sign_message(method, path, client_id, response_time, body)
    }

    /// The `Signature` header value for a request, signed as Alipay+ signs it.
    pub fn sign_request(
        &self,
        method: &str,
        path: &str,
        client_id: &str,
        request_time: &str,
        body: &[u8],
    ) -> String {
        self.sign_message(method, path, client_id, request_time, body)
    }

    /// Requests and responses are signed the same way; only the time header's name differs.
    ///
    /// # Panics
    /// Only if aws-lc fails to sign with a key it already validated at load time, which happens
    /// on allocation failure alone; nothing a peer sends can cause it. Use [`Self::try_sign`]
    /// to handle that case anyway.
    pub fn sign_message(
        &self,
        method: &str,
        path: &str,
        client_id: &str,
        time: &str,
        body: &[u8],
    ) -> String {
        self.try_sign(method, path, client_id, time, body)
            .expect("RSA signing with a validated key does not fail")
    }

    /// [`Self::sign_message`], returning aws-lc's failure instead of panicking.
    pub fn try_sign(
        &self,
        method: &str,
        path: &str,
        client_id: &str,
        time: &str,
        body: &[u8],
    ) -> Result<String, KeyError> {
        let content = signed_content(method, path, client_id, time, body);
        let signature = self.key.sign_pkcs1_sha256(&content)?;
        Ok(format_signature_header(&self.key_version, &signature))
    }
}

/// A `Request-Time` / `Response-Time` value as Alipay+ writes its times: RFC 3339 at the UTC+8
/// offset, to the precision given (`2026-11-21T18:05:07.123+08:00` with milliseconds).
pub fn alipay_time(now: DateTime<Utc>, precision: SecondsFormat) -> String {
    // east_opt only refuses offsets of a day or more; the UTC branch is never taken.
    match FixedOffset::east_opt(8 * 3600) {
        Some(utc8) => now.with_timezone(&utc8).to_rfc3339_opts(precision, false),
        None => now.to_rfc3339_opts(precision, true),
    }
}

/// Parses `Request-Time`: RFC 3339 (fractional seconds, `Z` or `+hh:mm`), or the ISO 8601
/// basic offset `+hhmm` that some clients write.
pub fn parse_request_time(value: &str) -> Option<DateTime<FixedOffset>> {
    DateTime::parse_from_rfc3339(value)
        .or_else(|_| DateTime::parse_from_str(value, "%Y-%m-%dT%H:%M:%S%.f%z"))
        .ok()
}

/// The optional clock-skew check (off by default: alipayplus.md documents no limit and retries
/// may arrive late). Refuses a Request-Time that does not parse or lies more than `max_skew`
/// before or after `now`.
pub fn check_request_time(
    request_time: &str,
    now: DateTime<Utc>,
    max_skew: chrono::Duration,
) -> Result<(), AuthError> {
    let time = parse_request_time(request_time).ok_or_else(|| {
        invalid(format!(
            "Request-Time {} is not an ISO 8601 time with an offset",
            quote(request_time)
        ))
    })?;
    let skew = now.signed_duration_since(time);
    if skew.abs() > max_skew {
        let direction = if skew > chrono::Duration::zero() {
            "behind"
        } else {
            "ahead of"
        };
        return Err(invalid(format!(
            "Request-Time {} is {}s {direction} our clock, more than the {}s allowed",
            quote(request_time),
            skew.num_seconds().abs(),
            max_skew.num_seconds()
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::keys::tests::{other_pair, test_pair};
    use proptest::prelude::*;

    const PATH: &str = "/aps/api/v1/payments/cancelPayment";
    const CLIENT: &str = "SANDBOX_5Y3A2N2YEB3002022";
    const TIME: &str = "2026-11-21T18:05:07.123+08:00";
    const BODY: &[u8] =
        br#"{"paymentRequestId":"pr-1","acquirerId":"acq","pspId":"1022188000000000001"}"#;

    fn signer(version: &str) -> ResponseSigner {
        ResponseSigner::new(test_pair().private_key().unwrap(), version.to_string())
    }

    fn other_signer(version: &str) -> ResponseSigner {
        ResponseSigner::new(other_pair().private_key().unwrap(), version.to_string())
    }

    fn verifier() -> RequestVerifier {
        RequestVerifier::new(
            CLIENT,
            [("1".to_string(), test_pair().public_key().unwrap())],
        )
    }

    fn good_header() -> String {
        signer("1").sign_request("POST", PATH, CLIENT, TIME, BODY)
    }

    fn verify_with(v: &RequestVerifier, header: &str, body: &[u8]) -> Result<(), AuthError> {
        v.verify(
            "POST",
            PATH,
            Some(CLIENT.as_bytes()),
            Some(TIME.as_bytes()),
            Some(header.as_bytes()),
            body,
        )
    }

    fn is_invalid_signature(r: &Result<(), AuthError>) -> bool {
        matches!(r, Err(AuthError::InvalidSignature(_)))
    }

    // ---- header parser ----

    #[test]
    fn parses_unspaced_and_spaced_forms_alike() {
        let unspaced =
            parse_signature_header("algorithm=RSA256,keyVersion=1,signature=AAEC").unwrap();
        let spaced =
            parse_signature_header("algorithm=RSA256, keyVersion=1, signature=AAEC").unwrap();
        assert_eq!(unspaced, spaced);
        assert_eq!(unspaced.algorithm, "RSA256");
        assert_eq!(unspaced.key_version.as_deref(), Some("1"));
        assert_eq!(unspaced.signature, vec![0, 1, 2]);
    }

    #[test]
    fn tolerates_odd_whitespace_and_order_and_name_case() {
        let h =
            parse_signature_header(" \tsignature = AAEC ,\t keyversion= 7 ,ALGORITHM=RSA256 \t")
                .unwrap();
        assert_eq!(h.algorithm, "RSA256");
        assert_eq!(h.key_version.as_deref(), Some("7"));
        assert_eq!(h.signature, vec![0, 1, 2]);
    }

    #[test]
    fn key_version_is_optional_and_unknown_parts_are_ignored() {
        let h = parse_signature_header("algorithm=RSA256,signature=AAEC,future=x").unwrap();
        assert_eq!(h.key_version, None);
    }

    #[test]
    fn url_decodes_then_base64_decodes() {
        // base64 "+/8=" is bytes [0xfb, 0xff]; URL-encoded it is "%2B%2F8%3D".
        let h = parse_signature_header("algorithm=RSA256,signature=%2B%2F8%3D").unwrap();
        assert_eq!(h.signature, vec![0xfb, 0xff]);
        // Lower-case escapes and an unencoded value (nothing to escape) decode the same way.
        let h = parse_signature_header("algorithm=RSA256,signature=%2b%2f8%3d").unwrap();
        assert_eq!(h.signature, vec![0xfb, 0xff]);
    }

    #[test]
    fn format_then_parse_round_trips() {
        let sig: Vec<u8> = (0..=255u8).collect();
        let header = format_signature_header("3", &sig);
        assert!(header.starts_with("algorithm=RSA256,keyVersion=3,signature="));
        let value = header.rsplit_once("signature=").unwrap().1;
        assert!(!value.contains(['+', '/', '=']), "{value}");
        let parsed = parse_signature_header(&header).unwrap();
        assert_eq!(parsed.signature, sig);
        assert_eq!(parsed.key_version.as_deref(), Some("3"));
    }

    #[test]
    fn rejects_malformed_headers() {
        let cases = [
            ("", "no algorithm"),
            ("algorithm=RSA256", "no signature"),
            ("keyVersion=1,signature=AAEC", "no algorithm"),
            ("algorithm=RSA256,keyVersion=1,signature", "not name=value"),
            ("algorithm=RSA256,signature=", "empty"),
            ("algorithm=,signature=AAEC", "empty"),
            ("algorithm=RSA256,keyVersion=,signature=AAEC", "empty"),
            (
                "algorithm=RSA256,keyVersion=1,signature=AAEC,signature=AAEC",
                "more than once",
            ),
            (
                "algorithm=RSA256,algorithm=RSA256,signature=AAEC",
                "more than once",
            ),
            (
                "algorithm=RSA256,keyVersion=1,keyVersion=2,signature=AAEC",
                "more than once",
            ),
            ("algorithm=RSA256,signature=AA%2", "percent-escape"),
            ("algorithm=RSA256,signature=AA%ZZ", "percent-escape"),
            ("algorithm=RSA256,signature=%", "percent-escape"),
            ("algorithm=RSA256,signature=AAE$", "Base64"),
            ("algorithm=RSA256,signature=AAECA", "Base64"),
            // Canonical padding is required: "+/8" lost its "=".
            ("algorithm=RSA256,signature=%2B%2F8", "Base64"),
            ("algorithm=RSA256,signature=%3D%3D%3D%3D", "Base64"),
            ("algorithm=RSA256,signature=AA EC", "Base64"),
        ];
        for (header, expected) in cases {
            match parse_signature_header(header) {
                Err(AuthError::InvalidSignature(reason)) => {
                    assert!(reason.contains(expected), "{header:?}: {reason}")
                }
                other => panic!("{header:?} gave {other:?}"),
            }
        }
        let long = format!("algorithm=RSA256,signature={}", "A".repeat(10_000));
        assert!(parse_signature_header(&long).is_err());
    }

    #[test]
    fn error_messages_quote_untrusted_values_briefly() {
        let header = format!("algorithm={},signature=AAEC", "X".repeat(5000));
        let v = verifier();
        let err = verify_with(&v, &header, BODY).unwrap_err();
        assert!(err.reason().len() < 200, "{}", err.reason());
    }

    // ---- sign / verify ----

    #[test]
    fn signed_content_is_method_space_path_newline_then_dot_joined() {
        assert_eq!(
            signed_content("POST", "/p", "c", "t", b"{}"),
            b"POST /p\nc.t.{}".to_vec()
        );
    }

    #[test]
    fn a_request_signed_like_alipayplus_verifies() {
        assert_eq!(verify_with(&verifier(), &good_header(), BODY), Ok(()));
        // Spaced form of the same header.
        let spaced = good_header().replace(',', ", ");
        assert_eq!(verify_with(&verifier(), &spaced, BODY), Ok(()));
    }

    #[test]
    fn response_signature_verifies_with_the_public_half() {
        let s = signer("2");
        let header = s.sign("POST", PATH, CLIENT, TIME, b"{\"result\":{}}");
        let public = test_pair().public_key().unwrap();
        assert_eq!(
            verify_response(
                &public,
                "POST",
                PATH,
                CLIENT,
                TIME,
                &header,
                b"{\"result\":{}}"
            ),
            Ok(())
        );
        assert!(
            verify_response(
                &public,
                "POST",
                PATH,
                CLIENT,
                TIME,
                &header,
                b"{\"result\":[]}"
            )
            .is_err()
        );
        assert!(header.contains("keyVersion=2,"));
    }

    #[test]
    fn tampering_with_any_signed_part_is_invalid_signature() {
        let v = verifier();
        let header = good_header();
        let h = Some(header.as_bytes());
        let (c, t) = (Some(CLIENT.as_bytes()), Some(TIME.as_bytes()));

        // method, path
        assert!(is_invalid_signature(&v.verify("PUT", PATH, c, t, h, BODY)));
        assert!(is_invalid_signature(&v.verify("post", PATH, c, t, h, BODY)));
        assert!(is_invalid_signature(&v.verify(
            "POST",
            "/aps/api/v1/payments/pay",
            c,
            t,
            h,
            BODY
        )));
        assert!(is_invalid_signature(&v.verify(
            "POST",
            &format!("{PATH}/"),
            c,
            t,
            h,
            BODY
        )));
        // Request-Time, even by a millisecond or a space
        for time in [
            "2026-11-21T18:05:07.124+08:00",
            "2026-11-21T18:05:07.123+08:00 ",
        ] {
            assert!(is_invalid_signature(&v.verify(
                "POST",
                PATH,
                c,
                Some(time.as_bytes()),
                h,
                BODY
            )));
        }
        // one body byte, at every position
        for i in 0..BODY.len() {
            let mut body = BODY.to_vec();
            body[i] ^= 0x01;
            assert!(
                is_invalid_signature(&verify_with(&v, &header, &body)),
                "byte {i}"
            );
        }
        // body truncated or extended
        assert!(is_invalid_signature(&verify_with(
            &v,
            &header,
            &BODY[..BODY.len() - 1]
        )));
        assert!(is_invalid_signature(&verify_with(
            &v,
            &header,
            &[BODY, b" "].concat()
        )));
        // non-UTF-8 body
        let mut body = BODY.to_vec();
        body[5] = 0xff;
        assert!(is_invalid_signature(&verify_with(&v, &header, &body)));
    }

    #[test]
    fn one_signature_byte_changed_is_invalid_signature() {
        let v = verifier();
        let parsed = parse_signature_header(&good_header()).unwrap();
        for i in [0, 1, 100, 254, 255] {
            let mut sig = parsed.signature.clone();
            sig[i] ^= 0x80;
            let header = format_signature_header("1", &sig);
            assert!(
                is_invalid_signature(&verify_with(&v, &header, BODY)),
                "byte {i}"
            );
        }
        let short = format_signature_header("1", &parsed.signature[..255]);
        assert!(is_invalid_signature(&verify_with(&v, &short, BODY)));
    }

    #[test]
    fn every_truncation_of_the_header_is_invalid_signature() {
        let v = verifier();
        let header = good_header();
        for len in 0..header.len() {
            let r = verify_with(&v, &header[..len], BODY);
            assert!(is_invalid_signature(&r), "prefix {len}: {r:?}");
        }
    }

    #[test]
    fn doubled_header_values_are_invalid_signature() {
        let v = verifier();
        let header = good_header();
        let sig = header.rsplit_once("signature=").unwrap().1;
        for doubled in [
            format!("{header},signature={sig}"),
            format!("{header},signature=AAEC"),
            format!("{header}, {header}"),
            format!("{header},{header}"),
        ] {
            assert!(
                is_invalid_signature(&verify_with(&v, &doubled, BODY)),
                "{doubled}"
            );
        }
    }

    #[test]
    fn wrong_algorithm_is_invalid_signature() {
        let v = verifier();
        for alg in ["RSA", "rsa256", "RSA512", "SHA256withRSA", "HS256"] {
            let header = good_header().replace("algorithm=RSA256", &format!("algorithm={alg}"));
            assert!(
                is_invalid_signature(&verify_with(&v, &header, BODY)),
                "{alg}"
            );
        }
    }

    #[test]
    fn a_signature_made_for_another_path_is_invalid_signature() {
        let header =
            signer("1").sign_request("POST", "/aps/api/v1/payments/pay", CLIENT, TIME, BODY);
        assert!(is_invalid_signature(&verify_with(
            &verifier(),
            &header,
            BODY
        )));
    }

    #[test]
    fn a_signature_by_another_key_is_invalid_signature() {
        let header = other_signer("1").sign_request("POST", PATH, CLIENT, TIME, BODY);
        assert!(is_invalid_signature(&verify_with(
            &verifier(),
            &header,
            BODY
        )));
    }

    #[test]
    fn client_id_problems_are_invalid_client_and_come_first() {
        let v = verifier();
        let header = good_header();
        let h = Some(header.as_bytes());
        let t = Some(TIME.as_bytes());
        for client in [
            None,
            Some(&b""[..]),
            Some(&b"OTHER"[..]),
            Some(&[0xff, 0xfe][..]),
        ] {
            assert!(matches!(
                v.verify("POST", PATH, client, t, h, BODY),
                Err(AuthError::InvalidClient(_))
            ));
            // Even with every other header missing.
            assert!(matches!(
                v.verify("POST", PATH, client, None, None, BODY),
                Err(AuthError::InvalidClient(_))
            ));
        }
        // The signer's Client-Id differs from the (configured) one in the header: the content
        // no longer matches.
        let header = signer("1").sign_request("POST", PATH, "SOMEONE_ELSE", TIME, BODY);
        assert!(is_invalid_signature(&verify_with(&v, &header, BODY)));
    }

    #[test]
    fn missing_or_non_utf8_time_and_signature_are_invalid_signature() {
        let v = verifier();
        let header = good_header();
        let c = Some(CLIENT.as_bytes());
        let (h, t) = (Some(header.as_bytes()), Some(TIME.as_bytes()));
        let bad = Some(&[b'a', 0xc3][..]);
        assert!(is_invalid_signature(
            &v.verify("POST", PATH, c, None, h, BODY)
        ));
        assert!(is_invalid_signature(&v.verify(
            "POST",
            PATH,
            c,
            Some(b""),
            h,
            BODY
        )));
        assert!(is_invalid_signature(
            &v.verify("POST", PATH, c, bad, h, BODY)
        ));
        assert!(is_invalid_signature(
            &v.verify("POST", PATH, c, t, None, BODY)
        ));
        assert!(is_invalid_signature(
            &v.verify("POST", PATH, c, t, bad, BODY)
        ));
        let mut with_byte = header.clone().into_bytes();
        with_byte.push(0x80);
        assert!(is_invalid_signature(&v.verify(
            "POST",
            PATH,
            c,
            t,
            Some(&with_byte),
            BODY
        )));
    }

    #[test]
    fn a_correctly_signed_non_utf8_body_passes_this_layer() {
        // The verifier is byte-exact; refusing a non-JSON body is the body parser's job.
        let body = [b'{', 0xff, 0xfe, b'}'];
        let header = signer("1").sign_request("POST", PATH, CLIENT, TIME, &body);
        assert_eq!(verify_with(&verifier(), &header, &body), Ok(()));
    }

    #[test]
    fn unknown_key_version_is_key_not_found_but_bad_algorithm_wins() {
        let v = verifier();
        let header = signer("9").sign_request("POST", PATH, CLIENT, TIME, BODY);
        assert!(matches!(
            verify_with(&v, &header, BODY),
            Err(AuthError::KeyNotFound(_))
        ));
        let header = header.replace("RSA256", "RSA1");
        assert!(is_invalid_signature(&verify_with(&v, &header, BODY)));
        let empty = RequestVerifier::new(CLIENT, []);
        let no_version = "algorithm=RSA256,signature=AAEC";
        assert!(matches!(
            verify_with(&empty, no_version, BODY),
            Err(AuthError::KeyNotFound(_))
        ));
    }

    #[test]
    fn key_rotation_accepts_both_versions_with_or_without_key_version() {
        let v = RequestVerifier::new(
            CLIENT,
            [
                ("1".to_string(), test_pair().public_key().unwrap()),
                ("2".to_string(), other_pair().public_key().unwrap()),
            ],
        );
        assert_eq!(v.latest_key_version(), Some("2"));
        let v1 = signer("1").sign_request("POST", PATH, CLIENT, TIME, BODY);
        let v2 = other_signer("2").sign_request("POST", PATH, CLIENT, TIME, BODY);
        assert_eq!(verify_with(&v, &v1, BODY), Ok(()));
        assert_eq!(verify_with(&v, &v2, BODY), Ok(()));
        // Without keyVersion, mid-rotation: a signature by either configured key verifies,
        // one by no configured key does not.
        let strip = |h: &str, n: &str| h.replace(&format!("keyVersion={n},"), "");
        assert_eq!(verify_with(&v, &strip(&v2, "2"), BODY), Ok(()));
        assert_eq!(verify_with(&v, &strip(&v1, "1"), BODY), Ok(()));
        let stranger = crate::protocol::keys::GeneratedKeyPair::generate_rsa_2048().unwrap();
        let foreign = ResponseSigner::new(stranger.private_key().unwrap(), "3".into())
            .sign_request("POST", PATH, CLIENT, TIME, BODY);
        assert!(is_invalid_signature(&verify_with(
            &v,
            &strip(&foreign, "3"),
            BODY
        )));
        assert!(is_invalid_signature(&verify_with(
            &v,
            &strip(&v1, "1"),
            b"{\"tampered\":true}"
        )));
        // A version-1 signature labelled 2 does not verify.
        assert!(is_invalid_signature(&verify_with(
            &v,
            &v1.replace("keyVersion=1", "keyVersion=2"),
            BODY
        )));
    }

    #[test]
    fn latest_version_is_numeric_for_integers_else_lexicographic() {
        let key = || test_pair().public_key().unwrap();
        let v = RequestVerifier::new(CLIENT, ["9", "10", "2"].map(|s| (s.to_string(), key())));
        assert_eq!(v.latest_key_version(), Some("10"));
        assert_eq!(v.key_versions(), vec!["2", "9", "10"]);
        let v = RequestVerifier::new(CLIENT, ["v9", "v10"].map(|s| (s.to_string(), key())));
        assert_eq!(v.latest_key_version(), Some("v9"));
        assert_eq!(compare_key_versions("007", "7"), Ordering::Less);
        assert_eq!(compare_key_versions("0010", "9"), Ordering::Greater);
        assert_eq!(
            compare_key_versions("123456789012345678901234567890", "99"),
            Ordering::Greater
        );
    }

    // ---- clock skew ----

    #[test]
    fn request_time_within_skew_passes_and_outside_fails() {
        let now: DateTime<Utc> = "2026-11-21T10:05:07Z".parse().unwrap();
        let skew = chrono::Duration::minutes(5);
        for ok in [
            "2026-11-21T18:05:07.123+08:00",
            "2026-11-21T10:05:07Z",
            "2026-11-21T10:00:07Z",
            "2026-11-21T10:10:07.000000+00:00",
            "2026-11-21T18:05:07+0800",
            "2026-11-21t10:05:07z",
        ] {
            assert_eq!(check_request_time(ok, now, skew), Ok(()), "{ok}");
        }
        for bad in [
            "2026-11-21T10:00:06.999Z",
            "2026-11-21T10:10:07.001Z",
            "2026-11-20T18:05:07+08:00",
            "2026-11-21T10:05:07",
            "2026-11-21 10:05",
            "yesterday",
            "",
        ] {
            assert!(
                is_invalid_signature(&check_request_time(bad, now, skew)),
                "{bad}"
            );
        }
    }

    #[test]
    fn auth_errors_map_to_result_codes() {
        assert_eq!(
            AuthError::InvalidClient("x".into()).result_code(),
            ResultCode::InvalidClient
        );
        assert_eq!(
            AuthError::KeyNotFound("x".into()).result_code(),
            ResultCode::KeyNotFound
        );
        assert_eq!(
            AuthError::InvalidSignature("x".into()).result_code(),
            ResultCode::InvalidSignature
        );
        assert_eq!(AuthError::KeyNotFound("why".into()).to_string(), "why");
    }

    // ---- properties: no panic on any input ----

    fn header_like() -> impl Strategy<Value = String> {
        let name = prop_oneof![
            Just("algorithm".to_string()),
            Just("keyVersion".to_string()),
            Just("signature".to_string()),
            "[a-zA-Z]{0,4}",
        ];
        let value = prop_oneof![
            "[A-Za-z0-9%+/= \t]{0,12}",
            Just("RSA256".to_string()),
            "\\PC{0,6}"
        ];
        let part = (name, "[ \t=]{0,2}", value).prop_map(|(n, sep, v)| format!("{n}{sep}={v}"));
        proptest::collection::vec(part, 0..6).prop_map(|parts| parts.join(","))
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        #[test]
        fn parser_never_panics_on_any_string(s in "\\PC*") {
            let _ = parse_signature_header(&s);
        }

        #[test]
        fn parser_never_panics_on_header_like_strings(s in header_like()) {
            if let Ok(h) = parse_signature_header(&s) {
                prop_assert!(!h.algorithm.is_empty());
                prop_assert!(!h.signature.is_empty());
            }
        }

        #[test]
        fn verify_never_panics_and_never_accepts_random_input(
            method in "\\PC{0,8}",
            path in "\\PC{0,40}",
            client in proptest::option::of(proptest::collection::vec(any::<u8>(), 0..32)),
            time in proptest::option::of(proptest::collection::vec(any::<u8>(), 0..40)),
            sig in proptest::option::of(proptest::collection::vec(any::<u8>(), 0..400)),
            body in proptest::collection::vec(any::<u8>(), 0..200),
            real_client in any::<bool>(),
        ) {
            let v = verifier();
            let client = if real_client { Some(CLIENT.as_bytes().to_vec()) } else { client };
            let r = v.verify(&method, &path, client.as_deref(), time.as_deref(), sig.as_deref(), &body);
            prop_assert!(r.is_err());
        }

        #[test]
        fn verify_never_panics_on_near_valid_headers(
            header in header_like(),
            body in proptest::collection::vec(any::<u8>(), 0..64),
        ) {
            prop_assert!(verify_with(&verifier(), &header, &body).is_err());
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(24))]

        #[test]
        fn any_signed_body_verifies_and_any_flipped_byte_does_not(
            body in proptest::collection::vec(any::<u8>(), 1..300),
            pos in any::<proptest::sample::Index>(),
            bit in 0u8..8,
        ) {
            let header = signer("1").sign_request("POST", PATH, CLIENT, TIME, &body);
            prop_assert_eq!(verify_with(&verifier(), &header, &body), Ok(()));
            let mut tampered = body.clone();
            tampered[pos.index(body.len())] ^= 1 << bit;
            prop_assert!(is_invalid_signature(&verify_with(&verifier(), &header, &tampered)));
        }
    }
}

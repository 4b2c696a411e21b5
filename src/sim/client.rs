//! A client that plays Alipay+ (`mpp-cancel sim cancel`): builds a `cancelPayment` request,
//! signs it exactly as Alipay+ does, sends it, and checks the signature on the answer with the
//! MPP's public key. It lets an MPP engineer prove, before Alipay+ ever calls, that both key
//! pairs are right and that the service answers as the protocol says.
//!
//! It uses the same [`crate::protocol::signature`] functions as the service, so the
//! independent check of the scheme itself is `tests/signature_interop.rs` (openssl).

use std::time::Duration;

use anyhow::Context as _;
use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::Value;

use crate::protocol::keys::{PrivateKey, PublicKey};
use crate::protocol::signature::{
    ResponseSigner, alipay_time, format_signature_header, signed_content, verify_response,
};

/// How long the simulator waits for the whole exchange.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

/// Everything needed to send one cancellation as Alipay+.
#[derive(Debug, Clone)]
pub struct SimRequest {
    /// Full URL of the MPP's cancelPayment endpoint; its path is what gets signed.
    pub url: String,
    pub client_id: String,
    pub acquirer_id: String,
    pub psp_id: String,
    pub payment_request_id: String,
    /// Stands in for Alipay+'s private key; the service must hold its public half under
    /// `key_version`.
    pub alipay_private_key: PrivateKey,
    pub key_version: String,
    /// The MPP's public key, to check the response signature; `None` skips the check.
    pub mpp_public_key: Option<PublicKey>,
}

/// What came back.
#[derive(Debug, Clone)]
pub struct SimOutcome {
    pub status: u16,
    /// The body parsed as JSON; `Value::Null` when it is not JSON (see `raw_body`).
    pub body: Value,
    /// The body exactly as received: what the signature covers.
    pub raw_body: Vec<u8>,
    /// The `Request-Time` we sent.
    pub request_time: String,
    pub response_client_id: Option<String>,
    pub response_time: Option<String>,
    /// `Some(true)`/`Some(false)`: the response signature checked with `mpp_public_key`;
    /// `None`: no key given or the response carried no `Signature` header.
    pub signature_verified: Option<bool>,
    /// Why the signature was not verified or did not verify, for the operator.
    pub signature_problem: Option<String>,
}

impl SimOutcome {
    /// `result.resultStatus` (`S`, `F` or `U`), if the body has one.
    pub fn result_status(&self) -> Option<&str> {
        self.body.pointer("/result/resultStatus")?.as_str()
    }

    /// `result.resultCode`, if the body has one.
    pub fn result_code(&self) -> Option<&str> {
        self.body.pointer("/result/resultCode")?.as_str()
    }
}

/// A request ready to send: the signed path, the headers and the exact body bytes.
#[derive(Debug, Clone)]
pub struct SignedRequest {
    pub path: String,
    pub request_time: String,
    pub headers: Vec<(&'static str, String)>,
    pub body: Vec<u8>,
}

/// The `cancelPayment` body as Alipay+ sends it.
pub fn cancel_body(acquirer_id: &str, psp_id: &str, payment_request_id: &str) -> Vec<u8> {
    serde_json::json!({
        "acquirerId": acquirer_id,
        "pspId": psp_id,
        "paymentRequestId": payment_request_id,
    })
    .to_string()
    .into_bytes()
}

/// `Request-Time` as Alipay+ writes it: RFC 3339 with milliseconds and the UTC+8 offset, e.g.
/// `2026-11-21T18:05:07.123+08:00`; the offset form exercises the service's time parsing.
pub fn alipay_request_time(now: DateTime<Utc>) -> String {
    alipay_time(now, SecondsFormat::Millis)
}

/// The path to sign: the URL's path, exactly as it will be sent.
pub fn signing_path(url: &str) -> anyhow::Result<String> {
    let parsed = reqwest::Url::parse(url).with_context(|| format!("invalid URL {url:?}"))?;
    Ok(parsed.path().to_string())
}

/// Builds and signs the request (`POST {path}\n{Client-Id}.{Request-Time}.{body}`).
pub fn sign_cancel(req: &SimRequest, request_time: &str) -> anyhow::Result<SignedRequest> {
    let path = signing_path(&req.url)?;
    let body = cancel_body(&req.acquirer_id, &req.psp_id, &req.payment_request_id);
    let signer = ResponseSigner::new(req.alipay_private_key.clone(), req.key_version.clone());
    let signature = signer
        .try_sign("POST", &path, &req.client_id, request_time, &body)
        .context("signing the request")?;
    Ok(SignedRequest {
        path,
        request_time: request_time.to_string(),
        headers: vec![
            (
                "Content-Type",
                "application/json; charset=UTF-8".to_string(),
            ),
            ("Client-Id", req.client_id.clone()),
            ("Request-Time", request_time.to_string()),
            ("Signature", signature),
        ],
        body,
    })
}

/// Signs, sends and checks one cancellation, with a fresh client and [`DEFAULT_TIMEOUT`].
pub async fn send_cancel(req: &SimRequest) -> anyhow::Result<SimOutcome> {
    let client = reqwest::Client::builder()
        .timeout(DEFAULT_TIMEOUT)
        .build()
        .context("building the HTTP client")?;
    send_cancel_with(&client, req).await
}

/// [`send_cancel`] on a given client, so a load generator can reuse connections.
pub async fn send_cancel_with(
    client: &reqwest::Client,
    req: &SimRequest,
) -> anyhow::Result<SimOutcome> {
    let signed = sign_cancel(req, &alipay_request_time(Utc::now()))?;
    let url =
        reqwest::Url::parse(&req.url).with_context(|| format!("invalid URL {:?}", req.url))?;
    exchange(
        client,
        reqwest::Method::POST,
        url,
        &signed.path,
        &signed.headers,
        signed.body,
        signed.request_time,
        req.mpp_public_key.as_ref(),
    )
    .await
}

/// Sends one request and reads the whole answer, checking its signature over the request's
/// method and path. A transport error (no answer) is an `Err`.
#[allow(clippy::too_many_arguments)] // one request's parts, each needed as given
pub(crate) async fn exchange(
    client: &reqwest::Client,
    method: reqwest::Method,
    url: reqwest::Url,
    signed_path: &str,
    headers: &[(&'static str, String)],
    body: Vec<u8>,
    request_time: String,
    mpp_public_key: Option<&PublicKey>,
) -> anyhow::Result<SimOutcome> {
    let mut builder = client.request(method.clone(), url.clone());
    for (name, value) in headers {
        builder = builder.header(*name, value);
    }
    let response = builder
        .body(body)
        .send()
        .await
        .with_context(|| format!("sending {method} {url}"))?;

    let status = response.status().as_u16();
    let header = |name: &str| -> Option<String> {
        response
            .headers()
            .get(name)
            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
    };
    let response_client_id = header("Client-Id");
    let response_time = header("Response-Time");
    let signature = header("Signature");
    let raw_body = response
        .bytes()
        .await
        .context("reading the response body")?
        .to_vec();
    let body = serde_json::from_slice(&raw_body).unwrap_or(Value::Null);

    let (signature_verified, signature_problem) = check_response_signature_as(
        mpp_public_key,
        method.as_str(),
        signed_path,
        response_client_id.as_deref(),
        response_time.as_deref(),
        signature.as_deref(),
        &raw_body,
    );
    Ok(SimOutcome {
        status,
        body,
        raw_body,
        request_time,
        response_client_id,
        response_time,
        signature_verified,
        signature_problem,
    })
}

/// Checks a response signature over `POST {request path}\n{Client-Id}.{Response-Time}.{body}`.
/// Returns `(verified, problem)`: `None` when there is no key or no `Signature` header.
pub fn check_response_signature(
    mpp_public_key: Option<&PublicKey>,
    request_path: &str,
    client_id: Option<&str>,
    response_time: Option<&str>,
    signature: Option<&str>,
    body: &[u8],
) -> (Option<bool>, Option<String>) {
    check_response_signature_as(
        mpp_public_key,
        "POST",
        request_path,
        client_id,
        response_time,
        signature,
        body,
    )
}

/// [`check_response_signature`] for a request sent with `method` (the answers to a `GET` are
/// signed over `GET {path}`).
pub fn check_response_signature_as(
    mpp_public_key: Option<&PublicKey>,
    method: &str,
    request_path: &str,
    client_id: Option<&str>,
    response_time: Option<&str>,
    signature: Option<&str>,
    body: &[u8],
) -> (Option<bool>, Option<String>) {
    let Some(key) = mpp_public_key else {
        return (
            None,
            Some("no MPP public key given: signature not checked".into()),
        );
    };
    let Some(signature) = signature else {
        return (None, Some("the response has no Signature header".into()));
    };
    let (Some(client_id), Some(response_time)) = (client_id, response_time) else {
        return (
            Some(false),
            Some("the response is signed but lacks Client-Id or Response-Time".into()),
        );
    };
    match verify_response(
        key,
        method,
        request_path,
        client_id,
        response_time,
        signature,
        body,
    ) {
        Ok(()) => (Some(true), None),
        Err(e) => (Some(false), Some(e.to_string())),
    }
}

/// Who plays Alipay+ against which endpoint: what every probe of the conformance kit shares.
#[derive(Debug, Clone)]
pub struct Target {
    /// Full URL of the MPP's cancelPayment endpoint.
    pub url: reqwest::Url,
    pub client_id: String,
    pub acquirer_id: String,
    pub psp_id: String,
    pub alipay_private_key: PrivateKey,
    pub key_version: String,
    /// The MPP's public key; without it no answer's signature can be judged.
    pub mpp_public_key: Option<PublicKey>,
}

/// How a probe's `Signature` header is made: right, or broken in one precise way.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Signing {
    Valid,
    /// No `Signature` header at all.
    Missing,
    /// A well-formed header whose signature has one bit flipped.
    Corrupted,
    /// A valid signature over these bytes, sent with the probe's other body (tampering in
    /// transit).
    OverOtherBody(Vec<u8>),
}

/// One request as Alipay+ could send it, every part open to a check that breaks one of them.
#[derive(Debug, Clone)]
pub struct Probe {
    pub method: reqwest::Method,
    /// Sent and signed; the target's cancelPayment path unless a check wants another.
    pub path: String,
    pub content_type: Option<String>,
    pub client_id: String,
    pub key_version: String,
    pub body: Vec<u8>,
    pub signing: Signing,
}

/// One answer the kit saw, kept so the rules every answer must meet (HTTP 200, a `result`, a
/// valid signature) are judged over all of them, not only in the checks that look for them.
#[derive(Debug, Clone)]
pub struct SeenAnswer {
    pub check: String,
    pub status: u16,
    pub result_status: Option<String>,
    pub result_code: Option<String>,
    pub signature_verified: Option<bool>,
    pub signature_problem: Option<String>,
}

/// The kit's Alipay+: sends probes to a [`Target`] and remembers every answer.
pub struct AlipayClient {
    pub target: Target,
    http: reqwest::Client,
    seen: std::sync::Mutex<Vec<SeenAnswer>>,
}

impl AlipayClient {
    pub fn new(target: Target) -> anyhow::Result<Self> {
        let http = reqwest::Client::builder()
            // Alipay+ waits 8 s; a little more so a slow answer is seen as slow, not lost.
            .timeout(Duration::from_secs(10))
            .build()
            .context("building the HTTP client")?;
        Ok(Self {
            target,
            http,
            seen: std::sync::Mutex::new(Vec::new()),
        })
    }

    /// A valid cancel for `payment_request_id`.
    pub fn cancel(&self, payment_request_id: &str) -> Probe {
        let t = &self.target;
        self.probe(cancel_body(&t.acquirer_id, &t.psp_id, payment_request_id))
    }

    /// A valid, signed POST of `body` to the cancelPayment path.
    pub fn probe(&self, body: Vec<u8>) -> Probe {
        Probe {
            method: reqwest::Method::POST,
            path: self.target.url.path().to_string(),
            content_type: Some("application/json; charset=UTF-8".into()),
            client_id: self.target.client_id.clone(),
            key_version: self.target.key_version.clone(),
            body,
            signing: Signing::Valid,
        }
    }

    /// The probe's headers, signed now.
    fn headers(&self, probe: &Probe) -> anyhow::Result<(String, Vec<(&'static str, String)>)> {
        let request_time = alipay_request_time(Utc::now());
        let mut headers = Vec::with_capacity(4);
        if let Some(content_type) = &probe.content_type {
            headers.push(("Content-Type", content_type.clone()));
        }
        headers.push(("Client-Id", probe.client_id.clone()));
        headers.push(("Request-Time", request_time.clone()));
        let signed_body = match &probe.signing {
            Signing::OverOtherBody(other) => other.as_slice(),
            _ => probe.body.as_slice(),
        };
        let content = signed_content(
            probe.method.as_str(),
            &probe.path,
            &probe.client_id,
            &request_time,
            signed_body,
        );
        let mut signature = self
            .target
            .alipay_private_key
            .sign_pkcs1_sha256(&content)
            .context("signing a probe")?;
        if probe.signing == Signing::Corrupted {
            signature[17] ^= 0x01;
        }
        if probe.signing != Signing::Missing {
            headers.push((
                "Signature",
                format_signature_header(&probe.key_version, &signature),
            ));
        }
        Ok((request_time, headers))
    }

    fn url_for(&self, path: &str) -> reqwest::Url {
        let mut url = self.target.url.clone();
        url.set_path(path);
        url.set_query(None);
        url
    }

    /// Sends a probe on behalf of `check` and records the answer. `Err`: no answer.
    pub async fn send(&self, check: &str, probe: &Probe) -> anyhow::Result<SimOutcome> {
        let (request_time, headers) = self.headers(probe)?;
        let outcome = exchange(
            &self.http,
            probe.method.clone(),
            self.url_for(&probe.path),
            &probe.path,
            &headers,
            probe.body.clone(),
            request_time,
            self.target.mpp_public_key.as_ref(),
        )
        .await?;
        self.seen
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(SeenAnswer {
                check: check.to_string(),
                status: outcome.status,
                result_status: outcome.result_status().map(str::to_string),
                result_code: outcome.result_code().map(str::to_string),
                signature_verified: outcome.signature_verified,
                signature_problem: outcome.signature_problem.clone(),
            });
        Ok(outcome)
    }

    /// Sends a probe and hangs up before the answer: Alipay+'s "no answer" (its 8 s timeout,
    /// a dropped connection). The request reaches the MPP whole; what the MPP does with it is
    /// for the retries to find out. Plain `http://` only; `Ok(false)` when the URL is TLS.
    pub async fn send_and_hang_up(&self, probe: &Probe) -> anyhow::Result<bool> {
        use tokio::io::AsyncWriteExt as _;
        let url = self.url_for(&probe.path);
        if url.scheme() != "http" {
            return Ok(false);
        }
        let host = url.host_str().context("the URL has no host")?.to_string();
        let port = url.port_or_known_default().unwrap_or(80);
        let (_, headers) = self.headers(probe)?;
        // Written out by hand on purpose: no client library sends a request and then walks
        // away from its answer.
        let mut head = format!(
            "{} {} HTTP/1.1\r\nHost: {host}:{port}\r\nConnection: close\r\nContent-Length: {}\r\n",
            probe.method,
            probe.path,
            probe.body.len()
        );
        for (name, value) in &headers {
            head.push_str(&format!("{name}: {value}\r\n"));
        }
        head.push_str("\r\n");
        let mut stream = tokio::net::TcpStream::connect((host.as_str(), port))
            .await
            .with_context(|| format!("connecting to {host}:{port}"))?;
        stream.write_all(head.as_bytes()).await?;
        stream.write_all(&probe.body).await?;
        stream.flush().await?;
        // Long enough for the request to be read, far shorter than any answer is allowed.
        tokio::time::sleep(Duration::from_millis(20)).await;
        drop(stream);
        Ok(true)
    }

    /// Every answer seen so far.
    pub fn seen(&self) -> Vec<SeenAnswer> {
        self.seen.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::CancelPaymentRequest;
    use crate::protocol::keys::tests::{other_pair, test_pair};
    use crate::protocol::signature::{RequestVerifier, check_request_time};
    use std::io::{BufRead, BufReader, Read, Write};
    use std::net::TcpListener;
    use std::sync::mpsc;

    const CLIENT: &str = "SANDBOX_SIM";
    const RESULT: &[u8] =
        br#"{"result":{"resultCode":"SUCCESS","resultStatus":"S","resultMessage":"success"}}"#;

    /// What the fake MPP saw.
    #[derive(Debug)]
    struct Seen {
        path: String,
        content_type: Option<String>,
        request_time: Option<String>,
        verified: Result<(), crate::protocol::signature::AuthError>,
        parsed: Option<CancelPaymentRequest>,
    }

    /// A one-shot HTTP/1.1 server that plays the MPP: verifies the request with Alipay+'s
    /// public key (the test pair) and signs its answer with `mpp_key`, optionally tampering the
    /// body after signing.
    fn fake_mpp(mpp_key: PrivateKey, tamper: bool) -> (String, mpsc::Receiver<Seen>) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!(
            "http://{}/aps/api/v1/payments/cancelPayment",
            listener.local_addr().unwrap()
        );
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let (stream, _) = listener.accept().unwrap();
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut request_line = String::new();
            reader.read_line(&mut request_line).unwrap();
            let path = request_line.split(' ').nth(1).unwrap().to_string();
            let mut headers = Vec::new();
            loop {
                let mut line = String::new();
                reader.read_line(&mut line).unwrap();
                let line = line.trim_end();
                if line.is_empty() {
                    break;
                }
                let (name, value) = line.split_once(':').unwrap();
                headers.push((name.to_ascii_lowercase(), value.trim().to_string()));
            }
            let get = |n: &str| headers.iter().find(|(k, _)| k == n).map(|(_, v)| v.clone());
            let len: usize = get("content-length").unwrap().parse().unwrap();
            let mut body = vec![0; len];
            reader.read_exact(&mut body).unwrap();

            let verifier =
                RequestVerifier::new(CLIENT, [("1".into(), test_pair().public_key().unwrap())]);
            let (cid, time, sig) = (get("client-id"), get("request-time"), get("signature"));
            let verified = verifier.verify(
                "POST",
                &path,
                cid.as_deref().map(str::as_bytes),
                time.as_deref().map(str::as_bytes),
                sig.as_deref().map(str::as_bytes),
                &body,
            );
            let response_time = "2026-11-21T18:05:08.000+08:00";
            let signer = ResponseSigner::new(mpp_key, "1".into());
            let signature = signer.sign("POST", &path, CLIENT, response_time, RESULT);
            let mut sent = RESULT.to_vec();
            if tamper {
                sent[30] ^= 0x20;
            }
            let mut stream = stream;
            write!(
                stream,
                "HTTP/1.1 200 OK\r\nContent-Type: application/json; charset=UTF-8\r\n\
                 Client-Id: {CLIENT}\r\nResponse-Time: {response_time}\r\nSignature: {signature}\r\n\
                 Content-Length: {}\r\nConnection: close\r\n\r\n",
                sent.len()
            )
            .unwrap();
            stream.write_all(&sent).unwrap();
            stream.flush().unwrap();
            tx.send(Seen {
                path,
                content_type: get("content-type"),
                request_time: time,
                verified,
                parsed: CancelPaymentRequest::parse(&body).ok(),
            })
            .unwrap();
        });
        (url, rx)
    }

    fn sim_request(url: String, mpp_public_key: Option<PublicKey>) -> SimRequest {
        SimRequest {
            url,
            client_id: CLIENT.into(),
            acquirer_id: "acq-1".into(),
            psp_id: "1022188000000000001".into(),
            payment_request_id: "pr-sim-1".into(),
            alipay_private_key: test_pair().private_key().unwrap(),
            key_version: "1".into(),
            mpp_public_key,
        }
    }

    #[tokio::test]
    async fn a_signed_cancel_verifies_on_the_mpp_and_its_answer_verifies_here() {
        let mpp = other_pair();
        let (url, seen) = fake_mpp(mpp.private_key().unwrap(), false);
        let outcome = send_cancel(&sim_request(url, Some(mpp.public_key().unwrap())))
            .await
            .unwrap();
        let seen = seen.recv().unwrap();

        assert_eq!(seen.verified, Ok(()));
        assert_eq!(seen.path, "/aps/api/v1/payments/cancelPayment");
        assert_eq!(
            seen.content_type.as_deref(),
            Some("application/json; charset=UTF-8")
        );
        let parsed = seen
            .parsed
            .expect("the body is a valid cancelPayment request");
        assert_eq!(parsed.payment_request_id, "pr-sim-1");
        assert_eq!(parsed.acquirer_id, "acq-1");
        let time = seen.request_time.unwrap();
        assert!(time.ends_with("+08:00"), "{time}");
        assert_eq!(
            check_request_time(&time, Utc::now(), chrono::Duration::minutes(1)),
            Ok(())
        );

        assert_eq!(outcome.status, 200);
        assert_eq!(outcome.raw_body, RESULT);
        assert_eq!(outcome.result_status(), Some("S"));
        assert_eq!(outcome.result_code(), Some("SUCCESS"));
        assert_eq!(
            outcome.signature_verified,
            Some(true),
            "{:?}",
            outcome.signature_problem
        );
        assert_eq!(outcome.request_time, time);
    }

    #[tokio::test]
    async fn a_tampered_answer_does_not_verify() {
        let mpp = other_pair();
        let (url, _seen) = fake_mpp(mpp.private_key().unwrap(), true);
        let outcome = send_cancel(&sim_request(url, Some(mpp.public_key().unwrap())))
            .await
            .unwrap();
        assert_eq!(outcome.signature_verified, Some(false));
        assert!(outcome.signature_problem.is_some());
    }

    #[tokio::test]
    async fn an_answer_signed_with_another_key_does_not_verify() {
        let (url, _seen) = fake_mpp(test_pair().private_key().unwrap(), false);
        let outcome = send_cancel(&sim_request(url, Some(other_pair().public_key().unwrap())))
            .await
            .unwrap();
        assert_eq!(outcome.signature_verified, Some(false));
    }

    #[tokio::test]
    async fn without_an_mpp_key_the_signature_is_not_checked() {
        let (url, _seen) = fake_mpp(other_pair().private_key().unwrap(), false);
        let outcome = send_cancel(&sim_request(url, None)).await.unwrap();
        assert_eq!(outcome.signature_verified, None);
        assert_eq!(outcome.status, 200);
    }

    #[test]
    fn missing_headers_on_a_signed_answer_count_as_not_verified() {
        let key = test_pair().public_key().unwrap();
        let (v, _) = check_response_signature(Some(&key), "/p", None, Some("t"), Some("x"), b"");
        assert_eq!(v, Some(false));
        let (v, why) = check_response_signature(Some(&key), "/p", Some("c"), Some("t"), None, b"");
        assert_eq!(v, None);
        assert!(why.unwrap().contains("no Signature"));
    }

    #[test]
    fn request_time_is_rfc3339_millis_utc8() {
        let now: DateTime<Utc> = "2026-11-21T16:30:00.5Z".parse().unwrap();
        assert_eq!(alipay_request_time(now), "2026-11-22T00:30:00.500+08:00");
    }

    #[test]
    fn the_signed_path_is_the_url_path() {
        assert_eq!(
            signing_path("https://mpp.example:8443/aps/api/v1/payments/cancelPayment?x=1").unwrap(),
            "/aps/api/v1/payments/cancelPayment"
        );
        assert!(signing_path("not a url").is_err());
    }
}

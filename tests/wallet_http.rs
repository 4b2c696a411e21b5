//! The HTTP wallet adapter against a real HTTP/1.1 server on 127.0.0.1:0, written by hand on
//! tokio so each test controls the answer byte for byte (status, body, delays) and sees exactly
//! what the adapter sent (request line, headers, body).

use chrono::{DateTime, Utc};
use mpp_cancel::domain::{Currency, Money, PaymentStatus};
use mpp_cancel::wallet::http::HttpWalletConfigError;
use mpp_cancel::wallet::{
    CloseOutcome, HttpWallet, HttpWalletConfig, RefundOrder, RefundOutcome, VoidOrder, VoidOutcome,
    Wallet, WalletError,
};
use serde_json::{Value, json};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

// ---------------------------------------------------------------------------------------------
// The test server

/// One request as it arrived.
#[derive(Debug, Clone)]
struct Seen {
    /// Which TCP connection carried it (0, 1, ... in accept order).
    connection: usize,
    method: String,
    /// The request-target exactly as sent, e.g. `/payments/a%2Fb`.
    target: String,
    /// Names lowercased.
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Seen {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).expect("the adapter sent JSON")
    }
}

/// What the server answers.
#[derive(Debug, Clone)]
struct Reply {
    status: u16,
    body: String,
    extra_headers: Vec<(&'static str, String)>,
    /// Wait before sending anything.
    delay: Duration,
    /// Send the head at once, then wait this long before the body.
    body_delay: Duration,
    /// Announce this Content-Length instead of the body's (to cut a body short).
    content_length: Option<usize>,
}

impl Reply {
    fn new(status: u16, body: impl Into<String>) -> Self {
        Self {
            status,
            body: body.into(),
            extra_headers: Vec::new(),
            delay: Duration::ZERO,
            body_delay: Duration::ZERO,
            content_length: None,
        }
    }

    fn json(status: u16, body: Value) -> Self {
        Self::new(status, body.to_string())
    }

    fn delayed(mut self, delay: Duration) -> Self {
        self.delay = delay;
        self
    }
}

type Handler = dyn Fn(&Seen, usize) -> Reply + Send + Sync;

struct Server {
    addr: std::net::SocketAddr,
    seen: Arc<Mutex<Vec<Seen>>>,
    task: JoinHandle<()>,
}

impl Drop for Server {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Server {
    /// Serves every request with `handler(request, index of the request)`.
    async fn start(handler: impl Fn(&Seen, usize) -> Reply + Send + Sync + 'static) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let handler: Arc<Handler> = Arc::new(handler);
        let task = tokio::spawn({
            let seen = seen.clone();
            async move {
                let connections = AtomicUsize::new(0);
                while let Ok((stream, _)) = listener.accept().await {
                    let connection = connections.fetch_add(1, Ordering::SeqCst);
                    tokio::spawn(serve(stream, connection, seen.clone(), handler.clone()));
                }
            }
        });
        Self { addr, seen, task }
    }

    /// Answers every request the same way.
    async fn always(reply: Reply) -> Self {
        Self::start(move |_, _| reply.clone()).await
    }

    fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }

    fn only_request(&self) -> Seen {
        let seen = self.seen();
        assert_eq!(seen.len(), 1, "exactly one request expected: {seen:?}");
        seen.into_iter().next().unwrap()
    }
}

/// One keep-alive connection: requests in, replies out, until the client hangs up.
async fn serve(
    mut stream: TcpStream,
    connection: usize,
    seen: Arc<Mutex<Vec<Seen>>>,
    handler: Arc<Handler>,
) {
    let mut buffer = Vec::new();
    loop {
        let Some(request) = read_request(&mut stream, &mut buffer, connection).await else {
            return;
        };
        let index = {
            let mut seen = seen.lock().unwrap();
            seen.push(request.clone());
            seen.len() - 1
        };
        let mut reply = handler(&request, index);
        if reply.status == 204 {
            reply.body.clear(); // a 204 has no body, whatever the handler says
        }
        tokio::time::sleep(reply.delay).await;
        let mut head = format!(
            "HTTP/1.1 {} Whatever\r\ncontent-type: application/json\r\ncontent-length: {}\r\n",
            reply.status,
            reply.content_length.unwrap_or(reply.body.len())
        );
        for (name, value) in &reply.extra_headers {
            head.push_str(&format!("{name}: {value}\r\n"));
        }
        head.push_str("\r\n");
        if stream.write_all(head.as_bytes()).await.is_err() {
            return;
        }
        let _ = stream.flush().await;
        tokio::time::sleep(reply.body_delay).await;
        if stream.write_all(reply.body.as_bytes()).await.is_err() {
            return;
        }
        if reply.content_length.is_some() {
            return; // the announced length was a lie: hang up
        }
    }
}

async fn read_request(
    stream: &mut TcpStream,
    buffer: &mut Vec<u8>,
    connection: usize,
) -> Option<Seen> {
    let head_end = loop {
        if let Some(at) = buffer.windows(4).position(|w| w == b"\r\n\r\n") {
            break at;
        }
        let mut chunk = [0u8; 4096];
        let n = stream.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buffer.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8(buffer[..head_end].to_vec()).ok()?;
    let mut lines = head.split("\r\n");
    let mut request_line = lines.next()?.split(' ');
    let method = request_line.next()?.to_owned();
    let target = request_line.next()?.to_owned();
    let headers: Vec<(String, String)> = lines
        .filter_map(|line| line.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    let length: usize = headers
        .iter()
        .find(|(n, _)| n == "content-length")
        .map_or(Some(0), |(_, v)| v.parse().ok())?;
    let body_start = head_end + 4;
    while buffer.len() < body_start + length {
        let mut chunk = [0u8; 4096];
        let n = stream.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buffer.extend_from_slice(&chunk[..n]);
    }
    let body = buffer[body_start..body_start + length].to_vec();
    buffer.drain(..body_start + length);
    Some(Seen {
        connection,
        method,
        target,
        headers,
        body,
    })
}

// ---------------------------------------------------------------------------------------------
// Helpers

const TOKEN: &str = "s3cr3t-t0ken";

fn wallet_at(base_url: &str, token: Option<&str>, timeout: Duration) -> HttpWallet {
    HttpWallet::new(HttpWalletConfig {
        base_url: base_url.to_owned(),
        token: token.map(str::to_owned),
        timeout,
    })
    .expect("valid wallet configuration")
}

fn wallet(server: &Server) -> HttpWallet {
    wallet_at(&server.url(), Some(TOKEN), Duration::from_secs(5))
}

fn jpy(minor_units: i64) -> Money {
    Money::new(minor_units, Currency::parse("JPY").unwrap()).unwrap()
}

fn created_at() -> DateTime<Utc> {
    "2026-11-20T10:15:30Z".parse().unwrap()
}

/// A contract-conforming payment answer.
fn payment_body(id: &str, status: &str) -> Value {
    json!({
        "paymentRequestId": id,
        "paymentId": "wallet-pay-1",
        "status": status,
        "amount": {"value": "1500", "currency": "JPY"},
        "createdAt": "2026-11-20T19:15:30+09:00",
    })
}

fn order() -> RefundOrder {
    RefundOrder {
        refund_id: uuid::Uuid::parse_str("0b7c1c8e-55a4-4c3f-9a8f-3f6f2f4f9a01").unwrap(),
        payment_request_id: "PR-2026-0001".to_owned(),
        payment_id: "wallet-pay-1".to_owned(),
        amount: jpy(1500),
    }
}

fn void_order() -> VoidOrder {
    VoidOrder {
        void_id: uuid::Uuid::parse_str("5d2e8f0a-7c1b-4e6d-8a3f-1b2c3d4e5f60").unwrap(),
        payment_request_id: "PR-2026-0007".to_owned(),
        payment_id: "wallet-pay-7".to_owned(),
        amount: jpy(1500),
    }
}

fn expected_void_request() -> Value {
    json!({
        "voidId": "5d2e8f0a-7c1b-4e6d-8a3f-1b2c3d4e5f60",
        "paymentRequestId": "PR-2026-0007",
        "paymentId": "wallet-pay-7",
        "amount": {"value": "1500", "currency": "JPY"},
        "reason": "ALIPAY_PLUS_CANCEL",
    })
}

fn expected_refund_request() -> Value {
    json!({
        "refundId": "0b7c1c8e-55a4-4c3f-9a8f-3f6f2f4f9a01",
        "paymentRequestId": "PR-2026-0001",
        "paymentId": "wallet-pay-1",
        "amount": {"value": "1500", "currency": "JPY"},
        "reason": "ALIPAY_PLUS_CANCEL",
    })
}

#[track_caller]
fn assert_bad_answer<T: std::fmt::Debug>(result: Result<T, WalletError>, context: &str) {
    match result {
        Err(WalletError::BadAnswer(message)) => {
            assert!(!message.is_empty(), "{context}: empty message");
            assert!(!message.contains(TOKEN), "{context}: token in {message:?}");
        }
        other => panic!("{context}: expected BadAnswer, got {other:?}"),
    }
}

// ---------------------------------------------------------------------------------------------
// GET /payments/{id}

#[tokio::test]
async fn a_found_payment_is_read_in_each_status() {
    for (wire, status) in [
        ("SUCCESS", PaymentStatus::Success),
        ("AUTHORIZED", PaymentStatus::Authorized),
        ("FAILED", PaymentStatus::Failed),
        ("PROCESSING", PaymentStatus::Processing),
    ] {
        let server = Server::always(Reply::json(200, payment_body("PR-1", wire))).await;
        let payment = wallet(&server)
            .payment("PR-1")
            .await
            .unwrap()
            .expect("found");
        assert_eq!(payment.payment_request_id, "PR-1");
        assert_eq!(payment.payment_id, "wallet-pay-1");
        assert_eq!(payment.status, status, "{wire}");
        assert_eq!(payment.amount, jpy(1500));
        assert_eq!(payment.created_at, created_at(), "offset converted to UTC");
        assert_eq!(
            payment.refunded_minor_units, 0,
            "absent refundedAmount is zero"
        );

        let request = server.only_request();
        assert_eq!(request.method, "GET");
        assert_eq!(request.target, "/payments/PR-1");
        assert_eq!(request.header("accept"), Some("application/json"));
        assert!(request.body.is_empty());
    }
}

#[tokio::test]
async fn refunded_amount_is_read_and_absent_null_or_zero_means_zero() {
    let cases = [
        (Some(json!({"value": "500", "currency": "JPY"})), 500),
        (Some(json!({"value": "1500", "currency": "JPY"})), 1500),
        (Some(json!({"value": "0", "currency": "JPY"})), 0),
        (Some(Value::Null), 0),
        (None, 0),
    ];
    for (refunded, expected) in cases {
        let mut body = payment_body("PR-1", "SUCCESS");
        if let Some(refunded) = refunded.clone() {
            body["refundedAmount"] = refunded;
        }
        let server = Server::always(Reply::json(200, body)).await;
        let payment = wallet(&server).payment("PR-1").await.unwrap().unwrap();
        assert_eq!(payment.refunded_minor_units, expected, "{refunded:?}");
    }
}

#[tokio::test]
async fn unknown_fields_in_a_payment_are_ignored() {
    let mut body = payment_body("PR-1", "SUCCESS");
    body["merchant"] = json!({"name": "x"});
    let server = Server::always(Reply::json(200, body)).await;
    let payment = wallet(&server).payment("PR-1").await.unwrap().unwrap();
    assert_eq!(payment.status, PaymentStatus::Success);
}

#[tokio::test]
async fn a_404_lookup_with_the_contract_body_is_an_unknown_payment() {
    let server = Server::always(Reply::json(
        404,
        json!({"code": "PAYMENT_NOT_FOUND", "message": "never seen"}),
    ))
    .await;
    assert_eq!(wallet(&server).payment("PR-404").await.unwrap(), None);
    assert_eq!(server.only_request().target, "/payments/PR-404");
}

#[tokio::test]
async fn any_other_404_lookup_is_an_error_never_unknown() {
    // What a wrong base_url or a proxy answers: a misrouted wallet must give U, never S.
    for body in [
        String::new(),
        "Not Found".to_owned(),
        "<html><body>404 Not Found</body></html>".to_owned(),
        json!({"error": "not found"}).to_string(),
        json!({"code": "NOT_FOUND"}).to_string(),
        json!({"code": "payment_not_found"}).to_string(),
        json!({"code": null}).to_string(),
        json!(["PAYMENT_NOT_FOUND"]).to_string(),
    ] {
        let server = Server::always(Reply::new(404, body.clone())).await;
        assert_bad_answer(wallet(&server).payment("PR-404").await, &body);
    }
}

#[tokio::test]
async fn server_errors_are_transient_unavailable_with_the_status() {
    for status in [500, 502, 503, 429] {
        let server = Server::always(Reply::new(status, "boom")).await;
        let wallet = wallet(&server);
        let lookup = wallet.payment("PR-1").await;
        let close = wallet.close("PR-1").await;
        let refund = wallet.refund(&order()).await;
        let void = wallet.void(&void_order()).await;
        for (what, error) in [
            ("lookup", lookup.map(|_| ()).unwrap_err()),
            ("close", close.map(|_| ()).unwrap_err()),
            ("refund", refund.map(|_| ()).unwrap_err()),
            ("void", void.map(|_| ()).unwrap_err()),
        ] {
            match error {
                WalletError::Unavailable(message) => {
                    assert!(message.contains(&status.to_string()), "{what}: {message}");
                    assert!(message.contains("boom"), "{what}: excerpt in {message}");
                }
                other => panic!("{what} {status}: expected Unavailable, got {other:?}"),
            }
        }
        assert_eq!(server.seen().len(), 4);
    }
}

#[tokio::test]
async fn other_statuses_are_transient_bad_answers() {
    for status in [201, 204, 400, 401, 403, 409, 418] {
        let server = Server::always(Reply::json(status, payment_body("PR-1", "SUCCESS"))).await;
        let wallet = wallet(&server);
        assert_bad_answer(wallet.payment("PR-1").await, &format!("lookup {status}"));
        assert_bad_answer(wallet.close("PR-1").await, &format!("close {status}"));
        assert_bad_answer(wallet.refund(&order()).await, &format!("refund {status}"));
        assert_bad_answer(wallet.void(&void_order()).await, &format!("void {status}"));
    }
}

#[tokio::test]
async fn a_404_outside_the_lookup_is_transient_not_unknown() {
    // Even with the lookup's body: closing an unknown id answers CLOSED by contract.
    for body in [
        String::new(),
        json!({"code": "PAYMENT_NOT_FOUND"}).to_string(),
    ] {
        let server = Server::always(Reply::new(404, body.clone())).await;
        let wallet = wallet(&server);
        assert_bad_answer(wallet.close("PR-1").await, &format!("close 404 {body}"));
        assert_bad_answer(wallet.refund(&order()).await, &format!("refund 404 {body}"));
        assert_bad_answer(
            wallet.void(&void_order()).await,
            &format!("void 404 {body}"),
        );
    }
}

#[tokio::test]
async fn a_redirect_is_not_followed() {
    let server = Server::start(|_, _| {
        let mut reply = Reply::new(302, "");
        reply
            .extra_headers
            .push(("location", "http://127.0.0.1:9/elsewhere".to_owned()));
        reply
    })
    .await;
    assert_bad_answer(wallet(&server).payment("PR-1").await, "302");
    assert_eq!(server.seen().len(), 1, "no second request");
}

#[tokio::test]
async fn error_excerpts_are_capped_and_never_hold_the_token() {
    let body = format!("Authorization: Bearer {TOKEN}\n{}", "x".repeat(10_000));
    let server = Server::always(Reply::new(500, body)).await;
    let error = wallet(&server).payment("PR-1").await.unwrap_err();
    let message = error.to_string();
    assert!(!message.contains(TOKEN), "{message}");
    assert!(message.contains("[redacted]"), "{message}");
    assert!(
        message.chars().count() < 400,
        "capped: {} chars",
        message.len()
    );
    assert!(!message.contains('\n'), "control characters flattened");

    // The token in a field the adapter quotes back is scrubbed too.
    let server = Server::always(Reply::json(200, json!({"status": TOKEN}))).await;
    let error = wallet(&server).close("PR-1").await.unwrap_err();
    assert!(matches!(error, WalletError::BadAnswer(_)));
    assert!(!error.to_string().contains(TOKEN), "{error}");
}

#[tokio::test]
async fn a_slow_wallet_times_out_on_every_call() {
    let server = Server::always(
        Reply::json(200, payment_body("PR-1", "SUCCESS")).delayed(Duration::from_secs(3)),
    )
    .await;
    let wallet = wallet_at(&server.url(), Some(TOKEN), Duration::from_millis(200));

    let started = Instant::now();
    let error = wallet.payment("PR-1").await.unwrap_err();
    assert!(matches!(error, WalletError::Timeout(200)), "{error:?}");
    let error = wallet.close("PR-1").await.unwrap_err();
    assert!(matches!(error, WalletError::Timeout(200)), "{error:?}");
    let error = wallet.refund(&order()).await.unwrap_err();
    assert!(matches!(error, WalletError::Timeout(200)), "{error:?}");
    let error = wallet.void(&void_order()).await.unwrap_err();
    assert!(matches!(error, WalletError::Timeout(200)), "{error:?}");
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "four calls bounded by the timeout, took {:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn the_timeout_covers_a_body_that_trickles_in() {
    let server = Server::start(|_, _| {
        let mut reply = Reply::json(200, payment_body("PR-1", "SUCCESS"));
        reply.body_delay = Duration::from_secs(3);
        reply
    })
    .await;
    let wallet = wallet_at(&server.url(), None, Duration::from_millis(200));
    let started = Instant::now();
    let error = wallet.payment("PR-1").await.unwrap_err();
    assert!(matches!(error, WalletError::Timeout(200)), "{error:?}");
    assert!(started.elapsed() < Duration::from_secs(2));
}

#[tokio::test]
async fn a_body_cut_short_is_transient() {
    let server = Server::start(|_, _| {
        let mut reply = Reply::json(200, payment_body("PR-1", "SUCCESS"));
        reply.content_length = Some(reply.body.len() + 100);
        reply
    })
    .await;
    let error = wallet(&server).payment("PR-1").await.unwrap_err();
    assert!(matches!(error, WalletError::Unavailable(_)), "{error:?}");
}

#[tokio::test]
async fn an_unreachable_wallet_is_unavailable() {
    // Bind then free a port: nothing listens there any more.
    let addr = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap()
    };
    let wallet = wallet_at(
        &format!("http://{addr}"),
        Some(TOKEN),
        Duration::from_secs(2),
    );
    let error = wallet.payment("PR-1").await.unwrap_err();
    match &error {
        WalletError::Unavailable(message) => {
            assert!(message.contains("connect"), "{message}");
            assert!(!message.contains(TOKEN));
        }
        other => panic!("expected Unavailable, got {other:?}"),
    }
}

#[tokio::test]
async fn malformed_payment_answers_are_bad_answers() {
    let raw_bodies = [
        "",
        "not json",
        "<html>oops</html>",
        "{",
        "null",
        "[]",
        // The fields in order, as an array: serde alone would accept it.
        r#"["PR-1","pay-1","SUCCESS",{"value":"1","currency":"JPY"},"2026-11-20T10:15:30Z"]"#,
        "{}",
    ];
    for body in raw_bodies {
        let server = Server::always(Reply::new(200, body)).await;
        assert_bad_answer(wallet(&server).payment("PR-1").await, body);
    }
}

#[tokio::test]
async fn payments_outside_the_contract_are_bad_answers() {
    let amount = |value: Value, currency: &str| json!({"value": value, "currency": currency});
    let mut cases: Vec<(&str, Value)> = Vec::new();
    let with = |field: &str, value: Value| {
        let mut body = payment_body("PR-1", "SUCCESS");
        body[field] = value;
        body
    };
    let without = |field: &str| {
        let mut body = payment_body("PR-1", "SUCCESS");
        body.as_object_mut().unwrap().remove(field);
        body
    };
    cases.push((
        "unknown currency",
        with("amount", amount(json!("100"), "XYZ")),
    ));
    cases.push((
        "lowercase currency",
        with("amount", amount(json!("100"), "jpy")),
    ));
    cases.push((
        "negative value",
        with("amount", amount(json!("-100"), "JPY")),
    ));
    cases.push((
        "decimal value",
        with("amount", amount(json!("15.00"), "JPY")),
    ));
    cases.push((
        "exponent value",
        with("amount", amount(json!("1e3"), "JPY")),
    ));
    cases.push(("empty value", with("amount", amount(json!(""), "JPY"))));
    cases.push(("zero amount", with("amount", amount(json!("0"), "JPY"))));
    cases.push(("numeric value", with("amount", amount(json!(1500), "JPY"))));
    cases.push((
        "value beyond i64",
        with("amount", amount(json!("99999999999999999999"), "JPY")),
    ));
    cases.push(("null amount", with("amount", Value::Null)));
    cases.push(("unknown status", with("status", json!("SUCCEEDED"))));
    cases.push(("lowercase status", with("status", json!("success"))));
    cases.push(("numeric status", with("status", json!(1))));
    cases.push(("bad createdAt", with("createdAt", json!("yesterday"))));
    cases.push((
        "createdAt without zone",
        with("createdAt", json!("2026-11-20T10:15:30")),
    ));
    cases.push(("another payment", with("paymentRequestId", json!("PR-2"))));
    cases.push(("empty paymentId", with("paymentId", json!(""))));
    cases.push(("missing paymentId", without("paymentId")));
    cases.push(("missing status", without("status")));
    cases.push(("missing amount", without("amount")));
    cases.push(("missing createdAt", without("createdAt")));
    cases.push((
        "refunded in another currency",
        with("refundedAmount", amount(json!("100"), "USD")),
    ));
    cases.push((
        "refunded in an unknown currency",
        with("refundedAmount", amount(json!("100"), "XYZ")),
    ));
    cases.push((
        "negative refunded",
        with("refundedAmount", amount(json!("-1"), "JPY")),
    ));
    cases.push((
        "decimal refunded",
        with("refundedAmount", amount(json!("0.5"), "JPY")),
    ));
    cases.push((
        "refunded not an object",
        with("refundedAmount", json!("100")),
    ));
    for (what, body) in cases {
        let server = Server::always(Reply::json(200, body)).await;
        assert_bad_answer(wallet(&server).payment("PR-1").await, what);
    }
}

#[tokio::test]
async fn an_oversized_answer_is_refused() {
    let mut body = payment_body("PR-1", "SUCCESS");
    body["padding"] = json!("x".repeat(200_000));
    let server = Server::always(Reply::json(200, body)).await;
    assert_bad_answer(wallet(&server).payment("PR-1").await, "200 KB body");
}

// ---------------------------------------------------------------------------------------------
// POST /payments/{id}/close

#[tokio::test]
async fn close_reads_each_status() {
    for (wire, outcome) in [
        ("CLOSED", CloseOutcome::Closed),
        ("ALREADY_SUCCEEDED", CloseOutcome::AlreadySucceeded),
        ("ALREADY_AUTHORIZED", CloseOutcome::AlreadyAuthorized),
        ("ALREADY_FAILED", CloseOutcome::AlreadyFailed),
        ("PENDING", CloseOutcome::Pending),
    ] {
        let server = Server::always(Reply::json(200, json!({"status": wire, "extra": 1}))).await;
        assert_eq!(
            wallet(&server).close("PR-1").await.unwrap(),
            outcome,
            "{wire}"
        );
        let request = server.only_request();
        assert_eq!(request.method, "POST");
        assert_eq!(request.target, "/payments/PR-1/close");
        assert_eq!(request.header("authorization"), Some("Bearer s3cr3t-t0ken"));
    }
}

#[tokio::test]
async fn close_answers_outside_the_contract_are_bad_answers() {
    for body in [
        r#"{"status":"OPEN"}"#,
        r#"{"status":"closed"}"#,
        r#"{"status":null}"#,
        r#"{"status":3}"#,
        r#"{}"#,
        r#"["CLOSED"]"#,
        "CLOSED",
        "",
    ] {
        let server = Server::always(Reply::new(200, body)).await;
        assert_bad_answer(wallet(&server).close("PR-1").await, body);
    }
}

// ---------------------------------------------------------------------------------------------
// POST /refunds

#[tokio::test]
async fn refund_sends_the_contract_body_and_reads_each_status() {
    let cases: Vec<(Value, RefundOutcome)> = vec![
        (
            json!({
                "status": "SUCCEEDED",
                "reference": "RF-9",
                "amount": {"value": "1500", "currency": "JPY"},
            }),
            RefundOutcome::Succeeded {
                amount: Some(jpy(1500)),
                reference: Some("RF-9".to_owned()),
            },
        ),
        (
            json!({"status": "SUCCEEDED", "reference": null, "message": null,
                   "amount": {"value": "1500", "currency": "JPY"}}),
            RefundOutcome::Succeeded {
                amount: Some(jpy(1500)),
                reference: None,
            },
        ),
        // A partial refund is passed on as stated: the engine detects the mismatch.
        (
            json!({"status": "SUCCEEDED", "amount": {"value": "500", "currency": "JPY"}}),
            RefundOutcome::Succeeded {
                amount: Some(jpy(500)),
                reference: None,
            },
        ),
        (
            json!({"status": "PENDING", "reference": "RF-9"}),
            RefundOutcome::Pending,
        ),
        (
            json!({"status": "FAILED", "message": "account closed"}),
            RefundOutcome::Failed {
                reason: "account closed".to_owned(),
            },
        ),
    ];
    for (answer, outcome) in cases {
        let server = Server::always(Reply::json(200, answer.clone())).await;
        assert_eq!(
            wallet(&server).refund(&order()).await.unwrap(),
            outcome,
            "{answer}"
        );
        let request = server.only_request();
        assert_eq!(request.method, "POST");
        assert_eq!(request.target, "/refunds");
        assert_eq!(request.header("content-type"), Some("application/json"));
        assert_eq!(request.json(), expected_refund_request());
    }
}

#[tokio::test]
async fn a_refusal_without_a_message_still_has_a_reason() {
    let server = Server::always(Reply::json(200, json!({"status": "FAILED"}))).await;
    match wallet(&server).refund(&order()).await.unwrap() {
        RefundOutcome::Failed { reason } => assert!(!reason.is_empty()),
        other => panic!("expected Failed, got {other:?}"),
    }

    let long = "m".repeat(5_000);
    let server = Server::always(Reply::json(
        200,
        json!({"status": "FAILED", "message": long}),
    ))
    .await;
    match wallet(&server).refund(&order()).await.unwrap() {
        RefundOutcome::Failed { reason } => {
            assert!(reason.starts_with("mmm"));
            assert!(reason.chars().count() <= 201, "capped: {}", reason.len());
        }
        other => panic!("expected Failed, got {other:?}"),
    }
}

#[tokio::test]
async fn refund_answers_outside_the_contract_are_bad_answers() {
    let cases = [
        // SUCCEEDED must say what was refunded (also on a deduplicated repeat).
        json!({"status": "SUCCEEDED"}),
        json!({"status": "SUCCEEDED", "reference": "RF-9"}),
        json!({"status": "SUCCEEDED", "amount": null}),
        json!({"status": "DONE"}),
        json!({"status": "succeeded"}),
        json!({"reference": "RF-9"}),
        json!({"status": "SUCCEEDED", "amount": {"value": "15.00", "currency": "JPY"}}),
        json!({"status": "SUCCEEDED", "amount": {"value": "1500", "currency": "YEN"}}),
        json!({"status": "SUCCEEDED", "amount": {"value": 1500, "currency": "JPY"}}),
        json!({"status": "SUCCEEDED", "reference": 42}),
        json!({"status": "FAILED", "message": ["no"]}),
        json!(["SUCCEEDED"]),
    ];
    for answer in cases {
        let server = Server::always(Reply::json(200, answer.clone())).await;
        assert_bad_answer(wallet(&server).refund(&order()).await, &answer.to_string());
    }
}

#[tokio::test]
async fn wallet_identifiers_that_cannot_be_stored_are_bad_answers() {
    let long = "R".repeat(129);
    for bad in [
        "PAY\u{0}1",
        "PAY\n1",
        "PAY\u{1b}1",
        "PAY\u{85}1",
        long.as_str(),
    ] {
        let mut body = payment_body("PR-1", "SUCCESS");
        body["paymentId"] = json!(bad);
        let server = Server::always(Reply::json(200, body)).await;
        assert_bad_answer(wallet(&server).payment("PR-1").await, bad);

        // A refund that succeeded with such a reference is still money that moved: passed on
        // (bounded) for the engine to record as moved and hand to a person, never an error
        // that would order it again.
        let server = Server::always(Reply::json(
            200,
            json!({"status": "SUCCEEDED", "reference": bad,
                   "amount": {"value": "1500", "currency": "JPY"}}),
        ))
        .await;
        match wallet(&server).refund(&order()).await {
            Ok(RefundOutcome::Succeeded {
                amount: Some(amount),
                reference: Some(reference),
            }) => {
                assert_eq!(amount, jpy(1500));
                assert!(
                    reference.chars().count() <= 129 && bad.starts_with(&reference),
                    "{bad:?} -> {reference:?}"
                );
                assert!(
                    mpp_cancel::domain::untrusted::identifier("reference", &reference).is_err(),
                    "still refused by the engine: {reference:?}"
                );
            }
            other => panic!("{bad:?}: expected Succeeded, got {other:?}"),
        }
    }
    // At the limit: accepted as sent.
    let fits = "R".repeat(128);
    let mut body = payment_body("PR-1", "SUCCESS");
    body["paymentId"] = json!(fits);
    let server = Server::always(Reply::json(200, body)).await;
    let payment = wallet(&server).payment("PR-1").await.unwrap().unwrap();
    assert_eq!(payment.payment_id, fits);
}

#[tokio::test]
async fn a_refusal_message_is_cleaned_so_it_can_be_stored() {
    let server = Server::always(Reply::json(
        200,
        json!({"status": "FAILED", "message": "account\u{0}closed\nsee\u{1b}[31m ops"}),
    ))
    .await;
    match wallet(&server).refund(&order()).await.unwrap() {
        RefundOutcome::Failed { reason } => {
            assert!(!reason.chars().any(char::is_control), "{reason:?}");
            assert!(reason.starts_with("account closed see"), "{reason:?}");
        }
        other => panic!("expected Failed, got {other:?}"),
    }
}

#[tokio::test]
async fn retries_send_the_same_refund_id_and_body() {
    // As the engine would: a 500, a timeout, a PENDING, then the answer.
    let server = Server::start(|_, index| match index {
        0 => Reply::new(500, "try later"),
        1 => Reply::json(
            200,
            json!({"status": "SUCCEEDED", "amount": {"value": "1500", "currency": "JPY"}}),
        )
        .delayed(Duration::from_secs(2)),
        2 => Reply::json(200, json!({"status": "PENDING"})),
        _ => Reply::json(
            200,
            json!({"status": "SUCCEEDED", "reference": "RF-1",
                   "amount": {"value": "1500", "currency": "JPY"}}),
        ),
    })
    .await;
    let wallet = wallet_at(&server.url(), Some(TOKEN), Duration::from_millis(300));
    let order = order();
    assert!(matches!(
        wallet.refund(&order).await,
        Err(WalletError::Unavailable(_))
    ));
    assert!(matches!(
        wallet.refund(&order).await,
        Err(WalletError::Timeout(300))
    ));
    assert_eq!(wallet.refund(&order).await.unwrap(), RefundOutcome::Pending);
    assert_eq!(
        wallet.refund(&order).await.unwrap(),
        RefundOutcome::Succeeded {
            amount: Some(jpy(1500)),
            reference: Some("RF-1".to_owned())
        }
    );
    let seen = server.seen();
    assert_eq!(seen.len(), 4);
    for request in &seen {
        assert_eq!(request.target, "/refunds");
        assert_eq!(request.json(), expected_refund_request());
        assert_eq!(
            request.json()["refundId"],
            json!(order.refund_id.to_string())
        );
    }
}

// ---------------------------------------------------------------------------------------------
// POST /payments/{id}/void

#[tokio::test]
async fn void_sends_the_contract_body_and_reads_each_status() {
    let cases: Vec<(Value, VoidOutcome)> = vec![
        (
            json!({"status": "VOIDED", "reference": "VD-9"}),
            VoidOutcome::Voided {
                reference: Some("VD-9".to_owned()),
            },
        ),
        // No reference, a null one or an empty one: voided all the same, nothing to record.
        (
            json!({"status": "VOIDED"}),
            VoidOutcome::Voided { reference: None },
        ),
        (
            json!({"status": "VOIDED", "reference": null, "message": null}),
            VoidOutcome::Voided { reference: None },
        ),
        (
            json!({"status": "VOIDED", "reference": ""}),
            VoidOutcome::Voided { reference: None },
        ),
        (
            json!({"status": "PENDING", "reference": "VD-9"}),
            VoidOutcome::Pending,
        ),
        (
            json!({"status": "FAILED", "message": "card issuer refused the release"}),
            VoidOutcome::Failed {
                reason: "card issuer refused the release".to_owned(),
            },
        ),
        (
            json!({"status": "ALREADY_CAPTURED", "reference": "CAP-1", "extra": 1}),
            VoidOutcome::AlreadyCaptured,
        ),
    ];
    for (answer, outcome) in cases {
        let server = Server::always(Reply::json(200, answer.clone())).await;
        assert_eq!(
            wallet(&server).void(&void_order()).await.unwrap(),
            outcome,
            "{answer}"
        );
        let request = server.only_request();
        assert_eq!(request.method, "POST");
        assert_eq!(request.target, "/payments/PR-2026-0007/void");
        assert_eq!(request.header("content-type"), Some("application/json"));
        assert_eq!(request.header("accept"), Some("application/json"));
        assert_eq!(request.header("authorization"), Some("Bearer s3cr3t-t0ken"));
        assert_eq!(request.json(), expected_void_request());
    }
}

#[tokio::test]
async fn a_void_refusal_always_has_a_reason_fit_to_store() {
    let reason = |answer: Value| async move {
        let server = Server::always(Reply::json(200, answer)).await;
        match wallet(&server).void(&void_order()).await.unwrap() {
            VoidOutcome::Failed { reason } => reason,
            other => panic!("expected Failed, got {other:?}"),
        }
    };
    // No message, a null one, or one that is only blanks: a default text, never an empty one.
    for answer in [
        json!({"status": "FAILED"}),
        json!({"status": "FAILED", "message": null}),
        json!({"status": "FAILED", "message": ""}),
        json!({"status": "FAILED", "message": " \n\t "}),
    ] {
        let reason = reason(answer.clone()).await;
        assert!(reason.contains("without a message"), "{answer}: {reason:?}");
    }
    // Control characters flattened, so it can be written (NUL cannot be, in PostgreSQL).
    let cleaned =
        reason(json!({"status": "FAILED", "message": "hold\u{0}kept\nsee\u{1b}[31m ops"})).await;
    assert!(!cleaned.chars().any(char::is_control), "{cleaned:?}");
    assert!(cleaned.starts_with("hold kept see"), "{cleaned:?}");
    // Capped.
    let long = reason(json!({"status": "FAILED", "message": "m".repeat(5_000)})).await;
    assert!(long.starts_with("mmm"));
    assert!(long.chars().count() <= 201, "capped: {}", long.len());
    // The token, quoted back by a careless wallet, is scrubbed.
    let quoted =
        reason(json!({"status": "FAILED", "message": format!("bad Bearer {TOKEN}")})).await;
    assert!(!quoted.contains(TOKEN), "{quoted:?}");
    assert!(quoted.contains("[redacted]"), "{quoted:?}");
}

#[tokio::test]
async fn void_answers_outside_the_contract_are_bad_answers() {
    let raw_bodies = [
        r#"{"status":"CANCELLED"}"#,
        r#"{"status":"voided"}"#,
        r#"{"status":"SUCCEEDED"}"#,
        r#"{"status":"CAPTURED"}"#,
        r#"{"status":null}"#,
        r#"{"status":3}"#,
        r#"{"reference":"VD-9"}"#,
        r#"{"status":"VOIDED","reference":42}"#,
        r#"{"status":"FAILED","message":["no"]}"#,
        r#"{}"#,
        r#"["VOIDED"]"#,
        "VOIDED",
        "<html>oops</html>",
        "{",
        "",
    ];
    for body in raw_bodies {
        let server = Server::always(Reply::new(200, body)).await;
        assert_bad_answer(wallet(&server).void(&void_order()).await, body);
    }
}

#[tokio::test]
async fn void_references_that_cannot_be_stored_are_passed_on_as_voided() {
    let long = "V".repeat(129);
    for bad in [
        "VD\u{0}1",
        "VD\n1",
        "VD\u{1b}1",
        "VD\u{7f}1",
        "VD\u{85}1",
        long.as_str(),
    ] {
        // The hold was released: passed on for the engine to record (manual review), never a
        // transient error.
        let server = Server::always(Reply::json(
            200,
            json!({"status": "VOIDED", "reference": bad}),
        ))
        .await;
        match wallet(&server).void(&void_order()).await {
            Ok(VoidOutcome::Voided {
                reference: Some(reference),
            }) => assert!(bad.starts_with(&reference), "{bad:?} -> {reference:?}"),
            other => panic!("{bad:?}: expected Voided, got {other:?}"),
        }
    }
    // At the limit: accepted as sent, never altered.
    let fits = "V".repeat(128);
    let server = Server::always(Reply::json(
        200,
        json!({"status": "VOIDED", "reference": fits}),
    ))
    .await;
    assert_eq!(
        wallet(&server).void(&void_order()).await.unwrap(),
        VoidOutcome::Voided {
            reference: Some(fits)
        }
    );
}

#[tokio::test]
async fn retries_send_the_same_void_id_and_body() {
    // As the engine would: a 503, a timeout, a PENDING, then the answer.
    let server = Server::start(|_, index| match index {
        0 => Reply::new(503, "busy"),
        1 => Reply::json(200, json!({"status": "VOIDED"})).delayed(Duration::from_secs(2)),
        2 => Reply::json(200, json!({"status": "PENDING"})),
        _ => Reply::json(200, json!({"status": "VOIDED", "reference": "VD-1"})),
    })
    .await;
    let wallet = wallet_at(&server.url(), Some(TOKEN), Duration::from_millis(300));
    let order = void_order();
    assert!(matches!(
        wallet.void(&order).await,
        Err(WalletError::Unavailable(_))
    ));
    assert!(matches!(
        wallet.void(&order).await,
        Err(WalletError::Timeout(300))
    ));
    assert_eq!(wallet.void(&order).await.unwrap(), VoidOutcome::Pending);
    assert_eq!(
        wallet.void(&order).await.unwrap(),
        VoidOutcome::Voided {
            reference: Some("VD-1".to_owned())
        }
    );
    let seen = server.seen();
    assert_eq!(seen.len(), 4);
    for request in &seen {
        assert_eq!(request.target, "/payments/PR-2026-0007/void");
        assert_eq!(request.json(), expected_void_request());
        assert_eq!(
            request.json()["voidId"],
            json!(order.void_id.hyphenated().to_string())
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Authentication, URLs, connections

#[tokio::test]
async fn the_bearer_token_is_sent_only_when_configured() {
    let server = Server::always(Reply::json(200, payment_body("PR-1", "SUCCESS"))).await;
    let with_token = wallet_at(&server.url(), Some(TOKEN), Duration::from_secs(5));
    let without_token = wallet_at(&server.url(), None, Duration::from_secs(5));
    with_token.payment("PR-1").await.unwrap();
    without_token.payment("PR-1").await.unwrap();
    let seen = server.seen();
    assert_eq!(seen[0].header("authorization"), Some("Bearer s3cr3t-t0ken"));
    assert_eq!(seen[1].header("authorization"), None);

    // Every operation carries it.
    let server = Server::always(Reply::json(200, json!({"status": "PENDING"}))).await;
    let wallet = wallet(&server);
    wallet.close("PR-1").await.unwrap();
    wallet.refund(&order()).await.unwrap();
    wallet.void(&void_order()).await.unwrap();
    let seen = server.seen();
    assert_eq!(seen.len(), 3);
    for request in seen {
        assert_eq!(request.header("authorization"), Some("Bearer s3cr3t-t0ken"));
    }
}

#[tokio::test]
async fn debug_output_never_shows_the_token() {
    let config = HttpWalletConfig {
        base_url: "http://127.0.0.1:1".to_owned(),
        token: Some(TOKEN.to_owned()),
        timeout: Duration::from_secs(1),
    };
    let config_debug = format!("{config:?}");
    let wallet = HttpWallet::new(config).unwrap();
    let wallet_debug = format!("{wallet:?}");
    for debug in [config_debug, wallet_debug] {
        assert!(!debug.contains(TOKEN), "{debug}");
        assert!(debug.contains("[redacted]"), "{debug}");
        assert!(debug.contains("127.0.0.1:1"), "{debug}");
    }
}

#[tokio::test]
async fn ids_are_percent_encoded_as_one_path_segment() {
    let cases = [
        ("a/b", "a%2Fb"),
        ("with space", "with%20space"),
        ("ünïcødé-€", "%C3%BCn%C3%AFc%C3%B8d%C3%A9-%E2%82%AC"),
        ("q?x=1#frag", "q%3Fx%3D1%23frag"),
        ("100%", "100%25"),
        ("a+b&c;d:e@f", "a%2Bb%26c%3Bd%3Ae%40f"),
        ("../admin", "..%2Fadmin"),
        ("unreserved-._~AZaz09", "unreserved-._~AZaz09"),
        ("...", "..."),
    ];
    for (id, encoded) in cases {
        let server = Server::start(move |request, _| {
            if request.target.ends_with("/close") {
                Reply::json(200, json!({"status": "CLOSED"}))
            } else if request.target.ends_with("/void") {
                Reply::json(200, json!({"status": "VOIDED"}))
            } else {
                Reply::json(200, payment_body(id, "PROCESSING"))
            }
        })
        .await;
        let wallet = wallet(&server);
        let payment = wallet.payment(id).await.unwrap().unwrap();
        assert_eq!(payment.payment_request_id, id);
        assert_eq!(wallet.close(id).await.unwrap(), CloseOutcome::Closed);
        let void = VoidOrder {
            payment_request_id: id.to_owned(),
            ..void_order()
        };
        assert_eq!(
            wallet.void(&void).await.unwrap(),
            VoidOutcome::Voided { reference: None }
        );
        let seen = server.seen();
        assert_eq!(seen[0].target, format!("/payments/{encoded}"), "{id:?}");
        assert_eq!(
            seen[1].target,
            format!("/payments/{encoded}/close"),
            "{id:?}"
        );
        assert_eq!(
            seen[2].target,
            format!("/payments/{encoded}/void"),
            "{id:?}"
        );
        assert_eq!(seen[2].json()["paymentRequestId"], json!(id), "{id:?}");
    }
}

#[tokio::test]
async fn ids_that_are_dot_segments_are_never_sent() {
    let server = Server::always(Reply::json(200, json!({"status": "CLOSED"}))).await;
    let wallet = wallet(&server);
    for id in ["", ".", ".."] {
        assert!(wallet.payment(id).await.is_err(), "{id:?}");
        assert!(wallet.close(id).await.is_err(), "{id:?}");
        let void = VoidOrder {
            payment_request_id: id.to_owned(),
            ..void_order()
        };
        assert!(wallet.void(&void).await.is_err(), "{id:?}");
    }
    assert!(
        server.seen().is_empty(),
        "nothing was sent: {:?}",
        server.seen()
    );
}

#[tokio::test]
async fn base_urls_with_or_without_slash_and_prefix() {
    let server = Server::always(Reply::json(200, json!({"status": "PENDING"}))).await;
    let cases = [
        (server.url(), "/payments/PR-1/close"),
        (format!("{}/", server.url()), "/payments/PR-1/close"),
        (
            format!("{}/wallet/v1", server.url()),
            "/wallet/v1/payments/PR-1/close",
        ),
        (
            format!("{}/wallet/v1/", server.url()),
            "/wallet/v1/payments/PR-1/close",
        ),
    ];
    for (base, _) in &cases {
        let wallet = wallet_at(base, None, Duration::from_secs(5));
        wallet.close("PR-1").await.unwrap();
        wallet.refund(&order()).await.unwrap();
    }
    let targets: Vec<String> = server.seen().into_iter().map(|s| s.target).collect();
    let expected: Vec<String> = cases
        .iter()
        .flat_map(|(_, close)| {
            let refunds = close.replace("payments/PR-1/close", "refunds");
            [close.to_string(), refunds]
        })
        .collect();
    assert_eq!(targets, expected);
}

#[tokio::test]
async fn one_client_reuses_its_connection() {
    let server = Server::always(Reply::json(200, payment_body("PR-1", "SUCCESS"))).await;
    let wallet = wallet(&server);
    for _ in 0..3 {
        wallet.payment("PR-1").await.unwrap();
    }
    // Clones share the pool.
    wallet.clone().payment("PR-1").await.unwrap();
    let connections: Vec<usize> = server.seen().iter().map(|s| s.connection).collect();
    assert_eq!(connections, vec![0, 0, 0, 0]);
}

#[tokio::test]
async fn configuration_is_checked_up_front() {
    let config = |base_url: &str, token: Option<&str>, timeout_ms: u64| HttpWalletConfig {
        base_url: base_url.to_owned(),
        token: token.map(str::to_owned),
        timeout: Duration::from_millis(timeout_ms),
    };
    for base in [
        "",
        "not a url",
        "ftp://h/",
        "http://user:pw@h/",
        "http://h/?x=1",
        "/relative",
    ] {
        let error = HttpWallet::new(config(base, None, 1000)).unwrap_err();
        assert!(
            matches!(error, HttpWalletConfigError::BaseUrl(_)),
            "{base:?}: {error:?}"
        );
        assert!(!error.to_string().contains("pw"), "{error}");
    }
    assert_eq!(
        HttpWallet::new(config("http://h", None, 0)).unwrap_err(),
        HttpWalletConfigError::Timeout
    );
    for token in ["", "line\nbreak", "nul\0"] {
        let error = HttpWallet::new(config("http://h", Some(token), 1000)).unwrap_err();
        assert_eq!(error, HttpWalletConfigError::Token, "{token:?}");
    }
    assert!(HttpWallet::new(config("https://wallet.example/api/", Some(TOKEN), 1000)).is_ok());
}

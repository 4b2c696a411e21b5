//! End to end with no Rust on the MPP's side: the `mpp-cancel` binary serves with
//! `wallet.kind = "http"` in front of a wallet server that speaks the adapter contract, a cancel
//! is sent with curl, and the refund arrives at the wallet server, once, for the full amount; for
//! an authorization, the void arrives once (one voidId across retries) and nothing is refunded,
//! unless the wallet says the hold was captured meanwhile: then the full amount is refunded once.

mod common;

use actix_web::{App, HttpRequest, HttpResponse, HttpServer, web};
use common::{ACQUIRER_ID, PSP_ID, ServiceProcess, fresh_database};
use serde_json::{Value, json};
use std::collections::HashMap;
use std::process::Command;
use std::sync::Mutex;
use std::time::Duration;

const WALLET_TOKEN: &str = "wallet-secret-token";

/// The MPP's ledger, as a tiny HTTP server: its payments, and every refund and void request it
/// receives.
#[derive(Default)]
struct Ledger {
    payments: Mutex<HashMap<String, Value>>,
    refunds: Mutex<Vec<Value>>,
    /// Fail the first refund calls with a 503, as a busy ledger would.
    failures_left: Mutex<u32>,
    /// Every void request, as received (failed ones included).
    voids: Mutex<Vec<Value>>,
    /// voidId -> the answer given: the ledger dedupes on it, as the contract says.
    void_answers: Mutex<HashMap<String, Value>>,
    /// Fail the first void calls with a 503.
    void_failures_left: Mutex<u32>,
    /// The hold is captured before the void arrives: the void answers ALREADY_CAPTURED.
    captured_before_void: Mutex<bool>,
    /// With `captured_before_void`: the merchant captured only this (and refunded part of it):
    /// (amount, refundedAmount) as the lookup then reports them.
    partial_capture: Mutex<Option<(Value, Value)>>,
    /// The reference a SUCCEEDED refund answer carries (default `LEDGER-1`).
    refund_reference: Mutex<Option<String>>,
}

fn authorized(req: &HttpRequest) -> bool {
    req.headers()
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        == Some(&format!("Bearer {WALLET_TOKEN}"))
}

async fn payment(
    req: HttpRequest,
    id: web::Path<String>,
    ledger: web::Data<Ledger>,
) -> HttpResponse {
    if !authorized(&req) {
        return HttpResponse::Unauthorized().finish();
    }
    match ledger.payments.lock().unwrap().get(id.as_str()) {
        Some(p) => HttpResponse::Ok().json(p),
        None => HttpResponse::NotFound().json(json!({"code": "PAYMENT_NOT_FOUND"})),
    }
}

async fn close(req: HttpRequest, id: web::Path<String>, ledger: web::Data<Ledger>) -> HttpResponse {
    if !authorized(&req) {
        return HttpResponse::Unauthorized().finish();
    }
    // The contract: an id the ledger never saw is closed (and refused by a later pay).
    let status = match ledger.payments.lock().unwrap().get(id.as_str()) {
        None => "CLOSED",
        Some(p) if p["status"] == "AUTHORIZED" => "ALREADY_AUTHORIZED",
        Some(p) if p["status"] == "FAILED" => "ALREADY_FAILED",
        Some(_) => "ALREADY_SUCCEEDED",
    };
    HttpResponse::Ok().json(json!({"status": status}))
}

async fn void(
    req: HttpRequest,
    id: web::Path<String>,
    body: web::Json<Value>,
    ledger: web::Data<Ledger>,
) -> HttpResponse {
    if !authorized(&req) {
        return HttpResponse::Unauthorized().finish();
    }
    ledger.voids.lock().unwrap().push(body.0.clone());
    {
        let mut failures = ledger.void_failures_left.lock().unwrap();
        if *failures > 0 {
            *failures -= 1;
            return HttpResponse::ServiceUnavailable().body("busy");
        }
    }
    let void_id = body["voidId"].as_str().unwrap_or_default().to_owned();
    let mut answers = ledger.void_answers.lock().unwrap();
    if let Some(earlier) = answers.get(&void_id) {
        return HttpResponse::Ok().json(earlier);
    }
    let mut payments = ledger.payments.lock().unwrap();
    let answer = match payments.get_mut(id.as_str()) {
        Some(p) if p["status"] == "AUTHORIZED" => {
            if *ledger.captured_before_void.lock().unwrap() {
                p["status"] = json!("SUCCESS");
                if let Some((amount, refunded)) = ledger.partial_capture.lock().unwrap().clone() {
                    p["amount"] = amount;
                    p["refundedAmount"] = refunded;
                }
                json!({"status": "ALREADY_CAPTURED"})
            } else {
                // Released: the payment took no money.
                p["status"] = json!("FAILED");
                json!({"status": "VOIDED", "reference": format!("VOID-{}", answers.len() + 1)})
            }
        }
        Some(_) => json!({"status": "FAILED", "message": "not an authorization"}),
        None => json!({"status": "FAILED", "message": "unknown payment"}),
    };
    answers.insert(void_id, answer.clone());
    HttpResponse::Ok().json(answer)
}

/// Serves `ledger` on 127.0.0.1 and returns its base URL.
fn start_wallet(ledger: &web::Data<Ledger>) -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let wallet_url = format!("http://{}", listener.local_addr().unwrap());
    let data = ledger.clone();
    let server = HttpServer::new(move || {
        App::new()
            .app_data(data.clone())
            .route("/payments/{id}", web::get().to(payment))
            .route("/payments/{id}/close", web::post().to(close))
            .route("/payments/{id}/void", web::post().to(void))
            .route("/refunds", web::post().to(refund))
    })
    .workers(1)
    .listen(listener)
    .unwrap()
    .run();
    tokio::spawn(server);
    wallet_url
}

/// The binary, serving with the HTTP wallet adapter in front of `wallet_url`.
fn http_wallet_service(db_url: &str, wallet_url: String) -> ServiceProcess {
    ServiceProcess::start(
        db_url,
        &[
            ("MPP_CANCEL__WALLET__KIND", "http".into()),
            ("MPP_CANCEL__WALLET__BASE_URL", wallet_url),
            ("MPP_CANCEL__WALLET__TOKEN", WALLET_TOKEN.into()),
            ("MPP_CANCEL__REFUNDS__BACKOFF_BASE_MS", "20".into()),
        ],
    )
}

/// Sends the cancel of `id` with curl, as an MPP's operator would try it; the parsed answer.
fn cancel_with_curl(service: &ServiceProcess, id: &str) -> Value {
    let body = json!({"acquirerId": ACQUIRER_ID, "pspId": PSP_ID, "paymentRequestId": id});
    let curl = Command::new("curl")
        .args(["-s", "-X", "POST", &service.cancel_url()])
        .args(["-H", "Content-Type: application/json; charset=UTF-8"])
        .args(["-d", &body.to_string()])
        .output()
        .expect("curl runs");
    serde_json::from_slice(&curl.stdout).expect("a JSON answer")
}

/// Polls the cancellation's state until it is `want` (or 10 s pass); the last state read.
async fn state_after(pool: &sqlx::PgPool, id: &str, want: &str) -> String {
    let mut state = String::new();
    for _ in 0..200 {
        state = sqlx::query_scalar("SELECT state FROM cancellations WHERE payment_request_id = $1")
            .bind(id)
            .fetch_one(pool)
            .await
            .unwrap();
        if state == want {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    state
}

/// An AUTHORIZED payment in the ledger, created now (inside the window).
fn authorization(id: &str, payment_id: &str) -> Value {
    json!({
        "paymentRequestId": id, "paymentId": payment_id, "status": "AUTHORIZED",
        "amount": {"value": "7300", "currency": "PHP"},
        "createdAt": chrono::Utc::now().to_rfc3339(),
    })
}

async fn refund(
    req: HttpRequest,
    body: web::Json<Value>,
    ledger: web::Data<Ledger>,
) -> HttpResponse {
    if !authorized(&req) {
        return HttpResponse::Unauthorized().finish();
    }
    ledger.refunds.lock().unwrap().push(body.0.clone());
    let mut failures = ledger.failures_left.lock().unwrap();
    if *failures > 0 {
        *failures -= 1;
        return HttpResponse::ServiceUnavailable().body("busy");
    }
    let reference = ledger
        .refund_reference
        .lock()
        .unwrap()
        .clone()
        .unwrap_or_else(|| "LEDGER-1".into());
    HttpResponse::Ok()
        .json(json!({"status": "SUCCEEDED", "reference": reference, "amount": body["amount"]}))
}

#[tokio::test]
async fn a_cancel_sent_with_curl_is_refunded_at_the_wallet_server() {
    let ledger = web::Data::new(Ledger::default());
    ledger.payments.lock().unwrap().insert(
        "2026112200042".into(),
        json!({
            "paymentRequestId": "2026112200042", "paymentId": "LEDGER-PAY-42", "status": "SUCCESS",
            "amount": {"value": "2500", "currency": "PHP"},
            "createdAt": chrono::Utc::now().to_rfc3339(),
            "refundedAmount": {"value": "0", "currency": "PHP"}
        }),
    );
    *ledger.failures_left.lock().unwrap() = 2;
    let wallet_url = start_wallet(&ledger);

    let (db_url, pool) = fresh_database().await;
    let service = http_wallet_service(&db_url, wallet_url);
    service.wait_until_up().await;

    let answer = cancel_with_curl(&service, "2026112200042");
    assert_eq!(answer["result"]["resultCode"], "SUCCESS", "{answer}");

    let state = state_after(&pool, "2026112200042", "refunded").await;
    assert_eq!(state, "refunded");
    assert!(
        ledger.voids.lock().unwrap().is_empty(),
        "a captured payment is never voided"
    );
    let refunds = ledger.refunds.lock().unwrap().clone();
    assert_eq!(refunds.len(), 3, "two 503s retried, then the success");
    let refund_id = refunds[0]["refundId"].as_str().unwrap().to_owned();
    for r in &refunds {
        assert_eq!(
            r,
            &json!({
                "refundId": refund_id, "paymentRequestId": "2026112200042",
                "paymentId": "LEDGER-PAY-42", "amount": {"value": "2500", "currency": "PHP"},
                "reason": "ALIPAY_PLUS_CANCEL"
            })
        );
    }
    let reference: Option<String> = sqlx::query_scalar(
        "SELECT wallet_reference FROM refunds WHERE payment_request_id = '2026112200042'",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(reference.as_deref(), Some("LEDGER-1"));
}

#[tokio::test]
async fn an_authorization_cancelled_with_curl_is_voided_once_and_never_refunded() {
    let id = "2026112200073";
    let ledger = web::Data::new(Ledger::default());
    ledger
        .payments
        .lock()
        .unwrap()
        .insert(id.into(), authorization(id, "LEDGER-AUTH-73"));
    // A busy ledger first: the retry must carry the same voidId.
    *ledger.void_failures_left.lock().unwrap() = 1;
    let wallet_url = start_wallet(&ledger);
    let (db_url, pool) = fresh_database().await;
    let service = http_wallet_service(&db_url, wallet_url);
    service.wait_until_up().await;

    let answer = cancel_with_curl(&service, id);
    assert_eq!(answer["result"]["resultStatus"], "S", "{answer}");
    assert_eq!(answer["result"]["resultCode"], "SUCCESS", "{answer}");

    let state = state_after(&pool, id, "voided").await;
    assert_eq!(state, "voided", "{}", service.log_text());
    let voids = ledger.voids.lock().unwrap().clone();
    assert_eq!(
        voids.len(),
        2,
        "one 503 retried, then the release: {voids:?}"
    );
    let void_id = voids[0]["voidId"].as_str().unwrap().to_owned();
    assert!(uuid::Uuid::parse_str(&void_id).is_ok(), "{void_id}");
    for v in &voids {
        assert_eq!(
            v,
            &json!({
                "voidId": void_id, "paymentRequestId": id, "paymentId": "LEDGER-AUTH-73",
                "amount": {"value": "7300", "currency": "PHP"}, "reason": "ALIPAY_PLUS_CANCEL"
            })
        );
    }
    assert_eq!(
        ledger.void_answers.lock().unwrap().len(),
        1,
        "one hold released"
    );
    assert!(
        ledger.refunds.lock().unwrap().is_empty(),
        "nothing refunded"
    );
    let (status, stored_id, reference): (String, uuid::Uuid, Option<String>) = sqlx::query_as(
        "SELECT status, void_id, wallet_reference FROM voids WHERE payment_request_id = $1",
    )
    .bind(id)
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(status, "voided");
    assert_eq!(stored_id.hyphenated().to_string(), void_id);
    assert_eq!(reference.as_deref(), Some("VOID-1"));
    let refunds: i64 =
        sqlx::query_scalar("SELECT count(*) FROM refunds WHERE payment_request_id = $1")
            .bind(id)
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(refunds, 0);

    // Alipay+'s retry after the release: the same S, and no further call to the wallet.
    let again = cancel_with_curl(&service, id);
    assert_eq!(again, answer);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(ledger.voids.lock().unwrap().len(), 2);
    assert!(ledger.refunds.lock().unwrap().is_empty());
}

#[tokio::test]
async fn an_authorization_captured_before_its_void_is_refunded_once_in_full() {
    let id = "2026112200074";
    let ledger = web::Data::new(Ledger::default());
    ledger
        .payments
        .lock()
        .unwrap()
        .insert(id.into(), authorization(id, "LEDGER-AUTH-74"));
    *ledger.captured_before_void.lock().unwrap() = true;
    let wallet_url = start_wallet(&ledger);
    let (db_url, pool) = fresh_database().await;
    let service = http_wallet_service(&db_url, wallet_url);
    service.wait_until_up().await;

    let answer = cancel_with_curl(&service, id);
    assert_eq!(answer["result"]["resultCode"], "SUCCESS", "{answer}");

    let state = state_after(&pool, id, "refunded").await;
    assert_eq!(state, "refunded", "{}", service.log_text());
    // Give a wrong second call the time to arrive before counting.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let voids = ledger.voids.lock().unwrap().clone();
    assert_eq!(
        voids.len(),
        1,
        "one void, answered ALREADY_CAPTURED: {voids:?}"
    );
    let refunds = ledger.refunds.lock().unwrap().clone();
    assert_eq!(refunds.len(), 1, "{refunds:?}");
    let refund = &refunds[0];
    assert!(uuid::Uuid::parse_str(refund["refundId"].as_str().unwrap()).is_ok());
    assert_ne!(refund["refundId"], voids[0]["voidId"]);
    assert_eq!(refund["paymentRequestId"], id);
    assert_eq!(refund["paymentId"], "LEDGER-AUTH-74");
    assert_eq!(
        refund["amount"],
        json!({"value": "7300", "currency": "PHP"})
    );
    assert_eq!(refund["reason"], "ALIPAY_PLUS_CANCEL");
    let void_status: String =
        sqlx::query_scalar("SELECT status FROM voids WHERE payment_request_id = $1")
            .bind(id)
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(void_status, "captured");
}

/// A partial capture (issue 18): the hold of 7300 became a charge of 5000, of which the merchant
/// already refunded 1000. The void answers ALREADY_CAPTURED; the binary looks the payment up and
/// refunds what the user was charged, 4000, never the whole authorization.
#[tokio::test]
async fn a_partially_captured_authorization_is_refunded_what_was_charged() {
    let id = "2026112200075";
    let ledger = web::Data::new(Ledger::default());
    ledger
        .payments
        .lock()
        .unwrap()
        .insert(id.into(), authorization(id, "LEDGER-AUTH-75"));
    *ledger.captured_before_void.lock().unwrap() = true;
    *ledger.partial_capture.lock().unwrap() = Some((
        json!({"value": "5000", "currency": "PHP"}),
        json!({"value": "1000", "currency": "PHP"}),
    ));
    let wallet_url = start_wallet(&ledger);
    let (db_url, pool) = fresh_database().await;
    let service = http_wallet_service(&db_url, wallet_url);
    service.wait_until_up().await;

    let answer = cancel_with_curl(&service, id);
    assert_eq!(answer["result"]["resultCode"], "SUCCESS", "{answer}");
    let state = state_after(&pool, id, "refunded").await;
    assert_eq!(state, "refunded", "{}", service.log_text());
    tokio::time::sleep(Duration::from_millis(300)).await;
    let refunds = ledger.refunds.lock().unwrap().clone();
    assert_eq!(refunds.len(), 1, "{refunds:?}");
    assert_eq!(
        refunds[0]["amount"],
        json!({"value": "4000", "currency": "PHP"})
    );
    let status: String = sqlx::query_scalar(
        "SELECT payment_status FROM cancellations WHERE payment_request_id = $1",
    )
    .bind(id)
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(status, "SUCCESS", "not AUTHORIZED beside a refund");
}

/// A refund answered SUCCEEDED with a reference that cannot be stored (issue 18): the money
/// moved, so the row goes to manual review at once with the refund recorded as succeeded, and
/// the refund is never ordered again (it used to be a transient error, re-sent for an hour).
#[tokio::test]
async fn a_success_with_a_reference_that_cannot_be_stored_is_money_moved_not_an_error() {
    let id = "2026112200043";
    let ledger = web::Data::new(Ledger::default());
    ledger.payments.lock().unwrap().insert(
        id.into(),
        json!({
            "paymentRequestId": id, "paymentId": "LEDGER-PAY-43", "status": "SUCCESS",
            "amount": {"value": "2500", "currency": "PHP"},
            "createdAt": chrono::Utc::now().to_rfc3339(),
        }),
    );
    *ledger.refund_reference.lock().unwrap() = Some("LEDGER\u{1}43".into());
    let wallet_url = start_wallet(&ledger);
    let (db_url, pool) = fresh_database().await;
    let service = http_wallet_service(&db_url, wallet_url);
    service.wait_until_up().await;

    let answer = cancel_with_curl(&service, id);
    assert_eq!(answer["result"]["resultCode"], "SUCCESS", "{answer}");
    let state = state_after(&pool, id, "manual_review").await;
    assert_eq!(state, "manual_review", "{}", service.log_text());
    // Time for a retry (backoff 20 ms) to arrive, if there were one.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        ledger.refunds.lock().unwrap().len(),
        1,
        "ordered once, never again"
    );
    let (status, refunded, reference): (String, Option<i64>, Option<String>) = sqlx::query_as(
        "SELECT status, refunded_value, wallet_reference FROM refunds WHERE payment_request_id = $1",
    )
    .bind(id)
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!((status.as_str(), refunded), ("succeeded", Some(2500)));
    assert_eq!(reference, None, "the reference itself is not stored");
    let why: String =
        sqlx::query_scalar("SELECT last_error FROM cancellations WHERE payment_request_id = $1")
            .bind(id)
            .fetch_one(&pool)
            .await
            .unwrap();
    assert!(why.contains("the refund succeeded, but"), "{why}");
}

/// A wallet.base_url that reaches a server, but not the wallet: every path is a plain 404.
/// "Unknown" is only the contract's 404 body, so the cancel is answered U and nothing is stored,
/// where a bare 404 used to read as "never seen" and answer S.
#[tokio::test]
async fn a_misrouted_wallet_answers_u_never_s() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let wallet_url = format!("http://{}/wrong-prefix", listener.local_addr().unwrap());
    let server = HttpServer::new(|| {
        App::new().default_service(web::to(|| async {
            HttpResponse::NotFound()
                .content_type("text/html")
                .body("<html><body>404 Not Found</body></html>")
        }))
    })
    .workers(1)
    .listen(listener)
    .unwrap()
    .run();
    tokio::spawn(server);

    let (db_url, pool) = fresh_database().await;
    let service = ServiceProcess::start(
        &db_url,
        &[
            ("MPP_CANCEL__WALLET__KIND", "http".into()),
            ("MPP_CANCEL__WALLET__BASE_URL", wallet_url),
        ],
    );
    service.wait_until_up().await;

    let body =
        json!({"acquirerId": ACQUIRER_ID, "pspId": PSP_ID, "paymentRequestId": "misrouted-1"});
    let answer: Value = reqwest::Client::new()
        .post(service.cancel_url())
        .header("Content-Type", "application/json")
        .body(body.to_string())
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(answer["result"]["resultStatus"], "U", "{answer}");
    assert_eq!(
        answer["result"]["resultCode"], "UNKNOWN_EXCEPTION",
        "{answer}"
    );
    let decided: i64 =
        sqlx::query_scalar("SELECT count(*) FROM cancellations WHERE result_status IN ('S', 'F')")
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(decided, 0, "nothing decided");
}

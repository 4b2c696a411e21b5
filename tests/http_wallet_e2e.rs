//! End to end with no Rust on the MPP's side: the `mpp-cancel` binary serves with
//! `wallet.kind = "http"` in front of a wallet server that speaks the adapter contract, a cancel
//! is sent with curl, and the refund arrives at the wallet server, once, for the full amount.

mod common;

use actix_web::{App, HttpRequest, HttpResponse, HttpServer, web};
use common::{ACQUIRER_ID, PSP_ID, ServiceProcess, fresh_database};
use serde_json::{Value, json};
use std::collections::HashMap;
use std::process::Command;
use std::sync::Mutex;
use std::time::Duration;

const WALLET_TOKEN: &str = "wallet-secret-token";

/// The MPP's ledger, as a tiny HTTP server: one payment, and every refund request it receives.
#[derive(Default)]
struct Ledger {
    payments: Mutex<HashMap<String, Value>>,
    refunds: Mutex<Vec<Value>>,
    /// Fail the first refund calls with a 503, as a busy ledger would.
    failures_left: Mutex<u32>,
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
    match ledger.payments.lock().unwrap().contains_key(id.as_str()) {
        true => HttpResponse::Ok().json(json!({"status": "ALREADY_SUCCEEDED"})),
        false => HttpResponse::Ok().json(json!({"status": "CLOSED"})),
    }
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
    HttpResponse::Ok()
        .json(json!({"status": "SUCCEEDED", "reference": "LEDGER-1", "amount": body["amount"]}))
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
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let wallet_url = format!("http://{}", listener.local_addr().unwrap());
    let data = ledger.clone();
    let server = HttpServer::new(move || {
        App::new()
            .app_data(data.clone())
            .route("/payments/{id}", web::get().to(payment))
            .route("/payments/{id}/close", web::post().to(close))
            .route("/refunds", web::post().to(refund))
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
            ("MPP_CANCEL__WALLET__TOKEN", WALLET_TOKEN.into()),
            ("MPP_CANCEL__REFUNDS__BACKOFF_BASE_MS", "20".into()),
        ],
    );
    service.wait_until_up().await;

    let body =
        json!({"acquirerId": ACQUIRER_ID, "pspId": PSP_ID, "paymentRequestId": "2026112200042"});
    let curl = Command::new("curl")
        .args(["-s", "-X", "POST", &service.cancel_url()])
        .args(["-H", "Content-Type: application/json; charset=UTF-8"])
        .args(["-d", &body.to_string()])
        .output()
        .expect("curl runs");
    let answer: Value = serde_json::from_slice(&curl.stdout).expect("a JSON answer");
    assert_eq!(answer["result"]["resultCode"], "SUCCESS", "{answer}");

    let mut state = String::new();
    for _ in 0..200 {
        state = sqlx::query_scalar(
            "SELECT state FROM cancellations WHERE payment_request_id = '2026112200042'",
        )
        .fetch_one(&pool)
        .await
        .unwrap();
        if state == "refunded" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(state, "refunded");
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

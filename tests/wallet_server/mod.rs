//! A wallet server speaking DESIGN.md's HTTP wallet contract over an in-memory ledger, for the
//! tests of `wallet-check` and of the OpenAPI document. Each [`Fault`] breaks exactly one rule,
//! the way real wallets get it wrong. It records every request it receives.
#![allow(dead_code)] // each test binary uses its own part

use actix_web::{App, HttpRequest, HttpResponse, HttpServer, web};
use serde_json::{Value, json};
use std::collections::{HashMap, HashSet};
use std::sync::Mutex;
use std::time::Duration;

/// The one rule a test wallet breaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    None,
    /// Every refund call refunds again.
    NoRefundDedupe,
    /// Dedupe by "look, then write" with a gap: concurrent twins both refund.
    RacyRefundDedupe,
    /// 404 for an unknown payment, but without the code.
    NotFoundWithoutCode,
    /// Every unknown path answers like an unknown payment.
    WrongPathLooksUnknown,
    /// Closing an unknown id answers PENDING.
    CloseUnknownNotClosed,
    /// A deduplicated SUCCEEDED repeat leaves out the amount.
    SucceededRepeatWithoutAmount,
    /// Every void call voids again, with a new reference.
    NoVoidDedupe,
    /// Closing an AUTHORIZED payment answers ALREADY_SUCCEEDED, as if the hold were a charge.
    CloseAuthorizedAsSucceeded,
    /// Every answer comes late.
    Slow(Duration),
}

#[derive(Debug, Clone)]
pub struct LedgerPayment {
    pub payment_id: String,
    pub status: &'static str,
    pub amount: i64,
    pub currency: &'static str,
    pub refunded: i64,
}

/// One request as it arrived.
#[derive(Debug, Clone)]
pub struct Seen {
    pub method: String,
    pub path: String,
    pub authorization: Option<String>,
    pub body: Option<Value>,
}

/// The server's state, shared with the test.
#[derive(Default)]
pub struct Ledger {
    pub payments: HashMap<String, LedgerPayment>,
    pub closed: HashSet<String>,
    /// refundId -> the answer given.
    pub refunds: HashMap<String, Value>,
    pub voids: HashMap<String, Value>,
    pub seen: Vec<Seen>,
    /// Every answer given, with the request's method and path.
    pub answers: Vec<(String, String, u16, Value)>,
    counter: u64,
}

struct State {
    ledger: Mutex<Ledger>,
    fault: Fault,
}

pub struct WalletServer {
    pub url: String,
    state: web::Data<State>,
    handle: actix_web::dev::ServerHandle,
}

impl Drop for WalletServer {
    fn drop(&mut self) {
        let handle = self.handle.clone();
        tokio::spawn(async move { handle.stop(false).await });
    }
}

impl WalletServer {
    pub async fn start(fault: Fault) -> Self {
        let state = web::Data::new(State {
            ledger: Mutex::new(Ledger::default()),
            fault,
        });
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let data = state.clone();
        let server = HttpServer::new(move || {
            App::new()
                .app_data(data.clone())
                .app_data(web::JsonConfig::default())
                .route("/payments/{id}", web::get().to(lookup))
                .route("/payments/{id}/close", web::post().to(close))
                .route("/payments/{id}/void", web::post().to(void))
                .route("/refunds", web::post().to(refund))
                .default_service(web::to(no_route))
        })
        .workers(2)
        .disable_signals()
        .listen(listener)
        .unwrap()
        .run();
        let handle = server.handle();
        tokio::spawn(server);
        Self { url, state, handle }
    }

    pub fn add(&self, id: &str, status: &'static str, amount: i64, currency: &'static str) {
        self.state.ledger.lock().unwrap().payments.insert(
            id.to_owned(),
            LedgerPayment {
                payment_id: format!("wallet-{id}"),
                status,
                amount,
                currency,
                refunded: 0,
            },
        );
    }

    pub fn payment(&self, id: &str) -> Option<LedgerPayment> {
        self.state.ledger.lock().unwrap().payments.get(id).cloned()
    }

    pub fn seen(&self) -> Vec<Seen> {
        self.state.ledger.lock().unwrap().seen.clone()
    }

    pub fn answers(&self) -> Vec<(String, String, u16, Value)> {
        self.state.ledger.lock().unwrap().answers.clone()
    }
}

async fn note(req: &HttpRequest, state: &State, body: Option<&Value>) {
    let seen = Seen {
        method: req.method().to_string(),
        path: req.path().to_owned(),
        authorization: req
            .headers()
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned),
        body: body.cloned(),
    };
    state.ledger.lock().unwrap().seen.push(seen);
    if let Fault::Slow(delay) = state.fault {
        tokio::time::sleep(delay).await;
    }
}

fn answer(req: &HttpRequest, state: &State, status: u16, body: Value) -> HttpResponse {
    state.ledger.lock().unwrap().answers.push((
        req.method().to_string(),
        req.path().to_owned(),
        status,
        body.clone(),
    ));
    HttpResponse::build(actix_web::http::StatusCode::from_u16(status).unwrap()).json(body)
}

fn not_found(req: &HttpRequest, state: &State) -> HttpResponse {
    match state.fault {
        Fault::NotFoundWithoutCode => answer(req, state, 404, json!({"error": "not found"})),
        _ => answer(req, state, 404, json!({"code": "PAYMENT_NOT_FOUND"})),
    }
}

fn amount(value: i64, currency: &str) -> Value {
    json!({"value": value.to_string(), "currency": currency})
}

async fn no_route(req: HttpRequest, state: web::Data<State>) -> HttpResponse {
    note(&req, &state, None).await;
    match state.fault {
        Fault::WrongPathLooksUnknown => {
            answer(&req, &state, 404, json!({"code": "PAYMENT_NOT_FOUND"}))
        }
        _ => answer(&req, &state, 404, json!({"error": "no such route"})),
    }
}

async fn lookup(req: HttpRequest, id: web::Path<String>, state: web::Data<State>) -> HttpResponse {
    note(&req, &state, None).await;
    let found = state
        .ledger
        .lock()
        .unwrap()
        .payments
        .get(id.as_str())
        .cloned();
    match found {
        None => not_found(&req, &state),
        Some(p) => {
            let mut body = json!({
                "paymentRequestId": id.as_str(),
                "paymentId": p.payment_id,
                "status": p.status,
                "amount": amount(p.amount, p.currency),
                "createdAt": "2026-11-20T12:00:00+08:00",
            });
            if p.refunded > 0 {
                body["refundedAmount"] = amount(p.refunded, p.currency);
            }
            answer(&req, &state, 200, body)
        }
    }
}

async fn close(req: HttpRequest, id: web::Path<String>, state: web::Data<State>) -> HttpResponse {
    note(&req, &state, None).await;
    let status = {
        let mut ledger = state.ledger.lock().unwrap();
        match ledger.payments.get(id.as_str()) {
            Some(p) => match p.status {
                "SUCCESS" => "ALREADY_SUCCEEDED",
                "AUTHORIZED" if state.fault == Fault::CloseAuthorizedAsSucceeded => {
                    "ALREADY_SUCCEEDED"
                }
                "AUTHORIZED" => "ALREADY_AUTHORIZED",
                "FAILED" => "ALREADY_FAILED",
                _ => "PENDING",
            },
            None if state.fault == Fault::CloseUnknownNotClosed => "PENDING",
            None => {
                ledger.closed.insert(id.to_string());
                "CLOSED"
            }
        }
    };
    answer(&req, &state, 200, json!({"status": status}))
}

async fn refund(req: HttpRequest, body: web::Json<Value>, state: web::Data<State>) -> HttpResponse {
    note(&req, &state, Some(&body)).await;
    let refund_id = body["refundId"].as_str().unwrap_or_default().to_owned();
    let id = body["paymentRequestId"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let dedupes = !matches!(state.fault, Fault::NoRefundDedupe);
    if dedupes {
        let known = state
            .ledger
            .lock()
            .unwrap()
            .refunds
            .get(&refund_id)
            .cloned();
        if let Some(mut earlier) = known {
            if state.fault == Fault::SucceededRepeatWithoutAmount {
                earlier.as_object_mut().unwrap().remove("amount");
            }
            return answer(&req, &state, 200, earlier);
        }
        if state.fault == Fault::RacyRefundDedupe {
            // The gap between the look and the write, where a concurrent twin slips through.
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    let given = {
        let mut ledger = state.ledger.lock().unwrap();
        ledger.counter += 1;
        let reference = format!("rf-{}", ledger.counter);
        let Some(p) = ledger.payments.get_mut(&id) else {
            return answer(
                &req,
                &state,
                200,
                json!({"status": "FAILED", "message": "unknown payment"}),
            );
        };
        p.refunded += p.amount;
        let given = json!({"status": "SUCCEEDED", "amount": amount(p.amount, p.currency), "reference": reference});
        ledger.refunds.insert(refund_id, given.clone());
        given
    };
    answer(&req, &state, 200, given)
}

async fn void(
    req: HttpRequest,
    id: web::Path<String>,
    body: web::Json<Value>,
    state: web::Data<State>,
) -> HttpResponse {
    note(&req, &state, Some(&body)).await;
    let void_id = body["voidId"].as_str().unwrap_or_default().to_owned();
    let given = {
        let mut ledger = state.ledger.lock().unwrap();
        if state.fault != Fault::NoVoidDedupe
            && let Some(earlier) = ledger.voids.get(&void_id)
        {
            earlier.clone()
        } else {
            ledger.counter += 1;
            let reference = format!("vd-{}", ledger.counter);
            match ledger.payments.get_mut(id.as_str()) {
                Some(p) if p.status == "AUTHORIZED" || state.fault == Fault::NoVoidDedupe => {
                    p.status = "FAILED";
                    let given = json!({"status": "VOIDED", "reference": reference});
                    ledger.voids.insert(void_id, given.clone());
                    given
                }
                Some(_) => json!({"status": "FAILED", "message": "not an authorization"}),
                None => json!({"status": "FAILED", "message": "unknown payment"}),
            }
        }
    };
    answer(&req, &state, 200, given)
}

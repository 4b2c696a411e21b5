//! The internal listener (`internal.listen`, never the public port): the guard API over HTTP for
//! MPPs that do not embed the library, and the operator's levers on the refund engine.
//!
//! | method | path | |
//! |---|---|---|
//! | GET  | /healthz | the process is up |
//! | GET  | /readyz | a writable database answers and the migrations are applied (503 with the reason otherwise) |
//! | GET  | /metrics | Prometheus metrics |
//! | GET  | /v1/cancellations/{id} | `{"cancelled": bool, "cancellation": {...}}` or 404 |
//! | GET  | /v1/cancellations?state=manual_review&limit=100 | list by state |
//! | POST | /v1/cancellations/{id}/nudge | work on it now (the payment's outcome changed) |
//! | POST | /v1/cancellations/{id}/requeue | a `manual_review` row back to work |
//! | GET  | /v1/settlement-report?date=YYYY-MM-DD&format=csv\|json | a settlement day's cancellations |
//!
//! Writes need `Authorization: Bearer {internal.token}`; with no token configured they are
//! refused.

use crate::config::Secret;
use crate::domain::{CancellationState, Clock};
use crate::guard::Guard;
use crate::metrics::Metrics;
use crate::report;
use crate::store::{Nudged, Store};
use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse, web};
use serde::Deserialize;
use serde_json::json;
use std::sync::Arc;
use tokio::sync::Notify;

pub struct InternalState {
    pub store: Store,
    pub clock: Arc<dyn Clock>,
    pub token: Option<Secret>,
    /// Wakes this process's refund engine after a nudge or requeue.
    pub wake: Arc<Notify>,
    pub metrics: Arc<Metrics>,
}

pub fn configure(cfg: &mut web::ServiceConfig, state: web::Data<InternalState>) {
    cfg.app_data(state)
        .route("/healthz", web::get().to(healthz))
        .route("/readyz", web::get().to(readyz))
        .route("/metrics", web::get().to(metrics))
        .route("/v1/cancellations", web::get().to(list))
        .route("/v1/cancellations/{id}", web::get().to(show))
        .route("/v1/cancellations/{id}/nudge", web::post().to(nudge))
        .route("/v1/cancellations/{id}/requeue", web::post().to(requeue))
        .route("/v1/settlement-report", web::get().to(settlement_report));
}

async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(json!({"status": "up"}))
}

/// Ready when the database answers and every migration this build knows is applied.
async fn readyz(state: web::Data<InternalState>) -> HttpResponse {
    match state.store.migrations_current().await {
        Ok(true) => HttpResponse::Ok().json(json!({"ready": true})),
        Ok(false) => HttpResponse::ServiceUnavailable()
            .json(json!({"ready": false, "reason": "migrations are not applied"})),
        Err(e) => {
            // A read-only node (a standby before promotion, a demoted primary) is refused at
            // connect time, so the pool only times out: the refusal says why.
            let reason = match state.store.read_only_reason() {
                Some(why) => why,
                None => "database unreachable".to_owned(),
            };
            tracing::warn!(error = %e, reason = %reason, "readiness: no writable database");
            HttpResponse::ServiceUnavailable().json(json!({"ready": false, "reason": reason}))
        }
    }
}

async fn metrics(state: web::Data<InternalState>) -> HttpResponse {
    let body = state.metrics.render(&state.store, state.clock.now()).await;
    HttpResponse::Ok()
        .insert_header((
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        ))
        .body(body)
}

fn unavailable(e: sqlx::Error) -> HttpResponse {
    tracing::error!(error = %e, "internal API: database error");
    HttpResponse::ServiceUnavailable().json(json!({"error": "database unavailable"}))
}

fn bad_request(message: impl Into<String>) -> HttpResponse {
    HttpResponse::BadRequest().json(json!({"error": message.into()}))
}

async fn show(id: web::Path<String>, state: web::Data<InternalState>) -> HttpResponse {
    match Guard::new(state.store.clone()).cancellation(&id).await {
        Ok(Some(record)) => {
            let cancelled = record
                .state
                .parse::<CancellationState>()
                .is_ok_and(CancellationState::is_accepted);
            HttpResponse::Ok().json(json!({"cancelled": cancelled, "cancellation": record}))
        }
        Ok(None) => HttpResponse::NotFound().json(
            json!({"cancelled": false, "error": "no cancellation for this paymentRequestId"}),
        ),
        Err(e) => unavailable(e),
    }
}

#[derive(Deserialize)]
struct ListQuery {
    state: String,
    limit: Option<i64>,
}

async fn list(query: web::Query<ListQuery>, state: web::Data<InternalState>) -> HttpResponse {
    let Ok(wanted) = query.state.parse::<CancellationState>() else {
        return bad_request(format!("unknown state {:?}", query.state));
    };
    let limit = query.limit.unwrap_or(100).clamp(1, 10_000);
    match state.store.in_state(wanted, limit).await {
        Ok(rows) => HttpResponse::Ok().json(json!({"cancellations": rows})),
        Err(e) => unavailable(e),
    }
}

async fn nudge(
    req: HttpRequest,
    id: web::Path<String>,
    state: web::Data<InternalState>,
) -> HttpResponse {
    if let Some(refused) = refuse_unauthorized(&req, &state) {
        return refused;
    }
    match state.store.nudge(&id, state.clock.now()).await {
        Ok(Nudged::NotFound) => HttpResponse::NotFound().json(
            json!({"nudged": false, "action": "not_found", "error": "no cancellation for this paymentRequestId"}),
        ),
        Ok(nudged) => {
            let acted = !matches!(nudged, Nudged::NothingToDo(_));
            if acted {
                state.wake.notify_one();
            }
            let mut body = json!({"nudged": acted, "action": nudged.action()});
            if let Nudged::NothingToDo(s) = nudged {
                body["state"] = json!(s.as_str());
            }
            HttpResponse::Ok().json(body)
        }
        Err(e) => unavailable(e),
    }
}

async fn requeue(
    req: HttpRequest,
    id: web::Path<String>,
    state: web::Data<InternalState>,
) -> HttpResponse {
    if let Some(refused) = refuse_unauthorized(&req, &state) {
        return refused;
    }
    match state
        .store
        .requeue(&id, state.clock.now(), "internal-api")
        .await
    {
        Ok(Some(to)) => {
            state.wake.notify_one();
            HttpResponse::Ok().json(json!({"state": to.as_str()}))
        }
        Ok(None) => HttpResponse::Conflict()
            .json(json!({"error": "no cancellation in manual_review with this paymentRequestId"})),
        Err(e) => unavailable(e),
    }
}

#[derive(Deserialize)]
struct ReportQuery {
    date: String,
    format: Option<String>,
}

async fn settlement_report(
    query: web::Query<ReportQuery>,
    state: web::Data<InternalState>,
) -> HttpResponse {
    let Ok(day) = chrono::NaiveDate::parse_from_str(&query.date, "%Y-%m-%d") else {
        return bad_request("date must be YYYY-MM-DD");
    };
    let Ok(format) = query
        .format
        .as_deref()
        .unwrap_or("json")
        .parse::<report::Format>()
    else {
        return bad_request("format must be csv or json");
    };
    match state.store.settlement_report(day).await {
        Ok(lines) => HttpResponse::Ok()
            .insert_header((header::CONTENT_TYPE, format.content_type()))
            .body(report::render(&lines, format)),
        Err(e) => unavailable(e),
    }
}

/// Writes need the bearer token (compared in constant time): the refusal, if any.
fn refuse_unauthorized(req: &HttpRequest, state: &InternalState) -> Option<HttpResponse> {
    let Some(token) = &state.token else {
        return Some(
            HttpResponse::Forbidden()
                .json(json!({"error": "internal.token is not configured: writes are disabled"})),
        );
    };
    let presented = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("");
    if constant_time_eq(presented.as_bytes(), token.expose().as_bytes()) {
        None
    } else {
        Some(
            HttpResponse::Unauthorized().json(json!({"error": "a valid bearer token is required"})),
        )
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

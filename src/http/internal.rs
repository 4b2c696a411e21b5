//! The internal listener (`internal.listen`, never the public port): the guard API over HTTP for
//! MPPs that do not embed the library, and the operator's levers on the refund engine.
//!
//! | method | path | |
//! |---|---|---|
//! | GET  | /healthz | the process is up |
//! | GET  | /readyz | a writable database answers, the migrations are applied and this instance's clock is within `server.max_clock_skew_ms` of the database's (503 with the reason otherwise) |
//! | GET  | /metrics | Prometheus metrics |
//! | GET  | /v1/cancellations/{id} | `{"cancelled": bool, "cancellation": {...}}` or 404 |
//! | GET  | /v1/cancellations?state=manual_review&limit=100&cursor=... | one page by state, `nextCursor` |
//! | POST | /v1/cancellations/{id}/nudge | work on it now (the payment's outcome changed) |
//! | POST | /v1/cancellations/{id}/requeue | a `manual_review` row back to work |
//! | POST | /v1/cancellations/requeue | `{"state":"manual_review","since"?,"dryRun"?}`: in bulk |
//! | GET  | /v1/settlement-report?date=YYYY-MM-DD&format=csv\|json | a settlement day's cancellations |
//! | GET  | /console | the operator console, in a browser ([`crate::console`]) |
//!
//! Every `/v1` route, reads included (they say which payments were cancelled and when), needs
//! `Authorization: Bearer {internal.token}`; with no token configured (or an empty one) `/v1`
//! is refused. Health and metrics stay open for probes and scrapers.
//!
//! `openapi/internal.yaml` is this API's contract. Every refusal is its JSON `Error` shape
//! (`{"error": "..."}`) whoever refused (see `refusals`): a path no route serves is a 404, a method
//! a path does not declare a 405 with `Allow`.

use crate::config::Secret;
use crate::domain::{CancellationState, Clock};
use crate::guard::Guard;
use crate::metrics::Metrics;
use crate::report;
use crate::store::{ListCursor, Nudged, RequeueSelection, Store};
use actix_web::dev::Service;
use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse, web};
use chrono::{DateTime, Utc};
use futures_util::future::{Either, ready};
use serde::Deserialize;
use serde_json::json;
use std::sync::Arc;
use tokio::sync::Notify;

mod refusals;

pub struct InternalState {
    pub store: Store,
    pub clock: Arc<dyn Clock>,
    /// Guards every `/v1` route; None (also for an empty configured token): `/v1` is refused.
    pub token: Option<Secret>,
    /// Wakes this process's refund engine after a nudge or requeue.
    pub wake: Arc<Notify>,
    pub metrics: Arc<Metrics>,
    /// This instance's refund engine, if it runs one: readiness fails while its workers keep
    /// dying.
    pub engine: Option<Arc<crate::engine::EngineHealth>>,
    /// Whether this instance's clock is close enough to the database's to judge windows.
    pub clock_check: Option<Arc<crate::clock_skew::ClockSkewCheck>>,
    /// The cancellable period, for the days a provisional report line may belong to.
    pub window: crate::domain::CancellationWindow,
    /// The operator console's sign-in and caches (`/console`).
    pub console: Arc<crate::console::Console>,
}

pub fn configure(cfg: &mut web::ServiceConfig, state: web::Data<InternalState>) {
    let guarded = state.clone();
    cfg.app_data(state)
        .service(resource("/healthz", "GET").route(web::get().to(healthz)))
        .service(resource("/readyz", "GET").route(web::get().to(readyz)))
        .service(resource("/metrics", "GET").route(web::get().to(metrics)))
        .configure(crate::console::configure)
        .service(
            // One gate in front of the whole scope, so a route added later cannot forget it.
            web::scope("/v1")
                .app_data(refusals::query_config())
                .app_data(refusals::path_config())
                .app_data(refusals::json_config())
                .wrap_fn(
                    move |req, srv| match refuse_unauthorized(req.request(), &guarded) {
                        Some(refused) => Either::Left(ready(Ok(req.into_response(refused)))),
                        None => Either::Right(srv.call(req)),
                    },
                )
                // Outermost: whatever refused the request (an extractor, a payload limit),
                // the answer has the API's one error shape.
                .wrap_fn(|req, srv| {
                    let answer = srv.call(req);
                    async move { Ok(refusals::in_json(answer.await?).await) }
                })
                .service(resource("/cancellations", "GET").route(web::get().to(list)))
                .service(
                    resource("/cancellations/requeue", "POST").route(web::post().to(requeue_bulk)),
                )
                .service(resource("/cancellations/{id}", "GET").route(web::get().to(show)))
                .service(resource("/cancellations/{id}/nudge", "POST").route(web::post().to(nudge)))
                .service(
                    resource("/cancellations/{id}/requeue", "POST").route(web::post().to(requeue)),
                )
                .service(
                    resource("/settlement-report", "GET").route(web::get().to(settlement_report)),
                )
                .default_service(web::to(refusals::no_route)),
        )
        .default_service(web::to(refusals::no_route));
}

/// A path of this API: a method it does not declare answers 405 with `Allow: {allow}`.
fn resource(path: &str, allow: &'static str) -> actix_web::Resource {
    web::resource(path).default_service(web::to(move || refusals::method_not_allowed(allow)))
}

async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(json!({"status": "up"}))
}

/// Ready when the database answers and every migration this build knows is applied.
pub(crate) async fn readyz(state: web::Data<InternalState>) -> HttpResponse {
    if let Some(engine) = &state.engine
        && !engine.is_healthy()
    {
        return HttpResponse::ServiceUnavailable().json(json!({
            "ready": false,
            "reason": "refund workers keep dying (see mpp_cancel_refund_worker_restarts_total and the log)"
        }));
    }
    match state.store.migrations_current().await {
        // The database answers: then the clock is compared with its own (cached, cheap).
        Ok(true) => match &state.clock_check {
            Some(check) => match check.verdict().await {
                Ok(()) => HttpResponse::Ok().json(json!({"ready": true})),
                Err(reason) => HttpResponse::ServiceUnavailable()
                    .json(json!({"ready": false, "reason": reason})),
            },
            None => HttpResponse::Ok().json(json!({"ready": true})),
        },
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
    // mpp_cancel_ready: whatever /readyz answers now, so alerts see the same check as probes.
    let ready = readyz(state.clone()).await.status().is_success();
    state.metrics.set_ready(ready);
    let body = state.metrics.render(&state.store).await;
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

/// A page holds this many rows unless `limit` says otherwise...
const DEFAULT_PAGE: i64 = 100;
/// ...and never more than this: a page is one bounded index scan and one bounded answer.
const MAX_PAGE: i64 = 1000;

/// The rows a page holds for `limit`: any integer from 1 up, a larger one than [`MAX_PAGE`]
/// (however large: the document sets no maximum) served as [`MAX_PAGE`].
fn page_size(limit: Option<&str>) -> Result<i64, &'static str> {
    let Some(text) = limit else {
        return Ok(DEFAULT_PAGE);
    };
    let (negative, digits) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text.strip_prefix('+').unwrap_or(text)),
    };
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err("limit must be an integer");
    }
    let significant = digits.trim_start_matches('0');
    if negative || significant.is_empty() {
        return Err("limit must be at least 1");
    }
    // More digits than MAX_PAGE has is more than MAX_PAGE, and may not fit an i64.
    if significant.len() > MAX_PAGE.to_string().len() {
        return Ok(MAX_PAGE);
    }
    Ok(significant
        .parse::<i64>()
        .map_or(MAX_PAGE, |n| n.min(MAX_PAGE)))
}

#[derive(Deserialize)]
struct ListQuery {
    state: String,
    /// Read by [`page_size`], so that a limit past i64 is capped like any other large one.
    limit: Option<String>,
    /// The `nextCursor` of the previous page.
    cursor: Option<String>,
}

async fn list(query: web::Query<ListQuery>, state: web::Data<InternalState>) -> HttpResponse {
    let Ok(wanted) = query.state.parse::<CancellationState>() else {
        return bad_request(format!("unknown state {:?}", query.state));
    };
    let limit = match page_size(query.limit.as_deref()) {
        Ok(limit) => limit,
        Err(refused) => return bad_request(refused),
    };
    let cursor = match query.cursor.as_deref() {
        // An empty cursor (valid by the document: a string) is no cursor: the first page.
        None | Some("") => None,
        Some(text) => match ListCursor::decode(text) {
            Some(cursor) => Some(cursor),
            None => return bad_request("cursor is not a nextCursor this API returned"),
        },
    };
    match state.store.in_state(wanted, cursor.as_ref(), limit).await {
        Ok(page) => HttpResponse::Ok().json(json!({
            "cancellations": page.cancellations,
            "nextCursor": page.next.map(|c| c.encode()),
        })),
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

async fn requeue(id: web::Path<String>, state: web::Data<InternalState>) -> HttpResponse {
    match state.store.requeue(&id, "internal-api").await {
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
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct BulkRequeueRequest {
    state: String,
    /// Only rows that went to manual_review at or after this instant (RFC 3339).
    since: Option<DateTime<Utc>>,
    #[serde(default)]
    dry_run: bool,
}

/// After an outage sent many rows to manual_review: all of them (or those since a time) back to
/// work in one call, or with `dryRun` only counted (and the first ids listed).
async fn requeue_bulk(body: web::Bytes, state: web::Data<InternalState>) -> HttpResponse {
    let request: BulkRequeueRequest = match serde_json::from_slice(&body) {
        Ok(request) => request,
        Err(e) => return bad_request(format!("body: {e}")),
    };
    let Ok(wanted) = request.state.parse::<CancellationState>() else {
        return bad_request(format!("unknown state {:?}", request.state));
    };
    let selection = match RequeueSelection::new(wanted, request.since) {
        Ok(selection) => selection,
        Err(refused) => return bad_request(refused.to_string()),
    };
    match state
        .store
        .requeue_bulk(selection, "internal-api", request.dry_run)
        .await
    {
        Ok(done) => {
            if !request.dry_run && done.count > 0 {
                state.wake.notify_one();
            }
            let mut answer = json!({"dryRun": request.dry_run, "count": done.count});
            if request.dry_run {
                answer["paymentRequestIds"] = json!(done.sample);
            }
            HttpResponse::Ok().json(answer)
        }
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
    match state.store.settlement_report(day, &state.window).await {
        Ok(lines) => HttpResponse::Ok()
            .insert_header((header::CONTENT_TYPE, format.content_type()))
            .body(report::render(&lines, format)),
        Err(e) => unavailable(e),
    }
}

/// Every `/v1` route needs the bearer token (compared in constant time): the refusal, if any.
fn refuse_unauthorized(req: &HttpRequest, state: &InternalState) -> Option<HttpResponse> {
    // An empty token is no token: it would match an empty (or absent) Authorization header.
    let Some(token) = state.token.as_ref().filter(|t| !t.expose().is_empty()) else {
        return Some(
            HttpResponse::Forbidden()
                .json(json!({"error": "internal.token is not configured: /v1 is disabled"})),
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_page_holds_1_to_max_rows_whatever_the_limit() {
        assert_eq!(page_size(None), Ok(DEFAULT_PAGE));
        for (limit, rows) in [
            ("1", 1),
            ("+7", 7),
            ("0042", 42),
            ("1000", MAX_PAGE),
            ("1001", MAX_PAGE),
            ("9223372036854775807", MAX_PAGE),
            ("99999999999999999999999999999999999999", MAX_PAGE),
        ] {
            assert_eq!(page_size(Some(limit)), Ok(rows), "{limit}");
        }
        for refused in [
            "0", "000", "-5", "-0", "", "+", "1.5", "1e3", "null", " 5", "0x10",
        ] {
            assert!(page_size(Some(refused)).is_err(), "{refused:?}");
        }
    }
}

//! The operator console: server-rendered HTML on the internal listener under `/console`
//! (DESIGN.md, "Operator console"), for the people who look after cancellations. It calls the
//! same store functions as the internal API; its pages are in `views.rs`, its session rules
//! in [`session`].
//!
//! | method | path | |
//! |---|---|---|
//! | GET  | /console/login, POST /console/login | sign in with `internal.token` or `internal.read_token` |
//! | POST | /console/logout | sign out |
//! | GET  | /console | overview: every state's count, the backlog, readiness |
//! | GET  | /console/cancellations?state=&q=&from=&to=&cursor= | a state's list, search, time range |
//! | GET  | /console/cancellations/{id} | one cancellation: record, refund or void, answer, timeline |
//! | POST | /console/cancellations/{id}/requeue, /nudge | operator actions |
//! | GET  | /console/requeue?since= | bulk requeue preview (count, first ids) |
//! | POST | /console/requeue | bulk requeue, confirmed |
//! | GET  | /console/report?date=, /console/report.csv?date= | the settlement day's report |
//!
//! Every page needs a session cookie or `Authorization: Bearer {token}`; without one it
//! redirects to the sign-in page. Every POST from a session is checked for its origin and the
//! session's forgery token; a bearer request needs neither (a browser never adds that header on
//! its own). Read-only sessions see no action controls and their actions answer 403. Every
//! answer carries a Content-Security-Policy that allows no script at all.

// The checks return the refusal itself (an HttpResponse) as their error: the handler answers
// it as it is, once per request, so its size does not matter.
#![allow(clippy::result_large_err)]

pub mod session;
mod views;

use crate::config::Settings;
use crate::domain::CancellationState;
use crate::http::internal::InternalState;
use crate::report;
use crate::store::{
    ListCursor, Nudged, RequestedBetween, RequeueSelection, ReversalsDone, StateCount,
};
use actix_web::http::{StatusCode, header};
use actix_web::middleware::DefaultHeaders;
use actix_web::{HttpRequest, HttpResponse, web};
use chrono::{DateTime, NaiveDate, NaiveDateTime, Utc};
use serde::Deserialize;
use session::{COOKIE, Role, Session, SessionKey};
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Each state is counted exactly up to this many rows; beyond, the planner's estimate is shown.
pub const EXACT_COUNT_CAP: i64 = 10_000;

/// The overview's counts are read again once they are this old...
pub const COUNTS_MAX_AGE: Duration = Duration::from_secs(10);

/// ...in the background while the page is served from counts up to this old (the contract's
/// limit); older counts are read again before the page is answered.
pub const COUNTS_STALE_MAX: Duration = Duration::from_secs(30);

/// Rows on one list page.
const PAGE_ROWS: i64 = 50;

/// Report lines shown on the page (the CSV has them all).
const REPORT_ROWS_SHOWN: usize = 1000;

/// The most signed-out sessions remembered (each until it would have expired anyway).
const REVOKED_MAX: usize = 100_000;

/// The content security policy of every console answer: nothing but the console's own
/// stylesheet, no script at all, never framed, forms only to itself.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; style-src 'self'; img-src 'self'; \
     form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

const STYLESHEET: &str = include_str!("console.css");

/// The console's own state, one per process.
pub struct Console {
    operator_token: Option<String>,
    read_token: Option<String>,
    key: SessionKey,
    /// Sessions signed out here (nonce -> expiry): refused even if the cookie comes back.
    revoked: Mutex<HashMap<[u8; 16], i64>>,
    counts: tokio::sync::Mutex<Option<Snapshot>>,
    /// A background read of the counts is under way.
    refreshing: std::sync::atomic::AtomicBool,
    /// The settlement day's zone (`cancel.timezone`): today's report by default.
    timezone: chrono_tz::Tz,
}

impl Console {
    pub fn from_settings(settings: &Settings) -> Self {
        let operator_token = settings.internal_token().map(|t| t.expose().to_owned());
        let read_token = settings.read_token().map(|t| t.expose().to_owned());
        Self {
            key: SessionKey::derive(operator_token.as_deref(), read_token.as_deref()),
            operator_token,
            read_token,
            revoked: Mutex::default(),
            counts: tokio::sync::Mutex::default(),
            refreshing: std::sync::atomic::AtomicBool::new(false),
            timezone: settings
                .cancel
                .timezone
                .parse()
                .unwrap_or(chrono_tz::Etc::GMTMinus8),
        }
    }

    fn revoke(&self, session: &Session, now: i64) {
        let mut revoked = self.revoked.lock().expect("revoked sessions lock");
        revoked.retain(|_, expires_at| *expires_at > now);
        if revoked.len() < REVOKED_MAX {
            revoked.insert(session.nonce, session.expires_at);
        }
    }

    fn is_revoked(&self, session: &Session) -> bool {
        self.revoked
            .lock()
            .expect("revoked sessions lock")
            .contains_key(&session.nonce)
    }
}

/// Mounts the console's routes under `/console` (on the internal listener).
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::scope("/console")
            .wrap(
                DefaultHeaders::new()
                    .add((header::CONTENT_SECURITY_POLICY, CONTENT_SECURITY_POLICY))
                    .add((header::X_FRAME_OPTIONS, "DENY"))
                    .add((header::X_CONTENT_TYPE_OPTIONS, "nosniff"))
                    // Not `no-referrer`: with it a browser sends `Origin: null` on the console's own posts.
                    .add((header::REFERRER_POLICY, "same-origin"))
                    .add((header::CACHE_CONTROL, "no-store")),
            )
            .route("", web::get().to(overview))
            .route("/", web::get().to(overview))
            .route("/console.css", web::get().to(stylesheet))
            .route("/login", web::get().to(login_page))
            .route("/login", web::post().to(login))
            .route("/logout", web::post().to(logout))
            .route("/cancellations", web::get().to(list))
            .route("/cancellations/{id}", web::get().to(cancellation))
            .route("/cancellations/{id}/requeue", web::post().to(requeue))
            .route("/cancellations/{id}/nudge", web::post().to(nudge))
            .route("/requeue", web::get().to(bulk_preview))
            .route("/requeue", web::post().to(bulk_requeue))
            .route("/report", web::get().to(report_page))
            .route("/report.csv", web::get().to(report_csv)),
    );
}

/// Who made a request: the role, and the session when it came with a cookie (None: a bearer).
struct Viewer {
    role: Role,
    session: Option<Session>,
    csrf: Option<String>,
}

impl Viewer {
    fn page(&self) -> views::Viewer<'_> {
        views::Viewer {
            role: self.role,
            csrf: self.csrf.as_deref(),
        }
    }
}

fn unix_now(state: &InternalState) -> i64 {
    state.clock.now().timestamp()
}

/// The viewer of a request, or the answer that refuses it (a redirect to sign-in, or 401 for a
/// wrong bearer token).
fn viewer(req: &HttpRequest, state: &InternalState) -> Result<Viewer, HttpResponse> {
    let console = &state.console;
    if let Some(auth) = req.headers().get(header::AUTHORIZATION) {
        let presented = auth
            .to_str()
            .ok()
            .and_then(|v| v.strip_prefix("Bearer "))
            .unwrap_or("");
        return match session::role_for(
            presented,
            console.operator_token.as_deref(),
            console.read_token.as_deref(),
        ) {
            Some(role) => Ok(Viewer {
                role,
                session: None,
                csrf: None,
            }),
            None => Err(HttpResponse::Unauthorized()
                .content_type("text/plain; charset=utf-8")
                .body("a valid bearer token is required")),
        };
    }
    let now = unix_now(state);
    let session = session_cookie(req)
        .and_then(|value| console.key.open(value, now))
        .filter(|s| !console.is_revoked(s));
    match session {
        Some(session) => Ok(Viewer {
            role: session.role,
            csrf: Some(console.key.csrf_token(&session)),
            session: Some(session),
        }),
        None => Err(redirect("/console/login")),
    }
}

/// The checks of every state-changing request: a viewer who may act, and for a session the
/// console's own origin and the session's forgery token.
fn actor(
    req: &HttpRequest,
    state: &InternalState,
    csrf: &str,
    needs_operator: bool,
) -> Result<Viewer, HttpResponse> {
    let viewer = viewer(req, state)?;
    if needs_operator && !viewer.role.can_act() {
        return Err(refused(
            StatusCode::FORBIDDEN,
            "a read-only session cannot change anything",
        ));
    }
    if let Some(session) = &viewer.session {
        if !from_console(req) {
            return Err(refused(
                StatusCode::FORBIDDEN,
                "refused: this form was not sent from the console's own pages",
            ));
        }
        if !state.console.key.csrf_matches(session, csrf) {
            return Err(refused(
                StatusCode::FORBIDDEN,
                "refused: the form's session token is missing or wrong (reload the page)",
            ));
        }
    }
    Ok(viewer)
}

/// The value of the session cookie the request carries, if any.
fn session_cookie(req: &HttpRequest) -> Option<&str> {
    req.headers()
        .get_all(header::COOKIE)
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .find_map(|pair| {
            let (name, value) = pair.trim().split_once('=')?;
            (name == COOKIE).then_some(value)
        })
}

fn from_console(req: &HttpRequest) -> bool {
    let header = |name: &str| req.headers().get(name).and_then(|v| v.to_str().ok());
    session::same_origin(
        header("origin"),
        header("sec-fetch-site"),
        req.connection_info().host(),
    )
}

fn redirect(to: &str) -> HttpResponse {
    HttpResponse::SeeOther()
        .insert_header((header::LOCATION, to))
        .finish()
}

fn html(status: StatusCode, body: maud::Markup) -> HttpResponse {
    HttpResponse::build(status)
        .content_type("text/html; charset=utf-8")
        .body(body.into_string())
}

fn refused(status: StatusCode, why: &str) -> HttpResponse {
    html(status, views::message(None, status, why))
}

fn unavailable(e: sqlx::Error) -> HttpResponse {
    tracing::error!(error = %e, "console: database error");
    refused(
        StatusCode::SERVICE_UNAVAILABLE,
        "the database is unavailable; try again",
    )
}

async fn stylesheet() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/css; charset=utf-8")
        .body(STYLESHEET)
}

async fn login_page(req: HttpRequest, state: web::Data<InternalState>) -> HttpResponse {
    if viewer(&req, &state).is_ok() {
        return redirect("/console");
    }
    html(StatusCode::OK, views::login(None, enabled(&state)))
}

fn enabled(state: &InternalState) -> bool {
    state.console.operator_token.is_some() || state.console.read_token.is_some()
}

#[derive(Deserialize)]
struct LoginForm {
    #[serde(default)]
    token: String,
}

async fn login(
    req: HttpRequest,
    form: web::Form<LoginForm>,
    state: web::Data<InternalState>,
) -> HttpResponse {
    // A sign-in forged from another site would put the victim in the attacker's session.
    if !from_console(&req) {
        return refused(
            StatusCode::FORBIDDEN,
            "refused: this form was not sent from the console's own pages",
        );
    }
    let console = &state.console;
    let Some(role) = session::role_for(
        &form.token,
        console.operator_token.as_deref(),
        console.read_token.as_deref(),
    ) else {
        tracing::warn!("console: a sign-in with a wrong token");
        return html(
            StatusCode::UNAUTHORIZED,
            views::login(Some("That token is not accepted."), enabled(&state)),
        );
    };
    let session = Session::begin(role, unix_now(&state));
    tracing::info!(role = role.as_str(), "console: signed in");
    let secure = if req.connection_info().scheme() == "https" {
        "; Secure"
    } else {
        ""
    };
    let cookie = format!(
        "{COOKIE}={}; Path=/console; HttpOnly; SameSite=Strict; Max-Age={}{secure}",
        console.key.seal(&session),
        session::SESSION_HOURS * 3600
    );
    HttpResponse::SeeOther()
        .insert_header((header::LOCATION, "/console"))
        .insert_header((header::SET_COOKIE, cookie))
        .finish()
}

/// A form holding only the forgery token. Forms are read as `Option`s: a post whose body is not
/// a form is refused by the checks (sign-in, role, origin, token) like any other, not earlier.
#[derive(Deserialize)]
struct CsrfForm {
    #[serde(default)]
    csrf: String,
}

fn csrf_of(form: Option<&CsrfForm>) -> &str {
    form.map_or("", |f| f.csrf.as_str())
}

async fn logout(
    req: HttpRequest,
    form: Option<web::Form<CsrfForm>>,
    state: web::Data<InternalState>,
) -> HttpResponse {
    let viewer = match actor(&req, &state, csrf_of(form.as_deref()), false) {
        Ok(viewer) => viewer,
        Err(refusal) => return refusal,
    };
    if let Some(session) = &viewer.session {
        state.console.revoke(session, unix_now(&state));
    }
    HttpResponse::SeeOther()
        .insert_header((header::LOCATION, "/console/login"))
        .insert_header((
            header::SET_COOKIE,
            format!("{COOKIE}=; Path=/console; HttpOnly; SameSite=Strict; Max-Age=0"),
        ))
        .finish()
}

/// What the overview shows from the database, read at most every [`COUNTS_MAX_AGE`].
#[derive(Debug, Clone)]
pub(crate) struct Snapshot {
    taken: Instant,
    pub(crate) taken_at: DateTime<Utc>,
    pub(crate) counts: Vec<StateCount>,
    pub(crate) estimates: HashMap<String, i64>,
    pub(crate) oldest_due: Option<DateTime<Utc>>,
    pub(crate) done: ReversalsDone,
}

/// The overview's counts: cached ones while younger than [`COUNTS_MAX_AGE`]; until
/// [`COUNTS_STALE_MAX`] cached ones too, read again in the background; else read now.
async fn snapshot(state: &web::Data<InternalState>) -> Result<Snapshot, sqlx::Error> {
    use std::sync::atomic::Ordering;
    if let Some(cached) = state.console.counts.lock().await.clone() {
        let age = cached.taken.elapsed();
        if age < COUNTS_MAX_AGE {
            return Ok(cached);
        }
        if age < COUNTS_STALE_MAX {
            if !state.console.refreshing.swap(true, Ordering::AcqRel) {
                let state = state.clone();
                tokio::spawn(async move {
                    if let Err(e) = refresh_snapshot(&state).await {
                        tracing::warn!(error = %e, "console: counts not refreshed");
                    }
                    state.console.refreshing.store(false, Ordering::Release);
                });
            }
            return Ok(cached);
        }
    }
    refresh_snapshot(state).await
}

/// Reads the overview's counts from the database and caches them.
async fn refresh_snapshot(state: &InternalState) -> Result<Snapshot, sqlx::Error> {
    let now = state.clock.now();
    let counts = state.store.state_counts(EXACT_COUNT_CAP).await?;
    let estimates = if counts.iter().any(|c| c.capped) {
        state.store.state_estimates().await?.into_iter().collect()
    } else {
        HashMap::new()
    };
    let fresh = Snapshot {
        taken: Instant::now(),
        taken_at: now,
        counts,
        estimates,
        oldest_due: state.store.oldest_due(now).await?,
        done: state.store.reversals_done(now).await?,
    };
    *state.console.counts.lock().await = Some(fresh.clone());
    Ok(fresh)
}

/// Readiness as `/readyz` says it: (ready, reason).
async fn readiness(state: &web::Data<InternalState>) -> (bool, Option<String>) {
    let answer = crate::http::internal::readyz(state.clone()).await;
    let ready = answer.status().is_success();
    let body = actix_web::body::to_bytes(answer.into_body())
        .await
        .unwrap_or_default();
    let reason = serde_json::from_slice::<serde_json::Value>(&body)
        .ok()
        .and_then(|v| v["reason"].as_str().map(str::to_owned));
    (ready, reason)
}

async fn overview(req: HttpRequest, state: web::Data<InternalState>) -> HttpResponse {
    let viewer = match viewer(&req, &state) {
        Ok(viewer) => viewer,
        Err(refusal) => return refusal,
    };
    let snapshot = match snapshot(&state).await {
        Ok(snapshot) => snapshot,
        Err(e) => return unavailable(e),
    };
    let (ready, reason) = readiness(&state).await;
    let (answers, unknown) = state.metrics.answers();
    html(
        StatusCode::OK,
        views::overview(
            &viewer.page(),
            &views::Overview {
                snapshot: &snapshot,
                now: state.clock.now(),
                ready,
                reason: reason.as_deref(),
                answers,
                unknown,
                worker_restarts: state.metrics.worker_restarts(),
            },
        ),
    )
}

#[derive(Deserialize)]
struct ListQuery {
    state: Option<String>,
    q: Option<String>,
    from: Option<String>,
    to: Option<String>,
    cursor: Option<String>,
}

/// A time from a form field: `datetime-local` (read as UTC) or RFC 3339.
fn parse_time(field: &str, text: Option<&str>) -> Result<Option<DateTime<Utc>>, String> {
    let Some(text) = text.map(str::trim).filter(|t| !t.is_empty()) else {
        return Ok(None);
    };
    if let Ok(t) = DateTime::parse_from_rfc3339(text) {
        return Ok(Some(t.with_timezone(&Utc)));
    }
    for format in ["%Y-%m-%dT%H:%M", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%d %H:%M"] {
        if let Ok(t) = NaiveDateTime::parse_from_str(text, format) {
            return Ok(Some(t.and_utc()));
        }
    }
    if let Ok(day) = NaiveDate::parse_from_str(text, "%Y-%m-%d") {
        return Ok(day.and_hms_opt(0, 0, 0).map(|t| t.and_utc()));
    }
    Err(format!("{field}: not a time (YYYY-MM-DDTHH:MM, UTC)"))
}

async fn list(
    req: HttpRequest,
    query: web::Query<ListQuery>,
    state: web::Data<InternalState>,
) -> HttpResponse {
    let viewer = match viewer(&req, &state) {
        Ok(viewer) => viewer,
        Err(refusal) => return refusal,
    };
    let bad = |why: String| refused(StatusCode::BAD_REQUEST, &why);
    let wanted = match query.state.as_deref().map(str::trim) {
        None => Some(CancellationState::ManualReview),
        Some("") | Some("any") => None,
        Some(text) => match text.parse::<CancellationState>() {
            Ok(s) => Some(s),
            Err(_) => return bad(format!("unknown state {text:?}")),
        },
    };
    let between = match (
        parse_time("from", query.from.as_deref()),
        parse_time("to", query.to.as_deref()),
    ) {
        (Ok(from), Ok(before)) => RequestedBetween { from, before },
        (Err(e), _) | (_, Err(e)) => return bad(e),
    };
    let search = query.q.as_deref().map(str::trim).filter(|q| !q.is_empty());
    let filters = views::ListFilters {
        state: wanted,
        q: search.unwrap_or(""),
        from: query.from.as_deref().unwrap_or(""),
        to: query.to.as_deref().unwrap_or(""),
    };
    let (rows, next) = if let Some(q) = search {
        if q.len() > 256 {
            return bad("search: too long".into());
        }
        match state.store.find(q, wanted, between, PAGE_ROWS).await {
            Ok(rows) => (rows, None),
            Err(e) => return unavailable(e),
        }
    } else {
        let Some(wanted) = wanted else {
            return bad("choose a state, or search for an id".into());
        };
        let cursor = match query.cursor.as_deref().filter(|c| !c.is_empty()) {
            None => None,
            Some(text) => match ListCursor::decode(text) {
                Some(c) => Some(c),
                None => return bad("that page link is not one the console made".into()),
            },
        };
        match state
            .store
            .in_state_between(wanted, between, cursor.as_ref(), PAGE_ROWS)
            .await
        {
            Ok(page) => (page.cancellations, page.next.map(|c| c.encode())),
            Err(e) => return unavailable(e),
        }
    };
    html(
        StatusCode::OK,
        views::list(&viewer.page(), &filters, &rows, next.as_deref()),
    )
}

#[derive(Deserialize)]
struct DoneQuery {
    done: Option<String>,
}

async fn cancellation(
    req: HttpRequest,
    id: web::Path<String>,
    query: web::Query<DoneQuery>,
    state: web::Data<InternalState>,
) -> HttpResponse {
    let viewer = match viewer(&req, &state) {
        Ok(viewer) => viewer,
        Err(refusal) => return refusal,
    };
    let store = &state.store;
    let record = match store.cancellation(&id).await {
        Ok(Some(record)) => record,
        Ok(None) => {
            return refused(
                StatusCode::NOT_FOUND,
                "no cancellation has this paymentRequestId",
            );
        }
        Err(e) => return unavailable(e),
    };
    let (reversals, events, answer) = match tokio::try_join!(
        store.reversals(&id),
        store.audit_events(&id),
        store.stored_answer(&id)
    ) {
        Ok(found) => found,
        Err(e) => return unavailable(e),
    };
    let answer = answer.map(|a| String::from_utf8_lossy(&a.response_body).into_owned());
    html(
        StatusCode::OK,
        views::cancellation(
            &viewer.page(),
            &views::CancellationPage {
                record: &record,
                reversals: &reversals,
                events: &events,
                answer: answer.as_deref(),
                done: query.done.as_deref(),
            },
        ),
    )
}

fn back_to(id: &str, done: &str) -> HttpResponse {
    let path = percent_encoding::utf8_percent_encode(id, percent_encoding::NON_ALPHANUMERIC);
    redirect(&format!("/console/cancellations/{path}?done={done}"))
}

async fn requeue(
    req: HttpRequest,
    id: web::Path<String>,
    form: Option<web::Form<CsrfForm>>,
    state: web::Data<InternalState>,
) -> HttpResponse {
    let viewer = match actor(&req, &state, csrf_of(form.as_deref()), true) {
        Ok(viewer) => viewer,
        Err(refusal) => return refusal,
    };
    match state.store.requeue(&id, viewer.role.actor()).await {
        Ok(Some(_)) => {
            state.wake.notify_one();
            back_to(&id, "requeued")
        }
        Ok(None) => back_to(&id, "not-in-manual-review"),
        Err(e) => unavailable(e),
    }
}

async fn nudge(
    req: HttpRequest,
    id: web::Path<String>,
    form: Option<web::Form<CsrfForm>>,
    state: web::Data<InternalState>,
) -> HttpResponse {
    let viewer = match actor(&req, &state, csrf_of(form.as_deref()), true) {
        Ok(viewer) => viewer,
        Err(refusal) => return refusal,
    };
    match state
        .store
        .nudge_by(&id, state.clock.now(), viewer.role.actor())
        .await
    {
        Ok(Nudged::NotFound) => refused(
            StatusCode::NOT_FOUND,
            "no cancellation has this paymentRequestId",
        ),
        Ok(Nudged::NothingToDo(_)) => back_to(&id, "nothing-to-nudge"),
        Ok(_) => {
            state.wake.notify_one();
            back_to(&id, "nudged")
        }
        Err(e) => unavailable(e),
    }
}

#[derive(Deserialize)]
struct BulkQuery {
    since: Option<String>,
}

async fn bulk_preview(
    req: HttpRequest,
    query: web::Query<BulkQuery>,
    state: web::Data<InternalState>,
) -> HttpResponse {
    let viewer = match viewer(&req, &state) {
        Ok(viewer) => viewer,
        Err(refusal) => return refusal,
    };
    if !viewer.role.can_act() {
        return refused(
            StatusCode::FORBIDDEN,
            "a read-only session cannot change anything",
        );
    }
    let since = match parse_time("since", query.since.as_deref()) {
        Ok(since) => since,
        Err(e) => return refused(StatusCode::BAD_REQUEST, &e),
    };
    let selection = RequeueSelection::new(CancellationState::ManualReview, since)
        .expect("manual_review can be requeued");
    match state
        .store
        .requeue_bulk(selection, viewer.role.actor(), true)
        .await
    {
        Ok(preview) => html(
            StatusCode::OK,
            views::bulk_preview(
                &viewer.page(),
                query.since.as_deref().unwrap_or(""),
                &preview,
            ),
        ),
        Err(e) => unavailable(e),
    }
}

#[derive(Deserialize)]
struct BulkForm {
    #[serde(default)]
    csrf: String,
    since: Option<String>,
    /// What the preview counted, shown beside what was done.
    previewed: Option<u64>,
}

async fn bulk_requeue(
    req: HttpRequest,
    form: Option<web::Form<BulkForm>>,
    state: web::Data<InternalState>,
) -> HttpResponse {
    let csrf = form.as_ref().map_or("", |f| f.csrf.as_str());
    let viewer = match actor(&req, &state, csrf, true) {
        Ok(viewer) => viewer,
        Err(refusal) => return refusal,
    };
    let Some(form) = form else {
        return refused(StatusCode::BAD_REQUEST, "the form could not be read");
    };
    let since = match parse_time("since", form.since.as_deref()) {
        Ok(since) => since,
        Err(e) => return refused(StatusCode::BAD_REQUEST, &e),
    };
    let selection = RequeueSelection::new(CancellationState::ManualReview, since)
        .expect("manual_review can be requeued");
    match state
        .store
        .requeue_bulk(selection, viewer.role.actor(), false)
        .await
    {
        Ok(done) => {
            if done.count > 0 {
                state.wake.notify_one();
            }
            tracing::info!(
                count = done.count,
                by = viewer.role.actor(),
                "console: bulk requeue"
            );
            html(
                StatusCode::OK,
                views::bulk_done(&viewer.page(), done.count, form.previewed),
            )
        }
        Err(e) => unavailable(e),
    }
}

#[derive(Deserialize)]
struct ReportQuery {
    date: Option<String>,
}

/// The day a report query names, today in the settlement zone by default.
fn report_day(state: &InternalState, query: &ReportQuery) -> Result<NaiveDate, HttpResponse> {
    match query
        .date
        .as_deref()
        .map(str::trim)
        .filter(|d| !d.is_empty())
    {
        None => Ok(state
            .clock
            .now()
            .with_timezone(&state.console.timezone)
            .date_naive()),
        Some(text) => NaiveDate::parse_from_str(text, "%Y-%m-%d")
            .map_err(|_| refused(StatusCode::BAD_REQUEST, "date: YYYY-MM-DD")),
    }
}

async fn report_page(
    req: HttpRequest,
    query: web::Query<ReportQuery>,
    state: web::Data<InternalState>,
) -> HttpResponse {
    let viewer = match viewer(&req, &state) {
        Ok(viewer) => viewer,
        Err(refusal) => return refusal,
    };
    let day = match report_day(&state, &query) {
        Ok(day) => day,
        Err(refusal) => return refusal,
    };
    match state.store.settlement_report(day, &state.window).await {
        Ok(lines) => {
            let rows = serde_json::to_value(&lines)
                .ok()
                .and_then(|v| v.as_array().cloned())
                .unwrap_or_default();
            html(
                StatusCode::OK,
                views::report(&viewer.page(), day, &rows, REPORT_ROWS_SHOWN),
            )
        }
        Err(e) => unavailable(e),
    }
}

async fn report_csv(
    req: HttpRequest,
    query: web::Query<ReportQuery>,
    state: web::Data<InternalState>,
) -> HttpResponse {
    if let Err(refusal) = viewer(&req, &state) {
        return refusal;
    }
    let day = match report_day(&state, &query) {
        Ok(day) => day,
        Err(refusal) => return refusal,
    };
    match state.store.settlement_report(day, &state.window).await {
        Ok(lines) => HttpResponse::Ok()
            .insert_header((header::CONTENT_TYPE, report::Format::Csv.content_type()))
            .insert_header((
                header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"settlement-{day}.csv\""),
            ))
            .body(report::render(&lines, report::Format::Csv)),
        Err(e) => unavailable(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn form_times_are_read_as_utc() {
        let t = |s| parse_time("from", Some(s)).unwrap().unwrap().to_rfc3339();
        assert_eq!(t("2026-12-08T10:30"), "2026-12-08T10:30:00+00:00");
        assert_eq!(t("2026-12-08T10:30:05"), "2026-12-08T10:30:05+00:00");
        assert_eq!(t("2026-12-08T18:30:00+08:00"), "2026-12-08T10:30:00+00:00");
        assert_eq!(t("2026-12-08"), "2026-12-08T00:00:00+00:00");
        assert_eq!(parse_time("from", Some("  ")).unwrap(), None);
        assert!(parse_time("from", Some("yesterday")).is_err());
    }
}

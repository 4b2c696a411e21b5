//! The console's pages, as maud templates compiled into the binary. maud escapes every value
//! it interpolates (ids, wallet messages, errors are untrusted text); nothing here uses
//! `PreEscaped`. No page has a script: everything works with JavaScript off.
//!
//! The `data-test` attributes are a contract (DESIGN.md, "Operator console"): external tests
//! find the console's parts by them.

use super::Snapshot;
use super::session::Role;
use crate::domain::CancellationState;
use crate::store::{AuditEvent, BulkRequeued, CancellationRecord, Reversal};
use actix_web::http::StatusCode;
use chrono::{DateTime, NaiveDate, Utc};
use maud::{DOCTYPE, Markup, html};
use serde_json::Value;

/// Who the page is for: the role decides whether action controls are drawn, the forgery
/// token goes into every form (None: a bearer request, which needs none).
pub struct Viewer<'a> {
    pub role: Role,
    pub csrf: Option<&'a str>,
}

/// The states in the overview's order: the one needing a person first, then the open ones,
/// then the final ones.
const STATE_ORDER: [CancellationState; 8] = [
    CancellationState::ManualReview,
    CancellationState::RefundPending,
    CancellationState::VoidPending,
    CancellationState::AwaitingOutcome,
    CancellationState::Refunded,
    CancellationState::Voided,
    CancellationState::NothingToRefund,
    CancellationState::Rejected,
];

fn time(t: &DateTime<Utc>) -> String {
    t.format("%Y-%m-%d %H:%M:%S UTC").to_string()
}

fn opt_time(t: Option<&DateTime<Utc>>) -> String {
    t.map(time).unwrap_or_else(|| "—".into())
}

fn age(seconds: i64) -> String {
    let seconds = seconds.max(0);
    match seconds {
        0..60 => format!("{seconds} s"),
        60..3600 => format!("{} min {} s", seconds / 60, seconds % 60),
        _ => format!("{} h {} min", seconds / 3600, seconds % 3600 / 60),
    }
}

fn list_href(state: CancellationState) -> String {
    format!("/console/cancellations?state={}", state.as_str())
}

fn cancellation_href(id: &str) -> String {
    format!(
        "/console/cancellations/{}",
        percent_encoding::utf8_percent_encode(id, percent_encoding::NON_ALPHANUMERIC)
    )
}

fn csrf_field(viewer: &Viewer<'_>) -> Markup {
    html! {
        @if let Some(token) = viewer.csrf {
            input type="hidden" name="csrf" value=(token);
        }
    }
}

fn layout(viewer: Option<&Viewer<'_>>, title: &str, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " · mpp-cancel console" }
                link rel="stylesheet" href="/console/console.css";
            }
            body {
                header {
                    a.brand href="/console" { "mpp-cancel" }
                    @if let Some(viewer) = viewer {
                        nav {
                            a href="/console" { "Overview" }
                            a href=(list_href(CancellationState::ManualReview)) { "Manual review" }
                            a href="/console/cancellations?state=refund_pending" { "Lists" }
                            a href="/console/report" { "Report" }
                        }
                        span.who {
                            "Signed in: " strong.role { (viewer.role.as_str()) }
                            @if viewer.csrf.is_some() {
                                form.inline method="post" action="/console/logout" {
                                    (csrf_field(viewer))
                                    button type="submit" data-test="logout" { "Sign out" }
                                }
                            }
                        }
                    }
                }
                main { (body) }
            }
        }
    }
}

/// A page that only says something (a refusal, an error).
pub fn message(viewer: Option<&Viewer<'_>>, status: StatusCode, text: &str) -> Markup {
    layout(
        viewer,
        status.canonical_reason().unwrap_or("Console"),
        html! {
            h1 { (status.as_u16()) " " (status.canonical_reason().unwrap_or("")) }
            p.message { (text) }
            p { a href="/console" { "Back to the overview" } }
        },
    )
}

pub fn login(error: Option<&str>, enabled: bool) -> Markup {
    layout(
        None,
        "Sign in",
        html! {
            h1 { "Sign in" }
            @if !enabled {
                p.message { "The console is disabled: neither internal.token nor internal.read_token is configured." }
            } @else {
                @if let Some(error) = error { p.error { (error) } }
                form.login method="post" action="/console/login" {
                    label for="token" { "Token (internal.token for an operator, internal.read_token for read-only)" }
                    input #token type="password" name="token" autocomplete="off" required data-test="login-token";
                    button type="submit" data-test="login-submit" { "Sign in" }
                }
            }
        },
    )
}

/// What the overview page shows.
pub struct Overview<'a> {
    pub snapshot: &'a Snapshot,
    pub now: DateTime<Utc>,
    pub ready: bool,
    pub reason: Option<&'a str>,
    pub answers: u64,
    pub unknown: u64,
    pub worker_restarts: u64,
}

fn state_count_text(snapshot: &Snapshot, state: CancellationState) -> String {
    let Some(count) = snapshot.counts.iter().find(|c| c.state == state) else {
        return "?".into();
    };
    if !count.capped {
        return count.counted.to_string();
    }
    match snapshot.estimates.get(state.as_str()) {
        Some(estimate) if *estimate > count.counted => {
            format!("≈ {estimate} (≥ {})", count.counted)
        }
        _ => format!("≥ {}", count.counted),
    }
}

pub fn overview(viewer: &Viewer<'_>, o: &Overview<'_>) -> Markup {
    let s = o.snapshot;
    let oldest = s
        .oldest_due
        .map(|due| age((o.now - due).num_seconds()))
        .unwrap_or_else(|| "nothing due".into());
    let u_rate = if o.answers == 0 {
        "no answers yet".to_owned()
    } else {
        format!(
            "{:.2} % ({} of {})",
            o.unknown as f64 * 100.0 / o.answers as f64,
            o.unknown,
            o.answers
        )
    };
    layout(
        Some(viewer),
        "Overview",
        html! {
            h1 { "Overview" }
            section.readiness.(if o.ready { "ready" } else { "not-ready" }) {
                @if o.ready { "Ready" } @else { "Not ready" }
                @if let Some(reason) = o.reason { ": " (reason) }
            }
            section {
                h2 { "Cancellations by state" }
                div.cards {
                    @for state in STATE_ORDER {
                        a.card.(state.as_str()) href=(list_href(state)) data-test=(format!("state-count-{}", state.as_str())) {
                            span.count { (state_count_text(s, state)) }
                            span.label { (state.as_str()) }
                        }
                    }
                }
                p.note {
                    "Counted " (time(&s.taken_at)) " (read again after "
                    (super::COUNTS_MAX_AGE.as_secs()) " s, never shown older than "
                    (super::COUNTS_STALE_MAX.as_secs()) " s). Exact up to "
                    (super::EXACT_COUNT_CAP) " per state; beyond, ≈ is PostgreSQL's estimate."
                }
            }
            section {
                h2 { "Refund engine" }
                table.facts {
                    tr { th { "Oldest due work waiting" } td { (oldest) } }
                    tr { th { "Refunds done, last hour / day" } td { (s.done.refunds_last_hour) " / " (s.done.refunds_last_day) } }
                    tr { th { "Releases (voids) done, last hour / day" } td { (s.done.voids_last_hour) " / " (s.done.voids_last_day) } }
                    tr { th { "U answers (this instance, since start)" } td { (u_rate) } }
                    tr { th { "Refund worker restarts (this instance)" } td { (o.worker_restarts) } }
                }
            }
            p { a data-test="report-link" href="/console/report" { "Today's settlement report" } }
        },
    )
}

/// The filters of a list page, as the form shows them back.
pub struct ListFilters<'a> {
    /// None: any state (a search only).
    pub state: Option<CancellationState>,
    pub q: &'a str,
    pub from: &'a str,
    pub to: &'a str,
}

fn money(value: Option<i64>, currency: Option<&str>) -> String {
    match (value, currency) {
        (Some(v), Some(c)) => format!("{v} {c}"),
        (Some(v), None) => v.to_string(),
        _ => "—".into(),
    }
}

pub fn list(
    viewer: &Viewer<'_>,
    filters: &ListFilters<'_>,
    rows: &[CancellationRecord],
    next: Option<&str>,
) -> Markup {
    let title = match filters.state {
        Some(state) => state.as_str(),
        None => "search",
    };
    let next_href = next.map(|cursor| {
        let mut query = url_query(&[
            (
                "state",
                filters.state.map_or("any", CancellationState::as_str),
            ),
            ("from", filters.from),
            ("to", filters.to),
        ]);
        query.push_str("&cursor=");
        query.push_str(&encode(cursor));
        format!("/console/cancellations?{query}")
    });
    layout(
        Some(viewer),
        title,
        html! {
            h1 { "Cancellations: " (title) }
            form.filters method="get" action="/console/cancellations" {
                label { "State "
                    select name="state" {
                        option value="any" selected[filters.state.is_none()] { "any (search)" }
                        @for state in STATE_ORDER {
                            option value=(state.as_str()) selected[filters.state == Some(state)] { (state.as_str()) }
                        }
                    }
                }
                label { "paymentRequestId or paymentId "
                    input type="search" name="q" value=(filters.q) maxlength="256" data-test="search-query";
                }
                label { "Requested from (UTC) " input type="datetime-local" name="from" value=(filters.from); }
                label { "to " input type="datetime-local" name="to" value=(filters.to); }
                button type="submit" data-test="search-submit" { "Search" }
            }
            @if filters.state == Some(CancellationState::ManualReview) && viewer.role.can_act() {
                form.bulk method="get" action="/console/requeue" {
                    label { "Went to manual review since (UTC, empty: all) "
                        input type="datetime-local" name="since";
                    }
                    button type="submit" data-test="bulk-preview" { "Preview bulk requeue" }
                }
            }
            @if rows.is_empty() {
                p.empty { "No cancellation matches." }
            } @else {
                table.list {
                    thead { tr {
                        th { "paymentRequestId" } th { "state" } th { "paymentId" } th { "amount" }
                        th { "requested" } th { "attempts" } th { "last error" }
                    } }
                    tbody {
                        @for r in rows {
                            tr {
                                td { a data-test=(format!("row-{}", r.payment_request_id)) href=(cancellation_href(&r.payment_request_id)) { (r.payment_request_id) } }
                                td { span.state.(r.state.as_str()) { (r.state) } }
                                td { (r.payment_id.as_deref().unwrap_or("—")) }
                                td.num { (money(r.amount_value, r.currency.as_deref())) }
                                td { (time(&r.requested_at)) }
                                td.num { (r.attempts) }
                                td.error { (r.last_error.as_deref().unwrap_or("")) }
                            }
                        }
                    }
                }
            }
            @if let Some(href) = next_href {
                p { a.next href=(href) { "Next page →" } }
            }
        },
    )
}

fn encode(text: &str) -> String {
    percent_encoding::utf8_percent_encode(text, percent_encoding::NON_ALPHANUMERIC).to_string()
}

fn url_query(pairs: &[(&str, &str)]) -> String {
    pairs
        .iter()
        .map(|(k, v)| format!("{k}={}", encode(v)))
        .collect::<Vec<_>>()
        .join("&")
}

/// What a cancellation's page shows.
pub struct CancellationPage<'a> {
    pub record: &'a CancellationRecord,
    pub reversals: &'a [Reversal],
    pub events: &'a [AuditEvent],
    pub answer: Option<&'a str>,
    /// The action just taken (from the redirect after it).
    pub done: Option<&'a str>,
}

fn done_text(done: &str) -> Option<&'static str> {
    Some(match done {
        "requeued" => "Requeued: the refund engine works on it again.",
        "not-in-manual-review" => "Not requeued: it is not in manual_review (any more).",
        "nudged" => "Nudged: the refund engine works on it now.",
        "nothing-to-nudge" => "Nothing to nudge: this cancellation has no work left.",
        _ => return None,
    })
}

/// One JSON value of an audit event's detail, as text.
fn value_text(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        Value::Null => "—".into(),
        other => other.to_string(),
    }
}

/// An audit event's detail, every key shown; a list of objects (the wallet calls) one line
/// per object.
fn detail(value: &Value) -> Markup {
    html! {
        @match value {
            Value::Object(map) => {
                dl.detail {
                    @for (key, v) in map {
                        @if !v.is_null() {
                            dt { (key) }
                            dd {
                                @match v {
                                    Value::Array(items) if items.iter().all(Value::is_object) && !items.is_empty() => {
                                        ul.calls {
                                            @for item in items {
                                                li.call {
                                                    @if let Value::Object(fields) = item {
                                                        @for (k, f) in fields {
                                                            span.field.(k.as_str()) { span.k { (k) } " " span.v { (value_text(f)) } }
                                                        }
                                                    }
                                                }
                                            }
                                        }
                                    }
                                    other => { (value_text(other)) }
                                }
                            }
                        }
                    }
                }
            }
            Value::Null => {}
            other => { code { (other.to_string()) } }
        }
    }
}

pub fn cancellation(viewer: &Viewer<'_>, page: &CancellationPage<'_>) -> Markup {
    let r = page.record;
    let state: Option<CancellationState> = r.state.parse().ok();
    let can_requeue = state == Some(CancellationState::ManualReview);
    let can_nudge =
        state.is_some_and(|s| s.has_money_work() || s == CancellationState::NothingToRefund);
    let action = |verb: &str| format!("{}/{verb}", cancellation_href(&r.payment_request_id));
    layout(
        Some(viewer),
        &r.payment_request_id,
        html! {
            h1 { "Cancellation " code { (r.payment_request_id) } }
            @if let Some(text) = page.done.and_then(done_text) { p.notice { (text) } }
            p { "State " span.state.(r.state.as_str()) data-test="state" { (r.state) } }
            @if viewer.role.can_act() && (can_requeue || can_nudge) {
                div.actions {
                    @if can_requeue {
                        form.inline method="post" action=(action("requeue")) {
                            (csrf_field(viewer))
                            button type="submit" data-test="action-requeue" { "Requeue" }
                        }
                    }
                    @if can_nudge {
                        form.inline method="post" action=(action("nudge")) {
                            (csrf_field(viewer))
                            button type="submit" data-test="action-nudge" { "Nudge" }
                        }
                    }
                }
            }
            section {
                h2 { "Record" }
                table.facts {
                    tr { th { "acquirerId" } td { (r.acquirer_id) } }
                    tr { th { "pspId" } td { (r.psp_id) } }
                    tr { th { "answer" } td { (r.result_status) " " (r.result_code) } }
                    tr { th { "paymentId" } td { (r.payment_id.as_deref().unwrap_or("—")) } }
                    tr { th { "payment status" } td { (r.payment_status.as_deref().unwrap_or("—")) } }
                    tr { th { "amount" } td { (money(r.amount_value, r.currency.as_deref())) } }
                    tr { th { "payment created" } td { (opt_time(r.payment_created_at.as_ref())) } }
                    tr { th { "settlement day (T)" } td { (r.settlement_date) } }
                    tr { th { "requested" } td { (time(&r.requested_at)) } }
                    tr { th { "updated" } td { (time(&r.updated_at)) } }
                    tr { th { "attempts" } td { (r.attempts) } }
                    tr { th { "next attempt" } td { (opt_time(r.next_attempt_at.as_ref())) } }
                    tr { th { "last error" } td.error data-test="last-error" { (r.last_error.as_deref().unwrap_or("—")) } }
                }
            }
            section {
                h2 { "Refund or void" }
                @if page.reversals.is_empty() {
                    p.empty { "None owed (yet)." }
                }
                @for v in page.reversals {
                    table.facts {
                        tr { th { (v.kind) " id" } td { code { (v.id) } } }
                        tr { th { "status" } td { (v.status) } }
                        tr { th { "paymentId" } td { (v.payment_id) } }
                        tr { th { "amount" } td { (v.amount_value) " " (v.currency) } }
                        tr { th { "wallet reference" } td { (v.wallet_reference.as_deref().unwrap_or("—")) } }
                        tr { th { "created" } td { (time(&v.created_at)) } }
                        tr { th { "completed" } td { (opt_time(v.completed_at.as_ref())) } }
                    }
                }
            }
            section {
                h2 { "Stored answer" }
                @match page.answer {
                    Some(body) => pre.answer { (body) },
                    None => p.empty { "None stored." },
                }
            }
            section {
                h2 { "Timeline" }
                ol.timeline {
                    @for e in page.events {
                        li data-test="timeline-event" {
                            span.when { (time(&e.occurred_at)) }
                            " " strong.event { (e.event) }
                            @if e.from_state.is_some() || e.to_state.is_some() {
                                " " span.transition {
                                    (e.from_state.as_deref().unwrap_or("·")) " → " (e.to_state.as_deref().unwrap_or("·"))
                                }
                            }
                            (detail(&e.detail))
                        }
                    }
                }
            }
        },
    )
}

pub fn bulk_preview(viewer: &Viewer<'_>, since: &str, preview: &BulkRequeued) -> Markup {
    layout(
        Some(viewer),
        "Bulk requeue",
        html! {
            h1 { "Bulk requeue: preview" }
            p {
                strong data-test="bulk-count" { (preview.count) }
                " cancellations in manual_review"
                @if !since.is_empty() { " since " (since) " UTC" }
                " would go back to work with fresh attempts."
            }
            @if preview.count > 0 {
                p { "The first " (preview.sample.len()) ":" }
                ul.ids {
                    @for id in &preview.sample {
                        li { a href=(cancellation_href(id)) { (id) } }
                    }
                }
                form method="post" action="/console/requeue" {
                    (csrf_field(viewer))
                    input type="hidden" name="since" value=(since);
                    input type="hidden" name="previewed" value=(preview.count);
                    button.danger type="submit" data-test="bulk-confirm" { "Requeue " (preview.count) " now" }
                }
                p.note { "Rows that reach manual_review between this preview and the confirmation are requeued too." }
            }
            p { a href=(list_href(CancellationState::ManualReview)) { "Cancel" } }
        },
    )
}

pub fn bulk_done(viewer: &Viewer<'_>, count: u64, previewed: Option<u64>) -> Markup {
    layout(
        Some(viewer),
        "Bulk requeue",
        html! {
            h1 { "Bulk requeue: done" }
            p.notice {
                strong data-test="bulk-done" { (count) } " cancellations requeued"
                @if let Some(previewed) = previewed { " (the preview counted " (previewed) ")" }
                "."
            }
            p { a href=(list_href(CancellationState::ManualReview)) { "Back to manual review" } }
        },
    )
}

/// The report's columns: paymentRequestId first, then every other field the report store
/// function returns, in the order of the first line.
fn report_columns(rows: &[Value]) -> Vec<String> {
    let mut columns: Vec<String> = rows
        .first()
        .and_then(Value::as_object)
        .map(|o| o.keys().cloned().collect())
        .unwrap_or_default();
    if let Some(i) = columns.iter().position(|c| c == "paymentRequestId") {
        let id = columns.remove(i);
        columns.insert(0, id);
    }
    columns
}

pub fn report(viewer: &Viewer<'_>, day: NaiveDate, rows: &[Value], shown: usize) -> Markup {
    let columns = report_columns(rows);
    let provisional = |row: &Value| row.get("provisional").and_then(Value::as_bool) == Some(true);
    layout(
        Some(viewer),
        "Settlement report",
        html! {
            h1 { "Settlement report of " (day) }
            form.filters method="get" action="/console/report" {
                label { "Settlement day (T) " input type="date" name="date" value=(day); }
                button type="submit" { "Show" }
            }
            p {
                (rows.len()) " cancellations accepted for this day. "
                a data-test="report-download" href=(format!("/console/report.csv?date={day}")) download=(format!("settlement-{day}.csv")) { "Download CSV" }
            }
            @if rows.iter().any(provisional) {
                p.note { "Rows marked provisional may still change." }
            }
            @if !rows.is_empty() {
                table.list.report {
                    thead { tr { @for c in &columns { th { (c) } } } }
                    tbody {
                        @for row in rows.iter().take(shown) {
                            tr.provisional[provisional(row)] {
                                @for c in &columns {
                                    @if c == "paymentRequestId" {
                                        td { a href=(cancellation_href(row[c].as_str().unwrap_or(""))) { (value_text(&row[c])) } }
                                    } @else {
                                        td { (value_text(row.get(c).unwrap_or(&Value::Null))) }
                                    }
                                }
                            }
                        }
                    }
                }
                @if rows.len() > shown {
                    p.note { "The first " (shown) " of " (rows.len()) " are shown; the CSV has them all." }
                }
            }
        },
    )
}

//! `POST {base_path}/v1/payments/cancelPayment`: checks the envelope (media type, size, how long
//! the body takes), parses the body strictly and hands the request to the
//! [`CancelService`](crate::cancel::CancelService).
//!
//! The order matters for load shedding: the body is read first, within `server.body_timeout_ms`,
//! and only a request whose body is in takes one of the `server.max_in_flight` places. A client
//! that sends a head and then trickles (or never sends) its body costs a connection and a timer,
//! never a place an honest cancel needs.
//!
//! A body that does not arrive in time, or whose transport breaks before it is in, is answered
//! `U`/UNKNOWN_EXCEPTION (signed, HTTP 200), not `F`/PARAM_ILLEGAL: nothing is known to be wrong
//! with the request, only its transport failed, and `F` is final for Alipay+ while `U` makes it
//! retry. Nothing is stored, so the retry is decided afresh.
//!
//! A cancel shed because too many are in flight (`U`/REQUEST_TRAFFIC_EXCEED_LIMIT) is still
//! authenticated and parsed: when it verifies, its first arrival is recorded like any other `U`'s.

use super::{PublicState, respond, send};
use crate::protocol::{CancelPaymentRequest, ResultCode};
use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse, web};
use futures_util::StreamExt;

pub(super) async fn handle(
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<PublicState>,
) -> HttpResponse {
    if !is_json(&req) {
        return respond(&req, ResultCode::MediaTypeNotAcceptable, None);
    }
    let read = read_body(&req, payload, state.max_body_bytes);
    let body = match tokio::time::timeout(state.body_timeout, read).await {
        Err(_elapsed) => {
            let timeout_ms = u64::try_from(state.body_timeout.as_millis()).unwrap_or(u64::MAX);
            tracing::warn!(
                path = req.path(),
                timeout_ms,
                "request body did not arrive in time"
            );
            let message = format!("the request body did not arrive within {timeout_ms} ms");
            return respond(&req, ResultCode::UnknownException, Some(&message));
        }
        Ok(Ok(body)) => body,
        Ok(Err(BodyError::TooLarge)) => {
            let message = format!("the request body exceeds {} bytes", state.max_body_bytes);
            return respond(&req, ResultCode::ParamIllegal, Some(&message));
        }
        // The connection broke (or the body was cut short) before the body was in: a transport
        // fault like a slow body, so U and Alipay+ retries; F would be final for a cancel whose
        // request was never even read. Nothing is stored.
        Ok(Err(BodyError::Broken)) => {
            tracing::warn!(path = req.path(), "request body could not be read");
            return respond(
                &req,
                ResultCode::UnknownException,
                Some("the request body could not be read"),
            );
        }
    };
    // Only now, with the whole body in, does the request take a place among those in flight.
    let Some(_in_flight) = state.admit() else {
        note_shed_arrival(&req, &body, &state).await;
        return respond(&req, ResultCode::RequestTrafficExceedLimit, None);
    };
    if let Err(refused) = state.security.authenticate(&req, &body) {
        tracing::warn!(
            path = req.path(),
            reason = refused.reason(),
            "request not authenticated"
        );
        return respond(&req, refused.result_code(), Some(refused.reason()));
    }
    let request = match CancelPaymentRequest::parse(&body) {
        Ok(request) => request,
        Err(e) => return respond(&req, ResultCode::ParamIllegal, Some(&e.to_string())),
    };
    let answer = state.service.cancel(&request).await;
    send(&req, answer.code, answer.body)
}

/// A shed cancel is a `U` like any other: when its signature verifies and its body parses, its
/// arrival is recorded so that Alipay+'s retry after the cut-off is judged by it. The recording
/// is one small write, bounded by [`PublicState::shed_arrivals`] places (past them the arrival
/// goes unrecorded and the log says so): a flood must not take the pool from admitted cancels.
async fn note_shed_arrival(req: &HttpRequest, body: &[u8], state: &PublicState) {
    if state.security.authenticate(req, body).is_err() {
        return;
    }
    let Ok(request) = CancelPaymentRequest::parse(body) else {
        return;
    };
    match state.shed_arrivals.try_acquire() {
        Ok(_place) => state.service.note_shed_arrival(&request).await,
        Err(_) => tracing::warn!(
            payment_request_id = %request.payment_request_id,
            "shed cancel: too many arrivals being recorded; this one is not"
        ),
    }
}

/// `application/json`, with or without parameters (`; charset=UTF-8`).
fn is_json(req: &HttpRequest) -> bool {
    req.headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|mime| mime.trim().eq_ignore_ascii_case("application/json"))
}

enum BodyError {
    TooLarge,
    Broken,
}

/// Reads the whole body, refusing as soon as it is known to exceed `limit`.
async fn read_body(
    req: &HttpRequest,
    mut payload: web::Payload,
    limit: usize,
) -> Result<Vec<u8>, BodyError> {
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|len| len > limit) {
        return Err(BodyError::TooLarge);
    }
    let mut body = Vec::with_capacity(declared.unwrap_or(512).min(limit));
    while let Some(chunk) = payload.next().await {
        let chunk = chunk.map_err(|e| match e {
            actix_web::error::PayloadError::Overflow => BodyError::TooLarge,
            _ => BodyError::Broken,
        })?;
        if body.len() + chunk.len() > limit {
            return Err(BodyError::TooLarge);
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

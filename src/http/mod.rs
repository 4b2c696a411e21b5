//! The public listener: Alipay+'s `cancelPayment` and the answers for everything else under it.
//! Every answer is HTTP 200 with a `result` body (alipayplus.md: a non-200 or unsigned answer is
//! treated as unknown and retried), built in one place, [`respond`].

mod cancel_payment;
pub mod internal;

use crate::cancel::CancelService;
use crate::protocol::{ResultCode, result_body};
use actix_web::http::header::{self, HeaderValue};
use actix_web::{HttpRequest, HttpResponse, web};
use std::sync::Arc;

/// What the public handlers share.
pub struct PublicState {
    pub service: Arc<CancelService>,
    pub cancel_path: String,
    pub max_body_bytes: usize,
}

/// Mounts the public routes: cancelPayment under the base path, result codes for the rest.
pub fn configure(cfg: &mut web::ServiceConfig, state: web::Data<PublicState>) {
    let path = state.cancel_path.clone();
    cfg.app_data(state).service(
        web::resource(path)
            .route(web::post().to(cancel_payment::handle))
            .default_service(web::to(method_not_supported)),
    );
}

/// For every path no route matches.
pub async fn invalid_api(req: HttpRequest) -> HttpResponse {
    respond(&req, ResultCode::InvalidApi, None)
}

async fn method_not_supported(req: HttpRequest) -> HttpResponse {
    respond(&req, ResultCode::MethodNotSupported, None)
}

/// A fresh answer for `code`, with `message` or the code's default.
fn respond(req: &HttpRequest, code: ResultCode, message: Option<&str>) -> HttpResponse {
    let body = result_body(code, message.unwrap_or(code.default_message()));
    send(req, code, body)
}

/// The one place a response is built: HTTP 200, JSON, the exact bytes given.
fn send(req: &HttpRequest, code: ResultCode, body: Vec<u8>) -> HttpResponse {
    tracing::debug!(path = req.path(), result_code = code.as_str(), "responding");
    HttpResponse::Ok()
        .insert_header((
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json; charset=UTF-8"),
        ))
        .body(body)
}

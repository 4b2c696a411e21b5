//! The public listener: Alipay+'s `cancelPayment` and the answers for everything else under it.
//! Every answer is HTTP 200 with a `result` body (alipayplus.md: a non-200 or unsigned answer is
//! treated as unknown and retried), built in one place, `respond`.

mod cancel_payment;
pub mod internal;
pub mod security;

use crate::cancel::CancelService;
use crate::protocol::{ResultCode, result_body};
use actix_web::http::header::{self, HeaderValue};
use actix_web::{HttpRequest, HttpResponse, web};
use security::MessageSecurity;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

/// What the public handlers share.
pub struct PublicState {
    pub service: Arc<CancelService>,
    pub security: MessageSecurity,
    pub cancel_path: String,
    pub max_body_bytes: usize,
    /// How long a body may take to arrive (`server.body_timeout_ms`).
    pub body_timeout: std::time::Duration,
    /// Past this many cancels in flight, answer REQUEST_TRAFFIC_EXCEED_LIMIT at once (0: no
    /// limit) rather than queue into Alipay+'s 8-second timeout. Only requests whose body is in
    /// count: a flood of bodies trickling in must not crowd out honest cancels.
    pub max_in_flight: usize,
    pub in_flight: AtomicUsize,
    /// Places for recording the arrivals of shed cancels (one small write each).
    pub shed_arrivals: tokio::sync::Semaphore,
}

/// Shed cancels whose arrivals are being recorded at once, at most.
pub const SHED_ARRIVALS_IN_FLIGHT: usize = 16;

impl PublicState {
    /// The public listener's state for `service`, with the limits of `settings.server`.
    pub fn new(
        service: Arc<CancelService>,
        security: MessageSecurity,
        settings: &crate::config::Settings,
    ) -> Self {
        Self {
            service,
            security,
            cancel_path: settings.cancel_path(),
            max_body_bytes: settings.server.max_body_bytes,
            body_timeout: std::time::Duration::from_millis(settings.server.body_timeout_ms),
            max_in_flight: settings.server.max_in_flight,
            in_flight: AtomicUsize::new(0),
            shed_arrivals: tokio::sync::Semaphore::new(SHED_ARRIVALS_IN_FLIGHT),
        }
    }

    /// A place among the requests in flight, or None when the service is full.
    fn admit(&self) -> Option<InFlight<'_>> {
        let before = self.in_flight.fetch_add(1, Ordering::AcqRel);
        let slot = InFlight(&self.in_flight);
        (self.max_in_flight == 0 || before < self.max_in_flight).then_some(slot)
    }
}

/// Holds one place among the requests in flight until dropped.
struct InFlight<'a>(&'a AtomicUsize);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
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

/// The one place a response is built: HTTP 200, JSON, the exact bytes given, signed. The result
/// code rides along in the response's extensions for the metrics middleware.
fn send(req: &HttpRequest, code: ResultCode, body: Vec<u8>) -> HttpResponse {
    tracing::debug!(path = req.path(), result_code = code.as_str(), "responding");
    let mut builder = HttpResponse::Ok();
    builder.insert_header((
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json; charset=UTF-8"),
    ));
    let mut response = builder.finish();
    if let Some(state) = req.app_data::<web::Data<PublicState>>() {
        state.security.sign(req, response.headers_mut(), &body);
    }
    let mut response = response.set_body(actix_web::body::BoxBody::new(body));
    response.extensions_mut().insert(code);
    response
}

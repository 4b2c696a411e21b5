//! The internal API's refusals, every one in the document's `Error` shape (`{"error": "..."}`,
//! `application/json`), whoever refused: the query, path and JSON extractors (their configs
//! here), a payload limit or any other actix default (`in_json`, the net under them), a path no
//! route serves (`no_route`), a method a path does not declare (`method_not_allowed`, with
//! `Allow`). A client generated from `openapi/internal.yaml` then parses every error it gets.

use actix_web::body::to_bytes_limited;
use actix_web::dev::ServiceResponse;
use actix_web::error::{InternalError, QueryPayloadError};
use actix_web::http::header;
use actix_web::{HttpResponse, ResponseError, web};
use serde_json::json;

/// `?limit=null`, `?limit=1&limit=2`, a missing `state`: 400 with what serde said.
pub(super) fn query_config() -> web::QueryConfig {
    web::QueryConfig::default().error_handler(|e, _| {
        let message = match &e {
            QueryPayloadError::Deserialize(why) => format!("query string: {why}"),
            other => other.to_string(),
        };
        refused(e, message)
    })
}

/// A path segment its route cannot read names nothing: 404, as actix's own default says.
pub(super) fn path_config() -> web::PathConfig {
    web::PathConfig::default().error_handler(|e, _| {
        let answer = HttpResponse::NotFound().json(json!({ "error": format!("path: {e}") }));
        InternalError::from_response(e, answer).into()
    })
}

pub(super) fn json_config() -> web::JsonConfig {
    web::JsonConfig::default().error_handler(|e, _| {
        let message = format!("body: {e}");
        refused(e, message)
    })
}

/// The extractor's own status (400, 404, 413, 415...), the API's body.
fn refused<E: ResponseError + 'static>(e: E, message: String) -> actix_web::Error {
    let answer = HttpResponse::build(e.status_code()).json(json!({ "error": message }));
    InternalError::from_response(e, answer).into()
}

/// For a path no route of the internal API serves.
pub(super) async fn no_route() -> HttpResponse {
    HttpResponse::NotFound().json(json!({"error": "no such path in the internal API"}))
}

/// For a method the path does not declare (RFC 9110: 405 lists the ones it does).
pub(super) async fn method_not_allowed(allow: &'static str) -> HttpResponse {
    HttpResponse::MethodNotAllowed()
        .insert_header((header::ALLOW, allow))
        .json(json!({ "error": format!("this path answers {allow} only") }))
}

/// The longest refusal text kept from a non-JSON error body.
const REFUSAL_TEXT_LIMIT: usize = 1024;

/// An error answer that is not JSON (actix's text/plain defaults, e.g. a body over the payload
/// limit) rewritten into the API's shape, keeping its status, its other headers and its text.
pub(super) async fn in_json(answer: ServiceResponse) -> ServiceResponse {
    let status = answer.status();
    let is_json = answer
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if is_json || !(status.is_client_error() || status.is_server_error()) {
        return answer;
    }
    let (req, response) = answer.into_parts();
    let mut shaped = HttpResponse::build(status);
    for (name, value) in response.headers() {
        if name != header::CONTENT_TYPE && name != header::CONTENT_LENGTH {
            shaped.append_header((name.clone(), value.clone()));
        }
    }
    let message = match to_bytes_limited(response.into_body(), REFUSAL_TEXT_LIMIT).await {
        Ok(Ok(text)) if !text.is_empty() => String::from_utf8_lossy(&text).into_owned(),
        _ => status
            .canonical_reason()
            .unwrap_or("refused")
            .to_lowercase(),
    };
    ServiceResponse::new(req, shaped.json(json!({ "error": message })))
}

#[cfg(test)]
mod tests {
    use super::*;
    use actix_web::{App, test};
    use serde_json::Value;

    #[derive(serde::Deserialize)]
    struct Wanted {
        #[allow(dead_code)]
        state: String,
    }

    async fn takes_json(_: web::Json<Wanted>) -> HttpResponse {
        HttpResponse::Ok().finish()
    }

    async fn takes_number(_: web::Path<u32>) -> HttpResponse {
        HttpResponse::Ok().finish()
    }

    /// Each extractor's refusal, with only its config (no `in_json` net): status, JSON error.
    async fn refusal(request: test::TestRequest) -> (u16, Value) {
        let app = test::init_service(
            App::new()
                .app_data(json_config())
                .app_data(path_config())
                .route("/json", web::post().to(takes_json))
                .route("/number/{n}", web::get().to(takes_number)),
        )
        .await;
        let answer = test::call_service(&app, request.to_request()).await;
        let status = answer.status().as_u16();
        let content_type = answer.headers().get(header::CONTENT_TYPE).cloned();
        assert_eq!(
            content_type.as_ref().and_then(|v| v.to_str().ok()),
            Some("application/json")
        );
        (status, test::read_body_json(answer).await)
    }

    #[actix_web::test]
    async fn the_json_and_path_extractors_refuse_in_the_api_shape() {
        let (status, body) = refusal(
            test::TestRequest::post()
                .uri("/json")
                .insert_header((header::CONTENT_TYPE, "application/json"))
                .set_payload("{\"state\": 5}"),
        )
        .await;
        assert_eq!(status, 400, "{body}");
        assert!(
            body["error"].as_str().unwrap().starts_with("body: "),
            "{body}"
        );

        let (status, body) = refusal(
            test::TestRequest::post()
                .uri("/json")
                .insert_header((header::CONTENT_TYPE, "text/plain"))
                .set_payload("{}"),
        )
        .await;
        assert_eq!(
            (status, &body),
            (400, &json!({"error": "body: Content type error"}))
        );

        let (status, body) = refusal(test::TestRequest::get().uri("/number/abc")).await;
        assert_eq!(status, 404, "{body}");
        assert!(
            body["error"].as_str().unwrap().starts_with("path: "),
            "{body}"
        );
    }

    #[actix_web::test]
    async fn a_plain_text_error_is_rewritten_keeping_status_and_headers() {
        let app = test::init_service(
            App::new().service(
                web::scope("")
                    .wrap_fn(|req, srv| {
                        let answer = actix_web::dev::Service::call(srv, req);
                        async move { Ok(in_json(answer.await?).await) }
                    })
                    .route(
                        "/plain",
                        web::get().to(|| async {
                            HttpResponse::PayloadTooLarge()
                                .insert_header(("x-kept", "1"))
                                .body("too big")
                        }),
                    )
                    .route(
                        "/empty",
                        web::get().to(|| async { HttpResponse::NotFound().finish() }),
                    )
                    .route(
                        "/fine",
                        web::get().to(|| async { HttpResponse::Ok().body("fine") }),
                    ),
            ),
        )
        .await;
        let get = |uri: &'static str| test::TestRequest::get().uri(uri).to_request();
        let answer = test::call_service(&app, get("/plain")).await;
        assert_eq!(answer.status().as_u16(), 413);
        assert_eq!(answer.headers().get("x-kept").unwrap(), "1");
        let body: Value = test::read_body_json(answer).await;
        assert_eq!(body, json!({"error": "too big"}));
        let body: Value = test::read_body_json(test::call_service(&app, get("/empty")).await).await;
        assert_eq!(body, json!({"error": "not found"}));
        let answer = test::call_service(&app, get("/fine")).await;
        assert_eq!(test::read_body(answer).await, "fine");
    }
}

//! Only Alipay+ may cancel, and Alipay+ must be able to trust every answer: requests are verified
//! before anything is parsed or stored, and every response is signed.

use crate::support::TestOptions;
use crate::support::app::{ACQUIRER_ID, CANCEL_PATH, PSP_ID, Reply, TestApp, spawn_app_with};
use crate::support::keys::{CLIENT_ID, test_keys};
use mpp_cancel::domain::PaymentStatus;
use mpp_cancel::protocol::keys::GeneratedKeyPair;
use mpp_cancel::protocol::signature::{format_signature_header, signed_content, verify_response};

/// (what was tampered, request headers, body, the code it must get)
type TamperCase = (
    &'static str,
    Vec<(&'static str, String)>,
    Vec<u8>,
    &'static str,
);

const REQUEST_TIME: &str = "2026-11-20T12:00:00.123+08:00";

async fn signed_app() -> TestApp {
    spawn_app_with(TestOptions {
        signatures: true,
        ..Default::default()
    })
    .await
}

fn body(id: &str) -> Vec<u8> {
    serde_json::json!({"acquirerId": ACQUIRER_ID, "pspId": PSP_ID, "paymentRequestId": id})
        .to_string()
        .into_bytes()
}

/// The signature header value `key` makes over exactly these parts.
fn sign(
    key: &GeneratedKeyPair,
    version: &str,
    method: &str,
    path: &str,
    client: &str,
    time: &str,
    body: &[u8],
) -> String {
    let content = signed_content(method, path, client, time, body);
    let signature = key
        .private_key()
        .unwrap()
        .sign_pkcs1_sha256(&content)
        .unwrap();
    format_signature_header(version, &signature)
}

fn headers(client: &str, time: &str, signature: String) -> Vec<(&'static str, String)> {
    vec![
        ("Content-Type", "application/json; charset=UTF-8".into()),
        ("Client-Id", client.into()),
        ("Request-Time", time.into()),
        ("Signature", signature),
    ]
}

/// A request signed as Alipay+ signs it, with key version 1.
fn alipay_signed(id: &str) -> (Vec<(&'static str, String)>, Vec<u8>) {
    let body = body(id);
    let signature = sign(
        &test_keys().alipay_v1,
        "1",
        "POST",
        CANCEL_PATH,
        CLIENT_ID,
        REQUEST_TIME,
        &body,
    );
    (headers(CLIENT_ID, REQUEST_TIME, signature), body)
}

/// The response's signature verifies with our public key over the request's path.
fn assert_signed(reply: &Reply, path: &str) {
    let mpp_key = test_keys().mpp.public_key().unwrap();
    let client = reply.header("client-id").expect("a Client-Id header");
    let time = reply
        .header("response-time")
        .expect("a Response-Time header");
    let signature = reply.header("signature").expect("a Signature header");
    assert_eq!(client, CLIENT_ID);
    verify_response(&mpp_key, "POST", path, client, time, signature, &reply.body)
        .unwrap_or_else(|e| panic!("the response signature must verify: {e}"));
}

#[tokio::test]
async fn a_signed_request_is_accepted_and_the_answer_is_signed() {
    let app = signed_app().await;
    app.wallet.add(
        "signed-1",
        PaymentStatus::Success,
        100,
        "JPY",
        app.clock_now(),
    );
    let (headers, body) = alipay_signed("signed-1");

    let reply = app.post_raw(CANCEL_PATH, &headers, body.clone()).await;

    assert_eq!(reply.code(), "SUCCESS");
    assert_signed(&reply, CANCEL_PATH);
    let replay = app.post_raw(CANCEL_PATH, &headers, body).await;
    assert_eq!(replay.body, reply.body);
    assert_signed(&replay, CANCEL_PATH);
}

#[tokio::test]
async fn tampered_requests_are_refused_signed_and_store_nothing() {
    let app = signed_app().await;
    app.wallet.add(
        "victim",
        PaymentStatus::Success,
        100,
        "JPY",
        app.clock_now(),
    );
    let key = &test_keys().alipay_v1;
    let good_body = body("victim");
    let good_signature = sign(
        key,
        "1",
        "POST",
        CANCEL_PATH,
        CLIENT_ID,
        REQUEST_TIME,
        &good_body,
    );
    let mut one_byte = good_body.clone();
    let last = one_byte.len() - 3;
    one_byte[last] ^= 0x01;
    let mut bad_signature_byte = good_signature.clone();
    let pos = bad_signature_byte.len() / 2;
    let replacement = if &bad_signature_byte[pos..=pos] == "A" {
        "B"
    } else {
        "A"
    };
    bad_signature_byte.replace_range(pos..=pos, replacement);
    let mut non_utf8 = good_body.clone();
    non_utf8.insert(1, 0xff);

    let cases: Vec<TamperCase> = vec![
        (
            "signed for another method",
            headers(
                CLIENT_ID,
                REQUEST_TIME,
                sign(
                    key,
                    "1",
                    "GET",
                    CANCEL_PATH,
                    CLIENT_ID,
                    REQUEST_TIME,
                    &good_body,
                ),
            ),
            good_body.clone(),
            "INVALID_SIGNATURE",
        ),
        (
            "signed for another path",
            headers(
                CLIENT_ID,
                REQUEST_TIME,
                sign(
                    key,
                    "1",
                    "POST",
                    "/aps/api/v1/payments/pay",
                    CLIENT_ID,
                    REQUEST_TIME,
                    &good_body,
                ),
            ),
            good_body.clone(),
            "INVALID_SIGNATURE",
        ),
        (
            "signed for another Client-Id",
            headers(
                CLIENT_ID,
                REQUEST_TIME,
                sign(
                    key,
                    "1",
                    "POST",
                    CANCEL_PATH,
                    "OTHER",
                    REQUEST_TIME,
                    &good_body,
                ),
            ),
            good_body.clone(),
            "INVALID_SIGNATURE",
        ),
        (
            "Request-Time changed",
            headers(
                CLIENT_ID,
                "2026-11-20T12:00:01.123+08:00",
                good_signature.clone(),
            ),
            good_body.clone(),
            "INVALID_SIGNATURE",
        ),
        (
            "one body byte changed",
            headers(CLIENT_ID, REQUEST_TIME, good_signature.clone()),
            one_byte,
            "INVALID_SIGNATURE",
        ),
        (
            "non-UTF-8 body",
            headers(CLIENT_ID, REQUEST_TIME, good_signature.clone()),
            non_utf8,
            "INVALID_SIGNATURE",
        ),
        (
            "one signature byte changed",
            headers(CLIENT_ID, REQUEST_TIME, bad_signature_byte),
            good_body.clone(),
            "INVALID_SIGNATURE",
        ),
        (
            "truncated signature header",
            headers(
                CLIENT_ID,
                REQUEST_TIME,
                good_signature[..good_signature.len() / 2].to_owned(),
            ),
            good_body.clone(),
            "INVALID_SIGNATURE",
        ),
        (
            "doubled signature header",
            headers(
                CLIENT_ID,
                REQUEST_TIME,
                format!("{good_signature}, {good_signature}"),
            ),
            good_body.clone(),
            "INVALID_SIGNATURE",
        ),
        (
            "wrong algorithm",
            headers(
                CLIENT_ID,
                REQUEST_TIME,
                good_signature.replace("RSA256", "RSA1"),
            ),
            good_body.clone(),
            "INVALID_SIGNATURE",
        ),
        (
            "no signature",
            vec![
                ("Content-Type", "application/json".into()),
                ("Client-Id", CLIENT_ID.into()),
                ("Request-Time", REQUEST_TIME.into()),
            ],
            good_body.clone(),
            "INVALID_SIGNATURE",
        ),
        (
            "unknown Client-Id",
            headers("SOMEONE_ELSE", REQUEST_TIME, good_signature.clone()),
            good_body.clone(),
            "INVALID_CLIENT",
        ),
        (
            "unknown keyVersion",
            headers(
                CLIENT_ID,
                REQUEST_TIME,
                good_signature.replace("keyVersion=1", "keyVersion=7"),
            ),
            good_body.clone(),
            "KEY_NOT_FOUND",
        ),
        (
            "signed by a key Alipay+ does not have",
            headers(
                CLIENT_ID,
                REQUEST_TIME,
                sign(
                    &test_keys().mpp,
                    "1",
                    "POST",
                    CANCEL_PATH,
                    CLIENT_ID,
                    REQUEST_TIME,
                    &good_body,
                ),
            ),
            good_body.clone(),
            "INVALID_SIGNATURE",
        ),
    ];
    for (case, headers, body, code) in cases {
        let reply = app.post_raw(CANCEL_PATH, &headers, body).await;
        assert_eq!(
            (reply.status, reply.code()),
            (200, code.to_owned()),
            "{case}"
        );
        assert_signed(&reply, CANCEL_PATH);
        assert_eq!(
            app.db.count("SELECT count(*) FROM cancellations").await,
            0,
            "{case}"
        );
        assert_eq!(
            app.wallet.lookup_count(),
            0,
            "{case}: nothing parsed, the wallet not asked"
        );
    }
}

#[tokio::test]
async fn both_key_versions_are_accepted_during_a_rotation() {
    let app = signed_app().await;
    let keys = test_keys();
    for (id, key, version) in [
        ("rot-1", &keys.alipay_v1, "1"),
        ("rot-2", &keys.alipay_v2, "2"),
    ] {
        let body = body(id);
        let signature = sign(
            key,
            version,
            "POST",
            CANCEL_PATH,
            CLIENT_ID,
            REQUEST_TIME,
            &body,
        );
        let reply = app
            .post_raw(
                CANCEL_PATH,
                &headers(CLIENT_ID, REQUEST_TIME, signature),
                body,
            )
            .await;
        assert_eq!(reply.code(), "SUCCESS", "key version {version}");
    }
    // Without keyVersion the latest configured key (2) is used.
    let body = body("rot-latest");
    let signature = sign(
        &keys.alipay_v2,
        "2",
        "POST",
        CANCEL_PATH,
        CLIENT_ID,
        REQUEST_TIME,
        &body,
    )
    .replace("keyVersion=2,", "");
    let reply = app
        .post_raw(
            CANCEL_PATH,
            &headers(CLIENT_ID, REQUEST_TIME, signature),
            body,
        )
        .await;
    assert_eq!(reply.code(), "SUCCESS");
}

#[tokio::test]
async fn early_errors_are_signed_too() {
    let app = signed_app().await;
    let (headers, body) = alipay_signed("early");
    let unknown = app
        .post_raw("/aps/api/v1/payments/nothing", &headers, body.clone())
        .await;
    assert_eq!(unknown.code(), "INVALID_API");
    assert_signed(&unknown, "/aps/api/v1/payments/nothing");
    let mut wrong_type = headers.clone();
    wrong_type[0].1 = "text/plain".into();
    let media = app.post_raw(CANCEL_PATH, &wrong_type, body).await;
    assert_eq!(media.code(), "MEDIA_TYPE_NOT_ACCEPTABLE");
    assert_signed(&media, CANCEL_PATH);
}

#[tokio::test]
async fn verification_on_without_keys_refuses_to_start() {
    let mut settings = mpp_cancel::config::Settings::defaults();
    settings.alipayplus.verify_signatures = true;
    let clock = std::sync::Arc::new(mpp_cancel::domain::SystemClock);
    let error = mpp_cancel::http::security::MessageSecurity::from_settings(&settings, clock)
        .err()
        .expect("no keys: no start");
    assert!(error.to_string().contains("public_keys"), "{error}");
}

/// Runs `openssl` with `args`, returning stdout; the test needs the command line tool.
fn openssl(args: &[&str]) -> Vec<u8> {
    let out = std::process::Command::new("openssl")
        .args(args)
        .output()
        .expect("openssl is installed");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

#[tokio::test]
async fn the_running_service_interoperates_with_openssl_both_ways() {
    let app = signed_app().await;
    app.wallet.add(
        "openssl-1",
        PaymentStatus::Success,
        100,
        "JPY",
        app.clock_now(),
    );
    let dir = std::env::temp_dir().join(format!("mppc-openssl-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = |name: &str| dir.join(name).to_str().unwrap().to_owned();
    std::fs::write(path("alipay.pem"), test_keys().alipay_v1.private_pem()).unwrap();
    std::fs::write(path("mpp_pub.pem"), test_keys().mpp.public_pem()).unwrap();

    // The request content exactly as alipayplus.md states it, signed by openssl.
    let body = body("openssl-1");
    let mut content = format!("POST {CANCEL_PATH}\n{CLIENT_ID}.{REQUEST_TIME}.").into_bytes();
    content.extend_from_slice(&body);
    std::fs::write(path("request.bin"), &content).unwrap();
    let raw = openssl(&[
        "dgst",
        "-sha256",
        "-sign",
        &path("alipay.pem"),
        &path("request.bin"),
    ]);
    let b64 = openssl_base64(&raw);
    let encoded = b64
        .replace('+', "%2B")
        .replace('/', "%2F")
        .replace('=', "%3D");
    let signature = format!("algorithm=RSA256, keyVersion=1, signature={encoded}");

    let reply = app
        .post_raw(
            CANCEL_PATH,
            &headers(CLIENT_ID, REQUEST_TIME, signature),
            body,
        )
        .await;
    assert_eq!(reply.code(), "SUCCESS");

    // The response, verified by openssl over the content it is documented to sign.
    let time = reply.header("response-time").unwrap();
    let mut signed = format!("POST {CANCEL_PATH}\n{CLIENT_ID}.{time}.").into_bytes();
    signed.extend_from_slice(&reply.body);
    std::fs::write(path("response.bin"), &signed).unwrap();
    let value = reply.header("signature").unwrap();
    let sig_b64 = value.split("signature=").nth(1).unwrap();
    let sig_b64 = sig_b64
        .replace("%2B", "+")
        .replace("%2F", "/")
        .replace("%3D", "=");
    std::fs::write(
        path("response.sig"),
        base64_decode_with_openssl(&dir, &sig_b64),
    )
    .unwrap();
    let verified = openssl(&[
        "dgst",
        "-sha256",
        "-verify",
        &path("mpp_pub.pem"),
        "-signature",
        &path("response.sig"),
        &path("response.bin"),
    ]);
    assert_eq!(String::from_utf8_lossy(&verified).trim(), "Verified OK");
    std::fs::remove_dir_all(&dir).ok();
}

fn openssl_base64(raw: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(raw)
}

fn base64_decode_with_openssl(dir: &std::path::Path, b64: &str) -> Vec<u8> {
    let input = dir.join("sig.b64");
    std::fs::write(&input, format!("{b64}\n")).unwrap();
    openssl(&["base64", "-d", "-A", "-in", input.to_str().unwrap()])
}

#[tokio::test]
async fn random_headers_and_bodies_always_get_a_signed_result() {
    let app = signed_app().await;
    let (good_headers, good_body) = alipay_signed("fuzz-base");
    let mut rng = fastrand::Rng::with_seed(20261121);
    for round in 0..150 {
        let mut headers = good_headers.clone();
        let mut body = good_body.clone();
        match round % 5 {
            0 => body = (0..rng.usize(0..300)).map(|_| rng.u8(..)).collect(),
            1 => {
                let i = rng.usize(1..headers.len());
                headers[i].1 = (0..rng.usize(0..80)).map(|_| rng.char('!'..='~')).collect();
            }
            2 => {
                let i = rng.usize(0..body.len());
                body[i] = rng.u8(..);
            }
            3 => {
                headers.remove(rng.usize(1..headers.len()));
            }
            _ => {
                let cut = rng.usize(0..headers[3].1.len());
                headers[3].1.truncate(cut);
            }
        };
        let reply = app.post_raw(CANCEL_PATH, &headers, body).await;
        assert_eq!(reply.status, 200, "round {round}");
        let code = reply.code();
        assert!(
            [
                "INVALID_SIGNATURE",
                "INVALID_CLIENT",
                "KEY_NOT_FOUND",
                "PARAM_ILLEGAL",
                "SUCCESS"
            ]
            .contains(&code.as_str()),
            "round {round}: {code}"
        );
        assert_signed(&reply, CANCEL_PATH);
    }
    assert!(
        app.db
            .count("SELECT count(*) FROM cancellations WHERE payment_request_id <> 'fuzz-base'")
            .await
            == 0,
        "nothing but the genuine request could be stored"
    );
}

#[tokio::test]
async fn the_optional_clock_skew_check_refuses_stale_requests() {
    let app = spawn_app_with(TestOptions {
        signatures: true,
        configure: |s| s.alipayplus.max_clock_skew_seconds = 300,
        ..Default::default()
    })
    .await; // the clock shows 2026-11-20T12:00:00+08:00
    let key = &test_keys().alipay_v1;
    for (id, time, code) in [
        ("skew-ok", "2026-11-20T12:04:00+08:00", "SUCCESS"),
        (
            "skew-late",
            "2026-11-20T11:00:00+08:00",
            "INVALID_SIGNATURE",
        ),
        ("skew-utc", "2026-11-20T04:01:00Z", "SUCCESS"),
    ] {
        let body = body(id);
        let signature = sign(key, "1", "POST", CANCEL_PATH, CLIENT_ID, time, &body);
        let reply = app
            .post_raw(CANCEL_PATH, &headers(CLIENT_ID, time, signature), body)
            .await;
        assert_eq!(reply.code(), code, "{id}");
    }
}

#[tokio::test]
async fn a_nul_in_an_id_is_refused_signed_and_stores_nothing() {
    let app = signed_app().await;
    let body = serde_json::json!({
        "acquirerId": ACQUIRER_ID, "pspId": PSP_ID, "paymentRequestId": "nul\u{0}id"
    })
    .to_string()
    .into_bytes();
    let signature = sign(
        &test_keys().alipay_v1,
        "1",
        "POST",
        CANCEL_PATH,
        CLIENT_ID,
        REQUEST_TIME,
        &body,
    );
    let headers = headers(CLIENT_ID, REQUEST_TIME, signature);
    for _ in 0..2 {
        let reply = app.post_raw(CANCEL_PATH, &headers, body.clone()).await;
        assert_eq!(reply.status, 200);
        assert_eq!(
            (reply.status_letter().as_str(), reply.code().as_str()),
            ("F", "PARAM_ILLEGAL"),
            "{}",
            String::from_utf8_lossy(&reply.body)
        );
        assert_signed(&reply, CANCEL_PATH);
    }
    assert_eq!(app.db.count("SELECT count(*) FROM cancellations").await, 0);
    assert_eq!(app.wallet.lookup_count(), 0);
}

#[tokio::test]
async fn a_body_that_never_arrives_gets_a_signed_unknown_exception() {
    let app = spawn_app_with(TestOptions {
        signatures: true,
        configure: |s| s.server.body_timeout_ms = 300,
        ..Default::default()
    })
    .await;
    let (mut headers, body) = alipay_signed("slow-signed");
    // Announce the whole body, send half of it, then nothing.
    headers.push(("Content-Length", body.len().to_string()));
    let mut stream =
        crate::operations::stalled_request(&app, &headers, &body[..body.len() / 2]).await;
    let (status, answer, response_headers) = crate::operations::read_response(&mut stream).await;
    assert_eq!(status, 200);
    let reply = Reply {
        status,
        body: answer,
        headers: response_headers,
    };
    assert_eq!(reply.code(), "UNKNOWN_EXCEPTION");
    assert_eq!(reply.status_letter(), "U");
    assert_signed(&reply, CANCEL_PATH);
}

//! The embedding example (`examples/embedded_wallet`) as a test: the MPP's app with mpp-cancel
//! mounted answers a signed cancel (signature verified both ways), its `pay` then refuses the id,
//! and the engine refunds the ledger exactly once.

#[path = "../examples/embedded_wallet/shop.rs"]
mod shop;

mod common;

use mpp_cancel::config::{Secret, Settings};
use mpp_cancel::domain::Money;
use mpp_cancel::protocol::keys::GeneratedKeyPair;
use mpp_cancel::sim::{SimRequest, send_cancel};
use mpp_cancel::store::Store;
use std::time::Duration;

#[tokio::test]
async fn the_embedded_service_answers_a_signed_cancel_beside_the_mpps_routes() {
    let (_url, pool) = common::fresh_database().await;
    let alipay = GeneratedKeyPair::generate_rsa_2048().unwrap();
    let mpp = GeneratedKeyPair::generate_rsa_2048().unwrap();
    // Production defaults and what production needs: the embedding runs the binary's checks.
    let mut settings = Settings::defaults();
    settings.alipayplus.verify_signatures = true;
    settings.alipayplus.psp_id = "2188000000000042".into();
    settings.alipayplus.client_id = "EMBED_CLIENT".into();
    settings.alipayplus.public_keys = [("1".to_owned(), alipay.public_base64())].into();
    settings.alipayplus.private_key = Some(Secret::new(mpp.private_pem()));
    settings.refunds.workers = 1;
    settings.refunds.poll_interval_ms = 50;

    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let shop = shop::build(listener, &settings, Store::new(pool.clone())).unwrap();
    let server = shop.server.handle();
    tokio::spawn(shop.server);
    let http = reqwest::Client::new();

    // The MPP's own route works as before.
    let paid = http
        .post(format!("{base}/pay"))
        .json(
            &serde_json::json!({"paymentRequestId": "embed-1", "value": "1500", "currency": "JPY"}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(paid.status(), 200);

    let outcome = send_cancel(&SimRequest {
        url: format!("{base}{}", settings.cancel_path()),
        client_id: "EMBED_CLIENT".into(),
        acquirer_id: common::ACQUIRER_ID.into(),
        psp_id: settings.alipayplus.psp_id.clone(),
        payment_request_id: "embed-1".into(),
        alipay_private_key: alipay.private_key().unwrap(),
        key_version: "1".into(),
        mpp_public_key: Some(mpp.public_key().unwrap()),
    })
    .await
    .unwrap();
    assert_eq!(outcome.result_code(), Some("SUCCESS"), "{:?}", outcome.body);
    assert_eq!(
        outcome.signature_verified,
        Some(true),
        "{:?}",
        outcome.signature_problem
    );

    // The guard, asked from the MPP's own pay: a cancelled id is not charged again.
    let again = http
        .post(format!("{base}/pay"))
        .json(
            &serde_json::json!({"paymentRequestId": "embed-1", "value": "1500", "currency": "JPY"}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), 409);

    // The engine refunds the ledger, once, for the full amount.
    let full = Money::parse("1500", "JPY").unwrap();
    let mut refunded = 0;
    for _ in 0..100 {
        refunded = shop.wallet.entry("embed-1").unwrap().refunded_minor_units;
        if refunded > 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(refunded, full.minor_units);
    server.stop(true).await;
    shop.engine.stop().await;
}

#[tokio::test]
async fn the_embedding_refuses_what_the_binary_refuses() {
    // A pool that never connects: the refusal comes first.
    let store = Store::connect_lazy(
        "postgres://nobody@127.0.0.1:1/nothing".parse().unwrap(),
        1,
        Duration::from_millis(100),
    );
    let listener = || std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let refusal = |settings: &Settings| match shop::build(listener(), settings, store.clone()) {
        Ok(_) => panic!("the embedding started"),
        Err(e) => e.to_string(),
    };
    let mut settings = Settings::defaults();
    assert!(refusal(&settings).contains("alipayplus.psp_id"));
    settings.alipayplus.psp_id = "2188000000000042".into();
    settings.alipayplus.client_id = "EMBED_CLIENT".into();
    settings.alipayplus.verify_signatures = false;
    let message = refusal(&settings);
    assert!(
        message.contains("alipayplus.verify_signatures"),
        "{message}"
    );
    settings.alipayplus.verify_signatures = true;
    settings.refunds.lease_seconds = 0;
    assert!(refusal(&settings).contains("refunds.lease_seconds"));
}

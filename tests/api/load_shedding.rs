//! A cancel shed under load is a `U` like any other (issue 18 point 6): when its signature
//! verified, its first arrival is recorded, so Alipay+'s retry after the cut-off is judged by it.

use crate::support::TestOptions;
use crate::support::app::{ACQUIRER_ID, CANCEL_PATH, PSP_ID, TestApp, spawn_app_with};
use crate::support::at;
use crate::support::keys::{CLIENT_ID, test_keys};
use mpp_cancel::domain::PaymentStatus;
use mpp_cancel::protocol::keys::GeneratedKeyPair;
use mpp_cancel::protocol::signature::{format_signature_header, signed_content};
use std::time::Duration;

const REQUEST_TIME: &str = "2026-11-21T00:29:00.000+08:00";

/// A cancel for `id` signed with `key` (Alipay+'s own, or a forger's).
async fn signed_cancel(app: &TestApp, id: &str, key: &GeneratedKeyPair) -> String {
    let body =
        serde_json::json!({"acquirerId": ACQUIRER_ID, "pspId": PSP_ID, "paymentRequestId": id})
            .to_string()
            .into_bytes();
    let content = signed_content("POST", CANCEL_PATH, CLIENT_ID, REQUEST_TIME, &body);
    let signature = key
        .private_key()
        .unwrap()
        .sign_pkcs1_sha256(&content)
        .unwrap();
    let headers = [
        ("Content-Type", "application/json; charset=UTF-8".to_owned()),
        ("Client-Id", CLIENT_ID.to_owned()),
        ("Request-Time", REQUEST_TIME.to_owned()),
        ("Signature", format_signature_header("1", &signature)),
    ];
    app.post_raw(CANCEL_PATH, &headers, body).await.code()
}

#[tokio::test]
async fn a_verified_cancel_shed_before_the_cutoff_is_accepted_when_retried_after_it() {
    let app = spawn_app_with(TestOptions {
        now: at("2026-11-21T00:29:00+08:00"),
        signatures: true,
        configure: |s| s.server.max_in_flight = 1,
        ..Default::default()
    })
    .await;
    let keys = test_keys();
    for id in ["holder", "shed", "forged"] {
        app.wallet.add(
            id,
            PaymentStatus::Success,
            100,
            "JPY",
            at("2026-11-20T10:00:00+08:00"),
        );
    }
    // One slow cancel (its lookup takes 800 ms, within cancel.lookup_timeout_ms) holds the only
    // place in flight.
    app.wallet.delay_lookups(Duration::from_millis(800));
    let holder = signed_cancel(&app, "holder", &keys.alipay_v1);
    let others = async {
        tokio::time::sleep(Duration::from_millis(200)).await;
        let shed = signed_cancel(&app, "shed", &keys.alipay_v1).await;
        // Signed by someone else: shed too, and nothing of it is recorded.
        let forged = signed_cancel(&app, "forged", &keys.mpp).await;
        (shed, forged)
    };
    let (holder, (shed, forged)) = tokio::join!(holder, others);
    assert_eq!(holder, "SUCCESS");
    assert_eq!(shed, "REQUEST_TRAFFIC_EXCEED_LIMIT");
    assert_eq!(forged, "REQUEST_TRAFFIC_EXCEED_LIMIT");
    assert_eq!(
        app.db
            .count("SELECT count(*) FROM cancel_arrivals WHERE payment_request_id = 'shed'")
            .await,
        1,
        "the verified shed cancel's arrival is recorded"
    );

    // Alipay+ retries after the cut-off.
    app.wallet.delay_lookups(Duration::ZERO);
    app.clock.set(at("2026-11-21T00:45:00+08:00"));
    assert_eq!(
        signed_cancel(&app, "shed", &keys.alipay_v1).await,
        "SUCCESS",
        "judged by its first arrival, 00:29"
    );
    assert_eq!(
        app.db.state_of("shed").await.as_deref(),
        Some("refund_pending")
    );
    assert_eq!(
        signed_cancel(&app, "forged", &keys.alipay_v1).await,
        "CANCEL_WINDOW_EXCEED",
        "an arrival whose signature did not verify proves nothing"
    );
}

//! The conformance kit (`sim conformance`) against the real service (the binary, signatures on,
//! demo wallet, real PostgreSQL): everything PASSes, the seed scenarios end refunded once.
//! Against small MPPs broken on purpose (no idempotency, unsigned errors, the UTC day in place
//! of UTC+8, non-200 error answers) it FAILs, naming the rule.

mod common;

use actix_web::{App, HttpRequest, HttpResponse, HttpServer, web};
use chrono::{DateTime, Days, NaiveTime, TimeZone, Utc};
use common::{PSP_ID, ServiceProcess, fresh_database, run_cli};
use mpp_cancel::protocol::keys::{GeneratedKeyPair, PrivateKey};
use mpp_cancel::protocol::signature::{RequestVerifier, ResponseSigner, alipay_time};
use mpp_cancel::protocol::{CancelPaymentRequest, ResultCode, result_body};
use mpp_cancel::sim::checks::{Kit, utc8};
use mpp_cancel::sim::client::{AlipayClient, Target};
use mpp_cancel::sim::internal::InternalApi;
use mpp_cancel::sim::payments::PaymentMaker;
use mpp_cancel::sim::report::{Report, Verdict};
use mpp_cancel::wallet::demo::DemoWallet;
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Mutex, OnceLock};

const CLIENT_ID: &str = "CONFORMANCE_ALIPAY";
const TOKEN: &str = "conformance-internal-token-0123456789";

struct Keys {
    alipay: GeneratedKeyPair,
    mpp: GeneratedKeyPair,
    dir: PathBuf,
}

fn keys() -> &'static Keys {
    static KEYS: OnceLock<Keys> = OnceLock::new();
    KEYS.get_or_init(|| {
        let generate = || GeneratedKeyPair::generate_rsa_2048().expect("RSA key generation");
        let keys = Keys {
            alipay: generate(),
            mpp: generate(),
            dir: std::env::temp_dir().join(format!("mppc-conf-{}", uuid::Uuid::new_v4().simple())),
        };
        std::fs::create_dir_all(&keys.dir).unwrap();
        for (name, text) in [
            ("alipay.pem", keys.alipay.private_pem()),
            ("alipay.pub.pem", keys.alipay.public_pem()),
            ("mpp.pem", keys.mpp.private_pem()),
            ("mpp.pub.pem", keys.mpp.public_pem()),
        ] {
            std::fs::write(keys.dir.join(name), text).unwrap();
        }
        keys
    })
}

fn key_path(name: &str) -> String {
    keys().dir.join(name).display().to_string()
}

fn signed_service(db_url: &str) -> ServiceProcess {
    ServiceProcess::start(
        db_url,
        &[
            ("MPP_CANCEL__ALIPAYPLUS__VERIFY_SIGNATURES", "true".into()),
            ("MPP_CANCEL__ALIPAYPLUS__CLIENT_ID", CLIENT_ID.into()),
            ("MPP_CANCEL__ALIPAYPLUS__PSP_ID", PSP_ID.into()),
            (
                "MPP_CANCEL__ALIPAYPLUS__PUBLIC_KEYS__1",
                format!("file:{}", key_path("alipay.pub.pem")),
            ),
            (
                "MPP_CANCEL__ALIPAYPLUS__PRIVATE_KEY_FILE",
                key_path("mpp.pem"),
            ),
            ("MPP_CANCEL__ALIPAYPLUS__KEY_VERSION", "1".into()),
            ("MPP_CANCEL__INTERNAL__TOKEN", TOKEN.into()),
            ("MPP_CANCEL__WALLET__KIND", "demo".into()),
        ],
    )
}

fn target(url: &str) -> Target {
    Target {
        url: reqwest::Url::parse(url).unwrap(),
        client_id: CLIENT_ID.into(),
        acquirer_id: "1022188000000000001".into(),
        psp_id: PSP_ID.into(),
        alipay_private_key: keys().alipay.private_key().unwrap(),
        key_version: "1".into(),
        mpp_public_key: Some(keys().mpp.public_key().unwrap()),
    }
}

fn verdict(report: &Report, check: &str) -> Verdict {
    report
        .row(check)
        .unwrap_or_else(|| panic!("no row {check}:\n{}", report.table()))
        .verdict
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_check_and_scenario_passes_against_the_real_service() {
    let (db_url, pool) = fresh_database().await;
    let service = signed_service(&db_url);
    service.wait_until_up().await;
    let kit = Kit::new(
        AlipayClient::new(target(&service.cancel_url())).unwrap(),
        PaymentMaker::Demo(DemoWallet::new(pool.clone())),
        Some(InternalApi::new(&service.internal, TOKEN).unwrap()),
    );
    let report = kit.run().await;
    let table = report.table();
    println!("{table}"); // shown with --nocapture: the README's table comes from here
    // Every rule passes, the control-character one (a NUL in paymentRequestId is F
    // PARAM_ILLEGAL, never a U from PostgreSQL) included.
    let failed: Vec<_> = report
        .rows
        .iter()
        .filter(|r| r.verdict == Verdict::Fail)
        .collect();
    assert!(failed.is_empty(), "{table}\n{}", service.log_text());
    for check in [
        "unknown-payment-is-S",
        "replay-byte-identical",
        "concurrent-twins-one-answer",
        "retry-after-no-answer",
        "bad-input-not-post",
        "bad-input-unknown-api",
        "bad-input-control-character",
        "tampered-body-refused",
        "payment-success-is-S",
        "payment-failed-is-S",
        "payment-processing-is-S",
        "payment-authorized-is-S",
        "payment-refunded-is-process-fail",
        "window-first-instant-of-today-utc8",
        "scenario-acqp-cancel-before-success",
        "scenario-timeout-close-before-success",
        "scenario-duplicate-through-another-mpp",
        "scenario-failure-then-success",
        "scenario-acqp-cancel-t1",
        "every-answer-http-200-with-result",
        "every-answer-signed",
    ] {
        assert_eq!(verdict(&report, check), Verdict::Pass, "{check}\n{table}");
    }
    // The authorization: S, released once (no refund), and the replay byte for byte after it.
    let authorized = report.row("payment-authorized-is-S").unwrap();
    for said in [
        "SUCCESS",
        "state voided",
        "no refund in the wallet",
        "one void in the wallet",
        "replayed byte-identical",
    ] {
        assert!(authorized.evidence.contains(said), "{said}\n{table}");
    }
    let held = authorized.evidence.split(':').next().unwrap();
    let (state, voids, refunds): (String, i64, i64) = sqlx::query_as(
        "SELECT c.state,
                (SELECT count(*) FROM voids v WHERE v.payment_request_id = c.payment_request_id
                    AND v.status = 'voided'),
                (SELECT count(*) FROM refunds r WHERE r.payment_request_id = c.payment_request_id)
           FROM cancellations c WHERE c.payment_request_id = $1",
    )
    .bind(held)
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!((state.as_str(), voids, refunds), ("voided", 1, 0), "{held}");

    // The scenarios' money: one refund each, for the full amount, in the wallet's own ledger.
    let per_scenario: Vec<(String, i64, i64)> = sqlx::query_as(
        "SELECT c.payment_request_id, count(r.*), max(c.amount_value)
           FROM cancellations c JOIN demo_refunds r USING (payment_request_id)
          WHERE c.state = 'refunded' GROUP BY 1",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    assert!(per_scenario.len() >= 7, "{per_scenario:?}");
    assert!(
        per_scenario.iter().all(|(_, n, _)| *n == 1),
        "{per_scenario:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_prints_the_table_and_creates_payments_through_a_hook_command() {
    let (db_url, _pool) = fresh_database().await;
    let service = signed_service(&db_url);
    service.wait_until_up().await;
    // The MPP's hook: here our own `demo pay`, called with the kit's positional arguments.
    let hook = r#""$MPPC_BIN" --config-dir /nonexistent demo pay --payment-request-id "$1" --status "$2" --amount "$3" --currency "$4" --created-at "$5" --refunded "$6" >/dev/null"#;
    let (ok, stdout, stderr) = run_cli(
        &[
            "sim",
            "scenario",
            "failure-then-success",
            "--url",
            &service.cancel_url(),
            "--client-id",
            CLIENT_ID,
            "--psp-id",
            PSP_ID,
            "--alipay-private-key",
            &key_path("alipay.pem"),
            "--mpp-public-key",
            &key_path("mpp.pub.pem"),
            "--internal-url",
            &service.internal,
            "--token",
            TOKEN,
            "--create-payment-cmd",
            hook,
        ],
        &[
            ("MPPC_BIN", env!("CARGO_BIN_EXE_mpp-cancel").into()),
            ("DATABASE_URL", db_url.clone()),
        ],
    );
    assert!(ok, "{stdout}\n{stderr}");
    assert!(
        stdout.contains("scenario-failure-then-success  PASS"),
        "{stdout}"
    );
    assert!(stdout.contains("state refunded"), "{stdout}");

    // A broken hook is the kit's failure, said as such, with a non-zero exit.
    let (ok, stdout, _) = run_cli(
        &[
            "sim",
            "scenario",
            "acqp-cancel-t1",
            "--url",
            &service.cancel_url(),
            "--client-id",
            CLIENT_ID,
            "--psp-id",
            PSP_ID,
            "--alipay-private-key",
            &key_path("alipay.pem"),
            "--create-payment-cmd",
            "echo no such wallet >&2; exit 3",
        ],
        &[],
    );
    assert!(!ok);
    assert!(
        stdout.contains("FAIL") && stdout.contains("no such wallet"),
        "{stdout}"
    );

    // Without a way to create payments, those checks are skipped with the reason.
    let (ok, stdout, stderr) = run_cli(
        &[
            "sim",
            "conformance",
            "--url",
            &service.cancel_url(),
            "--client-id",
            CLIENT_ID,
            "--psp-id",
            PSP_ID,
            "--alipay-private-key",
            &key_path("alipay.pem"),
            "--mpp-public-key",
            &key_path("mpp.pub.pem"),
            "--format",
            "json",
        ],
        &[],
    );
    let json: serde_json::Value =
        serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("{e}: {stdout}\n{stderr}"));
    let rows = json["rows"].as_array().unwrap();
    let any_fail = rows.iter().any(|r| r["verdict"] == "FAIL");
    assert_eq!(
        ok, !any_fail,
        "the exit status follows the FAIL rows: {stdout}\n{stderr}"
    );
    assert!(rows.iter().all(|r| r["verdict"] != "FAIL"), "{stdout}");
    let skipped = |check: &str| {
        rows.iter().find(|r| r["check"] == check).is_some_and(|r| {
            r["verdict"] == "SKIP" && r["evidence"].as_str().unwrap().contains("--demo-wallet")
        })
    };
    assert!(skipped("payment-success-is-S"), "{stdout}");
    assert!(skipped("scenario-acqp-cancel-t1"), "{stdout}");
    assert!(
        rows.iter()
            .any(|r| r["check"] == "every-answer-signed" && r["verdict"] == "PASS"),
        "{stdout}"
    );
}

// --- MPPs broken on purpose ------------------------------------------------------------------

#[derive(Debug, Clone, Copy, Default)]
struct Flaws {
    /// Every request decided afresh: a second cancel of the same id is "already cancelled".
    no_idempotency: bool,
    /// F answers go out without a signature.
    unsigned_errors: bool,
    /// T taken on the UTC day, cut-off 00:30 UTC.
    utc_day: bool,
    /// F answers with HTTP 400.
    non_200_errors: bool,
}

struct TestPaymentRow {
    created_at: DateTime<Utc>,
    refunded: bool,
}

struct FakeMpp {
    flaws: Flaws,
    verifier: RequestVerifier,
    signer: ResponseSigner,
    payments: Mutex<HashMap<String, TestPaymentRow>>,
    answers: Mutex<HashMap<String, Vec<u8>>>,
}

const CANCEL_PATH: &str = "/aps/api/v1/payments/cancelPayment";

impl FakeMpp {
    fn closes_at(&self, created: DateTime<Utc>) -> DateTime<Utc> {
        let cutoff = NaiveTime::from_hms_opt(0, 30, 0).unwrap();
        if self.flaws.utc_day {
            let day = created.date_naive() + Days::new(1);
            return Utc.from_utc_datetime(&day.and_time(cutoff));
        }
        let day = created.with_timezone(&utc8()).date_naive() + Days::new(1);
        utc8()
            .from_local_datetime(&day.and_time(cutoff))
            .unwrap()
            .with_timezone(&Utc)
    }

    fn decide(&self, req: &HttpRequest, body: &[u8]) -> (ResultCode, Vec<u8>) {
        let refuse = |code: ResultCode| (code, result_body(code, code.default_message()));
        if req.path() != CANCEL_PATH {
            return refuse(ResultCode::InvalidApi);
        }
        if req.method() != actix_web::http::Method::POST {
            return refuse(ResultCode::MethodNotSupported);
        }
        let content_type = req
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        if !content_type.starts_with("application/json") {
            return refuse(ResultCode::MediaTypeNotAcceptable);
        }
        let header = |name: &str| req.headers().get(name).map(|v| v.as_bytes());
        if let Err(e) = self.verifier.verify(
            "POST",
            req.path(),
            header("client-id"),
            header("request-time"),
            header("signature"),
            body,
        ) {
            return refuse(e.result_code());
        }
        let Ok(request) = CancelPaymentRequest::parse(body) else {
            return refuse(ResultCode::ParamIllegal);
        };
        let ids = [
            &request.acquirer_id,
            &request.psp_id,
            &request.payment_request_id,
        ];
        if ids.iter().any(|id| id.chars().any(char::is_control)) {
            return refuse(ResultCode::ParamIllegal);
        }
        if request.psp_id != PSP_ID {
            return refuse(ResultCode::AccessDenied);
        }
        let id = request.payment_request_id;
        let mut answers = self.answers.lock().unwrap();
        if let Some(stored) = answers.get(&id) {
            if self.flaws.no_idempotency {
                return refuse(ResultCode::ProcessFail);
            }
            return (ResultCode::Success, stored.clone());
        }
        let payments = self.payments.lock().unwrap();
        let answer = match payments.get(&id) {
            Some(p) if Utc::now() >= self.closes_at(p.created_at) => {
                refuse(ResultCode::CancelWindowExceed)
            }
            Some(p) if p.refunded => refuse(ResultCode::ProcessFail),
            _ => refuse(ResultCode::Success),
        };
        answers.insert(id, answer.1.clone());
        answer
    }

    fn respond(&self, req: &HttpRequest, body: &[u8]) -> HttpResponse {
        let (code, answer) = self.decide(req, body);
        let failed = code.status().as_str() != "S";
        let mut response = if failed && self.flaws.non_200_errors {
            HttpResponse::BadRequest()
        } else {
            HttpResponse::Ok()
        };
        response.content_type("application/json; charset=UTF-8");
        if !(failed && self.flaws.unsigned_errors) {
            let time = alipay_time(Utc::now(), chrono::SecondsFormat::Secs);
            let signature =
                self.signer
                    .sign(req.method().as_str(), req.path(), CLIENT_ID, &time, &answer);
            response
                .insert_header(("Client-Id", CLIENT_ID))
                .insert_header(("Response-Time", time))
                .insert_header(("Signature", signature));
        }
        response.body(answer)
    }
}

async fn any_request(req: HttpRequest, body: web::Bytes, mpp: web::Data<FakeMpp>) -> HttpResponse {
    mpp.respond(&req, &body)
}

/// The kit's hook: creates or replaces a test payment.
async fn create_payment(
    body: web::Json<serde_json::Value>,
    mpp: web::Data<FakeMpp>,
) -> HttpResponse {
    let created_at = body["createdAt"]
        .as_str()
        .and_then(|t| DateTime::parse_from_rfc3339(t).ok());
    let (Some(id), Some(created_at)) = (body["paymentRequestId"].as_str(), created_at) else {
        return HttpResponse::BadRequest().finish();
    };
    let refunded = body["refundedAmount"]["value"]
        .as_str()
        .is_some_and(|v| v != "0");
    mpp.payments.lock().unwrap().insert(
        id.to_string(),
        TestPaymentRow {
            created_at: created_at.with_timezone(&Utc),
            refunded,
        },
    );
    HttpResponse::Ok().finish()
}

/// Runs the kit against a fake MPP with `flaws`.
async fn run_against(flaws: Flaws) -> Report {
    let alipay_public = keys().alipay.public_key().unwrap();
    let mpp_private: PrivateKey = keys().mpp.private_key().unwrap();
    let mpp = web::Data::new(FakeMpp {
        flaws,
        verifier: RequestVerifier::new(CLIENT_ID, [("1".to_string(), alipay_public)]),
        signer: ResponseSigner::new(mpp_private, "1".into()),
        payments: Mutex::default(),
        answers: Mutex::default(),
    });
    let server = HttpServer::new(move || {
        App::new()
            .app_data(mpp.clone())
            .route("/test-payments", web::post().to(create_payment))
            .default_service(web::to(any_request))
    })
    .workers(2)
    .bind("127.0.0.1:0")
    .unwrap();
    let address = server.addrs()[0];
    let server = server.run();
    let handle = server.handle();
    tokio::spawn(server);
    let base = format!("http://{address}");
    let kit = Kit::new(
        AlipayClient::new(target(&format!("{base}{CANCEL_PATH}"))).unwrap(),
        PaymentMaker::Url(reqwest::Url::parse(&format!("{base}/test-payments")).unwrap()),
        None,
    );
    let report = kit.run().await;
    handle.stop(false).await;
    report
}

fn assert_fails(report: &Report, check: &str, evidence: &str) {
    let row = report
        .row(check)
        .unwrap_or_else(|| panic!("no row {check}"));
    assert_eq!(row.verdict, Verdict::Fail, "{check}\n{}", report.table());
    assert!(
        row.evidence.contains(evidence),
        "{check}: {:?}",
        row.evidence
    );
}

#[actix_web::test]
async fn a_correct_fake_mpp_passes_so_the_broken_ones_fail_for_their_flaw_alone() {
    let report = run_against(Flaws::default()).await;
    assert!(!report.failed(), "{}", report.table());
}

#[actix_web::test]
async fn no_idempotency_fails_the_replay_and_twin_rules() {
    let report = run_against(Flaws {
        no_idempotency: true,
        ..Default::default()
    })
    .await;
    assert_fails(&report, "replay-byte-identical", "PROCESS_FAIL");
    assert_fails(&report, "concurrent-twins-one-answer", "different answers");
    assert_fails(&report, "retry-after-no-answer", "PROCESS_FAIL");
    // Each payment-state row replays its cancel too: S first, then PROCESS_FAIL.
    assert_fails(&report, "payment-authorized-is-S", "the replay got");
}

#[actix_web::test]
async fn unsigned_errors_fail_the_signature_rules() {
    let report = run_against(Flaws {
        unsigned_errors: true,
        ..Default::default()
    })
    .await;
    assert_fails(&report, "bad-input-json", "no Signature");
    assert_fails(&report, "tampered-signature-refused", "no Signature");
    assert_fails(&report, "every-answer-signed", "no Signature");
    assert_eq!(verdict(&report, "unknown-payment-is-S"), Verdict::Pass);
}

#[actix_web::test]
async fn a_utc_day_in_place_of_utc8_fails_the_window_rule() {
    let report = run_against(Flaws {
        utc_day: true,
        ..Default::default()
    })
    .await;
    let row = report.row("window-utc8-day").unwrap();
    if row.verdict == Verdict::Skip {
        // Within a minute of a cut-off nothing can tell the two rules apart.
        assert!(
            row.evidence.contains("within a minute"),
            "{}",
            report.table()
        );
        return;
    }
    assert_fails(&report, "window-utc8-day", "expected");
}

#[actix_web::test]
async fn non_200_error_answers_fail_the_http_rule() {
    let report = run_against(Flaws {
        non_200_errors: true,
        ..Default::default()
    })
    .await;
    assert_fails(&report, "bad-input-json", "HTTP 400");
    assert_fails(&report, "every-answer-http-200-with-result", "HTTP 400");
    assert_eq!(verdict(&report, "unknown-payment-is-S"), Verdict::Pass);
}

//! The operator console (DESIGN.md, "Operator console") in a real browser: headless Chromium
//! from Debian's `chromium` and `chromium-driver`, driven over WebDriver (fantoccini), against
//! the real `mpp-cancel` binary, a real PostgreSQL and an HTTP wallet double that refuses
//! refunds until the test "fixes" it. The security rules are also checked at the HTTP level,
//! each by a test that fails without its rule.
//!
//! With `MPP_CANCEL_SCREENSHOTS=DIR` the browser tests save PNGs of the pages into DIR
//! (`scripts/console-screenshots` regenerates docs/console/ that way).

mod common;

use actix_web::{App, HttpResponse, HttpServer, web};
use common::{ACQUIRER_ID, PSP_ID, ServiceProcess, fresh_database};
use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{Value, json};
use sqlx::PgPool;
use std::collections::HashMap;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::Duration;

const WALLET_TOKEN: &str = "console-test-wallet-token";
/// What the wallet says when it refuses: markup that must be shown as text and never run.
const HOSTILE_MESSAGE: &str =
    "ledger closed <script>document.title='pwned';window.pwned=1</script><b>bold</b>";

fn token(prefix: &str) -> String {
    format!("{prefix}-{}", uuid::Uuid::new_v4().simple())
}

// ---------------------------------------------------------------------------------------------
// The wallet double: a ledger over HTTP whose refunds fail while it is broken.

#[derive(Default)]
struct Ledger {
    payments: Mutex<HashMap<String, Value>>,
    broken: Mutex<bool>,
    refunds: Mutex<Vec<Value>>,
}

async fn wallet_payment(id: web::Path<String>, ledger: web::Data<Ledger>) -> HttpResponse {
    match ledger.payments.lock().unwrap().get(id.as_str()) {
        Some(p) => HttpResponse::Ok().json(p),
        None => HttpResponse::NotFound().json(json!({"code": "PAYMENT_NOT_FOUND"})),
    }
}

async fn wallet_close() -> HttpResponse {
    HttpResponse::Ok().json(json!({"status": "ALREADY_SUCCEEDED"}))
}

async fn wallet_refund(body: web::Json<Value>, ledger: web::Data<Ledger>) -> HttpResponse {
    if *ledger.broken.lock().unwrap() {
        return HttpResponse::Ok().json(json!({"status": "FAILED", "message": HOSTILE_MESSAGE}));
    }
    ledger.refunds.lock().unwrap().push(body.0.clone());
    HttpResponse::Ok().json(json!({
        "status": "SUCCEEDED", "amount": body.0["amount"].clone(),
        "reference": format!("LEDGER-REF-{}", body.0["paymentRequestId"].as_str().unwrap_or(""))
    }))
}

fn start_wallet(ledger: &web::Data<Ledger>) -> String {
    let ledger = ledger.clone();
    let server = HttpServer::new(move || {
        App::new()
            .app_data(ledger.clone())
            .route("/payments/{id}", web::get().to(wallet_payment))
            .route("/payments/{id}/close", web::post().to(wallet_close))
            .route("/refunds", web::post().to(wallet_refund))
    })
    .workers(1)
    .bind("127.0.0.1:0")
    .unwrap();
    let url = format!("http://{}", server.addrs()[0]);
    tokio::spawn(server.run());
    url
}

impl Ledger {
    fn add(&self, id: &str, amount: u32) {
        self.payments.lock().unwrap().insert(
            id.into(),
            json!({
                "paymentRequestId": id, "paymentId": format!("LEDGER-PAY-{id}"), "status": "SUCCESS",
                "amount": {"value": amount.to_string(), "currency": "PHP"},
                "createdAt": chrono::Utc::now().to_rfc3339(),
                "refundedAmount": {"value": "0", "currency": "PHP"}
            }),
        );
    }
}

// ---------------------------------------------------------------------------------------------
// The service under test.

struct Console {
    service: ServiceProcess,
    pool: PgPool,
    operator: String,
    reader: String,
}

impl Console {
    /// The binary with the HTTP wallet at `wallet_url` (or the demo wallet and no refund
    /// workers), an operator token and a read-only token.
    async fn start(wallet_url: Option<&str>) -> Self {
        let (db_url, pool) = fresh_database().await;
        let (operator, reader) = (token("operator"), token("reader"));
        let mut env = vec![
            ("APP_ENV", "local".to_owned()),
            ("MPP_CANCEL__INTERNAL__TOKEN", operator.clone()),
            ("MPP_CANCEL__INTERNAL__READ_TOKEN", reader.clone()),
            ("MPP_CANCEL__REFUNDS__MAX_ATTEMPTS", "3".to_owned()),
            ("MPP_CANCEL__REFUNDS__BACKOFF_BASE_MS", "50".to_owned()),
        ];
        match wallet_url {
            Some(url) => env.extend([
                ("MPP_CANCEL__WALLET__KIND", "http".to_owned()),
                ("MPP_CANCEL__WALLET__BASE_URL", url.to_owned()),
                ("MPP_CANCEL__WALLET__TOKEN", WALLET_TOKEN.to_owned()),
            ]),
            None => env.extend([
                ("MPP_CANCEL__WALLET__KIND", "demo".to_owned()),
                ("MPP_CANCEL__WALLET__ALLOW_DEMO", "true".to_owned()),
                ("MPP_CANCEL__REFUNDS__WORKERS", "0".to_owned()),
            ]),
        }
        let service = ServiceProcess::start(&db_url, &env);
        service.wait_until_up().await;
        Self {
            service,
            pool,
            operator,
            reader,
        }
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.service.internal)
    }

    async fn cancel(&self, id: &str) {
        let body = json!({"acquirerId": ACQUIRER_ID, "pspId": PSP_ID, "paymentRequestId": id});
        let answer: Value = reqwest::Client::new()
            .post(self.service.cancel_url())
            .header("Content-Type", "application/json; charset=UTF-8")
            .body(body.to_string())
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(answer["result"]["resultStatus"], "S", "{answer}");
    }

    async fn state_of(&self, id: &str) -> String {
        sqlx::query_scalar("SELECT state FROM cancellations WHERE payment_request_id = $1")
            .bind(id)
            .fetch_one(&self.pool)
            .await
            .unwrap()
    }

    /// Waits (at most 20 s) until `id` is in `want`; the state last read.
    async fn wait_for_state(&self, id: &str, want: &str) -> String {
        let mut state = String::new();
        for _ in 0..200 {
            state = self.state_of(id).await;
            if state == want {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        state
    }

    /// Rows stored straight into the table, in the given state (no money work): history the
    /// overview must count.
    async fn seed(&self, prefix: &str, state: &str, n: i32) {
        sqlx::query(
            "INSERT INTO cancellations (payment_request_id, acquirer_id, psp_id, state, result_code,
                 result_status, response_body, payment_id, amount_value, currency, settlement_date,
                 requested_at, updated_at, last_error)
             SELECT $1 || '-' || g, $2, $3, $4, CASE WHEN $4 = 'rejected' THEN 'ORDER_NOT_EXIST' ELSE 'SUCCESS' END,
                    CASE WHEN $4 = 'rejected' THEN 'F' ELSE 'S' END, '{}'::bytea, 'PAY-' || $1 || '-' || g,
                    100 * g, 'PHP', (now() AT TIME ZONE 'Etc/GMT-8')::date, now() - g * interval '1 minute',
                    now() - g * interval '1 minute',
                    CASE WHEN $4 = 'manual_review' THEN 'the wallet refused the refund: ' || $5 END
               FROM generate_series(1, $6) g",
        )
        .bind(prefix)
        .bind(ACQUIRER_ID)
        .bind(PSP_ID)
        .bind(state)
        .bind(HOSTILE_MESSAGE)
        .bind(n)
        .execute(&self.pool)
        .await
        .unwrap();
    }

    async fn counts(&self) -> HashMap<String, i64> {
        sqlx::query_as::<_, (String, i64)>(
            "SELECT state, count(*) FROM cancellations GROUP BY state",
        )
        .fetch_all(&self.pool)
        .await
        .unwrap()
        .into_iter()
        .collect()
    }
}

// ---------------------------------------------------------------------------------------------
// Chromium over WebDriver.

/// chromedriver (in a process group of its own, with the Chromium it starts) and a session.
struct Browser {
    client: Option<Client>,
    driver: Child,
    profile: PathBuf,
}

impl Browser {
    async fn start() -> Self {
        let port = common::free_port();
        let profile =
            std::env::temp_dir().join(format!("mppc-chromium-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&profile).unwrap();
        let mut command = Command::new(chromedriver());
        command
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        std::os::unix::process::CommandExt::process_group(&mut command, 0);
        let driver = command
            .spawn()
            .expect("chromedriver starts (Debian: apt-get install chromium chromium-driver)");
        let mut browser = Self {
            client: None,
            driver,
            profile,
        };
        let url = format!("http://127.0.0.1:{port}");
        let http = reqwest::Client::new();
        for _ in 0..100 {
            if http.get(format!("{url}/status")).send().await.is_ok() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let mut caps = serde_json::Map::new();
        caps.insert(
            "goog:chromeOptions".into(),
            json!({
                "binary": chromium(),
                "args": [
                    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                    "--no-first-run", "--disable-background-networking",
                    "--disable-component-update", "--disable-sync",
                    "--disable-dev-shm-usage", "--window-size=1280,900",
                    format!("--user-data-dir={}", browser.profile.display()),
                ]
            }),
        );
        // Two rustls providers are linked (reqwest's ring, hyper-rustls's aws-lc-rs): pick one.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let client = ClientBuilder::rustls()
            .expect("a WebDriver client")
            .capabilities(caps)
            .connect(&url)
            .await
            .expect("a Chromium session");
        browser.client = Some(client);
        browser
    }

    fn c(&self) -> &Client {
        self.client.as_ref().expect("a session")
    }

    async fn goto(&self, url: &str) {
        self.c().goto(url).await.unwrap();
    }

    /// The element with this hook, waiting (at most 10 s) for the page to show it.
    async fn find(&self, test: &str) -> fantoccini::elements::Element {
        let css = format!("[data-test=\"{test}\"]");
        for _ in 0..100 {
            if let Ok(element) = self.c().find(Locator::Css(&css)).await {
                return element;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!(
            "no [data-test={test}] on {}: {}",
            self.path().await,
            self.body().await
        )
    }

    /// Waits (at most 10 s) until the page's address satisfies `want` and the page is loaded.
    async fn wait_url(&self, what: &str, want: impl Fn(&str, &str) -> bool) {
        for _ in 0..100 {
            let url = self.c().current_url().await.unwrap();
            let loaded = self
                .c()
                .execute("return document.readyState", vec![])
                .await
                .is_ok_and(|v| v == "complete");
            if want(url.path(), url.query().unwrap_or("")) && loaded {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!(
            "never reached {what}: at {}",
            self.c().current_url().await.unwrap()
        );
    }

    async fn wait_path(&self, path: &str) {
        self.wait_url(path, |p, _| p == path).await;
    }

    async fn has(&self, test: &str) -> bool {
        !self
            .c()
            .find_all(Locator::Css(&format!("[data-test=\"{test}\"]")))
            .await
            .unwrap()
            .is_empty()
    }

    async fn text(&self, test: &str) -> String {
        self.find(test).await.text().await.unwrap()
    }

    async fn click(&self, test: &str) {
        self.find(test).await.click().await.unwrap();
    }

    async fn path(&self) -> String {
        self.c().current_url().await.unwrap().path().to_owned()
    }

    async fn body(&self) -> String {
        self.c()
            .find(Locator::Css("body"))
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }

    async fn sign_in(&self, console: &Console, token: &str) {
        self.goto(&console.url("/console")).await;
        assert_eq!(
            self.path().await,
            "/console/login",
            "signed out: the sign-in page"
        );
        self.find("login-token")
            .await
            .send_keys(token)
            .await
            .unwrap();
        self.click("login-submit").await;
        self.wait_path("/console").await;
    }

    /// Saves the page as `name.png` into `MPP_CANCEL_SCREENSHOTS`, when set.
    async fn screenshot(&self, name: &str) {
        let Some(dir) = std::env::var_os("MPP_CANCEL_SCREENSHOTS") else {
            return;
        };
        let png = self.c().screenshot().await.unwrap();
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(PathBuf::from(dir).join(format!("{name}.png")), png).unwrap();
    }

    /// The session cookie the browser holds, as `name=value`.
    async fn session_cookie(&self) -> Option<fantoccini::cookies::Cookie<'static>> {
        self.c().get_named_cookie("mppc_console").await.ok()
    }

    async fn close(mut self) {
        if let Some(client) = self.client.take() {
            let _ = client.close().await;
        }
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        // chromedriver and the Chromium it started share its process group.
        let _ = Command::new("kill")
            .args(["-KILL", "--", &format!("-{}", self.driver.id())])
            .status();
        let _ = self.driver.kill();
        let _ = self.driver.wait();
        let _ = std::fs::remove_dir_all(&self.profile);
    }
}

fn chromedriver() -> String {
    std::env::var("CHROMEDRIVER").unwrap_or_else(|_| "/usr/bin/chromedriver".into())
}

fn chromium() -> String {
    std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into())
}

fn digits(text: &str) -> i64 {
    text.chars()
        .filter(char::is_ascii_digit)
        .collect::<String>()
        .parse()
        .unwrap_or_else(|_| panic!("no number in {text:?}"))
}

// ---------------------------------------------------------------------------------------------
// In the browser.

/// An operator's day: sign in, the overview's counts are the database's, a row the wallet
/// refused is found, its error read (markup shown as text, nothing run), the cause fixed, the row
/// requeued and watched until refunded; then an outage's rows requeued in bulk after a preview;
/// the report viewed and downloaded; sign-out closes the door.
#[tokio::test]
async fn an_operator_finds_a_refused_refund_requeues_it_and_watches_it_refunded() {
    let ledger = web::Data::new(Ledger::default());
    *ledger.broken.lock().unwrap() = true;
    let ids = ["cr-refused-1", "cr-outage-1", "cr-outage-2", "cr-outage-3"];
    for (i, id) in ids.iter().enumerate() {
        ledger.add(id, 1000 + i as u32);
    }
    let wallet_url = start_wallet(&ledger);
    let console = Console::start(Some(&wallet_url)).await;
    for id in ids {
        console.cancel(id).await;
    }
    for id in ids {
        assert_eq!(
            console.wait_for_state(id, "manual_review").await,
            "manual_review"
        );
    }
    console.seed("hist-refunded", "refunded", 7).await;
    console.seed("hist-rejected", "rejected", 3).await;
    console.seed("hist-nothing", "nothing_to_refund", 2).await;

    let browser = Browser::start().await;
    browser.sign_in(&console, &console.operator).await;
    let cookie = browser.session_cookie().await.expect("a session cookie");
    assert_eq!(cookie.http_only(), Some(true), "HttpOnly");
    assert_eq!(format!("{:?}", cookie.same_site()), "Some(Strict)");
    let script_sees: Value = browser
        .c()
        .execute("return document.cookie", vec![])
        .await
        .unwrap_or(Value::Null);
    assert!(
        !script_sees.as_str().unwrap_or("").contains("mppc_console"),
        "{script_sees}"
    );

    // The overview's counts are the database's, every state, zeros included.
    let counts = console.counts().await;
    for state in [
        "manual_review",
        "refund_pending",
        "void_pending",
        "awaiting_outcome",
        "refunded",
        "voided",
        "nothing_to_refund",
        "rejected",
    ] {
        let shown = digits(&browser.text(&format!("state-count-{state}")).await);
        assert_eq!(shown, counts.get(state).copied().unwrap_or(0), "{state}");
    }
    browser.screenshot("overview").await;

    // The manual-review list, then a search by paymentId.
    browser.click("state-count-manual_review").await;
    browser.wait_path("/console/cancellations").await;
    for id in ids {
        assert!(browser.has(&format!("row-{id}")).await, "{id} listed");
    }
    browser.screenshot("manual-review").await;
    browser
        .find("search-query")
        .await
        .send_keys("LEDGER-PAY-cr-refused-1")
        .await
        .unwrap();
    browser.click("search-submit").await;
    browser
        .wait_url("the search", |_, q| q.contains("q="))
        .await;
    assert!(browser.has("row-cr-refused-1").await);
    assert!(!browser.has("row-cr-outage-1").await, "only the match");
    browser.click("row-cr-refused-1").await;
    browser
        .wait_path("/console/cancellations/cr%2Drefused%2D1")
        .await;

    // Its page: the wallet's refusal, markup shown as text; nothing ran.
    let events = browser
        .c()
        .find_all(Locator::Css("[data-test=\"timeline-event\"]"))
        .await
        .unwrap();
    let mut timeline = Vec::new();
    for e in &events {
        timeline.push(e.text().await.unwrap());
    }
    let refusal = timeline
        .iter()
        .find(|t| t.contains("the wallet refused the refund"))
        .unwrap_or_else(|| panic!("no refusal in {timeline:#?}"));
    assert!(
        refusal.contains("<script>document.title='pwned'"),
        "{refusal}"
    );
    assert!(
        refusal.contains("<b>bold</b>"),
        "escaped, not markup: {refusal}"
    );
    assert!(
        refusal.contains("durationMs"),
        "each wallet call's duration: {refusal}"
    );
    assert_eq!(
        browser
            .c()
            .find_all(Locator::Css("main script, main b"))
            .await
            .unwrap()
            .len(),
        0,
        "the wallet's markup made no element"
    );
    let title = browser.c().title().await.unwrap();
    assert!(!title.contains("pwned"), "{title}");
    let ran: Value = browser
        .c()
        .execute("return typeof window.pwned", vec![])
        .await
        .unwrap();
    assert_eq!(ran, "undefined");
    browser.screenshot("cancellation").await;

    // Fix the cause, requeue, watch it reach refunded.
    *ledger.broken.lock().unwrap() = false;
    browser.click("action-requeue").await;
    browser
        .wait_url("the requeue", |_, q| q == "done=requeued")
        .await;
    assert!(browser.body().await.contains("Requeued"));
    let mut state = String::new();
    for _ in 0..100 {
        browser.c().refresh().await.unwrap();
        state = browser.text("state").await;
        if state == "refunded" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(state, "refunded");
    assert_eq!(console.state_of("cr-refused-1").await, "refunded");
    let body = browser.body().await;
    assert!(
        body.contains("console:operator"),
        "the requeue names its role"
    );
    assert!(
        body.contains("LEDGER-REF-cr-refused-1"),
        "the wallet's reference"
    );
    // The timeline in view (WebDriver's own script, not the page's).
    let _ = browser
        .c()
        .execute(
            "document.querySelector('ol.timeline').scrollIntoView()",
            vec![],
        )
        .await;
    browser.screenshot("cancellation-refunded").await;

    // The outage's rows: preview (count and first ids), confirm, all refunded.
    browser
        .goto(&console.url("/console/cancellations?state=manual_review"))
        .await;
    browser.click("bulk-preview").await;
    browser.wait_path("/console/requeue").await;
    assert_eq!(browser.text("bulk-count").await, "3");
    let preview = browser.body().await;
    for id in &ids[1..] {
        assert!(preview.contains(id), "{id} in the preview");
    }
    assert_eq!(
        console.state_of("cr-outage-1").await,
        "manual_review",
        "a preview changes nothing"
    );
    browser.screenshot("bulk-preview").await;
    browser.click("bulk-confirm").await;
    assert_eq!(browser.text("bulk-done").await, "3");
    for id in &ids[1..] {
        assert_eq!(console.wait_for_state(id, "refunded").await, "refunded");
    }
    assert_eq!(
        ledger.refunds.lock().unwrap().len(),
        4,
        "each refunded once"
    );

    // The day's report, on the page and as CSV.
    browser.goto(&console.url("/console")).await;
    browser.click("report-link").await;
    browser.wait_path("/console/report").await;
    let report = browser.body().await;
    for id in ids {
        assert!(report.contains(id), "{id} in today's report");
    }
    browser.screenshot("report").await;
    let href = browser
        .find("report-download")
        .await
        .attr("href")
        .await
        .unwrap()
        .expect("a link");
    let csv = reqwest::Client::new()
        .get(console.url(&href))
        .header("Cookie", format!("mppc_console={}", cookie.value()))
        .send()
        .await
        .unwrap();
    assert_eq!(csv.status(), 200);
    assert!(
        csv.headers()["content-disposition"]
            .to_str()
            .unwrap()
            .starts_with("attachment")
    );
    let csv = csv.text().await.unwrap();
    assert!(csv.starts_with("paymentRequestId,"), "{csv}");
    assert!(
        csv.contains("cr-refused-1,LEDGER-PAY-cr-refused-1"),
        "{csv}"
    );

    // Signed out: no page, and the old cookie no longer opens one.
    browser.click("logout").await;
    browser.wait_path("/console/login").await;
    browser.goto(&console.url("/console")).await;
    assert_eq!(browser.path().await, "/console/login");
    let replay = no_redirects()
        .get(console.url("/console"))
        .header("Cookie", format!("mppc_console={}", cookie.value()))
        .send()
        .await
        .unwrap();
    assert_eq!(replay.status(), 303, "a signed-out session is refused");
    browser.screenshot("login").await;
    browser.close().await;
}

/// A read-only session sees the queue and the rows but no control, and a form post made from
/// another site (same site, other origin: the cookie goes along) is refused.
#[tokio::test]
async fn a_read_only_session_cannot_act_and_a_cross_site_form_post_is_refused() {
    let console = Console::start(None).await;
    console.seed("stuck", "manual_review", 2).await;
    let browser = Browser::start().await;

    browser.sign_in(&console, &console.reader).await;
    browser.click("state-count-manual_review").await;
    browser.wait_path("/console/cancellations").await;
    browser.find("row-stuck-1").await;
    assert!(!browser.has("bulk-preview").await, "no bulk control");
    browser.click("row-stuck-1").await;
    browser.wait_path("/console/cancellations/stuck%2D1").await;
    assert!(
        browser
            .body()
            .await
            .contains("the wallet refused the refund")
    );
    assert!(!browser.has("action-requeue").await, "no requeue control");
    assert!(!browser.has("action-nudge").await, "no nudge control");
    browser.screenshot("read-only").await;
    browser.click("logout").await;
    browser.wait_path("/console/login").await;

    // The operator's browser visits another origin on the same site, which posts the
    // console's own form, forgery token included (as if it had leaked): refused by origin.
    browser.sign_in(&console, &console.operator).await;
    browser
        .goto(&console.url("/console/cancellations/stuck-1"))
        .await;
    let csrf = browser
        .c()
        .find(Locator::Css("input[name=csrf]"))
        .await
        .unwrap()
        .attr("value")
        .await
        .unwrap()
        .unwrap();
    let target = console.url("/console/cancellations/stuck-1/requeue");
    let page = format!(
        "<!doctype html><form method=post action=\"{target}\">\
         <input type=hidden name=csrf value=\"{csrf}\">\
         <button data-test=forged type=submit>Win a prize</button></form>"
    );
    let attacker = HttpServer::new(move || {
        let page = page.clone();
        App::new().route(
            "/",
            web::get().to(move || {
                let page = page.clone();
                async move { HttpResponse::Ok().content_type("text/html").body(page) }
            }),
        )
    })
    .workers(1)
    .bind("127.0.0.1:0")
    .unwrap();
    let attacker_url = format!("http://{}/", attacker.addrs()[0]);
    tokio::spawn(attacker.run());
    browser.goto(&attacker_url).await;
    browser.click("forged").await;
    browser
        .wait_url("the forged post's answer", |p, _| p.ends_with("/requeue"))
        .await;
    let answer = browser.body().await;
    assert!(answer.contains("403"), "{answer}");
    assert!(answer.contains("not sent from the console"), "{answer}");
    assert_eq!(console.state_of("stuck-1").await, "manual_review");
    browser.close().await;
}

// ---------------------------------------------------------------------------------------------
// Over HTTP: each rule alone.

fn no_redirects() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

/// A signed-in session over plain HTTP: its cookie header and its forgery token.
struct HttpSession {
    cookie: String,
    csrf: String,
    set_cookie: String,
}

async fn http_sign_in(console: &Console, token: &str) -> HttpSession {
    let origin = console.service.internal.clone();
    let answer = no_redirects()
        .post(console.url("/console/login"))
        .header("Origin", &origin)
        .form(&[("token", token)])
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 303);
    let set_cookie = answer.headers()["set-cookie"].to_str().unwrap().to_owned();
    let cookie = set_cookie.split(';').next().unwrap().to_owned();
    let page = no_redirects()
        .get(console.url("/console"))
        .header("Cookie", &cookie)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let csrf = page
        .split("name=\"csrf\" value=\"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .expect("a forgery token in the page")
        .to_owned();
    HttpSession {
        cookie,
        csrf,
        set_cookie,
    }
}

async fn post(
    console: &Console,
    path: &str,
    cookie: &str,
    origin: Option<&str>,
    form: &[(&str, &str)],
) -> reqwest::Response {
    let mut request = no_redirects()
        .post(console.url(path))
        .header("Cookie", cookie)
        .form(form);
    if let Some(origin) = origin {
        request = request.header("Origin", origin);
    }
    request.send().await.unwrap()
}

#[tokio::test]
async fn pages_need_a_session_and_a_signed_out_or_forged_cookie_is_no_session() {
    let console = Console::start(None).await;
    for path in [
        "/console",
        "/console/cancellations?state=manual_review",
        "/console/cancellations/x",
        "/console/report",
        "/console/report.csv",
        "/console/requeue",
    ] {
        let answer = no_redirects().get(console.url(path)).send().await.unwrap();
        assert_eq!(answer.status(), 303, "{path}");
        assert_eq!(answer.headers()["location"], "/console/login", "{path}");
    }
    let wrong = no_redirects()
        .post(console.url("/console/login"))
        .header("Origin", &console.service.internal)
        .form(&[("token", "not-the-token-not-the-token-not-the")])
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), 401);
    assert!(wrong.headers().get("set-cookie").is_none());

    let session = http_sign_in(&console, &console.operator).await;
    let (value, _) = session.cookie.split_once('=').unwrap();
    assert_eq!(value, "mppc_console");
    let forged = format!("{}x", session.cookie);
    let answer = no_redirects()
        .get(console.url("/console"))
        .header("Cookie", &forged)
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 303, "a tampered cookie");

    let origin = console.service.internal.clone();
    let out = post(
        &console,
        "/console/logout",
        &session.cookie,
        Some(&origin),
        &[("csrf", &session.csrf)],
    )
    .await;
    assert_eq!(out.status(), 303);
    assert!(
        out.headers()["set-cookie"]
            .to_str()
            .unwrap()
            .contains("Max-Age=0"),
        "the cookie is removed"
    );
    let replay = no_redirects()
        .get(console.url("/console"))
        .header("Cookie", &session.cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(replay.status(), 303, "a signed-out cookie is refused");
}

#[tokio::test]
async fn the_cookie_is_http_only_strict_and_short_lived_and_no_script_may_run() {
    let console = Console::start(None).await;
    let session = http_sign_in(&console, &console.operator).await;
    let attributes = session.set_cookie.to_ascii_lowercase();
    assert!(attributes.contains("httponly"), "{attributes}");
    assert!(attributes.contains("samesite=strict"), "{attributes}");
    assert!(attributes.contains("path=/console"), "{attributes}");
    assert!(!attributes.contains("secure"), "plain HTTP: {attributes}");
    let max_age: i64 = attributes
        .split("max-age=")
        .nth(1)
        .and_then(|r| r.split(';').next())
        .and_then(|v| v.trim().parse().ok())
        .expect("a Max-Age");
    assert!(max_age > 0 && max_age <= 12 * 3600, "{max_age}");

    for path in ["/console", "/console/login", "/console/report"] {
        let answer = no_redirects()
            .get(console.url(path))
            .header("Cookie", &session.cookie)
            .send()
            .await
            .unwrap();
        let csp = answer.headers()["content-security-policy"]
            .to_str()
            .unwrap();
        assert!(csp.contains("default-src 'none'"), "{path}: {csp}");
        assert!(
            !csp.contains("script-src"),
            "no script source at all: {csp}"
        );
        assert!(!csp.contains("unsafe-inline"), "{csp}");
        assert!(csp.contains("frame-ancestors 'none'"), "{csp}");
        let html = answer.text().await.unwrap();
        assert!(!html.contains("<script"), "{path}: no script in the page");
    }
}

#[tokio::test]
async fn a_post_needs_the_consoles_origin_and_the_sessions_forgery_token() {
    let console = Console::start(None).await;
    console.seed("held", "manual_review", 4).await;
    let session = http_sign_in(&console, &console.operator).await;
    let origin = console.service.internal.clone();
    let requeue = |n: u8| format!("/console/cancellations/held-{n}/requeue");

    let answer = post(
        &console,
        &requeue(1),
        &session.cookie,
        Some("http://evil.example"),
        &[("csrf", &session.csrf)],
    )
    .await;
    assert_eq!(answer.status(), 403, "another origin");
    let answer = post(
        &console,
        &requeue(1),
        &session.cookie,
        None,
        &[("csrf", &session.csrf)],
    )
    .await;
    assert_eq!(answer.status(), 403, "no Origin nor Sec-Fetch-Site");
    let answer = post(&console, &requeue(1), &session.cookie, Some(&origin), &[]).await;
    assert_eq!(answer.status(), 403, "no forgery token");
    let other = http_sign_in(&console, &console.operator).await;
    let answer = post(
        &console,
        &requeue(1),
        &session.cookie,
        Some(&origin),
        &[("csrf", &other.csrf)],
    )
    .await;
    assert_eq!(answer.status(), 403, "another session's token");
    assert_eq!(
        console.state_of("held-1").await,
        "manual_review",
        "nothing moved"
    );

    let answer = post(
        &console,
        &requeue(1),
        &session.cookie,
        Some(&origin),
        &[("csrf", &session.csrf)],
    )
    .await;
    assert_eq!(answer.status(), 303, "the console's own form");
    assert_eq!(console.state_of("held-1").await, "awaiting_outcome");
    let by: String = sqlx::query_scalar(
        "SELECT detail->>'by' FROM audit_events WHERE payment_request_id = 'held-1' AND event = 'requeued'",
    )
    .fetch_one(&console.pool)
    .await
    .unwrap();
    assert_eq!(by, "console:operator");

    // Sec-Fetch-Site: same-origin stands in for a missing Origin.
    let answer = no_redirects()
        .post(console.url(&requeue(2)))
        .header("Cookie", &session.cookie)
        .header("Sec-Fetch-Site", "same-origin")
        .form(&[("csrf", &session.csrf)])
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 303);

    // A bearer token (no cookie, so no forgery to fear) acts without either.
    let answer = no_redirects()
        .post(console.url(&requeue(3)))
        .bearer_auth(&console.operator)
        .form(&[("csrf", "")])
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 303);
    assert_eq!(console.state_of("held-3").await, "awaiting_outcome");
    let wrong_bearer = no_redirects()
        .get(console.url("/console"))
        .bearer_auth("wrong-wrong-wrong-wrong-wrong-wrong-00")
        .send()
        .await
        .unwrap();
    assert_eq!(wrong_bearer.status(), 401);
}

#[tokio::test]
async fn a_read_only_session_sees_but_every_action_answers_403() {
    let console = Console::start(None).await;
    console.seed("held", "manual_review", 2).await;
    let session = http_sign_in(&console, &console.reader).await;
    let origin = console.service.internal.clone();
    let page = no_redirects()
        .get(console.url("/console/cancellations/held-1"))
        .header("Cookie", &session.cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), 200);
    let page = page.text().await.unwrap();
    assert!(page.contains("read-only"));
    assert!(!page.contains("action-requeue") && !page.contains("action-nudge"));

    for path in [
        "/console/cancellations/held-1/requeue",
        "/console/cancellations/held-1/nudge",
        "/console/requeue",
    ] {
        let answer = post(
            &console,
            path,
            &session.cookie,
            Some(&origin),
            &[("csrf", &session.csrf)],
        )
        .await;
        assert_eq!(answer.status(), 403, "{path}");
    }
    let preview = no_redirects()
        .get(console.url("/console/requeue"))
        .header("Cookie", &session.cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(preview.status(), 403, "no bulk preview either");
    let bearer = no_redirects()
        .post(console.url("/console/cancellations/held-1/requeue"))
        .bearer_auth(&console.reader)
        .send()
        .await
        .unwrap();
    assert_eq!(bearer.status(), 403, "read-only by bearer");
    assert_eq!(console.state_of("held-1").await, "manual_review");
    let events: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM audit_events WHERE payment_request_id LIKE 'held-%'",
    )
    .fetch_one(&console.pool)
    .await
    .unwrap();
    assert_eq!(events, 0, "nothing was done");
}

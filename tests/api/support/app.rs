//! The real service on port 0 over a test database, a [`TestWallet`] and a manual clock.

use super::db::TestDb;
use super::db_proxy::DbProxy;
use super::wallet::TestWallet;
use chrono::{DateTime, Utc};
use mpp_cancel::app::{Application, Components};
use mpp_cancel::config::Settings;
use mpp_cancel::domain::ManualClock;
use mpp_cancel::store::Store;
use sqlx::postgres::PgConnectOptions;
use std::sync::Arc;
use std::time::Duration;

pub const PSP_ID: &str = "1022172000000000001";
pub const ACQUIRER_ID: &str = "1022188000000000001";
pub const INTERNAL_TOKEN: &str = "test-internal-token-0123456789abcdef";
pub const CANCEL_PATH: &str = "/aps/api/v1/payments/cancelPayment";

pub struct TestOptions {
    pub now: DateTime<Utc>,
    /// Reach the database through a [`DbProxy`] the test can cut.
    pub behind_proxy: bool,
    pub configure: fn(&mut Settings),
    /// Run the refund engine (fast retries, running clock). Off: work stays queued, visible.
    pub engine: bool,
    /// Verify Alipay+'s signatures and sign responses, with [`super::keys::test_keys`].
    pub signatures: bool,
}

impl Default for TestOptions {
    fn default() -> Self {
        Self {
            now: super::at("2026-11-20T12:00:00+08:00"),
            behind_proxy: false,
            configure: |_| {},
            engine: false,
            signatures: false,
        }
    }
}

pub struct TestApp {
    pub address: String,
    pub internal_address: String,
    pub db: Arc<TestDb>,
    pub wallet: Arc<TestWallet>,
    pub clock: Arc<ManualClock>,
    pub settings: Settings,
    pub http: reqwest::Client,
    /// Set with [`TestOptions::behind_proxy`].
    pub proxy: Option<Arc<DbProxy>>,
    store_options: PgConnectOptions,
    handle: mpp_cancel::app::ShutdownHandle,
}

pub async fn spawn_app() -> TestApp {
    spawn_app_with(TestOptions::default()).await
}

pub async fn spawn_app_with(options: TestOptions) -> TestApp {
    let db = Arc::new(TestDb::new().await);
    let proxy = match options.behind_proxy {
        true => Some(Arc::new(DbProxy::start(&db.options).await)),
        false => None,
    };
    let store_options = match &proxy {
        Some(proxy) => proxy.options(&db.options),
        None => db.options.clone(),
    };
    let mut settings = Settings::local_defaults();
    settings.server.listen = "127.0.0.1:0".into();
    settings.server.workers = 2;
    settings.alipayplus.verify_signatures = false;
    settings.cancel.lookup_timeout_ms = 1000;
    settings.database.acquire_timeout_ms = 1000;
    settings.internal.listen = "127.0.0.1:0".into();
    settings.internal.token = Some(mpp_cancel::config::Secret::new(INTERNAL_TOKEN));
    settings.refunds.workers = 0;
    // The test clock stands on chosen instants (November 2026), far from the database's: the
    // skew check would refuse it. Tests of the check itself set a real limit.
    settings.server.max_clock_skew_ms = mpp_cancel::config::MAX_CLOCK_SKEW_MS;
    if options.signatures {
        let keys = super::keys::test_keys();
        settings.alipayplus.verify_signatures = true;
        settings.alipayplus.client_id = super::keys::CLIENT_ID.into();
        settings.alipayplus.public_keys = [
            ("1".to_owned(), keys.alipay_v1.public_base64()),
            ("2".to_owned(), keys.alipay_v2.public_pem()),
        ]
        .into();
        settings.alipayplus.private_key =
            Some(mpp_cancel::config::Secret::new(keys.mpp.private_pem()));
    }
    if options.engine {
        settings.refunds.workers = 2;
        settings.refunds.poll_interval_ms = 20;
        settings.refunds.backoff_base_ms = 10;
        settings.refunds.backoff_max_ms = 100;
        settings.refunds.lease_seconds = 5;
        settings.wallet.timeout_ms = 500;
    }
    (options.configure)(&mut settings);
    let clock = match options.engine {
        true => ManualClock::running_from(options.now),
        false => ManualClock::new(options.now),
    };
    let mut app = start(
        db,
        Arc::new(TestWallet::new()),
        Arc::new(clock),
        store_options,
        settings,
    );
    app.proxy = proxy;
    app
}

fn start(
    db: Arc<TestDb>,
    wallet: Arc<TestWallet>,
    clock: Arc<ManualClock>,
    store_options: PgConnectOptions,
    settings: Settings,
) -> TestApp {
    let store = Store::connect_lazy(
        store_options.clone(),
        10,
        Duration::from_millis(settings.database.acquire_timeout_ms),
    );
    let components = Components {
        store,
        wallet: wallet.clone(),
        clock: clock.clone(),
    };
    let application = Application::build(&settings, &components).expect("the app builds");
    let address = format!("http://127.0.0.1:{}", application.port());
    let internal_address = format!("http://127.0.0.1:{}", application.internal_port());
    let handle = application.shutdown_handle();
    tokio::spawn(application.run_until_stopped());
    TestApp {
        address,
        internal_address,
        db,
        wallet,
        clock,
        settings,
        http: reqwest::Client::new(),
        proxy: None,
        store_options,
        handle,
    }
}

/// What came back: always inspected as raw bytes, since replays must match byte for byte.
#[derive(Debug, Clone)]
pub struct Reply {
    pub status: u16,
    pub body: Vec<u8>,
    pub headers: reqwest::header::HeaderMap,
}

/// Two replies are the same answer when status and bytes match (signature headers carry the
/// time of the response and legitimately differ).
impl PartialEq for Reply {
    fn eq(&self, other: &Self) -> bool {
        self.status == other.status && self.body == other.body
    }
}

impl Reply {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

impl Reply {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&self.body)))
    }

    pub fn code(&self) -> String {
        self.json()["result"]["resultCode"]
            .as_str()
            .expect("a resultCode")
            .to_owned()
    }

    pub fn status_letter(&self) -> String {
        self.json()["result"]["resultStatus"]
            .as_str()
            .expect("a resultStatus")
            .to_owned()
    }
}

pub fn cancel_body(id: &str) -> String {
    serde_json::json!({"acquirerId": ACQUIRER_ID, "pspId": PSP_ID, "paymentRequestId": id})
        .to_string()
}

impl TestApp {
    /// A second server instance over the same database, wallet and clock.
    pub fn another_instance(&self) -> TestApp {
        let mut app = start(
            self.db.clone(),
            self.wallet.clone(),
            self.clock.clone(),
            self.store_options.clone(),
            self.settings.clone(),
        );
        app.proxy = self.proxy.clone();
        app
    }

    pub fn clock_now(&self) -> DateTime<Utc> {
        mpp_cancel::domain::Clock::now(&*self.clock)
    }

    pub async fn cancel(&self, id: &str) -> Reply {
        self.post_json(CANCEL_PATH, cancel_body(id)).await
    }

    pub async fn post_json(&self, path: &str, body: impl Into<reqwest::Body>) -> Reply {
        self.send(
            reqwest::Method::POST,
            path,
            Some("application/json; charset=UTF-8"),
            body,
        )
        .await
    }

    pub async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        content_type: Option<&str>,
        body: impl Into<reqwest::Body>,
    ) -> Reply {
        let mut request = self
            .http
            .request(method, format!("{}{path}", self.address))
            .body(body);
        if let Some(content_type) = content_type {
            request = request.header("Content-Type", content_type);
        }
        let response = request.send().await.expect("the server answers");
        Reply {
            status: response.status().as_u16(),
            headers: response.headers().clone(),
            body: response.bytes().await.expect("a body").to_vec(),
        }
    }

    /// A POST with exactly these headers and body bytes (for signed requests).
    pub async fn post_raw(&self, path: &str, headers: &[(&str, String)], body: Vec<u8>) -> Reply {
        let mut request = self.http.post(format!("{}{path}", self.address)).body(body);
        for (name, value) in headers {
            request = request.header(*name, value);
        }
        let response = request.send().await.expect("the server answers");
        Reply {
            status: response.status().as_u16(),
            headers: response.headers().clone(),
            body: response.bytes().await.expect("a body").to_vec(),
        }
    }

    pub async fn stop(&self) {
        self.handle.stop().await;
    }
}

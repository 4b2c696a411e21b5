//! Test support for an MPP's own PostgreSQL-backed integration tests (feature `testing`): run
//! the real service on free ports against the MPP's test database with the MPP's own
//! [`Wallet`], play Alipay+ with freshly generated keys (signatures on, both ways), and read
//! what was stored. The database is the MPP's: nothing here fakes PostgreSQL.
//!
//! ```no_run
//! # async fn t(pool: sqlx::PgPool, my_wallet: std::sync::Arc<dyn mpp_cancel::wallet::Wallet>) -> anyhow::Result<()> {
//! let service = mpp_cancel::testing::TestService::spawn(pool, my_wallet).await?;
//! let answer = service.cancel("pay-1").await?;
//! assert_eq!(answer.result_code(), Some("SUCCESS"));
//! assert!(service.guard().is_cancelled("pay-1").await?);
//! # Ok(()) }
//! ```

use crate::app::{Application, Components, ShutdownHandle};
use crate::config::{Secret, Settings};
use crate::domain::SystemClock;
use crate::guard::Guard;
use crate::protocol::keys::GeneratedKeyPair;
use crate::sim::{SimOutcome, SimRequest, send_cancel};
use crate::store::{CancellationRecord, Store};
use crate::wallet::Wallet;
use std::sync::Arc;

/// The Client-Id the test Alipay+ sends.
pub const CLIENT_ID: &str = "TEST_CLIENT";
/// The acquirerId the test Alipay+ sends.
pub const ACQUIRER_ID: &str = "1022188000000000001";

/// The service running in the test's runtime, with Alipay+'s test keys.
pub struct TestService {
    /// The public base URL, e.g. `http://127.0.0.1:40123`.
    pub address: String,
    /// The internal API's base URL.
    pub internal_address: String,
    pub settings: Settings,
    store: Store,
    alipay: GeneratedKeyPair,
    mpp: GeneratedKeyPair,
    handle: ShutdownHandle,
}

impl TestService {
    /// Migrates `pool`'s database and starts the service over it with `wallet` and the refund
    /// engine, signatures verified and signed with keys made for this test.
    pub async fn spawn(pool: sqlx::PgPool, wallet: Arc<dyn Wallet>) -> anyhow::Result<Self> {
        Self::spawn_with(pool, wallet, |_| {}).await
    }

    /// As [`TestService::spawn`], with the settings adjusted by `configure` first.
    pub async fn spawn_with(
        pool: sqlx::PgPool,
        wallet: Arc<dyn Wallet>,
        configure: impl FnOnce(&mut Settings),
    ) -> anyhow::Result<Self> {
        crate::MIGRATOR.run(&pool).await?;
        let alipay = GeneratedKeyPair::generate_rsa_2048()?;
        let mpp = GeneratedKeyPair::generate_rsa_2048()?;
        let mut settings = Settings::local_defaults();
        settings.server.listen = "127.0.0.1:0".into();
        settings.server.workers = 1;
        settings.internal.listen = "127.0.0.1:0".into();
        settings.internal.token = Some(Secret::new(uuid::Uuid::new_v4().simple().to_string()));
        settings.alipayplus.verify_signatures = true;
        settings.alipayplus.client_id = CLIENT_ID.into();
        settings.alipayplus.public_keys = [("1".to_owned(), alipay.public_base64())].into();
        settings.alipayplus.private_key = Some(Secret::new(mpp.private_pem()));
        settings.refunds.workers = 1;
        settings.refunds.poll_interval_ms = 50;
        configure(&mut settings);
        let store = Store::new(pool);
        let components = Components {
            store: store.clone(),
            wallet,
            clock: Arc::new(SystemClock),
        };
        let application = Application::build(&settings, &components)?;
        let address = format!("http://127.0.0.1:{}", application.port());
        let internal_address = format!("http://127.0.0.1:{}", application.internal_port());
        let handle = application.shutdown_handle();
        tokio::spawn(application.run_until_stopped());
        Ok(Self {
            address,
            internal_address,
            settings,
            store,
            alipay,
            mpp,
            handle,
        })
    }

    /// Sends a signed cancelPayment for `payment_request_id`, as Alipay+ would, and checks the
    /// answer's signature (see [`SimOutcome::signature_verified`]).
    pub async fn cancel(&self, payment_request_id: &str) -> anyhow::Result<SimOutcome> {
        send_cancel(&SimRequest {
            url: format!("{}{}", self.address, self.settings.cancel_path()),
            client_id: CLIENT_ID.into(),
            acquirer_id: ACQUIRER_ID.into(),
            psp_id: self.settings.alipayplus.psp_id.clone(),
            payment_request_id: payment_request_id.into(),
            alipay_private_key: self.alipay.private_key()?,
            key_version: "1".into(),
            mpp_public_key: Some(self.mpp.public_key()?),
        })
        .await
    }

    /// The guard the MPP's flows ask.
    pub fn guard(&self) -> Guard {
        Guard::new(self.store.clone())
    }

    /// What is stored for an id: state, refund, attempts.
    pub async fn cancellation(
        &self,
        payment_request_id: &str,
    ) -> Result<Option<CancellationRecord>, sqlx::Error> {
        self.store.cancellation(payment_request_id).await
    }

    /// Stops the listeners and the engine.
    pub async fn stop(&self) {
        self.handle.stop().await;
    }
}

//! Embedding: the cancelPayment endpoint mounted inside an MPP's own actix-web application, with
//! the refund engine running in the same process. For a Rust MPP that already serves HTTP and
//! would rather not run a second service: it keeps its routes, adds ours beside them, and asks
//! the [`Guard`] from its own `pay` handler.
//!
//! ```no_run
//! # async fn demo(settings: mpp_cancel::config::Settings, components: mpp_cancel::app::Components) -> anyhow::Result<()> {
//! use actix_web::{App, HttpServer, web};
//! let cancel = mpp_cancel::embed::Embedded::new(&settings, &components)?;
//! let engine = cancel.start_engine();
//! let mount = cancel.clone();
//! HttpServer::new(move || {
//!     App::new()
//!         .configure(|cfg| mount.configure(cfg)) // {base_path}/v1/payments/cancelPayment
//!         .route("/pay", web::post().to(|| async { "the MPP's own pay" }))
//! })
//! .bind("127.0.0.1:8080")?
//! .run()
//! .await?;
//! engine.stop().await;
//! # Ok(()) }
//! ```

use crate::app::{Components, cancel_service};
use crate::cancel::CancelService;
use crate::config::Settings;
use crate::engine::{EngineConfig, RefundEngine};
use crate::guard::Guard;
use crate::http::security::MessageSecurity;
use crate::http::{self, PublicState};
use actix_web::web;
use std::sync::Arc;
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// The cancelPayment service, ready to be mounted into any number of actix-web workers. Cheap to
/// clone: clones share one service, one in-flight limit and one engine wake-up.
#[derive(Clone)]
pub struct Embedded {
    public: web::Data<PublicState>,
    components: Components,
    engine_config: EngineConfig,
}

impl Embedded {
    /// Builds the service from `settings` (signatures, psp_id, window, limits, engine) over the
    /// MPP's `components` (its pool, its [`crate::wallet::Wallet`], a clock). Run the migrations
    /// first ([`crate::MIGRATOR`]). Refuses `settings` the binary would refuse
    /// ([`Settings::validate_service`]: signatures, ids, tokens, ranges; the wallet is the MPP's).
    pub fn new(settings: &Settings, components: &Components) -> anyhow::Result<Self> {
        settings.validate_service()?;
        let service = Arc::new(cancel_service(settings, components)?);
        let security = MessageSecurity::from_settings(settings, components.clock.clone())?;
        Ok(Self {
            public: web::Data::new(PublicState::new(service, security, settings)),
            components: components.clone(),
            engine_config: EngineConfig::from_settings(settings),
        })
    }

    /// Mounts `POST {server.base_path}/v1/payments/cancelPayment`; pass it to
    /// `App::configure`. Only that path is claimed, so the MPP's own routes stay its own.
    pub fn configure(&self, cfg: &mut web::ServiceConfig) {
        http::configure(cfg, self.public.clone());
    }

    /// The cancel service itself, e.g. to decide a cancel without HTTP.
    pub fn service(&self) -> Arc<CancelService> {
        self.public.service.clone()
    }

    /// What the MPP's `pay` and `inquiryPayment` must ask before acting.
    pub fn guard(&self) -> Guard {
        Guard::new(self.components.store.clone())
    }

    /// Starts the refund engine (`refunds.workers` workers) on the current tokio runtime. New
    /// work from this process's cancels wakes it at once.
    pub fn start_engine(&self) -> EngineHandle {
        let engine = Arc::new(RefundEngine::new(
            self.components.store.clone(),
            self.components.wallet.clone(),
            self.components.clock.clone(),
            self.engine_config,
            self.public.service.work_ready(),
        ));
        let (shutdown, receiver) = watch::channel(false);
        EngineHandle {
            shutdown,
            task: tokio::spawn(engine.run(receiver)),
        }
    }
}

/// A running refund engine. Dropping it does not stop the engine; [`EngineHandle::stop`] does.
pub struct EngineHandle {
    shutdown: watch::Sender<bool>,
    task: JoinHandle<()>,
}

impl EngineHandle {
    /// Stops the workers after the batches they hold and waits for them.
    pub async fn stop(self) {
        let _ = self.shutdown.send(true);
        let _ = self.task.await;
    }
}

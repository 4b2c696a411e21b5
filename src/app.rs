//! Wiring: settings and components in, a running service out. Tests build the same
//! [`Application`] on port 0 with their own wallet and clock.

use crate::cancel::CancelService;
use crate::clock_skew::ClockSkewCheck;
use crate::config::{Settings, WalletKind};
use crate::domain::{Clock, SystemClock};
use crate::engine::{EngineConfig, RefundEngine};
use crate::http::internal::InternalState;
use crate::http::security::MessageSecurity;
use crate::http::{self, PublicState};
use crate::metrics::Metrics;
use crate::protocol::ResultCode;
use crate::store::Store;
use crate::wallet::{DemoWallet, HttpWallet, HttpWalletConfig, Wallet};
use actix_web::dev::Service;
use actix_web::{App, HttpServer, web};
use anyhow::Context;
use sqlx::postgres::PgConnectOptions;
use std::net::TcpListener;
use std::str::FromStr;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::watch;

/// The parts of the service that can be swapped: the database, the wallet, the clock.
#[derive(Clone)]
pub struct Components {
    pub store: Store,
    pub wallet: Arc<dyn Wallet>,
    pub clock: Arc<dyn Clock>,
}

impl Components {
    /// The components `settings` describe: a lazily connected pool, the configured wallet and
    /// the system clock.
    pub fn from_settings(settings: &Settings) -> anyhow::Result<Self> {
        let store = connect(settings)?;
        let wallet: Arc<dyn Wallet> = match settings.wallet.kind {
            None => anyhow::bail!("wallet.kind is not set: set it to \"http\" or \"demo\""),
            Some(WalletKind::Demo) => Arc::new(DemoWallet::new(store.pool().clone())),
            Some(WalletKind::Http) => {
                let base_url = settings
                    .wallet
                    .base_url
                    .clone()
                    .context("wallet.kind = \"http\" needs wallet.base_url")?;
                Arc::new(
                    HttpWallet::new(HttpWalletConfig {
                        base_url,
                        token: settings
                            .wallet
                            .token
                            .as_ref()
                            .map(|t| t.expose().to_owned()),
                        timeout: Duration::from_millis(settings.wallet.timeout_ms),
                    })
                    .context("wallet settings")?,
                )
            }
        };
        Ok(Self {
            store,
            wallet,
            clock: system_clock(),
        })
    }
}

/// The binary's clock: the system's. In builds with the `testing` feature only,
/// `MPP_CANCEL_TESTING_CLOCK_OFFSET_MS` moves it by that many milliseconds, so tests can run an
/// instance whose clock is off the database's; a production build ignores the variable.
fn system_clock() -> Arc<dyn Clock> {
    #[cfg(feature = "testing")]
    if let Some(offset_ms) = std::env::var("MPP_CANCEL_TESTING_CLOCK_OFFSET_MS")
        .ok()
        .and_then(|v| v.parse::<i64>().ok())
    {
        tracing::warn!(
            offset_ms,
            "TESTING BUILD: the clock is moved by MPP_CANCEL_TESTING_CLOCK_OFFSET_MS"
        );
        return Arc::new(crate::domain::OffsetClock {
            inner: SystemClock,
            offset: chrono::Duration::try_milliseconds(offset_ms).unwrap_or_default(),
        });
    }
    Arc::new(SystemClock)
}

/// A pool for `database.url` (or `DATABASE_URL`).
pub fn connect(settings: &Settings) -> anyhow::Result<Store> {
    let url = settings.database.url.as_ref().context(
        "no database configured: set DATABASE_URL (or database.url), or run through scripts/with-pg",
    )?;
    let options = PgConnectOptions::from_str(url.expose())
        .context("DATABASE_URL / database.url is not a valid PostgreSQL URL")?;
    Ok(Store::connect_lazy(
        options,
        settings.database.max_connections,
        Duration::from_millis(settings.database.acquire_timeout_ms),
    ))
}

/// The cancel service for `settings` over `components`.
pub fn cancel_service(
    settings: &Settings,
    components: &Components,
) -> anyhow::Result<CancelService> {
    let clock_check = ClockSkewCheck::new(
        components.store.clone(),
        components.clock.clone(),
        Duration::from_millis(settings.server.max_clock_skew_ms),
    );
    Ok(CancelService::new(
        components.store.clone(),
        components.wallet.clone(),
        components.clock.clone(),
        settings.cancel_window()?,
        settings.alipayplus.psp_id.clone(),
        Duration::from_millis(settings.cancel.lookup_timeout_ms),
    )
    .with_clock_check(Arc::new(clock_check)))
}

/// The running service: the public listener, the internal listener and, unless
/// `refunds.workers = 0`, the refund engine.
pub struct Application {
    port: u16,
    internal_port: u16,
    public: actix_web::dev::Server,
    internal: actix_web::dev::Server,
    engine: Option<Arc<RefundEngine>>,
    service: Arc<CancelService>,
    shutdown: watch::Sender<bool>,
}

/// Stops a running [`Application`] gracefully.
#[derive(Clone)]
pub struct ShutdownHandle {
    public: actix_web::dev::ServerHandle,
    internal: actix_web::dev::ServerHandle,
    engine: watch::Sender<bool>,
}

impl ShutdownHandle {
    /// Stop accepting, let in-flight requests finish (bounded), stop the engine after the batch
    /// it holds.
    pub async fn stop(&self) {
        let _ = self.engine.send(true);
        tokio::join!(self.public.stop(true), self.internal.stop(true));
    }
}

impl Application {
    /// Binds `server.listen` and `internal.listen` (port 0 picks a free port) and prepares the
    /// servers and the engine. Nothing runs until [`Application::run_until_stopped`].
    pub fn build(settings: &Settings, components: &Components) -> anyhow::Result<Self> {
        // Library users and tests build from hand-made settings: the same checks as a load
        // (but for the wallet's, since they bring their own).
        settings.validate_service()?;
        let listener = TcpListener::bind(&settings.server.listen)
            .with_context(|| format!("cannot listen on {}", settings.server.listen))?;
        let port = listener.local_addr()?.port();
        let internal_listener = TcpListener::bind(&settings.internal.listen)
            .with_context(|| format!("cannot listen on {}", settings.internal.listen))?;
        let internal_port = internal_listener.local_addr()?.port();

        let service = Arc::new(cancel_service(settings, components)?);
        let security = MessageSecurity::from_settings(settings, components.clock.clone())?;
        let public_state = web::Data::new(PublicState::new(service.clone(), security, settings));
        let metrics = Arc::new(Metrics::new());
        let public_metrics = metrics.clone();
        let mut public = HttpServer::new(move || {
            let metrics = public_metrics.clone();
            App::new()
                .wrap_fn(move |req, srv| {
                    let started = Instant::now();
                    let metrics = metrics.clone();
                    let response = srv.call(req);
                    async move {
                        let response = response.await?;
                        if let Some(code) = response.response().extensions().get::<ResultCode>() {
                            metrics.observe_answer(*code, started.elapsed());
                        }
                        Ok(response)
                    }
                })
                .configure(|cfg| http::configure(cfg, public_state.clone()))
                .default_service(web::to(http::invalid_api))
        })
        .disable_signals()
        .shutdown_timeout(SHUTDOWN_GRACE_SECONDS)
        .listen(listener)?;
        if settings.server.workers > 0 {
            public = public.workers(settings.server.workers);
        }

        let engine = (settings.refunds.workers > 0).then(|| {
            Arc::new(
                RefundEngine::new(
                    components.store.clone(),
                    components.wallet.clone(),
                    components.clock.clone(),
                    EngineConfig::from_settings(settings),
                    service.work_ready(),
                )
                .with_metrics(metrics.clone()),
            )
        });
        let internal_state = web::Data::new(InternalState {
            store: components.store.clone(),
            clock: components.clock.clone(),
            token: settings.internal_token().cloned(),
            wake: service.work_ready(),
            metrics: metrics.clone(),
            engine: engine.as_ref().map(|e| e.health()),
            clock_check: service.clock_check(),
            window: settings.cancel_window()?,
            console: Arc::new(crate::console::Console::from_settings(settings)),
        });
        let internal = HttpServer::new(move || {
            App::new().configure(|cfg| http::internal::configure(cfg, internal_state.clone()))
        })
        .disable_signals()
        .shutdown_timeout(SHUTDOWN_GRACE_SECONDS)
        .workers(1)
        .listen(internal_listener)?;

        let (shutdown, _) = watch::channel(false);
        Ok(Self {
            port,
            internal_port,
            public: public.run(),
            internal: internal.run(),
            engine,
            service,
            shutdown,
        })
    }

    /// The public port actually bound (useful with port 0 in tests).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The internal API's port actually bound.
    pub fn internal_port(&self) -> u16 {
        self.internal_port
    }

    /// The cancel service the listener runs, for callers that decide cancels without HTTP.
    pub fn service(&self) -> Arc<CancelService> {
        self.service.clone()
    }

    /// A handle that stops this application from another task (signals, tests).
    pub fn shutdown_handle(&self) -> ShutdownHandle {
        ShutdownHandle {
            public: self.public.handle(),
            internal: self.internal.handle(),
            engine: self.shutdown.clone(),
        }
    }

    /// Serves until [`ShutdownHandle::stop`]; returns once the listeners and the engine are done.
    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        let engine = self
            .engine
            .map(|engine| tokio::spawn(engine.run(self.shutdown.subscribe())));
        let (public, internal) = tokio::join!(self.public, self.internal);
        let _ = self.shutdown.send(true);
        if let Some(engine) = engine {
            let _ = engine.await;
        }
        public.and(internal)
    }
}

/// How long in-flight requests get to finish after a stop.
const SHUTDOWN_GRACE_SECONDS: u64 = 10;

//! Wiring: settings and components in, a running service out. Tests build the same
//! [`Application`] on port 0 with their own wallet and clock.

use crate::cancel::CancelService;
use crate::config::{Settings, WalletKind};
use crate::domain::{Clock, SystemClock};
use crate::http::{self, PublicState};
use crate::store::Store;
use crate::wallet::{DemoWallet, Wallet};
use actix_web::{App, HttpServer, web};
use anyhow::Context;
use sqlx::postgres::PgConnectOptions;
use std::net::TcpListener;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

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
            WalletKind::Demo => Arc::new(DemoWallet::new(store.pool().clone())),
            WalletKind::Http => {
                anyhow::bail!("wallet.kind = \"http\" is not available in this build; use \"demo\"")
            }
        };
        Ok(Self {
            store,
            wallet,
            clock: Arc::new(SystemClock),
        })
    }
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
    Ok(CancelService::new(
        components.store.clone(),
        components.wallet.clone(),
        components.clock.clone(),
        settings.cancel_window()?,
        settings.alipayplus.psp_id.clone(),
        Duration::from_millis(settings.cancel.lookup_timeout_ms),
    ))
}

/// The running public listener.
pub struct Application {
    port: u16,
    server: actix_web::dev::Server,
    service: Arc<CancelService>,
}

impl Application {
    /// Binds `server.listen` (port 0 picks a free port) and prepares the server.
    pub fn build(settings: &Settings, components: &Components) -> anyhow::Result<Self> {
        let listener = TcpListener::bind(&settings.server.listen)
            .with_context(|| format!("cannot listen on {}", settings.server.listen))?;
        let port = listener.local_addr()?.port();
        let service = Arc::new(cancel_service(settings, components)?);
        let state = web::Data::new(PublicState {
            service: service.clone(),
            cancel_path: settings.cancel_path(),
            max_body_bytes: settings.server.max_body_bytes,
        });
        let mut server = HttpServer::new(move || {
            App::new()
                .configure(|cfg| http::configure(cfg, state.clone()))
                .default_service(web::to(http::invalid_api))
        })
        .listen(listener)?;
        if settings.server.workers > 0 {
            server = server.workers(settings.server.workers);
        }
        Ok(Self {
            port,
            server: server.run(),
            service,
        })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn service(&self) -> Arc<CancelService> {
        self.service.clone()
    }

    /// A handle to stop the server (gracefully with `stop(true)`).
    pub fn handle(&self) -> actix_web::dev::ServerHandle {
        self.server.handle()
    }

    /// Serves until the server is stopped (SIGTERM/SIGINT or the handle).
    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        self.server.await
    }
}

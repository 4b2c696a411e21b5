//! `cargo run --example embedded_wallet`: an MPP's actix-web app with mpp-cancel embedded.
//! Needs DATABASE_URL (e.g. through `scripts/with-pg`) and the configuration in `config/`:
//! `APP_ENV=local scripts/with-pg cargo run --example embedded_wallet` for the try-out. The
//! embedding runs the service's start checks (its wallet is the shop's, so `wallet.*` is not
//! read).

mod shop;

use mpp_cancel::config::Settings;
use mpp_cancel::store::Store;
use sqlx::postgres::PgConnectOptions;
use std::str::FromStr;
use std::time::Duration;

#[actix_web::main]
async fn main() -> anyhow::Result<()> {
    let settings = Settings::read(std::path::Path::new("config"))?;
    let url = std::env::var("DATABASE_URL")?;
    let store = Store::connect_lazy(
        PgConnectOptions::from_str(&url)?,
        10,
        Duration::from_secs(2),
    );
    // The MPP's own pipeline can run the same migrations: they ship with the library.
    mpp_cancel::MIGRATOR.run(store.pool()).await?;
    let listener = std::net::TcpListener::bind(&settings.server.listen)?;
    println!(
        "shop on http://{}: POST /pay, and {}",
        listener.local_addr()?,
        settings.cancel_path()
    );
    let shop::Shop {
        server,
        engine,
        wallet: _ledger, // the MPP's other flows would read its ledger here
    } = shop::build(listener, &settings, store)?;
    server.await?;
    engine.stop().await;
    Ok(())
}

//! # mpp-cancel
//!
//! The wallet (MPP) side of Alipay+'s `cancelPayment`: answer the same way every time for the
//! same `paymentRequestId`, accept the cancellation whatever the payment's state inside the
//! cancellable period (until 00:30 UTC+8 on T+1), refuse it after, and give the user the full
//! amount back exactly once.
//!
//! Where to start reading:
//! - [`domain`]: the rules (window, amounts, states, the decision), pure functions;
//! - [`protocol`]: Alipay+'s wire format and result codes;
//! - [`cancel`]: one cancellation end to end, from a parsed request to the stored answer;
//! - [`store`]: PostgreSQL, where every decision is made durable;
//! - [`wallet`]: the [`wallet::Wallet`] trait an MPP implements, and the shipped adapters;
//! - [`http`] and [`app`]: the actix-web listener and the wiring;
//! - [`guard`]: the question the MPP's own `pay` and `inquiryPayment` must ask;
//! - [`embed`]: the endpoint and the engine inside the MPP's own actix-web application;
//! - [`wallet_check`]: proves an HTTP wallet keeps its half of the contract.
//!
//! # Guide for a Rust MPP
//!
//! **1. Implement [`wallet::Wallet`] over your ledger.** Four questions, each idempotent on your
//! side because the engine retries: `payment` (what you know of a paymentRequestId, `None` if you
//! never saw it), `close` (stop a payment in flight; closing an id you never saw answers
//! `Closed` and must make your `pay` refuse it later), `refund` (give the full amount back, once
//! per `refund_id`, also when two calls with one id arrive together: dedupe and apply under one
//! lock or one unique constraint), `void` (release the hold of an `AUTHORIZED` card
//! authorization, once per `void_id`; answer `AlreadyCaptured` if it became a charge, and the
//! engine refunds instead; a wallet without authorizations answers `Failed`).
//! `examples/embedded_wallet/shop.rs` has a complete one over an in-memory ledger.
//!
//! **2. Run the migrations** in your pipeline or at start: [`MIGRATOR`]`.run(&pool)`.
//!
//! **3. Embed.** [`embed::Embedded::new`] takes the [`config::Settings`] (signatures, `psp_id`,
//! window, engine pacing) and [`app::Components`] (your pool as a [`store::Store`], your wallet,
//! a [`domain::Clock`]); `configure` mounts `POST {base_path}/v1/payments/cancelPayment` in your
//! `App` beside your routes, `start_engine` runs the refund engine on your runtime. Or run the
//! whole service ([`app::Application`]) on its own ports.
//!
//! **4. Guard your flows.** Before `pay` charges and when `inquiryPayment` answers, ask
//! [`guard::Guard::is_cancelled`]: a cancelled id is never charged and reports `ORDER_IS_CLOSED`.
//!
//! **5. Test with your own PostgreSQL.** With the `testing` feature,
//! `testing::TestService::spawn(pool, wallet)` runs the real service on free ports over your
//! test database and your wallet, sends cancels signed as Alipay+ does (and checks the signed
//! answers), and reads back what was stored. Nothing fakes the database.

pub mod app;
pub mod cancel;
pub mod cli;
pub mod clock_skew;
pub mod config;
pub mod console;
pub mod domain;
pub mod embed;
pub mod engine;
pub mod guard;
pub mod http;
pub mod log_fields;
pub mod metrics;
pub mod protocol;
pub mod reconcile;
pub mod report;
pub mod sim;
pub mod store;
pub mod telemetry;
#[cfg(feature = "testing")]
pub mod testing;
pub mod wallet;
pub mod wallet_check;

/// The database migrations, for an MPP that runs them in its own pipeline or tests.
pub use store::MIGRATOR;

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
//! - [`guard`]: the question the MPP's own `pay` and `inquiryPayment` must ask.

pub mod app;
pub mod cancel;
pub mod cli;
pub mod config;
pub mod domain;
pub mod engine;
pub mod guard;
pub mod http;
pub mod metrics;
pub mod protocol;
pub mod report;
pub mod sim;
pub mod store;
pub mod telemetry;
pub mod wallet;
pub mod wallet_check;

//! The Alipay+ simulator: plays Alipay+ against an MPP's cancelPayment endpoint, ours or any
//! other. It is a client of the endpoint, apart from the service's request path: nothing here
//! runs when the service answers Alipay+.
//!
//! - [`client`]: signs requests as Alipay+ does and checks the signed answers (`sim cancel`);
//! - [`checks`]: the conformance kit (`sim conformance`), one row per rule;
//! - [`scenarios`]: the seeds' flows as sequences (`sim scenario NAME`);
//! - [`payments`]: test payments in a given state, made through our demo wallet or a hook;
//! - [`codes`]: payment codes and their routing (seed 003);
//! - [`internal`]: reading the outcome back through the MPP's internal API;
//! - [`report`]: the PASS/FAIL/SKIP table.

pub mod checks;
pub mod client;
pub mod codes;
pub mod internal;
pub mod payments;
pub mod report;
pub mod scenarios;

pub use client::{
    DEFAULT_TIMEOUT, SignedRequest, SimOutcome, SimRequest, alipay_request_time, cancel_body,
    check_response_signature, send_cancel, send_cancel_with, sign_cancel, signing_path,
};

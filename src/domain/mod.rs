//! The rules of a cancellation, as plain data and functions: no I/O, no actix, no sqlx.
//!
//! Everything here is decided from values handed in (the payment as the wallet sees it, the
//! current time from a [`Clock`]) so each rule is tested in microseconds and reads like the spec.

pub mod clock;
pub mod decision;
pub mod money;
pub mod payment;
pub mod retry;
pub mod state;
pub mod untrusted;
pub mod window;

pub use clock::{Clock, ClockOffset, ManualClock, OffsetClock, SystemClock};
pub use decision::{Decision, Rejection, decide};
pub use money::{Currency, Money, MoneyError};
pub use payment::{Payment, PaymentStatus};
pub use retry::Backoff;
pub use state::CancellationState;
pub use window::{CancellationWindow, WindowConfigError};

//! Alipay+'s wire format for `cancelPayment`: the request body, the result codes and the
//! response body. Pure: bytes in, bytes out.

pub mod keys;
pub mod request;
pub mod result;
pub mod signature;

pub use request::{CancelPaymentRequest, ParamError};
pub use result::{ResultCode, ResultStatus, result_body};

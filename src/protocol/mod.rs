//! Alipay+'s wire format for `cancelPayment`: the request body, the result codes and the
//! response body. Pure: bytes in, bytes out.

pub mod request;
pub mod result;

pub use request::{CancelPaymentRequest, ParamError};
pub use result::{ResultCode, ResultStatus, result_body};

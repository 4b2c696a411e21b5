//! Result codes and the `{"result": {...}}` body every answer carries.

use serde::Serialize;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum ResultStatus {
    S,
    F,
    U,
}

impl ResultStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::S => "S",
            Self::F => "F",
            Self::U => "U",
        }
    }
}

/// The result codes this service answers with (alipayplus.md, "Result codes").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ResultCode {
    Success,
    ProcessFail,
    CancelWindowExceed,
    ParamIllegal,
    AccessDenied,
    InvalidClient,
    InvalidSignature,
    KeyNotFound,
    MethodNotSupported,
    MediaTypeNotAcceptable,
    InvalidApi,
    RequestTrafficExceedLimit,
    UnknownException,
}

impl ResultCode {
    pub const ALL: [ResultCode; 13] = [
        Self::Success,
        Self::ProcessFail,
        Self::CancelWindowExceed,
        Self::ParamIllegal,
        Self::AccessDenied,
        Self::InvalidClient,
        Self::InvalidSignature,
        Self::KeyNotFound,
        Self::MethodNotSupported,
        Self::MediaTypeNotAcceptable,
        Self::InvalidApi,
        Self::RequestTrafficExceedLimit,
        Self::UnknownException,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Success => "SUCCESS",
            Self::ProcessFail => "PROCESS_FAIL",
            Self::CancelWindowExceed => "CANCEL_WINDOW_EXCEED",
            Self::ParamIllegal => "PARAM_ILLEGAL",
            Self::AccessDenied => "ACCESS_DENIED",
            Self::InvalidClient => "INVALID_CLIENT",
            Self::InvalidSignature => "INVALID_SIGNATURE",
            Self::KeyNotFound => "KEY_NOT_FOUND",
            Self::MethodNotSupported => "METHOD_NOT_SUPPORTED",
            Self::MediaTypeNotAcceptable => "MEDIA_TYPE_NOT_ACCEPTABLE",
            Self::InvalidApi => "INVALID_API",
            Self::RequestTrafficExceedLimit => "REQUEST_TRAFFIC_EXCEED_LIMIT",
            Self::UnknownException => "UNKNOWN_EXCEPTION",
        }
    }

    pub fn parse(code: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|c| c.as_str() == code)
    }

    pub fn status(self) -> ResultStatus {
        match self {
            Self::Success => ResultStatus::S,
            Self::ProcessFail
            | Self::CancelWindowExceed
            | Self::ParamIllegal
            | Self::AccessDenied
            | Self::InvalidClient
            | Self::InvalidSignature
            | Self::KeyNotFound
            | Self::MethodNotSupported
            | Self::MediaTypeNotAcceptable
            | Self::InvalidApi => ResultStatus::F,
            Self::RequestTrafficExceedLimit | Self::UnknownException => ResultStatus::U,
        }
    }

    /// The message sent when nothing more specific is known.
    pub fn default_message(self) -> &'static str {
        match self {
            Self::Success => "Success",
            Self::ProcessFail => "The payment has already been refunded and cannot be cancelled",
            Self::CancelWindowExceed => "The cancellable period of this payment has ended",
            Self::ParamIllegal => "Illegal parameters",
            Self::AccessDenied => "Access is denied",
            Self::InvalidClient => "The client is invalid",
            Self::InvalidSignature => "The signature is invalid",
            Self::KeyNotFound => "The key is not found",
            Self::MethodNotSupported => "The HTTP method is not supported, use POST",
            Self::MediaTypeNotAcceptable => {
                "The media type is not acceptable, use application/json"
            }
            Self::InvalidApi => "The API is not defined",
            Self::RequestTrafficExceedLimit => "The request traffic exceeds the limit, retry later",
            Self::UnknownException => "An unknown exception occurred, retry later",
        }
    }
}

#[derive(Serialize)]
struct Envelope<'a> {
    result: ResultFields<'a>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ResultFields<'a> {
    result_code: &'a str,
    result_status: &'a str,
    result_message: &'a str,
}

/// The exact response bytes for a result. `message` is cut to the 256 characters Alipay+ allows.
pub fn result_body(code: ResultCode, message: &str) -> Vec<u8> {
    let message = match message.char_indices().nth(256) {
        Some((cut, _)) => &message[..cut],
        None => message,
    };
    serde_json::to_vec(&Envelope {
        result: ResultFields {
            result_code: code.as_str(),
            result_status: code.status().as_str(),
            result_message: message,
        },
    })
    .expect("a struct of strings always serialises")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn body_has_the_documented_shape() {
        assert_eq!(
            String::from_utf8(result_body(ResultCode::Success, "Success")).unwrap(),
            r#"{"result":{"resultCode":"SUCCESS","resultStatus":"S","resultMessage":"Success"}}"#
        );
    }

    #[test]
    fn codes_round_trip_and_fit_the_limits() {
        for code in ResultCode::ALL {
            assert_eq!(ResultCode::parse(code.as_str()), Some(code));
            assert!(code.as_str().len() <= 64);
            assert!(code.default_message().len() <= 256);
        }
        let long = "é".repeat(300);
        let body: serde_json::Value =
            serde_json::from_slice(&result_body(ResultCode::ParamIllegal, &long)).unwrap();
        let message = body["result"]["resultMessage"].as_str().unwrap();
        assert_eq!(message.chars().count(), 256);
    }
}

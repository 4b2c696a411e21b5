//! The `cancelPayment` request body, parsed strictly: the three ids are required JSON strings of
//! 1 to 64 characters without control characters (PostgreSQL cannot store NUL, and no real id
//! holds a control character). Unknown fields are ignored, as Alipay+ may add fields at any time.

use serde::Deserialize;
use serde_json::Value;

/// A well-formed `cancelPayment` request. Holding one means every field was checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CancelPaymentRequest {
    pub acquirer_id: String,
    pub psp_id: String,
    pub payment_request_id: String,
}

/// Why a body is not a valid request; the text goes into `resultMessage` with PARAM_ILLEGAL.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParamError {
    #[error("the request body is not a JSON object")]
    NotAnObject,
    #[error("{0} is required")]
    Missing(&'static str),
    #[error("{0} must be a string")]
    NotAString(&'static str),
    #[error("{0} must not be empty")]
    Empty(&'static str),
    #[error("{0} must be at most {MAX_ID_CHARS} characters")]
    TooLong(&'static str),
    #[error("{0} must not contain control characters")]
    ControlCharacter(&'static str),
}

/// Alipay+'s limit for the three ids.
pub const MAX_ID_CHARS: usize = 64;

#[derive(Deserialize)]
struct RawRequest {
    #[serde(rename = "acquirerId", default)]
    acquirer_id: Option<Value>,
    #[serde(rename = "pspId", default)]
    psp_id: Option<Value>,
    #[serde(rename = "paymentRequestId", default)]
    payment_request_id: Option<Value>,
}

impl CancelPaymentRequest {
    pub fn parse(body: &[u8]) -> Result<Self, ParamError> {
        // Anything that is not one JSON object (bad JSON, an array, trailing bytes, duplicate
        // fields, invalid UTF-8) is refused as a whole. serde would also read a struct from a
        // JSON array, hence the explicit check for an object.
        if body.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
            return Err(ParamError::NotAnObject);
        }
        let raw: RawRequest = serde_json::from_slice(body).map_err(|_| ParamError::NotAnObject)?;
        Ok(Self {
            acquirer_id: id_field("acquirerId", raw.acquirer_id)?,
            psp_id: id_field("pspId", raw.psp_id)?,
            payment_request_id: id_field("paymentRequestId", raw.payment_request_id)?,
        })
    }
}

fn id_field(name: &'static str, value: Option<Value>) -> Result<String, ParamError> {
    match value {
        None | Some(Value::Null) => Err(ParamError::Missing(name)),
        Some(Value::String(s)) if s.is_empty() => Err(ParamError::Empty(name)),
        Some(Value::String(s)) if s.chars().count() > MAX_ID_CHARS => {
            Err(ParamError::TooLong(name))
        }
        // NUL would reach PostgreSQL and fail every write (U forever); the rest (C0, DEL, C1)
        // have no place in an id and would end up in logs and CSV reports.
        Some(Value::String(s)) if s.chars().any(char::is_control) => {
            Err(ParamError::ControlCharacter(name))
        }
        Some(Value::String(s)) => Ok(s),
        Some(_) => Err(ParamError::NotAString(name)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Result<CancelPaymentRequest, ParamError> {
        CancelPaymentRequest::parse(s.as_bytes())
    }

    #[test]
    fn reads_the_documented_sample_and_ignores_unknown_fields() {
        let req = parse(
            r#"{"acquirerId":"1022188000000000001","pspId":"1022172000000000001",
                "paymentRequestId":"20200101234567890132","extra":{"x":[1]}}"#,
        )
        .unwrap();
        assert_eq!(req.payment_request_id, "20200101234567890132");
        assert_eq!(req.psp_id, "1022172000000000001");
    }

    #[test]
    fn refuses_every_malformed_field() {
        let ok = r#""acquirerId":"a","pspId":"p""#;
        assert_eq!(parse("not json"), Err(ParamError::NotAnObject));
        assert_eq!(parse("[]"), Err(ParamError::NotAnObject));
        assert_eq!(parse(r#"{"a":1} {}"#), Err(ParamError::NotAnObject));
        assert_eq!(
            parse(&format!("{{{ok}}}")),
            Err(ParamError::Missing("paymentRequestId"))
        );
        assert_eq!(
            parse(&format!(r#"{{{ok},"paymentRequestId":null}}"#)),
            Err(ParamError::Missing("paymentRequestId"))
        );
        assert_eq!(
            parse(&format!(r#"{{{ok},"paymentRequestId":123}}"#)),
            Err(ParamError::NotAString("paymentRequestId"))
        );
        assert_eq!(
            parse(&format!(r#"{{{ok},"paymentRequestId":""}}"#)),
            Err(ParamError::Empty("paymentRequestId"))
        );
        let long = "9".repeat(65);
        assert_eq!(
            parse(&format!(r#"{{{ok},"paymentRequestId":"{long}"}}"#)),
            Err(ParamError::TooLong("paymentRequestId"))
        );
        assert_eq!(
            parse(r#"{"acquirerId":"a","acquirerId":"b","pspId":"p","paymentRequestId":"x"}"#),
            Err(ParamError::NotAnObject)
        );
    }

    #[test]
    fn control_characters_are_refused_in_every_id() {
        for bad in ["\0", "a\0b", "\n", "x\ty", "\u{7f}", "\u{85}", "\u{1b}[31m"] {
            for field in ["acquirerId", "pspId", "paymentRequestId"] {
                let mut body =
                    serde_json::json!({"acquirerId": "a", "pspId": "p", "paymentRequestId": "x"});
                body[field] = serde_json::Value::String(bad.to_owned());
                assert_eq!(
                    parse(&body.to_string()),
                    Err(ParamError::ControlCharacter(field)),
                    "{body}"
                );
            }
        }
    }

    #[test]
    fn counts_characters_not_bytes() {
        let id = "é".repeat(64);
        let req = parse(&format!(
            r#"{{"acquirerId":"a","pspId":"p","paymentRequestId":"{id}"}}"#
        ));
        assert_eq!(req.unwrap().payment_request_id, id);
    }
}

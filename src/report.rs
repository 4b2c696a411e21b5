//! The settlement-day report: the accepted cancellations of day T, for the MPP's clearing-file
//! job to exclude (cancelled payments are not settled and carry no fees). A cancellation whose
//! payment's T is not known yet is listed, `provisional`, under every day it may belong to.

use crate::store::ReportLine;
use std::str::FromStr;

/// How the report is written: CSV for clearing-file jobs, JSON for programs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Csv,
    Json,
}

impl FromStr for Format {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "csv" => Ok(Self::Csv),
            "json" => Ok(Self::Json),
            other => Err(format!("{other:?} is not csv or json")),
        }
    }
}

impl Format {
    /// The HTTP `Content-Type` of a report in this format.
    pub fn content_type(self) -> &'static str {
        match self {
            Self::Csv => "text/csv; charset=utf-8",
            Self::Json => "application/json",
        }
    }
}

const CSV_HEADER: &str = "paymentRequestId,paymentId,acquirerId,amountValue,currency,state,settlementDate,cancelledAt,provisional";

/// The report's text: CSV with a header line (fields quoted where needed), or a JSON array of
/// camelCase objects.
pub fn render(lines: &[ReportLine], format: Format) -> String {
    match format {
        Format::Json => serde_json::to_string_pretty(lines).unwrap_or_else(|_| "[]".into()),
        Format::Csv => {
            let mut out = String::from(CSV_HEADER);
            out.push('\n');
            for l in lines {
                // The ids come from Alipay+'s requests and the wallet: untrusted text.
                let untrusted = [
                    l.payment_request_id.as_str(),
                    l.payment_id.as_deref().unwrap_or_default(),
                    l.acquirer_id.as_str(),
                ];
                let ours = [
                    l.amount_value.map(|v| v.to_string()).unwrap_or_default(),
                    l.currency.clone().unwrap_or_default(),
                    l.state.clone(),
                    l.settlement_date.to_string(),
                    l.cancelled_at.to_rfc3339(),
                    l.provisional.to_string(),
                ];
                let row: Vec<String> = untrusted
                    .iter()
                    .map(|f| csv_field(&neutralise_formula(f)))
                    .chain(ours.iter().map(|f| csv_field(f)))
                    .collect();
                out.push_str(&row.join(","));
                out.push('\n');
            }
            out
        }
    }
}

/// Untrusted text that a spreadsheet would run as a formula (`=`, `+`, `-`, `@`, or a tab or
/// carriage return before one) gets a leading `'`, so it is shown as text (OWASP's CSV
/// injection advice).
fn neutralise_formula(value: &str) -> std::borrow::Cow<'_, str> {
    if value.starts_with(['=', '+', '-', '@', '\t', '\r']) {
        format!("'{value}").into()
    } else {
        value.into()
    }
}

/// RFC 4180: quote fields holding a comma, quote or line break; double the quotes.
pub(crate) fn csv_field(value: &str) -> String {
    if value.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", value.replace('"', "\"\""))
    } else {
        value.to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_quotes_what_needs_quoting() {
        assert_eq!(csv_field("plain"), "plain");
        assert_eq!(csv_field("a,b"), "\"a,b\"");
        assert_eq!(csv_field("say \"hi\""), "\"say \"\"hi\"\"\"");
    }

    #[test]
    fn untrusted_ids_cannot_become_formulas() {
        let line = |id: &str| ReportLine {
            payment_request_id: id.into(),
            payment_id: Some(format!("@{id}")),
            acquirer_id: "-2+3".into(),
            amount_value: Some(100),
            currency: Some("JPY".into()),
            state: "refunded".into(),
            settlement_date: chrono::NaiveDate::from_ymd_opt(2026, 11, 20).unwrap(),
            cancelled_at: chrono::DateTime::from_timestamp(0, 0).unwrap(),
            provisional: false,
        };
        let csv = render(&[line("=HYPERLINK(\"x\")")], Format::Csv);
        assert_eq!(
            csv.lines().nth(1).unwrap(),
            "\"'=HYPERLINK(\"\"x\"\")\",\"'@=HYPERLINK(\"\"x\"\")\",'-2+3,100,JPY,refunded,\
             2026-11-20,1970-01-01T00:00:00+00:00,false"
        );
        for prefix in ["=", "+", "-", "@", "\t", "\r"] {
            let csv = render(&[line(&format!("{prefix}1+1"))], Format::Csv);
            let row = csv.lines().nth(1).unwrap_or_default();
            assert!(
                row.starts_with("'") || row.starts_with("\"'"),
                "{prefix:?}: {row}"
            );
        }
        // JSON is for programs: the value stays as it was.
        let json: serde_json::Value =
            serde_json::from_str(&render(&[line("=1+1")], Format::Json)).unwrap();
        assert_eq!(json[0]["paymentRequestId"], "=1+1");
    }

    #[test]
    fn renders_both_formats() {
        let line = ReportLine {
            payment_request_id: "pr,1".into(),
            payment_id: Some("p1".into()),
            acquirer_id: "acq".into(),
            amount_value: Some(100),
            currency: Some("JPY".into()),
            state: "refunded".into(),
            settlement_date: chrono::NaiveDate::from_ymd_opt(2026, 11, 20).unwrap(),
            cancelled_at: chrono::DateTime::from_timestamp(0, 0).unwrap(),
            provisional: false,
        };
        let csv = render(std::slice::from_ref(&line), Format::Csv);
        assert_eq!(
            csv.lines().nth(1).unwrap(),
            "\"pr,1\",p1,acq,100,JPY,refunded,2026-11-20,1970-01-01T00:00:00+00:00,false"
        );
        let json: serde_json::Value = serde_json::from_str(&render(&[line], Format::Json)).unwrap();
        assert_eq!(json[0]["paymentRequestId"], "pr,1");
    }
}

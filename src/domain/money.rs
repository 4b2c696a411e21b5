//! Amounts as Alipay+ carries them: an integer number of the currency's minor unit and an
//! ISO 4217 code. Never floating point.

use std::fmt;

/// ISO 4217 codes of currencies a payment can be made in (funds, metals and test codes left out).
const ISO_4217: &[&str] = &[
    "AED", "AFN", "ALL", "AMD", "ANG", "AOA", "ARS", "AUD", "AWG", "AZN", "BAM", "BBD", "BDT",
    "BGN", "BHD", "BIF", "BMD", "BND", "BOB", "BRL", "BSD", "BTN", "BWP", "BYN", "BZD", "CAD",
    "CDF", "CHF", "CLP", "CNY", "COP", "CRC", "CUP", "CVE", "CZK", "DJF", "DKK", "DOP", "DZD",
    "EGP", "ERN", "ETB", "EUR", "FJD", "FKP", "GBP", "GEL", "GHS", "GIP", "GMD", "GNF", "GTQ",
    "GYD", "HKD", "HNL", "HTG", "HUF", "IDR", "ILS", "INR", "IQD", "IRR", "ISK", "JMD", "JOD",
    "JPY", "KES", "KGS", "KHR", "KMF", "KPW", "KRW", "KWD", "KYD", "KZT", "LAK", "LBP", "LKR",
    "LRD", "LSL", "LYD", "MAD", "MDL", "MGA", "MKD", "MMK", "MNT", "MOP", "MRU", "MUR", "MVR",
    "MWK", "MXN", "MYR", "MZN", "NAD", "NGN", "NIO", "NOK", "NPR", "NZD", "OMR", "PAB", "PEN",
    "PGK", "PHP", "PKR", "PLN", "PYG", "QAR", "RON", "RSD", "RUB", "RWF", "SAR", "SBD", "SCR",
    "SDG", "SEK", "SGD", "SHP", "SLE", "SOS", "SRD", "SSP", "STN", "SVC", "SYP", "SZL", "THB",
    "TJS", "TMT", "TND", "TOP", "TRY", "TTD", "TWD", "TZS", "UAH", "UGX", "USD", "UYU", "UZS",
    "VES", "VND", "VUV", "WST", "XAF", "XCD", "XCG", "XOF", "XPF", "YER", "ZAR", "ZMW", "ZWG",
];

/// A validated ISO 4217 currency code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Currency(&'static str);

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum MoneyError {
    #[error("{0:?} is not an ISO 4217 currency code")]
    UnknownCurrency(String),
    #[error("amount {0:?} is not a whole number of minor units")]
    NotMinorUnits(String),
    #[error("amount must be greater than zero, got {0}")]
    NotPositive(i64),
}

impl Currency {
    pub fn parse(code: &str) -> Result<Self, MoneyError> {
        ISO_4217
            .iter()
            .find(|known| **known == code)
            .map(|known| Currency(known))
            .ok_or_else(|| MoneyError::UnknownCurrency(code.to_owned()))
    }

    pub fn code(self) -> &'static str {
        self.0
    }
}

impl fmt::Display for Currency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0)
    }
}

/// A positive amount in minor units, e.g. USD 1.00 = `Money { minor_units: 100, USD }`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Money {
    pub minor_units: i64,
    pub currency: Currency,
}

impl Money {
    /// A payment or refund amount: strictly positive.
    pub fn new(minor_units: i64, currency: Currency) -> Result<Self, MoneyError> {
        if minor_units <= 0 {
            return Err(MoneyError::NotPositive(minor_units));
        }
        Ok(Self {
            minor_units,
            currency,
        })
    }

    /// Reads the wire form: `value` a string of digits, `currency` an ISO 4217 code.
    pub fn parse(value: &str, currency: &str) -> Result<Self, MoneyError> {
        let currency = Currency::parse(currency)?;
        Self::new(parse_minor_units(value)?, currency)
    }
}

/// Reads a wire `value` ("100"): ASCII digits only, no sign, no decimal point, fits in i64.
pub fn parse_minor_units(value: &str) -> Result<i64, MoneyError> {
    if value.is_empty() || !value.bytes().all(|b| b.is_ascii_digit()) {
        return Err(MoneyError::NotMinorUnits(value.to_owned()));
    }
    value
        .parse()
        .map_err(|_| MoneyError::NotMinorUnits(value.to_owned()))
}

impl fmt::Display for Money {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.minor_units, self.currency)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn currencies_are_iso_4217() {
        assert_eq!(Currency::parse("JPY").unwrap().code(), "JPY");
        assert!(Currency::parse("jpy").is_err());
        assert!(Currency::parse("XXX").is_err());
        assert!(Currency::parse("").is_err());
        assert!(
            ISO_4217.windows(2).all(|w| w[0] < w[1]),
            "sorted, no duplicates"
        );
    }

    #[test]
    fn amounts_are_positive_whole_minor_units() {
        assert_eq!(Money::parse("100", "USD").unwrap().minor_units, 100);
        for bad in ["", "-1", "1.00", "1e3", " 1", "99999999999999999999"] {
            assert!(Money::parse(bad, "USD").is_err(), "{bad:?}");
        }
        assert_eq!(Money::parse("0", "USD"), Err(MoneyError::NotPositive(0)));
    }
}

//! Amounts as Alipay+ carries them: an integer number of the currency's minor unit and an
//! ISO 4217 code. Never floating point.

use std::fmt;

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
    /// An ISO 4217 code a payment can be made in, from the maintained `iso_currency` list (it
    /// follows ISO's amendments, e.g. XCG and ZWG). Funds (BOV, CLF...) and special codes
    /// (metals, XDR, XTS, XXX) are refused. Superseded codes are still read: a refund must be
    /// expressible in the currency the payment was made in, and that list's superseded marks
    /// are not all withdrawals (VES, still current, is marked superseded by VED).
    pub fn parse(code: &str) -> Result<Self, MoneyError> {
        use iso_currency::Flag;
        iso_currency::Currency::from_code(code)
            .filter(|c| !c.has_flag(Flag::Fund) && !c.has_flag(Flag::Special))
            .map(|c| Currency(c.code()))
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
        // Current: the 2024 and 2025 amendments are in, ANG (withdrawn 2025) is out.
        for current in ["XCG", "ZWG", "SLE", "VES", "VED", "USD", "XOF"] {
            assert!(Currency::parse(current).is_ok(), "{current}");
        }
        // Funds, metals, test and "no currency" codes are not payment currencies.
        for not_money in ["ANG", "BOV", "CLF", "XAU", "XDR", "XTS"] {
            assert!(Currency::parse(not_money).is_err(), "{not_money}");
        }
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

//! Text that comes from outside (the wallet, above all) is untrusted until checked: PostgreSQL
//! cannot store NUL, control characters break logs and CSV, and an over-long value can fail a
//! write. An identifier the wallet hands us (a paymentId, a refund reference) is either usable
//! as it is or refused, never silently altered; free text (a refusal message, an error) is
//! flattened and capped so it can always be recorded.

/// The longest identifier accepted from the wallet.
pub const MAX_IDENTIFIER_CHARS: usize = 128;

/// The most characters of free text kept from the wallet (or from an error about it).
pub const MAX_TEXT_CHARS: usize = 500;

/// Checks an identifier the wallet sent: non-empty, at most [`MAX_IDENTIFIER_CHARS`]
/// characters, no control characters (NUL included). The error says what is wrong, without
/// repeating the value itself (it may be what broke the log or the database).
pub fn identifier<'a>(what: &str, value: &'a str) -> Result<&'a str, String> {
    if value.is_empty() {
        return Err(format!("the wallet's {what} is empty"));
    }
    let chars = value.chars().count();
    if chars > MAX_IDENTIFIER_CHARS {
        return Err(format!(
            "the wallet's {what} is {chars} characters long (at most {MAX_IDENTIFIER_CHARS})"
        ));
    }
    if value.chars().any(char::is_control) {
        return Err(format!("the wallet's {what} holds control characters"));
    }
    Ok(value)
}

/// What makes a payment the wallet reported unusable as it is, if anything: a `paymentId` that
/// cannot be stored as an identifier, or a negative refunded amount. Checked on every path a
/// payment comes in by, the cancel's own lookup included, whatever the wallet implementation.
pub fn payment_problem(payment: &super::Payment) -> Option<String> {
    if let Err(why) = identifier("paymentId", &payment.payment_id) {
        return Some(why);
    }
    (payment.refunded_minor_units < 0).then(|| {
        format!(
            "the wallet's refunded amount is negative ({})",
            payment.refunded_minor_units
        )
    })
}

/// Free text made fit to record: control characters (NUL included) become spaces, and it is
/// cut at [`MAX_TEXT_CHARS`] characters with an ellipsis.
pub fn text(value: &str) -> String {
    text_within(value, MAX_TEXT_CHARS)
}

/// [`text`] with another cap: at most `max` characters, then an ellipsis.
pub fn text_within(value: &str, max: usize) -> String {
    let mut out = String::with_capacity(value.len().min(max * 4));
    for (i, c) in value.chars().enumerate() {
        if i == max {
            out.push('…');
            break;
        }
        out.push(if c.is_control() { ' ' } else { c });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identifiers_are_accepted_as_they_are_or_refused() {
        assert_eq!(identifier("reference", "ref-1/ä"), Ok("ref-1/ä"));
        for bad in [
            String::new(),
            "a\0b".into(),
            "a\nb".into(),
            "\u{7f}".into(),
            "x".repeat(MAX_IDENTIFIER_CHARS + 1),
        ] {
            let why = identifier("reference", &bad).unwrap_err();
            assert!(why.contains("reference") && !why.contains('\0'), "{why}");
        }
        assert!(identifier("reference", &"é".repeat(MAX_IDENTIFIER_CHARS)).is_ok());
    }

    #[test]
    fn text_is_flattened_and_capped() {
        assert_eq!(text("a\0b\r\nc"), "a b  c");
        let long = "é".repeat(MAX_TEXT_CHARS + 10);
        let capped = text(&long);
        assert_eq!(capped.chars().count(), MAX_TEXT_CHARS + 1);
        assert!(capped.ends_with('…'));
        assert_eq!(text("fine"), "fine");
    }
}

//! Log fields that untrusted input cannot forge. Ids come from Alipay+'s requests and error
//! texts from the wallet; written raw by the plain-text formatter, a value such as
//! `x result_code=SUCCESS` or one holding a line break would read as another field or another
//! log line. [`SafeFields`] writes every value that is not a plain token Debug-quoted (spaces,
//! `=`, quotes and control characters escaped), and the message with its control characters
//! escaped. (The JSON formatter escapes by itself.)

use std::fmt;
use tracing::field::{Field, Visit};
use tracing_subscriber::field::RecordFields;
use tracing_subscriber::fmt::FormatFields;
use tracing_subscriber::fmt::format::Writer;

/// The plain-text formatter's field writer: `name=value` separated by spaces, values quoted
/// unless they are plain tokens.
#[derive(Debug, Clone, Copy, Default)]
pub struct SafeFields;

impl<'writer> FormatFields<'writer> for SafeFields {
    fn format_fields<R: RecordFields>(&self, writer: Writer<'writer>, fields: R) -> fmt::Result {
        let mut visitor = SafeVisitor {
            writer,
            first: true,
            result: Ok(()),
        };
        fields.record(&mut visitor);
        visitor.result
    }
}

struct SafeVisitor<'writer> {
    writer: Writer<'writer>,
    first: bool,
    result: fmt::Result,
}

impl SafeVisitor<'_> {
    fn write(&mut self, field: &Field, text: &str) {
        if self.result.is_err() {
            return;
        }
        let separator = if std::mem::take(&mut self.first) {
            ""
        } else {
            " "
        };
        self.result = if field.name() == "message" {
            write!(self.writer, "{separator}{}", escape_controls(text))
        } else if is_plain_token(text) {
            write!(self.writer, "{separator}{}={text}", field.name())
        } else {
            write!(self.writer, "{separator}{}={text:?}", field.name())
        };
    }
}

impl Visit for SafeVisitor<'_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.write(field, value);
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        // `%value` arrives here too, its Debug being its Display: format, then judge the text.
        self.write(field, &format!("{value:?}"));
    }
}

/// Printable, no space, no quote, no `=`: cannot be read as more than one value.
fn is_plain_token(text: &str) -> bool {
    !text.is_empty()
        && !text
            .chars()
            .any(|c| c.is_whitespace() || c.is_control() || matches!(c, '"' | '\'' | '=' | '\\'))
}

/// The text with line breaks and other control characters written as escapes.
fn escape_controls(text: &str) -> std::borrow::Cow<'_, str> {
    if !text.chars().any(char::is_control) {
        return text.into();
    }
    text.chars()
        .map(|c| match c.is_control() {
            true => c.escape_debug().to_string(),
            false => c.to_string(),
        })
        .collect::<String>()
        .into()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    #[derive(Clone, Default)]
    struct Buffer(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Buffer {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(bytes);
            Ok(bytes.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    /// What the service's plain-text logger writes for `log`.
    fn logged(log: impl FnOnce()) -> String {
        let buffer = Buffer::default();
        let writer = buffer.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(move || writer.clone())
            .with_ansi(false)
            .without_time()
            .fmt_fields(SafeFields)
            .finish();
        tracing::subscriber::with_default(subscriber, log);
        String::from_utf8(buffer.0.lock().unwrap().clone()).unwrap()
    }

    #[test]
    fn untrusted_values_cannot_forge_fields_or_lines() {
        let id = "pr-1 result_code=SUCCESS";
        let wallet_error = "boom\n2026-12-08T00:00:00Z  INFO refund done payment_request_id=x";
        let text = logged(|| {
            tracing::warn!(
                payment_request_id = %id,
                error = %wallet_error,
                plain = "pr-2",
                attempts = 3,
                "refund failed\nforged line"
            );
        });
        assert_eq!(text.lines().count(), 1, "{text}");
        assert!(
            text.contains(r#"payment_request_id="pr-1 result_code=SUCCESS""#),
            "{text}"
        );
        assert!(!text.contains(" result_code=SUCCESS "), "{text}");
        assert!(
            text.contains(r#"error="boom\n2026-12-08T00:00:00Z  INFO refund done"#),
            "{text}"
        );
        assert!(text.contains("plain=pr-2 attempts=3"), "{text}");
        assert!(text.contains(r"refund failed\nforged line"), "{text}");
    }

    #[test]
    fn plain_tokens_stay_bare() {
        assert!(is_plain_token("pr-1"));
        assert!(is_plain_token("12.5"));
        for forged in ["", "a b", "a=b", "a\"b", "a\nb", "a\tb", "a\\b"] {
            assert!(!is_plain_token(forged), "{forged:?}");
        }
        assert_eq!(escape_controls("a\r\nb"), r"a\r\nb");
        assert_eq!(escape_controls("plain"), "plain");
    }
}

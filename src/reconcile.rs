//! The last line of defence against paying twice: Alipay+ leaves a cancelled payment out of its
//! clearing files, so a `paymentRequestId` we cancelled (`S`) that still appears in one would be
//! settled to the merchant *and* refunded to the user. `mpp-cancel reconcile --clearing-file`
//! reads such a file and lists every id in it that we cancelled or refused, with our state and
//! refund.
//!
//! The reading of the file is pure ([`ClearingParser`]: one line in, what it is out) and apart
//! from the I/O ([`reconcile`]: lines from any reader, ids looked up in batches of
//! [`LOOKUP_BATCH`], findings written as they come), so a file of any length is streamed in
//! bounded memory: one line (at most [`MAX_LINE_BYTES`]) and one batch at a time.
//!
//! What the file may hold (decided; the clearing files' exact layout varies by product):
//! - lines before the header (a title, `Partner:...|Total_count:4`): tolerated, counted;
//! - the header: the first line one of whose fields is the id column (`--id-column`, default
//!   `paymentRequestId`), its delimiter the first of `,` `|` `;` tab that makes it so;
//! - records: as many fields as the header (RFC 4180 quoting on one line), a non-empty id of at
//!   most 64 characters with no control characters;
//! - summary lines: a line whose first field is `total`, `subtotal`, `summary`, `count` or
//!   `sum` (any case, a trailing `:` allowed), or that starts with `#`;
//! - an `<END>` line; anything but blank lines after it is malformed;
//! - blank lines anywhere.
//!
//! Every other line is malformed and reported with its number: it might hide a cancelled id, so
//! the command then exits non-zero too.

use crate::store::{ReconcileHit, Store};
use std::io::{BufRead, Write};

/// Ids looked up per database round trip.
pub const LOOKUP_BATCH: usize = 1000;

/// The longest line read; a longer one is reported malformed and skipped without being held.
pub const MAX_LINE_BYTES: usize = 64 * 1024;

/// The longest paymentRequestId Alipay+ sends.
const MAX_ID_CHARS: usize = 64;

const DELIMITERS: [char; 4] = [',', '|', ';', '\t'];
const SUMMARY_WORDS: [&str; 5] = ["total", "subtotal", "summary", "count", "sum"];

/// What one line of a clearing file is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClearingLine {
    /// The header (or a blank line, a line before the header, a summary line, `<END>`):
    /// nothing to look up.
    Skipped(Skip),
    /// A record and its paymentRequestId.
    Record(String),
    /// A line that is none of the above, and why.
    Malformed(String),
}

/// Why a line holds no id to look up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Skip {
    Blank,
    BeforeHeader,
    Header,
    Summary,
    End,
}

/// Reads a clearing file line by line: pure, no I/O.
#[derive(Debug, Clone)]
pub struct ClearingParser {
    id_column: String,
    header: Option<Header>,
    ended: bool,
}

#[derive(Debug, Clone)]
struct Header {
    delimiter: char,
    fields: usize,
    id_index: usize,
}

impl ClearingParser {
    pub fn new(id_column: &str) -> Self {
        Self {
            id_column: id_column.trim().to_owned(),
            header: None,
            ended: false,
        }
    }

    /// Whether the header has been seen (a file without one cannot be reconciled).
    pub fn found_header(&self) -> bool {
        self.header.is_some()
    }

    /// What `line` (without its line break) is.
    pub fn line(&mut self, line: &str) -> ClearingLine {
        let line = line.strip_suffix('\r').unwrap_or(line);
        let line = line.strip_prefix('\u{feff}').unwrap_or(line);
        if line.trim().is_empty() {
            return ClearingLine::Skipped(Skip::Blank);
        }
        if self.ended {
            return ClearingLine::Malformed("content after the <END> line".into());
        }
        if line.trim() == "<END>" {
            self.ended = true;
            return ClearingLine::Skipped(Skip::End);
        }
        let Some(header) = &self.header else {
            return match self.header_of(line) {
                Some(header) => {
                    self.header = Some(header);
                    ClearingLine::Skipped(Skip::Header)
                }
                None => ClearingLine::Skipped(Skip::BeforeHeader),
            };
        };
        if is_summary(line, header.delimiter) {
            return ClearingLine::Skipped(Skip::Summary);
        }
        let fields = match split(line, header.delimiter) {
            Ok(fields) => fields,
            Err(why) => return ClearingLine::Malformed(why),
        };
        if fields.len() != header.fields {
            return ClearingLine::Malformed(format!(
                "{} fields where the header has {}",
                fields.len(),
                header.fields
            ));
        }
        let id = fields[header.id_index].trim();
        if id.is_empty() {
            return ClearingLine::Malformed(format!("an empty {}", self.id_column));
        }
        if id.chars().count() > MAX_ID_CHARS {
            return ClearingLine::Malformed(format!(
                "{} longer than {MAX_ID_CHARS} characters",
                self.id_column
            ));
        }
        if id.chars().any(char::is_control) {
            return ClearingLine::Malformed(format!("{} holds control characters", self.id_column));
        }
        ClearingLine::Record(id.to_owned())
    }

    fn header_of(&self, line: &str) -> Option<Header> {
        DELIMITERS.iter().find_map(|&delimiter| {
            let fields = split(line, delimiter).ok()?;
            let id_index = fields
                .iter()
                .position(|f| f.trim().eq_ignore_ascii_case(&self.id_column))?;
            Some(Header {
                delimiter,
                fields: fields.len(),
                id_index,
            })
        })
    }
}

fn is_summary(line: &str, delimiter: char) -> bool {
    if line.trim_start().starts_with('#') {
        return true;
    }
    let first = line.split(delimiter).next().unwrap_or("").trim();
    let word = first.trim_end_matches(':').trim().trim_matches('"');
    SUMMARY_WORDS.iter().any(|w| word.eq_ignore_ascii_case(w))
}

/// One line's fields, RFC 4180 quoting (a quoted field may hold the delimiter and doubled
/// quotes, not a line break).
fn split(line: &str, delimiter: char) -> Result<Vec<String>, String> {
    let mut fields = Vec::new();
    let mut field = String::new();
    let mut chars = line.chars().peekable();
    let mut quoted = false;
    let mut at_start = true;
    while let Some(c) = chars.next() {
        if quoted {
            match c {
                '"' if chars.peek() == Some(&'"') => {
                    field.push('"');
                    chars.next();
                }
                '"' => {
                    quoted = false;
                    match chars.peek() {
                        None => {}
                        Some(&next) if next == delimiter => {}
                        Some(_) => return Err("text after a closing quote".into()),
                    }
                }
                c => field.push(c),
            }
        } else if c == delimiter {
            fields.push(std::mem::take(&mut field));
            at_start = true;
            continue;
        } else if c == '"' && at_start && field.trim().is_empty() {
            field.clear();
            quoted = true;
        } else if c == '"' {
            return Err("a quote inside an unquoted field".into());
        } else {
            field.push(c);
        }
        at_start = false;
    }
    if quoted {
        return Err("an unterminated quote".into());
    }
    fields.push(field);
    Ok(fields)
}

/// What a reconciliation found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Summary {
    pub lines: u64,
    pub records: u64,
    /// Ids we cancelled (answered `S`) found in the file: money paid twice unless acted on.
    pub cancelled: u64,
    /// Ids we refused (answered `F`) found in the file: expected there, listed for the record.
    pub refused: u64,
    pub malformed: u64,
}

/// Reads the clearing file from `input`, looks its ids up in batches and writes to `findings`
/// one CSV line per id we cancelled or refused (after a header line), and to `problems` one
/// line per malformed line (`line N: why`). Memory stays bounded whatever the file's length.
pub async fn reconcile(
    store: &Store,
    mut input: impl BufRead,
    id_column: &str,
    mut findings: impl Write,
    mut problems: impl Write,
) -> anyhow::Result<Summary> {
    let mut parser = ClearingParser::new(id_column);
    let mut summary = Summary::default();
    let mut batch: Vec<(u64, String)> = Vec::with_capacity(LOOKUP_BATCH);
    let mut buffer = Vec::with_capacity(1024);
    writeln!(
        findings,
        "line,paymentRequestId,resultStatus,resultCode,state,refundStatus,refundValue,refundCurrency,voidStatus"
    )?;
    loop {
        let read = read_line(&mut input, &mut buffer, MAX_LINE_BYTES)?;
        let Some(complete) = read else { break };
        summary.lines += 1;
        let line_no = summary.lines;
        let outcome = if !complete {
            ClearingLine::Malformed(format!("longer than {MAX_LINE_BYTES} bytes"))
        } else {
            match std::str::from_utf8(&buffer) {
                Ok(text) => parser.line(text.strip_suffix('\n').unwrap_or(text)),
                Err(_) => ClearingLine::Malformed("not UTF-8".into()),
            }
        };
        match outcome {
            ClearingLine::Skipped(_) => {}
            ClearingLine::Record(id) => {
                summary.records += 1;
                batch.push((line_no, id));
                if batch.len() == LOOKUP_BATCH {
                    look_up(store, &mut batch, &mut findings, &mut summary).await?;
                }
            }
            ClearingLine::Malformed(why) => {
                summary.malformed += 1;
                writeln!(problems, "line {line_no}: {why}")?;
            }
        }
    }
    look_up(store, &mut batch, &mut findings, &mut summary).await?;
    findings.flush()?;
    anyhow::ensure!(
        parser.found_header(),
        "no header line names the id column {id_column:?} (see --id-column)"
    );
    Ok(summary)
}

async fn look_up(
    store: &Store,
    batch: &mut Vec<(u64, String)>,
    findings: &mut impl Write,
    summary: &mut Summary,
) -> anyhow::Result<()> {
    if batch.is_empty() {
        return Ok(());
    }
    let ids: Vec<String> = batch.iter().map(|(_, id)| id.clone()).collect();
    let hits = store.reconcile_lookup(&ids).await?;
    let by_id: std::collections::HashMap<&str, &ReconcileHit> = hits
        .iter()
        .map(|h| (h.payment_request_id.as_str(), h))
        .collect();
    for (line_no, id) in batch.iter() {
        let Some(hit) = by_id.get(id.as_str()) else {
            continue;
        };
        match hit.result_status.as_str() {
            "S" => summary.cancelled += 1,
            _ => summary.refused += 1,
        }
        let fields = [
            line_no.to_string(),
            hit.payment_request_id.clone(),
            hit.result_status.clone(),
            hit.result_code.clone(),
            hit.state.clone(),
            hit.refund_status.clone().unwrap_or_default(),
            hit.refund_value.map(|v| v.to_string()).unwrap_or_default(),
            hit.refund_currency.clone().unwrap_or_default(),
            hit.void_status.clone().unwrap_or_default(),
        ];
        let row: Vec<String> = fields.iter().map(|f| crate::report::csv_field(f)).collect();
        writeln!(findings, "{}", row.join(","))?;
    }
    batch.clear();
    Ok(())
}

/// Reads one line (through its `\n`) into `buffer`, at most `max` bytes of it: `Some(true)` a
/// whole line, `Some(false)` a line cut at `max` (the rest is consumed and dropped), `None` at
/// the end of the input.
fn read_line(
    input: &mut impl BufRead,
    buffer: &mut Vec<u8>,
    max: usize,
) -> std::io::Result<Option<bool>> {
    buffer.clear();
    let mut complete = true;
    let mut any = false;
    loop {
        let available = input.fill_buf()?;
        if available.is_empty() {
            return Ok(any.then_some(complete));
        }
        any = true;
        let (chunk, found_end) = match available.iter().position(|&b| b == b'\n') {
            Some(at) => (&available[..=at], true),
            None => (available, false),
        };
        let used = chunk.len();
        if complete {
            let room = max.saturating_sub(buffer.len());
            if chunk.len() <= room {
                buffer.extend_from_slice(chunk);
            } else {
                complete = false;
                buffer.clear();
            }
        }
        input.consume(used);
        if found_end {
            return Ok(Some(complete));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(text: &str) -> Vec<ClearingLine> {
        let mut parser = ClearingParser::new("paymentRequestId");
        text.lines().map(|l| parser.line(l)).collect()
    }

    #[test]
    fn reads_records_and_tolerates_preamble_summary_and_end() {
        let got = lines(
            "Partner:2088|Total_count:2\n\
             \u{feff}participantId,paymentRequestId,amount\r\n\
             p1,id-1,100\n\
             \n\
             p1,\"id,2\",200\n\
             TOTAL,2,300\n\
             # generated\n\
             <END>\n\
             \n",
        );
        use ClearingLine::*;
        assert_eq!(
            got,
            vec![
                Skipped(Skip::BeforeHeader),
                Skipped(Skip::Header),
                Record("id-1".into()),
                Skipped(Skip::Blank),
                Record("id,2".into()),
                Skipped(Skip::Summary),
                Skipped(Skip::Summary),
                Skipped(Skip::End),
                Skipped(Skip::Blank),
            ]
        );
    }

    #[test]
    fn malformed_lines_say_why() {
        let got = lines(
            "a,paymentRequestId,b\n\
             x,id-1\n\
             x,,y\n\
             x,\"open,y\n\
             x,a\"b,y\n\
             x,\u{1}id,y\n\
             <END>\n\
             x,late,y\n",
        );
        let why: Vec<String> = got
            .into_iter()
            .map(|l| match l {
                ClearingLine::Malformed(why) => why,
                other => format!("{other:?}"),
            })
            .collect();
        assert_eq!(why[1], "2 fields where the header has 3");
        assert_eq!(why[2], "an empty paymentRequestId");
        assert_eq!(why[3], "an unterminated quote");
        assert_eq!(why[4], "a quote inside an unquoted field");
        assert_eq!(why[5], "paymentRequestId holds control characters");
        assert_eq!(why[7], "content after the <END> line");
    }

    #[test]
    fn the_header_picks_its_delimiter_and_the_named_column() {
        let mut parser = ClearingParser::new("Partner_transaction_id");
        assert_eq!(
            parser.line("Partner_transaction_id|Transaction_id|Amount"),
            ClearingLine::Skipped(Skip::Header)
        );
        assert_eq!(
            parser.line("0001|2013|100"),
            ClearingLine::Record("0001".into())
        );
    }

    #[test]
    fn long_lines_are_cut_and_reported_not_held() {
        let text = format!("short\n{}\nlast", "x".repeat(100));
        let mut input = std::io::Cursor::new(text.into_bytes());
        let mut buffer = Vec::new();
        assert_eq!(read_line(&mut input, &mut buffer, 10).unwrap(), Some(true));
        assert_eq!(buffer, b"short\n");
        assert_eq!(read_line(&mut input, &mut buffer, 10).unwrap(), Some(false));
        assert!(buffer.is_empty());
        assert_eq!(read_line(&mut input, &mut buffer, 10).unwrap(), Some(true));
        assert_eq!(buffer, b"last");
        assert_eq!(read_line(&mut input, &mut buffer, 10).unwrap(), None);
    }
}

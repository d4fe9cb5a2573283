//! Everything the commands print on stdout: either one JSON document (`--json`) or
//! human-readable text with aligned tables. Errors and progress go to stderr elsewhere.

use std::io::{self, Write};

use barq_core::{Error, Result};
use serde::Serialize;

/// Where a command's result goes.
#[derive(Debug, Clone, Copy)]
pub struct Output {
    json: bool,
}

impl Output {
    /// `json`: print JSON documents instead of text.
    pub fn new(json: bool) -> Self {
        Output { json }
    }

    /// Print `value` as JSON, or the text `human` builds.
    pub fn emit<T: Serialize>(&self, value: &T, human: impl FnOnce() -> String) -> Result<()> {
        if self.json {
            let mut text = serde_json::to_string_pretty(value)
                .map_err(|e| Error::internal(format!("encode output as JSON: {e}")))?;
            text.push('\n');
            write_stdout(&text)
        } else {
            let mut text = human();
            if !text.is_empty() && !text.ends_with('\n') {
                text.push('\n');
            }
            write_stdout(&text)
        }
    }
}

/// Write to stdout. A closed pipe (`barq search … | head -1`) is not an error.
fn write_stdout(text: &str) -> Result<()> {
    let mut out = io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Err(e) if e.kind() != io::ErrorKind::BrokenPipe => Err(Error::io("write to stdout", e)),
        _ => Ok(()),
    }
}

/// How a column is aligned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Align {
    Left,
    Right,
}

/// A text table: a header row and columns padded to their widest cell.
#[derive(Debug)]
pub struct Table {
    columns: Vec<(&'static str, Align)>,
    rows: Vec<Vec<String>>,
}

impl Table {
    /// A table with these column headers.
    pub fn new(columns: &[(&'static str, Align)]) -> Self {
        Table {
            columns: columns.to_vec(),
            rows: Vec::new(),
        }
    }

    /// Append a row; it has one cell per column.
    pub fn row(&mut self, cells: Vec<String>) {
        debug_assert_eq!(cells.len(), self.columns.len(), "one cell per column");
        self.rows.push(cells);
    }

    /// The table as lines of text, without trailing spaces.
    pub fn render(&self) -> String {
        let mut widths: Vec<usize> = self.columns.iter().map(|(h, _)| h.len()).collect();
        for row in &self.rows {
            for (w, cell) in widths.iter_mut().zip(row) {
                *w = (*w).max(cell.chars().count());
            }
        }
        let header: Vec<String> = self.columns.iter().map(|(h, _)| h.to_string()).collect();
        let mut out = String::new();
        for row in std::iter::once(&header).chain(&self.rows) {
            let mut line = String::new();
            for (i, cell) in row.iter().enumerate() {
                if i > 0 {
                    line.push_str("  ");
                }
                let pad = widths[i].saturating_sub(cell.chars().count());
                match self.columns[i].1 {
                    Align::Left => {
                        line.push_str(cell);
                        line.extend(std::iter::repeat_n(' ', pad));
                    }
                    Align::Right => {
                        line.extend(std::iter::repeat_n(' ', pad));
                        line.push_str(cell);
                    }
                }
            }
            out.push_str(line.trim_end());
            out.push('\n');
        }
        out
    }
}

/// A vector as text, `[0.1, 0.2]`, each component in its shortest exact form.
pub fn format_vector(v: &[f32]) -> String {
    let parts: Vec<String> = v.iter().map(|x| x.to_string()).collect();
    format!("[{}]", parts.join(", "))
}

/// A score with 6 significant decimals, enough to tell neighbours apart.
pub fn format_score(s: f32) -> String {
    format!("{s:.6}")
}

/// `1 document`, `2 documents`.
pub fn plural(n: u64, noun: &str) -> String {
    match n {
        1 => format!("1 {noun}"),
        n => format!("{n} {noun}s"),
    }
}

/// Milliseconds since the Unix epoch as `YYYY-MM-DD HH:MM:SS UTC` (the civil-from-days
/// algorithm of H. Hinnant), to avoid a date crate for one field.
pub fn format_utc_ms(ms: u64) -> String {
    let secs = ms / 1000;
    let (days, rem) = ((secs / 86_400) as i64, secs % 86_400);
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02} UTC",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_aligns_columns() {
        let mut t = Table::new(&[("NAME", Align::Left), ("COUNT", Align::Right)]);
        t.row(vec!["a".into(), "1".into()]);
        t.row(vec!["longer".into(), "12345".into()]);
        assert_eq!(t.render(), "NAME    COUNT\na           1\nlonger  12345\n");
    }

    #[test]
    fn vectors_print_shortest_form() {
        assert_eq!(format_vector(&[0.1, 1.0, -2.5]), "[0.1, 1, -2.5]");
    }

    #[test]
    fn utc_dates() {
        assert_eq!(format_utc_ms(0), "1970-01-01 00:00:00 UTC");
        assert_eq!(format_utc_ms(951_782_400_000), "2000-02-29 00:00:00 UTC");
        assert_eq!(format_utc_ms(1_735_689_599_999), "2024-12-31 23:59:59 UTC");
    }
}

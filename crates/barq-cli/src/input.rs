//! Reading documents from JSONL and `.fvecs` files (or stdin), one at a time, each checked
//! against the collection's settings so that a bad record is reported with its line (JSONL) or
//! row (fvecs) before anything from its batch is written.

use std::fs::File;
use std::io::{self, BufRead, BufReader, Read};
use std::path::Path;

use barq_core::{
    CollectionConfig, Document, Error, MAX_DIMENSION, Payload, Result, validate_document,
};
use serde::Deserialize;

use crate::args::Format;

/// One line of a JSONL file. Unknown fields are refused so that a typo such as `"paylod"` is not
/// silently dropped.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct JsonlDoc {
    id: String,
    vector: Vec<f32>,
    #[serde(default)]
    payload: Option<Payload>,
}

/// A stream of documents read from a file or stdin.
pub struct DocReader {
    /// The file as named on the command line, or `stdin`.
    name: String,
    format: Format,
    reader: Box<dyn BufRead>,
    /// Size of the file, when known.
    len: Option<u64>,
    /// Bytes consumed so far.
    bytes: u64,
    /// Lines read (JSONL) or vectors read (fvecs).
    records: u64,
    buf: Vec<u8>,
}

impl std::fmt::Debug for DocReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DocReader")
            .field("name", &self.name)
            .field("format", &self.format)
            .field("bytes", &self.bytes)
            .field("records", &self.records)
            .finish_non_exhaustive()
    }
}

/// The format a file is in, from its extension: `.fvecs`, or else JSONL.
pub fn detect_format(path: &Path) -> Format {
    match path.extension().and_then(|e| e.to_str()) {
        Some(ext) if ext.eq_ignore_ascii_case("fvecs") => Format::Fvecs,
        _ => Format::Jsonl,
    }
}

impl DocReader {
    /// Open `path` (`-` is stdin).
    pub fn open(path: &Path, format: Format) -> Result<Self> {
        let (name, reader, len): (String, Box<dyn BufRead>, Option<u64>) =
            if path.as_os_str() == "-" {
                ("stdin".to_owned(), Box::new(io::stdin().lock()), None)
            } else {
                let name = path.display().to_string();
                let file = File::open(path)
                    .map_err(|e| Error::invalid(format!("cannot open {name}: {e}")))?;
                let len = file.metadata().ok().map(|m| m.len());
                (name, Box::new(BufReader::with_capacity(1 << 20, file)), len)
            };
        Ok(DocReader {
            name,
            format,
            reader,
            len,
            bytes: 0,
            records: 0,
            buf: Vec::new(),
        })
    }

    /// The input's name in messages.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Size of the input in bytes, when known (not for stdin).
    pub fn len(&self) -> Option<u64> {
        self.len
    }

    /// Bytes consumed so far.
    pub fn bytes_read(&self) -> u64 {
        self.bytes
    }

    /// Up to `max` documents, each valid for `config`. Empty at the end of the input. An error
    /// names the input and the line or row of the first bad record.
    pub fn read_batch(&mut self, config: &CollectionConfig, max: usize) -> Result<Vec<Document>> {
        let mut docs = Vec::with_capacity(max.min(64 * 1024));
        while docs.len() < max {
            let Some(doc) = self.next_doc(config)? else {
                break;
            };
            docs.push(doc);
        }
        Ok(docs)
    }

    /// The next document, valid for `config`, or `None` at the end of the input.
    pub fn next_doc(&mut self, config: &CollectionConfig) -> Result<Option<Document>> {
        let doc = match self.format {
            Format::Jsonl => self.next_jsonl()?,
            Format::Fvecs => self.next_fvecs()?,
        };
        if let Some(doc) = &doc {
            validate_document(config, doc).map_err(|e| self.invalid(e.message()))?;
        }
        Ok(doc)
    }

    /// Where the last record came from: `docs.jsonl line 3`, `base.fvecs row 3`.
    fn location(&self) -> String {
        match self.format {
            Format::Jsonl => format!("{} line {}", self.name, self.records),
            Format::Fvecs => format!("{} row {}", self.name, self.records.saturating_sub(1)),
        }
    }

    fn invalid(&self, message: &str) -> Error {
        Error::invalid(format!("{}: {message}", self.location()))
    }

    fn read_error(&self, e: io::Error) -> Error {
        Error::io(format_args!("read {}", self.location()), e)
    }

    fn next_jsonl(&mut self) -> Result<Option<Document>> {
        loop {
            self.buf.clear();
            let n = self
                .reader
                .read_until(b'\n', &mut self.buf)
                .map_err(|e| self.read_error(e))?;
            if n == 0 {
                return Ok(None);
            }
            self.bytes += n as u64;
            self.records += 1;
            let line = self.buf.trim_ascii();
            if line.is_empty() {
                continue;
            }
            let doc: JsonlDoc = serde_json::from_slice(line).map_err(|e| {
                self.invalid(&format!("{} (column {})", json_error_text(&e), e.column()))
            })?;
            return Ok(Some(Document {
                id: doc.id,
                vector: doc.vector,
                payload: doc.payload,
            }));
        }
    }

    fn next_fvecs(&mut self) -> Result<Option<Document>> {
        let mut header = [0u8; 4];
        let n = read_full(&mut self.reader, &mut header).map_err(|e| self.read_error(e))?;
        if n == 0 {
            return Ok(None);
        }
        self.records += 1;
        if n < header.len() {
            return Err(self.invalid("the file ends in the middle of a dimension header"));
        }
        let dim = i32::from_le_bytes(header);
        if dim <= 0 || dim as u32 > MAX_DIMENSION {
            return Err(self.invalid(&format!(
                "invalid dimension {dim} at byte offset {}: expected 1..={MAX_DIMENSION} \
                 (is this an .fvecs file?)",
                self.bytes
            )));
        }
        self.bytes += 4;
        self.buf.resize(dim as usize * 4, 0);
        let n = read_full(&mut self.reader, &mut self.buf).map_err(|e| self.read_error(e))?;
        if n < self.buf.len() {
            return Err(self.invalid(&format!(
                "the file ends in the middle of a vector ({n} of {} bytes)",
                self.buf.len()
            )));
        }
        self.bytes += n as u64;
        let vector = self
            .buf
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect();
        let id = (self.records - 1).to_string();
        Ok(Some(Document::new(id, vector)))
    }
}

/// Read until `buf` is full or the input ends; returns the bytes read.
fn read_full(reader: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match reader.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}

/// serde_json's message without its " at line 1 column N" suffix (we parse one line at a time,
/// so the line would be wrong).
fn json_error_text(e: &serde_json::Error) -> String {
    let text = e.to_string();
    match text.rfind(" at line ") {
        Some(i) => text[..i].to_owned(),
        None => text,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use barq_core::Metric;
    use std::io::Cursor;

    fn reader(format: Format, bytes: Vec<u8>) -> DocReader {
        DocReader {
            name: "in".into(),
            format,
            reader: Box::new(Cursor::new(bytes)),
            len: None,
            bytes: 0,
            records: 0,
            buf: Vec::new(),
        }
    }

    fn cfg() -> CollectionConfig {
        CollectionConfig::new("c", 2, Metric::L2).expect("valid config")
    }

    #[test]
    fn jsonl_skips_blank_lines_and_numbers_lines() {
        let text = "{\"id\":\"a\",\"vector\":[1,2]}\n\n  \n{\"id\":\"b\",\"vector\":[1]}\n";
        let mut r = reader(Format::Jsonl, text.into());
        assert_eq!(r.next_doc(&cfg()).expect("a").expect("some").id, "a");
        let err = r.next_doc(&cfg()).expect_err("b has the wrong dimension");
        assert!(
            err.message().starts_with("in line 4: dimension mismatch"),
            "{err}"
        );
    }

    #[test]
    fn jsonl_errors_name_line_and_column() {
        let mut r = reader(
            Format::Jsonl,
            "{\"id\":\"a\",\"vector\":[1,\"NaN\"]}".into(),
        );
        let err = r.next_doc(&cfg()).expect_err("string component");
        assert_eq!(
            err.message(),
            "in line 1: invalid type: string \"NaN\", expected f32 (column 27)"
        );
        let mut r = reader(
            Format::Jsonl,
            "{\"id\":\"a\",\"vector\":[1,2],\"x\":1}".into(),
        );
        let err = r.next_doc(&cfg()).expect_err("unknown field");
        assert!(err.message().contains("unknown field `x`"), "{err}");
    }

    #[test]
    fn fvecs_rows_become_ids_and_truncation_is_reported() {
        let mut bytes = Vec::new();
        for row in 0..3u8 {
            bytes.extend(2i32.to_le_bytes());
            bytes.extend(f32::from(row).to_le_bytes());
            bytes.extend(0.5f32.to_le_bytes());
        }
        bytes.extend(2i32.to_le_bytes());
        bytes.extend(1.0f32.to_le_bytes());
        let mut r = reader(Format::Fvecs, bytes);
        let docs = r.read_batch(&cfg(), 3).expect("three rows");
        assert_eq!(docs[2], Document::new("2", vec![2.0, 0.5]));
        let err = r.read_batch(&cfg(), 3).expect_err("truncated");
        assert!(
            err.message().starts_with("in row 3: the file ends"),
            "{err}"
        );
    }

    #[test]
    fn fvecs_bad_dimension() {
        let mut r = reader(Format::Fvecs, (-1i32).to_le_bytes().to_vec());
        let err = r.next_doc(&cfg()).expect_err("negative dimension");
        assert!(err.message().contains("invalid dimension -1"), "{err}");
    }
}

//! Real text embeddings made by `scripts/embeddings.py` (all-MiniLM-L6-v2 over English
//! sentences): a little-endian `u32 rows, u32 dim` header, then `rows * dim` f32 values.

use std::path::Path;

/// The rows of an embeddings file, each `dim` long.
pub fn read_embeddings(path: &Path) -> std::io::Result<Vec<Vec<f32>>> {
    let bytes = std::fs::read(path)?;
    let bad = |what: String| std::io::Error::new(std::io::ErrorKind::InvalidData, what);
    if bytes.len() < 8 {
        return Err(bad(format!("{}: no header", path.display())));
    }
    let rows = u32::from_le_bytes(bytes[0..4].try_into().expect("4 bytes")) as usize;
    let dim = u32::from_le_bytes(bytes[4..8].try_into().expect("4 bytes")) as usize;
    if dim == 0 || bytes.len() != 8 + rows * dim * 4 {
        return Err(bad(format!(
            "{}: {} bytes do not hold {rows} x {dim} f32 values",
            path.display(),
            bytes.len()
        )));
    }
    Ok(bytes[8..]
        .chunks_exact(dim * 4)
        .map(|row| {
            row.chunks_exact(4)
                .map(|b| f32::from_le_bytes(b.try_into().expect("4 bytes")))
                .collect()
        })
        .collect())
}

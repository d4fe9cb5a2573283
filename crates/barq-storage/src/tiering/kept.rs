//! [`KeptRanges`]: the few ranges of each cold segment that every open and query needs first —
//! its footer, index head, tombstones and row map — kept on local disk across restarts, unlike
//! the range cache (emptied at open), so that the first query after a restart starts with the
//! cluster extents instead of a chain of metadata reads.
//!
//! One file per range, `<dir>/<namespace>/<key>` (the key names the range: `tail`, or a block
//! kind), holding the bytes and their CRC32C.
//! Files are written to a temporary name and renamed, and checked when read: a torn or damaged
//! file is a miss (deleted and fetched again), never wrong bytes. Namespaces of segments that
//! left the manifest are dropped with the segment, and swept at open
//! ([`KeptRanges::retain`]).

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use barq_core::{Error, Result};
use bytes::Bytes;
use parking_lot::Mutex;

/// See the module docs.
#[derive(Debug)]
pub struct KeptRanges {
    dir: PathBuf,
    inner: Mutex<HashMap<String, Kept>>,
}

/// The kept ranges of one namespace.
#[derive(Debug, Default)]
struct Kept {
    /// Bytes on disk.
    bytes: u64,
    /// Ranges read and checked since open, memory-mapped: later reads are free.
    mapped: HashMap<String, Bytes>,
}

/// The directory name of a namespace: bytes other than ASCII letters, digits, `-` and `_` are
/// written as `%XX`.
fn dir_name(ns: &str) -> String {
    let mut s = String::with_capacity(ns.len());
    for b in ns.bytes() {
        if b.is_ascii_alphanumeric() || b == b'-' || b == b'_' {
            s.push(b as char);
        } else {
            s.push_str(&format!("%{b:02X}"));
        }
    }
    s
}

fn ns_of(dir_name: &str) -> Option<String> {
    let b = dir_name.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = std::str::from_utf8(b.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

impl KeptRanges {
    /// The kept ranges in `dir` (created if missing; what is there is kept).
    pub fn open(dir: &Path) -> Result<KeptRanges> {
        std::fs::create_dir_all(dir)
            .map_err(|e| Error::io(format_args!("create {}", dir.display()), e))?;
        let mut inner = HashMap::new();
        let list = std::fs::read_dir(dir)
            .map_err(|e| Error::io(format_args!("list {}", dir.display()), e))?;
        for d in list.flatten() {
            let Some(ns) = d.file_name().to_str().and_then(ns_of) else {
                continue;
            };
            let bytes = std::fs::read_dir(d.path())
                .into_iter()
                .flatten()
                .flatten()
                .filter_map(|f| f.metadata().ok())
                .map(|m| m.len())
                .sum::<u64>();
            inner.insert(
                ns,
                Kept {
                    bytes,
                    mapped: HashMap::new(),
                },
            );
        }
        Ok(KeptRanges {
            dir: dir.to_owned(),
            inner: Mutex::new(inner),
        })
    }

    fn path(&self, ns: &str, key: &str) -> PathBuf {
        self.dir.join(dir_name(ns)).join(dir_name(key))
    }

    /// The bytes kept as `key` of `ns`, if they are kept and intact.
    pub fn get(&self, ns: &str, key: &str) -> Option<Bytes> {
        match self.inner.lock().get(ns) {
            None => return None,
            Some(k) => {
                if let Some(b) = k.mapped.get(key) {
                    return Some(b.clone());
                }
            }
        }
        let path = self.path(ns, key);
        let file = std::fs::File::open(&path).ok()?;
        // SAFETY: kept files are written to a temporary name and renamed into place, never
        // changed afterwards; removing one keeps a mapping valid.
        let map = unsafe { memmap2::Mmap::map(&file) }.ok()?;
        let data = Bytes::from_owner(map);
        let want = data.len().checked_sub(4)?;
        if crc32c::crc32c(&data[..want]).to_le_bytes() != data[want..] {
            tracing::warn!(path = %path.display(), "a kept range is damaged; it is fetched again");
            let _ = std::fs::remove_file(&path);
            return None;
        }
        let bytes = data.slice(..want);
        if let Some(k) = self.inner.lock().get_mut(ns) {
            k.mapped.insert(key.to_owned(), bytes.clone());
        }
        Some(bytes)
    }

    /// Keep `bytes` as `key` of `ns`. A failure is logged: the range is fetched again when
    /// next needed.
    pub fn put(&self, ns: &str, key: &str, bytes: &[u8]) {
        let path = self.path(ns, key);
        let write = || -> std::io::Result<()> {
            if let Some(d) = path.parent() {
                std::fs::create_dir_all(d)?;
            }
            let tmp = path.with_extension("tmp");
            let mut data = Vec::with_capacity(bytes.len() + 4);
            data.extend_from_slice(bytes);
            data.extend_from_slice(&crc32c::crc32c(bytes).to_le_bytes());
            std::fs::write(&tmp, &data)?;
            std::fs::rename(&tmp, &path)
        };
        match write() {
            Ok(()) => {
                let mut g = self.inner.lock();
                let k = g.entry(ns.to_owned()).or_default();
                k.bytes += bytes.len() as u64 + 4;
                k.mapped.remove(key);
            }
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %e, "could not keep a cold segment's metadata range")
            }
        }
    }

    /// Forget every range of `ns`.
    pub fn remove(&self, ns: &str) {
        if self.inner.lock().remove(ns).is_some() {
            let d = self.dir.join(dir_name(ns));
            if let Err(e) = std::fs::remove_dir_all(&d)
                && e.kind() != std::io::ErrorKind::NotFound
            {
                tracing::warn!(path = %d.display(), error = %e, "could not remove kept ranges");
            }
        }
    }

    /// Drop every namespace for which `keep` is false (segments no manifest names).
    pub fn retain(&self, keep: impl Fn(&str) -> bool) {
        let gone: Vec<String> = self
            .inner
            .lock()
            .keys()
            .filter(|ns| !keep(ns))
            .cloned()
            .collect();
        for ns in gone {
            self.remove(&ns);
        }
    }

    /// Segments with kept ranges, and the bytes kept.
    pub fn usage(&self) -> (u64, u64) {
        let g = self.inner.lock();
        (g.len() as u64, g.values().map(|k| k.bytes).sum())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_survive_reopen_and_damage_is_a_miss() {
        let dir = tempfile::tempdir().expect("tempdir");
        let k = KeptRanges::open(dir.path()).expect("open");
        k.put("docs/7/abc", "tail", b"hello");
        k.put("docs/8/def", "INDEX_HEAD", b"abc");
        assert_eq!(k.get("docs/7/abc", "tail").as_deref(), Some(&b"hello"[..]));
        assert_eq!(k.get("docs/7/abc", "INDEX_HEAD"), None, "another key");
        let k = KeptRanges::open(dir.path()).expect("reopen");
        assert_eq!(k.usage(), (2, 5 + 4 + 3 + 4));
        assert_eq!(k.get("docs/7/abc", "tail").as_deref(), Some(&b"hello"[..]));
        // Damage the file: a miss, and the file is gone.
        let path = k.path("docs/7/abc", "tail");
        std::fs::write(&path, b"hellX\0\0\0\0").expect("damage");
        let k = KeptRanges::open(dir.path()).expect("reopen");
        assert_eq!(k.get("docs/7/abc", "tail"), None);
        assert!(!path.exists());
        k.retain(|ns| ns == "docs/7/abc");
        assert_eq!(k.get("docs/8/def", "INDEX_HEAD"), None, "swept");
        assert_eq!(k.usage().0, 1);
        k.remove("docs/7/abc");
        assert_eq!(k.usage(), (0, 0));
    }
}

use std::path::Path;
use std::sync::Arc;

use barq_core::{ErrorKind, Metric};

use super::format::BlockKind;
use super::*;

fn id(i: usize) -> String {
    // long ids so that the id pages span several pages
    format!("doc-{i:06}-{}", "x".repeat(90))
}

fn vector(i: usize, dim: usize) -> Vec<f32> {
    (0..dim).map(|d| (i * 31 + d) as f32 / 7.0).collect()
}

fn write(path: &Path, rows: usize, dim: usize) -> SegmentInfo {
    let mut w = SegmentWriter::create(path, dim as u32, Metric::L2).expect("create");
    for i in 0..rows {
        let v = vector(i, dim);
        let payload = format!("{{\"n\":{i}}}");
        let tomb = i % 10 == 3;
        w.push(RowInput {
            id: id(i).as_bytes(),
            seq: 100 + i as u64,
            vector: (!tomb).then_some(&v[..]),
            payload: (i % 2 == 0).then_some(payload.as_bytes()),
            norm: None,
        })
        .expect("push");
    }
    w.finish(42).expect("finish")
}

fn open(path: &Path) -> barq_core::Result<Segment> {
    Segment::open(Arc::new(MmapSource::open(path)?))
}

#[test]
fn roundtrip_lookup_and_blocks() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("1.seg");
    let info = write(&path, 700, 5);
    assert_eq!(info.rows, 700);
    assert_eq!(info.tombstones, 70);
    assert_eq!((info.min_seq, info.max_seq), (100, 799));
    let bytes = std::fs::read(&path).expect("read");
    assert_eq!(info.size_bytes, bytes.len() as u64);
    assert_eq!(info.crc, crc32c::crc32c(&bytes));
    assert!(!dir.path().join("1.seg.tmp").exists());

    let seg = open(&path).expect("open");
    assert!(seg.footer().pages.len() > 1, "ids span several pages");
    seg.verify_all().expect("verify");
    for i in 0..700 {
        match seg.lookup(&id(i)).expect("lookup") {
            Lookup::Found { vector: v, payload } => {
                assert_ne!(i % 10, 3);
                assert_eq!(v, vector(i, 5));
                assert_eq!(payload.is_some(), i % 2 == 0);
                if let Some(p) = payload {
                    assert_eq!(&p[..], format!("{{\"n\":{i}}}").as_bytes());
                }
            }
            Lookup::Deleted => assert_eq!(i % 10, 3),
            Lookup::Absent => panic!("row {i} missing"),
        }
        assert_eq!(seg.id_of(i as u64).expect("id"), id(i));
    }
    assert_eq!(seg.lookup("nope").expect("lookup"), Lookup::Absent);
    assert_eq!(seg.lookup("").expect("lookup"), Lookup::Absent);
    assert_eq!(seg.lookup("zzz").expect("lookup"), Lookup::Absent);
    assert_eq!(seg.vectors().expect("vectors").len(), 700 * 5);
    assert_eq!(seg.seqs().expect("seqs")[5], 105);
    let t = seg.tombstones().expect("tombstones");
    assert_eq!(t[0] >> 3 & 1, 1);
    let mut n = 0;
    seg.for_each_entry(|row, e| {
        assert_eq!(e.id, id(row as usize).as_bytes());
        n += 1;
        Ok(())
    })
    .expect("iterate");
    assert_eq!(n, 700);
}

#[test]
fn out_of_order_rows_are_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut w = SegmentWriter::create(&dir.path().join("s.seg"), 1, Metric::Dot).expect("create");
    w.push(RowInput {
        id: b"b",
        seq: 1,
        vector: Some(&[1.0]),
        payload: None,
        norm: None,
    })
    .expect("push");
    let err = w
        .push(RowInput {
            id: b"a",
            seq: 2,
            vector: Some(&[1.0]),
            payload: None,
            norm: None,
        })
        .expect_err("out of order");
    assert!(
        matches!(
            err.find_source::<SegmentError>(),
            Some(SegmentError::BadRow(_))
        ),
        "{err}"
    );
    assert!(
        w.push(RowInput {
            id: b"b",
            seq: 2,
            vector: Some(&[1.0]),
            payload: None,
            norm: None,
        })
        .is_err()
    );
    drop(w);
    assert_eq!(
        std::fs::read_dir(dir.path()).expect("ls").count(),
        0,
        "tmp files removed on drop"
    );
}

/// Flip one byte in the middle of each block (and the footer): every read that touches it is a
/// data-corruption error, never a wrong answer.
#[test]
fn a_flipped_byte_in_any_block_is_corruption() {
    let dir = tempfile::tempdir().expect("tempdir");
    let clean = dir.path().join("clean.seg");
    write(&clean, 300, 4);
    let footer = open(&clean).expect("open").footer().clone();
    let original = std::fs::read(&clean).expect("read");

    for kind in BlockKind::ALL {
        let b = footer.block(kind).expect("block");
        let path = dir.path().join(format!("{}.seg", kind as u32));
        let mut bytes = original.clone();
        bytes[(b.offset + b.len / 2) as usize] ^= 0x40;
        std::fs::write(&path, &bytes).expect("write");
        let seg = open(&path).expect("footer intact");
        let err = seg.verify_all().expect_err("verify must fail");
        assert_eq!(err.kind(), ErrorKind::DataCorruption, "{kind:?}: {err}");
        assert!(
            matches!(
                err.find_source::<SegmentError>(),
                Some(SegmentError::Checksum { start, .. }) if *start <= b.offset + b.len / 2
            ),
            "{kind:?}: {err}"
        );
        let targeted = match kind {
            BlockKind::Vectors => seg.vectors().map(|_| ()),
            BlockKind::Norms => seg.norms().map(|_| ()),
            BlockKind::IdPages => seg.load_id_pages(),
            BlockKind::Payloads => seg.load_payloads(),
            BlockKind::Seqs => seg.seqs().map(|_| ()),
            BlockKind::Tombstones => seg.tombstones().map(|_| ()),
        };
        assert_eq!(
            targeted.expect_err("block read").kind(),
            ErrorKind::DataCorruption,
            "{kind:?}"
        );
        // Point lookups check the page, the vector and the payload they read.
        let mut lookup_failed = false;
        for i in 0..300 {
            match seg.lookup(&id(i)) {
                Err(e) => {
                    assert_eq!(e.kind(), ErrorKind::DataCorruption);
                    lookup_failed = true;
                }
                Ok(Lookup::Found { vector: v, payload }) => {
                    assert_eq!(v, vector(i, 4), "{kind:?} row {i}: wrong vector served");
                    if let Some(p) = payload {
                        assert_eq!(&p[..], format!("{{\"n\":{i}}}").as_bytes(), "{kind:?}");
                    }
                }
                Ok(_) => {}
            }
        }
        let touched_by_lookup = matches!(
            kind,
            BlockKind::Vectors | BlockKind::IdPages | BlockKind::Payloads
        );
        assert_eq!(lookup_failed, touched_by_lookup, "{kind:?}");
    }

    // Footer and trailer.
    for at in [original.len() - 30, original.len() - 14, original.len() - 2] {
        let mut bytes = original.clone();
        bytes[at] ^= 0x01;
        let path = dir.path().join("footer.seg");
        std::fs::write(&path, &bytes).expect("write");
        assert_eq!(
            open(&path).expect_err("open").kind(),
            ErrorKind::DataCorruption
        );
    }
    // Truncated file.
    let path = dir.path().join("short.seg");
    std::fs::write(&path, &original[..original.len() - 100]).expect("write");
    assert_eq!(
        open(&path).expect_err("open").kind(),
        ErrorKind::DataCorruption
    );
}

/// A footer of a newer format version is refused with a typed error naming both versions.
#[test]
fn a_newer_format_version_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("s.seg");
    write(&path, 20, 4);
    let mut bytes = std::fs::read(&path).expect("read");
    let n = bytes.len();
    let t = format::TRAILER_LEN as usize;
    let (footer_len, _) = format::decode_trailer(&bytes[n - t..]).expect("trailer");
    let body = n - t - footer_len as usize;
    bytes[body..body + 4].copy_from_slice(&(format::FORMAT_VERSION + 1).to_le_bytes());
    let trailer = format::encode_trailer(&bytes[body..n - t]);
    bytes[n - t..].copy_from_slice(&trailer);
    std::fs::write(&path, &bytes).expect("write");
    let err = open(&path).expect_err("newer version");
    assert_eq!(err.kind(), ErrorKind::DataCorruption);
    let Some(SegmentError::Corrupt {
        cause: Some(cause), ..
    }) = err.find_source::<SegmentError>()
    else {
        panic!("not a typed corruption: {err}");
    };
    assert!(
        matches!(
            **cause,
            SegmentError::UnsupportedVersion { found, supported }
                if found == format::FORMAT_VERSION + 1 && supported == format::FORMAT_VERSION
        ),
        "{err}"
    );
}

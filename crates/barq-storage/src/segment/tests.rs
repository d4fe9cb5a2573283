use std::path::Path;
use std::sync::Arc;

use barq_core::{ErrorKind, Metric};

use super::format::{self, BlockKind};
use super::*;

fn id(i: usize) -> String {
    // long ids so that the id pages span several pages
    format!("doc-{i:06}-{}", "x".repeat(90))
}

fn vector(i: usize, dim: usize) -> Vec<f32> {
    (0..dim).map(|d| (i * 31 + d) as f32 / 7.0).collect()
}

fn write(path: &Path, rows: usize, dim: usize) -> SegmentInfo {
    write_with(path, rows, dim, vector)
}

/// Rows `0..rows` with vectors from `vector_of`: every tenth (`i % 10 == 3`) a tombstone, every
/// other one with a payload.
fn write_with(
    path: &Path,
    rows: usize,
    dim: usize,
    vector_of: fn(usize, usize) -> Vec<f32>,
) -> SegmentInfo {
    let mut w = SegmentWriter::create(path, dim as u32, Metric::L2).expect("create");
    for i in 0..rows {
        let v = vector_of(i, dim);
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
            BlockKind::RowEntries => seg.entry_of_row(0).map(|_| ()),
            BlockKind::Clusters => seg.cluster_extents(&[0]).map(|_| ()),
            BlockKind::IndexHead => seg.index().map(|_| ()),
            BlockKind::FilterData => seg.read_block(kind).map(|_| ()),
            BlockKind::FilterHead => seg.filter_index().map(|_| ()),
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

/// Clustered vectors, so that an index has something to find.
fn clustered(i: usize, dim: usize) -> Vec<f32> {
    let c = (i * 7) % 13;
    (0..dim)
        .map(|d| (c * 10 + d) as f32 + ((i * 31 + d * 17) % 97) as f32 / 97.0)
        .collect()
}

fn write_clustered(path: &Path, rows: usize, dim: usize) -> SegmentInfo {
    write_with(path, rows, dim, clustered)
}

fn small_index() -> barq_index::IndexParams {
    barq_index::IndexParams {
        target_cluster_rows: 100,
        ..Default::default()
    }
}

#[test]
fn an_indexed_rewrite_keeps_every_row_lookup_and_entry() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (plain, indexed) = (dir.path().join("1.seg"), dir.path().join("2.seg"));
    let (rows, dim) = (3000, 16);
    write_clustered(&plain, rows, dim);
    let v1 = open(&plain).expect("open v1");
    let info = write_indexed(&v1, &indexed, &small_index(), &[], 43).expect("index");
    assert_eq!((info.rows, info.tombstones), (3000, 300));
    assert_eq!((info.min_seq, info.max_seq), (100, 3099));
    let bytes = std::fs::read(&indexed).expect("read");
    assert_eq!(info.crc, crc32c::crc32c(&bytes));
    assert!(!dir.path().join("2.seg.tmp").exists());

    let v2 = open(&indexed).expect("open v2");
    assert!(v2.is_indexed() && !v1.is_indexed());
    v2.verify_all().expect("verify");
    let index = v2.index().expect("head").expect("indexed");
    assert_eq!(
        index.head.rows(),
        2700,
        "every live row, no tombstone, is indexed"
    );
    assert!(
        index.head.clusters() >= 10,
        "{} clusters",
        index.head.clusters()
    );
    let all: Vec<u32> = (0..index.head.clusters() as u32).collect();
    let extents = v2.cluster_extents(&all).expect("extents");
    assert_eq!(extents.len(), all.len());
    // Each extent carries its rows' entries in row order, the same as the id pages'.
    assert_eq!(v2.footer().version, format::FORMAT_VERSION);
    assert!(index.extent_entries);
    for (&c, bytes) in all.iter().zip(&extents) {
        let split = index.split_extent(c, bytes).expect("split");
        let page = split.entries.expect("entries in the extent");
        for (i, row) in index.cluster_rows(c).enumerate() {
            let e = page.entry(i).expect("entry");
            assert_eq!(e.row, None);
            assert_eq!(e.vector_crc, split.crcs[i], "row {row}");
            let from_pages = v2
                .with_entry(row, |p| (p.id.to_vec(), OwnedEntry::from(p)))
                .expect("id page entry");
            assert_eq!(
                (e.id.to_vec(), OwnedEntry::from(&e)),
                from_pages,
                "row {row}"
            );
        }
    }

    // Every id answers the same; rows moved but each row still names its id.
    for i in 0..rows {
        assert_eq!(
            v2.lookup(&id(i)).expect("v2"),
            v1.lookup(&id(i)).expect("v1"),
            "id {i}"
        );
        let (row, _) = v2.find(id(i).as_bytes()).expect("find").expect("present");
        assert_eq!(v2.id_of(row).expect("id of row"), id(i));
    }
    // Entries still come in id order, each with its row.
    let mut seen = Vec::new();
    v2.for_each_entry(|row, e| {
        let i = seen.len();
        assert_eq!(e.id, id(i).as_bytes());
        assert_eq!(e.is_tombstone(), i % 10 == 3);
        if !e.is_tombstone() {
            let v = &v2.vectors().expect("vectors")[row as usize * dim..(row as usize + 1) * dim];
            assert_eq!(v, &clustered(i, dim)[..]);
        }
        seen.push(row);
        Ok(())
    })
    .expect("entries");
    seen.sort_unstable();
    assert_eq!(seen, (0..rows as u64).collect::<Vec<_>>(), "each row once");
    // Tombstones sit after every cluster.
    let t = v2.tombstones().expect("tombstones");
    for r in 0..rows as u64 {
        assert_eq!(crate::shadows::bit(&t, r), r >= 2700, "row {r}");
    }
    let seqs = v2.seqs().expect("seqs");
    let (row, _) = v2.find(id(5).as_bytes()).expect("find").expect("present");
    assert_eq!(seqs[row as usize], 105);
    // Rewriting an indexed segment again is refused.
    let e =
        write_indexed(&v2, &dir.path().join("3.seg"), &small_index(), &[], 1).expect_err("twice");
    assert_eq!(e.kind(), ErrorKind::InvalidArgument);
}

#[test]
fn a_corrupt_cluster_extent_is_a_corruption_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (plain, indexed) = (dir.path().join("1.seg"), dir.path().join("2.seg"));
    write_clustered(&plain, 2000, 8);
    write_indexed(
        &open(&plain).expect("open"),
        &indexed,
        &small_index(),
        &[],
        1,
    )
    .expect("index");
    let extent = open(&indexed)
        .expect("open")
        .index()
        .expect("head")
        .expect("indexed")
        .extents[3];
    let mut bytes = std::fs::read(&indexed).expect("read");
    bytes[extent.offset as usize + 5] ^= 0x40;
    std::fs::write(&indexed, &bytes).expect("write");
    let seg = open(&indexed).expect("the footer and head are intact");
    let e = seg.cluster_extents(&[3]).expect_err("corrupt extent");
    assert_eq!(e.kind(), ErrorKind::DataCorruption);
    assert!(e.to_string().contains("cluster extents"), "{e}");
    seg.cluster_extents(&[2, 4])
        .expect("the other extents are fine");
    assert!(matches!(
        seg.lookup(&id(0)).expect("lookup"),
        Lookup::Found { .. }
    ));
}

#[test]
fn a_corrupt_index_head_is_a_corruption_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (plain, indexed) = (dir.path().join("1.seg"), dir.path().join("2.seg"));
    write_clustered(&plain, 1500, 8);
    write_indexed(
        &open(&plain).expect("open"),
        &indexed,
        &small_index(),
        &[],
        1,
    )
    .expect("index");
    let head = open(&indexed)
        .expect("open")
        .footer()
        .block(BlockKind::IndexHead)
        .expect("head");
    let mut bytes = std::fs::read(&indexed).expect("read");
    bytes[head.offset as usize + 40] ^= 0x01;
    std::fs::write(&indexed, &bytes).expect("write");
    let e = open(&indexed)
        .expect("open")
        .index()
        .expect_err("corrupt head");
    assert_eq!(e.kind(), ErrorKind::DataCorruption);
}

#[test]
fn every_block_of_an_indexed_segment_is_checked() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (plain, indexed) = (dir.path().join("1.seg"), dir.path().join("2.seg"));
    write_clustered(&plain, 1200, 8);
    write_indexed(
        &open(&plain).expect("open"),
        &indexed,
        &small_index(),
        &[],
        1,
    )
    .expect("index");
    let footer = open(&indexed).expect("open").footer().clone();
    let original = std::fs::read(&indexed).expect("read");
    for kind in BlockKind::ALL.into_iter().chain(BlockKind::INDEX) {
        let b = footer.block(kind).expect("block");
        let path = dir.path().join(format!("{}.seg", kind as u32 + 100));
        let mut bytes = original.clone();
        bytes[(b.offset + b.len / 2) as usize] ^= 0x40;
        std::fs::write(&path, &bytes).expect("write");
        let seg = open(&path).expect("footer intact");
        let err = seg.verify_all().expect_err("verify must fail");
        assert_eq!(err.kind(), ErrorKind::DataCorruption, "{kind:?}: {err}");
    }
}

#[test]
fn re_rank_rows_coalesce_into_at_most_the_allowed_reads_closing_small_gaps_first() {
    use super::reader::coalesce;
    assert_eq!(coalesce(&[], 4), Vec::<std::ops::Range<u64>>::new());
    assert_eq!(
        coalesce(&[3, 4, 5, 9], 4),
        vec![3..6, 9..10],
        "adjacent rows share"
    );
    // Gaps 1 (5..6), 94 (7..100), 1 (101..102), 898 (103..1000): two reads close the two
    // gaps of 1 and keep the large ones.
    assert_eq!(
        coalesce(&[4, 6, 100, 102, 1000], 3),
        vec![4..7, 100..103, 1000..1001]
    );
    assert_eq!(coalesce(&[4, 6, 100, 102, 1000], 1), vec![4..1001]);
    let many: Vec<u64> = (0..100).map(|i| i * 10).collect();
    let spans = coalesce(&many, 16);
    assert_eq!(spans.len(), 16);
    for r in &many {
        assert!(spans.iter().any(|s| s.contains(r)), "row {r} is covered");
    }
}

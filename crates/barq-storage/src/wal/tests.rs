use std::fs::OpenOptions;
use std::io::Write;
use std::sync::Arc;

use super::*;

fn batch(ids: &[&str], dim: usize) -> BatchEncoder {
    let mut b = BatchEncoder::new(64);
    for (i, id) in ids.iter().enumerate() {
        if let Some(deleted) = id.strip_prefix('-') {
            b.delete(deleted);
        } else {
            let v = vec![i as f32; dim];
            b.upsert(id, &v, (i % 2 == 0).then_some(&b"{\"a\":1}"[..]));
        }
    }
    b
}

fn replay_all(dir: &std::path::Path, flushed: u64) -> (Vec<(u64, WalOp)>, u64) {
    let mut ops = Vec::new();
    let stats = replay(dir, 2, flushed, |s, op| ops.push((s, op))).expect("replay");
    (ops, stats.truncated_bytes)
}

#[test]
fn append_sync_replay_roundtrip_with_sequence_numbers() {
    let dir = tempfile::tempdir().expect("tempdir");
    let wal = Wal::create(dir.path(), 1, 10).expect("create");
    let mut seen = Vec::new();
    let p1 = wal
        .append(&mut batch(&["a", "b"], 2), |s| seen.push(s))
        .expect("append");
    let p2 = wal
        .append(&mut batch(&["-a"], 2), |s| seen.push(s))
        .expect("append");
    assert!(p2 > p1);
    wal.sync_to(p2).expect("sync");
    assert_eq!(wal.unsynced_bytes(), 0);
    assert_eq!(seen, [10, 12]);
    assert_eq!(wal.next_seq(), 13);
    let (ops, cut) = replay_all(dir.path(), 0);
    assert_eq!(cut, 0);
    let seqs: Vec<u64> = ops.iter().map(|(s, _)| *s).collect();
    assert_eq!(seqs, [10, 11, 12]);
    assert_eq!(ops[2].1, WalOp::Delete { id: Arc::from("a") });
    match &ops[0].1 {
        WalOp::Upsert {
            id,
            vector,
            payload,
        } => {
            assert_eq!((&**id, vector.as_slice()), ("a", &[0.0, 0.0][..]));
            assert_eq!(payload.as_deref(), Some(&b"{\"a\":1}"[..]));
        }
        other => panic!("{other:?}"),
    }
    // Replay is idempotent with respect to what is already flushed.
    let (ops, _) = replay_all(dir.path(), 11);
    assert_eq!(ops.len(), 1);
}

#[test]
fn torn_tail_is_truncated_and_later_records_survive() {
    let dir = tempfile::tempdir().expect("tempdir");
    let wal = Wal::create(dir.path(), 1, 1).expect("create");
    wal.append(&mut batch(&["a"], 2), |_| {}).expect("append");
    wal.append(&mut batch(&["b"], 2), |_| {}).expect("append");
    wal.sync_all().expect("sync");
    let path = dir.path().join(file_name(1));
    let full = std::fs::metadata(&path).expect("stat").len();
    // Cut the last record in half.
    OpenOptions::new()
        .write(true)
        .open(&path)
        .expect("open")
        .set_len(full - 5)
        .expect("truncate");
    let (ops, cut) = replay_all(dir.path(), 0);
    assert_eq!(ops.len(), 1, "only the whole record survives");
    assert!(cut > 0);
    let after = std::fs::metadata(&path).expect("stat").len();
    assert!(after < full - 5, "file truncated to the last good record");
    // Replaying again finds a clean file.
    let (ops, cut) = replay_all(dir.path(), 0);
    assert_eq!((ops.len(), cut), (1, 0));
}

#[test]
fn garbage_appended_is_truncated() {
    let dir = tempfile::tempdir().expect("tempdir");
    let wal = Wal::create(dir.path(), 1, 1).expect("create");
    wal.append(&mut batch(&["a", "b", "c"], 2), |_| {})
        .expect("append");
    wal.sync_all().expect("sync");
    let path = dir.path().join(file_name(1));
    let good = std::fs::metadata(&path).expect("stat").len();
    for garbage in [&[0xffu8; 3][..], &[7u8; 100][..], &[0u8; 64][..]] {
        OpenOptions::new()
            .append(true)
            .open(&path)
            .expect("open")
            .write_all(garbage)
            .expect("write");
        let (ops, cut) = replay_all(dir.path(), 0);
        assert_eq!(ops.len(), 3);
        assert_eq!(cut, garbage.len() as u64);
        assert_eq!(std::fs::metadata(&path).expect("stat").len(), good);
    }
}

#[test]
fn a_flipped_bit_in_a_record_stops_replay_there() {
    let dir = tempfile::tempdir().expect("tempdir");
    let wal = Wal::create(dir.path(), 1, 1).expect("create");
    wal.append(&mut batch(&["a"], 2), |_| {}).expect("append");
    let pos = std::fs::metadata(dir.path().join(file_name(1)))
        .expect("stat")
        .len();
    wal.append(&mut batch(&["b"], 2), |_| {}).expect("append");
    wal.sync_all().expect("sync");
    let path = dir.path().join(file_name(1));
    let mut bytes = std::fs::read(&path).expect("read");
    bytes[pos as usize + 12] ^= 1;
    std::fs::write(&path, bytes).expect("write");
    let (ops, cut) = replay_all(dir.path(), 0);
    assert_eq!(ops.len(), 1);
    assert!(cut > 0);
}

#[test]
fn rotation_and_deletion_of_old_generations() {
    let dir = tempfile::tempdir().expect("tempdir");
    let wal = Wal::create(dir.path(), 1, 1).expect("create");
    wal.append(&mut batch(&["a"], 2), |_| {}).expect("append");
    let mut swapped = false;
    let g = wal.rotate(|| swapped = true).expect("rotate");
    assert!(swapped);
    assert_eq!((g, wal.generation()), (2, 2));
    wal.append(&mut batch(&["b"], 2), |_| {}).expect("append");
    wal.sync_all().expect("sync");
    let (ops, _) = replay_all(dir.path(), 0);
    assert_eq!(ops.len(), 2, "both generations replay, in order");
    wal.delete_before(g).expect("delete");
    let (ops, _) = replay_all(dir.path(), 0);
    assert_eq!(ops.len(), 1);
    assert!(!dir.path().join(file_name(1)).exists());
}

#[test]
fn concurrent_writers_share_fsyncs_and_all_records_replay() {
    let dir = tempfile::tempdir().expect("tempdir");
    let wal = Arc::new(Wal::create(dir.path(), 1, 1).expect("create"));
    std::thread::scope(|s| {
        for t in 0..8 {
            let wal = Arc::clone(&wal);
            s.spawn(move || {
                for i in 0..50 {
                    let id = format!("t{t}-{i}");
                    let pos = wal.append(&mut batch(&[&id], 2), |_| {}).expect("append");
                    wal.sync_to(pos).expect("sync");
                }
            });
        }
    });
    let (ops, _) = replay_all(dir.path(), 0);
    assert_eq!(ops.len(), 400);
    let mut seqs: Vec<u64> = ops.iter().map(|(s, _)| *s).collect();
    seqs.dedup();
    assert_eq!(
        seqs,
        (1..=400).collect::<Vec<_>>(),
        "every record, in sequence order"
    );
}

#[test]
fn damage_to_an_older_generation_is_an_error_not_a_silent_loss() {
    let dir = tempfile::tempdir().expect("tempdir");
    let wal = Wal::create(dir.path(), 1, 1).expect("create");
    wal.append(&mut batch(&["a", "b"], 2), |_| {})
        .expect("append");
    wal.rotate(|| {}).expect("rotate");
    wal.append(&mut batch(&["c"], 2), |_| {}).expect("append");
    wal.sync_all().expect("sync");
    let old = dir.path().join(file_name(1));
    let mut bytes = std::fs::read(&old).expect("read");
    let n = bytes.len();
    bytes[n - 3] ^= 0x10;
    std::fs::write(&old, &bytes).expect("write");
    let err = replay(dir.path(), 2, 0, |_, _| {}).expect_err("older generation damaged");
    assert_eq!(err.kind(), barq_core::ErrorKind::DataCorruption);
    assert!(
        matches!(
            err.find_source::<WalError>(),
            Some(WalError::DamagedOlderGeneration { path, .. }) if *path == old
        ),
        "{err}"
    );
    assert_eq!(
        std::fs::read(&old).expect("read").len(),
        n,
        "nothing truncated"
    );
}

#[test]
fn an_unknown_wal_version_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let wal = Wal::create(dir.path(), 1, 1).expect("create");
    wal.append(&mut batch(&["a"], 2), |_| {}).expect("append");
    let path = dir.path().join(file_name(1));
    let mut bytes = std::fs::read(&path).expect("read");
    bytes[8] = 9;
    std::fs::write(&path, &bytes).expect("write");
    let err = replay(dir.path(), 2, 0, |_, _| {}).expect_err("version");
    assert!(
        matches!(
            err.find_source::<WalError>(),
            Some(WalError::UnsupportedVersion {
                found: 9,
                supported: 1,
                ..
            })
        ),
        "{err}"
    );
    assert_eq!(err.kind(), barq_core::ErrorKind::DataCorruption);
}

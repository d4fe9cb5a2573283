//! Crash test: a child process writes in `sync` durability from several threads; it is killed
//! with SIGKILL at a random moment, several times over; after each kill the database is reopened
//! and every acknowledged write must be there (a write that was in flight may or may not be).

use std::collections::{BTreeMap, HashMap};
use std::io::BufRead;
use std::process::{Command, Stdio};
use std::time::Duration;

use barq_storage::{Database, Options, SearchRequest};

const DIM: usize = 16;

fn vector(id: &str, ver: u32) -> Vec<f32> {
    let mut h: u64 = 0xcbf29ce484222325;
    for b in id.bytes() {
        h = (h ^ u64::from(b)).wrapping_mul(0x100000001b3);
    }
    (0..DIM)
        .map(|i| ((h >> (i * 4)) & 0xf) as f32 + ver as f32 * 100.0)
        .collect()
}

/// What an id may read back as: `Some(version)` or `None` (deleted / never written).
#[derive(Debug, Default)]
struct Expect {
    acked: Option<Option<u32>>,
    pending: Option<Option<u32>>,
}

/// One operation of a batch: the id and the version written (`None` = delete).
type Op = (String, Option<u32>);

fn parse_ops(ops: &str) -> Vec<Op> {
    ops.split(',')
        .map(|op| {
            let parts: Vec<&str> = op.split(':').collect();
            match parts.as_slice() {
                ["u", id, ver] => ((*id).to_owned(), Some(ver.parse().expect("version"))),
                ["d", id] => ((*id).to_owned(), None),
                other => panic!("bad op {other:?}"),
            }
        })
        .collect()
}

#[test]
fn sigkill_at_random_moments_loses_no_acknowledged_write() {
    let dir = tempfile::tempdir().expect("tempdir");
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_nanos() as u64;
    println!("crash test seed {seed}");
    let mut rng = seed | 1;
    let mut next = || {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng
    };
    let mut model: BTreeMap<String, Expect> = BTreeMap::new();
    let mut total_acks = 0;
    for round in 0..6 {
        let mut child = Command::new(env!("CARGO_BIN_EXE_barq-crash-writer"))
            .arg(dir.path())
            .arg(round.to_string())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn child");
        let stdout = child.stdout.take().expect("stdout");
        let reader = std::thread::spawn(move || {
            std::io::BufReader::new(stdout)
                .lines()
                .map_while(Result::ok)
                .collect::<Vec<String>>()
        });
        // Let it get going (open, replay), then kill at a random moment.
        std::thread::sleep(Duration::from_millis(400 + next() % 800));
        child.kill().expect("SIGKILL");
        let status = child.wait().expect("wait");
        assert!(!status.success(), "child was killed");
        let lines = reader.join().expect("reader");

        let mut begun: HashMap<(String, String), Vec<Op>> = HashMap::new();
        let mut acks = 0;
        for line in &lines {
            let mut it = line.splitn(4, ' ');
            match (it.next(), it.next(), it.next(), it.next()) {
                (Some("B"), Some(t), Some(b), Some(ops)) => {
                    let ops = parse_ops(ops);
                    for (id, v) in &ops {
                        model.entry(id.clone()).or_default().pending = Some(*v);
                    }
                    begun.insert((t.to_owned(), b.to_owned()), ops);
                }
                (Some("A"), Some(t), Some(b), None) => {
                    let ops = begun
                        .remove(&(t.to_owned(), b.to_owned()))
                        .expect("ack of a begun batch");
                    for (id, v) in ops {
                        let e = model.entry(id).or_default();
                        e.acked = Some(v);
                        e.pending = None;
                    }
                    acks += 1;
                }
                _ => panic!("unexpected child output {line:?}"),
            }
        }
        total_acks += acks;
        println!(
            "round {round}: {acks} batches acknowledged, {} in flight at the kill",
            begun.len()
        );

        let db = Database::open(dir.path(), Options::default()).expect("reopen after SIGKILL");
        if db.list_collections().is_empty() {
            // Killed before the child created its collection (a slow start on a busy machine):
            // then nothing can have been acknowledged.
            assert!(
                model.values().all(|e| e.acked.is_none()),
                "round {round}: acknowledged writes but no collection"
            );
            db.close().expect("close");
            continue;
        }
        let mut live = 0u64;
        for (id, e) in &model {
            let got = db.get("c", id).expect("get").map(|d| d.vector);
            let as_vec = |v: &Option<u32>| v.map(|ver| vector(id, ver));
            let acked = e.acked.as_ref().and_then(as_vec);
            let ok = got == acked || e.pending.as_ref().is_some_and(|p| got == as_vec(p));
            assert!(
                ok,
                "round {round}: {id}: got {got:?}, acknowledged {:?}, in flight {:?}",
                e.acked, e.pending
            );
            live += u64::from(got.is_some());
        }
        assert_eq!(
            db.count("c").expect("count"),
            live,
            "round {round}: count agrees with reads"
        );
        db.search("c", &SearchRequest::new(vec![0.0; DIM], 10))
            .expect("search reads every segment without corruption");
        db.compact("c").expect("compact");
        db.close().expect("close");
        // Settle what the reopen showed: in-flight writes are now either durable or gone.
        let db = Database::open(dir.path(), Options::default()).expect("reopen");
        for (id, e) in model.iter_mut() {
            if e.pending.is_some() {
                let got = db.get("c", id).expect("get").map(|d| d.vector);
                let pending_vec = e.pending.and_then(|p| p.map(|ver| vector(id, ver)));
                if got == pending_vec {
                    e.acked = e.pending;
                }
                e.pending = None;
            }
        }
        db.close().expect("close");
    }
    assert!(
        total_acks > 100,
        "the child made progress ({total_acks} acknowledged batches)"
    );
}

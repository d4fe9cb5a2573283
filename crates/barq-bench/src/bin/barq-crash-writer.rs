//! Child process of the crash test (`tests/crash.rs`): writes to a database in `sync`
//! durability from several threads until it is killed, printing each batch before it is sent
//! (`B thread batch ops`) and after it is acknowledged (`A thread batch`).
//!
//! Usage: `barq-crash-writer DIR SESSION`

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use barq_core::{CollectionConfig, Document, ErrorKind, Metric};
use barq_storage::{Database, Durability, Options};

const THREADS: usize = 4;
const DIM: usize = 16;

/// The vector written for version `ver` of `id` (the test recomputes it).
fn vector(id: &str, ver: u32) -> Vec<f32> {
    let mut h: u64 = 0xcbf29ce484222325;
    for b in id.bytes() {
        h = (h ^ u64::from(b)).wrapping_mul(0x100000001b3);
    }
    (0..DIM)
        .map(|i| ((h >> (i * 4)) & 0xf) as f32 + ver as f32 * 100.0)
        .collect()
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let (Some(dir), Some(session)) = (args.get(1), args.get(2)) else {
        eprintln!("usage: barq-crash-writer DIR SESSION");
        std::process::exit(2);
    };
    let options = Options {
        durability: Durability::Sync,
        memtable_max_bytes: 96 * 1024,
        compaction_check_interval: Duration::from_millis(50),
        compaction_min_segments: 3,
        ..Options::default()
    };
    let db = Arc::new(Database::open(dir, options).unwrap_or_else(|e| {
        eprintln!("open: {e}");
        std::process::exit(3)
    }));
    match db.create_collection(
        CollectionConfig::new("c", DIM as u32, Metric::L2).expect("valid config"),
    ) {
        Ok(()) => {}
        Err(e) if e.kind() == ErrorKind::Conflict => {}
        Err(e) => {
            eprintln!("create: {e}");
            std::process::exit(3);
        }
    }
    let out = Arc::new(Mutex::new(std::io::stdout()));
    let say = |out: &Mutex<std::io::Stdout>, line: String| {
        let mut o = out.lock().expect("stdout lock");
        writeln!(o, "{line}")
            .and_then(|()| o.flush())
            .expect("stdout");
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    std::thread::scope(|s| {
        for t in 0..THREADS {
            let (db, out, session) = (Arc::clone(&db), Arc::clone(&out), session.clone());
            s.spawn(move || {
                let mut acked: Vec<(String, u32)> = Vec::new();
                let mut next = 0u64;
                let mut batch = 0u64;
                while Instant::now() < deadline {
                    batch += 1;
                    let r = batch.wrapping_mul(2654435761) >> 7;
                    if r.is_multiple_of(7) && !acked.is_empty() {
                        let k = (r as usize / 7) % acked.len();
                        let (id, _) = acked.remove(k);
                        say(&out, format!("B {t} {batch} d:{id}"));
                        db.delete("c", &id).expect("delete");
                    } else {
                        let n = 1 + (r % 20) as usize;
                        let mut docs = Vec::with_capacity(n);
                        let mut ops = Vec::with_capacity(n);
                        if r.is_multiple_of(3) && !acked.is_empty() {
                            let k = (r as usize / 3) % acked.len();
                            acked[k].1 += 1;
                            let (id, ver) = acked[k].clone();
                            ops.push(format!("u:{id}:{ver}"));
                            docs.push(Document::new(id.clone(), vector(&id, ver)));
                        }
                        for _ in 0..n {
                            let id = format!("s{session}-t{t}-{next}");
                            next += 1;
                            ops.push(format!("u:{id}:0"));
                            docs.push(Document::new(id.clone(), vector(&id, 0)));
                            acked.push((id, 0));
                        }
                        say(&out, format!("B {t} {batch} {}", ops.join(",")));
                        db.upsert("c", &docs).expect("upsert");
                    }
                    say(&out, format!("A {t} {batch}"));
                    if t == 0 && batch.is_multiple_of(25) {
                        db.flush("c").expect("flush");
                    }
                }
            });
        }
    });
}

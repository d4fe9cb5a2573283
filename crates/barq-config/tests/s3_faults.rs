//! S3 faults against a real server: a private SeaweedFS (`barq_testkit::Weed`) started by this
//! test on free ports, so that stopping it does not disturb the shared test server other tests
//! use.
//!
//! Maintenance offloads several segments (one at a time, bandwidth-limited, multipart uploads);
//! the server is killed in the middle. While it is down, writes and hot reads keep working and
//! status shows the failures. After it is back, maintenance finishes the offload; every
//! acknowledged write is readable; no segment is in two states; and after orphan collection
//! (clock advanced past the grace period) the bucket holds exactly the objects the manifest names.
//!
//! Needs the installed `weed` binary and the `AWS_*` test credentials
//! (`scripts/test-services.sh start`, `eval "$(scripts/test-services.sh env)"`); without them the
//! test fails under `CI=true` and is skipped, with a printed reason, elsewhere.

mod common;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use barq_core::{CollectionConfig, Document, Metric};
use barq_storage::{Database, Durability, Options, StorageTier};
use barq_testkit::ManualClock;
use barq_testkit::{Weed, weed_binary};
use common::{COLLECTION, list, local_segment_files, manifest_keys};
use object_store::ObjectStore;

const BUCKET: &str = "barq-faults";
const DIM: usize = 256;
const SEGMENTS: usize = 6;
const DOCS_PER_SEGMENT: usize = 500; // 512 KiB of vectors per segment

fn vector(n: usize) -> Vec<f32> {
    (0..DIM).map(|d| ((n * 13 + d * 7) % 89) as f32).collect()
}

#[test]
fn s3_goes_away_in_the_middle_of_an_offload() {
    let Some(bin) = weed_binary() else {
        return;
    };
    let Some(creds) = common::require(
        "S3 (SeaweedFS)",
        &["AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"],
    ) else {
        return;
    };
    let started = Instant::now();
    let dir = tempfile::tempdir().expect("tempdir");
    let mut weed = Weed::new(bin, dir.path().join("weed"), BUCKET, &creds[0], &creds[1]);
    weed.start();
    let endpoint = weed.endpoint();
    let independent: Arc<dyn ObjectStore> = Arc::new(
        object_store::aws::AmazonS3Builder::from_env()
            .with_endpoint(&endpoint)
            .with_allow_http(true)
            .with_region("us-east-1")
            .with_bucket_name(BUCKET)
            .with_retry(object_store::RetryConfig {
                max_retries: 0,
                ..Default::default()
            })
            .build()
            .expect("independent client"),
    );
    weed.wait_ready(&independent);

    // Settings as a deployment would write them; short client timeouts so an outage is noticed
    // quickly (the file-only settings are set on the loaded document).
    let prefix = common::unique_prefix("faults");
    let mut settings = barq_config::load_from(
        None,
        &common::env(&[
            ("BARQ_STORAGE_TYPE", "s3"),
            ("BARQ_S3_BUCKET", BUCKET),
            ("BARQ_S3_ENDPOINT", &endpoint),
            ("BARQ_S3_ALLOW_HTTP", "true"),
            ("BARQ_S3_REGION", "us-east-1"),
            ("BARQ_S3_PREFIX", &prefix),
            ("BARQ_TIER_MOVE_TO_COLD_AFTER", "1h"),
            ("BARQ_TIER_MIN_RESIDENCY", "0s"),
            ("BARQ_TIER_MAINTENANCE_INTERVAL", "0s"),
            ("BARQ_TIER_MOVE_CONCURRENCY", "1"),
            ("BARQ_TIER_MOVE_BANDWIDTH", "2MiB"),
            ("BARQ_TIER_ORPHAN_GRACE", "1h"),
        ]),
    )
    .expect("settings");
    settings.storage.max_retries = 1;
    settings.storage.retry_timeout = "2s".parse().expect("duration");
    settings.storage.connect_timeout = "1s".parse().expect("duration");
    settings.storage.request_timeout = "10s".parse().expect("duration");
    let data = dir.path().join("data");
    let spec = barq_config::build_cold_store(&settings.storage, &data)
        .expect("build")
        .expect("s3");
    let real_now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_millis() as u64;
    let clock = Arc::new(ManualClock::new(real_now));
    let mut tiering = settings.tiering_options();
    tiering.multipart_part_bytes = 128 << 10; // every upload is a multipart upload
    tiering.upload_on_seal = Some(false); // the offloads under test are the only uploads
    let options = Options {
        durability: Durability::Sync,
        background_compaction: false,
        tiering,
        ..Options::default()
    };
    let builder = Database::builder(&data)
        .options(options)
        .cold_store(spec)
        .clock(clock.clone());
    let db = builder.clone().open().expect("open (probe passes)");
    db.create_collection(CollectionConfig::new(COLLECTION, DIM as u32, Metric::L2).expect("cfg"))
        .expect("create");
    let mut acknowledged: Vec<(String, Vec<f32>)> = Vec::new();
    for s in 0..SEGMENTS {
        let docs: Vec<Document> = (0..DOCS_PER_SEGMENT)
            .map(|i| s * DOCS_PER_SEGMENT + i)
            .map(|n| Document::new(format!("d{n}"), vector(n)))
            .collect();
        db.upsert(COLLECTION, &docs).expect("upsert");
        db.flush(COLLECTION).expect("flush");
        acknowledged.extend(docs.into_iter().map(|d| (d.id, d.vector)));
    }
    assert_eq!(local_segment_files(&data).len(), SEGMENTS);

    // Offload all of them; kill the server once the first move is done.
    clock.advance(Duration::from_secs(2 * 3600));
    let report = std::thread::scope(|s| {
        let maintenance = s.spawn(|| db.tiering().run_maintenance().expect("maintenance"));
        let deadline = Instant::now() + Duration::from_secs(120);
        while db.tiering().status().expect("status").counters.moves_done == 0 {
            assert!(
                !maintenance.is_finished(),
                "maintenance ended before any move was done"
            );
            assert!(Instant::now() < deadline, "no move done in 120 s");
            std::thread::sleep(Duration::from_millis(20));
        }
        weed.kill();
        maintenance.join().expect("maintenance thread")
    });
    println!(
        "{:?}: pass during the outage: planned {}, done {}, failed {}, gc error {:?}",
        started.elapsed(),
        report.planned,
        report.moves_done.len(),
        report.moves_failed.len(),
        report.gc_error
    );
    assert_eq!(report.planned, SEGMENTS);
    assert!(!report.moves_done.is_empty(), "{report:?}");
    assert!(
        !report.moves_failed.is_empty(),
        "the server died before the offload was over: {report:?}"
    );
    assert!(
        report.gc_error.is_some(),
        "orphan collection cannot list: {report:?}"
    );

    // While it is down: writes, flushes and hot reads work; status shows the failures.
    let fresh: Vec<Document> = (0..500)
        .map(|i| Document::new(format!("new{i}"), vector(100_000 + i)))
        .collect();
    db.upsert(COLLECTION, &fresh[..250])
        .expect("write while S3 is down");
    db.flush(COLLECTION).expect("flush while S3 is down");
    db.upsert(COLLECTION, &fresh[250..])
        .expect("write while S3 is down");
    db.delete(COLLECTION, "d0")
        .expect("delete while S3 is down");
    acknowledged.extend(fresh.iter().map(|d| (d.id.clone(), d.vector.clone())));
    acknowledged.retain(|(id, _)| id != "d0");
    for id in ["new0", "new249", "new250", "new499"] {
        let got = db.get(COLLECTION, id).expect("hot read while S3 is down");
        assert!(got.is_some(), "{id}");
    }
    let status = db.tiering().status().expect("status");
    assert!(
        !status.last_errors.is_empty() && status.counters.remote_failures > 0,
        "status shows the outage: {status:?}"
    );
    let hot = status
        .tiers
        .get(&StorageTier::Hot)
        .map_or(0, |t| t.segments);
    assert!(hot >= 2, "segments not moved stay Hot: {:?}", status.tiers);

    // The server comes back (same data, same ports); maintenance finishes the offload.
    weed.start();
    weed.wait_ready(&independent);
    clock.advance(Duration::from_secs(2 * 3600));
    let mut passes = 0;
    loop {
        let r = db.tiering().run_maintenance().expect("maintenance");
        assert!(r.moves_failed.is_empty(), "after recovery: {r:?}");
        passes += 1;
        if r.planned == 0 || passes == 3 {
            break;
        }
    }
    let segments = db.tiering().segments(COLLECTION).expect("segments");
    assert_eq!(segments.len(), SEGMENTS + 1);
    assert!(
        segments.iter().all(|s| s.tier == StorageTier::Cold),
        "every segment offloaded: {segments:?}"
    );
    assert!(
        db.tiering()
            .status()
            .expect("status")
            .last_errors
            .is_empty()
    );

    let check = |db: &Database, when: &str, step: usize| {
        for (id, v) in acknowledged.iter().step_by(step) {
            let got = db
                .get(COLLECTION, id)
                .expect("get")
                .unwrap_or_else(|| panic!("{id} lost {when}"));
            assert_eq!(&got.vector, v, "{id} {when}");
        }
        assert!(db.get(COLLECTION, "d0").expect("get").is_none(), "{when}");
        assert_eq!(
            db.count(COLLECTION).expect("count"),
            acknowledged.len() as u64,
            "{when}"
        );
    };
    println!("{:?}: offload finished", started.elapsed());
    check(&db, "after recovery", 1);
    common::assert_one_state_each(&db, &data, &independent, &prefix);

    // Orphan collection past the grace period: the bucket holds exactly the manifest's objects.
    db.tiering().collect_orphans().expect("gc");
    clock.advance(Duration::from_secs(3600 + 60));
    let deleted = db.tiering().collect_orphans().expect("gc");
    println!("orphans deleted after recovery: {deleted}");
    let listed: BTreeSet<String> = list(&independent, &prefix).into_iter().collect();
    assert_eq!(
        listed,
        manifest_keys(&db),
        "no orphan left, nothing referenced missing"
    );
    db.close().expect("close");

    let db = builder.open().expect("reopen");
    check(&db, "after reopening (every 7th)", 7);
    println!("{:?} in all", started.elapsed());
    db.close().expect("close");
}

//! [`Weed`]: a private SeaweedFS (`weed mini`, the binary `scripts/test-services.sh` installs
//! under `.test-services/`) on free ports, in its own process group, so that a test can stop
//! and start its object store without disturbing the shared test server.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use object_store::ObjectStore;

/// A `weed mini` of our own, in its own process group; killed (the whole group) on drop.
/// Stopping and starting it again keeps its data (the same directory and ports).
#[derive(Debug)]
pub struct Weed {
    bin: PathBuf,
    dir: PathBuf,
    bucket: String,
    ports: Vec<u16>,
    child: Option<Child>,
}

/// `n` ports free on 127.0.0.1 (held until all are picked, so they differ); with `twin`, port
/// + twin is free as well.
pub fn free_ports(n: usize, twin: u16) -> Vec<u16> {
    let mut held = Vec::new();
    let mut ports = Vec::new();
    while ports.len() < n {
        let l = TcpListener::bind("127.0.0.1:0").expect("bind");
        let p = l.local_addr().expect("addr").port();
        held.push(l);
        if twin == 0 {
            ports.push(p);
        } else if let Some(q) = p.checked_add(twin)
            && let Ok(t) = TcpListener::bind(("127.0.0.1", q))
        {
            held.push(t);
            ports.push(p);
        }
    }
    ports
}

impl Weed {
    /// A server (not started yet) keeping its data in `dir`, serving `bucket`, accepting the
    /// credentials `access`/`secret`.
    pub fn new(bin: PathBuf, dir: PathBuf, bucket: &str, access: &str, secret: &str) -> Weed {
        std::fs::create_dir_all(dir.join("data")).expect("mkdir");
        std::fs::write(
            dir.join("s3.json"),
            format!(
                r#"{{"identities":[{{"name":"faults","credentials":[{{"accessKey":"{access}","secretKey":"{secret}"}}],"actions":["Admin","Read","Write","List","Tagging"]}}]}}"#
            ),
        )
        .expect("s3.json");
        // weed's worker dials the admin server at admin.port + 10000 (see test-services.sh).
        let admin = free_ports(1, 10000)[0];
        let mut ports = free_ports(10, 0);
        ports.push(admin);
        Weed {
            bin,
            dir,
            bucket: bucket.to_owned(),
            ports,
            child: None,
        }
    }

    /// `http://127.0.0.1:PORT` of its S3 API.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.ports[0])
    }

    /// Start it (again, after [`Weed::kill`]).
    pub fn start(&mut self) {
        use std::os::unix::process::CommandExt;
        let [s3, s3g, m, mg, v, vg, f, fg, ice, lance, adm] = self.ports[..] else {
            unreachable!("11 ports")
        };
        let d = |p: &str| self.dir.join(p).display().to_string();
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("weed.log"))
            .expect("log");
        let child = Command::new(&self.bin)
            .args([
                "mini".to_owned(),
                format!("-dir={}", d("data")),
                "-ip=127.0.0.1".into(),
                "-ip.bind=127.0.0.1".into(),
                format!("-s3.port={s3}"),
                format!("-s3.port.grpc={s3g}"),
                format!("-s3.port.iceberg={ice}"),
                format!("-s3.port.lance={lance}"),
                format!("-master.port={m}"),
                format!("-master.port.grpc={mg}"),
                format!("-volume.port={v}"),
                format!("-volume.port.grpc={vg}"),
                format!("-filer.port={f}"),
                format!("-filer.port.grpc={fg}"),
                format!("-filer.localSocket={}", d("filer.sock")),
                format!("-s3.localSocket={}", d("s3.sock")),
                format!("-s3.config={}", d("s3.json")),
                format!("-bucket={}", self.bucket),
                format!("-admin.port={adm}"),
                "-admin.ui=false".into(),
                "-webdav=false".into(),
                "-master.telemetry=false".into(),
            ])
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .process_group(0)
            .spawn()
            .expect("start weed mini");
        self.child = Some(child);
    }

    /// Wait until the bucket answers a listing (60 s at most).
    /// Wait until the bucket answers a listing of `client` (60 s at most).
    pub fn wait_ready(&self, client: &Arc<dyn ObjectStore>) {
        let deadline = Instant::now() + Duration::from_secs(60);
        let rt = crate::runtime();
        loop {
            let probe = rt.block_on(client.list_with_delimiter(None));
            match probe {
                Ok(_) => return,
                Err(e) if Instant::now() > deadline => panic!(
                    "private SeaweedFS not ready in 60 s: {e} (log: {})",
                    self.dir.join("weed.log").display()
                ),
                Err(_) => std::thread::sleep(Duration::from_millis(300)),
            }
        }
    }

    /// SIGKILL the process group: the server goes away mid-request, like a crash.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let group = format!("-{}", child.id());
            let _ = Command::new("kill").args(["-KILL", "--", &group]).status();
            let _ = child.wait();
        }
    }
}

impl Drop for Weed {
    fn drop(&mut self) {
        self.kill();
        // weed leaves gRPC unix sockets in /tmp named by port.
        if let Ok(rd) = std::fs::read_dir("/tmp") {
            for e in rd.flatten() {
                let name = e.file_name().to_string_lossy().into_owned();
                if name.starts_with("seaweedfs-")
                    && self
                        .ports
                        .iter()
                        .any(|p| name.ends_with(&format!("-{p}.sock")))
                {
                    let _ = std::fs::remove_file(e.path());
                }
            }
        }
    }
}

/// The `weed` binary `scripts/test-services.sh` installs, or `None` with a printed reason (a
/// panic under `CI=true`).
pub fn weed_binary() -> Option<PathBuf> {
    let bin = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../.test-services/venv/bin/weed");
    if bin.exists() {
        return Some(bin);
    }
    if crate::in_ci() {
        panic!(
            "{} missing: CI must install the test servers (scripts/test-services.sh start)",
            bin.display()
        );
    }
    eprintln!(
        "skipping: no SeaweedFS binary at {} (run scripts/test-services.sh start)",
        bin.display()
    );
    None
}

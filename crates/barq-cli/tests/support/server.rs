//! A real `barq serve` process on a free loopback port, for the end-to-end tests: started with
//! `--listen 127.0.0.1:0`, its address read from the "barq serve ready" log line; killed when
//! dropped.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex, mpsc};
use std::time::Duration;

use serde_json::Value;

/// A running server.
pub struct Server {
    child: Child,
    /// `http://127.0.0.1:PORT`.
    pub url: String,
    log: Arc<Mutex<String>>,
    data_dir: PathBuf,
    env: Vec<(String, String)>,
    args: Vec<String>,
}

impl Server {
    /// Start `barq --data-dir DATA serve --listen 127.0.0.1:0 ARGS` with `env` added to a
    /// clean `BARQ_*` environment; wait until it is ready.
    pub fn start(data_dir: &Path, env: &[(&str, &str)], args: &[&str]) -> Server {
        let env: Vec<(String, String)> = env
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        let args: Vec<String> = args.iter().map(|a| (*a).to_owned()).collect();
        Self::spawn(data_dir.to_owned(), env, args)
    }

    fn spawn(data_dir: PathBuf, env: Vec<(String, String)>, args: Vec<String>) -> Server {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_barq"));
        for (k, _) in std::env::vars() {
            if k.starts_with("BARQ_") {
                cmd.env_remove(k);
            }
        }
        cmd.arg("--data-dir")
            .arg(&data_dir)
            .args(["serve", "--listen", "127.0.0.1:0"])
            .args(&args)
            .env("RUST_LOG", "info")
            .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().expect("start barq serve");
        let stderr = child.stderr.take().expect("stderr");
        let log = Arc::new(Mutex::new(String::new()));
        let (tx, rx) = mpsc::channel();
        let sink = Arc::clone(&log);
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Some(rest) = line
                    .contains("barq serve ready")
                    .then(|| line.split("listen=").nth(1))
                    .flatten()
                {
                    let url = rest.split_whitespace().next().unwrap_or_default();
                    let _ = tx.send(url.to_owned());
                }
                sink.lock().expect("log").push_str(&(line + "\n"));
            }
        });
        let url = match rx.recv_timeout(Duration::from_secs(60)) {
            Ok(url) => url,
            Err(_) => {
                let _ = child.kill();
                panic!(
                    "barq serve did not become ready; its log:\n{}",
                    log.lock().expect("log")
                );
            }
        };
        Server {
            child,
            url,
            log,
            data_dir,
            env,
            args,
        }
    }

    /// Everything the server logged so far.
    pub fn log(&self) -> String {
        self.log.lock().expect("log").clone()
    }

    /// SIGTERM, and wait for the exit.
    pub fn terminate(&mut self) -> ExitStatus {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .expect("kill -TERM");
        assert!(status.success());
        self.child.wait().expect("wait")
    }

    /// SIGKILL, and wait for the exit.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// A new process on the same data directory, with the same settings.
    pub fn restart(&self) -> Server {
        Self::spawn(self.data_dir.clone(), self.env.clone(), self.args.clone())
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A blocking JSON client.
pub struct Client {
    http: reqwest::blocking::Client,
    base: String,
    key: Option<String>,
}

impl Client {
    pub fn new(server: &Server, key: Option<&str>) -> Client {
        Client {
            http: reqwest::blocking::Client::builder()
                .timeout(Duration::from_secs(120))
                .build()
                .expect("client"),
            base: server.url.clone(),
            key: key.map(str::to_owned),
        }
    }

    /// `method path` with an optional raw body; returns the status and the JSON body.
    pub fn call(&self, method: &str, path: &str, body: Option<&str>) -> (u16, Value) {
        let method = reqwest::Method::from_bytes(method.as_bytes()).expect("method");
        let mut req = self.http.request(method, format!("{}{path}", self.base));
        if let Some(k) = &self.key {
            req = req.bearer_auth(k);
        }
        if let Some(b) = body {
            req = req
                .header("content-type", "application/json")
                .body(b.to_owned());
        }
        let resp = req.send().expect("request");
        let status = resp.status().as_u16();
        let text = resp.text().expect("body");
        let v = serde_json::from_str(&text).unwrap_or(Value::String(text));
        (status, v)
    }

    pub fn get(&self, path: &str) -> (u16, Value) {
        self.call("GET", path, None)
    }

    pub fn post(&self, path: &str, body: &str) -> (u16, Value) {
        self.call("POST", path, Some(body))
    }

    /// `post`, asserting 2xx.
    pub fn ok(&self, path: &str, body: &str) -> Value {
        let (s, v) = self.post(path, body);
        assert!((200..300).contains(&s), "POST {path}: {s} {v}");
        v
    }

    /// Poll an operation until it ends; returns its final state.
    pub fn wait_operation(&self, id: &str) -> Value {
        for _ in 0..3000 {
            let (s, v) = self.get(&format!("/v1/operations/{id}"));
            assert_eq!(s, 200, "{v}");
            if v["state"] != "running" {
                return v;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("operation {id} did not finish");
    }
}

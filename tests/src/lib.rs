//! Harness for black-box tests: starts a real `warren` process on an ephemeral port with
//! its own data directory, and stops it (by PID) when dropped. [`client`] and [`raw`] hold
//! the helpers the test files share (lapin steps, and hand-written AMQP frames).
#![allow(clippy::unwrap_used, clippy::expect_used)]

pub mod certs;
pub mod client;
pub mod raw;

pub use client::*;
pub use raw::*;

use std::{
    io::{BufRead, BufReader},
    path::PathBuf,
    process::{Child, Command, Stdio},
    sync::{
        atomic::{AtomicU32, Ordering},
        mpsc, Mutex, OnceLock,
    },
    time::Duration,
};

/// A running broker process.
pub struct Broker {
    child: Child,
    pub port: u16,
    /// Management HTTP API port (ephemeral).
    pub http_port: u16,
    /// Prometheus metrics port (ephemeral).
    pub metrics_port: u16,
    data_dir: PathBuf,
    /// Whether dropping this broker removes its data directory (not when a restarted
    /// broker took it over).
    owns_data: bool,
    /// Extra command-line arguments, kept for restarts.
    args: Vec<String>,
    /// Log lines the broker printed (stdout and stderr), collected in the background.
    log: std::sync::Arc<Mutex<Vec<String>>>,
}

static BUILD: OnceLock<PathBuf> = OnceLock::new();
static SEQ: AtomicU32 = AtomicU32::new(0);

/// Path of the warren binary: `$WARREN_BIN`, or the workspace's debug build (built
/// once per test process if missing or stale).
pub fn warren_bin() -> PathBuf {
    BUILD
        .get_or_init(|| {
            if let Ok(bin) = std::env::var("WARREN_BIN") {
                return PathBuf::from(bin);
            }
            let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
            let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
            let status = Command::new(cargo)
                .args(["build", "-q", "-p", "warren"])
                .current_dir(&root)
                .status()
                .expect("run cargo build");
            assert!(status.success(), "cargo build -p warren failed");
            let target = std::env::var("CARGO_TARGET_DIR")
                .map(PathBuf::from)
                .unwrap_or_else(|_| root.join("target"));
            target.join("debug").join("warren")
        })
        .clone()
}

/// The `RABBITMQ_*` variables warren reads; a test's broker starts without them (and
/// without /etc/rabbitmq's files) unless the test sets them.
pub const RABBITMQ_ENV_VARS: [&str; 13] = [
    "RABBITMQ_CONFIG_FILE",
    "RABBITMQ_CONFIG_FILES",
    "RABBITMQ_ENABLED_PLUGINS_FILE",
    "RABBITMQ_ENABLED_PLUGINS",
    "RABBITMQ_DEFAULT_USER",
    "RABBITMQ_DEFAULT_PASS",
    "RABBITMQ_DEFAULT_VHOST",
    "RABBITMQ_NODE_PORT",
    "RABBITMQ_NODE_IP_ADDRESS",
    "RABBITMQ_MNESIA_BASE",
    "RABBITMQ_MNESIA_DIR",
    "RABBITMQ_DEFINITIONS_FILE",
    "RABBITMQ_VM_MEMORY_HIGH_WATERMARK",
];

/// Keeps a broker started by a test from reading the machine's RabbitMQ configuration
/// (`/etc/rabbitmq/rabbitmq.conf` exists where rabbitmq-server is installed) or the
/// caller's `RABBITMQ_*` variables; the test's own variables are set after this.
pub fn isolate_from_rabbitmq_config(cmd: &mut Command) {
    cmd.env("WARREN_RABBITMQ_ETC", "off");
    for var in RABBITMQ_ENV_VARS {
        cmd.env_remove(var);
    }
}

impl Broker {
    /// Starts warren with default settings.
    pub fn start() -> Broker {
        Self::start_with(&[], &[])
    }

    /// Starts warren with extra command-line arguments and environment variables.
    pub fn start_with(args: &[&str], env: &[(&str, &str)]) -> Broker {
        let data_dir = std::env::temp_dir().join(format!(
            "warren-test-{}-{}",
            std::process::id(),
            SEQ.fetch_add(1, Ordering::Relaxed)
        ));
        Self::start_in(data_dir, args, env)
    }

    /// Stops this broker (SIGKILL when `kill`, else SIGTERM) and starts a new one on the
    /// same data directory, as after a crash or a restart.
    pub fn restart(self, kill: bool) -> Broker {
        self.restart_with(kill, |_| {})
    }

    /// [`Broker::restart`], running `tamper` on the data directory while no broker runs
    /// (to damage store files, say).
    pub fn restart_with(mut self, kill: bool, tamper: impl FnOnce(&std::path::Path)) -> Broker {
        if kill {
            let _ = self.child.kill();
            let _ = self.child.wait();
        } else {
            self.terminate();
        }
        self.owns_data = false;
        tamper(&self.data_dir);
        let args: Vec<&str> = self.args.iter().map(String::as_str).collect();
        Self::start_in(self.data_dir.clone(), &args, &[])
    }

    /// Starts warren with only the given arguments and variables (no `--listen`,
    /// `--http-listen`, `--prometheus-listen`; no `--data-dir` when `data_dir` is
    /// `None`, for a test whose variables choose it): for tests of configuration files
    /// and variables, which flags would override. `data_dir` is removed on drop.
    pub fn start_configured(
        data_dir: PathBuf,
        pass_data_dir: bool,
        args: &[&str],
        env: &[(&str, &str)],
    ) -> Broker {
        let mut cmd = Command::new(warren_bin());
        if pass_data_dir {
            cmd.arg("--data-dir").arg(&data_dir);
        }
        cmd.args(args);
        Self::spawn(cmd, data_dir, args, env)
    }

    fn start_in(data_dir: PathBuf, args: &[&str], env: &[(&str, &str)]) -> Broker {
        let mut cmd = Command::new(warren_bin());
        cmd.arg("--listen")
            .arg("127.0.0.1:0")
            .arg("--data-dir")
            .arg(&data_dir)
            .args(args);
        // Management and metrics on ephemeral ports unless the test chose.
        for flag in ["--http-listen", "--prometheus-listen"] {
            if !args.contains(&flag) {
                cmd.arg(flag).arg("127.0.0.1:0");
            }
        }
        Self::spawn(cmd, data_dir, args, env)
    }

    fn spawn(mut cmd: Command, data_dir: PathBuf, args: &[&str], env: &[(&str, &str)]) -> Broker {
        cmd.env("NO_COLOR", "1")
            .env("WARREN_LOG", "info")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        isolate_from_rabbitmq_config(&mut cmd);
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("spawn warren");
        let log = std::sync::Arc::new(Mutex::new(Vec::new()));
        let (tx, rx) = mpsc::channel::<u16>();
        let stdout = child.stdout.take().expect("stdout");
        let stderr = child.stderr.take().expect("stderr");
        for stream in [
            Box::new(stdout) as Box<dyn std::io::Read + Send>,
            Box::new(stderr),
        ] {
            let log = log.clone();
            let tx = tx.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(stream).lines().map_while(Result::ok) {
                    if let Some(port) = line
                        .split("listening for AMQP on ")
                        .nth(1)
                        .and_then(|addr| addr.trim().rsplit(':').next())
                        .and_then(|p| p.parse::<u16>().ok())
                    {
                        let _ = tx.send(port);
                    }
                    // Without a plaintext listener (TLS only) the readiness line is
                    // the first word: port 0.
                    if line.contains("Server startup complete") {
                        let _ = tx.send(0);
                    }
                    log.lock().unwrap().push(line);
                }
            });
        }
        let port = match rx.recv_timeout(Duration::from_secs(30)) {
            Ok(port) => port,
            Err(_) => {
                let _ = child.kill();
                panic!("warren did not start: {:?}", log.lock().unwrap());
            }
        };
        // Wait for the readiness line too.
        for _ in 0..300 {
            if log
                .lock()
                .unwrap()
                .iter()
                .any(|l| l.contains("Server startup complete"))
            {
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        // The HTTP listeners log their bound ports before the AMQP line.
        let listen_port = |what: &str| {
            log.lock()
                .unwrap()
                .iter()
                .find_map(|l| {
                    l.split(&format!("listening for {what} on "))
                        .nth(1)
                        .and_then(|addr| addr.trim().rsplit(':').next())
                        .and_then(|p| p.parse::<u16>().ok())
                })
                .unwrap_or(0)
        };
        let http_port = listen_port("HTTP");
        let metrics_port = listen_port("Prometheus");
        Broker {
            child,
            port,
            http_port,
            metrics_port,
            data_dir,
            owns_data: true,
            args: args.iter().map(|a| a.to_string()).collect(),
            log,
        }
    }

    /// Waits until the broker's message store has written and synced everything the
    /// broker took in so far (`POST /api/warren/sync`): what a test checks before a
    /// SIGKILL instead of sleeping and hoping the journal writer had its turn.
    pub fn sync_store(&self) {
        let (status, body) = http_request(self.http_port, "POST", "/api/warren/sync", None);
        assert_eq!(status, 204, "POST /api/warren/sync: {body}");
    }

    pub fn amqp_url(&self) -> String {
        format!("amqp://guest:guest@127.0.0.1:{}/%2f", self.port)
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The port a `listening for {what} on ADDR` log line names (`AMQPS`, `HTTPS`), or 0.
    pub fn listen_port(&self, what: &str) -> u16 {
        self.log()
            .iter()
            .find_map(|l| {
                l.split(&format!("listening for {what} on "))
                    .nth(1)
                    .and_then(|addr| addr.trim().rsplit(':').next())
                    .and_then(|p| p.parse::<u16>().ok())
            })
            .unwrap_or(0)
    }

    /// The broker's data directory.
    pub fn data_dir(&self) -> &std::path::Path {
        &self.data_dir
    }

    /// Everything the broker logged so far.
    pub fn log(&self) -> Vec<String> {
        self.log.lock().unwrap().clone()
    }

    /// Sends SIGTERM and waits for the process to exit; returns whether it exited 0.
    pub fn terminate(&mut self) -> bool {
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status();
        for _ in 0..1000 {
            if let Ok(Some(status)) = self.child.try_wait() {
                return status.success();
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        let _ = self.child.kill();
        false
    }
}

/// Runs warren (serving) with only these arguments and variables, expecting it to stop
/// by itself (a refused configuration); its exit code and everything it printed.
pub fn run_to_exit(args: &[&str], env: &[(&str, &str)]) -> (Option<i32>, String) {
    let mut cmd = Command::new(warren_bin());
    cmd.args(args)
        .env("NO_COLOR", "1")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    isolate_from_rabbitmq_config(&mut cmd);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().expect("spawn warren");
    for _ in 0..3000 {
        if let Ok(Some(_)) = child.try_wait() {
            let out = child.wait_with_output().expect("warren's output");
            let text = String::from_utf8_lossy(&out.stdout).to_string()
                + &String::from_utf8_lossy(&out.stderr);
            return (out.status.code(), text);
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let _ = child.kill();
    let out = child.wait_with_output().expect("warren's output");
    panic!(
        "warren did not stop: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

impl Drop for Broker {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        if self.owns_data {
            let _ = std::fs::remove_dir_all(&self.data_dir);
        }
    }
}

/// GET on the management API as guest; the JSON body.
pub fn api(port: u16, path: &str) -> serde_json::Value {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect HTTP");
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: localhost\r\nAuthorization: Basic Z3Vlc3Q6Z3Vlc3Q=\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut raw = String::new();
    s.read_to_string(&mut raw).unwrap();
    let body = raw.split_once("\r\n\r\n").map(|(_, b)| b).unwrap_or("");
    serde_json::from_str(body).unwrap_or_else(|e| panic!("{path}: {e}: {raw}"))
}

/// One HTTP/1.1 request to the management API as guest (`body` sent as JSON when given);
/// the status code and the body.
pub fn http_request(port: u16, method: &str, path: &str, body: Option<&str>) -> (u16, String) {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect HTTP");
    let body = body.unwrap_or("");
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: localhost\r\nAuthorization: Basic Z3Vlc3Q6Z3Vlc3Q=\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .expect("write HTTP request");
    let mut raw = String::new();
    s.read_to_string(&mut raw).expect("read HTTP response");
    let status = raw
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("no status line in {raw:?}"));
    let body = raw
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (status, body)
}

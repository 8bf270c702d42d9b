//! warren inside your Rust tests.
//!
//! [`Broker::start`] runs a warren broker in the test's own tokio runtime on an ephemeral
//! port of 127.0.0.1 (and its management API on another), built from source with your
//! tests: no binary to download, no Docker, no Erlang. Messages stay in memory.
//!
//! ```no_run
//! # async fn demo() -> Result<(), warren_testkit::Error> {
//! let broker = warren_testkit::Broker::start().await?;
//! let vhost = broker.vhost().await?; // a fresh vhost for this test, deleted on drop
//! let url = vhost.amqp_url(); // amqp://guest:guest@127.0.0.1:PORT/NAME for lapin (amqprs:
//!                             // port() and name(), see examples/amqprs_ttl.rs)
//! // ... publish to a queue with x-message-ttl = 30000 ...
//! broker.advance(std::time::Duration::from_secs(30))?; // TTLs ran out, dead letters routed
//! # Ok(()) }
//! ```
//!
//! The clock is warren's test clock (`--test-clock`): message TTLs, per-message
//! expiration, `x-expires` and `x-death` times follow it; heartbeats and socket timeouts
//! keep real time. [`Broker::advance`] returns once every expiry it made due has run.

use std::{
    net::SocketAddr,
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc,
    },
    time::Duration,
};

use tokio::{net::TcpListener, task::JoinHandle};
use warren_server::{auth::Permission, util::clock::ClockState, ServerConfig, Shutdown};

pub use warren_server::Broker as Core;

/// Why a broker could not start or an operation failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot listen on 127.0.0.1: {0}")]
    Listen(#[from] std::io::Error),
    #[error("broker refused: {0}")]
    Broker(String),
    #[error(transparent)]
    Clock(#[from] warren_server::util::clock::NotTestClock),
}

/// How to start a broker; [`Broker::start`] uses the defaults.
#[derive(Debug, Clone)]
pub struct Options {
    /// Test clock on (the default): TTLs follow [`Broker::advance`].
    pub test_clock: bool,
    /// Serve the management API on an ephemeral port too (the default).
    pub http: bool,
    pub user: String,
    pub password: String,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            test_clock: true,
            http: true,
            user: "guest".into(),
            password: "guest".into(),
        }
    }
}

/// A warren broker running in this process; stopped when dropped.
pub struct Broker {
    core: Arc<Core>,
    addr: SocketAddr,
    http_addr: Option<SocketAddr>,
    options: Options,
    shutdown: Shutdown,
    tasks: Vec<JoinHandle<()>>,
}

static VHOSTS: AtomicU64 = AtomicU64::new(0);

impl Broker {
    /// Starts a broker with the default [`Options`] (test clock on, management API on).
    pub async fn start() -> Result<Broker, Error> {
        Self::start_with(Options::default()).await
    }

    pub async fn start_with(options: Options) -> Result<Broker, Error> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let config = ServerConfig {
            listen: addr,
            // Nothing is written there: no metadata log or message store is opened, so
            // durable queues and persistent messages live in memory for the test.
            data_dir: std::env::temp_dir().join("warren-testkit-unused"),
            default_user: options.user.clone(),
            default_pass: options.password.clone(),
            // Tests connect from loopback anyway; a custom user must work too.
            loopback_users: Vec::new(),
            test_clock: options.test_clock,
            ..ServerConfig::default()
        };
        let core = Core::new(config);
        core.admin
            .amqp_port
            .store(addr.port(), std::sync::atomic::Ordering::Relaxed);
        let shutdown = Shutdown::new();
        let mut tasks = Vec::new();
        let mut http_addr = None;
        if options.http {
            let http = TcpListener::bind("127.0.0.1:0").await?;
            http_addr = Some(http.local_addr()?);
            tasks.push(tokio::spawn(warren_http::serve(
                http,
                core.clone(),
                shutdown.subscribe(),
            )));
        }
        tasks.push(tokio::spawn(warren_server::serve(
            listener,
            core.clone(),
            shutdown.clone(),
        )));
        Ok(Broker {
            core,
            addr,
            http_addr,
            options,
            shutdown,
            tasks,
        })
    }

    /// The AMQP port on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// The management API's address, when it was started.
    pub fn http_addr(&self) -> Option<SocketAddr> {
        self.http_addr
    }

    /// `http://127.0.0.1:PORT` of the management API.
    pub fn http_url(&self) -> Option<String> {
        self.http_addr.map(|a| format!("http://{a}"))
    }

    /// The default vhost's URL: `amqp://guest:guest@127.0.0.1:PORT/%2f`.
    pub fn amqp_url(&self) -> String {
        self.url_for("/")
    }

    /// The URL of `vhost`, percent-encoded.
    pub fn url_for(&self, vhost: &str) -> String {
        format!(
            "amqp://{}:{}@{}/{}",
            encode(&self.options.user),
            encode(&self.options.password),
            self.addr,
            encode(vhost)
        )
    }

    /// The broker itself, for what this crate does not wrap (queues' state, policies).
    pub fn core(&self) -> &Arc<Core> {
        &self.core
    }

    /// A fresh vhost with full permissions for the broker's user, deleted when the
    /// returned guard drops: tests sharing a broker do not see each other's queues.
    pub async fn vhost(&self) -> Result<Vhost, Error> {
        let name = format!(
            "test-{}-{}",
            std::process::id(),
            VHOSTS.fetch_add(1, Ordering::Relaxed)
        );
        self.core
            .create_vhost(&name)
            .map_err(|e| Error::Broker(e.text.to_string()))?;
        let full = Permission::new(".*", ".*", ".*").map_err(|e| Error::Broker(e.reason))?;
        self.core
            .set_permission(&self.options.user, &name, full)
            .map_err(|e| Error::Broker(e.text.to_string()))?;
        Ok(Vhost {
            url: self.url_for(&name),
            name,
            core: self.core.clone(),
        })
    }

    /// Moves the test clock forward; when it returns, every message TTL, expiration and
    /// `x-expires` that came due has run and the dead letters are in their queues.
    pub fn advance(&self, by: Duration) -> Result<ClockState, Error> {
        let ms = u64::try_from(by.as_millis()).unwrap_or(u64::MAX);
        Ok(self.core.timers.advance(ms)?)
    }

    /// Stops the test clock (nothing expires by itself) or, with `false`, lets it run on.
    pub fn freeze(&self, frozen: bool) -> Result<ClockState, Error> {
        Ok(self.core.timers.freeze(frozen)?)
    }

    /// The test clock's time and state.
    pub fn clock(&self) -> Result<ClockState, Error> {
        Ok(self.core.timers.clock().state()?)
    }

    /// Empties `vhost` (queues, exchanges but the default ones, bindings, policies).
    pub fn reset_vhost(&self, vhost: &str) -> Result<(), Error> {
        self.core
            .admin_reset_vhost(vhost)
            .map(|_| ())
            .map_err(|e| Error::Broker(e.to_string()))
    }

    /// Ready and unacknowledged messages of a queue.
    pub fn queue_depth(&self, vhost: &str, queue: &str) -> Result<usize, Error> {
        self.core
            .admin_queue_depth(vhost, queue)
            .map(|d| d.ready + d.unacked)
            .map_err(|e| Error::Broker(e.to_string()))
    }

    /// Waits until `queue` holds at least `count` messages; false after `timeout`.
    pub async fn wait_for_messages(
        &self,
        vhost: &str,
        queue: &str,
        count: usize,
        timeout: Duration,
    ) -> Result<bool, Error> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            // A queue not declared yet counts as empty: the test may be racing its code.
            let depth = self.queue_depth(vhost, queue).unwrap_or(0);
            if depth >= count {
                return Ok(true);
            }
            if tokio::time::Instant::now() >= deadline {
                return Ok(false);
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }

    /// Bodies of up to `count` ready messages, left in the queue unchanged.
    pub fn peek(&self, vhost: &str, queue: &str, count: usize) -> Result<Vec<Vec<u8>>, Error> {
        self.core
            .admin_peek(vhost, queue, count)
            .map(|got| got.iter().map(|m| m.message.body.to_vec()).collect())
            .map_err(|e| Error::Broker(e.to_string()))
    }

    /// Stops the broker: clients get connection.close (320), then the tasks end.
    pub async fn stop(mut self) {
        self.shutdown.trigger();
        for t in self.tasks.drain(..) {
            let _ = t.await;
        }
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        self.shutdown.trigger();
        for t in &self.tasks {
            t.abort();
        }
    }
}

/// A vhost of one test; deleted (its connections closed) when dropped.
pub struct Vhost {
    name: String,
    url: String,
    core: Arc<Core>,
}

impl Vhost {
    pub fn name(&self) -> &str {
        &self.name
    }

    /// `amqp://guest:guest@127.0.0.1:PORT/NAME`.
    pub fn amqp_url(&self) -> &str {
        &self.url
    }
}

impl Drop for Vhost {
    fn drop(&mut self) {
        if let Err(e) = self.core.admin_delete_vhost(&self.name) {
            tracing::warn!(vhost = %self.name, error = %e, "test vhost not deleted");
        }
    }
}

/// Percent-encodes what a URI's userinfo or path segment cannot carry as is.
fn encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::encode;

    #[test]
    fn url_parts_are_percent_encoded() {
        assert_eq!(encode("/"), "%2F");
        assert_eq!(encode("test-1"), "test-1");
        assert_eq!(encode("a b@c"), "a%20b%40c");
    }
}

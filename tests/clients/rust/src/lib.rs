//! Shared bits of the Rust client programs: settings, check reporting, names.
use std::{future::Future, path::Path, time::Duration};

pub fn host() -> String {
    std::env::var("WARREN_AMQP_HOST").unwrap_or_else(|_| "127.0.0.1".into())
}
pub fn port() -> String {
    std::env::var("WARREN_AMQP_PORT").unwrap_or_else(|_| "5672".into())
}
pub fn url() -> String {
    format!("amqp://guest:guest@{}:{}/%2f", host(), port())
}

pub type CheckResult = Result<(), String>;

/// `Err` with a message unless `cond`.
pub fn expect(cond: bool, why: impl Into<String>) -> CheckResult {
    if cond {
        Ok(())
    } else {
        Err(why.into())
    }
}

pub fn eq<T: PartialEq + std::fmt::Debug>(what: &str, want: T, got: T) -> CheckResult {
    expect(
        want == got,
        format!("{what}: expected {want:?}, got {got:?}"),
    )
}

/// Turns any error into the check's failure text.
pub fn e<T, E: std::fmt::Display>(what: &str, r: Result<T, E>) -> Result<T, String> {
    r.map_err(|err| format!("{what}: {err}"))
}

/// Bounds a broker round trip.
pub async fn within<F: Future>(what: &str, fut: F) -> Result<F::Output, String> {
    tokio::time::timeout(Duration::from_secs(10), fut)
        .await
        .map_err(|_| format!("timed out waiting for {what}"))
}

pub struct Report {
    client: &'static str,
    run: String,
    passed: u32,
    failed: u32,
}

impl Report {
    pub fn new(client: &'static str) -> Self {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        Self {
            client,
            run: format!("{:08x}", nanos ^ std::process::id()),
            passed: 0,
            failed: 0,
        }
    }

    pub fn name(&self, what: &str) -> String {
        format!("clients.{}.{}.{}", self.client, self.run, what)
    }

    pub async fn check<F: Future<Output = CheckResult>>(&mut self, label: &str, f: F) {
        match tokio::time::timeout(Duration::from_secs(30), f).await {
            Ok(Ok(())) => {
                self.passed += 1;
                println!("PASS {label}");
            }
            Ok(Err(why)) => {
                self.failed += 1;
                println!("FAIL {label}: {why}");
            }
            Err(_) => {
                self.failed += 1;
                println!("FAIL {label}: timed out after 30 s");
            }
        }
    }

    pub fn finish(&self) -> ! {
        println!("{} passed, {} failed", self.passed, self.failed);
        std::process::exit(if self.failed == 0 { 0 } else { 1 })
    }
}

/// Waits until the driver has restarted the broker.
pub async fn wait_restarted() -> bool {
    let Ok(f) = std::env::var("WARREN_CLIENTS_RESTARTED_FILE") else {
        return false;
    };
    for _ in 0..600 {
        if Path::new(&f).exists() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    false
}

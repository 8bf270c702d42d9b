//! A second-long `warren perf` run against a real broker: everything published arrives
//! exactly once. (Benchmarks themselves run from `make bench`, never in the test suite.)
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::Command;

use warren_integration::{warren_bin, Broker};

fn field(json: &str, key: &str) -> u64 {
    let pat = format!("\"{key}\":");
    let start = json
        .find(&pat)
        .unwrap_or_else(|| panic!("{key} missing in {json}"))
        + pat.len();
    json[start..]
        .chars()
        .take_while(|c| c.is_ascii_digit())
        .collect::<String>()
        .parse()
        .unwrap_or_else(|_| panic!("{key} is not an integer in {json}"))
}

fn perf(broker: &Broker, extra: &[&str]) -> String {
    let out = Command::new(warren_bin())
        .args([
            "perf",
            "--uri",
            &format!("127.0.0.1:{}", broker.port),
            "--json",
            "--duration",
            "1",
        ])
        .args(extra)
        .output()
        .expect("run warren perf");
    assert!(
        out.status.success(),
        "perf failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .expect("utf-8")
        .trim()
        .to_string()
}

#[test]
fn perf_smoke_reports_no_loss_and_no_duplicates() {
    let broker = Broker::start();
    for extra in [
        &["--confirm", "100", "--multi-ack", "10", "--rate", "20000"][..],
        &[
            "--auto-ack",
            "--exchange-type",
            "fanout",
            "--queues",
            "3",
            "--consumers",
            "3",
            "--rate",
            "10000",
        ][..],
        &[
            "--exchange-type",
            "topic",
            "--topic-bindings",
            "100",
            "--rate",
            "10000",
            "--size",
            "200000",
        ][..],
    ] {
        let json = perf(&broker, extra);
        assert!(field(&json, "sent") > 0, "{json}");
        assert!(field(&json, "received") > 0, "{json}");
        assert_eq!(field(&json, "lost"), 0, "{json}");
        assert_eq!(field(&json, "duplicated"), 0, "{json}");
        if extra.contains(&"--confirm") {
            assert_eq!(field(&json, "confirmed"), field(&json, "sent"), "{json}");
        }
    }
}

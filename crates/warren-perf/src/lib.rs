//! `warren perf`: a load generator for any AMQP 0-9-1 broker, in the spirit of RabbitMQ's
//! PerfTest. Producers stamp every body with (producer, sequence, send time); consumers
//! check each (queue, producer, sequence) arrives exactly once and record end-to-end
//! latency. A live line each second, a summary at the end, `--json` for scripts.
#![forbid(unsafe_code)]

mod client;
pub mod relay;
mod stats;
mod target;

pub use target::{parse_uri, Uri};

use std::{
    sync::{
        atomic::{AtomicBool, AtomicU64, Ordering},
        Arc,
    },
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use amq_protocol::protocol::{basic, connection, AMQPClass};
use bytes::{BufMut, Bytes};
use clap::{Args, ValueEnum};
use serde::Serialize;
use tokio::sync::Notify;
use warren_codec::Frame;

use crate::stats::{Stats, Tracker};

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ExchangeType {
    /// Default exchange, routing key = queue name.
    Default,
    Direct,
    Fanout,
    Topic,
}

/// Load generator options.
#[derive(Debug, Clone, Args)]
pub struct PerfArgs {
    /// Broker: `HOST:PORT`, or an AMQP URI `amqp[s]://[USER[:PASS]@]HOST[:PORT][/VHOST]`
    /// (user, password and vhost in the URI replace the flags').
    #[arg(long, default_value = "127.0.0.1:5672")]
    pub uri: String,
    /// TLS (as an `amqps://` URI does).
    #[arg(long)]
    pub tls: bool,
    /// CA certificates (PEM) the broker's certificate must chain to; without it any
    /// server certificate is accepted, as PerfTest does.
    #[arg(long, value_name = "FILE")]
    pub tls_ca: Option<std::path::PathBuf>,
    /// Client certificate chain (PEM), for brokers with verify_peer.
    #[arg(long, value_name = "FILE", requires = "tls_key")]
    pub tls_cert: Option<std::path::PathBuf>,
    /// The client certificate's key (PEM; PKCS#8, PKCS#1 or SEC1, encrypted or not).
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    pub tls_key: Option<std::path::PathBuf>,
    /// Passphrase of an encrypted --tls-key.
    #[arg(long, value_name = "PASSWORD")]
    pub tls_key_password: Option<String>,
    #[arg(long, default_value = "guest")]
    pub user: String,
    #[arg(long, default_value = "guest")]
    pub password: String,
    #[arg(long, default_value = "/")]
    pub vhost: String,
    #[arg(long, short = 'x', default_value_t = 1)]
    pub producers: u32,
    #[arg(long, short = 'y', default_value_t = 1)]
    pub consumers: u32,
    /// Number of queues (perf-q-0 ...); producer i publishes to queue i mod N, consumer j
    /// reads queue j mod N. With a fanout exchange every queue gets every message.
    #[arg(long, short = 'q', default_value_t = 1)]
    pub queues: u32,
    /// Message body size in bytes (at least 16: producer, sequence and timestamp).
    #[arg(long, short = 's', default_value_t = 16)]
    pub size: usize,
    /// Total publish rate limit in messages per second (0 = unlimited).
    #[arg(long, short = 'r', default_value_t = 0)]
    pub rate: u64,
    /// Publisher confirms with at most this many outstanding per producer (0 = off).
    #[arg(long, short = 'c', default_value_t = 0)]
    pub confirm: u32,
    /// delivery_mode 2 and durable queues.
    #[arg(long)]
    pub persistent: bool,
    /// Consume with no-ack.
    #[arg(long)]
    pub auto_ack: bool,
    /// Manual acks with `multiple` every N deliveries.
    #[arg(long, default_value_t = 1)]
    pub multi_ack: u32,
    /// basic.qos prefetch per consumer (0 = unlimited).
    #[arg(long, default_value_t = 1000)]
    pub prefetch: u16,
    #[arg(long, value_enum, default_value_t = ExchangeType::Default)]
    pub exchange_type: ExchangeType,
    /// For the topic exchange: bindings per queue (only one of them matches).
    #[arg(long, default_value_t = 1)]
    pub topic_bindings: u32,
    /// Seconds to publish.
    #[arg(long, short = 'z', default_value_t = 10.0)]
    pub duration: f64,
    /// Messages each producer publishes before it stops (0 = until the duration ends);
    /// the run ends early once every producer is done.
    #[arg(long, short = 'C', default_value_t = 0)]
    pub pmessages: u64,
    /// Leave the queues (and their messages) on the broker at the end. With
    /// `--producers 0` a run drains such leftovers: it consumes until two quiet seconds.
    #[arg(long)]
    pub keep: bool,
    /// Stream queues (`x-queue-type: stream`): consumers read from `first` with manual
    /// acks, each one every message of its queue (so consumers should be a multiple of
    /// queues); queues are deleted and declared afresh unless there are no producers.
    #[arg(long)]
    pub stream: bool,
    /// Print the summary as JSON.
    #[arg(long)]
    pub json: bool,
    /// No live line each second.
    #[arg(long)]
    pub quiet: bool,
    /// Measure no broker: relay the byte stream of `--size` messages through a process that
    /// only copies it from one socket to another (the machine's floor for any broker).
    #[arg(long)]
    pub relay_floor: bool,
    /// Copy every body into the publisher's write buffer, as the load generator did before
    /// 2026-12-05 (bodies of 32 KiB or more are otherwise sent from one shared buffer with
    /// vectored writes); for comparing with figures measured that way.
    #[arg(long)]
    pub copy_bodies: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    pub duration_s: f64,
    pub sent: u64,
    pub confirmed: u64,
    pub nacked: u64,
    pub received: u64,
    pub lost: u64,
    pub duplicated: u64,
    pub sent_rate: f64,
    pub received_rate: f64,
    pub latency_us_p50: u64,
    pub latency_us_p95: u64,
    pub latency_us_p99: u64,
    pub latency_us_max: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum PerfError {
    #[error("cannot resolve broker address {0}")]
    Address(String),
    #[error("invalid options: {0}")]
    Options(String),
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

fn now_nanos() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

fn queue_name(i: u32) -> String {
    format!("perf-q-{i}")
}

/// The exchange of a run, one per type: a run cut short before its teardown (a broker
/// that timed out) must not leave an exchange of another type in the next run's way.
fn exchange_name(kind: ExchangeType) -> &'static str {
    match kind {
        ExchangeType::Default => "",
        ExchangeType::Direct => "perf-x",
        ExchangeType::Fanout => "perf-x-fanout",
        ExchangeType::Topic => "perf-x-topic",
    }
}
/// Bodies from this size on are sent from one shared buffer with vectored writes.
const SHARED_BODY_MIN: usize = 32 * 1024;

struct Plan {
    target: client::Target,
    args: PerfArgs,
}

impl Plan {
    fn target(&self, producer: u32) -> (String, String) {
        let q = producer % self.args.queues;
        let key = match self.args.exchange_type {
            ExchangeType::Default | ExchangeType::Direct => queue_name(q),
            ExchangeType::Fanout => String::new(),
            ExchangeType::Topic => format!("perf.{q}.0.key"),
        };
        (exchange_name(self.args.exchange_type).to_string(), key)
    }
}

async fn setup(plan: &Plan) -> std::io::Result<()> {
    let a = &plan.args;
    let (mut r, mut w) = client::connect(&plan.target, &a.user, &a.password, &a.vhost).await?;
    let exchange = exchange_name(a.exchange_type);
    if a.exchange_type != ExchangeType::Default {
        let kind = match a.exchange_type {
            ExchangeType::Direct => "direct",
            ExchangeType::Fanout => "fanout",
            _ => "topic",
        };
        client::rpc(
            &mut r,
            &mut w,
            client::declare_exchange(exchange, kind, a.persistent),
        )
        .await?;
    }
    for q in 0..a.queues {
        let name = queue_name(q);
        if a.stream {
            // Streams cannot be purged: a run with producers starts from a new one.
            if a.producers > 0 {
                client::rpc(&mut r, &mut w, client::delete_queue(&name)).await?;
            }
            client::rpc(&mut r, &mut w, client::declare_stream(&name)).await?;
            continue;
        }
        // Declare then purge: deleting a missing queue is an error on some brokers.
        client::rpc(&mut r, &mut w, client::declare_queue(&name, a.persistent)).await?;
        // A consumers-only run drains what earlier runs left; others start empty.
        if a.producers > 0 {
            client::rpc(&mut r, &mut w, client::purge_queue(&name)).await?;
        }
        match a.exchange_type {
            ExchangeType::Default => {}
            ExchangeType::Direct => {
                client::rpc(&mut r, &mut w, client::bind(&name, exchange, &name, false)).await?;
            }
            ExchangeType::Fanout => {
                client::rpc(&mut r, &mut w, client::bind(&name, exchange, "", false)).await?;
            }
            ExchangeType::Topic => {
                // Many bindings per queue; only `perf.{q}.0.*` matches what is published.
                for b in 0..a.topic_bindings {
                    w.method(
                        1,
                        client::bind(&name, exchange, &format!("perf.{q}.{b}.*"), true),
                    )?;
                }
                client::rpc(
                    &mut r,
                    &mut w,
                    client::bind(&name, exchange, &format!("perf.{q}.0.*"), false),
                )
                .await?;
            }
        }
    }
    Ok(())
}

async fn teardown(plan: &Plan) -> std::io::Result<()> {
    let a = &plan.args;
    if a.keep {
        return Ok(());
    }
    let (mut r, mut w) = client::connect(&plan.target, &a.user, &a.password, &a.vhost).await?;
    for q in 0..a.queues {
        client::rpc(&mut r, &mut w, client::delete_queue(&queue_name(q))).await?;
    }
    if a.exchange_type != ExchangeType::Default {
        client::rpc(
            &mut r,
            &mut w,
            client::delete_exchange(exchange_name(a.exchange_type)),
        )
        .await?;
    }
    Ok(())
}

async fn producer(
    plan: Arc<Plan>,
    id: u32,
    stats: Arc<Stats>,
    stop: Arc<AtomicBool>,
) -> std::io::Result<()> {
    let a = &plan.args;
    let (mut r, mut w) = client::connect(&plan.target, &a.user, &a.password, &a.vhost).await?;
    let confirms = a.confirm > 0;
    if confirms {
        client::rpc(&mut r, &mut w, client::confirm_select()).await?;
    }
    let (exchange, key) = plan.target(id);
    let props: &[u8] = if a.persistent {
        &[0x10, 0x00, 0x02]
    } else {
        &[0x00, 0x00]
    };
    let outstanding = Arc::new(AtomicU64::new(0));
    let wake = Arc::new(Notify::new());
    // Confirms (and the final close-ok) are read by their own task so publishing never
    // waits on a read.
    let reader = {
        let (outstanding, wake, stats) = (outstanding.clone(), wake.clone(), stats.clone());
        tokio::spawn(async move {
            let mut acked_upto = 0u64;
            loop {
                let frame = match r.frame().await {
                    Ok(f) => f,
                    Err(_) => break,
                };
                if let Frame::Method { method, .. } = frame {
                    let (tag, multiple, ack) = match *method {
                        AMQPClass::Basic(basic::AMQPMethod::Ack(m)) => {
                            (m.delivery_tag, m.multiple, true)
                        }
                        AMQPClass::Basic(basic::AMQPMethod::Nack(m)) => {
                            (m.delivery_tag, m.multiple, false)
                        }
                        AMQPClass::Connection(connection::AMQPMethod::CloseOk(_)) => break,
                        _ => continue,
                    };
                    let n = if multiple {
                        tag.saturating_sub(acked_upto)
                    } else {
                        1
                    };
                    acked_upto = acked_upto.max(tag);
                    if ack {
                        stats.confirmed.fetch_add(n, Ordering::Relaxed);
                    } else {
                        stats.nacked.fetch_add(n, Ordering::Relaxed);
                    }
                    outstanding.fetch_sub(
                        n.min(outstanding.load(Ordering::Relaxed)),
                        Ordering::Relaxed,
                    );
                    wake.notify_one();
                }
            }
        })
    };
    let per_producer_rate = if a.rate == 0 {
        0.0
    } else {
        a.rate as f64 / f64::from(a.producers)
    };
    let started = Instant::now();
    let mut seq: u64 = 0;
    let mut body = vec![0u8; a.size.max(16)];
    // Large bodies go out as slices of one buffer, not copied per message.
    let filler =
        (body.len() >= SHARED_BODY_MIN && !a.copy_bodies).then(|| Bytes::from(body.clone()));
    while !stop.load(Ordering::Relaxed) {
        let mut batch = 256u64;
        if a.pmessages > 0 {
            if seq >= a.pmessages {
                break;
            }
            batch = batch.min(a.pmessages - seq);
        }
        if per_producer_rate > 0.0 {
            let due = (started.elapsed().as_secs_f64() * per_producer_rate) as u64;
            batch = batch.min(due.saturating_sub(seq));
            if batch == 0 {
                tokio::time::sleep(Duration::from_micros(200)).await;
                continue;
            }
        }
        if confirms {
            let room = u64::from(a.confirm).saturating_sub(outstanding.load(Ordering::Relaxed));
            if room == 0 {
                tokio::select! {
                    _ = wake.notified() => {}
                    _ = tokio::time::sleep(Duration::from_millis(100)) => {}
                }
                continue;
            }
            batch = batch.min(room);
        }
        for _ in 0..batch {
            seq += 1;
            let mut head = &mut body[..16];
            head.put_u64((u64::from(id) << 48) | seq);
            head.put_u64(now_nanos());
            match &filler {
                Some(filler) => w.publish_shared(&exchange, &key, props, &body[..16], filler),
                None => w.publish(&exchange, &key, props, &body),
            }
        }
        if confirms {
            outstanding.fetch_add(batch, Ordering::Relaxed);
        }
        w.flush().await?;
        stats.sent.fetch_add(batch, Ordering::Relaxed);
    }
    // A graceful close: the broker answers close-ok only after every publish before it
    // was handled (and confirmed), so the counts are exact.
    w.method(
        0,
        AMQPClass::Connection(connection::AMQPMethod::Close(connection::Close {
            reply_code: 200,
            reply_text: "done".into(),
            class_id: 0,
            method_id: 0,
        })),
    )?;
    w.flush().await?;
    let _ = tokio::time::timeout(Duration::from_secs(60), reader).await;
    Ok(())
}

async fn consumer(
    plan: Arc<Plan>,
    id: u32,
    stats: Arc<Stats>,
    tracker: Arc<Tracker>,
    stop: Arc<AtomicBool>,
) -> std::io::Result<()> {
    let a = &plan.args;
    let queue = id % a.queues;
    let (mut r, mut w) = client::connect(&plan.target, &a.user, &a.password, &a.vhost).await?;
    if !a.auto_ack || a.stream {
        client::rpc(&mut r, &mut w, client::qos(a.prefetch)).await?;
    }
    let consume = if a.stream {
        client::consume_stream_from_first(&queue_name(queue))
    } else {
        client::consume(&queue_name(queue), a.auto_ack)
    };
    client::rpc(&mut r, &mut w, consume).await?;
    let auto_ack = a.auto_ack && !a.stream;
    // Each stream consumer reads everything: it is tracked as a queue of its own.
    let slot = if a.stream { id } else { queue };
    let mut unacked = 0u32;
    let mut last_tag = 0u64;
    let mut latencies = Vec::with_capacity(1024);
    // Only the first body frame of a message carries the stamp.
    let mut expect_stamp = false;
    loop {
        let frame = tokio::select! {
            f = r.frame() => f?,
            _ = tokio::time::sleep(Duration::from_millis(100)) => {
                if stop.load(Ordering::Relaxed) { break; }
                continue;
            }
        };
        match frame {
            Frame::Method { method, .. } => {
                if let AMQPClass::Basic(basic::AMQPMethod::Deliver(d)) = *method {
                    last_tag = d.delivery_tag;
                    expect_stamp = true;
                }
            }
            Frame::Body { payload, .. } if expect_stamp => {
                expect_stamp = false;
                if payload.len() >= 16 {
                    let word = u64::from_be_bytes(payload[..8].try_into().unwrap_or([0; 8]));
                    let sent = u64::from_be_bytes(payload[8..16].try_into().unwrap_or([0; 8]));
                    let producer = (word >> 48) as u32;
                    let seq = word & ((1 << 48) - 1);
                    tracker.record(slot, producer, seq);
                    latencies.push(now_nanos().saturating_sub(sent) / 1000);
                    stats.received.fetch_add(1, Ordering::Relaxed);
                    if !auto_ack {
                        unacked += 1;
                        if unacked >= a.multi_ack.max(1) {
                            w.method(1, client::ack_upto(last_tag))?;
                            w.flush().await?;
                            unacked = 0;
                        }
                    }
                    if latencies.len() >= 256 {
                        stats.record_latencies(&latencies);
                        latencies.clear();
                    }
                }
            }
            _ => {}
        }
        if stop.load(Ordering::Relaxed) && stats.drained() {
            break;
        }
    }
    stats.record_latencies(&latencies);
    if !auto_ack && unacked > 0 {
        w.method(1, client::ack_upto(last_tag))?;
        w.flush().await?;
    }
    Ok(())
}

/// Runs a load test and returns its summary (also printed unless `--json`).
pub async fn run(args: PerfArgs) -> Result<Summary, PerfError> {
    if args.queues == 0 || args.producers + args.consumers == 0 {
        return Err(PerfError::Options(
            "--queues, and --producers or --consumers, must be at least 1".into(),
        ));
    }
    let mut args = args;
    let uri = parse_uri(&args.uri)?;
    let target = target::target(
        &uri,
        &target::TlsFlags {
            tls: args.tls,
            ca: args.tls_ca.clone(),
            cert: args.tls_cert.clone(),
            key: args.tls_key.clone(),
            key_password: args.tls_key_password.clone(),
        },
    )?;
    if let Some(u) = uri.user {
        args.user = u;
    }
    if let Some(p) = uri.password {
        args.password = p;
    }
    if let Some(v) = uri.vhost {
        args.vhost = v;
    }
    let fanout = if args.stream {
        u64::from((args.consumers / args.queues).max(1))
    } else if args.exchange_type == ExchangeType::Fanout {
        u64::from(args.queues)
    } else {
        1
    };
    let plan = Arc::new(Plan {
        target,
        args: args.clone(),
    });
    setup(&plan).await?;
    let stats = Arc::new(Stats::new());
    let slots = if args.stream {
        args.consumers.max(1)
    } else {
        args.queues
    };
    let tracker = Arc::new(Tracker::new(slots, args.producers));
    let stop_publishing = Arc::new(AtomicBool::new(false));
    let stop_consuming = Arc::new(AtomicBool::new(false));
    let mut consumers = Vec::new();
    for id in 0..args.consumers {
        consumers.push(tokio::spawn(consumer(
            plan.clone(),
            id,
            stats.clone(),
            tracker.clone(),
            stop_consuming.clone(),
        )));
    }
    // Let consumers attach before the clock starts.
    tokio::time::sleep(Duration::from_millis(100)).await;
    let mut producers = Vec::new();
    for id in 0..args.producers {
        producers.push(tokio::spawn(producer(
            plan.clone(),
            id,
            stats.clone(),
            stop_publishing.clone(),
        )));
    }
    let started = Instant::now();
    let run_for = Duration::from_secs_f64(args.duration.max(0.1));
    let mut last = stats.snapshot();
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.tick().await;
    // Without producers (draining what is already queued): until the duration ends or
    // nothing has arrived for two seconds.
    let consume_only = producers.is_empty();
    let mut last_count = (0u64, Instant::now());
    while started.elapsed() < run_for
        && (consume_only || !producers.iter().all(|p| p.is_finished()))
    {
        if consume_only {
            let n = stats.received.load(Ordering::Relaxed);
            if n != last_count.0 {
                last_count = (n, Instant::now());
            } else if last_count.1.elapsed() > Duration::from_secs(2) {
                break;
            }
        }
        let left = run_for
            .saturating_sub(started.elapsed())
            .min(Duration::from_millis(100));
        tokio::select! {
            _ = tick.tick() => {
                let now = stats.snapshot();
                if !consume_only && producers.iter().all(|p| p.is_finished()) {
                    break;
                }
                if !args.quiet && !args.json {
                    println!("{}", stats.live_line(started.elapsed(), &last, &now));
                }
                last = now;
            }
            _ = tokio::time::sleep(left) => {}
        }
    }
    stop_publishing.store(true, Ordering::Relaxed);
    let publish_time = started.elapsed().as_secs_f64();
    for p in producers {
        match p.await {
            Ok(Err(e)) => return Err(e.into()),
            Err(e) => return Err(PerfError::Io(std::io::Error::other(e.to_string()))),
            Ok(Ok(())) => {}
        }
    }
    // Wait for consumers to drain what was published (or go quiet).
    let expected = if args.confirm > 0 {
        stats.confirmed.load(Ordering::Relaxed)
    } else {
        stats.sent.load(Ordering::Relaxed)
    } * fanout;
    stats.expected.store(expected, Ordering::Relaxed);
    let mut quiet_since = Instant::now();
    let mut seen = stats.received.load(Ordering::Relaxed);
    let drain_started = Instant::now();
    // Drain until everything arrived, the broker goes quiet, or a minute has passed.
    while args.consumers > 0
        && stats.received.load(Ordering::Relaxed) < expected
        && quiet_since.elapsed() < Duration::from_secs(10)
        && drain_started.elapsed() < Duration::from_secs(60)
    {
        tokio::time::sleep(Duration::from_millis(50)).await;
        let now = stats.received.load(Ordering::Relaxed);
        if now != seen {
            seen = now;
            quiet_since = Instant::now();
        }
    }
    stop_consuming.store(true, Ordering::Relaxed);
    for c in consumers {
        let _ = tokio::time::timeout(Duration::from_secs(5), c).await;
    }
    // A drain ends after two quiet seconds, which are not part of its rate.
    let total_time = if consume_only {
        last_count
            .1
            .duration_since(started)
            .as_secs_f64()
            .max(0.001)
    } else {
        started.elapsed().as_secs_f64()
    };
    let _ = teardown(&plan).await;
    let (unique, duplicated) = tracker.totals();
    let lat = stats.latency();
    let summary = Summary {
        duration_s: publish_time,
        sent: stats.sent.load(Ordering::Relaxed),
        confirmed: stats.confirmed.load(Ordering::Relaxed),
        nacked: stats.nacked.load(Ordering::Relaxed),
        received: stats.received.load(Ordering::Relaxed),
        lost: if args.consumers > 0 {
            expected.saturating_sub(unique)
        } else {
            0
        },
        duplicated,
        sent_rate: stats.sent.load(Ordering::Relaxed) as f64 / publish_time,
        received_rate: stats.received.load(Ordering::Relaxed) as f64 / total_time.max(publish_time),
        latency_us_p50: lat.0,
        latency_us_p95: lat.1,
        latency_us_p99: lat.2,
        latency_us_max: lat.3,
    };
    if args.json {
        println!("{}", serde_json::to_string(&summary).unwrap_or_default());
    } else {
        println!(
            "summary: {:.1}s sent {} ({:.0}/s) confirmed {} nacked {} received {} ({:.0}/s) lost {} duplicated {} latency us p50 {} p95 {} p99 {} max {}",
            summary.duration_s, summary.sent, summary.sent_rate, summary.confirmed, summary.nacked, summary.received,
            summary.received_rate, summary.lost, summary.duplicated, summary.latency_us_p50, summary.latency_us_p95,
            summary.latency_us_p99, summary.latency_us_max
        );
    }
    Ok(summary)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_exchange_type_has_an_exchange_of_its_own() {
        let kinds = [
            ExchangeType::Direct,
            ExchangeType::Fanout,
            ExchangeType::Topic,
        ];
        let names: std::collections::HashSet<_> = kinds.iter().map(|k| exchange_name(*k)).collect();
        assert_eq!(names.len(), kinds.len());
        assert!(!names.contains(""));
        assert_eq!(exchange_name(ExchangeType::Default), "");
    }
}

//! Prometheus metrics in the text exposition format, under rabbitmq_prometheus's names:
//! `/metrics` aggregates queue metrics, `/metrics/per-object` labels them per queue, and
//! `/metrics/detailed` serves the `rabbitmq_detailed_` families asked for with `family=`
//! (optionally limited with `vhost=`).

use std::{fmt::Write, sync::Arc};

use axum::{
    extract::{RawQuery, State},
    http::header,
    response::IntoResponse,
    routing::get,
    Router,
};
use warren_server::{admin::AdminState, stats::Stat, Broker};

pub fn router(broker: Arc<Broker>) -> Router {
    Router::new()
        .route("/metrics", get(aggregated))
        .route("/metrics/per-object", get(per_object))
        .route("/metrics/detailed", get(detailed))
        .with_state(broker)
}

const CONTENT_TYPE: &str = "text/plain; version=0.0.4";

async fn aggregated(State(b): State<Arc<Broker>>) -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, CONTENT_TYPE)],
        render_mode(&b, Mode::Aggregated),
    )
}

async fn per_object(State(b): State<Arc<Broker>>) -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, CONTENT_TYPE)],
        render_mode(&b, Mode::PerObject),
    )
}

async fn detailed(State(b): State<Arc<Broker>>, RawQuery(q): RawQuery) -> impl IntoResponse {
    let mut families = Vec::new();
    let mut vhosts = Vec::new();
    for pair in q.unwrap_or_default().split('&') {
        if let Some((k, v)) = pair.split_once('=') {
            let v = percent_decode(v);
            match k {
                "family" => families.push(v),
                "vhost" => vhosts.push(v),
                _ => {}
            }
        }
    }
    let mut out = String::new();
    let queues = queue_rows(&b, &vhosts);
    for family in &families {
        match family.as_str() {
            "queue_coarse_metrics" => {
                for (name, help, f) in QUEUE_COARSE {
                    family_lines(
                        &mut out,
                        &format!("rabbitmq_detailed_{name}"),
                        "gauge",
                        help,
                        &queues,
                        *f,
                    );
                }
            }
            "queue_consumer_count" => family_lines(
                &mut out,
                "rabbitmq_detailed_queue_consumers",
                "gauge",
                "Consumers on a queue",
                &queues,
                |r| r.consumers,
            ),
            "queue_metrics" => family_lines(
                &mut out,
                "rabbitmq_detailed_queue_messages_published_total",
                "counter",
                "Total number of messages published to queues",
                &queues,
                |r| r.published,
            ),
            _ => {}
        }
    }
    ([(header::CONTENT_TYPE, CONTENT_TYPE)], out)
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).ok();
                match hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                    Some(v) => {
                        out.push(v);
                        i += 3;
                        continue;
                    }
                    None => out.push(b'%'),
                }
            }
            b'+' => out.push(b' '),
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[derive(Clone, Copy, PartialEq)]
enum Mode {
    Aggregated,
    PerObject,
}

struct QueueRow {
    vhost: String,
    name: String,
    ready: u64,
    unacked: u64,
    consumers: u64,
    published: u64,
}

type RowFn = fn(&QueueRow) -> u64;

const QUEUE_COARSE: &[(&str, &str, RowFn)] = &[
    (
        "queue_messages_ready",
        "Messages ready to be delivered to consumers",
        |r| r.ready,
    ),
    (
        "queue_messages_unacked",
        "Messages delivered to consumers but not yet acknowledged",
        |r| r.unacked,
    ),
    (
        "queue_messages",
        "Sum of ready and unacknowledged messages - total queue depth",
        |r| r.ready + r.unacked,
    ),
];

fn queue_rows(b: &Broker, vhosts: &[String]) -> Vec<QueueRow> {
    let mut rows = Vec::new();
    for vh in b.vhosts() {
        if !vhosts.is_empty() && !vhosts.iter().any(|v| v == vh.name.as_ref()) {
            continue;
        }
        for q in vh.queues() {
            let view = q.view();
            rows.push(QueueRow {
                vhost: vh.name.to_string(),
                name: q.name.to_string(),
                ready: view.ready,
                unacked: view.unacked,
                consumers: view.consumer_count as u64,
                published: q.stats.get(Stat::Publish),
            });
        }
    }
    rows
}

/// Escapes a label value (backslash, quote, newline) per the exposition format.
fn label(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

fn header(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# TYPE {name} {kind}");
    let _ = writeln!(out, "# HELP {name} {help}");
}

fn family_lines(out: &mut String, name: &str, kind: &str, help: &str, rows: &[QueueRow], f: RowFn) {
    header(out, name, kind, help);
    for r in rows {
        let _ = writeln!(
            out,
            "{name}{{vhost=\"{}\",queue=\"{}\"}} {}",
            label(&r.vhost),
            label(&r.name),
            f(r)
        );
    }
}

fn metric(
    out: &mut String,
    name: &str,
    kind: &str,
    help: &str,
    labels: &str,
    value: impl std::fmt::Display,
) {
    header(out, name, kind, help);
    let _ = writeln!(out, "{name}{labels} {value}");
}

/// The whole `/metrics` page.
pub fn render(b: &Broker) -> String {
    render_mode(b, Mode::Aggregated)
}

fn render_mode(b: &Broker, mode: Mode) -> String {
    let mut out = String::new();
    identity_metrics(&mut out, b);
    churn_metrics(&mut out, &b.admin);
    process_metrics(&mut out, b);
    let rows = queue_rows(b, &[]);
    queue_metrics(&mut out, &rows, mode);
    object_metrics(&mut out, &b.admin, &rows);
    global_metrics(&mut out, b, &rows);
    channel_metrics(&mut out, b, mode);
    out
}

/// One open channel's numbers for the `rabbitmq_channel_` families.
struct ChannelRow {
    name: String,
    vhost: String,
    consumers: u64,
    unacked: u64,
    unconfirmed: u64,
    prefetch: u64,
    counts: [u64; warren_server::stats::STAT_COUNT],
}

fn channel_rows(b: &Broker) -> Vec<ChannelRow> {
    use std::sync::atomic::Ordering::Relaxed;
    let mut consumers: std::collections::HashMap<(u64, u16), (u64, u64, u64)> =
        std::collections::HashMap::new();
    for vh in b.vhosts() {
        for q in vh.queues() {
            for c in q.view_with_consumers().consumers {
                let e = consumers.entry((c.conn, c.channel)).or_default();
                e.0 += 1;
                e.1 += u64::from(c.unacked);
                e.2 = e.2.max(u64::from(c.prefetch));
            }
        }
    }
    let mut rows = Vec::new();
    for conn in b.admin.connection_list() {
        for (n, shared) in conn.channel_states() {
            let (count, unacked, prefetch) =
                consumers.get(&(conn.id, n)).copied().unwrap_or_default();
            let global = u64::from(shared.global_prefetch.load(Relaxed));
            rows.push(ChannelRow {
                name: format!("{} ({n})", conn.name),
                vhost: conn.vhost.clone(),
                consumers: count,
                unacked,
                unconfirmed: shared.unconfirmed.load(Relaxed),
                prefetch: if global > 0 { global } else { prefetch },
                counts: std::array::from_fn(|i| {
                    warren_server::stats::STAT_ALL
                        .get(i)
                        .map_or(0, |s| shared.stats.get(*s))
                }),
            });
        }
    }
    rows
}

type ChannelFn = fn(&ChannelRow) -> u64;

/// rabbitmq_prometheus's channel gauges (labelled `channel` per object).
const CHANNEL_GAUGES: &[(&str, &str, ChannelFn)] = &[
    (
        "rabbitmq_channel_consumers",
        "Consumers on a channel",
        |r| r.consumers,
    ),
    (
        "rabbitmq_channel_messages_unacked",
        "Delivered but not yet acknowledged messages",
        |r| r.unacked,
    ),
    (
        "rabbitmq_channel_messages_unconfirmed",
        "Published but not yet confirmed messages",
        |r| r.unconfirmed,
    ),
    (
        "rabbitmq_channel_messages_uncommitted",
        "Messages received in a transaction but not yet committed",
        |_| 0,
    ),
    (
        "rabbitmq_channel_acks_uncommitted",
        "Message acknowledgements in a transaction not yet committed",
        |_| 0,
    ),
    (
        "rabbitmq_channel_prefetch",
        "Total limit of unacknowledged messages for all consumers on a channel",
        |r| r.prefetch,
    ),
];

/// rabbitmq_prometheus's channel counters, with the channel counter each one reads.
const CHANNEL_COUNTERS: &[(&str, &str, Stat)] = &[
    ("rabbitmq_channel_messages_published_total", "Total number of messages published into an exchange on a channel", Stat::Publish),
    ("rabbitmq_channel_messages_confirmed_total", "Total number of messages published into an exchange and confirmed on the channel", Stat::Confirm),
    ("rabbitmq_channel_messages_unroutable_returned_total", "Total number of messages published as mandatory into an exchange and returned to the publisher as unroutable", Stat::ReturnUnroutable),
    ("rabbitmq_channel_messages_unroutable_dropped_total", "Total number of messages published as non-mandatory into an exchange and dropped as unroutable", Stat::DropUnroutable),
    ("rabbitmq_channel_get_ack_total", "Total number of messages fetched with basic.get in manual acknowledgement mode", Stat::Get),
    ("rabbitmq_channel_get_total", "Total number of messages fetched with basic.get in automatic acknowledgement mode", Stat::GetNoAck),
    ("rabbitmq_channel_messages_delivered_ack_total", "Total number of messages delivered to consumers in manual acknowledgement mode", Stat::Deliver),
    ("rabbitmq_channel_messages_delivered_total", "Total number of messages delivered to consumers in automatic acknowledgement mode", Stat::DeliverNoAck),
    ("rabbitmq_channel_messages_redelivered_total", "Total number of messages redelivered to consumers", Stat::Redeliver),
    ("rabbitmq_channel_messages_acked_total", "Total number of messages acknowledged by consumers", Stat::Ack),
    ("rabbitmq_channel_get_empty_total", "Total number of times basic.get operations fetched no message", Stat::GetEmpty),
];

/// The `rabbitmq_channel_` families: sums over the open channels (as RabbitMQ's
/// aggregated page), or one line per channel. Per object, warren labels the counters
/// with `channel` and `vhost`: it counts per channel, not per channel and exchange or
/// queue as RabbitMQ does.
fn channel_metrics(out: &mut String, b: &Broker, mode: Mode) {
    let rows = channel_rows(b);
    for (name, help, f) in CHANNEL_GAUGES {
        header(out, name, "gauge", help);
        match mode {
            Mode::Aggregated => {
                let _ = writeln!(out, "{name} {}", rows.iter().map(f).sum::<u64>());
            }
            Mode::PerObject => {
                for r in &rows {
                    let _ = writeln!(out, "{name}{{channel=\"{}\"}} {}", label(&r.name), f(r));
                }
            }
        }
    }
    for (name, help, stat) in CHANNEL_COUNTERS {
        header(out, name, "counter", help);
        let value = |r: &ChannelRow| r.counts[*stat as usize];
        match mode {
            Mode::Aggregated => {
                let _ = writeln!(out, "{name} {}", rows.iter().map(value).sum::<u64>());
            }
            Mode::PerObject => {
                for r in &rows {
                    let _ = writeln!(
                        out,
                        "{name}{{channel=\"{}\",vhost=\"{}\"}} {}",
                        label(&r.name),
                        label(&r.vhost),
                        value(r)
                    );
                }
            }
        }
    }
}

/// `rabbitmq_identity_info` and `rabbitmq_build_info`.
fn identity_metrics(out: &mut String, b: &Broker) {
    let node = label(&format!(
        "rabbit@{}",
        std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|h| h.trim().to_string())
            .unwrap_or_else(|_| "localhost".into())
    ));
    metric(
        out,
        "rabbitmq_identity_info",
        "untyped",
        "RabbitMQ node & cluster identity info",
        &format!(
            "{{rabbitmq_node=\"{node}\",rabbitmq_cluster=\"{}\",rabbitmq_cluster_permanent_id=\"{}\"}}",
            label(&b.config.cluster_name),
            label(&b.config.cluster_name)
        ),
        1,
    );
    metric(
        out,
        "rabbitmq_build_info",
        "untyped",
        "RabbitMQ & Erlang/OTP version info",
        &format!(
            "{{rabbitmq_version=\"{}\",prometheus_plugin_version=\"{}\",warren_version=\"{}\"}}",
            label(&b.config.rabbitmq_version),
            label(&b.config.rabbitmq_version),
            env!("CARGO_PKG_VERSION")
        ),
        1,
    );
}

/// Connection, channel and queue churn counters.
fn churn_metrics(out: &mut String, a: &AdminState) {
    use std::sync::atomic::Ordering::Relaxed;
    for (name, help, v) in [
        (
            "rabbitmq_connections_opened_total",
            "Total number of connections opened",
            a.connections_opened.load(Relaxed),
        ),
        (
            "rabbitmq_connections_closed_total",
            "Total number of connections closed or terminated",
            a.connections_closed.load(Relaxed),
        ),
        (
            "rabbitmq_channels_opened_total",
            "Total number of channels opened",
            a.channels_opened.load(Relaxed),
        ),
        (
            "rabbitmq_channels_closed_total",
            "Total number of channels closed",
            a.channels_closed.load(Relaxed),
        ),
        (
            "rabbitmq_queues_declared_total",
            "Total number of queues declared",
            a.queues_declared.load(Relaxed),
        ),
        (
            "rabbitmq_queues_created_total",
            "Total number of queues created",
            a.queues_declared.load(Relaxed),
        ),
        (
            "rabbitmq_queues_deleted_total",
            "Total number of queues deleted",
            a.queues_deleted.load(Relaxed),
        ),
    ] {
        metric(out, name, "counter", help, "", v);
    }
}

/// Resident memory and open file descriptors (both read first), with the alarm and limit
/// gauges between them.
fn process_metrics(out: &mut String, b: &Broker) {
    let rss = std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| {
            s.split_whitespace()
                .nth(1)
                .and_then(|p| p.parse::<u64>().ok())
        })
        .map_or(0, |p| p * 4096);
    let fds = std::fs::read_dir("/proc/self/fd").map_or(0, |d| d.count());
    metric(
        out,
        "rabbitmq_process_resident_memory_bytes",
        "gauge",
        "Memory used in bytes",
        "",
        rss,
    );
    alarm_metrics(out, b);
    metric(
        out,
        "rabbitmq_process_open_fds",
        "gauge",
        "Open file descriptors",
        "",
        fds,
    );
    metric(
        out,
        "rabbitmq_process_open_tcp_sockets",
        "gauge",
        "Open TCP sockets",
        "",
        b.admin.connection_count(),
    );
    let max_fds = max_open_files().unwrap_or(0);
    metric(
        out,
        "rabbitmq_process_max_fds",
        "gauge",
        "Open file descriptors limit",
        "",
        max_fds,
    );
    metric(
        out,
        "rabbitmq_process_max_tcp_sockets",
        "gauge",
        "Open TCP sockets limit",
        "",
        max_tcp_sockets(max_fds),
    );
}

/// The soft limit on open files (`Max open files` in /proc/self/limits).
fn max_open_files() -> Option<u64> {
    let limits = std::fs::read_to_string("/proc/self/limits").ok()?;
    limits
        .lines()
        .find(|l| l.starts_with("Max open files"))?
        .split_whitespace()
        .nth(3)?
        .parse()
        .ok()
}

/// RabbitMQ's socket limit from the file limit (file_handle_cache: 100 descriptors kept
/// for other uses, 90% of the rest for sockets).
fn max_tcp_sockets(max_fds: u64) -> u64 {
    max_fds.saturating_sub(100) * 9 / 10
}

/// RabbitMQ 3.10's alarm and limit gauges (rabbitmq_prometheus core metrics).
fn alarm_metrics(out: &mut String, b: &Broker) {
    use std::sync::atomic::Ordering::Relaxed;
    let alarms = b.alarms.current();
    for (name, help, v) in [
        (
            "rabbitmq_alarms_free_disk_space_watermark",
            "is 1 if free disk space watermark alarm is in effect",
            u64::from(alarms.disk),
        ),
        (
            "rabbitmq_alarms_memory_used_watermark",
            "is 1 if VM memory watermark alarm is in effect",
            u64::from(alarms.memory),
        ),
        (
            "rabbitmq_disk_space_available_bytes",
            "Disk space available in bytes",
            b.alarms.disk_free.load(Relaxed),
        ),
        (
            "rabbitmq_disk_space_available_limit_bytes",
            "Free disk space low-watermark in bytes",
            b.alarms.disk_free_limit.load(Relaxed),
        ),
        (
            "rabbitmq_resident_memory_limit_bytes",
            "Memory high watermark in bytes",
            b.alarms.mem_limit.load(Relaxed),
        ),
    ] {
        metric(out, name, "gauge", help, "", v);
    }
}

/// Queue depth and consumer gauges: totals, or one line per queue.
fn queue_metrics(out: &mut String, rows: &[QueueRow], mode: Mode) {
    match mode {
        Mode::Aggregated => {
            for (name, help, f) in QUEUE_COARSE {
                let total: u64 = rows.iter().map(f).sum();
                metric(out, &format!("rabbitmq_{name}"), "gauge", help, "", total);
            }
            let consumers: u64 = rows.iter().map(|r| r.consumers).sum();
            metric(
                out,
                "rabbitmq_queue_consumers",
                "gauge",
                "Consumers on a queue",
                "",
                consumers,
            );
            metric(
                out,
                "rabbitmq_queue_messages_published_total",
                "counter",
                "Total number of messages published to queues",
                "",
                rows.iter().map(|r| r.published).sum::<u64>(),
            );
        }
        Mode::PerObject => {
            for (name, help, f) in QUEUE_COARSE {
                family_lines(out, &format!("rabbitmq_{name}"), "gauge", help, rows, *f);
            }
            family_lines(
                out,
                "rabbitmq_queue_consumers",
                "gauge",
                "Consumers on a queue",
                rows,
                |r| r.consumers,
            );
            family_lines(
                out,
                "rabbitmq_queue_messages_published_total",
                "counter",
                "Total number of messages published to queues",
                rows,
                |r| r.published,
            );
        }
    }
}

/// How many connections, channels, consumers and queues there are.
fn object_metrics(out: &mut String, a: &AdminState, rows: &[QueueRow]) {
    let conns = a.connection_count();
    let channels = a.channel_count();
    let consumers: u64 = rows.iter().map(|r| r.consumers).sum();
    metric(
        out,
        "rabbitmq_connections",
        "gauge",
        "Connections currently open",
        "",
        conns,
    );
    metric(
        out,
        "rabbitmq_channels",
        "gauge",
        "Channels currently open",
        "",
        channels,
    );
    metric(
        out,
        "rabbitmq_consumers",
        "gauge",
        "Consumers currently connected",
        "",
        consumers,
    );
    metric(
        out,
        "rabbitmq_queues",
        "gauge",
        "Queues available",
        "",
        rows.len(),
    );
}

/// The `rabbitmq_global_` consumer gauge and message counters.
fn global_metrics(out: &mut String, b: &Broker, rows: &[QueueRow]) {
    let a = &b.admin;
    let consumers: u64 = rows.iter().map(|r| r.consumers).sum();
    let g = a.publish_totals(b);
    let q = a.queue_totals(b);
    let proto = "{protocol=\"amqp091\"}";
    let qproto = "{protocol=\"amqp091\",queue_type=\"rabbit_classic_queue\"}";
    let received = g.count(Stat::Publish);
    let dropped = g.count(Stat::DropUnroutable);
    let returned = g.count(Stat::ReturnUnroutable);
    metric(
        out,
        "rabbitmq_global_consumers",
        "gauge",
        "Current number of consumers",
        proto,
        consumers,
    );
    for (name, help, labels, v) in [
        ("rabbitmq_global_messages_received_total", "Total number of messages received from publishers", proto, received),
        ("rabbitmq_global_messages_routed_total", "Total number of messages routed to queues or streams", proto, received.saturating_sub(dropped + returned)),
        ("rabbitmq_global_messages_unroutable_dropped_total", "Total number of messages published as non-mandatory into an exchange and dropped as unroutable", proto, dropped),
        ("rabbitmq_global_messages_unroutable_returned_total", "Total number of messages published as mandatory into an exchange and returned to the publisher as unroutable", proto, returned),
        ("rabbitmq_global_messages_confirmed_total", "Total number of messages confirmed to publishers", proto, g.count(Stat::Confirm)),
        // warren counts a confirm when it takes the publish on a confirm channel.
        ("rabbitmq_global_messages_received_confirm_total", "Total number of messages received from publishers expecting confirmations", proto, g.count(Stat::Confirm)),
        ("rabbitmq_global_messages_delivered_total", "Total number of messages delivered to consumers", qproto, q.deliver_get().0),
        ("rabbitmq_global_messages_delivered_consume_manual_ack_total", "Total number of messages delivered to consumers using basic.consume with manual acknowledgment", qproto, q.count(Stat::Deliver)),
        ("rabbitmq_global_messages_delivered_consume_auto_ack_total", "Total number of messages delivered to consumers using basic.consume with automatic acknowledgment", qproto, q.count(Stat::DeliverNoAck)),
        ("rabbitmq_global_messages_delivered_get_manual_ack_total", "Total number of messages delivered to consumers using basic.get with manual acknowledgment", qproto, q.count(Stat::Get)),
        ("rabbitmq_global_messages_delivered_get_auto_ack_total", "Total number of messages delivered to consumers using basic.get with automatic acknowledgment", qproto, q.count(Stat::GetNoAck)),
        ("rabbitmq_global_messages_get_empty_total", "Total number of times basic.get operations fetched no message", qproto, q.count(Stat::GetEmpty)),
        ("rabbitmq_global_messages_redelivered_total", "Total number of messages redelivered to consumers", qproto, q.count(Stat::Redeliver)),
        ("rabbitmq_global_messages_acknowledged_total", "Total number of messages acknowledged by consumers", qproto, q.count(Stat::Ack)),
    ] {
        metric(out, name, "counter", help, labels, v);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_query_values() {
        assert_eq!(percent_decode("%2F"), "/");
        assert_eq!(percent_decode("a+b"), "a b");
        assert_eq!(percent_decode("100%"), "100%");
    }

    /// The metric families of `/metrics` and `/metrics/per-object`, in page order.
    #[test]
    fn pages_keep_their_families_in_order() {
        const FAMILIES: &[&str] = &[
            "rabbitmq_identity_info",
            "rabbitmq_build_info",
            "rabbitmq_connections_opened_total",
            "rabbitmq_connections_closed_total",
            "rabbitmq_channels_opened_total",
            "rabbitmq_channels_closed_total",
            "rabbitmq_queues_declared_total",
            "rabbitmq_queues_created_total",
            "rabbitmq_queues_deleted_total",
            "rabbitmq_process_resident_memory_bytes",
            "rabbitmq_alarms_free_disk_space_watermark",
            "rabbitmq_alarms_memory_used_watermark",
            "rabbitmq_disk_space_available_bytes",
            "rabbitmq_disk_space_available_limit_bytes",
            "rabbitmq_resident_memory_limit_bytes",
            "rabbitmq_process_open_fds",
            "rabbitmq_process_open_tcp_sockets",
            "rabbitmq_process_max_fds",
            "rabbitmq_process_max_tcp_sockets",
            "rabbitmq_queue_messages_ready",
            "rabbitmq_queue_messages_unacked",
            "rabbitmq_queue_messages",
            "rabbitmq_queue_consumers",
            "rabbitmq_queue_messages_published_total",
            "rabbitmq_connections",
            "rabbitmq_channels",
            "rabbitmq_consumers",
            "rabbitmq_queues",
            "rabbitmq_global_consumers",
            "rabbitmq_global_messages_received_total",
            "rabbitmq_global_messages_routed_total",
            "rabbitmq_global_messages_unroutable_dropped_total",
            "rabbitmq_global_messages_unroutable_returned_total",
            "rabbitmq_global_messages_confirmed_total",
            "rabbitmq_global_messages_received_confirm_total",
            "rabbitmq_global_messages_delivered_total",
            "rabbitmq_global_messages_delivered_consume_manual_ack_total",
            "rabbitmq_global_messages_delivered_consume_auto_ack_total",
            "rabbitmq_global_messages_delivered_get_manual_ack_total",
            "rabbitmq_global_messages_delivered_get_auto_ack_total",
            "rabbitmq_global_messages_get_empty_total",
            "rabbitmq_global_messages_redelivered_total",
            "rabbitmq_global_messages_acknowledged_total",
            "rabbitmq_channel_consumers",
            "rabbitmq_channel_messages_unacked",
            "rabbitmq_channel_messages_unconfirmed",
            "rabbitmq_channel_messages_uncommitted",
            "rabbitmq_channel_acks_uncommitted",
            "rabbitmq_channel_prefetch",
            "rabbitmq_channel_messages_published_total",
            "rabbitmq_channel_messages_confirmed_total",
            "rabbitmq_channel_messages_unroutable_returned_total",
            "rabbitmq_channel_messages_unroutable_dropped_total",
            "rabbitmq_channel_get_ack_total",
            "rabbitmq_channel_get_total",
            "rabbitmq_channel_messages_delivered_ack_total",
            "rabbitmq_channel_messages_delivered_total",
            "rabbitmq_channel_messages_redelivered_total",
            "rabbitmq_channel_messages_acked_total",
            "rabbitmq_channel_get_empty_total",
        ];
        let b = Broker::new(warren_server::ServerConfig::default());
        for mode in [Mode::Aggregated, Mode::PerObject] {
            let page = render_mode(&b, mode);
            let types: Vec<&str> = page
                .lines()
                .filter_map(|l| l.strip_prefix("# TYPE "))
                .filter_map(|l| l.split(' ').next())
                .collect();
            assert_eq!(types, FAMILIES);
        }
        assert!(render(&b).contains("\nrabbitmq_queues 0\n"));
    }

    #[test]
    fn socket_limit_follows_the_file_limit() {
        assert_eq!(max_tcp_sockets(1_048_576), 943_628);
        assert_eq!(max_tcp_sockets(50), 0);
        assert!(max_open_files().is_some_and(|n| n > 0));
    }

    #[test]
    fn labels_are_escaped() {
        assert_eq!(label("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
    }
}

//! `status` (rabbitmqctl and rabbitmq-diagnostics) and the node facts the diagnostics
//! report: listeners and alarms, from `/api/overview` and `/api/nodes`.

use serde_json::{json, Value};

use super::{
    cli::{Ctx, Failure},
    plugins,
};

/// A listener as RabbitMQ describes it.
pub(crate) struct Listener {
    pub(crate) interface: String,
    pub(crate) port: u64,
    pub(crate) protocol: String,
}

impl Listener {
    pub(crate) fn purpose(&self) -> &'static str {
        match self.protocol.as_str() {
            "amqp" => "AMQP 0-9-1 and AMQP 1.0",
            "amqp/ssl" => "AMQP 0-9-1 and AMQP 1.0 over TLS",
            "http" => "HTTP API",
            "https" => "HTTP API over TLS (HTTPS)",
            "http/prometheus" => "Prometheus exporter API over HTTP",
            "clustering" => "inter-node and CLI tool communication",
            _ => "",
        }
    }

    pub(crate) fn line(&self) -> String {
        format!(
            "Interface: {}, port: {}, protocol: {}, purpose: {}",
            self.interface,
            self.port,
            self.protocol,
            self.purpose()
        )
    }
}

/// The listeners in an overview, sorted as RabbitMQ prints them (by port as text).
pub(crate) fn listeners(overview: &Value) -> Vec<Listener> {
    let mut out: Vec<Listener> = overview
        .get("listeners")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default()
        .iter()
        .map(|l| Listener {
            interface: l
                .get("ip_address")
                .and_then(Value::as_str)
                .map(|ip| {
                    if ip == "0.0.0.0" || ip == "::" {
                        "[::]"
                    } else {
                        ip
                    }
                })
                .unwrap_or("[::]")
                .to_string(),
            port: l.get("port").and_then(Value::as_u64).unwrap_or(0),
            protocol: l
                .get("protocol")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string(),
        })
        .collect();
    out.sort_by_key(|l| l.port.to_string());
    out
}

/// The alarms in effect, as RabbitMQ words them.
pub(crate) fn alarms(node: &Value, name: &str) -> Vec<String> {
    let mut out = Vec::new();
    if node.get("mem_alarm").and_then(Value::as_bool) == Some(true) {
        out.push(format!("Memory alarm on node {name}"));
    }
    if node.get("disk_free_alarm").and_then(Value::as_bool) == Some(true) {
        out.push(format!("Free disk space alarm on node {name}"));
    }
    out
}

/// The first node of `/api/nodes`.
pub(crate) fn node_info(ctx: &Ctx) -> Result<Value, Failure> {
    let nodes = ctx.call("GET", "/api/nodes", None)?;
    Ok(nodes.get(0).cloned().unwrap_or(Value::Null))
}

fn num(v: &Value, key: &str) -> u64 {
    v.get(key).and_then(Value::as_u64).unwrap_or(0)
}

fn gb(bytes: u64) -> String {
    let x = (bytes as f64 / 1e9 * 10000.0).round() / 10000.0;
    format!("{x} gb")
}

fn text(v: &Value, key: &str) -> String {
    match v.get(key) {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Null) | None => String::new(),
        Some(other) => other.to_string(),
    }
}

pub(crate) fn status(ctx: &Ctx) -> Result<(), Failure> {
    ctx.info(format!("Status of node {} ...", ctx.node()));
    let overview = ctx.call("GET", "/api/overview", None)?;
    let node = node_info(ctx)?;
    let totals = overview.get("object_totals").cloned().unwrap_or(json!({}));
    let vhosts = ctx.call("GET", "/api/vhosts", None)?;
    let vhost_count = vhosts.as_array().map_or(0, Vec::len);
    let alarms = alarms(&node, ctx.node());
    let listeners = listeners(&overview);
    if ctx.p.formatter() == "json" {
        let doc = json!({
            "active_plugins": plugins::ENABLED,
            "alarms": alarms,
            "data_directory": text(&node, "db_dir"),
            "disk_free": num(&node, "disk_free"),
            "disk_free_limit": num(&node, "disk_free_limit"),
            "file_descriptors": {"total_limit": num(&node, "fd_total"), "total_used": num(&node, "fd_used"),
                                  "sockets_used": num(&node, "sockets_used")},
            "listeners": listeners.iter().map(|l| json!({"interface": l.interface, "node": ctx.node(),
                "port": l.port, "protocol": l.protocol, "purpose": l.purpose()})).collect::<Vec<_>>(),
            "memory": {"total": {"rss": num(&node, "mem_used")}},
            "os": std::env::consts::OS,
            "pid": text(&node, "os_pid"),
            "product_name": text(&overview, "product_name"),
            "product_version": text(&overview, "product_version"),
            "rabbitmq_version": text(&overview, "rabbitmq_version"),
            "totals": {"connection_count": num(&totals, "connections"), "queue_count": num(&totals, "queues"),
                       "virtual_host_count": vhost_count},
            "uptime": num(&node, "uptime") / 1000,
            "vm_memory_high_watermark_limit": num(&node, "mem_limit"),
        });
        println!("{doc}");
        return Ok(());
    }
    let section = |title: &str| format!("\x1b[1m{title}\x1b[0m\n");
    let mut out = section("Runtime");
    out.push_str(&format!(
        "\nOS PID: {}\nOS: {}\nUptime (seconds): {}\nIs under maintenance?: false\nRabbitMQ version: {}\nRabbitMQ release series support status: supported\nNode name: {}\nProduct name: {}\nProduct version: {}\n",
        text(&node, "os_pid"),
        if cfg!(target_os = "linux") { "Linux" } else { std::env::consts::OS },
        num(&node, "uptime") / 1000,
        text(&overview, "rabbitmq_version"),
        ctx.node(),
        text(&overview, "product_name"),
        text(&overview, "product_version"),
    ));
    out.push_str(&format!("\n{}\nEnabled plugins:\n\n", section("Plugins")));
    for p in plugins::ENABLED {
        out.push_str(&format!(" * {p}\n"));
    }
    out.push_str(&format!(
        "\n{}\nNode data directory: {}\n",
        section("Data directory"),
        text(&node, "db_dir")
    ));
    out.push_str(&format!("\n{}\n", section("Alarms")));
    if alarms.is_empty() {
        out.push_str("(none)\n");
    }
    for a in &alarms {
        out.push_str(&format!("{a}\n"));
    }
    out.push_str(&format!(
        "\n{}\nTotal memory used: {}\nCalculation strategy: rss\nMemory high watermark setting: {}\n",
        section("Memory"),
        gb(num(&node, "mem_used")),
        gb(num(&node, "mem_limit")),
    ));
    out.push_str(&format!(
        "\n{}\nTotal: {}, limit: {}\nSockets: {}, limit: {}\n",
        section("File Descriptors"),
        num(&node, "fd_used"),
        num(&node, "fd_total"),
        num(&node, "sockets_used"),
        num(&node, "sockets_total").max(num(&node, "fd_total")),
    ));
    out.push_str(&format!(
        "\n{}\nLow free disk space watermark: {}\nFree disk space: {}\n",
        section("Free Disk Space"),
        gb(num(&node, "disk_free_limit")),
        gb(num(&node, "disk_free")),
    ));
    out.push_str(&format!(
        "\n{}\nConnection count: {}\nQueue count: {}\nVirtual host count: {vhost_count}\n",
        section("Totals"),
        num(&totals, "connections"),
        num(&totals, "queues"),
    ));
    out.push_str(&format!("\n{}\n", section("Listeners")));
    for l in &listeners {
        out.push_str(&format!("{}\n", l.line()));
    }
    print!("{out}");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listeners_and_alarms_as_rabbitmq_words_them() {
        let overview = json!({"listeners": [
            {"ip_address": "0.0.0.0", "port": 5672, "protocol": "amqp"},
            {"ip_address": "127.0.0.1", "port": 15692, "protocol": "http/prometheus"},
            {"ip_address": "::", "port": 15672, "protocol": "http"},
        ]});
        let lines: Vec<String> = listeners(&overview).iter().map(Listener::line).collect();
        assert_eq!(
            lines,
            [
                "Interface: [::], port: 15672, protocol: http, purpose: HTTP API",
                "Interface: 127.0.0.1, port: 15692, protocol: http/prometheus, purpose: Prometheus exporter API over HTTP",
                "Interface: [::], port: 5672, protocol: amqp, purpose: AMQP 0-9-1 and AMQP 1.0",
            ]
        );
        let node = json!({"mem_alarm": false, "disk_free_alarm": true});
        assert_eq!(
            alarms(&node, "rabbit@h"),
            ["Free disk space alarm on node rabbit@h"]
        );
        assert_eq!(gb(133_500_000), "0.1335 gb");
    }
}

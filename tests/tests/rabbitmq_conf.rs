//! RabbitMQ's own configuration, through the real binary: the `RABBITMQ_*` variables,
//! rabbitmq.conf with conf.d, enabled_plugins, and the errors RabbitMQ (and its Docker
//! image) print for bad ones. Texts were checked against RabbitMQ 3.10.8.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::{
    net::{IpAddr, UdpSocket},
    path::{Path, PathBuf},
    sync::atomic::{AtomicU32, Ordering},
};

use lapin::{Connection, ConnectionProperties};
use warren_integration::*;

static SEQ: AtomicU32 = AtomicU32::new(0);

/// A scratch directory, removed on drop.
struct Scratch(PathBuf);

impl Scratch {
    fn new(what: &str) -> Scratch {
        let dir = std::env::temp_dir().join(format!(
            "warren-rmqconf-{what}-{}-{}",
            std::process::id(),
            SEQ.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        Scratch(dir)
    }

    fn write(&self, rel: &str, text: &str) -> PathBuf {
        let path = self.0.join(rel);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, text).unwrap();
        path
    }

    fn path(&self, rel: &str) -> String {
        self.0.join(rel).to_str().unwrap().to_string()
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Ephemeral ports everywhere, so that the files decide.
const EPHEMERAL: &str = "listeners.tcp.default = 127.0.0.1:0\n\
                         management.tcp.ip = 127.0.0.1\nmanagement.tcp.port = 0\n\
                         prometheus.tcp.ip = 127.0.0.1\nprometheus.tcp.port = 0\n";

/// Starts warren reading `etc` as /etc/rabbitmq, with its data in `etc/data`.
fn start_with_etc(etc: &Scratch, env: &[(&str, &str)]) -> Broker {
    let etc_dir = etc.path("");
    Broker::start_configured(etc.0.join("data"), true, &["--rabbitmq-etc", &etc_dir], env)
}

fn base64(input: &[u8]) -> String {
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in input.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(T[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// GET on the management API as `user`; status and body.
fn get_as(port: u16, path: &str, user: &str, pass: &str) -> (u16, String) {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    let auth = base64(format!("{user}:{pass}").as_bytes());
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: localhost\r\nAuthorization: Basic {auth}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut raw = String::new();
    s.read_to_string(&mut raw).unwrap();
    let status = raw
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = raw.split_once("\r\n\r\n").map(|(_, b)| b).unwrap_or("");
    (status, body.to_string())
}

async fn can_login(url: &str) -> bool {
    Connection::connect(url, ConnectionProperties::default())
        .await
        .is_ok()
}

#[tokio::test]
async fn env_default_user_replaces_guest() {
    let broker = Broker::start_with(
        &[],
        &[
            ("RABBITMQ_DEFAULT_USER", "bob"),
            ("RABBITMQ_DEFAULT_PASS", "s3cret"),
            ("RABBITMQ_DEFAULT_VHOST", "app"),
            ("RABBITMQ_NODENAME", "rabbit@elsewhere"),
            ("RABBITMQ_ERLANG_COOKIE", "ignored"),
        ],
    );
    let url = format!("amqp://bob:s3cret@127.0.0.1:{}/app", broker.port);
    let conn = connect(&url).await;
    let ch = channel(&conn).await;
    let q = exclusive_queue(&ch).await;
    publish(&ch, "", &q, b"hello").await;
    assert_eq!(drain(&ch, &q).await, vec!["hello".to_string()]);
    assert!(!can_login(&format!("amqp://guest:guest@127.0.0.1:{}/app", broker.port)).await);
    let (status, body) = get_as(broker.http_port, "/api/whoami", "bob", "s3cret");
    assert_eq!(status, 200, "{body}");
    assert!(body.contains(r#""tags":["administrator"]"#), "{body}");
    let (_, perms) = get_as(broker.http_port, "/api/permissions", "bob", "s3cret");
    let perms: serde_json::Value = serde_json::from_str(&perms).unwrap();
    assert_eq!(perms.as_array().unwrap().len(), 1, "{perms}");
    assert_eq!(perms[0]["vhost"], "app");
    assert_eq!(perms[0]["configure"], ".*");
}

#[tokio::test]
async fn rabbitmq_conf_sets_listeners_management_and_default_user() {
    let etc = Scratch::new("conf");
    etc.write(
        "rabbitmq.conf",
        &format!(
            "# as a CI job would write it\n{EPHEMERAL}\
             default_user = app\ndefault_pass = app-pw\ndefault_vhost = ci\n\
             default_user_tags.monitoring = true\n\
             default_permissions.configure = ^app\\.\n\
             default_permissions.write = .*\ndefault_permissions.read = .*\n\
             log.console = true\nlog.console.level = info\n\
             management_agent.disable_metrics_collector = true\n"
        ),
    );
    let broker = start_with_etc(&etc, &[]);
    let log = broker.log().join("\n");
    assert!(log.contains("listening for AMQP on 127.0.0.1:"), "{log}");
    assert!(log.contains("listening for HTTP on 127.0.0.1:"), "{log}");
    assert!(!log.contains("WARN"), "no warnings for these keys: {log}");
    let url = format!("amqp://app:app-pw@127.0.0.1:{}/ci", broker.port);
    let conn = connect(&url).await;
    let ch = channel(&conn).await;
    // configure is limited to ^app\. : app.q may be declared, other.q not.
    declare_queue(&ch, "app.q", lapin::options::QueueDeclareOptions::default()).await;
    let refused = ch
        .queue_declare(
            "other.q".into(),
            lapin::options::QueueDeclareOptions::default(),
            lapin::types::FieldTable::default(),
        )
        .await;
    assert!(refused.is_err());
    assert!(!can_login(&format!("amqp://guest:guest@127.0.0.1:{}/ci", broker.port)).await);
    let (_, me) = get_as(broker.http_port, "/api/whoami", "app", "app-pw");
    assert!(me.contains(r#""tags":["monitoring"]"#), "{me}");
}

#[tokio::test]
async fn conf_d_files_are_read_in_lexical_order_after_the_main_file() {
    let etc = Scratch::new("confd");
    etc.write(
        "rabbitmq.conf",
        &format!("{EPHEMERAL}default_vhost = main\n"),
    );
    etc.write("conf.d/20-b.conf", "default_vhost = from-b\n");
    etc.write("conf.d/10-a.conf", "default_vhost = from-a\n");
    // Not *.conf: not read (it would stop the start).
    etc.write("conf.d/30-c.conf.disabled", "not valid\n");
    let broker = start_with_etc(&etc, &[]);
    let vhosts = api(broker.http_port, "/api/vhosts");
    let names: Vec<&str> = vhosts
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|v| v["name"].as_str())
        .collect();
    assert_eq!(names, vec!["from-b"], "{vhosts}");
    let log = broker.log().join("\n");
    assert!(log.contains("10-a.conf, "), "{log}");
}

#[tokio::test]
async fn rabbitmq_config_file_and_files_variables() {
    let dir = Scratch::new("vars");
    // RABBITMQ_CONFIG_FILE without its extension, as RabbitMQ allows.
    dir.write(
        "main/rabbitmq.conf",
        &format!("{EPHEMERAL}default_vhost = main\n"),
    );
    dir.write("extra/a", "default_vhost = from-dir\n");
    let broker = Broker::start_configured(
        dir.0.join("data"),
        true,
        &[],
        &[
            ("RABBITMQ_CONFIG_FILE", &dir.path("main/rabbitmq")),
            ("RABBITMQ_CONFIG_FILES", &dir.path("extra")),
        ],
    );
    assert!(api(broker.http_port, "/api/vhosts/from-dir").is_object());
}

#[tokio::test]
async fn warren_toml_wins_over_rabbitmq_conf() {
    let etc = Scratch::new("toml");
    etc.write(
        "rabbitmq.conf",
        &format!("{EPHEMERAL}default_vhost = conf\n"),
    );
    let toml = etc.write("warren.toml", "default_vhost = \"toml\"\n");
    let etc_dir = etc.path("");
    let broker = Broker::start_configured(
        etc.0.join("data"),
        true,
        &[
            "--rabbitmq-etc",
            &etc_dir,
            "--config",
            toml.to_str().unwrap(),
        ],
        &[],
    );
    assert!(api(broker.http_port, "/api/vhosts/toml").is_object());
}

#[test]
fn syntax_error_names_file_and_line() {
    let etc = Scratch::new("syntax");
    let file = etc.write(
        "rabbitmq.conf",
        "listeners.tcp.default = 5672\n# comment\nthis is not valid\n",
    );
    let (code, out) = run_to_exit(&["--rabbitmq-etc", &etc.path("")], &[]);
    assert_eq!(code, Some(2), "{out}");
    let expected = format!(
        "Syntax error in {} after line 3 column 1, parsing incomplete",
        file.display()
    );
    assert!(out.contains(&expected), "{out}");
}

#[test]
fn unknown_keys_and_bad_values_stop_the_start() {
    let etc = Scratch::new("unknown");
    let file = etc.write("conf.d/50-x.conf", "heartbeat = 10\nfoo.bar = 1\n");
    let (code, out) = run_to_exit(&["--rabbitmq-etc", &etc.path("")], &[]);
    assert_eq!(code, Some(2), "{out}");
    let expected = format!(
        "{}:2: Conf file attempted to set unknown variable: foo.bar",
        file.display()
    );
    assert!(out.contains(&expected), "{out}");

    etc.write("conf.d/50-x.conf", "channel_max = abc\n");
    let (code, out) = run_to_exit(&["--rabbitmq-etc", &etc.path("")], &[]);
    assert_eq!(code, Some(2), "{out}");
    assert!(
        out.contains("channel_max: \"abc\" cannot be converted to a(n) integer"),
        "{out}"
    );

    etc.write(
        "conf.d/50-x.conf",
        "load_definitions = /nonexistent/defs.json\n",
    );
    let (_, out) = run_to_exit(&["--rabbitmq-etc", &etc.path("")], &[]);
    assert!(
        out.contains("load_definitions invalid, file does not exist or cannot be read by the node"),
        "{out}"
    );
}

#[test]
fn deprecated_variables_are_refused_as_the_official_image_does() {
    let (code, out) = run_to_exit(
        &[],
        &[
            ("RABBITMQ_VM_MEMORY_HIGH_WATERMARK", "0.6"),
            ("RABBITMQ_SSL_CERTFILE", "/cert.pem"),
        ],
    );
    assert_eq!(code, Some(1), "{out}");
    assert_eq!(
        out,
        "error: RABBITMQ_SSL_CERTFILE is set but deprecated\n\
         error: RABBITMQ_VM_MEMORY_HIGH_WATERMARK is set but deprecated\n\
         error: deprecated environment variables detected\n\n\
         Please use a configuration file instead; visit https://www.rabbitmq.com/configure.html to learn more\n\n"
    );
}

#[test]
fn keys_and_plugins_warren_lacks_are_named_in_warnings() {
    let etc = Scratch::new("warn");
    let file = etc.write(
        "rabbitmq.conf",
        &format!(
            "{EPHEMERAL}cluster_formation.peer_discovery_backend = classic_config\n\
             ssl_options.secure_renegotiate = true\n"
        ),
    );
    etc.write(
        "enabled_plugins",
        "[rabbitmq_management,rabbitmq_prometheus,rabbitmq_shovel].\n",
    );
    let broker = start_with_etc(&etc, &[]);
    let log = broker.log().join("\n");
    let f = file.display();
    assert!(
        log.contains(&format!(
            "{f}:6: cluster_formation.peer_discovery_backend: a RabbitMQ setting warren does not support; ignored"
        )),
        "{log}"
    );
    assert!(
        log.contains("ssl_options.secure_renegotiate: a TLS option warren does not support"),
        "{log}"
    );
    assert!(log.contains("plugin rabbitmq_shovel (enabled in "), "{log}");
    assert!(!log.contains("plugin rabbitmq_prometheus"), "{log}");
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[tokio::test]
async fn node_port_and_mnesia_dir() {
    let dir = Scratch::new("node");
    let port = free_port().to_string();
    let mnesia = dir.path("mnesia-dir");
    let broker = Broker::start_configured(
        dir.0.join("unused"),
        false,
        &["--http-listen", "127.0.0.1:0", "--prometheus-listen", "off"],
        &[
            ("RABBITMQ_NODE_PORT", &port),
            ("RABBITMQ_NODE_IP_ADDRESS", "127.0.0.1"),
            ("RABBITMQ_MNESIA_DIR", &mnesia),
        ],
    );
    assert_eq!(broker.port.to_string(), port);
    assert!(Path::new(&mnesia).join("meta").is_dir());
    drop(broker);

    // RABBITMQ_MNESIA_BASE holds the data directory as BASE/warren.
    let base = dir.path("base");
    let broker = Broker::start_configured(
        dir.0.join("unused"),
        false,
        &[
            "--listen",
            "127.0.0.1:0",
            "--http-listen",
            "off",
            "--prometheus-listen",
            "off",
        ],
        &[("RABBITMQ_MNESIA_BASE", &base)],
    );
    assert!(Path::new(&base).join("warren").join("meta").is_dir());
    drop(broker);
}

/// An address of this machine that is not loopback, if it has one.
fn non_loopback_ip() -> Option<IpAddr> {
    let s = UdpSocket::bind("0.0.0.0:0").ok()?;
    s.connect("192.0.2.1:9").ok()?;
    let ip = s.local_addr().ok()?.ip();
    (!ip.is_loopback() && !ip.is_unspecified()).then_some(ip)
}

#[tokio::test]
async fn loopback_users_guest_false_lets_guest_in_from_anywhere() {
    let Some(ip) = non_loopback_ip() else {
        eprintln!("no non-loopback address here; skipped");
        return;
    };
    for (extra, allowed) in [("", false), ("loopback_users.guest = false\n", true)] {
        let etc = Scratch::new("loopback");
        etc.write(
            "rabbitmq.conf",
            &format!("{EPHEMERAL}listeners.tcp.default = 0\n{extra}"),
        );
        let broker = start_with_etc(&etc, &[]);
        let url = format!("amqp://guest:guest@{ip}:{}/%2f", broker.port);
        assert_eq!(can_login(&url).await, allowed, "{extra:?}");
    }
}

#[test]
fn log_file_gets_the_log_besides_standard_output() {
    let etc = Scratch::new("logfile");
    let logs = etc.path("logs");
    std::fs::create_dir_all(&logs).unwrap();
    // A relative name lands in RABBITMQ_LOG_BASE, as in RabbitMQ.
    etc.write(
        "rabbitmq.conf",
        &format!("{EPHEMERAL}log.file = warren-test.log\n"),
    );
    let broker = start_with_etc(&etc, &[("RABBITMQ_LOG_BASE", &logs)]);
    let console = broker.log().join("\n");
    assert!(console.contains("Server startup complete"), "{console}");
    let file = std::fs::read_to_string(etc.0.join("logs/warren-test.log")).unwrap();
    assert!(file.contains("Server startup complete"), "{file}");
    assert!(
        !file.contains('\u{1b}'),
        "no colour codes in the file: {file}"
    );
    drop(broker);

    // An absolute path is taken as is; one that cannot be opened is a warning, not a stop.
    let etc = Scratch::new("logfile-bad");
    etc.write(
        "rabbitmq.conf",
        &format!("{EPHEMERAL}log.file = /nonexistent-dir/warren.log\n"),
    );
    let broker = start_with_etc(&etc, &[]);
    let console = broker.log().join("\n");
    assert!(
        console.contains("cannot open log.file /nonexistent-dir/warren.log"),
        "{console}"
    );
    assert!(console.contains("Server startup complete"), "{console}");
}

//! The `warren` binary: runs the broker with configuration from flags, environment
//! variables, an optional TOML file and RabbitMQ's own rabbitmq.conf (see `config` for
//! the order of precedence).

mod config;
mod cookie;
mod ctl;
mod memory;
mod tls;
mod tools;

use std::{net::SocketAddr, path::PathBuf, process::ExitCode, sync::Arc};

use clap::Parser;
use config::Extras;
use tracing::{error, info, warn};
use warren_server::{Broker, ServerConfig, Shutdown};

#[derive(Debug, Parser)]
#[command(
    name = "warren",
    version,
    about = "A fast AMQP 0-9-1 broker for RabbitMQ clients"
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    /// AMQP listen address.
    #[arg(long, env = "WARREN_LISTEN", value_name = "ADDR:PORT")]
    listen: Option<SocketAddr>,
    /// Directory for persistent data.
    #[arg(long, env = "WARREN_DATA_DIR", value_name = "DIR")]
    data_dir: Option<PathBuf>,
    /// TOML configuration file.
    #[arg(long, env = "WARREN_CONFIG", value_name = "FILE")]
    config: Option<PathBuf>,
    /// Management HTTP API listen address (RabbitMQ's management.tcp.port), or `off`.
    #[arg(long, env = "WARREN_HTTP_LISTEN", value_name = "ADDR:PORT|off")]
    http_listen: Option<String>,
    /// Prometheus metrics listen address (RabbitMQ's prometheus.tcp.port), or `off`.
    #[arg(long, env = "WARREN_PROMETHEUS_LISTEN", value_name = "ADDR:PORT|off")]
    prometheus_listen: Option<String>,
    /// RabbitMQ definitions file (JSON) imported at boot, like RabbitMQ's load_definitions.
    #[arg(long, env = "RABBITMQ_DEFINITIONS_FILE", value_name = "FILE")]
    load_definitions: Option<PathBuf>,
    /// Start even though the metadata in the data directory is damaged: keep what is
    /// readable, copy the damaged files aside (`meta/*.damaged-<ms>`) and log what is lost.
    #[arg(long, env = "WARREN_REPAIR_METADATA")]
    repair_metadata: bool,
    /// For test suites only: message TTLs, x-expires and x-death times read a clock that
    /// `POST /api/warren/clock` advances or freezes. Never use it in production.
    #[arg(long, env = "WARREN_TEST_CLOCK")]
    test_clock: bool,
    /// Log filter (tracing's EnvFilter syntax), e.g. `info` or `warren_server=debug`;
    /// default: rabbitmq.conf's `log.console.level`, else `info`.
    #[arg(long, env = "WARREN_LOG", value_name = "FILTER")]
    log: Option<String>,
    /// Where rabbitmq.conf, conf.d/*.conf and enabled_plugins are looked for when the
    /// RABBITMQ_CONFIG_FILE(S) / RABBITMQ_ENABLED_PLUGINS_FILE variables do not name
    /// them; `off` reads none of them (the variables still apply).
    #[arg(long, env = "WARREN_RABBITMQ_ETC", value_name = "DIR|off")]
    rabbitmq_etc: Option<String>,
    /// AMQP over TLS listen address (RabbitMQ's listeners.ssl.default), or `off`.
    #[arg(long, env = "WARREN_LISTEN_TLS", value_name = "ADDR:PORT|off")]
    listen_tls: Option<String>,
    /// No plaintext AMQP listener (RabbitMQ's `listeners.tcp = none`).
    #[arg(long, env = "WARREN_NO_PLAINTEXT")]
    no_plaintext: bool,
    /// Server certificate chain, PEM (ssl_options.certfile).
    #[arg(long, env = "WARREN_TLS_CERT", value_name = "FILE")]
    tls_cert: Option<PathBuf>,
    /// Server private key, PEM: PKCS#8, PKCS#1 or SEC1 (ssl_options.keyfile).
    #[arg(long, env = "WARREN_TLS_KEY", value_name = "FILE")]
    tls_key: Option<PathBuf>,
    /// Passphrase of an encrypted --tls-key: PKCS#8 `ENCRYPTED PRIVATE KEY` or OpenSSL's
    /// legacy `Proc-Type: 4,ENCRYPTED` PEM (ssl_options.password).
    #[arg(
        long,
        env = "WARREN_TLS_PASSWORD",
        value_name = "PASSWORD",
        hide_env_values = true
    )]
    tls_password: Option<String>,
    /// CA certificates that client certificates must chain to (ssl_options.cacertfile).
    #[arg(long, env = "WARREN_TLS_CA", value_name = "FILE")]
    tls_ca: Option<PathBuf>,
    /// Whether to ask for client certificates (ssl_options.verify).
    #[arg(
        long,
        env = "WARREN_TLS_VERIFY",
        value_name = "verify_peer|verify_none"
    )]
    tls_verify: Option<String>,
    /// With verify_peer: refuse clients without a certificate (ssl_options.fail_if_no_peer_cert).
    #[arg(long, env = "WARREN_TLS_FAIL_IF_NO_PEER_CERT")]
    tls_fail_if_no_peer_cert: bool,
    /// TLS versions, comma-separated: tlsv1.2, tlsv1.3 (ssl_options.versions).
    #[arg(
        long,
        env = "WARREN_TLS_VERSIONS",
        value_delimiter = ',',
        value_name = "LIST"
    )]
    tls_versions: Vec<String>,
    /// Management API over TLS (management.ssl.port), or `off`; uses management.ssl.*
    /// files, else the AMQP TLS ones.
    #[arg(long, env = "WARREN_HTTPS_LISTEN", value_name = "ADDR:PORT|off")]
    https_listen: Option<String>,
    /// Prometheus over TLS (prometheus.ssl.port), or `off`.
    #[arg(
        long,
        env = "WARREN_PROMETHEUS_TLS_LISTEN",
        value_name = "ADDR:PORT|off"
    )]
    prometheus_tls_listen: Option<String>,
}

#[derive(Debug, clap::Subcommand)]
enum Command {
    /// Run the broker (the default when no subcommand is given).
    Serve,
    /// Load-test an AMQP 0-9-1 broker (warren or RabbitMQ), like RabbitMQ's PerfTest.
    Perf(warren_perf::PerfArgs),
    /// Administer a running broker through its HTTP API (rabbitmqctl / rabbitmqadmin style).
    Ctl(ctl::CtlArgs),
}

fn main() -> ExitCode {
    // rabbitmqctl & co. when called by those names (or `warren rabbitmqctl ...`).
    if let Some(code) = tools::dispatch() {
        return code;
    }
    let cli = Cli::parse();
    match cli.command {
        Some(Command::Perf(args)) => return run_perf(args),
        Some(Command::Ctl(args)) => return ctl::main(args),
        _ => {}
    }
    let env = config::Env::from_process();
    // Before anything else, as the official image's entrypoint does.
    if let Some(text) = config::rabbitmq::deprecated_env_error(&env) {
        eprint!("{text}");
        eprintln!();
        return ExitCode::FAILURE;
    }
    let loaded = config::load(&cli, &env);
    let filter = match &loaded {
        Ok(l) => l.log_filter.as_str(),
        Err(_) => "info",
    };
    let filter = tracing_subscriber::EnvFilter::try_new(filter)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let log_file = loaded.as_ref().ok().and_then(|l| l.extras.log_file.clone());
    let file_problem = init_logging(filter, log_file.as_deref());
    if let Some(problem) = file_problem {
        warn!("{problem}; logging to standard output only");
    }
    let (mut cfg, extras) = match loaded {
        Ok(l) => {
            log_notes(&l.notes);
            (l.cfg, l.extras)
        }
        Err(failure) => {
            log_notes(&failure.notes);
            for e in &failure.errors {
                error!("{e}");
            }
            return ExitCode::from(2);
        }
    };
    match cookie::for_broker() {
        Ok(c) => cfg.cli_cookie = Some(c),
        Err(e) => warn!("no CLI cookie ({e}): rabbitmqctl and rabbitmq-diagnostics need a user's credentials (WARREN_CTL_USER/WARREN_CTL_PASSWORD)"),
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            error!("cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(run(cfg, extras))
}

/// Logs to standard output and, with rabbitmq.conf's `log.file`, to that file (appended).
/// Returns why the file could not be opened, if so.
fn init_logging(
    filter: tracing_subscriber::EnvFilter,
    file: Option<&std::path::Path>,
) -> Option<String> {
    use tracing_subscriber::fmt::writer::MakeWriterExt;
    let opened = file.map(|path| {
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map_err(|e| format!("cannot open log.file {}: {e}", path.display()))
    });
    // Colours only on a terminal, and never into a file.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stdout())
        && std::env::var_os("NO_COLOR").is_none();
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false);
    match opened {
        Some(Ok(f)) => {
            builder
                .with_ansi(false)
                .with_writer(std::io::stdout.and(std::sync::Arc::new(f)))
                .init();
            None
        }
        Some(Err(problem)) => {
            builder.with_ansi(ansi).init();
            Some(problem)
        }
        None => {
            builder.with_ansi(ansi).init();
            None
        }
    }
}

fn log_notes(notes: &[config::Note]) {
    for note in notes {
        if note.warning {
            warn!("{}", note.text);
        } else {
            info!("{}", note.text);
        }
    }
}

fn run_perf(args: warren_perf::PerfArgs) -> ExitCode {
    if args.relay_floor {
        let duration = std::time::Duration::from_secs_f64(args.duration.max(0.1));
        return match warren_perf::relay::relay_floor(args.size, duration) {
            Ok(summary) => {
                match serde_json::to_string(&summary) {
                    Ok(json) if args.json => println!("{json}"),
                    _ => println!(
                        "relay floor, {} B bodies: {:.0} msg/s, {:.1} MB/s of bodies",
                        summary.size, summary.received_rate, summary.body_mb_per_s
                    ),
                }
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("perf: relay: {e}");
                ExitCode::FAILURE
            }
        };
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(warren_perf::run(args)) {
        Ok(_) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("perf: {e}");
            ExitCode::FAILURE
        }
    }
}

/// The AMQP listeners, plaintext and TLS, bound; `None` (logged) when one cannot listen.
async fn bind_amqp(
    cfg: &ServerConfig,
    extras: &Extras,
    tls: &tls::Loaded,
) -> Option<(
    Option<tokio::net::TcpListener>,
    Option<tokio::net::TcpListener>,
)> {
    let listener = if extras.amqp_tcp {
        match tokio::net::TcpListener::bind(cfg.listen).await {
            Ok(l) => Some(l),
            Err(e) => {
                error!("cannot listen on {}: {e}", cfg.listen);
                return None;
            }
        }
    } else {
        None
    };
    let amqps_listener = match &tls.amqps {
        Some((addr, _)) => match tokio::net::TcpListener::bind(addr).await {
            Ok(l) => Some(l),
            Err(e) => {
                error!("cannot listen for AMQPS on {addr}: {e}");
                return None;
            }
        },
        None => None,
    };
    Some((listener, amqps_listener))
}

/// The bound AMQP listeners as the server takes them; the TLS one is registered for the
/// management API's listener list.
fn amqp_listeners(
    listener: Option<tokio::net::TcpListener>,
    amqps_listener: Option<tokio::net::TcpListener>,
    tls: &tls::Loaded,
    broker: &Arc<Broker>,
) -> Vec<warren_server::AmqpListener> {
    let mut amqp = Vec::new();
    if let Some(l) = listener {
        amqp.push(warren_server::AmqpListener {
            listener: l,
            tls: None,
        });
    }
    if let (Some(l), Some((_, server))) = (amqps_listener, &tls.amqps) {
        match l.local_addr() {
            Ok(bound) => {
                broker
                    .admin
                    .add_tls_listener("amqp/ssl", bound, server.clone());
                info!("listening for AMQPS on {bound}");
            }
            Err(e) => warn!("AMQPS listener address unknown: {e}"),
        }
        amqp.push(warren_server::AmqpListener {
            listener: l,
            tls: Some(server.clone()),
        });
    }
    amqp
}

/// The management API and Prometheus listeners, plaintext and TLS; `None` (logged) when
/// one cannot listen.
async fn start_http_listeners(
    extras: &Extras,
    tls: &tls::Loaded,
    broker: &Arc<Broker>,
    shutdown: &Shutdown,
) -> Option<Vec<tokio::task::JoinHandle<()>>> {
    let mut side = Vec::new();
    for (what, addr, metrics) in [
        ("HTTP", extras.http_listen, false),
        ("Prometheus", extras.prometheus_listen, true),
    ] {
        let Some(addr) = addr else { continue };
        let l = match tokio::net::TcpListener::bind(addr).await {
            Ok(l) => l,
            Err(e) => {
                error!("cannot listen for {what} on {addr}: {e}");
                return None;
            }
        };
        let bound = l.local_addr().map_or(addr, |a| a);
        info!("listening for {what} on {bound}");
        let stop = shutdown.subscribe();
        side.push(if metrics {
            tokio::spawn(warren_http::serve_metrics(l, broker.clone(), stop))
        } else {
            tokio::spawn(warren_http::serve(l, broker.clone(), stop))
        });
    }
    let management = warren_http::TlsApp::Management {
        sample: extras.http_listen.is_none(),
    };
    for (what, slot, app) in [
        ("HTTPS", &tls.https, management),
        (
            "Prometheus TLS",
            &tls.prometheus_tls,
            warren_http::TlsApp::Prometheus,
        ),
    ] {
        let Some((addr, server)) = slot else { continue };
        let l = match tokio::net::TcpListener::bind(addr).await {
            Ok(l) => l,
            Err(e) => {
                error!("cannot listen for {what} on {addr}: {e}");
                return None;
            }
        };
        let bound = l.local_addr().map_or(*addr, |a| a);
        info!("listening for {what} on {bound}");
        let stop = shutdown.subscribe();
        side.push(tokio::spawn(warren_http::serve_tls(
            l,
            broker.clone(),
            stop,
            server.clone(),
            app,
        )));
    }
    Some(side)
}

async fn run(cfg: ServerConfig, extras: Extras) -> ExitCode {
    if let Err(e) = std::fs::create_dir_all(&cfg.data_dir) {
        error!(
            "cannot create data directory {}: {e}",
            cfg.data_dir.display()
        );
        return ExitCode::FAILURE;
    }
    // Held until the broker exits: a second warren on this directory would corrupt it.
    let _data_dir_lock = match warren_server::persist::lock::lock(&cfg.data_dir) {
        Ok(lock) => lock,
        Err(e) => {
            error!("{e}");
            return ExitCode::FAILURE;
        }
    };
    // TLS files first: a missing or mismatched file stops the start, named.
    let tls = match tls::load_all(&extras) {
        Ok(t) => t,
        Err(e) => {
            error!("{e}");
            return ExitCode::FAILURE;
        }
    };
    let Some((listener, amqps_listener)) = bind_amqp(&cfg, &extras, &tls).await else {
        return ExitCode::FAILURE;
    };
    let local = listener
        .as_ref()
        .and_then(|l| l.local_addr().ok())
        .unwrap_or(cfg.listen);
    if cfg.test_clock {
        warn!("test clock enabled: TTLs and x-expires follow POST /api/warren/clock, not the wall clock; for test suites only, never for production");
    }
    // With definitions to import, RabbitMQ creates no default user or vhost: nor do we.
    let broker = if extras.load_definitions.is_some() {
        Broker::new_blank(cfg)
    } else {
        Broker::new(cfg)
    };
    let meta_dir = broker.config.data_dir.join("meta");
    match warren_server::recovery::metadata::open(&broker, &meta_dir, extras.repair_metadata) {
        Ok(n) => info!(changes = n, "durable metadata restored"),
        Err(e) => {
            error!("cannot open metadata in {}: {e}", meta_dir.display());
            return ExitCode::FAILURE;
        }
    }
    let sync = match broker.config.sync_policy() {
        Ok(s) => s,
        Err(e) => {
            error!("{e}");
            return ExitCode::FAILURE;
        }
    };
    let store_dir = broker.config.data_dir.clone();
    if let Err(e) = warren_server::recovery::messages::open(&broker, &store_dir, sync) {
        error!(
            "cannot open the message store in {}: {e}",
            store_dir.display()
        );
        return ExitCode::FAILURE;
    }
    if listener.is_some() {
        broker
            .admin
            .amqp_port
            .store(local.port(), std::sync::atomic::Ordering::Relaxed);
    }
    if let Some(path) = &extras.load_definitions {
        if let Err(e) = load_definitions(&broker, path) {
            error!("{e}");
            return ExitCode::FAILURE;
        }
        info!("imported definitions from {}", path.display());
    }
    memory::watch(
        broker.persistence.resident.clone(),
        broker.config.memory_budget_mb,
    );
    let shutdown = Shutdown::new();
    let broker_handle = broker.clone();
    let Some(side) = start_http_listeners(&extras, &tls, &broker, &shutdown).await else {
        return ExitCode::FAILURE;
    };
    let amqp = amqp_listeners(listener, amqps_listener, &tls, &broker);
    tls::watch_reload(tls.servers());
    let server = tokio::spawn(warren_server::serve_listeners(
        amqp,
        broker,
        shutdown.clone(),
    ));
    if extras.amqp_tcp {
        info!(
            "warren {} (RabbitMQ {} compatible) listening for AMQP on {local}",
            env!("CARGO_PKG_VERSION"),
            warren_server::ServerConfig::default().rabbitmq_version
        );
    } else {
        info!(
            "warren {} (RabbitMQ {} compatible): no plaintext AMQP listener (listeners.tcp = none)",
            env!("CARGO_PKG_VERSION"),
            warren_server::ServerConfig::default().rabbitmq_version
        );
    }
    // Testcontainers' RabbitMQ modules wait for exactly this text.
    info!("Server startup complete; 0 plugins started.");
    wait_for_signal().await;
    info!("stopping: closing connections");
    shutdown.trigger();
    let _ = server.await;
    for task in side {
        let _ = task.await;
    }
    if let Some(storage) = broker_handle.persistence.storage() {
        storage.close();
    }
    info!("stopped");
    ExitCode::SUCCESS
}

/// Imports a RabbitMQ definitions file; a bad file stops the boot with the entry named,
/// and so does a metadata write that fails during the import (the entries before it
/// stay recorded; importing the file at the next boot completes it).
fn load_definitions(broker: &Broker, path: &std::path::Path) -> Result<(), String> {
    use warren_server::definitions::DefinitionsError;
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read definitions file {}: {e}", path.display()))?;
    let doc: serde_json::Value = serde_json::from_str(&text)
        .map_err(|e| format!("invalid definitions file {}: {e}", path.display()))?;
    warren_server::definitions::import(broker, &doc, None).map_err(|e| match e {
        DefinitionsError::Internal(_) => format!(
            "cannot record the definitions of {} in {}: {e}",
            path.display(),
            broker.config.data_dir.join("meta").display()
        ),
        _ => format!("definitions file {} refused: {e}", path.display()),
    })
}

async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = tokio::signal::ctrl_c() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

//! AMQP over TLS, EXTERNAL login, HTTPS management and certificate reload, against a
//! real warren with certificates generated here (tests/src/certs.rs). What RabbitMQ
//! 3.10.8 answers in the same set-ups is in tests/fixtures/tls/rabbitmq-3.10.8.txt.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::{path::Path, sync::Arc, time::Duration};

use lapin::protocol::{connection, AMQPClass};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use warren_integration::{
    certs::{all_versions, Issued, Pki},
    *,
};

fn path(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// warren with an AMQPS listener on an ephemeral port, the given TLS flags added.
fn start_tls(pki: &Pki, extra: &[&str], env: &[(&str, &str)]) -> (Broker, u16) {
    let mut args = vec![
        "--listen-tls",
        "127.0.0.1:0",
        "--tls-cert",
        path(&pki.server.cert),
        "--tls-key",
        path(&pki.server.key),
        "--tls-ca",
        path(&pki.ca.pem),
    ];
    args.extend_from_slice(extra);
    let broker = Broker::start_with(&args, env);
    let port = broker.listen_port("AMQPS");
    assert_ne!(port, 0, "AMQPS listener: {:?}", broker.log());
    (broker, port)
}

/// The mechanisms of connection.start, after the protocol header.
async fn start_mechanisms<S: AsyncRead + AsyncWrite + Unpin>(s: &mut S) -> String {
    s.write_all(PROTOCOL_HEADER).await.unwrap();
    match read_method(s).await {
        (0, AMQPClass::Connection(connection::AMQPMethod::Start(start))) => {
            String::from_utf8_lossy(start.mechanisms.as_bytes()).into_owned()
        }
        other => panic!("expected connection.start, got {other:?}"),
    }
}

/// start-ok with `mechanism` and `response`; then tune-ok and open on "/": the reply to
/// open (or the close that came instead).
async fn login<S: AsyncRead + AsyncWrite + Unpin>(
    s: &mut S,
    mechanism: &str,
    response: &[u8],
) -> AMQPClass {
    // authentication_failure_close: a refused login gets connection.close (403), not a
    // silent close, as pika and the Java client ask for.
    let mut caps = shortstr("authentication_failure_close");
    caps.extend_from_slice(b"t\x01");
    let mut entries = shortstr("capabilities");
    entries.push(b'F');
    entries.extend_from_slice(&(caps.len() as u32).to_be_bytes());
    entries.extend(caps);
    let mut args = (entries.len() as u32).to_be_bytes().to_vec();
    args.extend(entries);
    args.extend(shortstr(mechanism));
    args.extend_from_slice(&(response.len() as u32).to_be_bytes());
    args.extend_from_slice(response);
    args.extend(shortstr("en_US"));
    write_method(s, 0, 10, 11, &args).await;
    match read_method(s).await {
        (0, AMQPClass::Connection(connection::AMQPMethod::Tune(t))) => {
            write_method(s, 0, 10, 31, &tune_ok_args(t.channel_max, t.frame_max)).await;
            write_method(s, 0, 10, 40, &open_args("/")).await;
            read_method(s).await.1
        }
        (_, other) => other,
    }
}

/// Reads until the peer closes; what it sent and whether it closed within `limit`.
async fn drain<S: AsyncRead + Unpin>(s: &mut S, limit: Duration) -> (Vec<u8>, bool) {
    let mut got = Vec::new();
    let mut buf = [0u8; 512];
    let closed = tokio::time::timeout(limit, async {
        loop {
            match s.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => got.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await
    .is_ok();
    (got, closed)
}

/// A TLS connection that must be refused: the handshake fails, or the first read does
/// (TLS 1.3 reports a refused client certificate after the client's side is done).
async fn refused(pki: &Pki, port: u16, config: Arc<rustls::ClientConfig>) -> bool {
    match pki.connect(port, config).await {
        Err(_) => true,
        Ok(mut s) => {
            let _ = s.write_all(PROTOCOL_HEADER).await;
            let (got, closed) = drain(&mut s, Duration::from_secs(5)).await;
            closed && got.is_empty()
        }
    }
}

#[tokio::test]
async fn amqps_beside_plaintext_with_rabbitmq_connection_details() {
    let pki = Pki::generate("side");
    let (broker, tls_port) = start_tls(&pki, &["--tls-verify", "verify_peer"], &[]);
    let cfg = pki.client_config(false, Some(&pki.client), all_versions());
    let mut tls = pki.connect(tls_port, cfg).await.unwrap();
    // Without auth_mechanisms listing EXTERNAL, RabbitMQ offers PLAIN and AMQPLAIN only.
    assert_eq!(start_mechanisms(&mut tls).await, "PLAIN AMQPLAIN");
    let opened = login(&mut tls, "PLAIN", b"\0guest\0guest").await;
    assert!(
        matches!(
            opened,
            AMQPClass::Connection(connection::AMQPMethod::OpenOk(_))
        ),
        "{opened:?}"
    );
    // TLS 1.2 without a client certificate (verify_peer allows it unless
    // fail_if_no_peer_cert) on a second connection, plaintext on a third.
    let cfg12 = pki.client_config(false, None, &[&rustls::version::TLS12]);
    let mut tls12 = pki.connect(tls_port, cfg12).await.unwrap();
    start_mechanisms(&mut tls12).await;
    let opened = login(&mut tls12, "PLAIN", b"\0guest\0guest").await;
    assert!(matches!(
        opened,
        AMQPClass::Connection(connection::AMQPMethod::OpenOk(_))
    ));
    let _plain = raw_open_connection(broker.port, false).await;

    let conns = within("connections listed", async {
        loop {
            let list = api(broker.http_port, "/api/connections");
            if list.as_array().map_or(0, Vec::len) == 3 {
                return list;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
    let on_tls: Vec<&serde_json::Value> = conns
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["port"] == tls_port)
        .collect();
    assert_eq!(on_tls.len(), 2);
    let with_cert = on_tls
        .iter()
        .find(|c| c["ssl_protocol"] == "tlsv1.3")
        .unwrap();
    assert_eq!(with_cert["ssl"], true);
    assert_eq!(with_cert["ssl_key_exchange"], "any");
    assert_eq!(with_cert["ssl_hash"], "aead");
    assert_eq!(
        with_cert["peer_cert_subject"],
        "CN=client,OU=Clients,O=Warren Test"
    );
    assert_eq!(
        with_cert["peer_cert_issuer"],
        "CN=Warren Test CA,O=Warren Test"
    );
    let validity = with_cert["peer_cert_validity"].as_str().unwrap();
    assert!(
        validity.contains("Z - ") && validity.len() == 43,
        "{validity}"
    );
    let v12 = on_tls
        .iter()
        .find(|c| c["ssl_protocol"] == "tlsv1.2")
        .unwrap();
    assert_eq!(v12["ssl_key_exchange"], "ecdhe_ecdsa");
    assert_eq!(v12["peer_cert_subject"], "");
    let plain = conns
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["port"] == broker.port)
        .unwrap();
    assert_eq!(plain["ssl"], false);

    let overview = api(broker.http_port, "/api/overview");
    let ssl = overview["listeners"]
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["protocol"] == "amqp/ssl")
        .expect("amqp/ssl listener");
    assert_eq!(ssl["port"], tls_port);
    assert_eq!(ssl["socket_opts"]["verify"], "verify_peer");
    assert_eq!(ssl["socket_opts"]["certfile"], path(&pki.server.cert));

    // `rabbitmq-diagnostics listeners` reads the same.
    let env = [("WARREN_CTL_HOST", format!("127.0.0.1:{}", broker.http_port))];
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let (code, out) = run_to_exit(&["rabbitmq-diagnostics", "listeners"], &env);
    assert_eq!(code, Some(0), "{out}");
    assert!(
        out.contains(&format!(
            "Interface: 127.0.0.1, port: {tls_port}, protocol: amqp/ssl, purpose: AMQP 0-9-1 and AMQP 1.0 over TLS"
        )),
        "{out}"
    );
}

#[tokio::test]
async fn refusals_and_clean_closes() {
    let pki = Pki::generate("refuse");
    let (broker, tls_port) = start_tls(
        &pki,
        &["--tls-verify", "verify_peer", "--tls-fail-if-no-peer-cert"],
        &[],
    );
    let good = pki.client_config(false, Some(&pki.client), all_versions());
    assert!(
        !refused(&pki, tls_port, good).await,
        "a valid client certificate"
    );
    let none = pki.client_config(false, None, all_versions());
    assert!(refused(&pki, tls_port, none).await, "no certificate");
    let stranger = pki.client_config(false, Some(&pki.stranger), all_versions());
    assert!(refused(&pki, tls_port, stranger).await, "unknown CA");
    let expired = pki.client_config(false, Some(&pki.expired), all_versions());
    assert!(
        refused(&pki, tls_port, expired).await,
        "expired certificate"
    );
    // The client refuses a server it cannot verify.
    let wrong_ca = pki.client_config(true, Some(&pki.client), all_versions());
    assert!(pki.connect(tls_port, wrong_ca).await.is_err());

    // Plaintext AMQP on the TLS port: a TLS alert, then the socket closes at once.
    let mut plain = tokio::net::TcpStream::connect(("127.0.0.1", tls_port))
        .await
        .unwrap();
    plain.write_all(PROTOCOL_HEADER).await.unwrap();
    let (got, closed) = drain(&mut plain, Duration::from_secs(2)).await;
    assert!(closed, "no hang");
    assert_eq!(got.first(), Some(&0x15), "a TLS alert record: {got:?}");
    // TLS on the plaintext port: the handshake fails quickly (warren answers the
    // ClientHello with AMQP's protocol header, as RabbitMQ does).
    let tls_on_plain = pki.client_config(false, Some(&pki.client), all_versions());
    let attempt = tokio::time::timeout(
        Duration::from_secs(5),
        pki.connect(broker.port, tls_on_plain),
    )
    .await;
    assert!(matches!(attempt, Ok(Err(_))), "refused without a hang");
    wait_log(&broker, "TLS handshake failed").await;
    // Still serving.
    let mut ok = pki
        .connect(
            tls_port,
            pki.client_config(false, Some(&pki.client), all_versions()),
        )
        .await
        .unwrap();
    assert_eq!(start_mechanisms(&mut ok).await, "PLAIN AMQPLAIN");
}

#[tokio::test]
async fn handshake_timeout_closes_a_silent_tls_client() {
    let pki = Pki::generate("silent");
    let conf = pki.dir.join("timeout.conf");
    std::fs::write(&conf, "ssl_handshake_timeout = 1000\n").unwrap();
    let (_broker, tls_port) = start_tls(&pki, &[], &[("RABBITMQ_CONFIG_FILE", path(&conf))]);
    let mut silent = tokio::net::TcpStream::connect(("127.0.0.1", tls_port))
        .await
        .unwrap();
    let started = std::time::Instant::now();
    let (_, closed) = drain(&mut silent, Duration::from_secs(5)).await;
    assert!(closed, "closed within the handshake timeout");
    assert!(
        started.elapsed() >= Duration::from_millis(900),
        "{:?}",
        started.elapsed()
    );
}

/// rabbitmq.conf with EXTERNAL, as the fixture's RabbitMQ ran.
fn external_conf(pki: &Pki, extra: &str) -> (std::path::PathBuf, std::path::PathBuf) {
    let conf = pki.dir.join("rabbitmq.conf");
    std::fs::write(
        &conf,
        format!(
            "listeners.tcp.default = 127.0.0.1:0\nlisteners.ssl.default = 127.0.0.1:0\n\
             ssl_options.cacertfile = {}\nssl_options.certfile = {}\nssl_options.keyfile = {}\n\
             ssl_options.verify = verify_peer\nssl_options.fail_if_no_peer_cert = false\n\
             auth_mechanisms.1 = PLAIN\nauth_mechanisms.2 = AMQPLAIN\nauth_mechanisms.3 = EXTERNAL\n{extra}",
            path(&pki.ca.pem),
            path(&pki.server.cert),
            path(&pki.server.key)
        ),
    )
    .unwrap();
    let plugins = pki.dir.join("enabled_plugins");
    std::fs::write(
        &plugins,
        "[rabbitmq_management,rabbitmq_auth_mechanism_ssl].\n",
    )
    .unwrap();
    (conf, plugins)
}

fn start_external(pki: &Pki, extra: &str) -> (Broker, u16) {
    let (conf, plugins) = external_conf(pki, extra);
    let broker = Broker::start_configured(
        std::env::temp_dir().join(format!(
            "warren-tls-ext-{}-{}",
            std::process::id(),
            extra.len()
        )),
        true,
        &["--http-listen", "127.0.0.1:0", "--prometheus-listen", "off"],
        &[
            ("RABBITMQ_CONFIG_FILE", path(&conf)),
            ("RABBITMQ_ENABLED_PLUGINS_FILE", path(&plugins)),
        ],
    );
    let port = broker.listen_port("AMQPS");
    assert_ne!(port, 0, "{:?}", broker.log());
    (broker, port)
}

fn add_user(broker: &Broker, user: &str) {
    let name = user
        .replace(',', "%2C")
        .replace('=', "%3D")
        .replace(' ', "%20");
    let (s, b) = http_request(
        broker.http_port,
        "PUT",
        &format!("/api/users/{name}"),
        Some(r#"{"password":"unused","tags":""}"#),
    );
    assert!(s < 300, "{s} {b}");
    let (s, b) = http_request(
        broker.http_port,
        "PUT",
        &format!("/api/permissions/%2F/{name}"),
        Some(r#"{"configure":".*","write":".*","read":".*"}"#),
    );
    assert!(s < 300, "{s} {b}");
}

/// EXTERNAL over a new TLS connection: the reply to open (or the close instead), and the
/// stream, kept open by the caller while it looks at the connection.
async fn external_login(
    pki: &Pki,
    port: u16,
    id: Option<&Issued>,
) -> (
    AMQPClass,
    tokio_rustls::client::TlsStream<tokio::net::TcpStream>,
) {
    let mut s = pki
        .connect(port, pki.client_config(false, id, all_versions()))
        .await
        .unwrap();
    assert_eq!(start_mechanisms(&mut s).await, "PLAIN AMQPLAIN EXTERNAL");
    let reply = login(&mut s, "EXTERNAL", b"").await;
    (reply, s)
}

/// Waits (bounded) until the broker has logged a line containing `text`.
async fn wait_log(broker: &Broker, text: &str) {
    within(text, async {
        while !broker.log().iter().any(|l| l.contains(text)) {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
}

fn close_text(m: &AMQPClass) -> (u16, String) {
    match m {
        AMQPClass::Connection(connection::AMQPMethod::Close(c)) => {
            (c.reply_code, c.reply_text.to_string())
        }
        other => panic!("expected connection.close, got {other:?}"),
    }
}

#[tokio::test]
async fn external_login_takes_the_certificate_subject() {
    let pki = Pki::generate("external");
    let (broker, port) = start_external(&pki, "");
    let refusal = (
        403,
        "ACCESS_REFUSED - Login was refused using authentication mechanism EXTERNAL. For details see the broker logfile.".to_string(),
    );
    // No such user yet; then no certificate at all: RabbitMQ's 403 both times.
    assert_eq!(
        close_text(&external_login(&pki, port, Some(&pki.client)).await.0),
        refusal
    );
    assert_eq!(
        close_text(&external_login(&pki, port, None).await.0),
        refusal
    );
    // The broker logs before it answers; the harness reads its output in the background.
    for line in [
        "EXTERNAL login refused: user 'CN=client,OU=Clients,O=Warren Test' - invalid credentials",
        "EXTERNAL login refused: connection peer presented no TLS (x.509) certificate",
    ] {
        wait_log(&broker, line).await;
    }
    add_user(&broker, "CN=client,OU=Clients,O=Warren Test");
    let (opened, _open) = external_login(&pki, port, Some(&pki.client)).await;
    assert!(
        matches!(
            opened,
            AMQPClass::Connection(connection::AMQPMethod::OpenOk(_))
        ),
        "{opened:?}"
    );
    let conns = api(broker.http_port, "/api/connections");
    let c = &conns.as_array().unwrap()[0];
    assert_eq!(c["auth_mechanism"], "EXTERNAL");
    assert_eq!(c["user"], "CN=client,OU=Clients,O=Warren Test");
    // Plaintext never offers EXTERNAL; asking for it is RabbitMQ's command_invalid.
    let mut plain = raw_connect(broker.port).await;
    match read_method(&mut plain).await {
        (0, AMQPClass::Connection(connection::AMQPMethod::Start(s))) => {
            assert_eq!(s.mechanisms.as_bytes(), b"PLAIN AMQPLAIN")
        }
        other => panic!("{other:?}"),
    }
    // RabbitMQ's rabbit_reader refuses it ("invalid authentication mechanism") before
    // the handshake completes: the socket closes after a delay, with no close method.
    let mut args = client_properties(false);
    args.extend(shortstr("EXTERNAL"));
    args.extend_from_slice(&0u32.to_be_bytes());
    args.extend(shortstr("en_US"));
    write_method(&mut plain, 0, 10, 11, &args).await;
    let (got, closed) = drain(&mut plain, Duration::from_secs(6)).await;
    assert!(closed && got.is_empty(), "{got:?}");
    wait_log(&broker, "invalid authentication mechanism 'EXTERNAL'").await;
}

#[tokio::test]
async fn external_login_by_common_name() {
    let pki = Pki::generate("external-cn");
    let (broker, port) = start_external(&pki, "ssl_cert_login_from = common_name\n");
    add_user(&broker, "client");
    let (opened, _open) = external_login(&pki, port, Some(&pki.client)).await;
    assert!(
        matches!(
            opened,
            AMQPClass::Connection(connection::AMQPMethod::OpenOk(_))
        ),
        "{opened:?}"
    );
}

#[tokio::test]
async fn tls_only_https_management_and_reload() {
    let pki = Pki::generate("only");
    let (broker, tls_port) = start_tls(
        &pki,
        &["--no-plaintext", "--https-listen", "127.0.0.1:0"],
        &[],
    );
    assert_eq!(broker.port, 0, "no plaintext AMQP listener");
    let https = broker.listen_port("HTTPS");
    assert_ne!(https, 0);
    let overview = api(broker.http_port, "/api/overview");
    let protocols: Vec<&str> = overview["listeners"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|l| l["protocol"].as_str())
        .collect();
    assert!(
        !protocols.contains(&"amqp")
            && protocols.contains(&"amqp/ssl")
            && protocols.contains(&"https"),
        "{protocols:?}"
    );

    // The management API over HTTPS, through the CLI tools with a CA file.
    let host = format!("https://localhost:{https}");
    let env = [
        ("WARREN_CTL_HOST", host.as_str()),
        ("WARREN_CTL_CACERT", path(&pki.ca.pem)),
    ];
    let (code, out) = run_to_exit(
        &["rabbitmq-diagnostics", "check_certificate_expiration"],
        &env,
    );
    assert_eq!(code, Some(0), "{out}");
    assert!(
        out.contains("No certificates are expiring within 4 weeks."),
        "{out}"
    );
    // rcgen's certificates are valid until 4096: within 3000 years they expire.
    let (code, out) = run_to_exit(
        &[
            "rabbitmq-diagnostics",
            "check_certificate_expiration",
            "--within",
            "3000",
            "--unit",
            "years",
        ],
        &env,
    );
    assert_eq!(code, Some(69), "{out}");
    assert!(
        out.contains(&format!("port: {tls_port}, protocol: :\"amqp/ssl\"")),
        "{out}"
    );
    assert!(
        out.contains("certfile_expires_on: [\"4096-01-01 00:00:00\"]"),
        "{out}"
    );
    // Without the CA the tools refuse the server.
    let (code, _) = run_to_exit(
        &["rabbitmq-diagnostics", "check_certificate_expiration"],
        &[
            ("WARREN_CTL_HOST", host.as_str()),
            ("WARREN_CTL_CACERT", path(&pki.other_ca.pem)),
        ],
    );
    assert_ne!(code, Some(0));

    // A renewed certificate, then SIGHUP: new connections get it.
    let before = std::fs::read(&pki.server.cert).unwrap();
    pki.ca.issue(
        &pki.dir,
        "server",
        &[
            (certs::Dn::OrganizationName, "Renewed"),
            (certs::Dn::CommonName, "localhost"),
        ],
        true,
        None,
    );
    assert_ne!(before, std::fs::read(&pki.server.cert).unwrap());
    let status = std::process::Command::new("kill")
        .args(["-HUP", &broker.pid().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let subject = within("reloaded certificate", async {
        loop {
            let certs = api(broker.http_port, "/api/warren/certificates");
            let amqps = certs
                .as_array()
                .unwrap()
                .iter()
                .find(|l| l["protocol"] == "amqp/ssl")
                .cloned()
                .unwrap_or_default();
            let s = amqps["certificates"][0]["subject"]
                .as_str()
                .unwrap_or_default()
                .to_string();
            if s == "CN=localhost,O=Renewed" {
                return s;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
    assert_eq!(subject, "CN=localhost,O=Renewed");
    let s = pki
        .connect(tls_port, pki.client_config(false, None, all_versions()))
        .await
        .unwrap();
    let served = s.get_ref().1.peer_certificates().unwrap()[0]
        .as_ref()
        .to_vec();
    let pem = std::fs::read(&pki.server.cert).unwrap();
    use rustls::pki_types::{pem::PemObject, CertificateDer};
    assert_eq!(
        served,
        CertificateDer::from_pem_slice(&pem).unwrap().as_ref()
    );
    assert!(broker
        .log()
        .iter()
        .any(|l| l.contains("TLS certificates reloaded")));
}

#[test]
fn start_errors_name_the_file() {
    let pki = Pki::generate("errors");
    let missing = pki.dir.join("nope.key");
    let (code, out) = run_to_exit(
        &[
            "--data-dir",
            path(&pki.dir.join("data")),
            "--listen",
            "127.0.0.1:0",
            "--http-listen",
            "off",
            "--prometheus-listen",
            "off",
            "--listen-tls",
            "127.0.0.1:0",
            "--tls-cert",
            path(&pki.server.cert),
            "--tls-key",
            path(&missing),
        ],
        &[],
    );
    assert_ne!(code, Some(0));
    assert!(
        out.contains(&format!(
            "cannot read ssl_options.keyfile {}",
            missing.display()
        )),
        "{out}"
    );
    let (code, out) = run_to_exit(
        &[
            "--data-dir",
            path(&pki.dir.join("data")),
            "--listen",
            "127.0.0.1:0",
            "--http-listen",
            "off",
            "--prometheus-listen",
            "off",
            "--listen-tls",
            "127.0.0.1:0",
            "--tls-cert",
            path(&pki.server.cert),
            "--tls-key",
            path(&pki.client.key),
        ],
        &[],
    );
    assert_ne!(code, Some(0));
    assert!(out.contains("does not match certfile"), "{out}");
}

/// The server key encrypted by Debian's openssl: PKCS#8 (PBES2, PBKDF2 + AES-256-CBC, as
/// `openssl pkcs8 -topk8 -v2 aes-256-cbc` writes) or OpenSSL's legacy PEM
/// (`Proc-Type: 4,ENCRYPTED`, `DEK-Info: AES-256-CBC`; an `EC PRIVATE KEY`, rcgen's keys
/// being ECDSA).
fn encrypted_server_key(pki: &Pki, legacy: bool, password: &str) -> std::path::PathBuf {
    let out = pki.dir.join(if legacy {
        "legacy-enc.key"
    } else {
        "pkcs8-enc.key"
    });
    let pass = format!("pass:{password}");
    let key = path(&pki.server.key);
    let args: Vec<&str> = if legacy {
        vec![
            "ec",
            "-in",
            key,
            "-aes256",
            "-passout",
            &pass,
            "-out",
            path(&out),
        ]
    } else {
        vec![
            "pkcs8",
            "-topk8",
            "-v2",
            "aes-256-cbc",
            "-in",
            key,
            "-passout",
            &pass,
            "-out",
            path(&out),
        ]
    };
    let st = std::process::Command::new("openssl")
        .args(&args)
        .output()
        .expect("openssl (Debian's openssl package)");
    assert!(
        st.status.success(),
        "{}",
        String::from_utf8_lossy(&st.stderr)
    );
    let text = std::fs::read_to_string(&out).unwrap();
    assert!(text.contains(if legacy {
        "Proc-Type: 4,ENCRYPTED"
    } else {
        "BEGIN ENCRYPTED PRIVATE KEY"
    }));
    out
}

/// A TLS client that logs in and gets connection.open-ok.
async fn opens(pki: &Pki, port: u16) {
    let cfg = pki.client_config(false, None, all_versions());
    let mut tls = pki.connect(port, cfg).await.unwrap();
    start_mechanisms(&mut tls).await;
    let opened = login(&mut tls, "PLAIN", b"\0guest\0guest").await;
    assert!(
        matches!(
            opened,
            AMQPClass::Connection(connection::AMQPMethod::OpenOk(_))
        ),
        "{opened:?}"
    );
}

#[tokio::test]
async fn encrypted_keys_with_the_password_from_flag_or_rabbitmq_conf() {
    let pki = Pki::generate("enc-key");
    // --tls-password with a PKCS#8 encrypted key.
    let p8 = encrypted_server_key(&pki, false, "s3cret phrase");
    let broker = Broker::start_with(
        &[
            "--listen-tls",
            "127.0.0.1:0",
            "--tls-cert",
            path(&pki.server.cert),
            "--tls-key",
            path(&p8),
            "--tls-password",
            "s3cret phrase",
        ],
        &[],
    );
    let port = broker.listen_port("AMQPS");
    assert_ne!(port, 0, "{:?}", broker.log());
    opens(&pki, port).await;
    drop(broker);

    // ssl_options.password in rabbitmq.conf with a legacy OpenSSL key.
    let legacy = encrypted_server_key(&pki, true, "legacy pw");
    let conf = pki.dir.join("enc-rabbitmq.conf");
    std::fs::write(
        &conf,
        format!(
            "listeners.tcp.default = 127.0.0.1:0\nlisteners.ssl.default = 127.0.0.1:0\n\
             ssl_options.certfile = {}\nssl_options.keyfile = {}\n\
             ssl_options.password = legacy pw\n",
            path(&pki.server.cert),
            path(&legacy)
        ),
    )
    .unwrap();
    let broker = Broker::start_configured(
        std::env::temp_dir().join(format!("warren-tls-enc-{}", std::process::id())),
        true,
        &["--http-listen", "off", "--prometheus-listen", "off"],
        &[("RABBITMQ_CONFIG_FILE", path(&conf))],
    );
    let port = broker.listen_port("AMQPS");
    assert_ne!(port, 0, "{:?}", broker.log());
    opens(&pki, port).await;
}

#[test]
fn encrypted_key_without_or_with_a_wrong_password_names_the_file() {
    let pki = Pki::generate("enc-errors");
    let key = encrypted_server_key(&pki, false, "right");
    let run = |password: Option<&str>| {
        let data = pki.dir.join("data");
        let mut args = vec![
            "--data-dir",
            path(&data),
            "--listen",
            "127.0.0.1:0",
            "--http-listen",
            "off",
            "--prometheus-listen",
            "off",
            "--listen-tls",
            "127.0.0.1:0",
            "--tls-cert",
            path(&pki.server.cert),
            "--tls-key",
            path(&key),
        ];
        if let Some(p) = password {
            args.extend_from_slice(&["--tls-password", p]);
        }
        let (code, out) = run_to_exit(&args, &[]);
        assert_ne!(code, Some(0), "{out}");
        out
    };
    let out = run(None);
    assert!(
        out.contains(&format!(
            "ssl_options.keyfile {} holds an encrypted private key but no password is set \
             (ssl_options.password)",
            key.display()
        )),
        "{out}"
    );
    let out = run(Some("wrong"));
    assert!(
        out.contains(&format!(
            "ssl_options.keyfile {} cannot decrypt the private key: wrong password \
             (ssl_options.password)?",
            key.display()
        )),
        "{out}"
    );
}

/// `ssl_options.depth` ([tls] depth) as Erlang's ssl counts it: 0 wants the client's
/// certificate signed by a trusted CA itself, 1 allows one intermediate CA in between;
/// without it, webpki's own limit applies.
#[tokio::test]
async fn depth_limits_the_client_certificate_path() {
    let pki = Pki::generate("depth");
    let intermediate = pki
        .ca
        .intermediate(&pki.dir, "intermediate", "Warren Test Intermediate");
    let chained = intermediate.issue(
        &pki.dir,
        "chained",
        &[(certs::Dn::CommonName, "chained")],
        false,
        None,
    );
    for (depth, chained_accepted) in [(Some(0), false), (Some(1), true), (None, true)] {
        let conf = pki.dir.join(format!("depth-{depth:?}.toml"));
        let text = depth.map_or(String::new(), |d| format!("[tls]\ndepth = {d}\n"));
        std::fs::write(&conf, text).unwrap();
        let (_broker, port) = start_tls(
            &pki,
            &[
                "--tls-verify",
                "verify_peer",
                "--tls-fail-if-no-peer-cert",
                "--config",
                path(&conf),
            ],
            &[],
        );
        let direct = pki.client_config(false, Some(&pki.client), all_versions());
        assert!(
            !refused(&pki, port, direct).await,
            "depth {depth:?}: a certificate signed by the CA itself"
        );
        let via = pki.client_config(false, Some(&chained), all_versions());
        assert_eq!(
            !refused(&pki, port, via).await,
            chained_accepted,
            "depth {depth:?}: a certificate under one intermediate"
        );
    }
}

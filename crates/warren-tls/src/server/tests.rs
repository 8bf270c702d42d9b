#![allow(clippy::unwrap_used, clippy::expect_used)]

use super::*;
use std::sync::Arc;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use warren_integration::certs::{all_versions, Pki};

fn options(pki: &Pki, verify: Verify, fail: bool) -> TlsOptions {
    TlsOptions {
        cacertfile: Some(pki.ca.pem.clone()),
        certfile: Some(pki.server.cert.clone()),
        keyfile: Some(pki.server.key.clone()),
        verify,
        fail_if_no_peer_cert: fail,
        ..TlsOptions::default()
    }
}

/// A handshake over an in-memory pipe; the client writes and reads one byte so that a
/// refusal sent after the client's side of a TLS 1.3 handshake shows.
async fn handshake(
    server: &TlsServer,
    client: Arc<rustls::ClientConfig>,
) -> (std::io::Result<SessionInfo>, bool) {
    let (a, b) = tokio::io::duplex(64 * 1024);
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let connector = tokio_rustls::TlsConnector::from(client);
    let client_side = async move {
        let Ok(mut s) = connector.connect(name, a).await else {
            return false;
        };
        if s.write_all(b"x").await.is_err() || s.flush().await.is_err() {
            return false;
        }
        let mut byte = [0u8; 1];
        matches!(s.read(&mut byte).await, Ok(1))
    };
    let server_side = async {
        match server.accept(b, Duration::from_secs(5)).await {
            Ok((mut s, info)) => {
                let mut byte = [0u8; 1];
                let _ = s.read_exact(&mut byte).await;
                let _ = s.write_all(b"y").await;
                let _ = s.flush().await;
                Ok(info)
            }
            Err(e) => Err(e),
        }
    };
    let (server, client) = tokio::join!(server_side, client_side);
    (server, client)
}

#[tokio::test]
async fn sessions_report_what_was_negotiated() {
    let pki = Pki::generate("unit-session");
    let server = TlsServer::load("ssl_options", options(&pki, Verify::VerifyPeer, false)).unwrap();
    let (info, ok) = handshake(
        &server,
        pki.client_config(false, Some(&pki.client), all_versions()),
    )
    .await;
    let info = info.unwrap();
    assert!(ok);
    assert_eq!(info.protocol, "tlsv1.3");
    assert_eq!(
        (info.key_exchange.as_str(), info.hash.as_str()),
        ("any", "aead")
    );
    let cert = info.peer_cert.unwrap();
    assert_eq!(cert.subject, "CN=client,OU=Clients,O=Warren Test");
    assert_eq!(cert.issuer, "CN=Warren Test CA,O=Warren Test");

    let (info, ok) = handshake(
        &server,
        pki.client_config(false, None, &[&rustls::version::TLS12]),
    )
    .await;
    let info = info.unwrap();
    assert!(ok);
    assert_eq!(info.protocol, "tlsv1.2");
    // rcgen's keys are ECDSA P-256.
    assert_eq!(info.key_exchange, "ecdhe_ecdsa");
    assert!(info.peer_cert.is_none());
}

#[tokio::test]
async fn verification_refuses_what_rabbitmq_refuses() {
    let pki = Pki::generate("unit-verify");
    let strict = TlsServer::load("ssl_options", options(&pki, Verify::VerifyPeer, true)).unwrap();
    let (r, ok) = handshake(&strict, pki.client_config(false, None, all_versions())).await;
    assert!(
        r.is_err() && !ok,
        "no certificate with fail_if_no_peer_cert"
    );
    let (r, ok) = handshake(
        &strict,
        pki.client_config(false, Some(&pki.stranger), all_versions()),
    )
    .await;
    assert!(r.is_err() && !ok, "a certificate from an unknown CA");
    let (r, ok) = handshake(
        &strict,
        pki.client_config(false, Some(&pki.expired), all_versions()),
    )
    .await;
    let e = r.expect_err("an expired certificate");
    assert!(e.to_string().to_lowercase().contains("expired"), "{e}");
    assert!(!ok);
    // The client refuses a server whose CA it does not trust.
    let (_, ok) = handshake(
        &strict,
        pki.client_config(true, Some(&pki.client), all_versions()),
    )
    .await;
    assert!(!ok);
    // verify_none asks for no certificate: one from a stranger CA is never looked at.
    let lax = TlsServer::load("ssl_options", options(&pki, Verify::VerifyNone, false)).unwrap();
    let (r, ok) = handshake(
        &lax,
        pki.client_config(false, Some(&pki.stranger), all_versions()),
    )
    .await;
    assert!(ok && r.unwrap().peer_cert.is_none());
}

#[tokio::test]
async fn versions_limit_the_handshake() {
    let pki = Pki::generate("unit-versions");
    let mut o = options(&pki, Verify::VerifyNone, false);
    o.versions = vec!["tlsv1.2".into()];
    let server = TlsServer::load("ssl_options", o).unwrap();
    let (r, ok) = handshake(
        &server,
        pki.client_config(false, None, &[&rustls::version::TLS13]),
    )
    .await;
    assert!(r.is_err() && !ok);
    let (r, _) = handshake(&server, pki.client_config(false, None, all_versions())).await;
    assert_eq!(r.unwrap().protocol, "tlsv1.2");
    let mut o = options(&pki, Verify::VerifyNone, false);
    o.ciphers = vec!["ECDHE-ECDSA-AES128-GCM-SHA256".into()];
    o.versions = vec!["tlsv1.2".into()];
    let server = TlsServer::load("ssl_options", o).unwrap();
    let (r, _) = handshake(&server, pki.client_config(false, None, all_versions())).await;
    assert_eq!(r.unwrap().cipher, "aes_128_gcm");
}

#[test]
fn start_errors_name_the_file() {
    let pki = Pki::generate("unit-errors");
    let err = |o: TlsOptions| {
        TlsServer::load("ssl_options", o)
            .expect_err("must fail")
            .to_string()
    };
    let mut o = options(&pki, Verify::VerifyNone, false);
    o.certfile = Some(pki.dir.join("missing.pem"));
    let e = err(o);
    assert!(
        e.starts_with("cannot read ssl_options.certfile ") && e.contains("missing.pem"),
        "{e}"
    );
    let mut o = options(&pki, Verify::VerifyNone, false);
    o.keyfile = Some(pki.client.key.clone());
    let e = err(o);
    assert!(
        e.starts_with("keyfile ") && e.contains("does not match certfile"),
        "{e}"
    );
    let mut o = options(&pki, Verify::VerifyNone, false);
    o.keyfile = Some(pki.server.cert.clone());
    assert!(err(o).contains("holds no private key"));
    let mut o = options(&pki, Verify::VerifyNone, false);
    o.certfile = None;
    assert_eq!(
        err(o),
        "ssl_options.certfile is not set (a TLS listener needs it)"
    );
    let mut o = options(&pki, Verify::VerifyPeer, false);
    o.cacertfile = None;
    assert!(err(o).contains("ssl_options.cacertfile"));
    let mut o = options(&pki, Verify::VerifyNone, false);
    o.versions = vec!["tlsv1.1".into()];
    assert!(err(o).starts_with("ssl_options.versions: tlsv1.1 is not supported"));
    let mut o = options(&pki, Verify::VerifyNone, false);
    o.ciphers = vec!["RC4-MD5".into()];
    assert!(err(o).starts_with("ssl_options.ciphers: RC4-MD5"));
    let mut o = options(&pki, Verify::VerifyNone, false);
    o.keyfile = Some(pki.dir.join("missing.key"));
    assert!(err(o).starts_with("cannot read ssl_options.keyfile "));
}

#[tokio::test]
async fn reload_serves_new_connections_with_the_new_certificate() {
    let pki = Pki::generate("unit-reload");
    let server = TlsServer::load("ssl_options", options(&pki, Verify::VerifyNone, false)).unwrap();
    let before = server.certificates()[0].subject.clone();
    assert_eq!(before, "CN=localhost,O=Warren Test");
    let renewed = pki.ca.issue(
        &pki.dir,
        "server",
        &[
            (rcgen::DnType::CommonName, "localhost"),
            (rcgen::DnType::OrganizationName, "Renewed"),
        ],
        true,
        None,
    );
    assert_eq!(renewed.cert, pki.server.cert);
    server.reload().unwrap();
    assert_eq!(server.certificates()[0].subject, "O=Renewed,CN=localhost");
    let (r, ok) = handshake(&server, pki.client_config(false, None, all_versions())).await;
    assert!(ok && r.is_ok());
    // A broken file keeps the configuration in use.
    std::fs::write(&pki.server.key, "not a key").unwrap();
    assert!(server.reload().is_err());
    assert_eq!(server.certificates()[0].subject, "O=Renewed,CN=localhost");
}

/// The server key encrypted by Debian's openssl, in PKCS#8 (PBES2, AES-256-CBC) or in
/// OpenSSL's legacy PEM (`Proc-Type: 4,ENCRYPTED`, RSA only: rcgen's keys are ECDSA, so
/// the legacy form is written as `EC PRIVATE KEY`).
fn encrypt_key(pki: &Pki, legacy: bool, password: &str) -> std::path::PathBuf {
    let out = pki.dir.join(if legacy {
        "legacy.key"
    } else {
        "pkcs8-enc.key"
    });
    let pass = format!("pass:{password}");
    let (key, out_s) = (pki.server.key.to_str().unwrap(), out.to_str().unwrap());
    let args: Vec<&str> = if legacy {
        vec![
            "ec", "-in", key, "-aes256", "-passout", &pass, "-out", out_s,
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
            out_s,
        ]
    };
    let st = std::process::Command::new("openssl")
        .args(&args)
        .output()
        .expect("openssl");
    assert!(
        st.status.success(),
        "{}",
        String::from_utf8_lossy(&st.stderr)
    );
    out
}

#[tokio::test]
async fn encrypted_keys_load_with_the_password_and_name_the_file_without() {
    let pki = Pki::generate("unit-encrypted");
    for legacy in [false, true] {
        let file = encrypt_key(&pki, legacy, "pass phrase");
        let text = std::fs::read_to_string(&file).unwrap();
        assert!(
            text.contains(if legacy {
                "Proc-Type: 4,ENCRYPTED"
            } else {
                "BEGIN ENCRYPTED PRIVATE KEY"
            }),
            "{text}"
        );
        let mut o = options(&pki, Verify::VerifyNone, false);
        o.keyfile = Some(file.clone());
        let e = TlsServer::load("ssl_options", o.clone())
            .unwrap_err()
            .to_string();
        assert_eq!(
            e,
            format!(
                "ssl_options.keyfile {} holds an encrypted private key but no password is set \
                 (ssl_options.password)",
                file.display()
            )
        );
        o.password = Some("wrong".into());
        let e = TlsServer::load("ssl_options", o.clone())
            .unwrap_err()
            .to_string();
        assert_eq!(
            e,
            format!(
                "ssl_options.keyfile {} cannot decrypt the private key: wrong password \
                 (ssl_options.password)?",
                file.display()
            )
        );
        o.password = Some("pass phrase".into());
        let server = TlsServer::load("ssl_options", o).unwrap();
        let (info, ok) = handshake(&server, pki.client_config(false, None, all_versions())).await;
        assert!(ok, "legacy={legacy}");
        assert_eq!(info.unwrap().protocol, "tlsv1.3");
    }
}

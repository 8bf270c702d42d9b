//! Building rustls configurations from [`TlsOptions`], reloading them, and accepting
//! connections with a handshake deadline.

use std::{
    path::{Path, PathBuf},
    sync::{Arc, RwLock},
    time::Duration,
};

use rustls::{
    crypto::{ring, CryptoProvider},
    pki_types::{pem::PemObject, CertificateDer, PrivateKeyDer},
    server::WebPkiClientVerifier,
    CipherSuite, ProtocolVersion, RootCertStore, ServerConfig, SupportedCipherSuite,
    SupportedProtocolVersion,
};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_rustls::{server::TlsStream, TlsAcceptor};

use crate::{
    cert::{CertSummary, PeerCert},
    depth::DepthLimited,
    key::{parse_private_key, KeyError},
    options::{TlsOptions, Verify},
};

/// Why a TLS configuration cannot be built; every message names the setting or file.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("{setting} is not set (a TLS listener needs it)")]
    Missing { setting: String },
    #[error("cannot read {setting} {path}: {source}")]
    Read {
        setting: String,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{setting} {path} holds no PEM certificate")]
    NoCertificate { setting: String, path: PathBuf },
    #[error("{setting} {path}: {reason}")]
    BadCertificate {
        setting: String,
        path: PathBuf,
        reason: String,
    },
    #[error("{setting} {path} {source}")]
    Key {
        setting: String,
        path: PathBuf,
        source: KeyError,
    },
    #[error("keyfile {key} does not match certfile {cert}: {reason}")]
    Mismatch {
        key: PathBuf,
        cert: PathBuf,
        reason: String,
    },
    #[error("{setting}: {reason}")]
    Invalid { setting: String, reason: String },
}

/// One TLS listener's configuration, swapped whole on reload so that new connections use
/// the new certificate while established ones keep theirs.
pub struct TlsServer {
    /// The settings' prefix in rabbitmq.conf (`ssl_options`, `management.ssl`), for
    /// messages.
    prefix: String,
    options: TlsOptions,
    current: RwLock<Loaded>,
    alpn: Vec<Vec<u8>>,
}

impl std::fmt::Debug for TlsServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsServer")
            .field("prefix", &self.prefix)
            .field("options", &self.options)
            .finish_non_exhaustive()
    }
}

#[derive(Clone)]
struct Loaded {
    config: Arc<ServerConfig>,
    certs: Vec<CertSummary>,
    cas: Vec<CertSummary>,
}

/// What a TLS session negotiated, in RabbitMQ's words (`ssl_protocol` `tlsv1.3`,
/// `ssl_key_exchange` `any` / `ecdhe_rsa`, `ssl_cipher` `aes_256_gcm`, `ssl_hash` `aead`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionInfo {
    pub protocol: String,
    pub key_exchange: String,
    pub cipher: String,
    pub hash: String,
    pub peer_cert: Option<PeerCert>,
}

impl TlsServer {
    /// Loads the files; `prefix` names the settings in errors (`ssl_options`).
    pub fn load(prefix: &str, options: TlsOptions) -> Result<TlsServer, TlsError> {
        Self::load_with_alpn(prefix, options, Vec::new())
    }

    /// As [`TlsServer::load`], offering the given ALPN protocols (`http/1.1`).
    pub fn load_with_alpn(
        prefix: &str,
        options: TlsOptions,
        alpn: Vec<Vec<u8>>,
    ) -> Result<TlsServer, TlsError> {
        let loaded = build(prefix, &options, &alpn)?;
        Ok(TlsServer {
            prefix: prefix.to_string(),
            options,
            current: RwLock::new(loaded),
            alpn,
        })
    }

    /// Reads the files again; on an error the configuration in use stays.
    pub fn reload(&self) -> Result<(), TlsError> {
        let loaded = build(&self.prefix, &self.options, &self.alpn)?;
        match self.current.write() {
            Ok(mut slot) => *slot = loaded,
            Err(poisoned) => *poisoned.into_inner() = loaded,
        }
        Ok(())
    }

    fn loaded(&self) -> Loaded {
        match self.current.read() {
            Ok(l) => l.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    pub fn options(&self) -> &TlsOptions {
        &self.options
    }

    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// The server certificate chain in use (leaf first).
    pub fn certificates(&self) -> Vec<CertSummary> {
        self.loaded().certs
    }

    /// The certificates of `cacertfile` as last loaded (empty without one).
    pub fn ca_certificates(&self) -> Vec<CertSummary> {
        self.loaded().cas
    }

    pub fn acceptor(&self) -> TlsAcceptor {
        TlsAcceptor::from(self.loaded().config)
    }

    /// The TLS handshake over `io`, within `timeout`.
    pub async fn accept<IO>(
        &self,
        io: IO,
        timeout: Duration,
    ) -> std::io::Result<(TlsStream<IO>, SessionInfo)>
    where
        IO: AsyncRead + AsyncWrite + Unpin,
    {
        let accept = self.acceptor().accept(io);
        let stream = match tokio::time::timeout(timeout, accept).await {
            Ok(r) => r?,
            Err(_) => {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    "TLS handshake timeout",
                ))
            }
        };
        let info = session_info(stream.get_ref().1);
        Ok((stream, info))
    }
}

/// The negotiated parameters of an established server session.
pub fn session_info(conn: &rustls::ServerConnection) -> SessionInfo {
    let protocol = match conn.protocol_version() {
        Some(ProtocolVersion::TLSv1_3) => "tlsv1.3",
        Some(ProtocolVersion::TLSv1_2) => "tlsv1.2",
        _ => "unknown",
    };
    let (key_exchange, cipher, hash) = conn
        .negotiated_cipher_suite()
        .map(|s| suite_parts(s.suite()))
        .unwrap_or(("unknown", "unknown", "unknown"));
    SessionInfo {
        protocol: protocol.into(),
        key_exchange: key_exchange.into(),
        cipher: cipher.into(),
        hash: hash.into(),
        peer_cert: conn
            .peer_certificates()
            .and_then(|c| c.first())
            .and_then(|c| PeerCert::from_der(c.as_ref())),
    }
}

/// Erlang's selected_cipher_suite (key_exchange, cipher, mac) for rustls' suites; every
/// one of them is an AEAD, and TLS 1.3 suites name no key exchange (`any`).
fn suite_parts(suite: CipherSuite) -> (&'static str, &'static str, &'static str) {
    use CipherSuite as C;
    let (kx, cipher) = match suite {
        C::TLS13_AES_256_GCM_SHA384 => ("any", "aes_256_gcm"),
        C::TLS13_AES_128_GCM_SHA256 => ("any", "aes_128_gcm"),
        C::TLS13_CHACHA20_POLY1305_SHA256 => ("any", "chacha20_poly1305"),
        C::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384 => ("ecdhe_ecdsa", "aes_256_gcm"),
        C::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256 => ("ecdhe_ecdsa", "aes_128_gcm"),
        C::TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256 => ("ecdhe_ecdsa", "chacha20_poly1305"),
        C::TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384 => ("ecdhe_rsa", "aes_256_gcm"),
        C::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256 => ("ecdhe_rsa", "aes_128_gcm"),
        C::TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256 => ("ecdhe_rsa", "chacha20_poly1305"),
        _ => ("unknown", "unknown"),
    };
    (kx, cipher, "aead")
}

/// The suites a cipher name selects: OpenSSL names (`ECDHE-RSA-AES256-GCM-SHA384`) and
/// IANA names (`TLS_AES_256_GCM_SHA384`, `TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384`).
fn suite_by_name(name: &str) -> Option<CipherSuite> {
    use CipherSuite as C;
    Some(match name {
        "TLS_AES_256_GCM_SHA384" => C::TLS13_AES_256_GCM_SHA384,
        "TLS_AES_128_GCM_SHA256" => C::TLS13_AES_128_GCM_SHA256,
        "TLS_CHACHA20_POLY1305_SHA256" => C::TLS13_CHACHA20_POLY1305_SHA256,
        "ECDHE-ECDSA-AES256-GCM-SHA384" | "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384" => {
            C::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384
        }
        "ECDHE-ECDSA-AES128-GCM-SHA256" | "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256" => {
            C::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256
        }
        "ECDHE-ECDSA-CHACHA20-POLY1305" | "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256" => {
            C::TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256
        }
        "ECDHE-RSA-AES256-GCM-SHA384" | "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384" => {
            C::TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384
        }
        "ECDHE-RSA-AES128-GCM-SHA256" | "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256" => {
            C::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256
        }
        "ECDHE-RSA-CHACHA20-POLY1305" | "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256" => {
            C::TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256
        }
        _ => return None,
    })
}

/// rustls' versions for `versions` (empty: both). TLS 1.0 and 1.1 are refused: rustls
/// does not implement them.
fn protocol_versions(
    prefix: &str,
    versions: &[String],
) -> Result<Vec<&'static SupportedProtocolVersion>, TlsError> {
    if versions.is_empty() {
        return Ok(vec![&rustls::version::TLS13, &rustls::version::TLS12]);
    }
    let mut out = Vec::new();
    for v in versions {
        match v.as_str() {
            "tlsv1.3" => out.push(&rustls::version::TLS13),
            "tlsv1.2" => out.push(&rustls::version::TLS12),
            other => {
                return Err(TlsError::Invalid {
                    setting: format!("{prefix}.versions"),
                    reason: format!(
                        "{other} is not supported (warren speaks tlsv1.2 and tlsv1.3 only)"
                    ),
                })
            }
        }
    }
    Ok(out)
}

/// rustls' ring provider. Deprecated since 0.23.3x only because it lacks post-quantum
/// key exchange; aws-lc-rs, which has it, needs cmake and a long C build.
#[allow(deprecated)]
fn ring_provider() -> CryptoProvider {
    ring::default_provider()
}

/// The ring provider, limited to `ciphers` when given (in that order).
fn provider(prefix: &str, ciphers: &[String]) -> Result<CryptoProvider, TlsError> {
    let mut provider = ring_provider();
    if ciphers.is_empty() {
        return Ok(provider);
    }
    let mut chosen: Vec<SupportedCipherSuite> = Vec::new();
    for name in ciphers {
        let Some(suite) = suite_by_name(name) else {
            return Err(TlsError::Invalid {
                setting: format!("{prefix}.ciphers"),
                reason: format!(
                    "{name} is not a cipher suite warren offers (ECDHE with AES-GCM or \
                     ChaCha20-Poly1305, and the TLS 1.3 suites)"
                ),
            });
        };
        if let Some(s) = provider.cipher_suites.iter().find(|s| s.suite() == suite) {
            if !chosen.iter().any(|c| c.suite() == suite) {
                chosen.push(*s);
            }
        }
    }
    provider.cipher_suites = chosen;
    Ok(provider)
}

fn read(setting: &str, path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Read {
        setting: setting.to_string(),
        path: path.to_path_buf(),
        source,
    })
}

fn certificates(setting: &str, path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let bytes = read(setting, path)?;
    let certs = CertificateDer::pem_slice_iter(&bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsError::BadCertificate {
            setting: setting.to_string(),
            path: path.to_path_buf(),
            reason: e.to_string(),
        })?;
    if certs.is_empty() {
        return Err(TlsError::NoCertificate {
            setting: setting.to_string(),
            path: path.to_path_buf(),
        });
    }
    Ok(certs)
}

fn private_key(
    prefix: &str,
    setting: &str,
    path: &Path,
    password: Option<&str>,
) -> Result<PrivateKeyDer<'static>, TlsError> {
    let bytes = read(setting, path)?;
    parse_private_key(&bytes, password, prefix).map_err(|source| TlsError::Key {
        setting: setting.to_string(),
        path: path.to_path_buf(),
        source,
    })
}

fn required<'a>(prefix: &str, name: &str, v: &'a Option<PathBuf>) -> Result<&'a Path, TlsError> {
    v.as_deref().ok_or_else(|| TlsError::Missing {
        setting: format!("{prefix}.{name}"),
    })
}

fn build(prefix: &str, o: &TlsOptions, alpn: &[Vec<u8>]) -> Result<Loaded, TlsError> {
    let cert_setting = format!("{prefix}.certfile");
    let key_setting = format!("{prefix}.keyfile");
    let cert_path = required(prefix, "certfile", &o.certfile)?;
    let key_path = required(prefix, "keyfile", &o.keyfile)?;
    let certs = certificates(&cert_setting, cert_path)?;
    let key = private_key(prefix, &key_setting, key_path, o.password.as_deref())?;
    let provider = Arc::new(provider(prefix, &o.ciphers)?);
    let mismatch = |reason: String| TlsError::Mismatch {
        key: key_path.to_path_buf(),
        cert: cert_path.to_path_buf(),
        reason,
    };
    let signing = provider
        .key_provider
        .load_private_key(key.clone_key())
        .map_err(|e| TlsError::BadCertificate {
            setting: key_setting.clone(),
            path: key_path.to_path_buf(),
            reason: e.to_string(),
        })?;
    rustls::sign::CertifiedKey::new(certs.clone(), signing)
        .keys_match()
        .map_err(|e| mismatch(e.to_string()))?;
    let versions = protocol_versions(prefix, &o.versions)?;
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&versions)
        .map_err(|e| TlsError::Invalid {
            setting: format!("{prefix}.versions / {prefix}.ciphers"),
            reason: e.to_string(),
        })?;
    let cas = match &o.cacertfile {
        Some(path) => certificates(&format!("{prefix}.cacertfile"), path)?
            .iter()
            .filter_map(|c| CertSummary::from_der(c.as_ref()))
            .collect(),
        None => Vec::new(),
    };
    let builder = match o.verify {
        Verify::VerifyNone => builder.with_no_client_auth(),
        Verify::VerifyPeer => {
            let ca_setting = format!("{prefix}.cacertfile");
            let ca_path = o.cacertfile.as_deref().ok_or_else(|| TlsError::Missing {
                setting: format!("{ca_setting} (needed by {prefix}.verify = verify_peer)"),
            })?;
            let mut roots = RootCertStore::empty();
            for ca in certificates(&ca_setting, ca_path)? {
                roots.add(ca).map_err(|e| TlsError::BadCertificate {
                    setting: ca_setting.clone(),
                    path: ca_path.to_path_buf(),
                    reason: e.to_string(),
                })?;
            }
            let mut verifier = WebPkiClientVerifier::builder_with_provider(roots.into(), provider);
            if !o.fail_if_no_peer_cert {
                verifier = verifier.allow_unauthenticated();
            }
            let verifier = verifier.build().map_err(|e| TlsError::Invalid {
                setting: ca_setting.clone(),
                reason: e.to_string(),
            })?;
            match o.depth {
                Some(depth) => builder.with_client_cert_verifier(Arc::new(DepthLimited {
                    inner: verifier,
                    depth: usize::try_from(depth).unwrap_or(usize::MAX),
                })),
                None => builder.with_client_cert_verifier(verifier),
            }
        }
    };
    let summaries = certs
        .iter()
        .filter_map(|c| CertSummary::from_der(c.as_ref()))
        .collect();
    let mut config = builder
        .with_single_cert(certs, key)
        .map_err(|e| mismatch(e.to_string()))?;
    config.ignore_client_order = o.honor_cipher_order;
    config.alpn_protocols = alpn.to_vec();
    Ok(Loaded {
        config: Arc::new(config),
        certs: summaries,
        cas,
    })
}

/// A client configuration trusting the certificates in `cacertfile` (the CLI tools'
/// `--cacert`), or none at all but the ones given.
pub fn client_config(cacertfile: &Path) -> Result<rustls::ClientConfig, TlsError> {
    let mut roots = RootCertStore::empty();
    for ca in certificates("CA file", cacertfile)? {
        roots.add(ca).map_err(|e| TlsError::BadCertificate {
            setting: "CA file".into(),
            path: cacertfile.to_path_buf(),
            reason: e.to_string(),
        })?;
    }
    rustls::ClientConfig::builder_with_provider(Arc::new(ring_provider()))
        .with_safe_default_protocol_versions()
        .map(|b| b.with_root_certificates(roots).with_no_client_auth())
        .map_err(|e| TlsError::Invalid {
            setting: "TLS client".into(),
            reason: e.to_string(),
        })
}

/// What a TLS client (`warren perf`) presents and trusts.
#[derive(Debug, Clone, Default)]
pub struct ClientOptions {
    /// CA certificates the server must chain to; `None` accepts any server certificate
    /// (still checking the handshake's signatures), as PerfTest does for `amqps://`.
    pub cacertfile: Option<PathBuf>,
    /// A client certificate chain and its key (encrypted with `password`, or not).
    pub certfile: Option<PathBuf>,
    pub keyfile: Option<PathBuf>,
    pub password: Option<String>,
}

/// A client configuration from [`ClientOptions`].
pub fn client_config_with(o: &ClientOptions) -> Result<rustls::ClientConfig, TlsError> {
    let provider = Arc::new(ring_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Invalid {
            setting: "TLS client".into(),
            reason: e.to_string(),
        })?;
    let builder = match &o.cacertfile {
        Some(ca) => {
            let mut roots = RootCertStore::empty();
            for c in certificates("CA file", ca)? {
                roots.add(c).map_err(|e| TlsError::BadCertificate {
                    setting: "CA file".into(),
                    path: ca.clone(),
                    reason: e.to_string(),
                })?;
            }
            builder.with_root_certificates(roots)
        }
        None => builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AnyServerCert(provider))),
    };
    match (&o.certfile, &o.keyfile) {
        (Some(cert), Some(key)) => {
            let certs = certificates("client certificate", cert)?;
            let key = private_key("client", "client key", key, o.password.as_deref())?;
            builder
                .with_client_auth_cert(certs, key)
                .map_err(|e| TlsError::Mismatch {
                    key: o.keyfile.clone().unwrap_or_default(),
                    cert: cert.clone(),
                    reason: e.to_string(),
                })
        }
        (None, None) => Ok(builder.with_no_client_auth()),
        _ => Err(TlsError::Invalid {
            setting: "TLS client".into(),
            reason: "a client certificate needs both a certificate and a key file".into(),
        }),
    }
}

/// Accepts any server certificate but still verifies the handshake signatures, so that
/// a load test pays for the same cryptography as a verifying client.
#[derive(Debug)]
struct AnyServerCert(Arc<CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for AnyServerCert {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &rustls::pki_types::ServerName<'_>,
        _ocsp_response: &[u8],
        _now: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests;

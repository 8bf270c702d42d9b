//! RabbitMQ's `ssl_options.*` (and `management.ssl.*`, `prometheus.ssl.*`) as warren keeps
//! them: paths and switches, checked when the server configuration is built.

use std::path::PathBuf;

/// `ssl_options.verify`: whether the server asks for a client certificate.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Verify {
    /// RabbitMQ's default: no client certificate is requested.
    #[default]
    VerifyNone,
    /// A client certificate is requested and, when given, must chain to `cacertfile`.
    VerifyPeer,
}

impl Verify {
    pub fn parse(value: &str) -> Option<Verify> {
        match value {
            "verify_none" => Some(Verify::VerifyNone),
            "verify_peer" => Some(Verify::VerifyPeer),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Verify::VerifyNone => "verify_none",
            Verify::VerifyPeer => "verify_peer",
        }
    }
}

/// One listener's TLS settings, as rabbitmq.conf names them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TlsOptions {
    pub cacertfile: Option<PathBuf>,
    pub certfile: Option<PathBuf>,
    pub keyfile: Option<PathBuf>,
    /// The key's passphrase, for an encrypted PKCS#8 or legacy OpenSSL PEM key.
    pub password: Option<String>,
    pub verify: Verify,
    /// With `verify_peer`: refuse a client that presents no certificate.
    pub fail_if_no_peer_cert: bool,
    /// Longest chain of intermediates accepted (`None`: webpki's own limit).
    pub depth: Option<u32>,
    /// `tlsv1.2`, `tlsv1.3`; empty for both.
    pub versions: Vec<String>,
    /// OpenSSL (`ECDHE-RSA-AES256-GCM-SHA384`) or IANA (`TLS_AES_256_GCM_SHA384`) names;
    /// empty for rustls' defaults.
    pub ciphers: Vec<String>,
    /// Prefer the server's cipher order over the client's.
    pub honor_cipher_order: bool,
}

//! TLS for warren, as RabbitMQ's `ssl_options` describe it: rustls server configurations
//! built from PEM files (certificate chain, PKCS#8 / PKCS#1 / SEC1 key, encrypted or not,
//! CA bundle),
//! reloadable without a restart, a client configuration for the CLI tools, and the
//! details of a negotiated session formatted as RabbitMQ reports them.
#![forbid(unsafe_code)]

mod cert;
mod depth;
mod key;
mod options;
mod server;

pub use cert::{format_timestamp, CertSummary, PeerCert};
pub use key::{parse_private_key, KeyError};
pub use options::{TlsOptions, Verify};
pub use server::{
    client_config, client_config_with, ClientOptions, SessionInfo, TlsError, TlsServer,
};
pub use tokio_rustls;

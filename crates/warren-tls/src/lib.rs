//! TLS for warren, as RabbitMQ's `ssl_options` describe it: rustls server configurations
//! built from PEM files (certificate chain, PKCS#8 / PKCS#1 / SEC1 key, CA bundle),
//! reloadable without a restart, a client configuration for the CLI tools, and the
//! details of a negotiated session formatted as RabbitMQ reports them.
#![forbid(unsafe_code)]

mod cert;
mod options;
mod server;

pub use cert::{format_timestamp, CertSummary, PeerCert};
pub use options::{TlsOptions, Verify};
pub use server::{client_config, SessionInfo, TlsError, TlsServer};
pub use tokio_rustls;

//! Test certificates: a CA with server and client certificates, a second CA nobody
//! trusts, and an expired client certificate, written as PEM files (rcgen, ECDSA P-256),
//! plus TLS client configurations for them.

use std::{
    net::{IpAddr, Ipv4Addr},
    path::{Path, PathBuf},
    sync::Arc,
};

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose, SanType,
};
use rustls::pki_types::{pem::PemObject, CertificateDer, PrivateKeyDer, ServerName};

/// A date: year, month, day.
pub type Ymd = (i32, u8, u8);

/// A signing authority (its certificate and key).
pub struct Authority {
    cert: rcgen::Certificate,
    key: KeyPair,
    pub pem: PathBuf,
    /// Signed by another authority (not a root).
    intermediate: bool,
}

/// A certificate and key written as `NAME.pem` / `NAME.key`.
#[derive(Clone)]
pub struct Issued {
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// Everything a TLS test needs, in `dir`.
pub struct Pki {
    pub dir: PathBuf,
    pub ca: Authority,
    pub other_ca: Authority,
    /// CN=localhost (SAN localhost, 127.0.0.1), signed by `ca`.
    pub server: Issued,
    /// CN=client,OU=Clients,O=Warren Test, signed by `ca`.
    pub client: Issued,
    /// CN=intruder, signed by `other_ca`.
    pub stranger: Issued,
    /// CN=client, signed by `ca`, valid in January 2020 only.
    pub expired: Issued,
}

fn dn(parts: &[(DnType, &str)]) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    for (t, v) in parts {
        dn.push(t.clone(), *v);
    }
    dn
}

impl Authority {
    fn new(dir: &Path, name: &str, cn: &str) -> Authority {
        let key = KeyPair::generate().expect("CA key");
        let mut p = CertificateParams::new(Vec::<String>::new()).expect("params");
        p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        p.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        p.distinguished_name = dn(&[
            (DnType::OrganizationName, "Warren Test"),
            (DnType::CommonName, cn),
        ]);
        let cert = p.self_signed(&key).expect("self-sign CA");
        let pem = dir.join(format!("{name}.pem"));
        std::fs::write(&pem, cert.pem()).expect("write CA");
        Authority {
            cert,
            key,
            pem,
            intermediate: false,
        }
    }

    /// An intermediate CA signed by this one; what it issues (see [`Authority::issue`])
    /// carries it in the certificate file, after the leaf, as a chain.
    pub fn intermediate(&self, dir: &Path, name: &str, cn: &str) -> Authority {
        let key = KeyPair::generate().expect("key");
        let mut p = CertificateParams::new(Vec::<String>::new()).expect("params");
        p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        p.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        p.distinguished_name = dn(&[
            (DnType::OrganizationName, "Warren Test"),
            (DnType::CommonName, cn),
        ]);
        let cert = p
            .signed_by(&key, &self.cert, &self.key)
            .expect("sign intermediate");
        let pem = dir.join(format!("{name}.pem"));
        std::fs::write(&pem, cert.pem()).expect("write intermediate");
        Authority {
            cert,
            key,
            pem,
            intermediate: true,
        }
    }

    /// Issues a certificate for `subject` (server certificates get localhost SANs).
    pub fn issue(
        &self,
        dir: &Path,
        name: &str,
        subject: &[(DnType, &str)],
        server: bool,
        validity: Option<(Ymd, Ymd)>,
    ) -> Issued {
        let key = KeyPair::generate().expect("key");
        let sans = if server {
            vec!["localhost".to_string()]
        } else {
            Vec::new()
        };
        let mut p = CertificateParams::new(sans).expect("params");
        if server {
            p.subject_alt_names
                .push(SanType::IpAddress(IpAddr::V4(Ipv4Addr::LOCALHOST)));
            p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        } else {
            p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        }
        p.distinguished_name = dn(subject);
        if let Some(((fy, fm, fd), (ty, tm, td))) = validity {
            p.not_before = rcgen::date_time_ymd(fy, fm, fd);
            p.not_after = rcgen::date_time_ymd(ty, tm, td);
        }
        let cert = p.signed_by(&key, &self.cert, &self.key).expect("sign");
        let issued = Issued {
            cert: dir.join(format!("{name}.pem")),
            key: dir.join(format!("{name}.key")),
        };
        // Issued by an intermediate: the chain up to (not including) the root.
        let mut chain = cert.pem();
        if self.intermediate {
            chain.push_str(&self.cert.pem());
        }
        std::fs::write(&issued.cert, chain).expect("write cert");
        std::fs::write(&issued.key, key.serialize_pem()).expect("write key");
        issued
    }
}

impl Pki {
    /// A fresh set of certificates in a new directory under the temp dir.
    pub fn generate(tag: &str) -> Pki {
        let dir = std::env::temp_dir().join(format!("warren-pki-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("pki dir");
        let ca = Authority::new(&dir, "ca", "Warren Test CA");
        let other_ca = Authority::new(&dir, "other_ca", "Someone Else CA");
        let server = ca.issue(
            &dir,
            "server",
            &[
                (DnType::OrganizationName, "Warren Test"),
                (DnType::CommonName, "localhost"),
            ],
            true,
            None,
        );
        let client_dn = [
            (DnType::OrganizationName, "Warren Test"),
            (DnType::OrganizationalUnitName, "Clients"),
            (DnType::CommonName, "client"),
        ];
        let client = ca.issue(&dir, "client", &client_dn, false, None);
        let stranger = other_ca.issue(
            &dir,
            "stranger",
            &[(DnType::CommonName, "intruder")],
            false,
            None,
        );
        let expired = ca.issue(
            &dir,
            "expired",
            &client_dn,
            false,
            Some(((2020, 1, 1), (2020, 2, 1))),
        );
        Pki {
            dir,
            ca,
            other_ca,
            server,
            client,
            stranger,
            expired,
        }
    }

    /// A client configuration trusting `ca` (or `other_ca`), presenting `identity`.
    pub fn client_config(
        &self,
        trust_other: bool,
        identity: Option<&Issued>,
        versions: &[&'static rustls::SupportedProtocolVersion],
    ) -> Arc<rustls::ClientConfig> {
        let mut roots = rustls::RootCertStore::empty();
        let ca = if trust_other {
            &self.other_ca.pem
        } else {
            &self.ca.pem
        };
        for c in CertificateDer::pem_file_iter(ca).expect("ca") {
            roots.add(c.expect("ca cert")).expect("add root");
        }
        // Deprecated only for lacking post-quantum key exchange; the broker uses ring too.
        #[allow(deprecated)]
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = rustls::ClientConfig::builder_with_provider(provider)
            .with_protocol_versions(versions)
            .expect("versions")
            .with_root_certificates(roots);
        let config = match identity {
            Some(id) => {
                let certs = CertificateDer::pem_file_iter(&id.cert)
                    .expect("cert")
                    .collect::<Result<Vec<_>, _>>()
                    .expect("certs");
                let key = PrivateKeyDer::from_pem_file(&id.key).expect("key");
                builder
                    .with_client_auth_cert(certs, key)
                    .expect("client auth")
            }
            None => builder.with_no_client_auth(),
        };
        Arc::new(config)
    }

    /// TLS over a new TCP connection to `port` (server name `localhost`).
    pub async fn connect(
        &self,
        port: u16,
        config: Arc<rustls::ClientConfig>,
    ) -> std::io::Result<tokio_rustls::client::TlsStream<tokio::net::TcpStream>> {
        let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port)).await?;
        let name = ServerName::try_from("localhost").expect("server name");
        tokio_rustls::TlsConnector::from(config)
            .connect(name, tcp)
            .await
    }
}

impl Drop for Pki {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Both TLS versions, for [`Pki::client_config`].
pub fn all_versions() -> &'static [&'static rustls::SupportedProtocolVersion] {
    rustls::ALL_VERSIONS
}

pub use rcgen::DnType as Dn;

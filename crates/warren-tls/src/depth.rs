//! `ssl_options.depth`: how many intermediate certificates may stand between a client's
//! certificate and a trusted CA. Erlang's ssl (RabbitMQ) counts the non-self-issued
//! intermediates of the path: depth 0 wants the client's certificate signed by a trusted
//! CA directly, 1 allows one intermediate CA, and so on. rustls' verifier has no such
//! limit (only webpki's own), so this wraps it and counts the intermediates the client
//! sent once the path has been verified.

use std::sync::Arc;

use rustls::{
    client::danger::HandshakeSignatureValid,
    pki_types::{CertificateDer, UnixTime},
    server::danger::{ClientCertVerified, ClientCertVerifier},
    CertificateError, DigitallySignedStruct, DistinguishedName, Error, SignatureScheme,
};

/// A client-certificate verifier that also refuses paths longer than `depth`.
#[derive(Debug)]
pub(crate) struct DepthLimited {
    pub(crate) inner: Arc<dyn ClientCertVerifier>,
    pub(crate) depth: usize,
}

/// Whether a certificate names itself as its issuer (a root sent along with the chain
/// does not count towards the depth, as in Erlang's path validation).
fn self_issued(der: &CertificateDer<'_>) -> bool {
    x509_parser::parse_x509_certificate(der.as_ref())
        .map(|(_, c)| c.subject().as_raw() == c.issuer().as_raw())
        .unwrap_or(false)
}

/// Intermediates that count towards the depth.
pub(crate) fn path_depth(intermediates: &[CertificateDer<'_>]) -> usize {
    intermediates.iter().filter(|c| !self_issued(c)).count()
}

impl ClientCertVerifier for DepthLimited {
    fn offer_client_auth(&self) -> bool {
        self.inner.offer_client_auth()
    }

    fn client_auth_mandatory(&self) -> bool {
        self.inner.client_auth_mandatory()
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        self.inner.root_hint_subjects()
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, Error> {
        let verified = self
            .inner
            .verify_client_cert(end_entity, intermediates, now)?;
        let depth = path_depth(intermediates);
        if depth > self.depth {
            tracing::debug!(
                depth,
                limit = self.depth,
                "client certificate path longer than ssl_options.depth"
            );
            return Err(Error::InvalidCertificate(CertificateError::UnknownIssuer));
        }
        Ok(verified)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

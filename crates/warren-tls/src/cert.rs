//! Certificate fields as RabbitMQ formats them (rabbit_ssl / rabbit_cert_info): the
//! distinguished name most specific part first, `CN=client,OU=Clients,O=Example`, and
//! the validity as `2026-12-05T03:13:42Z - 2027-01-04T03:13:42Z`.

use x509_parser::{
    oid_registry::Oid,
    prelude::{FromDer, X509Certificate},
    x509::{AttributeTypeAndValue, X509Name},
};

/// What RabbitMQ shows of a peer's certificate, and what EXTERNAL logs in with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerCert {
    pub subject: String,
    pub issuer: String,
    pub validity: String,
    /// The subject's common names joined with `,` (RabbitMQ's `common_name` login).
    pub common_name: Option<String>,
}

/// A configured certificate, for `check_certificate_expiration` and `listeners`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertSummary {
    pub subject: String,
    pub issuer: String,
    /// Seconds since the Unix epoch.
    pub not_before: i64,
    pub not_after: i64,
}

impl PeerCert {
    /// `None` when the DER does not parse (rustls has verified it, so only for
    /// certificates accepted under `verify_none`, which are not requested).
    pub fn from_der(der: &[u8]) -> Option<PeerCert> {
        let (_, cert) = X509Certificate::from_der(der).ok()?;
        let v = cert.validity();
        let cns: Vec<String> = cert
            .subject()
            .iter_common_name()
            .filter_map(|a| attribute_text(a))
            .collect();
        Some(PeerCert {
            subject: format_name(cert.subject()),
            issuer: format_name(cert.issuer()),
            validity: format!(
                "{} - {}",
                format_timestamp(v.not_before.timestamp()),
                format_timestamp(v.not_after.timestamp())
            ),
            common_name: (!cns.is_empty()).then(|| cns.join(",")),
        })
    }
}

impl CertSummary {
    pub fn from_der(der: &[u8]) -> Option<CertSummary> {
        let (_, cert) = X509Certificate::from_der(der).ok()?;
        let v = cert.validity();
        Some(CertSummary {
            subject: format_name(cert.subject()),
            issuer: format_name(cert.issuer()),
            not_before: v.not_before.timestamp(),
            not_after: v.not_after.timestamp(),
        })
    }
}

/// RabbitMQ's names for attribute types (rabbit_cert_info:format_rdn); others by OID.
fn attribute_name(oid: &Oid) -> String {
    let id = oid.to_id_string();
    let name = match id.as_str() {
        "2.5.4.4" => "SN",
        "2.5.4.42" => "GIVENNAME",
        "2.5.4.43" => "INITIALS",
        "2.5.4.44" => "GENERATIONQUALIFIER",
        "2.5.4.3" => "CN",
        "2.5.4.7" => "L",
        "2.5.4.8" => "ST",
        "2.5.4.10" => "O",
        "2.5.4.11" => "OU",
        "2.5.4.12" => "TITLE",
        "2.5.4.6" => "C",
        "2.5.4.5" => "SERIALNUMBER",
        "2.5.4.65" => "PSEUDONYM",
        "0.9.2342.19200300.100.1.25" => "DC",
        "1.2.840.113549.1.9.1" => "EMAILADDRESS",
        "2.5.4.9" => "STREET",
        "0.9.2342.19200300.100.1.1" => "UID",
        _ => return id,
    };
    name.to_string()
}

fn attribute_text(a: &AttributeTypeAndValue) -> Option<String> {
    a.as_str().ok().map(str::to_string)
}

/// RFC 4514 escaping, as rabbit_cert_info:escape_rdn_value does it.
fn escape(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    let last = value.chars().count().saturating_sub(1);
    for (i, c) in value.chars().enumerate() {
        let edge = (i == 0 && (c == ' ' || c == '#')) || (i == last && c == ' ');
        if edge || matches!(c, ',' | '+' | '"' | '\\' | '<' | '>' | ';') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// The name's RDNs, most specific (last) first, joined with `,`; the attributes of a
/// multi-valued RDN joined with `+`.
pub(crate) fn format_name(name: &X509Name) -> String {
    let rdns: Vec<String> = name
        .iter()
        .map(|rdn| {
            rdn.iter()
                .map(|a| {
                    let value = attribute_text(a).map_or_else(
                        || {
                            // Not a string type: RabbitMQ prints the raw term; the hex
                            // of the DER value is the closest stable text.
                            let hex: String = a
                                .attr_value()
                                .data
                                .iter()
                                .map(|b| format!("{b:02X}"))
                                .collect();
                            format!("#{hex}")
                        },
                        |v| escape(&v),
                    );
                    format!("{}={value}", attribute_name(a.attr_type()))
                })
                .collect::<Vec<_>>()
                .join("+")
        })
        .collect();
    rdns.into_iter().rev().collect::<Vec<_>>().join(",")
}

/// `YYYY-MM-DDTHH:MM:SSZ` (UTC) for seconds since the epoch.
pub fn format_timestamp(secs: i64) -> String {
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn timestamps() {
        assert_eq!(format_timestamp(0), "1970-01-01T00:00:00Z");
        // 2026-12-05T03:13:42Z, as RabbitMQ printed a test certificate's start.
        assert_eq!(format_timestamp(1_796_440_422), "2026-12-05T03:13:42Z");
        assert_eq!(format_timestamp(951_782_400), "2000-02-29T00:00:00Z");
    }

    #[test]
    fn escapes_like_rfc4514() {
        assert_eq!(escape("a,b"), "a\\,b");
        assert_eq!(escape(" x "), "\\ x\\ ");
        assert_eq!(escape("#1"), "\\#1");
        assert_eq!(escape("plain"), "plain");
    }

    #[test]
    fn names_most_specific_first() {
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        let mut dn = rcgen::DistinguishedName::new();
        dn.push(rcgen::DnType::OrganizationName, "Warren Test");
        dn.push(rcgen::DnType::OrganizationalUnitName, "Clients");
        dn.push(rcgen::DnType::CommonName, "client");
        params.distinguished_name = dn;
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = params.self_signed(&key).unwrap();
        let peer = PeerCert::from_der(cert.der()).unwrap();
        assert_eq!(peer.subject, "CN=client,OU=Clients,O=Warren Test");
        assert_eq!(peer.issuer, peer.subject);
        assert_eq!(peer.common_name.as_deref(), Some("client"));
        assert!(peer.validity.contains("Z - "), "{}", peer.validity);
    }
}

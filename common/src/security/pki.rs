//! The cluster CA and the certificates it issues (`rcgen`, ECDSA P-256).
//!
//! The CA is self-signed, valid [`CA_VALID_DAYS`]; a leaf names its [`Role`] as a DNS name and
//! its holder as the common name, may serve and be a client (both extended key usages: every
//! server also dials others), and is valid [`LEAF_VALID_DAYS`] unless asked otherwise. Keys and
//! certificates travel as PEM.

use super::{Identity, Role, SecurityError};
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SanType,
};
use time::{Duration, OffsetDateTime};

/// How long the cluster CA is valid: replace it (docs/security.md) before then.
pub const CA_VALID_DAYS: i64 = 10 * 365;
/// How long a certificate issued by `kfs init-cluster` or `kfs admin enroll` is valid.
pub const LEAF_VALID_DAYS: i64 = 825;
/// How long a certificate a server makes itself at start (from the CA key) is valid: as long
/// as an issued one, since only a restart makes a new one (the server logs its expiry).
pub const MINTED_VALID_DAYS: i64 = LEAF_VALID_DAYS;

/// A certificate and its private key, in PEM.
#[derive(Clone)]
pub struct Pem {
    pub cert: String,
    pub key: String,
}

impl std::fmt::Debug for Pem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Pem { cert, key: <secret> }")
    }
}

fn validity(params: &mut CertificateParams, days: i64) {
    let now = OffsetDateTime::now_utc();
    // An hour back, for clocks a little apart.
    params.not_before = now - Duration::hours(1);
    params.not_after = now + Duration::days(days);
}

/// A new cluster CA named after `cluster`.
pub fn new_ca(cluster: &str) -> Result<Pem, SecurityError> {
    let key = KeyPair::generate()?;
    let mut params = CertificateParams::new(Vec::<String>::new())?;
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, format!("KFS cluster CA {cluster}"));
    params.distinguished_name = dn;
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    validity(&mut params, CA_VALID_DAYS);
    let cert = params.self_signed(&key)?;
    Ok(Pem {
        cert: cert.pem(),
        key: key.serialize_pem(),
    })
}

/// A certificate for `who`, signed by the CA (`ca`: its certificate and key), valid `days`.
pub fn issue(ca: &Pem, who: &Identity, days: i64) -> Result<Pem, SecurityError> {
    check_name(&who.name)?;
    let ca_key = KeyPair::from_pem(&ca.key)?;
    let issuer = Issuer::from_ca_cert_pem(&ca.cert, ca_key)?;
    let key = KeyPair::generate()?;
    let mut params = CertificateParams::new(Vec::<String>::new())?;
    params.subject_alt_names = vec![SanType::DnsName(
        who.role
            .dns_name()
            .try_into()
            .expect("role names are DNS names"),
    )];
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, who.name.as_str());
    params.distinguished_name = dn;
    params.is_ca = IsCa::ExplicitNoCa;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![
        ExtendedKeyUsagePurpose::ServerAuth,
        ExtendedKeyUsagePurpose::ClientAuth,
    ];
    params.use_authority_key_identifier_extension = true;
    validity(&mut params, days);
    let cert = params.signed_by(&key, &issuer)?;
    Ok(Pem {
        cert: cert.pem(),
        key: key.serialize_pem(),
    })
}

/// A name a certificate may carry: 1 to 64 characters of letters, digits, `.`, `_`, `@` and
/// `-` (user and host names), not starting with `.` (it names a directory of `kfs
/// init-cluster --node`), so that it prints and logs unambiguously.
pub fn check_name(name: &str) -> Result<(), SecurityError> {
    let ok = !name.is_empty()
        && !name.starts_with('.')
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '@'));
    if ok {
        Ok(())
    } else {
        Err(SecurityError::Certificate(format!(
            "'{name}' is not a valid name (1 to 64 letters, digits, '.', '_', '@' or '-', not \
             starting with '.')"
        )))
    }
}

/// The SHA-256 of a certificate (DER): which certificate a peer showed, so that a user's
/// replaced or revoked certificate is told from the one the master recorded.
pub fn cert_digest(der: &[u8]) -> super::CertDigest {
    let digest = ring::digest::digest(&ring::digest::SHA256, der);
    digest.as_ref().try_into().expect("SHA-256 is 32 bytes")
}

/// The certificate (DER) in a PEM text: the first `CERTIFICATE` block.
pub fn first_cert_der(pem: &str) -> Result<Vec<u8>, SecurityError> {
    use rustls_pki_types::pem::PemObject;
    rustls_pki_types::CertificateDer::pem_slice_iter(pem.as_bytes())
        .next()
        .ok_or_else(|| SecurityError::Certificate("no certificate in the PEM text".into()))?
        .map(|der| der.to_vec())
        .map_err(|e| SecurityError::Certificate(format!("a bad certificate: {e}")))
}

/// The identity a certificate (DER) names: its role's DNS name and its common name.
pub fn identity_of(der: &[u8]) -> Result<Identity, SecurityError> {
    use x509_parser::prelude::*;
    let bad = |why: String| SecurityError::Certificate(why);
    let (_, cert) =
        X509Certificate::from_der(der).map_err(|e| bad(format!("not a certificate: {e}")))?;
    let name = cert
        .subject()
        .iter_common_name()
        .next()
        .and_then(|cn| cn.as_str().ok())
        .ok_or_else(|| bad("the certificate has no common name".into()))?
        .to_string();
    let roles: Vec<Role> = cert
        .subject_alternative_name()
        .ok()
        .flatten()
        .map(|san| {
            san.value
                .general_names
                .iter()
                .filter_map(|n| match n {
                    GeneralName::DNSName(dns) => Role::from_dns_name(dns),
                    _ => None,
                })
                .collect()
        })
        .unwrap_or_default();
    match roles.as_slice() {
        [role] => Ok(Identity { role: *role, name }),
        [] => Err(bad(format!(
            "the certificate of '{name}' names no KFS role"
        ))),
        _ => Err(bad(format!(
            "the certificate of '{name}' names several roles"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_issued_certificate_names_its_role_and_holder() {
        let ca = new_ca("test").unwrap();
        for role in Role::ALL {
            let who = Identity {
                role,
                name: "host-1.example".into(),
            };
            let leaf = issue(&ca, &who, 1).unwrap();
            use rustls_pki_types::pem::PemObject;
            let der = rustls_pki_types::CertificateDer::from_pem_slice(leaf.cert.as_bytes());
            assert_eq!(identity_of(&der.unwrap()).unwrap(), who);
        }
    }

    #[test]
    fn names_that_would_print_ambiguously_are_refused() {
        let ca = new_ca("test").unwrap();
        for name in ["", "a b", "x\ny", "née", "..", ".hidden", &"x".repeat(65)] {
            let who = Identity {
                role: Role::User,
                name: name.into(),
            };
            assert!(issue(&ca, &who, 1).is_err(), "{name:?}");
        }
    }
}

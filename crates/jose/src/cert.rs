//! The few facts tokenward needs from an `x5c` certificate.

use aws_lc_rs::digest;

use crate::b64::encode_b64url;

/// Facts read from one DER certificate of an `x5c` chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertInfo {
    /// notBefore, seconds since the epoch.
    pub not_before: i64,
    /// notAfter, seconds since the epoch.
    pub not_after: i64,
    /// Lower-case hex SHA-1 of the DER certificate (what `x5t` encodes).
    pub sha1_hex: String,
    /// Lower-case hex SHA-256 of the DER certificate (`x5t#S256`).
    pub sha256_hex: String,
    /// Base64url SHA-1 of the DER certificate: what a matching `x5t` holds.
    pub x5t: String,
    /// Base64url SHA-256 of the DER certificate: what `x5t#S256` holds.
    pub x5t_s256: String,
    /// Subject distinguished name, for reports.
    pub subject: String,
    /// Raw SubjectPublicKeyInfo bytes, to check the certificate carries the
    /// same key as the JWK around it.
    pub spki_der: Vec<u8>,
}

impl CertInfo {
    /// Reads a DER certificate.
    pub fn from_der(der: &[u8]) -> Result<CertInfo, String> {
        let (rest, cert) = x509_parser::parse_x509_certificate(der)
            .map_err(|e| format!("not a DER X.509 certificate: {e}"))?;
        if !rest.is_empty() {
            return Err("trailing bytes after the certificate".into());
        }
        let validity = cert.validity();
        let sha1 = digest::digest(&digest::SHA1_FOR_LEGACY_USE_ONLY, der);
        let sha256 = digest::digest(&digest::SHA256, der);
        Ok(CertInfo {
            not_before: validity.not_before.timestamp(),
            not_after: validity.not_after.timestamp(),
            sha1_hex: to_hex(sha1.as_ref()),
            sha256_hex: to_hex(sha256.as_ref()),
            x5t: encode_b64url(sha1.as_ref()),
            x5t_s256: encode_b64url(sha256.as_ref()),
            subject: cert.subject().to_string(),
            spki_der: cert.public_key().raw.to_vec(),
        })
    }
}

/// Lower-case hex, as certificate thumbprints are written in denylists.
pub fn to_hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for &b in bytes {
        s.push(DIGITS[usize::from(b >> 4)] as char);
        s.push(DIGITS[usize::from(b & 15)] as char);
    }
    s
}

//! Verification keys bound to exactly one algorithm (RFC 8725 §3.1).

use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::hmac;
use aws_lc_rs::rsa::PublicKeyComponents;
use aws_lc_rs::signature::{self, ParsedPublicKey, VerificationAlgorithm};

use crate::alg::{Algorithm, KeyFamily};
use crate::jwk::{Jwk, KeyMaterial};
use crate::roca::has_roca_fingerprint;

/// Why a JWK cannot serve as a verification key for an algorithm.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct KeyError(pub String);

/// Smallest RSA modulus accepted (RFC 7518 §3.3, §3.5).
pub const MIN_RSA_BITS: usize = 2048;
/// Largest RSA modulus accepted; bigger keys only cost verification time.
pub const MAX_RSA_BITS: usize = 8192;

/// A public key (or, for HS*, a configured secret) usable with exactly one
/// algorithm. Parsed once so verification does no key decoding.
pub struct VerifyingKey {
    alg: Algorithm,
    inner: Inner,
}

enum Inner {
    Public {
        key: ParsedPublicKey,
        /// For ECDSA: curve order, to refuse r or s outside [1, n-1]
        /// before the backend sees them (CVE-2022-21449 class).
        ecdsa_order: Option<&'static [u8]>,
    },
    /// Boxed: an HMAC context is several times larger than a parsed key.
    Hmac(Box<hmac::Key>),
}

impl std::fmt::Debug for VerifyingKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VerifyingKey")
            .field("alg", &self.alg)
            .finish_non_exhaustive()
    }
}

impl VerifyingKey {
    /// Builds a key for `alg` from a JWK. Refuses keys whose `use`/`key_ops`
    /// forbid verification, whose own `alg` differs, whose type or curve does
    /// not fit the algorithm, RSA keys under 2048 bits, exponent 1 or even,
    /// ROCA moduli, and HMAC secrets shorter than the hash.
    pub fn from_jwk(jwk: &Jwk, alg: Algorithm) -> Result<VerifyingKey, KeyError> {
        if !jwk.allows_verify() {
            return Err(KeyError(
                "the key's \"use\"/\"key_ops\" do not allow signature verification".into(),
            ));
        }
        if let Some(own) = jwk.alg.as_deref() {
            if own != alg.name() {
                return Err(KeyError(format!(
                    "the key is declared for {own}, not {}",
                    alg.name()
                )));
            }
        }
        match (alg.family(), &jwk.material) {
            (KeyFamily::Symmetric, KeyMaterial::Oct { k }) => VerifyingKey::hmac(alg, k),
            (KeyFamily::Rsa, KeyMaterial::Rsa { n, e }) => VerifyingKey::rsa(alg, n, e),
            (KeyFamily::Ec(curve), KeyMaterial::Ec { crv, x, y }) => {
                if crv != curve {
                    return Err(KeyError(format!(
                        "{} needs curve {curve}, the key is on {crv}",
                        alg
                    )));
                }
                let mut point = Vec::with_capacity(1 + x.len() + y.len());
                point.push(4);
                point.extend_from_slice(x);
                point.extend_from_slice(y);
                VerifyingKey::ecdsa(alg, &point)
            }
            (KeyFamily::Okp, KeyMaterial::Okp { crv, x }) => {
                if crv != "Ed25519" {
                    return Err(KeyError(format!(
                        "EdDSA is supported on Ed25519 only, not {crv}"
                    )));
                }
                VerifyingKey::public(alg, &signature::ED25519, x, None)
            }
            (_, material) => Err(KeyError(format!(
                "{} cannot be used with a {} key",
                alg,
                material.kty()
            ))),
        }
    }

    /// An HMAC key from a configured secret.
    pub fn hmac(alg: Algorithm, secret: &[u8]) -> Result<VerifyingKey, KeyError> {
        let hmac_alg = match alg {
            Algorithm::HS256 => hmac::HMAC_SHA256,
            Algorithm::HS384 => hmac::HMAC_SHA384,
            Algorithm::HS512 => hmac::HMAC_SHA512,
            other => return Err(KeyError(format!("{other} is not an HMAC algorithm"))),
        };
        if secret.len() < alg.hash_len() {
            return Err(KeyError(format!(
                "{alg} needs a secret of at least {} bytes, this one has {}",
                alg.hash_len(),
                secret.len()
            )));
        }
        Ok(VerifyingKey {
            alg,
            inner: Inner::Hmac(Box::new(hmac::Key::new(hmac_alg, secret))),
        })
    }

    fn rsa(alg: Algorithm, n: &[u8], e: &[u8]) -> Result<VerifyingKey, KeyError> {
        let n = strip_leading_zeros(n);
        let e = strip_leading_zeros(e);
        let bits = KeyMaterial::Rsa {
            n: n.to_vec(),
            e: Vec::new(),
        }
        .bits();
        if bits < MIN_RSA_BITS {
            return Err(KeyError(format!(
                "RSA key of {bits} bits; at least {MIN_RSA_BITS} are required"
            )));
        }
        if bits > MAX_RSA_BITS {
            return Err(KeyError(format!(
                "RSA key of {bits} bits; at most {MAX_RSA_BITS} are accepted"
            )));
        }
        if e.is_empty() || e == [1] || e.last().is_some_and(|b| b & 1 == 0) {
            return Err(KeyError(
                "RSA public exponent must be odd and greater than 1".into(),
            ));
        }
        if has_roca_fingerprint(n) {
            return Err(KeyError(
                "RSA modulus has the ROCA fingerprint (CVE-2017-15361)".into(),
            ));
        }
        let der = PublicKeyComponents { n, e }
            .as_der()
            .map_err(|_| KeyError("RSA key components are invalid".into()))?;
        let params: &'static dyn VerificationAlgorithm = match alg {
            Algorithm::RS256 => &signature::RSA_PKCS1_2048_8192_SHA256,
            Algorithm::RS384 => &signature::RSA_PKCS1_2048_8192_SHA384,
            Algorithm::RS512 => &signature::RSA_PKCS1_2048_8192_SHA512,
            Algorithm::PS256 => &signature::RSA_PSS_2048_8192_SHA256,
            Algorithm::PS384 => &signature::RSA_PSS_2048_8192_SHA384,
            _ => &signature::RSA_PSS_2048_8192_SHA512,
        };
        VerifyingKey::public(alg, params, der.as_ref(), None)
    }

    fn ecdsa(alg: Algorithm, point: &[u8]) -> Result<VerifyingKey, KeyError> {
        let (params, order): (&'static dyn VerificationAlgorithm, &'static [u8]) = match alg {
            Algorithm::ES256 => (&signature::ECDSA_P256_SHA256_FIXED, &P256_ORDER),
            Algorithm::ES384 => (&signature::ECDSA_P384_SHA384_FIXED, &P384_ORDER),
            _ => (&signature::ECDSA_P521_SHA512_FIXED, &P521_ORDER),
        };
        VerifyingKey::public(alg, params, point, Some(order))
    }

    fn public(
        alg: Algorithm,
        params: &'static dyn VerificationAlgorithm,
        bytes: &[u8],
        ecdsa_order: Option<&'static [u8]>,
    ) -> Result<VerifyingKey, KeyError> {
        let key = ParsedPublicKey::new(params, bytes)
            .map_err(|e| KeyError(format!("the backend rejected the public key: {e}")))?;
        Ok(VerifyingKey {
            alg,
            inner: Inner::Public { key, ecdsa_order },
        })
    }

    /// The one algorithm this key verifies.
    pub fn algorithm(&self) -> Algorithm {
        self.alg
    }

    /// Checks `signature` over `signing_input`. ECDSA signatures must be the
    /// exact fixed R||S length with 0 < r, s < n; HMAC tags are compared in
    /// constant time by the backend.
    pub fn verify(&self, signing_input: &[u8], signature: &[u8]) -> bool {
        match &self.inner {
            Inner::Hmac(key) => hmac::verify(key, signing_input, signature).is_ok(),
            Inner::Public { key, ecdsa_order } => {
                if let Some(order) = ecdsa_order {
                    if !ecdsa_scalars_in_range(signature, order) {
                        return false;
                    }
                }
                key.verify_sig(signing_input, signature).is_ok()
            }
        }
    }
}

fn strip_leading_zeros(bytes: &[u8]) -> &[u8] {
    let first = bytes.iter().position(|&b| b != 0).unwrap_or(bytes.len());
    &bytes[first..]
}

/// r and s must each be exactly the order's length, non-zero and below it.
fn ecdsa_scalars_in_range(signature: &[u8], order: &[u8]) -> bool {
    if signature.len() != 2 * order.len() {
        return false;
    }
    let (r, s) = signature.split_at(order.len());
    [r, s]
        .iter()
        .all(|v| v.iter().any(|&b| b != 0) && *v < order)
}

const fn hex_bytes<const N: usize>(hex: &str) -> [u8; N] {
    let h = hex.as_bytes();
    assert!(h.len() == 2 * N, "hex length does not match");
    let mut out = [0u8; N];
    let mut i = 0;
    while i < N {
        out[i] = (nibble(h[2 * i]) << 4) | nibble(h[2 * i + 1]);
        i += 1;
    }
    out
}

const fn nibble(c: u8) -> u8 {
    match c {
        b'0'..=b'9' => c - b'0',
        b'a'..=b'f' => c - b'a' + 10,
        b'A'..=b'F' => c - b'A' + 10,
        _ => panic!("not hex"),
    }
}

// Group orders from SEC 2 / FIPS 186-4 D.1.2.
static P256_ORDER: [u8; 32] =
    hex_bytes("FFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551");
static P384_ORDER: [u8; 48] = hex_bytes(
    "FFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFC7634D81F4372DDF581A0DB248B0A77AECEC196ACCC52973",
);
static P521_ORDER: [u8; 66] = hex_bytes(
    "01FFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFA51868783BF2F966B7FCC0148F709A5D03BB5C9B8899C47AEBB6FB71E91386409",
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ecdsa_range_check() {
        let order = &P256_ORDER[..];
        let mut ok = vec![1u8; 64];
        assert!(ecdsa_scalars_in_range(&ok, order));
        assert!(!ecdsa_scalars_in_range(&[0u8; 64], order));
        ok[..32].copy_from_slice(order);
        assert!(!ecdsa_scalars_in_range(&ok, order), "r = n");
        assert!(!ecdsa_scalars_in_range(&[1u8; 63], order), "short");
        assert!(!ecdsa_scalars_in_range(&[1u8; 65], order), "long");
    }

    #[test]
    fn short_hmac_secret_refused() {
        assert!(VerifyingKey::hmac(Algorithm::HS256, &[7u8; 31]).is_err());
        assert!(VerifyingKey::hmac(Algorithm::HS256, &[7u8; 32]).is_ok());
        assert!(VerifyingKey::hmac(Algorithm::HS512, &[7u8; 48]).is_err());
        assert!(VerifyingKey::hmac(Algorithm::RS256, &[7u8; 64]).is_err());
    }
}

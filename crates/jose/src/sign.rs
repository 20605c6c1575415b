//! Signing, for tests, examples and the probe (which forges tokens on
//! purpose). The verifier never uses this module.

use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::rsa::{KeyPairComponents, KeySize, PublicKeyComponents};
use aws_lc_rs::signature::{self, EcdsaKeyPair, Ed25519KeyPair, KeyPair, RsaKeyPair};
use aws_lc_rs::{hmac, rand};
use serde_json::{json, Value};

use crate::alg::{Algorithm, KeyFamily};
use crate::b64::encode_b64url;

/// Why a signing key could not be made or used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct SignError(pub String);

/// A private key (or secret) bound to one algorithm.
pub struct SigningKey {
    alg: Algorithm,
    inner: Inner,
}

enum Inner {
    Rsa(RsaKeyPair),
    Ecdsa(EcdsaKeyPair),
    Ed25519(Ed25519KeyPair),
    /// Boxed: an HMAC context is several times larger than the other keys.
    Hmac(Box<hmac::Key>, Vec<u8>),
}

fn ecdsa_params(alg: Algorithm) -> Option<&'static signature::EcdsaSigningAlgorithm> {
    match alg {
        Algorithm::ES256 => Some(&signature::ECDSA_P256_SHA256_FIXED_SIGNING),
        Algorithm::ES384 => Some(&signature::ECDSA_P384_SHA384_FIXED_SIGNING),
        Algorithm::ES512 => Some(&signature::ECDSA_P521_SHA512_FIXED_SIGNING),
        _ => None,
    }
}

fn hmac_params(alg: Algorithm) -> Option<hmac::Algorithm> {
    match alg {
        Algorithm::HS256 => Some(hmac::HMAC_SHA256),
        Algorithm::HS384 => Some(hmac::HMAC_SHA384),
        Algorithm::HS512 => Some(hmac::HMAC_SHA512),
        _ => None,
    }
}

impl SigningKey {
    /// Generates a fresh key for `alg` (RSA keys are 2048 bits; HMAC
    /// secrets are 64 random bytes).
    pub fn generate(alg: Algorithm) -> Result<SigningKey, SignError> {
        let fail = |what: &str| SignError(format!("could not generate {what} key"));
        let inner = if let Some(params) = ecdsa_params(alg) {
            Inner::Ecdsa(EcdsaKeyPair::generate(params).map_err(|_| fail("ECDSA"))?)
        } else if let Some(params) = hmac_params(alg) {
            let mut secret = vec![0u8; 64];
            rand::fill(&mut secret).map_err(|_| fail("HMAC"))?;
            Inner::Hmac(Box::new(hmac::Key::new(params, &secret)), secret)
        } else if alg == Algorithm::EdDSA {
            Inner::Ed25519(Ed25519KeyPair::generate().map_err(|_| fail("Ed25519"))?)
        } else {
            Inner::Rsa(RsaKeyPair::generate(KeySize::Rsa2048).map_err(|_| fail("RSA"))?)
        };
        Ok(SigningKey { alg, inner })
    }

    /// Loads a PKCS#8 private key (or, for HS*, the raw secret).
    pub fn from_pkcs8(alg: Algorithm, der: &[u8]) -> Result<SigningKey, SignError> {
        let fail = |e: &dyn std::fmt::Display| SignError(format!("key rejected: {e}"));
        let inner = if let Some(params) = ecdsa_params(alg) {
            Inner::Ecdsa(EcdsaKeyPair::from_pkcs8(params, der).map_err(|e| fail(&e))?)
        } else if let Some(params) = hmac_params(alg) {
            Inner::Hmac(Box::new(hmac::Key::new(params, der)), der.to_vec())
        } else if alg == Algorithm::EdDSA {
            Inner::Ed25519(Ed25519KeyPair::from_pkcs8(der).map_err(|e| fail(&e))?)
        } else {
            Inner::Rsa(RsaKeyPair::from_pkcs8(der).map_err(|e| fail(&e))?)
        };
        Ok(SigningKey { alg, inner })
    }

    /// Loads a DER private key in any of the encodings keys are found in:
    /// PKCS#8 for every family, PKCS#1 `RSAPrivateKey` for RSA, SEC 1
    /// (RFC 5915) for ECDSA. The key must suit `alg`.
    pub fn from_der(alg: Algorithm, der: &[u8]) -> Result<SigningKey, SignError> {
        let fail = |e: &dyn std::fmt::Display| SignError(format!("key rejected for {alg}: {e}"));
        let inner = if let Some(params) = ecdsa_params(alg) {
            Inner::Ecdsa(EcdsaKeyPair::from_private_key_der(params, der).map_err(|e| fail(&e))?)
        } else if hmac_params(alg).is_some() {
            return SigningKey::from_pkcs8(alg, der);
        } else if alg == Algorithm::EdDSA {
            Inner::Ed25519(Ed25519KeyPair::from_pkcs8(der).map_err(|e| fail(&e))?)
        } else {
            Inner::Rsa(
                RsaKeyPair::from_pkcs8(der)
                    .or_else(|_| RsaKeyPair::from_der(der))
                    .map_err(|e| fail(&e))?,
            )
        };
        Ok(SigningKey { alg, inner })
    }

    /// Loads a private JWK (RFC 7518 §6): RSA with `d`, `p`, `q`, `dp`,
    /// `dq`, `qi`; EC with `d`, `x`, `y`; `oct` with `k`. The key type must
    /// suit `alg`; a public-only JWK is refused by name.
    pub fn from_private_jwk(alg: Algorithm, jwk: &Value) -> Result<SigningKey, SignError> {
        let field = |name: &str| -> Result<Vec<u8>, SignError> {
            let text = jwk
                .get(name)
                .and_then(Value::as_str)
                .ok_or_else(|| SignError(format!("private JWK has no \"{name}\"")))?;
            crate::b64::decode_b64url(text.as_bytes())
                .map_err(|_| SignError(format!("private JWK \"{name}\" is not base64url")))
        };
        let kty = jwk.get("kty").and_then(Value::as_str).unwrap_or("");
        let family = alg.family();
        let fail = |e: &dyn std::fmt::Display| SignError(format!("key rejected for {alg}: {e}"));
        let inner = match (kty, family) {
            ("oct", KeyFamily::Symmetric) => {
                let secret = field("k")?;
                let params = hmac_params(alg).expect("symmetric family has HMAC parameters");
                Inner::Hmac(Box::new(hmac::Key::new(params, &secret)), secret)
            }
            ("RSA", KeyFamily::Rsa) => {
                let components = KeyPairComponents {
                    public_key: PublicKeyComponents {
                        n: field("n")?,
                        e: field("e")?,
                    },
                    d: field("d")?,
                    p: field("p")?,
                    q: field("q")?,
                    dP: field("dp")?,
                    dQ: field("dq")?,
                    qInv: field("qi")?,
                };
                Inner::Rsa(RsaKeyPair::from_components(&components).map_err(|e| fail(&e))?)
            }
            ("EC", KeyFamily::Ec(curve)) => {
                let crv = jwk.get("crv").and_then(Value::as_str).unwrap_or("");
                if crv != curve {
                    return Err(SignError(format!(
                        "EC key on curve {crv:?} cannot sign {alg} (needs {curve})"
                    )));
                }
                let mut point = vec![4u8];
                point.extend(field("x")?);
                point.extend(field("y")?);
                let params = ecdsa_params(alg).expect("EC family has ECDSA parameters");
                Inner::Ecdsa(
                    EcdsaKeyPair::from_private_key_and_public_key(params, &field("d")?, &point)
                        .map_err(|e| fail(&e))?,
                )
            }
            _ => return Err(SignError(format!("a {kty:?} JWK cannot sign {alg}"))),
        };
        Ok(SigningKey { alg, inner })
    }

    /// The public key as an X.509 SubjectPublicKeyInfo (DER); `None` for
    /// HMAC secrets.
    pub fn public_spki_der(&self) -> Option<Vec<u8>> {
        match &self.inner {
            Inner::Rsa(k) => Some(k.public_key().as_der().ok()?.as_ref().to_vec()),
            Inner::Ecdsa(k) => Some(k.public_key().as_der().ok()?.as_ref().to_vec()),
            Inner::Ed25519(k) => Some(k.public_key().as_der().ok()?.as_ref().to_vec()),
            Inner::Hmac(..) => None,
        }
    }

    /// The private key as PKCS#8 DER (the raw secret for HS*), so generated
    /// keys can be stored and reloaded.
    pub fn to_pkcs8(&self) -> Result<Vec<u8>, SignError> {
        let fail = || SignError("could not encode the private key".into());
        Ok(match &self.inner {
            Inner::Rsa(k) => k.as_der().map_err(|_| fail())?.as_ref().to_vec(),
            Inner::Ecdsa(k) => k.to_pkcs8v1().map_err(|_| fail())?.as_ref().to_vec(),
            Inner::Ed25519(k) => k.to_pkcs8v1().map_err(|_| fail())?.as_ref().to_vec(),
            Inner::Hmac(_, secret) => secret.clone(),
        })
    }

    /// The algorithm this key signs with.
    pub fn algorithm(&self) -> Algorithm {
        self.alg
    }

    /// The public JWK (for HS*, the `oct` JWK with the secret).
    pub fn public_jwk(&self, kid: &str) -> Value {
        let mut jwk = match &self.inner {
            Inner::Rsa(k) => {
                let c: PublicKeyComponents<Vec<u8>> = k.public_key().into();
                json!({"kty": "RSA", "n": encode_b64url(&c.n), "e": encode_b64url(&c.e)})
            }
            Inner::Ecdsa(k) => {
                let point = k.public_key().as_ref();
                let half = (point.len() - 1) / 2;
                let crv = match self.alg {
                    Algorithm::ES256 => "P-256",
                    Algorithm::ES384 => "P-384",
                    _ => "P-521",
                };
                json!({"kty": "EC", "crv": crv,
                       "x": encode_b64url(&point[1..1 + half]),
                       "y": encode_b64url(&point[1 + half..])})
            }
            Inner::Ed25519(k) => {
                json!({"kty": "OKP", "crv": "Ed25519", "x": encode_b64url(k.public_key().as_ref())})
            }
            Inner::Hmac(_, secret) => json!({"kty": "oct", "k": encode_b64url(secret)}),
        };
        jwk["kid"] = json!(kid);
        jwk["use"] = json!("sig");
        jwk
    }

    /// Signs arbitrary bytes.
    pub fn sign_raw(&self, input: &[u8]) -> Result<Vec<u8>, SignError> {
        let fail = || SignError("signing failed".into());
        let rng = SystemRandom::new();
        Ok(match &self.inner {
            Inner::Rsa(k) => {
                let padding: &'static dyn signature::RsaEncoding = match self.alg {
                    Algorithm::RS256 => &signature::RSA_PKCS1_SHA256,
                    Algorithm::RS384 => &signature::RSA_PKCS1_SHA384,
                    Algorithm::RS512 => &signature::RSA_PKCS1_SHA512,
                    Algorithm::PS256 => &signature::RSA_PSS_SHA256,
                    Algorithm::PS384 => &signature::RSA_PSS_SHA384,
                    _ => &signature::RSA_PSS_SHA512,
                };
                let mut sig = vec![0u8; k.public_modulus_len()];
                k.sign(padding, &rng, input, &mut sig).map_err(|_| fail())?;
                sig
            }
            Inner::Ecdsa(k) => k.sign(&rng, input).map_err(|_| fail())?.as_ref().to_vec(),
            Inner::Ed25519(k) => k.sign(input).as_ref().to_vec(),
            Inner::Hmac(k, _) => hmac::sign(k, input).as_ref().to_vec(),
        })
    }

    /// Builds and signs a compact JWS from a header and a payload object.
    /// The header is used as given (the caller decides `alg`, which lets the
    /// probe write deliberately wrong headers).
    pub fn sign_token(
        &self,
        header: &impl serde::Serialize,
        payload: &impl serde::Serialize,
    ) -> Result<String, SignError> {
        let json = |bytes: serde_json::Result<Vec<u8>>| {
            bytes.map_err(|e| SignError(format!("token part is not JSON: {e}")))
        };
        let input = format!(
            "{}.{}",
            encode_b64url(&json(serde_json::to_vec(header))?),
            encode_b64url(&json(serde_json::to_vec(payload))?)
        );
        let sig = self.sign_raw(input.as_bytes())?;
        Ok(format!("{input}.{}", encode_b64url(&sig)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::jwk::Jwk;
    use crate::key::VerifyingKey;

    #[test]
    fn every_algorithm_round_trips_through_its_public_jwk() {
        for alg in Algorithm::ALL {
            let key = SigningKey::generate(alg).unwrap();
            let jwk = Jwk::from_value(&key.public_jwk("k")).unwrap();
            let verifier = VerifyingKey::from_jwk(&jwk, alg).unwrap();
            let sig = key.sign_raw(b"hello").unwrap();
            assert!(verifier.verify(b"hello", &sig), "{alg}");
            assert!(!verifier.verify(b"hellp", &sig), "{alg} modified message");
            let reloaded = SigningKey::from_pkcs8(alg, &key.to_pkcs8().unwrap()).unwrap();
            assert!(
                verifier.verify(b"x", &reloaded.sign_raw(b"x").unwrap()),
                "{alg} reload"
            );
        }
    }
}

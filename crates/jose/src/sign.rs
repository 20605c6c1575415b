//! Signing, for tests, examples and the probe (which forges tokens on
//! purpose). The verifier never uses this module.

use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::rsa::{KeySize, PublicKeyComponents};
use aws_lc_rs::signature::{self, EcdsaKeyPair, Ed25519KeyPair, KeyPair, RsaKeyPair};
use aws_lc_rs::{hmac, rand};
use serde_json::{json, Value};

use crate::alg::Algorithm;
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
    pub fn sign_token(&self, header: &Value, payload: &Value) -> Result<String, SignError> {
        let input = format!(
            "{}.{}",
            encode_b64url(header.to_string().as_bytes()),
            encode_b64url(payload.to_string().as_bytes())
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

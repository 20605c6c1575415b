//! JSON Web Keys and Key Sets (RFC 7517, RFC 7518 §6, RFC 8037, RFC 7638).

use aws_lc_rs::digest;
use serde_json::{Map, Value};

use crate::b64::{decode_b64_standard, decode_b64url, encode_b64url};
use crate::cert::CertInfo;
use crate::json::parse_strict_value;

/// Why a JWK or JWK Set could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct JwkError(pub String);

fn err(msg: impl Into<String>) -> JwkError {
    JwkError(msg.into())
}

/// The key material of a JWK, decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyMaterial {
    /// `kty` `RSA`: modulus and exponent, big-endian.
    Rsa {
        /// Modulus.
        n: Vec<u8>,
        /// Public exponent.
        e: Vec<u8>,
    },
    /// `kty` `EC`: curve name and affine coordinates.
    Ec {
        /// `crv`.
        crv: String,
        /// x coordinate.
        x: Vec<u8>,
        /// y coordinate.
        y: Vec<u8>,
    },
    /// `kty` `OKP`: curve name and public key.
    Okp {
        /// `crv`.
        crv: String,
        /// Public key bytes.
        x: Vec<u8>,
    },
    /// `kty` `oct`: a shared secret.
    Oct {
        /// The secret.
        k: Vec<u8>,
    },
}

impl KeyMaterial {
    /// The `kty` value.
    pub fn kty(&self) -> &'static str {
        match self {
            KeyMaterial::Rsa { .. } => "RSA",
            KeyMaterial::Ec { .. } => "EC",
            KeyMaterial::Okp { .. } => "OKP",
            KeyMaterial::Oct { .. } => "oct",
        }
    }

    /// The public key as an X.509 SubjectPublicKeyInfo (DER), the form
    /// PEM public-key files hold; `None` for secrets and unusable material.
    pub fn spki_der(&self) -> Option<Vec<u8>> {
        use aws_lc_rs::encoding::AsDer;
        use aws_lc_rs::signature::{self, ParsedPublicKey};
        match self {
            KeyMaterial::Rsa { n, e } => {
                let components = aws_lc_rs::rsa::PublicKeyComponents { n, e };
                Some(components.as_der().ok()?.as_ref().to_vec())
            }
            KeyMaterial::Ec { crv, x, y } => {
                let alg: &'static dyn signature::VerificationAlgorithm = match crv.as_str() {
                    "P-256" => &signature::ECDSA_P256_SHA256_FIXED,
                    "P-384" => &signature::ECDSA_P384_SHA384_FIXED,
                    "P-521" => &signature::ECDSA_P521_SHA512_FIXED,
                    _ => return None,
                };
                let mut point = vec![4u8];
                point.extend_from_slice(x);
                point.extend_from_slice(y);
                let key = ParsedPublicKey::new(alg, &point).ok()?;
                Some(key.as_der().ok()?.as_ref().to_vec())
            }
            KeyMaterial::Okp { crv, x } if crv == "Ed25519" => {
                let key = ParsedPublicKey::new(&signature::ED25519, x).ok()?;
                Some(key.as_der().ok()?.as_ref().to_vec())
            }
            KeyMaterial::Okp { .. } | KeyMaterial::Oct { .. } => None,
        }
    }

    /// Key size in bits: RSA modulus length without leading zeros, curve
    /// size, or secret length.
    pub fn bits(&self) -> usize {
        match self {
            KeyMaterial::Rsa { n, .. } => {
                let first = n.iter().position(|&b| b != 0).unwrap_or(n.len());
                let rest = &n[first..];
                match rest.first() {
                    None => 0,
                    Some(&top) => (rest.len() - 1) * 8 + (8 - top.leading_zeros() as usize),
                }
            }
            KeyMaterial::Ec { crv, .. } => match crv.as_str() {
                "P-256" => 256,
                "P-384" => 384,
                "P-521" => 521,
                _ => 0,
            },
            KeyMaterial::Okp { x, .. } => x.len() * 8,
            KeyMaterial::Oct { k } => k.len() * 8,
        }
    }
}

/// The declared intended use (`use`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyUse {
    /// `sig`.
    Sig,
    /// `enc`.
    Enc,
    /// Any other value.
    Other(String),
}

/// One parsed JWK. Only the public part of a private key is kept; the names
/// of private members found are recorded so an audit can flag them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Jwk {
    /// `kid`.
    pub kid: Option<String>,
    /// `alg` as written (may name a non-JWS algorithm such as `RSA1_5`).
    pub alg: Option<String>,
    /// `use`.
    pub key_use: Option<KeyUse>,
    /// `key_ops`.
    pub key_ops: Option<Vec<String>>,
    /// Microsoft's per-key `issuer` member.
    pub issuer: Option<String>,
    /// `x5t` as written.
    pub x5t: Option<String>,
    /// `x5t#S256` as written.
    pub x5t_s256: Option<String>,
    /// The first `x5c` certificate, read.
    pub cert: Option<CertInfo>,
    /// Number of certificates in `x5c`.
    pub x5c_len: usize,
    /// Decoded key material.
    pub material: KeyMaterial,
    /// Private-key member names present (`d`, `p`, `q`, ...).
    pub private_members: Vec<String>,
}

const PRIVATE_MEMBERS: [&str; 7] = ["d", "p", "q", "dp", "dq", "qi", "oth"];

fn opt_str(obj: &Map<String, Value>, name: &str) -> Result<Option<String>, JwkError> {
    match obj.get(name) {
        None => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(err(format!("member \"{name}\" must be a string"))),
    }
}

fn b64_member(obj: &Map<String, Value>, name: &str) -> Result<Vec<u8>, JwkError> {
    let s = opt_str(obj, name)?.ok_or_else(|| err(format!("member \"{name}\" is missing")))?;
    let bytes = decode_b64url(s.as_bytes())
        .map_err(|e| err(format!("member \"{name}\" is not base64url: {e}")))?;
    if bytes.is_empty() {
        return Err(err(format!("member \"{name}\" is empty")));
    }
    Ok(bytes)
}

impl Jwk {
    /// Parses one JWK from JSON text.
    pub fn parse(bytes: &[u8]) -> Result<Jwk, JwkError> {
        let value = parse_strict_value(bytes).map_err(|e| err(e.0))?;
        Jwk::from_value(&value)
    }

    /// Reads a JWK from an already parsed JSON value.
    pub fn from_value(value: &Value) -> Result<Jwk, JwkError> {
        let obj = value
            .as_object()
            .ok_or_else(|| err("a JWK must be a JSON object"))?;
        let kty = opt_str(obj, "kty")?.ok_or_else(|| err("member \"kty\" is missing"))?;
        let material = match kty.as_str() {
            "RSA" => {
                let n = b64_member(obj, "n")?;
                let e = b64_member(obj, "e")?;
                KeyMaterial::Rsa { n, e }
            }
            "EC" => {
                let crv = opt_str(obj, "crv")?.ok_or_else(|| err("member \"crv\" is missing"))?;
                let x = b64_member(obj, "x")?;
                let y = b64_member(obj, "y")?;
                if let Some(size) = ec_coordinate_len(&crv) {
                    if x.len() != size || y.len() != size {
                        return Err(err(format!(
                            "{crv} coordinates must be {size} bytes, found {} and {}",
                            x.len(),
                            y.len()
                        )));
                    }
                }
                KeyMaterial::Ec { crv, x, y }
            }
            "OKP" => {
                let crv = opt_str(obj, "crv")?.ok_or_else(|| err("member \"crv\" is missing"))?;
                let x = b64_member(obj, "x")?;
                KeyMaterial::Okp { crv, x }
            }
            "oct" => {
                let s = opt_str(obj, "k")?.ok_or_else(|| err("member \"k\" is missing"))?;
                let k = decode_b64url(s.as_bytes())
                    .map_err(|e| err(format!("member \"k\" is not base64url: {e}")))?;
                KeyMaterial::Oct { k }
            }
            other => return Err(err(format!("unsupported key type \"{other}\""))),
        };
        let key_use = opt_str(obj, "use")?.map(|u| match u.as_str() {
            "sig" => KeyUse::Sig,
            "enc" => KeyUse::Enc,
            _ => KeyUse::Other(u),
        });
        let key_ops = match obj.get("key_ops") {
            None => None,
            Some(Value::Array(items)) => Some(
                items
                    .iter()
                    .map(|v| {
                        v.as_str()
                            .map(str::to_owned)
                            .ok_or_else(|| err("\"key_ops\" entries must be strings"))
                    })
                    .collect::<Result<Vec<_>, _>>()?,
            ),
            Some(_) => return Err(err("member \"key_ops\" must be an array")),
        };
        let (cert, x5c_len) = match obj.get("x5c") {
            None => (None, 0),
            Some(Value::Array(chain)) => {
                let first = chain
                    .first()
                    .ok_or_else(|| err("\"x5c\" is an empty array"))?
                    .as_str()
                    .ok_or_else(|| err("\"x5c\" entries must be strings"))?;
                let der = decode_b64_standard(first)
                    .map_err(|e| err(format!("\"x5c\"[0] is not base64: {e}")))?;
                let info = CertInfo::from_der(&der).map_err(|e| err(format!("\"x5c\"[0]: {e}")))?;
                (Some(info), chain.len())
            }
            Some(_) => return Err(err("member \"x5c\" must be an array")),
        };
        let private_members = PRIVATE_MEMBERS
            .iter()
            .filter(|m| obj.contains_key(**m))
            .map(|m| (*m).to_owned())
            .collect();
        Ok(Jwk {
            kid: opt_str(obj, "kid")?,
            alg: opt_str(obj, "alg")?,
            key_use,
            key_ops,
            issuer: opt_str(obj, "issuer")?,
            x5t: opt_str(obj, "x5t")?,
            x5t_s256: opt_str(obj, "x5t#S256")?,
            cert,
            x5c_len,
            material,
            private_members,
        })
    }

    /// RFC 7638 JWK thumbprint (SHA-256, base64url) of the public key.
    pub fn thumbprint(&self) -> String {
        let json = match &self.material {
            KeyMaterial::Rsa { n, e } => format!(
                r#"{{"e":"{}","kty":"RSA","n":"{}"}}"#,
                encode_b64url(e),
                encode_b64url(n)
            ),
            KeyMaterial::Ec { crv, x, y } => format!(
                r#"{{"crv":"{}","kty":"EC","x":"{}","y":"{}"}}"#,
                crv,
                encode_b64url(x),
                encode_b64url(y)
            ),
            KeyMaterial::Okp { crv, x } => {
                format!(
                    r#"{{"crv":"{}","kty":"OKP","x":"{}"}}"#,
                    crv,
                    encode_b64url(x)
                )
            }
            KeyMaterial::Oct { k } => format!(r#"{{"k":"{}","kty":"oct"}}"#, encode_b64url(k)),
        };
        encode_b64url(digest::digest(&digest::SHA256, json.as_bytes()).as_ref())
    }

    /// Whether `use`/`key_ops` permit signature verification (absent means
    /// unrestricted, per RFC 7517 §4.2–4.3).
    pub fn allows_verify(&self) -> bool {
        let use_ok = matches!(self.key_use, None | Some(KeyUse::Sig));
        let ops_ok = self
            .key_ops
            .as_ref()
            .is_none_or(|ops| ops.iter().any(|o| o == "verify"));
        use_ok && ops_ok
    }
}

/// Coordinate length in bytes for the NIST curves.
pub(crate) fn ec_coordinate_len(crv: &str) -> Option<usize> {
    match crv {
        "P-256" => Some(32),
        "P-384" => Some(48),
        "P-521" => Some(66),
        _ => None,
    }
}

/// A JWK Set. Each entry is kept with its own parse result so that one bad
/// key neither hides the others nor disappears silently (RFC 7517 §5 says
/// to ignore unusable keys; tokenward also reports them).
#[derive(Debug, Clone)]
pub struct Jwks {
    /// Keys in document order.
    pub keys: Vec<Result<Jwk, JwkError>>,
}

impl Jwks {
    /// Parses `{"keys": [...]}`.
    pub fn parse(bytes: &[u8]) -> Result<Jwks, JwkError> {
        let value =
            parse_strict_value(bytes).map_err(|e| err(format!("not valid JSON: {}", e.0)))?;
        let keys = value
            .get("keys")
            .and_then(Value::as_array)
            .ok_or_else(|| err("a JWK Set must be an object with a \"keys\" array"))?;
        Ok(Jwks {
            keys: keys.iter().map(Jwk::from_value).collect(),
        })
    }
}

impl Jwks {
    /// Problems that make a whole set unfit as a trust source: two keys with
    /// the same `kid` (which one verifies is then ambiguous), and secret
    /// `oct` keys mixed with public keys (a published set must never carry
    /// secrets, and a secret beside public keys invites HS/RS confusion).
    pub fn set_problems(keys: &[Jwk]) -> Vec<String> {
        let mut problems = Vec::new();
        let mut kids: Vec<&str> = keys.iter().filter_map(|k| k.kid.as_deref()).collect();
        kids.sort_unstable();
        for pair in kids.windows(2) {
            if pair[0] == pair[1] && !problems.iter().any(|p: &String| p.contains(pair[0])) {
                problems.push(format!("duplicate kid \"{}\"", pair[0]));
            }
        }
        let secret = keys
            .iter()
            .any(|k| matches!(k.material, KeyMaterial::Oct { .. }));
        let public = keys
            .iter()
            .any(|k| !matches!(k.material, KeyMaterial::Oct { .. }));
        if secret && public {
            problems.push("symmetric (oct) keys mixed with public keys in one set".into());
        }
        problems
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // RFC 7638 §3.1 example key and its published thumbprint.
    const RFC7638_KEY: &str = r#"{"kty":"RSA","n":"0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw","e":"AQAB","alg":"RS256","kid":"2011-04-29"}"#;

    #[test]
    fn rfc7638_thumbprint() {
        let jwk = Jwk::parse(RFC7638_KEY.as_bytes()).unwrap();
        assert_eq!(
            jwk.thumbprint(),
            "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs"
        );
        assert_eq!(jwk.material.bits(), 2048);
    }

    #[test]
    fn rejects_bad_members() {
        assert!(Jwk::parse(br#"{"kty":"RSA","n":"AQAB"}"#).is_err());
        assert!(Jwk::parse(br#"{"kty":"RSA","n":"AQAB","e":"AQ=="}"#).is_err());
        assert!(Jwk::parse(br#"{"kty":"EC","crv":"P-256","x":"AQAB","y":"AQAB"}"#).is_err());
        assert!(Jwk::parse(br#"{"kty":"XYZ"}"#).is_err());
        assert!(Jwk::parse(br#"{"kty":"oct","k":"AQAB","kty":"oct"}"#).is_err());
    }

    #[test]
    fn set_keeps_bad_entries_separately() {
        let set = Jwks::parse(br#"{"keys":[{"kty":"oct","k":"AQAB","kid":"a"},{"kty":"nope"}]}"#)
            .unwrap();
        assert!(set.keys[0].is_ok());
        assert!(set.keys[1].is_err());
        assert!(Jwks::parse(br#"{"key":[]}"#).is_err());
    }

    #[test]
    fn use_and_key_ops_gate_verification() {
        let k = |extra: &str| {
            Jwk::parse(format!(r#"{{"kty":"oct","k":"AQAB"{extra}}}"#).as_bytes()).unwrap()
        };
        assert!(k("").allows_verify());
        assert!(k(r#","use":"sig""#).allows_verify());
        assert!(!k(r#","use":"enc""#).allows_verify());
        assert!(k(r#","key_ops":["sign","verify"]"#).allows_verify());
        assert!(!k(r#","key_ops":["encrypt"]"#).allows_verify());
    }
}

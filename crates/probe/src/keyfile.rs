//! Reading the keys the user hands the probe: private keys (`--key`,
//! `--foreign-key`) as JWK or PEM, and the target's public keys (`--jwks`,
//! `--public-key`).

use std::path::Path;

use serde_json::Value;
use tokenward_jose::{Algorithm, Jwk, Jwks, KeyFamily, SigningKey};
use tokenward_keys::{read_capped, FetchConfig, Fetcher, Url, MAX_FILE_BYTES};

use crate::forge::{ForeignKey, PublicKeyBytes};
use crate::ProbeError;

fn read(path: &Path, what: &str) -> Result<Vec<u8>, ProbeError> {
    read_capped(path, MAX_FILE_BYTES)
        .map_err(|e| ProbeError::Usage(format!("{what} {}: {e}", path.display())))
}

/// A private key read from a file, before it is bound to an algorithm.
pub struct PrivateKeyFile {
    label: String,
    kind: PrivateKind,
}

enum PrivateKind {
    Jwk(Value),
    Der {
        der: Vec<u8>,
        only: Option<KeyFamily>,
    },
}

/// The algorithm a key signs with when nothing asks for another one.
fn default_algorithms(family: Option<KeyFamily>) -> Vec<Algorithm> {
    match family {
        Some(KeyFamily::Rsa) => vec![Algorithm::RS256],
        Some(KeyFamily::Ec(_)) => vec![Algorithm::ES256, Algorithm::ES384, Algorithm::ES512],
        Some(KeyFamily::Symmetric) => vec![Algorithm::HS256],
        Some(KeyFamily::Okp) => vec![Algorithm::EdDSA],
        None => vec![
            Algorithm::RS256,
            Algorithm::ES256,
            Algorithm::ES384,
            Algorithm::ES512,
            Algorithm::EdDSA,
        ],
    }
}

impl PrivateKeyFile {
    /// Reads a private JWK (JSON) or a PEM private key (`PRIVATE KEY`,
    /// `RSA PRIVATE KEY`, `EC PRIVATE KEY`).
    pub fn read(path: &Path, what: &str) -> Result<PrivateKeyFile, ProbeError> {
        let bytes = read(path, what)?;
        let label = path.file_name().map_or_else(
            || path.display().to_string(),
            |n| n.to_string_lossy().into_owned(),
        );
        let bad = |why: String| ProbeError::Usage(format!("{what} {}: {why}", path.display()));
        let text =
            std::str::from_utf8(&bytes).map_err(|_| bad("not text (give a JWK or PEM)".into()))?;
        if text.trim_start().starts_with('{') {
            let value: Value =
                serde_json::from_str(text).map_err(|e| bad(format!("not JSON: {e}")))?;
            if !value.is_object() {
                return Err(bad("not a JWK object".into()));
            }
            if value.get("d").is_none() && value.get("k").is_none() {
                return Err(bad(
                    "a public JWK: the private member \"d\" is missing".into()
                ));
            }
            return Ok(PrivateKeyFile {
                label,
                kind: PrivateKind::Jwk(value),
            });
        }
        let block = pem::parse(text).map_err(|e| bad(format!("not a JWK or PEM: {e}")))?;
        let only = match block.tag() {
            "PRIVATE KEY" => None,
            "RSA PRIVATE KEY" => Some(KeyFamily::Rsa),
            "EC PRIVATE KEY" => Some(KeyFamily::Ec("")),
            other => {
                return Err(bad(format!(
                    "PEM block {other:?} is not a private key (PRIVATE KEY, RSA PRIVATE KEY or EC PRIVATE KEY)"
                )))
            }
        };
        Ok(PrivateKeyFile {
            label,
            kind: PrivateKind::Der {
                der: block.into_contents(),
                only,
            },
        })
    }

    /// The file name, for the report.
    pub fn label(&self) -> &str {
        &self.label
    }

    /// The `kid` of a JWK.
    pub fn kid(&self) -> Option<&str> {
        match &self.kind {
            PrivateKind::Jwk(v) => v.get("kid").and_then(Value::as_str),
            PrivateKind::Der { .. } => None,
        }
    }

    /// Binds the key to `preferred` when it can sign with it, else to the
    /// algorithm the JWK names, else to the usual one for its type.
    pub fn signing_key(&self, preferred: Option<Algorithm>) -> Result<SigningKey, ProbeError> {
        let mut candidates: Vec<Algorithm> = preferred.into_iter().collect();
        match &self.kind {
            PrivateKind::Jwk(jwk) => {
                if let Some(alg) = jwk
                    .get("alg")
                    .and_then(Value::as_str)
                    .and_then(|a| a.parse().ok())
                {
                    candidates.push(alg);
                }
                let family = match jwk.get("kty").and_then(Value::as_str) {
                    Some("RSA") => Some(KeyFamily::Rsa),
                    Some("EC") => Some(KeyFamily::Ec("")),
                    Some("oct") => Some(KeyFamily::Symmetric),
                    Some("OKP") => Some(KeyFamily::Okp),
                    _ => None,
                };
                candidates.extend(default_algorithms(family));
                let mut last = String::new();
                for alg in candidates {
                    match SigningKey::from_private_jwk(alg, jwk) {
                        Ok(key) => return Ok(key),
                        Err(e) => last = e.0,
                    }
                }
                Err(ProbeError::Usage(format!("{}: {last}", self.label)))
            }
            PrivateKind::Der { der, only } => {
                candidates.extend(default_algorithms(*only));
                candidates.retain(|a| a.family() != KeyFamily::Symmetric);
                for alg in candidates {
                    if let Ok(key) = SigningKey::from_der(alg, der) {
                        return Ok(key);
                    }
                }
                Err(ProbeError::Usage(format!(
                    "{}: no supported RSA, EC or Ed25519 private key in it",
                    self.label
                )))
            }
        }
    }
}

/// The target's published keys as parsed JWKs, from a file or a URL.
pub fn read_jwks(source: &str) -> Result<Vec<Jwk>, ProbeError> {
    let bytes = if source.starts_with("https://") || source.starts_with("http://") {
        let url =
            Url::parse(source).map_err(|e| ProbeError::Usage(format!("--jwks {source}: {e}")))?;
        let fetcher = Fetcher::new(FetchConfig {
            // Staging targets often serve their keys on loopback.
            allow_plain_http_loopback: true,
            ..FetchConfig::default()
        })
        .map_err(|e| ProbeError::Usage(format!("--jwks {source}: {e}")))?;
        fetcher
            .get(&url, None)
            .map_err(|e| ProbeError::Usage(format!("--jwks {source}: {e}")))?
            .body
            .unwrap_or_default()
    } else {
        read(Path::new(source), "--jwks")?
    };
    let value: Value = serde_json::from_slice(&bytes)
        .map_err(|e| ProbeError::Usage(format!("--jwks {source}: not JSON: {e}")))?;
    let set = if value.get("keys").is_some() {
        Jwks::parse(&bytes).map_err(|e| ProbeError::Usage(format!("--jwks {source}: {}", e.0)))?
    } else {
        // A single JWK file is a set of one.
        Jwks::parse(serde_json::json!({"keys": [value]}).to_string().as_bytes())
            .map_err(|e| ProbeError::Usage(format!("--jwks {source}: {}", e.0)))?
    };
    Ok(set.keys.into_iter().filter_map(Result::ok).collect())
}

/// The keys a confused verifier might use as an HMAC secret: the one the
/// token names, or (when its `kid` is not in the set) the first four.
pub fn public_keys_from_jwks(keys: &[Jwk], kid: Option<&str>) -> Vec<PublicKeyBytes> {
    let named: Vec<&Jwk> = keys
        .iter()
        .filter(|k| k.kid.as_deref() == kid && kid.is_some())
        .collect();
    let chosen: Vec<&Jwk> = if named.is_empty() {
        keys.iter().take(4).collect()
    } else {
        named
    };
    chosen
        .into_iter()
        .enumerate()
        .filter_map(|(i, jwk)| {
            let spki = jwk.material.spki_der()?;
            let label = jwk.kid.clone().unwrap_or_else(|| format!("key#{i}"));
            Some(PublicKeyBytes::from_spki(label, &spki, None))
        })
        .collect()
}

/// A `--public-key` file: a PEM public key or certificate, or a JWK.
pub fn read_public_key(path: &Path) -> Result<PublicKeyBytes, ProbeError> {
    let bytes = read(path, "--public-key")?;
    let label = path.file_name().map_or_else(
        || path.display().to_string(),
        |n| n.to_string_lossy().into_owned(),
    );
    let bad = |why: &str| ProbeError::Usage(format!("--public-key {}: {why}", path.display()));
    let text = std::str::from_utf8(&bytes).map_err(|_| bad("not text"))?;
    if text.trim_start().starts_with('{') {
        let jwk = Jwk::parse(&bytes).map_err(|e| bad(&e.0))?;
        let spki = jwk
            .material
            .spki_der()
            .ok_or_else(|| bad("not a public key"))?;
        let mut out = PublicKeyBytes::from_spki(label, &spki, None);
        out.encodings.push(("jwk-as-given".into(), bytes));
        return Ok(out);
    }
    let block = pem::parse(text).map_err(|e| bad(&format!("not PEM: {e}")))?;
    match block.tag() {
        "PUBLIC KEY" => Ok(PublicKeyBytes::from_spki(
            label,
            block.contents(),
            Some(bytes.clone()),
        )),
        "RSA PUBLIC KEY" | "CERTIFICATE" => Ok(PublicKeyBytes {
            label,
            encodings: vec![
                ("file-as-given".into(), bytes.clone()),
                ("der".into(), block.contents().to_vec()),
            ],
        }),
        other => Err(bad(&format!("PEM block {other:?} is not a public key"))),
    }
}

/// Binds each `--foreign-key` to its algorithm and the `kid` the target's
/// key set lists it under.
pub fn foreign_keys(files: &[PrivateKeyFile], jwks: &[Jwk]) -> Result<Vec<ForeignKey>, ProbeError> {
    files
        .iter()
        .map(|file| {
            let key = file.signing_key(None)?;
            let spki = key.public_spki_der();
            let listed = jwks
                .iter()
                .find(|jwk| spki.is_some() && jwk.material.spki_der() == spki);
            let kid = match (file.kid(), listed.and_then(|j| j.kid.as_deref())) {
                (_, Some(kid)) => kid.to_owned(),
                (Some(kid), None) => kid.to_owned(),
                (None, None) => {
                    return Err(ProbeError::Usage(format!(
                        "--foreign-key {}: its kid is unknown; give it as a JWK with \"kid\", or pass --jwks with the set that lists it",
                        file.label()
                    )))
                }
            };
            // Match the algorithm the set declares for it, if any.
            let key = match listed.and_then(|j| j.alg.as_deref()).and_then(|a| a.parse::<Algorithm>().ok()) {
                Some(alg) if alg != key.algorithm() => file.signing_key(Some(alg))?,
                _ => key,
            };
            Ok(ForeignKey {
                key,
                kid,
                label: file.label().to_owned(),
            })
        })
        .collect()
}

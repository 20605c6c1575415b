//! Saved snapshots of a key set and the comparison with a later copy, so a
//! key quietly added to (or swapped in) a set is noticed.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use tokenward_jose::{Jwks, KeyUse};

use crate::audit::{Finding, FindingCode, Severity};
use crate::timefmt::format_rfc3339;

/// The format tag written into every snapshot.
pub const SNAPSHOT_FORMAT: &str = "tokenward-keys-snapshot/1";

/// What a snapshot records of one key: enough to tell it apart, no secrets.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyRecord {
    /// `kid`.
    pub kid: Option<String>,
    /// RFC 7638 thumbprint (SHA-256, base64url) of the public key.
    pub thumbprint: String,
    /// `kty`.
    pub kty: String,
    /// `alg`.
    pub alg: Option<String>,
    /// `use`.
    #[serde(rename = "use")]
    pub key_use: Option<String>,
    /// Microsoft's per-key `issuer`.
    pub issuer: Option<String>,
    /// Hex SHA-256 of the `x5c` certificate.
    pub cert_sha256: Option<String>,
    /// Certificate notAfter, RFC 3339.
    pub cert_not_after: Option<String>,
}

impl KeyRecord {
    /// The identity a key is matched on across snapshots: its `kid`, or its
    /// thumbprint when it has none.
    pub fn identity(&self) -> String {
        match &self.kid {
            Some(k) => format!("kid {k:?}"),
            None => format!("thumbprint {}", self.thumbprint),
        }
    }
}

/// A saved key set.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Snapshot {
    /// [`SNAPSHOT_FORMAT`].
    pub format: String,
    /// The source as given.
    pub source: String,
    /// When the snapshot was taken, RFC 3339.
    pub taken_at: String,
    /// The readable keys, in set order.
    pub keys: Vec<KeyRecord>,
}

impl Snapshot {
    /// Records a parsed set (unreadable entries are left out; the audit
    /// reports them).
    pub fn from_jwks(source: &str, jwks: &Jwks, now: i64) -> Snapshot {
        let keys = jwks
            .keys
            .iter()
            .filter_map(|k| k.as_ref().ok())
            .map(|k| KeyRecord {
                kid: k.kid.clone(),
                thumbprint: k.thumbprint(),
                kty: k.material.kty().to_owned(),
                alg: k.alg.clone(),
                key_use: k.key_use.as_ref().map(|u| match u {
                    KeyUse::Sig => "sig".to_owned(),
                    KeyUse::Enc => "enc".to_owned(),
                    KeyUse::Other(o) => o.clone(),
                }),
                issuer: k.issuer.clone(),
                cert_sha256: k.cert.as_ref().map(|c| c.sha256_hex.clone()),
                cert_not_after: k.cert.as_ref().map(|c| format_rfc3339(c.not_after)),
            })
            .collect();
        Snapshot {
            format: SNAPSHOT_FORMAT.to_owned(),
            source: source.to_owned(),
            taken_at: format_rfc3339(now),
            keys,
        }
    }

    /// Reads a snapshot file's text.
    pub fn parse(text: &str) -> Result<Snapshot, String> {
        let snap: Snapshot =
            serde_json::from_str(text).map_err(|e| format!("not a key snapshot: {e}"))?;
        if snap.format != SNAPSHOT_FORMAT {
            return Err(format!(
                "snapshot format {:?}, expected {SNAPSHOT_FORMAT:?}",
                snap.format
            ));
        }
        Ok(snap)
    }

    /// Pretty JSON.
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).unwrap_or_default()
    }
}

/// Keys added, removed and changed between a baseline and a current copy.
pub fn compare(baseline: &Snapshot, current: &Snapshot) -> Vec<Finding> {
    let index = |s: &Snapshot| -> BTreeMap<String, KeyRecord> {
        s.keys.iter().map(|k| (k.identity(), k.clone())).collect()
    };
    let (old, new) = (index(baseline), index(current));
    let mut out = Vec::new();
    for (id, k) in &new {
        match old.get(id) {
            None => out.push(Finding::new(
                FindingCode::KeyAdded,
                k.kid.as_deref(),
                format!(
                    "{id} ({} thumbprint {}, issuer {}) is not in the baseline of {}",
                    k.kty,
                    k.thumbprint,
                    k.issuer.as_deref().unwrap_or("none"),
                    baseline.taken_at
                ),
            )),
            Some(was) if was != k => {
                let mut what = Vec::new();
                if was.thumbprint != k.thumbprint {
                    what.push(format!(
                        "key material {} -> {}",
                        was.thumbprint, k.thumbprint
                    ));
                }
                let mut field = |name: &str, a: &Option<String>, b: &Option<String>| {
                    if a != b {
                        what.push(format!(
                            "{name} {} -> {}",
                            a.as_deref().unwrap_or("none"),
                            b.as_deref().unwrap_or("none")
                        ));
                    }
                };
                field("issuer", &was.issuer, &k.issuer);
                field("alg", &was.alg, &k.alg);
                field("use", &was.key_use, &k.key_use);
                field("certificate", &was.cert_sha256, &k.cert_sha256);
                let material_or_scope =
                    was.thumbprint != k.thumbprint || was.issuer != k.issuer || was.alg != k.alg;
                let f = Finding::new(
                    FindingCode::KeyChanged,
                    k.kid.as_deref(),
                    format!("{id} changed: {}", what.join("; ")),
                );
                // A new key or scope under an old name is what an attacker
                // would do; a renewed certificate alone is routine.
                out.push(if material_or_scope {
                    f
                } else {
                    f.with_severity(Severity::Medium)
                });
            }
            Some(_) => {}
        }
    }
    for (id, k) in &old {
        if !new.contains_key(id) {
            out.push(Finding::new(
                FindingCode::KeyRemoved,
                k.kid.as_deref(),
                format!("{id} of the baseline is no longer published"),
            ));
        }
    }
    out
}

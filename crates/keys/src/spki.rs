//! Does an `x5c` certificate carry the same key as the JWK around it?
//!
//! A JWK whose `x5c` certificate holds another key is a key set lying about
//! its own provenance: tools that trust the certificate and tools that
//! trust `n`/`e` then disagree about which key is published. The check
//! reads the certificate's SubjectPublicKeyInfo with a minimal DER reader
//! (only SEQUENCE, OID, BIT STRING and INTEGER are needed) and compares the
//! key itself, not the encoding, so equivalent encodings still match.

use tokenward_jose::KeyMaterial;

const OID_RSA: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01];
const OID_RSA_PSS: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x0a];
const OID_EC: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01];
const OID_P256: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07];
const OID_P384: &[u8] = &[0x2b, 0x81, 0x04, 0x00, 0x22];
const OID_P521: &[u8] = &[0x2b, 0x81, 0x04, 0x00, 0x23];
const OID_ED25519: &[u8] = &[0x2b, 0x65, 0x70];
const OID_ED448: &[u8] = &[0x2b, 0x65, 0x71];

/// One DER element: tag and contents; returns the rest.
fn element(input: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = input.split_first()?;
    let (&first, rest) = rest.split_first()?;
    let (len, rest) = if first < 0x80 {
        (usize::from(first), rest)
    } else {
        let n = usize::from(first & 0x7f);
        if n == 0 || n > 4 || rest.len() < n {
            return None;
        }
        let len = rest[..n]
            .iter()
            .fold(0usize, |acc, &b| (acc << 8) | usize::from(b));
        (len, &rest[n..])
    };
    if rest.len() < len {
        return None;
    }
    Some((tag, &rest[..len], &rest[len..]))
}

fn expect(input: &[u8], want: u8) -> Option<(&[u8], &[u8])> {
    let (tag, body, rest) = element(input)?;
    (tag == want).then_some((body, rest))
}

fn strip_zeros(b: &[u8]) -> &[u8] {
    let first = b.iter().position(|&x| x != 0).unwrap_or(b.len());
    &b[first..]
}

/// The key in a SubjectPublicKeyInfo, as JWK-comparable material.
fn spki_material(spki: &[u8]) -> Option<KeyMaterial> {
    let (body, _) = expect(spki, 0x30)?;
    let (algid, rest) = expect(body, 0x30)?;
    let (bits, _) = expect(rest, 0x03)?;
    let (&unused, key) = bits.split_first()?;
    if unused != 0 {
        return None;
    }
    let (oid, params) = expect(algid, 0x06)?;
    match oid {
        o if o == OID_RSA || o == OID_RSA_PSS => {
            let (seq, _) = expect(key, 0x30)?;
            let (n, rest) = expect(seq, 0x02)?;
            let (e, _) = expect(rest, 0x02)?;
            Some(KeyMaterial::Rsa {
                n: strip_zeros(n).to_vec(),
                e: strip_zeros(e).to_vec(),
            })
        }
        o if o == OID_EC => {
            let (curve, _) = expect(params, 0x06)?;
            let (crv, size) = match curve {
                c if c == OID_P256 => ("P-256", 32),
                c if c == OID_P384 => ("P-384", 48),
                c if c == OID_P521 => ("P-521", 66),
                _ => return None,
            };
            let point = key.strip_prefix(&[4])?;
            if point.len() != 2 * size {
                return None;
            }
            Some(KeyMaterial::Ec {
                crv: crv.into(),
                x: point[..size].to_vec(),
                y: point[size..].to_vec(),
            })
        }
        o if o == OID_ED25519 || o == OID_ED448 => Some(KeyMaterial::Okp {
            crv: if o == OID_ED25519 { "Ed25519" } else { "Ed448" }.into(),
            x: key.to_vec(),
        }),
        _ => None,
    }
}

/// `Some(true)` when the certificate key is the JWK's key, `Some(false)`
/// when it is another key, `None` when the certificate's key type cannot
/// be read here (then nothing is claimed either way).
pub fn spki_matches(spki_der: &[u8], jwk: &KeyMaterial) -> Option<bool> {
    let cert = spki_material(spki_der)?;
    Some(match (&cert, jwk) {
        (KeyMaterial::Rsa { n: cn, e: ce }, KeyMaterial::Rsa { n, e }) => {
            cn.as_slice() == strip_zeros(n) && ce.as_slice() == strip_zeros(e)
        }
        _ => cert == *jwk,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_lengths() {
        assert_eq!(
            element(&[0x04, 0x01, 0xaa, 0xbb]),
            Some((4, &[0xaa][..], &[0xbb][..]))
        );
        assert_eq!(
            element(&[0x04, 0x81, 0x01, 0xaa]),
            Some((4, &[0xaa][..], &[][..]))
        );
        assert_eq!(element(&[0x04, 0x02, 0xaa]), None);
        assert_eq!(element(&[0x04, 0x80]), None);
        assert_eq!(
            spki_matches(&[0x30, 0x00], &KeyMaterial::Oct { k: vec![1] }),
            None
        );
    }
}

//! The JWS algorithms tokenward implements (RFC 7518 §3, RFC 8037).

use std::fmt;
use std::str::FromStr;

/// A JWS signature or MAC algorithm. `none` is deliberately not representable.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Algorithm {
    /// HMAC with SHA-256.
    HS256,
    /// HMAC with SHA-384.
    HS384,
    /// HMAC with SHA-512.
    HS512,
    /// RSASSA-PKCS1-v1_5 with SHA-256.
    RS256,
    /// RSASSA-PKCS1-v1_5 with SHA-384.
    RS384,
    /// RSASSA-PKCS1-v1_5 with SHA-512.
    RS512,
    /// RSASSA-PSS with SHA-256, MGF1 SHA-256, salt 32.
    PS256,
    /// RSASSA-PSS with SHA-384, MGF1 SHA-384, salt 48.
    PS384,
    /// RSASSA-PSS with SHA-512, MGF1 SHA-512, salt 64.
    PS512,
    /// ECDSA P-256 with SHA-256, R||S signature.
    ES256,
    /// ECDSA P-384 with SHA-384, R||S signature.
    ES384,
    /// ECDSA P-521 with SHA-512, R||S signature.
    ES512,
    /// Ed25519 (RFC 8037).
    EdDSA,
}

/// Which kind of key an algorithm needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum KeyFamily {
    /// A shared secret (`kty` `oct`).
    Symmetric,
    /// An RSA public key.
    Rsa,
    /// An EC public key on the named curve.
    Ec(&'static str),
    /// An Ed25519 public key (`kty` `OKP`).
    Okp,
}

impl Algorithm {
    /// Every implemented algorithm.
    pub const ALL: [Algorithm; 13] = [
        Algorithm::HS256,
        Algorithm::HS384,
        Algorithm::HS512,
        Algorithm::RS256,
        Algorithm::RS384,
        Algorithm::RS512,
        Algorithm::PS256,
        Algorithm::PS384,
        Algorithm::PS512,
        Algorithm::ES256,
        Algorithm::ES384,
        Algorithm::ES512,
        Algorithm::EdDSA,
    ];

    /// The registered name, exactly as it appears in `alg`.
    pub fn name(self) -> &'static str {
        match self {
            Algorithm::HS256 => "HS256",
            Algorithm::HS384 => "HS384",
            Algorithm::HS512 => "HS512",
            Algorithm::RS256 => "RS256",
            Algorithm::RS384 => "RS384",
            Algorithm::RS512 => "RS512",
            Algorithm::PS256 => "PS256",
            Algorithm::PS384 => "PS384",
            Algorithm::PS512 => "PS512",
            Algorithm::ES256 => "ES256",
            Algorithm::ES384 => "ES384",
            Algorithm::ES512 => "ES512",
            Algorithm::EdDSA => "EdDSA",
        }
    }

    /// The key family this algorithm requires.
    pub fn family(self) -> KeyFamily {
        match self {
            Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512 => KeyFamily::Symmetric,
            Algorithm::RS256
            | Algorithm::RS384
            | Algorithm::RS512
            | Algorithm::PS256
            | Algorithm::PS384
            | Algorithm::PS512 => KeyFamily::Rsa,
            Algorithm::ES256 => KeyFamily::Ec("P-256"),
            Algorithm::ES384 => KeyFamily::Ec("P-384"),
            Algorithm::ES512 => KeyFamily::Ec("P-521"),
            Algorithm::EdDSA => KeyFamily::Okp,
        }
    }

    /// Output size of the hash, which is also the minimum HMAC key size
    /// (RFC 7518 §3.2).
    pub(crate) fn hash_len(self) -> usize {
        match self {
            Algorithm::HS256 | Algorithm::RS256 | Algorithm::PS256 | Algorithm::ES256 => 32,
            Algorithm::HS384 | Algorithm::RS384 | Algorithm::PS384 | Algorithm::ES384 => 48,
            Algorithm::HS512 | Algorithm::RS512 | Algorithm::PS512 | Algorithm::ES512 => 64,
            Algorithm::EdDSA => 64,
        }
    }
}

impl FromStr for Algorithm {
    type Err = ();
    /// Exact, case-sensitive match: `none`, `None`, `hs256` and `RS256 ` are
    /// all unknown (RFC 7515 §4.1.1 names are case-sensitive).
    fn from_str(s: &str) -> Result<Self, ()> {
        Algorithm::ALL.into_iter().find(|a| a.name() == s).ok_or(())
    }
}

impl fmt::Display for Algorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_exact() {
        for a in Algorithm::ALL {
            assert_eq!(a.name().parse::<Algorithm>(), Ok(a));
        }
        for bad in [
            "none", "None", "NONE", "nOnE", "hs256", "RS256 ", "", "ES256K",
        ] {
            assert!(bad.parse::<Algorithm>().is_err(), "{bad}");
        }
    }
}

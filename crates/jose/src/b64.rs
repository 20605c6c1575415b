//! Strict base64url, as RFC 7515 §2 requires for compact JWS.

use base64::alphabet;
use base64::engine::general_purpose::GeneralPurpose;
use base64::engine::{DecodePaddingMode, GeneralPurposeConfig};
use base64::Engine;

/// No padding accepted and non-canonical trailing bits rejected, so every
/// byte string has exactly one accepted encoding (no signature malleability
/// through the encoding).
const STRICT_URL: GeneralPurpose = GeneralPurpose::new(
    &alphabet::URL_SAFE,
    GeneralPurposeConfig::new()
        .with_encode_padding(false)
        .with_decode_padding_mode(DecodePaddingMode::RequireNone)
        .with_decode_allow_trailing_bits(false),
);

/// Decodes unpadded base64url, rejecting padding, whitespace, characters
/// outside the URL-safe alphabet and non-canonical trailing bits.
pub fn decode_b64url(input: &[u8]) -> Result<Vec<u8>, base64::DecodeError> {
    STRICT_URL.decode(input)
}

/// Decodes into a caller-supplied buffer (cleared first), to avoid an
/// allocation per token on hot paths.
pub(crate) fn decode_b64url_into(
    input: &[u8],
    out: &mut Vec<u8>,
) -> Result<(), base64::DecodeError> {
    out.clear();
    STRICT_URL.decode_vec(input, out)
}

/// Encodes as unpadded base64url.
pub fn encode_b64url(input: &[u8]) -> String {
    STRICT_URL.encode(input)
}

/// Standard base64 with padding, as used by `x5c` certificate entries
/// (RFC 7517 §4.7), strict about trailing bits.
pub(crate) fn decode_b64_standard(input: &str) -> Result<Vec<u8>, base64::DecodeError> {
    const STRICT_STD: GeneralPurpose = GeneralPurpose::new(
        &alphabet::STANDARD,
        GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
    );
    STRICT_STD.decode(input)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejects_padding_whitespace_and_foreign_characters() {
        assert_eq!(decode_b64url(b"Zm9v").unwrap(), b"foo");
        assert!(decode_b64url(b"Zm8=").is_err());
        assert!(decode_b64url(b"Zm 9v").is_err());
        assert!(decode_b64url(b"Zm+v").is_err());
        assert!(decode_b64url(b"Zm/v").is_err());
        assert!(decode_b64url(b"Zm9v?").is_err());
    }

    #[test]
    fn rejects_non_canonical_trailing_bits() {
        // "Zm8" is the canonical form of "fo"; "Zm9" sets a trailing bit.
        assert_eq!(decode_b64url(b"Zm8").unwrap(), b"fo");
        assert!(decode_b64url(b"Zm9").is_err());
    }
}

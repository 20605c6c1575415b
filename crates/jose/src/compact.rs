//! Compact JWS serialization (RFC 7515 §3.1, §5.2).

use crate::b64::{decode_b64url_into, decode_b64url_small, B64Error};
use crate::error::{Error, ErrorKind};
use crate::header::Header;

/// Size limits applied before any decoding, so hostile input costs at most
/// a bounded scan.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Maximum length of the whole compact token, in bytes.
    pub max_token_bytes: usize,
    /// Maximum length of the encoded protected header, in bytes.
    pub max_header_bytes: usize,
}

impl Default for Limits {
    /// 64 KiB for a token is four times the largest Entra access token with
    /// group claims we have seen; 8 KiB of header is far more than any
    /// legitimate header needs.
    fn default() -> Self {
        Limits {
            max_token_bytes: 64 * 1024,
            max_header_bytes: 8 * 1024,
        }
    }
}

/// A parsed compact JWS. The signature has not been checked.
#[derive(Debug, Clone)]
pub struct Jws<'a> {
    /// The protected header.
    pub header: Header,
    /// `BASE64URL(header) || '.' || BASE64URL(payload)`, the signed bytes.
    pub signing_input: &'a str,
    /// The decoded payload.
    pub payload: Vec<u8>,
    /// The decoded signature.
    pub signature: Vec<u8>,
}

impl<'a> Jws<'a> {
    /// Parses a compact JWS: exactly three segments of strict base64url, a
    /// protected header that is a UTF-8 JSON object without duplicate
    /// names, a supported `alg`, and no `crit`.
    pub fn parse(token: &'a str, limits: &Limits) -> Result<Jws<'a>, Error> {
        let bytes = token.as_bytes();
        if bytes.len() > limits.max_token_bytes {
            return Err(Error::new(
                ErrorKind::TooLarge,
                format!(
                    "token is {} bytes, the limit is {}",
                    bytes.len(),
                    limits.max_token_bytes
                ),
            ));
        }
        let Some((h, p, s)) = split_three(token) else {
            let dots = count_dots(bytes);
            return Err(Error::malformed(format!(
                "a compact JWS has exactly 3 segments, found {}",
                dots + 1
            )));
        };
        if h.len() > limits.max_header_bytes {
            return Err(Error::new(
                ErrorKind::TooLarge,
                format!(
                    "header is {} bytes, the limit is {}",
                    h.len(),
                    limits.max_header_bytes
                ),
            ));
        }
        if h.is_empty() {
            return Err(Error::malformed("header segment is empty"));
        }
        // Strict base64url decoding refuses every byte outside the URL-safe
        // alphabet (padding, whitespace, '+', '/', '?', JSON braces), which
        // is draft-ietf-oauth-rfc8725bis "Check JWT Format Type" without a
        // separate pass over the token.
        let refused = |seg: &str, what: &str, e: B64Error| {
            Error::malformed(
                match seg.bytes().find(|&b| !COMPACT_ALPHABET[usize::from(b)]) {
                    Some(b) => format!(
                        "{what} has character {:?}, not allowed in a compact JWS",
                        char::from(b)
                    ),
                    None => format!("{what} is not base64url: {e}"),
                },
            )
        };
        let decode = |seg: &str, what: &str| {
            let mut out = Vec::with_capacity(seg.len() * 3 / 4 + 3);
            decode_b64url_into(seg.as_bytes(), &mut out).map_err(|e| refused(seg, what, e))?;
            Ok::<_, Error>(out)
        };
        // Headers are short and read only here, so they are decoded on the
        // stack; a long one (up to the header limit) takes the heap.
        let mut small = [std::mem::MaybeUninit::<u8>::uninit(); 384];
        let header = match decode_b64url_small(h.as_bytes(), &mut small) {
            Some(Ok(bytes)) => Header::parse(bytes)?,
            Some(Err(e)) => return Err(refused(h, "header", e)),
            None => Header::parse(&decode(h, "header")?)?,
        };
        let payload = decode(p, "payload")?;
        let signature = decode(s, "signature")?;
        Ok(Jws {
            header,
            signing_input: &token[..h.len() + 1 + p.len()],
            payload,
            signature,
        })
    }
}

/// The three dot-separated segments, when there are exactly three.
/// memchr finds the dots with SIMD; `str::split` looked at a word at a time
/// and cost more than decoding the header.
fn split_three(token: &str) -> Option<(&str, &str, &str)> {
    let first = memchr::memchr(b'.', token.as_bytes())?;
    let rest = &token[first + 1..];
    let second = memchr::memchr(b'.', rest.as_bytes())?;
    let signature = &rest[second + 1..];
    if memchr::memchr(b'.', signature.as_bytes()).is_some() {
        return None;
    }
    Some((&token[..first], &rest[..second], signature))
}

/// Bytes allowed in a compact JWS: base64url and `.`.
static COMPACT_ALPHABET: [bool; 256] = {
    let mut table = [false; 256];
    let mut b = 0;
    while b < 256 {
        let c = b as u8;
        table[b] = c.is_ascii_alphanumeric() || c == b'-' || c == b'_' || c == b'.';
        b += 1;
    }
    table
};

fn count_dots(bytes: &[u8]) -> usize {
    bytes.iter().filter(|&&b| b == b'.').count()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::b64::encode_b64url;

    fn tok(header: &str, payload: &str, sig: &[u8]) -> String {
        format!(
            "{}.{}.{}",
            encode_b64url(header.as_bytes()),
            encode_b64url(payload.as_bytes()),
            encode_b64url(sig)
        )
    }

    #[test]
    fn splits_three_segments() {
        let t = tok(r#"{"alg":"ES256"}"#, r#"{"a":1}"#, b"sig");
        let jws = Jws::parse(&t, &Limits::default()).unwrap();
        assert_eq!(jws.payload, br#"{"a":1}"#);
        assert_eq!(jws.signature, b"sig");
        assert_eq!(jws.signing_input, &t[..t.rfind('.').unwrap()]);
    }

    #[test]
    fn rejects_wrong_segment_counts_and_characters() {
        let t = tok(r#"{"alg":"ES256"}"#, "{}", b"sig");
        let limits = Limits::default();
        let two = t.rsplit_once('.').unwrap().0;
        assert_eq!(
            Jws::parse(two, &limits).unwrap_err().kind,
            ErrorKind::Malformed
        );
        assert_eq!(
            Jws::parse(&format!("{t}.x"), &limits).unwrap_err().kind,
            ErrorKind::Malformed
        );
        assert!(Jws::parse(&format!("{t}="), &limits).is_err());
        assert!(Jws::parse(&format!(" {t}"), &limits).is_err());
        assert!(Jws::parse(&t.replacen('.', "+.", 1), &limits).is_err());
        assert!(Jws::parse("", &limits).is_err());
    }

    /// Headers decoded on the stack and on the heap read the same, on
    /// either side of the stack buffer's size, and refusals name the
    /// header either way.
    #[test]
    fn short_and_long_headers_read_alike() {
        let limits = Limits::default();
        for decoded_len in [30, 383, 384, 385, 2000] {
            let pad = decoded_len - r#"{"alg":"ES256","kid":""}"#.len();
            let header = format!(r#"{{"alg":"ES256","kid":"{}"}}"#, "k".repeat(pad));
            assert_eq!(header.len(), decoded_len);
            let t = tok(&header, "{}", b"sig");
            let jws = Jws::parse(&t, &limits).unwrap();
            assert_eq!(jws.header.kid.as_deref().map(str::len), Some(pad));
            let (h, rest) = t.split_once('.').unwrap();
            for bad in [
                format!("{h}*.{rest}"),
                format!("{}.{rest}", &h[..h.len() - 1]),
            ] {
                let e = Jws::parse(&bad, &limits).unwrap_err();
                assert_eq!(e.kind, ErrorKind::Malformed);
                assert!(e.message.starts_with("header "), "{e:?}");
            }
        }
    }

    #[test]
    fn enforces_size_limits() {
        let limits = Limits {
            max_token_bytes: 100,
            max_header_bytes: 20,
        };
        let big = tok(r#"{"alg":"ES256"}"#, &"x".repeat(200), b"s");
        assert_eq!(
            Jws::parse(&big, &limits).unwrap_err().kind,
            ErrorKind::TooLarge
        );
        let big_header = tok(r#"{"alg":"ES256","kid":"aaaaaaaaaa"}"#, "{}", b"s");
        assert_eq!(
            Jws::parse(&big_header, &limits).unwrap_err().kind,
            ErrorKind::TooLarge
        );
    }
}

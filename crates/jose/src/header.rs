//! The protected JOSE header.

use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, Visitor};
use serde::Deserialize;

use crate::alg::Algorithm;
use crate::error::{Error, ErrorKind};
use crate::json::{duplicate_member, utf8_text, JsonType, Key, SeenNames, StrictIgnore};

/// The header members tokenward reads. Keys carried in the header (`jwk`,
/// `jku`, `x5u`, `x5c`) are only recorded as present: they are never a
/// source of trust (RFC 8725 §3.10).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Header {
    /// The algorithm, already checked to be one we implement.
    pub alg: Option<Algorithm>,
    /// `kid`, if present.
    pub kid: Option<String>,
    /// `typ`, if present.
    pub typ: Option<String>,
    /// `cty`, if present.
    pub cty: Option<String>,
    /// `x5t` (base64url SHA-1 certificate thumbprint), if present.
    pub x5t: Option<String>,
    /// `x5t#S256`, if present.
    pub x5t_s256: Option<String>,
    /// Names of embedded-key members present (`jwk`, `jku`, `x5u`, `x5c`).
    pub embedded_key_members: Vec<&'static str>,
}

/// What the visitor found before the semantic checks in [`Header::parse`].
#[derive(Default)]
struct RawHeader {
    /// A supported algorithm, or the unsupported name.
    alg: Option<Result<Algorithm, String>>,
    kid: Option<String>,
    typ: Option<String>,
    cty: Option<String>,
    x5t: Option<String>,
    x5t_s256: Option<String>,
    crit_present: bool,
    b64: Option<bool>,
    embedded: Vec<&'static str>,
    type_error: Option<(&'static str, JsonType)>,
}

impl Header {
    /// Parses and checks a decoded protected header.
    pub(crate) fn parse(bytes: &[u8]) -> Result<Header, Error> {
        let text = utf8_text(bytes)
            .map_err(|e| Error::malformed(format!("header is not a valid JSON object: {e}")))?;
        let mut de = serde_json::Deserializer::from_str(text);
        let raw = RawHeader::deserialize(&mut de)
            .and_then(|raw| de.end().map(|()| raw))
            .map_err(|e| Error::malformed(format!("header is not a valid JSON object: {e}")))?;
        if let Some((name, found)) = raw.type_error {
            return Err(Error::malformed(format!(
                "header member \"{name}\" must be a string, found {}",
                found.name()
            )));
        }
        if raw.crit_present {
            return Err(Error::new(
                ErrorKind::CritUnsupported,
                "header lists critical extensions (\"crit\"); none are supported",
            ));
        }
        if raw.b64 == Some(false) {
            return Err(Error::new(
                ErrorKind::CritUnsupported,
                "unencoded payloads (\"b64\": false) are not supported",
            ));
        }
        let alg = match raw.alg {
            None => return Err(Error::malformed("header has no \"alg\"")),
            Some(Ok(alg)) => alg,
            Some(Err(name)) => {
                return Err(Error::new(
                    ErrorKind::AlgNotAllowed,
                    format!("algorithm {name:?} is not supported"),
                ))
            }
        };
        Ok(Header {
            alg: Some(alg),
            kid: raw.kid,
            typ: raw.typ,
            cty: raw.cty,
            x5t: raw.x5t,
            x5t_s256: raw.x5t_s256,
            embedded_key_members: raw.embedded,
        })
    }

    /// The algorithm; always set on a header returned by parsing.
    pub fn algorithm(&self) -> Algorithm {
        self.alg.expect("parsed headers always carry an algorithm")
    }
}

/// Reads a string through `F` (which sees it without a copy), or records
/// the JSON type found instead.
struct StrOr<F>(F);

impl<'de, T, F: FnOnce(&str) -> T> DeserializeSeed<'de> for StrOr<F> {
    type Value = Result<T, JsonType>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de, T, F: FnOnce(&str) -> T> Visitor<'de> for StrOr<F> {
    type Value = Result<T, JsonType>;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON value")
    }
    fn visit_str<E>(self, v: &str) -> Result<Self::Value, E> {
        Ok(Ok((self.0)(v)))
    }
    fn visit_bool<E>(self, _: bool) -> Result<Self::Value, E> {
        Ok(Err(JsonType::Bool))
    }
    fn visit_i64<E>(self, _: i64) -> Result<Self::Value, E> {
        Ok(Err(JsonType::Number))
    }
    fn visit_u64<E>(self, _: u64) -> Result<Self::Value, E> {
        Ok(Err(JsonType::Number))
    }
    fn visit_f64<E>(self, _: f64) -> Result<Self::Value, E> {
        Ok(Err(JsonType::Number))
    }
    fn visit_unit<E>(self) -> Result<Self::Value, E> {
        Ok(Err(JsonType::Null))
    }
    fn visit_seq<A: de::SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        while seq.next_element::<StrictIgnore>()?.is_some() {}
        Ok(Err(JsonType::Array))
    }
    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
        StrictIgnoreMap::drain(map)?;
        Ok(Err(JsonType::Object))
    }
}

/// Drains a map through the duplicate-checking skipper.
struct StrictIgnoreMap;

impl StrictIgnoreMap {
    fn drain<'de, A: MapAccess<'de>>(mut map: A) -> Result<(), A::Error> {
        let mut seen = SeenNames::default();
        while let Some(Key(name)) = map.next_key()? {
            seen.insert(name)?;
            map.next_value::<StrictIgnore>()?;
        }
        Ok(())
    }
}

impl<'de> Deserialize<'de> for RawHeader {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_map(RawHeaderVisitor)
    }
}

struct RawHeaderVisitor;

impl<'de> Visitor<'de> for RawHeaderVisitor {
    type Value = RawHeader;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON object")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<RawHeader, A::Error> {
        let mut raw = RawHeader::default();
        // Members we read are told apart by a bit each, which doubles as
        // their duplicate check; only other names go through `seen`, so a
        // usual header ({"alg","kid","typ","x5t"}) allocates nothing here.
        let mut present: u16 = 0;
        let mut seen = SeenNames::default();
        while let Some(Key(name)) = map.next_key()? {
            let name_ref: &str = &name;
            let bit = match name_ref {
                "alg" => 0,
                "kid" => 1,
                "typ" => 2,
                "cty" => 3,
                "x5t" => 4,
                "x5t#S256" => 5,
                "crit" => 6,
                "b64" => 7,
                "jwk" => 8,
                "jku" => 9,
                "x5u" => 10,
                "x5c" => 11,
                _ => {
                    map.next_value::<StrictIgnore>()?;
                    seen.insert(name)?;
                    continue;
                }
            };
            if present & (1 << bit) != 0 {
                return Err(duplicate_member(name_ref));
            }
            present |= 1 << bit;
            let slot = match bit {
                0 => {
                    // The name is checked in place; only an unsupported
                    // one is copied, for the error message.
                    let alg = StrOr(|v: &str| v.parse::<Algorithm>().map_err(|()| v.to_owned()));
                    match map.next_value_seed(alg)? {
                        Ok(a) => raw.alg = Some(a),
                        Err(t) => {
                            raw.type_error.get_or_insert(("alg", t));
                        }
                    }
                    continue;
                }
                1 => (&mut raw.kid, "kid"),
                2 => (&mut raw.typ, "typ"),
                3 => (&mut raw.cty, "cty"),
                4 => (&mut raw.x5t, "x5t"),
                5 => (&mut raw.x5t_s256, "x5t#S256"),
                6 => {
                    map.next_value::<StrictIgnore>()?;
                    raw.crit_present = true;
                    continue;
                }
                7 => {
                    let v = map.next_value::<serde_json::Value>()?;
                    raw.b64 = Some(v.as_bool().ok_or_else(|| {
                        de::Error::custom("header member \"b64\" must be a boolean")
                    })?);
                    continue;
                }
                _ => {
                    map.next_value::<StrictIgnore>()?;
                    raw.embedded.push(["jwk", "jku", "x5u", "x5c"][bit - 8]);
                    continue;
                }
            };
            let (field, label) = slot;
            match map.next_value_seed(StrOr(str::to_owned))? {
                Ok(s) => *field = Some(s),
                Err(t) => {
                    raw.type_error.get_or_insert((label, t));
                }
            }
        }
        Ok(raw)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_registered_members() {
        let h = Header::parse(br#"{"alg":"RS256","kid":"k1","typ":"at+jwt","x5t":"abc"}"#).unwrap();
        assert_eq!(h.algorithm(), Algorithm::RS256);
        assert_eq!(h.kid.as_deref(), Some("k1"));
        assert_eq!(h.typ.as_deref(), Some("at+jwt"));
        assert_eq!(h.x5t.as_deref(), Some("abc"));
    }

    #[test]
    fn rejects_none_crit_b64_duplicates_and_wrong_types() {
        let kind = |h: &[u8]| Header::parse(h).unwrap_err().kind;
        assert_eq!(kind(br#"{"alg":"none"}"#), ErrorKind::AlgNotAllowed);
        assert_eq!(
            kind(br#"{"alg":"RS256","crit":["exp"]}"#),
            ErrorKind::CritUnsupported
        );
        assert_eq!(
            kind(br#"{"alg":"RS256","b64":false}"#),
            ErrorKind::CritUnsupported
        );
        assert_eq!(
            kind(br#"{"alg":"none","alg":"RS256"}"#),
            ErrorKind::Malformed
        );
        assert_eq!(kind(br#"{"alg":"RS256","kid":7}"#), ErrorKind::Malformed);
        assert_eq!(kind(br#"{"alg":["RS256"]}"#), ErrorKind::Malformed);
        assert_eq!(kind(br#"{"kid":"x"}"#), ErrorKind::Malformed);
        assert_eq!(kind(br#"["alg"]"#), ErrorKind::Malformed);
        assert!(Header::parse(br#"{"alg":"RS256","b64":true}"#).is_ok());
    }

    /// Members read by name and other members are both checked for
    /// duplicates, escaped spellings included; `alg` is checked in place.
    #[test]
    fn duplicates_of_read_and_unread_members_and_alg_errors() {
        let err = |h: &[u8]| Header::parse(h).unwrap_err();
        for dup in [
            &br#"{"alg":"RS256","kid":"a","kid":"b"}"#[..],
            br#"{"alg":"RS256","\u006bid":"a","kid":"b"}"#,
            br#"{"alg":"RS256","x":1,"x":2}"#,
            br#"{"alg":"RS256","x":1,"\u0078":2}"#,
            br#"{"alg":"RS256","jwk":{},"jwk":{}}"#,
            br#"{"alg":"RS256","h":{"a":1,"a":2}}"#,
        ] {
            let e = err(dup);
            assert_eq!(e.kind, ErrorKind::Malformed, "{e:?}");
            assert!(e.message.contains("duplicate member name"), "{e:?}");
        }
        assert!(Header::parse(br#"{"alg":"RS256","x":1,"y":{"x":2},"kid":"k"}"#).is_ok());
        let e = err(br#"{"alg":"RS257"}"#);
        assert_eq!(e.kind, ErrorKind::AlgNotAllowed);
        assert!(e.message.contains("\"RS257\""), "{e:?}");
        let e = err(br#"{"alg":5}"#);
        assert_eq!(e.kind, ErrorKind::Malformed);
        assert!(
            e.message
                .contains("\"alg\" must be a string, found a number"),
            "{e:?}"
        );
    }

    #[test]
    fn embedded_keys_recorded_not_used() {
        let h = Header::parse(br#"{"alg":"RS256","jwk":{"kty":"RSA"},"jku":"https://x"}"#).unwrap();
        assert_eq!(h.embedded_key_members, vec!["jwk", "jku"]);
    }
}

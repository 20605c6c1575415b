//! JWT claim sets (RFC 7519 §4) read strictly.

use std::fmt;

use serde::de::{DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;

use crate::json::{utf8_text, JsonType, Key, SeenNames, StrictIgnore};

/// Seconds since the epoch, as a JSON number (RFC 7519 §2). Fractions are
/// allowed by the RFC and kept.
#[derive(Debug, Clone, Copy, PartialEq, PartialOrd)]
pub struct NumericDate(pub f64);

/// The `aud` claim: one string or an array of strings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Audience {
    /// `"aud": "x"`.
    One(String),
    /// `"aud": ["x", "y"]`.
    Many(Vec<String>),
}

impl Audience {
    /// Every audience value.
    pub fn values(&self) -> &[String] {
        match self {
            Audience::One(a) => std::slice::from_ref(a),
            Audience::Many(v) => v,
        }
    }
}

/// The claims a verifier and the access log need, read in one pass with
/// duplicate names rejected at every depth. A registered claim of the wrong
/// JSON type is recorded in [`Claims::type_errors`] rather than treated as
/// absent (CVE-2026-25537 was that confusion).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Claims {
    /// `iss`.
    pub iss: Option<String>,
    /// `sub`.
    pub sub: Option<String>,
    /// `aud`.
    pub aud: Option<Audience>,
    /// `exp`.
    pub exp: Option<NumericDate>,
    /// `nbf`.
    pub nbf: Option<NumericDate>,
    /// `iat`.
    pub iat: Option<NumericDate>,
    /// `jti`.
    pub jti: Option<String>,
    /// Entra tenant id `tid`.
    pub tid: Option<String>,
    /// Entra object id `oid`.
    pub oid: Option<String>,
    /// Entra v1 application id `appid`.
    pub appid: Option<String>,
    /// OIDC authorized party / Entra v2 application id `azp`.
    pub azp: Option<String>,
    /// RFC 9068 / RFC 8693 `client_id`.
    pub client_id: Option<String>,
    /// Entra unique token identifier `uti`.
    pub uti: Option<String>,
    /// Session id `sid`.
    pub sid: Option<String>,
    /// Registered claims present with the wrong JSON type: (name, what was found).
    pub type_errors: Vec<(&'static str, &'static str)>,
    /// Bit i set: `KNOWN[i]` is present (whatever its type).
    present_known: u32,
    /// Bit i set: the i-th name passed to [`Claims::parse_noting`] is present.
    present_extra: u64,
}

/// Claims whose presence is always recorded. Recording presence as bits
/// instead of a list of names keeps the hot path free of allocations.
const KNOWN: [&str; 14] = [
    "iss",
    "sub",
    "aud",
    "exp",
    "nbf",
    "iat",
    "jti",
    "tid",
    "oid",
    "appid",
    "azp",
    "client_id",
    "uti",
    "sid",
];

/// Position of a name in [`KNOWN`]; a `match` compiles to a length switch
/// plus one comparison, cheaper than scanning the list for every claim.
fn known_index(name: &str) -> Option<usize> {
    Some(match name {
        "iss" => 0,
        "sub" => 1,
        "aud" => 2,
        "exp" => 3,
        "nbf" => 4,
        "iat" => 5,
        "jti" => 6,
        "tid" => 7,
        "oid" => 8,
        "appid" => 9,
        "azp" => 10,
        "client_id" => 11,
        "uti" => 12,
        "sid" => 13,
        _ => return None,
    })
}

/// Most names a caller may ask [`Claims::parse_noting`] to watch for.
pub const MAX_NOTED_CLAIMS: usize = 64;

impl Claims {
    /// Parses a JWT payload. Fails only when the payload is not a UTF-8
    /// JSON object or has duplicate member names.
    pub fn parse(payload: &[u8]) -> Result<Claims, String> {
        Claims::parse_noting(payload, &[])
    }

    /// Like [`Claims::parse`], also recording which of `names` (at most
    /// [`MAX_NOTED_CLAIMS`]; extra names are ignored) are present, for
    /// [`Claims::has_noted`].
    pub fn parse_noting(payload: &[u8], names: &[String]) -> Result<Claims, String> {
        let mut de = serde_json::Deserializer::from_str(utf8_text(payload)?);
        let claims = ClaimsSeed { noted: names }
            .deserialize(&mut de)
            .map_err(|e| e.to_string())?;
        de.end().map_err(|e| e.to_string())?;
        Ok(claims)
    }

    /// Whether a registered or identity claim (`iss`, `sub`, `aud`, `exp`,
    /// `nbf`, `iat`, `jti`, `tid`, `oid`, `appid`, `azp`, `client_id`,
    /// `uti`, `sid`) is present, whatever its type. Other names: false.
    pub fn has(&self, name: &str) -> bool {
        known_index(name).is_some_and(|i| self.present_known & (1 << i) != 0)
    }

    /// Whether the `index`-th name given to [`Claims::parse_noting`] is present.
    pub fn has_noted(&self, index: usize) -> bool {
        index < MAX_NOTED_CLAIMS && self.present_extra & (1 << index) != 0
    }
}

/// A claim value read without committing to a type.
enum Loose {
    Str(String),
    Num(f64),
    StrArray(Vec<String>),
    Other(JsonType),
}

impl<'de> Deserialize<'de> for Loose {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(LooseVisitor)
    }
}

struct LooseVisitor;

impl<'de> Visitor<'de> for LooseVisitor {
    type Value = Loose;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON value")
    }
    fn visit_str<E>(self, v: &str) -> Result<Loose, E> {
        Ok(Loose::Str(v.to_owned()))
    }
    fn visit_string<E>(self, v: String) -> Result<Loose, E> {
        Ok(Loose::Str(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Loose, E> {
        Ok(Loose::Num(v as f64))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Loose, E> {
        Ok(Loose::Num(v as f64))
    }
    fn visit_f64<E>(self, v: f64) -> Result<Loose, E> {
        Ok(Loose::Num(v))
    }
    fn visit_bool<E>(self, _: bool) -> Result<Loose, E> {
        Ok(Loose::Other(JsonType::Bool))
    }
    fn visit_unit<E>(self) -> Result<Loose, E> {
        Ok(Loose::Other(JsonType::Null))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Loose, A::Error> {
        let mut strings = Vec::new();
        let mut all_strings = true;
        while let Some(item) = seq.next_element::<Loose>()? {
            match item {
                Loose::Str(s) if all_strings => strings.push(s),
                _ => all_strings = false,
            }
        }
        Ok(if all_strings {
            Loose::StrArray(strings)
        } else {
            Loose::Other(JsonType::Array)
        })
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Loose, A::Error> {
        let mut seen = SeenNames::default();
        while let Some(Key(name)) = map.next_key()? {
            seen.insert(name)?;
            map.next_value::<StrictIgnore>()?;
        }
        Ok(Loose::Other(JsonType::Object))
    }
}

fn found(l: &Loose) -> &'static str {
    match l {
        Loose::Str(_) => JsonType::String.name(),
        Loose::Num(_) => JsonType::Number.name(),
        Loose::StrArray(_) => JsonType::Array.name(),
        Loose::Other(t) => t.name(),
    }
}

struct ClaimsSeed<'n> {
    noted: &'n [String],
}

impl<'de> DeserializeSeed<'de> for ClaimsSeed<'_> {
    type Value = Claims;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Claims, D::Error> {
        d.deserialize_map(ClaimsVisitor { noted: self.noted })
    }
}

struct ClaimsVisitor<'n> {
    noted: &'n [String],
}

impl<'de> Visitor<'de> for ClaimsVisitor<'_> {
    type Value = Claims;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON object")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Claims, A::Error> {
        let mut c = Claims::default();
        let mut seen = SeenNames::default();
        while let Some(Key(name)) = map.next_key()? {
            let known = known_index(&name);
            if !self.noted.is_empty() {
                let n: &str = &name;
                if let Some(i) = self
                    .noted
                    .iter()
                    .take(MAX_NOTED_CLAIMS)
                    .position(|k| k == n)
                {
                    c.present_extra |= 1 << i;
                }
            }
            // A registered name's bit doubles as its duplicate check, so
            // only other names go through `seen`.
            match known {
                Some(i) if c.present_known & (1 << i) != 0 => {
                    return Err(serde::de::Error::custom(format_args!(
                        "duplicate member name \"{name}\""
                    )));
                }
                Some(i) => c.present_known |= 1 << i,
                None => seen.insert(name)?,
            }
            match known {
                // iss, sub, jti, tid: strings; another type is an error.
                Some(i @ (0 | 1 | 6 | 7)) => match map.next_value::<Loose>()? {
                    Loose::Str(v) => {
                        let slot = match i {
                            0 => &mut c.iss,
                            1 => &mut c.sub,
                            6 => &mut c.jti,
                            _ => &mut c.tid,
                        };
                        *slot = Some(v);
                    }
                    other => c.type_errors.push((KNOWN[i], found(&other))),
                },
                Some(2) => match map.next_value::<Loose>()? {
                    Loose::Str(v) => c.aud = Some(Audience::One(v)),
                    Loose::StrArray(v) => c.aud = Some(Audience::Many(v)),
                    other => c.type_errors.push(("aud", found(&other))),
                },
                // exp, nbf, iat: NumericDate.
                Some(i @ 3..=5) => match map.next_value::<Loose>()? {
                    Loose::Num(v) if v.is_finite() => {
                        let slot = match i {
                            3 => &mut c.exp,
                            4 => &mut c.nbf,
                            _ => &mut c.iat,
                        };
                        *slot = Some(NumericDate(v));
                    }
                    other => c.type_errors.push((KNOWN[i], found(&other))),
                },
                // oid, appid, azp, client_id, uti, sid: informational, kept
                // when they are strings, never decisive, so another type is
                // not an error.
                Some(i) => {
                    if let Loose::Str(v) = map.next_value::<Loose>()? {
                        let slot = match i {
                            8 => &mut c.oid,
                            9 => &mut c.appid,
                            10 => &mut c.azp,
                            11 => &mut c.client_id,
                            12 => &mut c.uti,
                            _ => &mut c.sid,
                        };
                        *slot = Some(v);
                    }
                }
                None => {
                    map.next_value::<StrictIgnore>()?;
                }
            }
        }
        Ok(c)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_registered_claims() {
        let c = Claims::parse(
            br#"{"iss":"i","sub":"s","aud":["a","b"],"exp":10,"nbf":1.5,"iat":2,"tid":"t","uti":"u"}"#,
        )
        .unwrap();
        assert_eq!(c.iss.as_deref(), Some("i"));
        assert_eq!(c.aud.unwrap().values(), ["a", "b"]);
        assert_eq!(c.exp, Some(NumericDate(10.0)));
        assert_eq!(c.nbf, Some(NumericDate(1.5)));
        assert_eq!(c.uti.as_deref(), Some("u"));
        assert!(c.type_errors.is_empty());
    }

    #[test]
    fn wrong_types_are_errors_not_absent() {
        let c = Claims::parse(br#"{"exp":"9999999999","nbf":null,"aud":[1],"iss":{}}"#).unwrap();
        let names: Vec<_> = c.type_errors.iter().map(|(n, _)| *n).collect();
        assert_eq!(names, ["exp", "nbf", "aud", "iss"]);
        assert!(c.exp.is_none());
        assert!(c.has("exp"));
        assert!(!c.has("sub"));
    }

    #[test]
    fn noted_names_are_recorded() {
        let names = vec!["scp".to_owned(), "roles".to_owned()];
        let c = Claims::parse_noting(br#"{"scp":"a","x":1}"#, &names).unwrap();
        assert!(c.has_noted(0));
        assert!(!c.has_noted(1));
        assert!(!c.has_noted(99));
    }

    #[test]
    fn duplicates_and_non_objects_rejected() {
        assert!(Claims::parse(br#"{"exp":1,"exp":2}"#).is_err());
        // A registered name spelt with an escape is the same name.
        assert!(Claims::parse(br#"{"iss":"a","\u0069ss":"b"}"#).is_err());
        assert!(Claims::parse(br#"{"x":1,"x":2}"#).is_err());
        assert!(Claims::parse(br#"{"x":1,"\u0078":2}"#).is_err());
        // Under an unregistered claim, through the strict skip.
        assert!(Claims::parse(br#"{"ext":{"a":1,"b":{"c":1,"c":2}}}"#).is_err());
        assert!(Claims::parse(br#"{"iss":"a","x":1,"\u0069s":2,"y":[{"z":1}]}"#).is_ok());
        assert!(Claims::parse(br#"{"x":{"y":1,"y":2}}"#).is_err());
        assert!(Claims::parse(br#"[1]"#).is_err());
        assert!(Claims::parse(b"{\"a\":\"\xff\"}").is_err());
    }
}

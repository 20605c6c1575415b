//! JWT claim sets (RFC 7519 §4) read strictly.

use std::fmt;

use serde::de::{DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};

use crate::json::{duplicate_member, not_utf8, utf8_text, JsonType, Key, SeenNames, StrictIgnore};

/// Seconds since the epoch, as a JSON number (RFC 7519 §2). Fractions are
/// allowed by the RFC and kept.
#[derive(Debug, Clone, Copy, PartialEq, PartialOrd)]
pub struct NumericDate(pub f64);

/// A payload that is not a claim set, handed back by
/// [`Claims::parse_owned`] with the reason.
#[derive(Debug)]
pub struct NotClaims {
    /// Why the payload was refused.
    pub reason: String,
    /// The payload, unchanged.
    pub payload: Vec<u8>,
}

/// The `aud` claim: one string or an array of strings, read from a
/// [`Claims`].
#[derive(Clone, Copy)]
pub struct Audience<'c> {
    claims: &'c Claims,
    values: &'c [Text],
}

impl<'c> Audience<'c> {
    /// Every audience value, in token order.
    pub fn values(&self) -> impl Iterator<Item = &'c str> + Clone + 'c {
        let claims = self.claims;
        self.values.iter().map(move |t| claims.resolve(*t))
    }

    /// The values as owned strings (for logs and JSON output).
    pub fn to_vec(&self) -> Vec<String> {
        self.values().map(str::to_owned).collect()
    }
}

impl fmt::Debug for Audience<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.values()).finish()
    }
}

/// A string claim's place: a span of the payload text when the JSON string
/// had no escapes (the usual case), else a span of the unescaped copies.
/// Spans instead of owned strings spare an allocation per string claim (an
/// `aud` array, escaped values and type errors still take their own).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Text {
    /// Byte offset; [`UNESCAPED`] set means into `Claims::unescaped`.
    start: u32,
    len: u32,
}

/// Marks a [`Text`] that points into the unescaped copies.
const UNESCAPED: u32 = 1 << 31;

/// `aud` as read: one string or an array of strings.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Aud {
    One(Text),
    Many(Vec<Text>),
}

/// The claims a verifier and the access log need, read in one pass with
/// duplicate names rejected at every depth. A registered claim of the wrong
/// JSON type is recorded in [`Claims::type_errors`] rather than treated as
/// absent (CVE-2026-25537 was that confusion).
///
/// String claims are read through accessors ([`Claims::iss`] and so on)
/// that borrow from the claim set's own copy of the payload. Two claim
/// sets are equal when read from the same payload bytes with the same
/// noted names (the same claims spaced differently are not equal).
#[derive(Clone, Default, PartialEq)]
pub struct Claims {
    /// The payload text the spans point into.
    text: String,
    /// Values of string claims that held escapes, unescaped, end to end.
    unescaped: String,
    iss: Option<Text>,
    sub: Option<Text>,
    aud: Option<Aud>,
    jti: Option<Text>,
    tid: Option<Text>,
    oid: Option<Text>,
    appid: Option<Text>,
    azp: Option<Text>,
    client_id: Option<Text>,
    uti: Option<Text>,
    sid: Option<Text>,
    /// `exp`.
    pub exp: Option<NumericDate>,
    /// `nbf`.
    pub nbf: Option<NumericDate>,
    /// `iat`.
    pub iat: Option<NumericDate>,
    /// Registered claims present with the wrong JSON type: (name, what was found).
    pub type_errors: Vec<(&'static str, &'static str)>,
    /// Bit i set: `KNOWN[i]` is present (whatever its type).
    present_known: u32,
    /// Bit i set: the i-th name passed to [`Claims::parse_noting`] is present.
    present_extra: u64,
}

impl fmt::Debug for Claims {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Claims")
            .field("iss", &self.iss())
            .field("sub", &self.sub())
            .field("aud", &self.aud())
            .field("exp", &self.exp)
            .field("nbf", &self.nbf)
            .field("iat", &self.iat)
            .field("jti", &self.jti())
            .field("tid", &self.tid())
            .field("oid", &self.oid())
            .field("appid", &self.appid())
            .field("azp", &self.azp())
            .field("client_id", &self.client_id())
            .field("uti", &self.uti())
            .field("sid", &self.sid())
            .field("type_errors", &self.type_errors)
            .finish()
    }
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

/// Accessors for string claims, each documented by its claim name.
macro_rules! text_claims {
    ($($(#[$doc:meta])* $name:ident),* $(,)?) => {
        $(
            $(#[$doc])*
            pub fn $name(&self) -> Option<&str> {
                self.$name.map(|t| self.resolve(t))
            }
        )*
    };
}

impl Claims {
    /// Parses a JWT payload. Fails only when the payload is not a UTF-8
    /// JSON object, has duplicate member names, or is 2 GiB or more.
    pub fn parse(payload: &[u8]) -> Result<Claims, String> {
        Claims::parse_noting(payload, &[])
    }

    /// Like [`Claims::parse`], also recording which of `names` (at most
    /// [`MAX_NOTED_CLAIMS`]; extra names are ignored) are present, for
    /// [`Claims::has_noted`].
    pub fn parse_noting(payload: &[u8], names: &[String]) -> Result<Claims, String> {
        let text = utf8_text(payload)?.to_owned();
        let mut claims = Claims::read(&text, names)?;
        claims.text = text;
        Ok(claims)
    }

    /// Like [`Claims::parse_noting`], keeping `payload` as the claim set's
    /// text instead of copying it; a payload that is not a claim set is
    /// handed back with the reason.
    pub fn parse_owned(payload: Vec<u8>, names: &[String]) -> Result<Claims, NotClaims> {
        let text = String::from_utf8(payload).map_err(|e| NotClaims {
            reason: not_utf8(&e.utf8_error()),
            payload: e.into_bytes(),
        })?;
        match Claims::read(&text, names) {
            Ok(mut claims) => {
                claims.text = text;
                Ok(claims)
            }
            Err(reason) => Err(NotClaims {
                reason,
                payload: text.into_bytes(),
            }),
        }
    }

    /// The claim set read from `text`, except the text itself.
    fn read(text: &str, names: &[String]) -> Result<Claims, String> {
        // Spans are u32 with one bit taken; a token is at most megabytes.
        if text.len() >= UNESCAPED as usize {
            return Err(format!("payload is {} bytes, too large", text.len()));
        }
        let mut unescaped = String::new();
        let mut de = serde_json::Deserializer::from_str(text);
        let mut claims = ClaimsSeed {
            noted: names,
            base: text,
            unescaped: &mut unescaped,
        }
        .deserialize(&mut de)
        .map_err(|e| e.to_string())?;
        de.end().map_err(|e| e.to_string())?;
        claims.unescaped = unescaped;
        Ok(claims)
    }

    /// The payload the claims were read from (empty for a default claim set).
    pub fn payload(&self) -> &str {
        &self.text
    }

    text_claims! {
        /// `iss`, when it is a string.
        iss,
        /// `sub`, when it is a string.
        sub,
        /// `jti`, when it is a string.
        jti,
        /// Entra tenant id `tid`, when it is a string.
        tid,
        /// Entra object id `oid`, when it is a string.
        oid,
        /// Entra v1 application id `appid`, when it is a string.
        appid,
        /// OIDC authorized party / Entra v2 application id `azp`, when it is
        /// a string.
        azp,
        /// RFC 9068 / RFC 8693 `client_id`, when it is a string.
        client_id,
        /// Entra unique token identifier `uti`, when it is a string.
        uti,
        /// Session id `sid`, when it is a string.
        sid,
    }

    /// `aud`, when it is a string or an array of strings.
    pub fn aud(&self) -> Option<Audience<'_>> {
        let values = match self.aud.as_ref()? {
            Aud::One(t) => std::slice::from_ref(t),
            Aud::Many(v) => v,
        };
        Some(Audience {
            claims: self,
            values,
        })
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

    fn resolve(&self, t: Text) -> &str {
        let (from, start) = if t.start & UNESCAPED != 0 {
            (self.unescaped.as_str(), t.start & !UNESCAPED)
        } else {
            (&*self.text, t.start)
        };
        let start = start as usize;
        &from[start..start + t.len as usize]
    }
}

/// Where a string value read by serde_json lives, as a [`Text`]: a span of
/// `base` when serde_json handed out a slice of it (no escapes), else a
/// copy appended to `unescaped`.
struct Place<'de, 'u> {
    base: &'de str,
    unescaped: &'u mut String,
}

impl Place<'_, '_> {
    fn borrowed(&mut self, v: &str) -> Text {
        let offset = (v.as_ptr() as usize).wrapping_sub(self.base.as_ptr() as usize);
        if offset <= self.base.len() && v.len() <= self.base.len() - offset {
            // Both fit in 31 bits: the payload length was checked.
            Text {
                start: offset as u32,
                len: v.len() as u32,
            }
        } else {
            self.copied(v)
        }
    }

    fn copied(&mut self, v: &str) -> Text {
        let start = self.unescaped.len();
        self.unescaped.push_str(v);
        // Unescaping never lengthens a string, so this fits too.
        Text {
            start: start as u32 | UNESCAPED,
            len: v.len() as u32,
        }
    }
}

/// A claim value read without committing to a type.
enum Loose {
    Str(Text),
    Num(f64),
    StrArray(Vec<Text>),
    Other(JsonType),
}

/// Reads one [`Loose`] value, placing strings through a [`Place`].
struct LooseSeed<'p, 'de, 'u>(&'p mut Place<'de, 'u>);

impl<'de> DeserializeSeed<'de> for LooseSeed<'_, 'de, '_> {
    type Value = Loose;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Loose, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for LooseSeed<'_, 'de, '_> {
    type Value = Loose;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON value")
    }
    fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Loose, E> {
        Ok(Loose::Str(self.0.borrowed(v)))
    }
    fn visit_str<E>(self, v: &str) -> Result<Loose, E> {
        Ok(Loose::Str(self.0.copied(v)))
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
        while let Some(item) = seq.next_element_seed(LooseSeed(&mut *self.0))? {
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

struct ClaimsSeed<'n, 'de, 'u> {
    noted: &'n [String],
    base: &'de str,
    unescaped: &'u mut String,
}

impl<'de> DeserializeSeed<'de> for ClaimsSeed<'_, 'de, '_> {
    type Value = Claims;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Claims, D::Error> {
        d.deserialize_map(ClaimsVisitor {
            noted: self.noted,
            place: Place {
                base: self.base,
                unescaped: self.unescaped,
            },
        })
    }
}

struct ClaimsVisitor<'n, 'de, 'u> {
    noted: &'n [String],
    place: Place<'de, 'u>,
}

impl<'de> Visitor<'de> for ClaimsVisitor<'_, 'de, '_> {
    type Value = Claims;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON object")
    }
    fn visit_map<A: MapAccess<'de>>(mut self, mut map: A) -> Result<Claims, A::Error> {
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
                    return Err(duplicate_member(&name));
                }
                Some(i) => c.present_known |= 1 << i,
                None => seen.insert(name)?,
            }
            let Some(i) = known else {
                map.next_value::<StrictIgnore>()?;
                continue;
            };
            let value = map.next_value_seed(LooseSeed(&mut self.place))?;
            match i {
                // iss, sub, jti, tid: strings; another type is an error.
                0 | 1 | 6 | 7 => match value {
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
                2 => match value {
                    Loose::Str(v) => c.aud = Some(Aud::One(v)),
                    Loose::StrArray(v) => c.aud = Some(Aud::Many(v)),
                    other => c.type_errors.push(("aud", found(&other))),
                },
                // exp, nbf, iat: NumericDate.
                3..=5 => match value {
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
                _ => {
                    if let Loose::Str(v) = value {
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
        assert_eq!(c.iss(), Some("i"));
        assert_eq!(c.sub(), Some("s"));
        assert_eq!(c.aud().unwrap().to_vec(), ["a", "b"]);
        assert_eq!(c.exp, Some(NumericDate(10.0)));
        assert_eq!(c.nbf, Some(NumericDate(1.5)));
        assert_eq!(c.tid(), Some("t"));
        assert_eq!(c.uti(), Some("u"));
        assert_eq!(c.oid(), None);
        assert!(c.type_errors.is_empty());
    }

    /// Values are read from the claim set's own text when they had no
    /// escapes and from unescaped copies when they did; both read back as
    /// serde_json reads them, whatever their order and mix.
    #[test]
    fn escaped_and_plain_values_read_back_as_json_strings() {
        let payload = r#"{"x":"\"q\"","iss":"https:\/\/login.example\/t\u00e9","sub":"plain",
            "aud":["a\n","b","\u00e9\ud83d\ude00"],"tid":"","uti":"\\","sid":"é😀",
            "oid":"o\"","azp":"z","appid":"\u0061","client_id":"c","jti":"j\/"}"#;
        let c = Claims::parse(payload.as_bytes()).unwrap();
        let want: serde_json::Value = serde_json::from_str(payload).unwrap();
        let read = [
            ("iss", c.iss()),
            ("sub", c.sub()),
            ("tid", c.tid()),
            ("uti", c.uti()),
            ("sid", c.sid()),
            ("oid", c.oid()),
            ("azp", c.azp()),
            ("appid", c.appid()),
            ("client_id", c.client_id()),
            ("jti", c.jti()),
        ];
        for (name, value) in read {
            assert_eq!(value, want[name].as_str(), "{name}");
        }
        let aud: Vec<_> = c.aud().unwrap().values().collect();
        let want_aud: Vec<_> = want["aud"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap())
            .collect();
        assert_eq!(aud, want_aud);
        // A clone reads the same (spans are offsets, not pointers).
        let copy = c.clone();
        drop(c);
        assert_eq!(copy.iss(), want["iss"].as_str());
        assert_eq!(copy.aud().unwrap().to_vec(), want_aud);
    }

    #[test]
    fn aud_of_one_string_and_of_mixed_types() {
        let c = Claims::parse(br#"{"aud":"api://x"}"#).unwrap();
        assert_eq!(c.aud().unwrap().to_vec(), ["api://x"]);
        assert_eq!(format!("{:?}", c.aud().unwrap()), r#"["api://x"]"#);
        let c = Claims::parse(br#"{"aud":["a",1]}"#).unwrap();
        assert!(c.aud().is_none());
        assert_eq!(c.type_errors, [("aud", "an array")]);
    }

    #[test]
    fn wrong_types_are_errors_not_absent() {
        let c = Claims::parse(br#"{"exp":"9999999999","nbf":null,"aud":[1],"iss":{}}"#).unwrap();
        let names: Vec<_> = c.type_errors.iter().map(|(n, _)| *n).collect();
        assert_eq!(names, ["exp", "nbf", "aud", "iss"]);
        assert!(c.exp.is_none());
        assert!(c.iss().is_none());
        assert!(c.has("exp"));
        assert!(!c.has("sub"));
    }

    /// Taking the payload reads as copying it does, and a payload that is
    /// not a claim set comes back unchanged with the same reason.
    #[test]
    fn owned_payloads_read_and_refuse_like_borrowed_ones() {
        let good = br#"{"iss":"i","aud":["a"],"x":{"y":1}}"#;
        let owned = Claims::parse_owned(good.to_vec(), &[]).unwrap();
        assert_eq!(owned, Claims::parse(good).unwrap());
        assert_eq!(owned.payload().as_bytes(), good);
        for bad in [
            &b"{\"a\":\"\xff\"}"[..],
            b"[1]",
            br#"{"x":1,"x":2}"#,
            b"{} x",
            b"",
        ] {
            let refused = Claims::parse_owned(bad.to_vec(), &[]).unwrap_err();
            assert_eq!(refused.payload, bad);
            assert_eq!(Err(refused.reason), Claims::parse(bad).map(|_| ()));
        }
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

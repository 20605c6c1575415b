//! Values of a detection item after the modifiers are applied, and the tests
//! that compare them with an event's field values.

use std::net::IpAddr;

use base64::Engine as _;
use regex::Regex;
use time::OffsetDateTime;

use tokenward_event::timefmt::parse_timestamp;

/// One token of a Sigma string: literal text or a wildcard.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Tok {
    /// Plain text.
    Lit(String),
    /// `*`: any run of characters.
    Star,
    /// `?`: exactly one character.
    One,
}

/// Parses a Sigma string: `*` and `?` are wildcards; a backslash escapes
/// `*`, `?` and itself; any other backslash is literal (spec "Escaping").
pub fn parse_wild(s: &str) -> Vec<Tok> {
    let mut out = Vec::new();
    let mut lit = String::new();
    let mut it = s.chars().peekable();
    while let Some(c) = it.next() {
        match c {
            '\\' => match it.peek() {
                Some(&n @ ('*' | '?' | '\\')) => {
                    lit.push(n);
                    it.next();
                }
                _ => lit.push('\\'),
            },
            '*' | '?' => {
                if !lit.is_empty() {
                    out.push(Tok::Lit(std::mem::take(&mut lit)));
                }
                out.push(if c == '*' { Tok::Star } else { Tok::One });
            }
            c => lit.push(c),
        }
    }
    if !lit.is_empty() {
        out.push(Tok::Lit(lit));
    }
    out
}

/// A Sigma string value on its way through the modifier chain. `latin1`
/// marks text whose chars are bytes (after a UTF-16 modifier), so a later
/// Base64 encodes those bytes rather than their UTF-8 form.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SStr {
    /// The tokens.
    pub toks: Vec<Tok>,
    /// Chars are bytes (U+0000..U+00FF).
    pub latin1: bool,
}

impl SStr {
    /// A value parsed from rule text.
    pub fn parse(s: &str) -> SStr {
        SStr {
            toks: parse_wild(s),
            latin1: false,
        }
    }

    /// A literal value (no wildcards interpreted).
    pub fn literal(s: String, latin1: bool) -> SStr {
        SStr {
            toks: if s.is_empty() {
                Vec::new()
            } else {
                vec![Tok::Lit(s)]
            },
            latin1,
        }
    }

    /// The value as plain text when it has no wildcards.
    pub fn plain(&self) -> Option<String> {
        let mut s = String::new();
        for t in &self.toks {
            match t {
                Tok::Lit(l) => s.push_str(l),
                _ => return None,
            }
        }
        Some(s)
    }

    fn bytes(&self, what: &str) -> Result<Vec<u8>, String> {
        let s = self
            .plain()
            .ok_or_else(|| format!("{what} cannot encode a value with wildcards"))?;
        Ok(if self.latin1 {
            s.chars().map(|c| c as u32 as u8).collect()
        } else {
            s.into_bytes()
        })
    }

    /// Adds a leading `*` unless there is one.
    pub fn star_front(&mut self) {
        if self.toks.first() != Some(&Tok::Star) {
            self.toks.insert(0, Tok::Star);
        }
    }

    /// Adds a trailing `*` unless there is one.
    pub fn star_back(&mut self) {
        if self.toks.last() != Some(&Tok::Star) {
            self.toks.push(Tok::Star);
        }
    }
}

/// `base64`: the value's bytes, Base64-encoded.
pub fn base64(v: &SStr) -> Result<SStr, String> {
    let b = v.bytes("base64")?;
    Ok(SStr::literal(
        base64::engine::general_purpose::STANDARD.encode(b),
        false,
    ))
}

/// `base64offset`: the three encodings of the value at byte offsets 0, 1
/// and 2 of a longer Base64 text, cut to the characters that do not depend
/// on the surrounding bytes.
pub fn base64offset(v: &SStr) -> Result<Vec<SStr>, String> {
    let b = v.bytes("base64offset")?;
    let mut out = Vec::new();
    for shift in 0..3usize {
        let mut buf = vec![b' '; shift];
        buf.extend_from_slice(&b);
        let enc = base64::engine::general_purpose::STANDARD.encode(&buf);
        let start = [0, 2, 3][shift];
        // Characters covering bytes that straddle the end depend on what
        // follows the value: drop them.
        let cut = match (b.len() + shift) % 3 {
            0 => 0,
            1 => 3,
            _ => 2,
        };
        let end = enc.len().saturating_sub(cut);
        if start < end {
            out.push(SStr::literal(enc[start..end].to_string(), false));
        }
    }
    Ok(out)
}

/// `utf16le` / `utf16be` / `utf16` (with a little-endian BOM) / `wide`.
pub fn utf16(v: &SStr, big_endian: bool, bom: bool) -> Result<SStr, String> {
    let s = v
        .plain()
        .ok_or_else(|| "utf16 cannot encode a value with wildcards".to_string())?;
    let mut bytes: Vec<u8> = Vec::new();
    if bom {
        bytes.extend_from_slice(&[0xFF, 0xFE]);
    }
    for u in s.encode_utf16() {
        let b = if big_endian && !bom {
            u.to_be_bytes()
        } else {
            u.to_le_bytes()
        };
        bytes.extend_from_slice(&b);
    }
    Ok(SStr::literal(
        bytes.iter().map(|&b| b as char).collect(),
        true,
    ))
}

const DASHES: [char; 5] = ['-', '/', '\u{2013}', '\u{2014}', '\u{2015}'];

/// `windash`: every combination of the five dash characters at each
/// position where a dash starts a command-line flag (not inside a word).
pub fn windash(v: &SStr) -> Vec<SStr> {
    let mut outs = vec![Vec::<Tok>::new()];
    let mut prev_word = false;
    for t in &v.toks {
        match t {
            Tok::Lit(l) => {
                let chars: Vec<char> = l.chars().collect();
                for (i, &c) in chars.iter().enumerate() {
                    let next_word = chars.get(i + 1).is_some_and(|n| n.is_alphanumeric());
                    let alts: Vec<char> = if DASHES.contains(&c) && !prev_word && next_word {
                        DASHES.to_vec()
                    } else {
                        vec![c]
                    };
                    // Bound the expansion: four flags give 625 variants.
                    if alts.len() == 1 || outs.len() >= 625 {
                        push_char(&mut outs, c);
                    } else {
                        let mut next = Vec::with_capacity(outs.len() * alts.len());
                        for o in &outs {
                            for &a in &alts {
                                let mut o2 = o.clone();
                                push_char_one(&mut o2, a);
                                next.push(o2);
                            }
                        }
                        outs = next;
                    }
                    prev_word = c.is_alphanumeric() || c == '_';
                }
            }
            other => {
                for o in outs.iter_mut() {
                    o.push(other.clone());
                }
                prev_word = false;
            }
        }
    }
    outs.into_iter()
        .map(|toks| SStr {
            toks,
            latin1: v.latin1,
        })
        .collect()
}

fn push_char(outs: &mut [Vec<Tok>], c: char) {
    for o in outs.iter_mut() {
        push_char_one(o, c);
    }
}

fn push_char_one(o: &mut Vec<Tok>, c: char) {
    if let Some(Tok::Lit(l)) = o.last_mut() {
        l.push(c);
    } else {
        o.push(Tok::Lit(c.to_string()));
    }
}

/// A compiled string test.
#[derive(Clone, Debug)]
pub enum StrTest {
    /// Whole value equals.
    Exact(String),
    /// Value starts with.
    Prefix(String),
    /// Value ends with.
    Suffix(String),
    /// Value contains (with its searcher built once).
    Contains(String, Box<memchr::memmem::Finder<'static>>),
    /// Other wildcard patterns, as an anchored regex and the tokens it was
    /// built from (engines that are not Rust rebuild it in their syntax).
    Wildcard(Regex, Vec<Tok>),
    /// A user regex (`re`).
    Regex(Regex),
}

/// A string test plus its case mode. Uncased tests hold lower-cased text
/// and are run against the lower-cased field value; regexes carry their
/// own flags and run against the original value.
#[derive(Clone, Debug)]
pub struct StrMatch {
    /// The test.
    pub test: StrTest,
    /// Case-sensitive.
    pub cased: bool,
}

impl StrMatch {
    /// Compiles a Sigma string (after modifiers).
    pub fn from_sstr(v: &SStr, cased: bool) -> Result<StrMatch, String> {
        let norm = |s: &str| {
            if cased {
                s.to_string()
            } else {
                s.to_lowercase()
            }
        };
        let t = &v.toks;
        let test = match t.as_slice() {
            [] => StrTest::Exact(String::new()),
            [Tok::Lit(l)] => StrTest::Exact(norm(l)),
            [Tok::Star] => StrTest::Prefix(String::new()),
            [Tok::Lit(l), Tok::Star] => StrTest::Prefix(norm(l)),
            [Tok::Star, Tok::Lit(l)] => StrTest::Suffix(norm(l)),
            [Tok::Star, Tok::Lit(l), Tok::Star] => {
                let n = norm(l);
                let f = Box::new(memchr::memmem::Finder::new(n.as_bytes()).into_owned());
                StrTest::Contains(n, f)
            }
            _ => {
                let mut re = String::from(if cased { "(?s)^" } else { "(?si)^" });
                for tok in t {
                    match tok {
                        Tok::Lit(l) => re.push_str(&regex::escape(l)),
                        Tok::Star => re.push_str(".*"),
                        Tok::One => re.push('.'),
                    }
                }
                re.push('$');
                StrTest::Wildcard(Regex::new(&re).map_err(|e| e.to_string())?, t.clone())
            }
        };
        Ok(StrMatch { test, cased })
    }

    /// Compiles a `re` value with its `i`/`m`/`s` flags.
    pub fn regex(pat: &str, i: bool, m: bool, s: bool) -> Result<StrMatch, String> {
        let mut flags = String::new();
        for (on, f) in [(i, 'i'), (m, 'm'), (s, 's')] {
            if on {
                flags.push(f);
            }
        }
        let full = if flags.is_empty() {
            pat.to_string()
        } else {
            format!("(?{flags}){pat}")
        };
        let re =
            Regex::new(&full).map_err(|e| format!("invalid regular expression {pat:?}: {e}"))?;
        Ok(StrMatch {
            test: StrTest::Regex(re),
            cased: true,
        })
    }

    /// Tests a value given in original and lower-cased form.
    pub fn is_match(&self, orig: &str, lower: &str) -> bool {
        let v = if self.cased { orig } else { lower };
        match &self.test {
            StrTest::Exact(s) => v == s,
            StrTest::Prefix(s) => v.starts_with(s.as_str()),
            StrTest::Suffix(s) => v.ends_with(s.as_str()),
            StrTest::Contains(_, f) => f.find(v.as_bytes()).is_some(),
            StrTest::Wildcard(r, _) | StrTest::Regex(r) => r.is_match(orig),
        }
    }

    /// The literal text this test needs in the value, when there is one.
    pub fn literal(&self) -> Option<&str> {
        match &self.test {
            StrTest::Exact(s)
            | StrTest::Prefix(s)
            | StrTest::Suffix(s)
            | StrTest::Contains(s, _) => Some(s),
            StrTest::Wildcard(..) | StrTest::Regex(_) => None,
        }
    }
}

/// A numeric comparison.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Cmp {
    /// `<`
    Lt,
    /// `<=`
    Lte,
    /// `>`
    Gt,
    /// `>=`
    Gte,
    /// `==`
    Eq,
}

impl Cmp {
    /// Applies the comparison.
    pub fn test(self, a: f64, b: f64) -> bool {
        match self {
            Cmp::Lt => a < b,
            Cmp::Lte => a <= b,
            Cmp::Gt => a > b,
            Cmp::Gte => a >= b,
            Cmp::Eq => a == b,
        }
    }
}

/// The part of a date a time modifier extracts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TimePart {
    /// 0..59
    Minute,
    /// 0..23
    Hour,
    /// 1..31
    Day,
    /// ISO week, 1..53
    Week,
    /// 1..12
    Month,
    /// The year.
    Year,
}

impl TimePart {
    /// Extracts the part from a time (UTC).
    pub fn of(self, t: OffsetDateTime) -> f64 {
        f64::from(match self {
            TimePart::Minute => i32::from(t.minute()),
            TimePart::Hour => i32::from(t.hour()),
            TimePart::Day => i32::from(t.day()),
            TimePart::Week => i32::from(t.iso_week()),
            TimePart::Month => i32::from(u8::from(t.month())),
            TimePart::Year => t.year(),
        })
    }
}

pub use tokenward_net::Cidr;

/// Text every address of an IPv4 network starts with (its whole octets),
/// for the raw-record prefilter. IPv6 text has too many spellings (zero
/// compression, case) to give one.
pub fn cidr_literal(c: &Cidr) -> Option<String> {
    let IpAddr::V4(a) = c.addr() else { return None };
    let whole = usize::from(c.prefix() / 8);
    let o = a.octets();
    let mut s = o[..whole]
        .iter()
        .map(|b| b.to_string())
        .collect::<Vec<_>>()
        .join(".");
    if whole < 4 {
        s.push('.');
    }
    (whole > 0).then_some(s)
}

/// Parses a field value as a number (strings holding numbers count).
pub fn as_number(s: &str) -> Option<f64> {
    let t = s.trim();
    if t.is_empty() {
        return None;
    }
    t.parse::<f64>().ok().filter(|f| f.is_finite())
}

/// Parses a field value as a time.
pub fn as_time(s: &str) -> Option<OffsetDateTime> {
    parse_timestamp(s.trim())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(s: &str, cased: bool) -> StrMatch {
        StrMatch::from_sstr(&SStr::parse(s), cased).unwrap()
    }

    fn t(sm: &StrMatch, v: &str) -> bool {
        sm.is_match(v, &v.to_lowercase())
    }

    #[test]
    fn wildcards_and_escapes() {
        assert_eq!(
            parse_wild(r"a\*b\?c\\*d\e"),
            vec![
                Tok::Lit("a*b?c\\".into()),
                Tok::Star,
                Tok::Lit("d\\e".into())
            ]
        );
        assert_eq!(parse_wild(r"\\\\"), vec![Tok::Lit("\\\\".into())]);
        assert_eq!(parse_wild(r"\\\*"), vec![Tok::Lit("\\*".into())]);
        let g = m("prog?.exe", false);
        assert!(t(&g, "PROGA.exe"));
        assert!(!t(&g, "progAB.exe"));
        assert!(t(&m("*cmd.exe", false), "C:\\Windows\\CMD.EXE"));
        assert!(t(&m("adm*", false), "Administrator"));
        assert!(t(&m("*ab*", false), "xABx"));
        assert!(t(&m("a*b*c", false), "aXXbYYc"));
        assert!(!t(&m("a*b*c", false), "aXXbYYd"));
        // Escaped wildcard is literal.
        assert!(t(&m(r"a\*b", false), "a*b"));
        assert!(!t(&m(r"a\*b", false), "aXb"));
    }

    #[test]
    fn cased_and_uncased() {
        assert!(t(&m("Admin", false), "ADMIN"));
        assert!(!t(&m("Admin", true), "ADMIN"));
        assert!(t(&m("Admin", true), "Admin"));
        assert!(t(&m("ÄBC", false), "äbc"));
    }

    #[test]
    fn regex_flags() {
        let r = StrMatch::regex("^ab.c$", false, false, false).unwrap();
        assert!(r.is_match("abXc", ""));
        assert!(!r.is_match("ABXC", ""));
        let ri = StrMatch::regex("^ab.c$", true, false, false).unwrap();
        assert!(ri.is_match("ABXC", ""));
        let rm = StrMatch::regex("^second$", false, true, false).unwrap();
        assert!(rm.is_match("first\nsecond", ""));
        assert!(!StrMatch::regex("^second$", false, false, false)
            .unwrap()
            .is_match("first\nsecond", ""));
        let rs = StrMatch::regex("a.b", false, false, true).unwrap();
        assert!(rs.is_match("a\nb", ""));
        assert!(!StrMatch::regex("a.b", false, false, false)
            .unwrap()
            .is_match("a\nb", ""));
    }

    #[test]
    fn encodings() {
        let v = SStr::parse("cmd");
        assert_eq!(base64(&v).unwrap().plain().unwrap(), "Y21k");
        let le = utf16(&v, false, false).unwrap();
        assert_eq!(le.plain().unwrap(), "c\0m\0d\0");
        let be = utf16(&v, true, false).unwrap();
        assert_eq!(be.plain().unwrap(), "\0c\0m\0d");
        let bom = utf16(&v, false, true).unwrap();
        assert_eq!(
            bom.plain()
                .unwrap()
                .chars()
                .map(|c| c as u32)
                .collect::<Vec<_>>(),
            vec![0xFF, 0xFE, 0x63, 0, 0x6d, 0, 0x64, 0]
        );
        // UTF-16 bytes, then Base64 of those bytes.
        assert_eq!(base64(&le).unwrap().plain().unwrap(), "YwBtAGQA");
        // base64offset: each variant is found in the encoding of the value
        // at that offset inside a longer text.
        let offs: Vec<String> = base64offset(&SStr::parse("http://"))
            .unwrap()
            .into_iter()
            .map(|s| s.plain().unwrap())
            .collect();
        assert_eq!(offs.len(), 3);
        for (i, pre) in ["", "a", "ab"].iter().enumerate() {
            let enc = base64::engine::general_purpose::STANDARD
                .encode(format!("{pre}http://example.org/"));
            assert!(enc.contains(&offs[i]), "{enc} lacks {}", offs[i]);
        }
        assert!(base64(&SStr::parse("a*")).is_err());
    }

    #[test]
    fn windash_permutations() {
        let vs: Vec<String> = windash(&SStr::parse(" -enc "))
            .into_iter()
            .map(|s| s.plain().unwrap())
            .collect();
        assert_eq!(vs.len(), 5);
        assert!(vs.contains(&" /enc ".to_string()));
        assert!(vs.contains(&" \u{2013}enc ".to_string()));
        // A dash inside a word is not a flag.
        assert_eq!(windash(&SStr::parse("a-b")).len(), 1);
        assert_eq!(windash(&SStr::parse("-a -b")).len(), 25);
    }

    #[test]
    fn cidr_v4_v6() {
        let c = Cidr::parse("10.0.0.0/8").unwrap();
        assert!(c.contains_text("10.1.2.3"));
        assert!(c.contains_text("10.1.2.3:443"));
        assert!(!c.contains_text("11.0.0.1"));
        assert!(!c.contains_text("not an ip"));
        let c6 = Cidr::parse("2001:db8::/32").unwrap();
        assert!(c6.contains_text("[2001:db8::5]:443"));
        assert!(!c6.contains_text("2001:db9::5"));
        assert!(Cidr::parse("10.0.0.0/33").is_err());
        assert!(Cidr::parse("0.0.0.0/0").unwrap().contains_text("1.2.3.4"));
        assert_eq!(
            cidr_literal(&Cidr::parse("10.1.0.0/16").unwrap()).as_deref(),
            Some("10.1.")
        );
        assert_eq!(
            cidr_literal(&Cidr::parse("1.2.3.4/32").unwrap()).as_deref(),
            Some("1.2.3.4")
        );
        assert_eq!(cidr_literal(&Cidr::parse("10.0.0.0/7").unwrap()), None);
        assert_eq!(cidr_literal(&c6), None);
    }

    #[test]
    fn time_parts() {
        let t = as_time("2023-06-15T22:07:09Z").unwrap();
        assert_eq!(TimePart::Minute.of(t), 7.0);
        assert_eq!(TimePart::Hour.of(t), 22.0);
        assert_eq!(TimePart::Day.of(t), 15.0);
        assert_eq!(TimePart::Week.of(t), 24.0);
        assert_eq!(TimePart::Month.of(t), 6.0);
        assert_eq!(TimePart::Year.of(t), 2023.0);
    }
}

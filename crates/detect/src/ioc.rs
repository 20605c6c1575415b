//! Indicators of compromise: the Storm-0558 set published by Microsoft
//! (threat.md §2–3) built in, plus user lists (plain lines or STIX 2.1).

use std::collections::HashMap;

use crate::{Anchors, KeyHasher};
use std::net::IpAddr;
use std::path::Path;

use time::{Date, Month};

use tokenward_net::Cidr;

/// An IP or network indicator with its published activity window.
#[derive(Clone, Debug)]
pub struct IpIoc {
    /// The address or network.
    pub net: Cidr,
    /// First day the source saw it in use.
    pub first_seen: Option<Date>,
    /// Last day the source saw it in use.
    pub last_seen: Option<Date>,
    /// Where the indicator comes from.
    pub source: String,
}

/// A user-agent indicator (matched on the whole value, case-insensitively).
#[derive(Clone, Debug)]
pub struct UaIoc {
    /// The user agent or Exchange client-info string.
    pub value: String,
    /// Whether the value is also common in benign traffic.
    pub common: bool,
    /// Where the indicator comes from.
    pub source: String,
}

/// A signing-key indicator: a JWK `kid`/`x5t` or a certificate thumbprint.
#[derive(Clone, Debug)]
pub struct KeyIoc {
    /// The value as published (kid, or hex thumbprint without separators).
    pub value: String,
    /// What the value is (`kid`, `sha1-thumbprint`, `sha256-thumbprint`).
    pub what: &'static str,
    /// Where the indicator comes from.
    pub source: String,
}

/// How an indicator detection names a field whose match was in the
/// earlier copy of a key the record names twice (the record keeps the last
/// copy; see `tokenward_event::shadow`): `ClientIP (earlier copy of a key
/// named twice)`.
pub fn shadowed_field(key: &str) -> String {
    format!("{key} (earlier copy of a key named twice)")
}

/// Every indicator in force for a run.
#[derive(Clone, Debug, Default)]
pub struct IocSet {
    /// Single addresses, by address.
    pub hosts: HashMap<IpAddr, IpIoc, KeyHasher>,
    /// Networks wider than one host.
    pub networks: Vec<IpIoc>,
    /// User agents.
    pub user_agents: Vec<UaIoc>,
    /// Signing keys.
    pub keys: Vec<KeyIoc>,
}

const MSTIC: &str = "Microsoft Threat Intelligence, Storm-0558 (2023-07-14)";

/// (ip, first seen, last seen, role) from MSTIC-0714 as listed in threat.md §3.
const STORM_0558_IPS: &[(&str, &str, &str, &str)] = &[
    ("195.26.87.219", "5/15/2023", "6/25/2023", "token web panel"),
    (
        "185.236.228.183",
        "5/24/2023",
        "6/11/2023",
        "token web panel",
    ),
    ("85.239.63.160", "6/7/2023", "6/11/2023", "token web panel"),
    (
        "193.105.134.58",
        "6/24/2023",
        "6/25/2023",
        "token web panel",
    ),
    ("146.0.74.16", "6/28/2023", "7/4/2023", "token web panel"),
    ("91.231.186.226", "6/29/2023", "7/4/2023", "token web panel"),
    ("91.222.174.41", "6/29/2023", "7/3/2023", "token web panel"),
    ("185.38.142.249", "6/29/2023", "7/2/2023", "token web panel"),
    ("51.89.156.153", "3/9/2023", "7/10/2023", "SoftEther proxy"),
    ("176.31.90.129", "3/28/2023", "6/29/2023", "SoftEther proxy"),
    (
        "137.74.181.100",
        "3/31/2023",
        "7/11/2023",
        "SoftEther proxy",
    ),
    ("193.36.119.45", "4/19/2023", "7/7/2023", "SoftEther proxy"),
    (
        "185.158.248.159",
        "4/24/2023",
        "7/6/2023",
        "SoftEther proxy",
    ),
    ("131.153.78.188", "5/6/2023", "6/29/2023", "SoftEther proxy"),
    (
        "37.143.130.146",
        "5/12/2023",
        "5/19/2023",
        "SoftEther proxy",
    ),
    ("146.70.157.45", "5/12/2023", "6/8/2023", "SoftEther proxy"),
    (
        "185.195.200.39",
        "5/15/2023",
        "6/29/2023",
        "SoftEther proxy",
    ),
    (
        "185.38.142.229",
        "5/15/2023",
        "7/12/2023",
        "SoftEther proxy",
    ),
    ("146.70.121.44", "5/17/2023", "6/29/2023", "SoftEther proxy"),
    ("31.42.177.181", "5/22/2023", "5/23/2023", "SoftEther proxy"),
    ("185.51.134.52", "6/7/2023", "7/11/2023", "SoftEther proxy"),
    ("173.44.226.70", "6/9/2023", "7/11/2023", "SoftEther proxy"),
    ("45.14.227.233", "6/12/2023", "6/26/2023", "SoftEther proxy"),
    (
        "185.236.231.109",
        "6/12/2023",
        "7/3/2023",
        "SoftEther proxy",
    ),
    (
        "178.73.220.149",
        "6/16/2023",
        "7/12/2023",
        "SoftEther proxy",
    ),
    ("45.14.227.212", "6/19/2023", "6/29/2023", "SoftEther proxy"),
    ("91.222.173.225", "6/20/2023", "7/1/2023", "SoftEther proxy"),
    ("146.70.35.168", "6/22/2023", "6/29/2023", "SoftEther proxy"),
    (
        "146.70.157.213",
        "6/26/2023",
        "6/30/2023",
        "SoftEther proxy",
    ),
    ("31.42.177.201", "6/27/2023", "6/29/2023", "SoftEther proxy"),
    ("5.252.176.8", "7/1/2023", "7/1/2023", "SoftEther proxy"),
    ("80.85.158.215", "7/1/2023", "7/9/2023", "SoftEther proxy"),
    ("193.149.129.88", "7/2/2023", "7/12/2023", "SoftEther proxy"),
    ("5.252.178.68", "7/3/2023", "7/11/2023", "SoftEther proxy"),
    ("116.202.251.8", "7/4/2023", "7/7/2023", "SoftEther proxy"),
    (
        "185.158.248.93",
        "6/25/2023",
        "6/26/2023",
        "SoftEther proxy (infrastructure table only)",
    ),
    (
        "20.108.240.252",
        "6/25/2023",
        "7/5/2023",
        "SoftEther proxy (infrastructure table only)",
    ),
    (
        "146.70.135.182",
        "5/18/2023",
        "6/22/2023",
        "SoftEther proxy (infrastructure table only)",
    ),
];

/// User agents MSTIC observed; the first is also what benign REST clients send.
const STORM_0558_UAS: &[(&str, bool)] = &[
    ("Client=REST;Client=RESTSystem;;", true),
    ("Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/92.0.4515.159 Safari/537.36", false),
    ("Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/106.0.0.0 Safari/537.36 Edg/106.0.1370.52", false),
    ("\"Microsoft Edge\";v=\"113\", \"Chromium\";v=\"113\", \"Not-A.Brand\";v=\"24\"", false),
];

/// The acquired MSA signing key (threat.md §2): Microsoft's SHA-1
/// thumbprint, and the kid and SHA-256 derived from the public certificate.
const STORM_0558_KEYS: &[(&str, &str, &str)] = &[
    (
        "d4b4cccda9228624656bff33d8110955779632aa",
        "sha1-thumbprint",
        MSTIC,
    ),
    (
        "1LTMzakihiRla_8z2BEJVXeWMqo",
        "kid",
        "kid/x5t of the key with Microsoft's thumbprint (derived from its public certificate)",
    ),
    (
        "43ea0217de39066a36164e21655e8ed7b2efaa67e4155033837ada26df6bb59e",
        "sha256-thumbprint",
        "SHA-256 of the key's public certificate (derived)",
    ),
];

fn us_date(s: &str) -> Option<Date> {
    let mut p = s.split('/');
    let m: u8 = p.next()?.parse().ok()?;
    let d: u8 = p.next()?.parse().ok()?;
    let y: i32 = p.next()?.parse().ok()?;
    Date::from_calendar_date(y, Month::try_from(m).ok()?, d).ok()
}

/// Errors reading an indicator file.
#[derive(Debug, thiserror::Error)]
pub enum IocError {
    /// The file could not be read.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The file is a STIX bundle that could not be parsed.
    #[error("{path}: invalid STIX bundle: {msg}")]
    Stix {
        /// The file.
        path: String,
        /// What was wrong.
        msg: String,
    },
    /// The file has no indicators.
    #[error("{path}: no indicators found (expected IPs, CIDRs, user agents, kids or thumbprints, one per line, or a STIX 2.1 bundle)")]
    Empty {
        /// The file.
        path: String,
    },
}

impl IocSet {
    /// The built-in Storm-0558 indicators.
    pub fn builtin() -> IocSet {
        let mut s = IocSet::default();
        for &(ip, first, last, role) in STORM_0558_IPS {
            s.add_ip(IpIoc {
                net: Cidr::parse(ip).expect("built-in IOC IPs are valid"),
                first_seen: us_date(first),
                last_seen: us_date(last),
                source: format!("{MSTIC}: {role}"),
            });
        }
        for &(ua, common) in STORM_0558_UAS {
            s.user_agents.push(UaIoc {
                value: ua.to_string(),
                common,
                source: MSTIC.to_string(),
            });
        }
        for &(v, what, src) in STORM_0558_KEYS {
            s.keys.push(KeyIoc {
                value: v.to_string(),
                what,
                source: src.to_string(),
            });
        }
        s
    }

    fn add_ip(&mut self, ioc: IpIoc) {
        if ioc.net.is_host() {
            self.hosts.insert(ioc.net.addr(), ioc);
        } else {
            self.networks.push(ioc);
        }
    }

    /// Indicator matching an address, if any.
    pub fn match_ip(&self, ip: IpAddr) -> Option<&IpIoc> {
        self.hosts
            .get(&ip)
            .or_else(|| self.networks.iter().find(|n| n.net.contains(ip)))
    }

    /// Adds the indicators of a user file: a STIX 2.1 bundle, or plain lines.
    /// Returns how many were added.
    pub fn load_file(&mut self, path: &Path) -> Result<usize, IocError> {
        let p = path.display().to_string();
        let bytes = std::fs::read(path).map_err(|source| IocError::Io {
            path: p.clone(),
            source,
        })?;
        let text = String::from_utf8_lossy(&bytes);
        let text = text.trim_start_matches('\u{feff}');
        let before = self.len();
        if text.trim_start().starts_with('{') {
            self.load_stix(text).map_err(|msg| IocError::Stix {
                path: p.clone(),
                msg,
            })?;
        } else {
            for line in text.lines() {
                self.add_plain(line, &p);
            }
        }
        let n = self.len() - before;
        if n == 0 {
            return Err(IocError::Empty { path: p });
        }
        Ok(n)
    }

    fn len(&self) -> usize {
        self.hosts.len() + self.networks.len() + self.user_agents.len() + self.keys.len()
    }

    fn add_plain(&mut self, line: &str, file: &str) {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            return;
        }
        let source = format!("IOC file {file}");
        let (tag, val) = match line.split_once(':') {
            Some((t, v))
                if ["ip", "ua", "kid", "thumbprint"].contains(&t.to_ascii_lowercase().as_str()) =>
            {
                (Some(t.to_ascii_lowercase()), v.trim())
            }
            _ => (None, line),
        };
        let hex: String = val.chars().filter(|c| *c != ':').collect();
        let is_hex =
            (hex.len() == 40 || hex.len() == 64) && hex.chars().all(|c| c.is_ascii_hexdigit());
        match tag.as_deref() {
            Some("ua") => self.user_agents.push(UaIoc {
                value: val.to_string(),
                common: false,
                source,
            }),
            Some("kid") => self.keys.push(KeyIoc {
                value: val.to_string(),
                what: "kid",
                source,
            }),
            Some("thumbprint") => self.keys.push(KeyIoc {
                value: hex.to_ascii_lowercase(),
                what: if hex.len() == 64 {
                    "sha256-thumbprint"
                } else {
                    "sha1-thumbprint"
                },
                source,
            }),
            _ => {
                if let (true, Some(net)) = (
                    tag.is_none() || tag.as_deref() == Some("ip"),
                    Cidr::parse(val).ok(),
                ) {
                    self.add_ip(IpIoc {
                        net,
                        first_seen: None,
                        last_seen: None,
                        source,
                    });
                } else if is_hex {
                    self.keys.push(KeyIoc {
                        value: hex.to_ascii_lowercase(),
                        what: if hex.len() == 64 {
                            "sha256-thumbprint"
                        } else {
                            "sha1-thumbprint"
                        },
                        source,
                    });
                } else if val.len() >= 16
                    && val.len() <= 64
                    && val
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
                {
                    self.keys.push(KeyIoc {
                        value: val.to_string(),
                        what: "kid",
                        source,
                    });
                } else {
                    self.user_agents.push(UaIoc {
                        value: val.to_string(),
                        common: false,
                        source,
                    });
                }
            }
        }
    }

    fn load_stix(&mut self, text: &str) -> Result<(), String> {
        let v: serde_json::Value = serde_json::from_str(text).map_err(|e| e.to_string())?;
        let objects = v
            .get("objects")
            .and_then(|o| o.as_array())
            .ok_or("no \"objects\" array")?;
        let ip_re = regex::Regex::new(r"(ipv4-addr|ipv6-addr):value\s*(?:=|ISSUBSET)\s*'([^']*)'")
            .expect("static regex");
        let ua_re =
            regex::Regex::new(r"(?i)user-agent'?\s*=\s*'((?:[^'\\]|\\.)*)'").expect("static regex");
        for o in objects {
            if o.get("type").and_then(|t| t.as_str()) != Some("indicator") {
                continue;
            }
            let Some(pattern) = o.get("pattern").and_then(|p| p.as_str()) else {
                continue;
            };
            let name = o
                .get("name")
                .and_then(|n| n.as_str())
                .or_else(|| o.get("id").and_then(|n| n.as_str()))
                .unwrap_or("indicator");
            let date = |k: &str| {
                o.get(k)
                    .and_then(|t| t.as_str())
                    .and_then(tokenward_event::timefmt::parse_timestamp)
                    .map(|t| t.date())
            };
            let source = format!("STIX indicator {name}");
            for c in ip_re.captures_iter(pattern) {
                if let Ok(net) = Cidr::parse(&c[2]) {
                    self.add_ip(IpIoc {
                        net,
                        first_seen: date("valid_from"),
                        last_seen: date("valid_until"),
                        source: source.clone(),
                    });
                }
            }
            for c in ua_re.captures_iter(pattern) {
                let ua = c[1].replace("\\'", "'").replace("\\\\", "\\");
                self.user_agents.push(UaIoc {
                    value: ua,
                    common: false,
                    source: source.clone(),
                });
            }
        }
        Ok(())
    }

    /// Texts whose absence from a record's bytes proves no address
    /// indicator matches it. `None` when a network indicator makes literal
    /// screening impossible.
    pub fn ip_literals(&self) -> Option<Vec<String>> {
        if !self.networks.is_empty() {
            return None;
        }
        Some(self.hosts.keys().map(|ip| ip.to_string()).collect())
    }

    /// The screen of the user-agent indicators: texts whose absence from a
    /// record's bytes proves no indicator matches it (the detection
    /// matches ignoring ASCII case).
    ///
    /// An indicator with a version number is screened for by a run of it
    /// without letters (`case_free_run`), the same in any case and as
    /// every writer writes it. Any other is screened for as the record's
    /// writer may spell its quotes, and:
    /// - when the user gave such an indicator (typed, maybe, in another
    ///   case than the log writes it), in any case
    ///   ([`Anchors::AnyOfIgnoringCase`]), every indicator alike;
    /// - else (the built-in indicators alone, spelled as Microsoft's logs
    ///   write them) in its exact, lower- and upper-case spellings.
    ///   Screened for ignoring case, the built-ins' pieces took the
    ///   literal screen a third pass, 5-8 % more CPU over sign-ins and
    ///   audit records for every hunt.
    ///
    /// Values are screened for trimmed, as the detection compares them.
    pub fn user_agent_anchors(&self) -> Anchors {
        let any_case = self
            .user_agents
            .iter()
            .any(|u| u.source != MSTIC && case_free_run(u.value.trim()).is_none());
        let mut out = Vec::new();
        for ua in &self.user_agents {
            let value = ua.value.trim();
            if let Some(run) = case_free_run(value) {
                out.push(run.to_owned());
                continue;
            }
            out.push(value.to_owned());
            if !any_case {
                out.push(value.to_ascii_lowercase());
                out.push(value.to_ascii_uppercase());
            }
            let esc = serde_json::to_string(value).unwrap_or_default();
            let esc = esc.trim_matches('"').to_string();
            if value.contains('"') {
                // .NET's System.Text.Json writes a quote as `\u0022`; CSV
                // cells double it.
                out.push(esc.replace("\\\"", "\\u0022"));
                out.push(value.replace('"', "\"\""));
            }
            if esc != value {
                out.push(esc);
            }
        }
        if any_case {
            Anchors::AnyOfIgnoringCase(out)
        } else {
            Anchors::AnyOf(out)
        }
    }

    /// Texts whose absence from a record's bytes proves no key indicator
    /// matches it: each kid, and each thumbprint in both cases, with and
    /// without colons.
    pub fn key_literals(&self) -> Vec<String> {
        let mut out = Vec::new();
        for k in &self.keys {
            out.push(k.value.clone());
            if k.what != "kid" {
                out.push(k.value.to_ascii_uppercase());
                let colons: Vec<String> = k
                    .value
                    .as_bytes()
                    .chunks(2)
                    .map(|c| String::from_utf8_lossy(c).to_string())
                    .collect();
                out.push(colons.join(":"));
                out.push(colons.join(":").to_ascii_uppercase());
            }
        }
        out
    }
}

/// Shortest run of a user agent screened for instead of its spellings,
/// and the digits it must hold: a version number, rare in other records.
const CASE_FREE_RUN_MIN: usize = 6;
const CASE_FREE_DIGITS_MIN: usize = 4;

/// The longest run of `ua` holding no letter and no character a writer
/// may escape ([`tokenward_event::escapes::may_be_escaped`]), when it has
/// [`CASE_FREE_RUN_MIN`] characters and [`CASE_FREE_DIGITS_MIN`] digits:
/// `92.0.4515.159 ` of `... Chrome/92.0.4515.159 Safari/537.36`. It is in
/// the bytes of any record whose user agent holds `ua` in any case.
fn case_free_run(ua: &str) -> Option<&str> {
    ua.split(|c: char| c.is_alphabetic() || tokenward_event::escapes::may_be_escaped(c))
        .filter(|r| {
            r.len() >= CASE_FREE_RUN_MIN
                && r.bytes().filter(u8::is_ascii_digit).count() >= CASE_FREE_DIGITS_MIN
        })
        .fold(None, |best: Option<&str>, r| match best {
            Some(b) if b.len() >= r.len() => Some(b),
            _ => Some(r),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtin_set() {
        let s = IocSet::builtin();
        assert_eq!(s.hosts.len(), 38);
        let hit = s.match_ip("195.26.87.219".parse().unwrap()).unwrap();
        assert_eq!(
            hit.first_seen,
            Date::from_calendar_date(2023, Month::May, 15).ok()
        );
        assert_eq!(
            hit.last_seen,
            Date::from_calendar_date(2023, Month::June, 25).ok()
        );
        assert!(s.match_ip("192.0.2.1".parse().unwrap()).is_none());
    }

    #[test]
    fn plain_and_stix_files() {
        let dir = std::env::temp_dir().join(format!("tw-ioc-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let plain = dir.join("iocs.txt");
        std::fs::write(
            &plain,
            "# comment\n198.51.100.0/24\n203.0.113.9\nBadAgent/1.0 (evil)\nAbCdEfGhIjKlMnOpQrStUv\n0123456789abcdef0123456789abcdef01234567\nua: curl/8.0\n",
        )
        .unwrap();
        let mut s = IocSet::default();
        assert_eq!(s.load_file(&plain).unwrap(), 6);
        assert!(s.match_ip("198.51.100.77".parse().unwrap()).is_some());
        assert!(s.match_ip("203.0.113.9".parse().unwrap()).is_some());
        assert_eq!(s.user_agents.len(), 2);
        assert_eq!(s.keys.len(), 2);
        assert!(
            s.ip_literals().is_none(),
            "a network disables literal screening"
        );

        let stix = dir.join("bundle.json");
        std::fs::write(&stix, r#"{"type":"bundle","id":"bundle--1","objects":[
          {"type":"indicator","id":"indicator--a","name":"panel","pattern":"[ipv4-addr:value = '91.231.186.226'] OR [ipv6-addr:value = '2001:db8::66']","pattern_type":"stix","valid_from":"2023-06-29T00:00:00Z","valid_until":"2023-07-04T00:00:00Z"},
          {"type":"indicator","id":"indicator--b","pattern":"[network-traffic:extensions.'http-request-ext'.request_header.'User-Agent' = 'Evil\\'Agent']","pattern_type":"stix","valid_from":"2023-01-01T00:00:00Z"},
          {"type":"malware","id":"malware--c"}]}"#).unwrap();
        let mut s = IocSet::default();
        assert_eq!(s.load_file(&stix).unwrap(), 3);
        let hit = s.match_ip("91.231.186.226".parse().unwrap()).unwrap();
        assert_eq!(
            hit.last_seen,
            Date::from_calendar_date(2023, Month::July, 4).ok()
        );
        assert_eq!(s.user_agents[0].value, "Evil'Agent");
        let empty = dir.join("empty.txt");
        std::fs::write(&empty, "# nothing\n").unwrap();
        assert!(matches!(
            IocSet::default().load_file(&empty),
            Err(IocError::Empty { .. })
        ));
        std::fs::remove_dir_all(&dir).ok();
    }

    /// The texts of a screen of user-agent indicators, and whether it
    /// ignores case.
    fn ua_texts(s: &IocSet) -> (Vec<String>, bool) {
        match s.user_agent_anchors() {
            Anchors::AnyOf(t) => (t, false),
            Anchors::AnyOfIgnoringCase(t) => (t, true),
            other => panic!("{other:?}"),
        }
    }

    /// The built-in indicators alone are screened for in the spellings
    /// Microsoft's logs use (no cost to every hunt); any indicator of the
    /// user's without a version number makes the screen ignore case, for
    /// every indicator.
    #[test]
    fn user_indicators_make_the_user_agent_screen_ignore_case() {
        let builtin = IocSet::builtin();
        let (texts, any_case) = ua_texts(&builtin);
        assert!(!any_case);
        assert!(texts.contains(&"client=rest;client=restsystem;;".to_string()));
        let mut versioned = IocSet::builtin();
        versioned.user_agents.push(UaIoc {
            value: "python-requests/2.31.0".into(),
            common: false,
            source: "test".into(),
        });
        assert!(!ua_texts(&versioned).1, "a case-free run needs no case");
        let mut typed = IocSet::builtin();
        typed.user_agents.push(UaIoc {
            value: "evil-agent/fleet".into(),
            common: false,
            source: "test".into(),
        });
        // Screened for as the detection compares it: trimmed.
        typed.user_agents.push(UaIoc {
            value: " padded agent ".into(),
            common: false,
            source: "test".into(),
        });
        let (texts, any_case) = ua_texts(&typed);
        assert!(any_case);
        assert!(texts.contains(&"padded agent".to_string()), "{texts:?}");
        assert!(texts.contains(&"Client=REST;Client=RESTSystem;;".to_string()));
        assert!(!texts.contains(&"client=rest;client=restsystem;;".to_string()));
        assert!(texts.contains(&"evil-agent/fleet".to_string()));
    }

    /// A user agent with quotes is screened for as the writers of exports
    /// spell it: serde_json and most writers `\"`, .NET's System.Text.Json
    /// `\u0022`, a CSV cell `""`; and a record holds one of the texts
    /// whichever wrote it.
    #[test]
    fn quoted_user_agents_are_screened_as_writers_spell_them() {
        let mut s = IocSet::default();
        s.user_agents.push(UaIoc {
            value: "\"Microsoft Edge\";v=\"113\"".into(),
            common: false,
            source: "test".into(),
        });
        let (lits, _) = ua_texts(&s);
        for record in [
            r#"{"ua":"\"Microsoft Edge\";v=\"113\""}"#,
            r#"{"ua":"\u0022Microsoft Edge\u0022;v=\u0022113\u0022"}"#,
            "x,\"\"\"Microsoft Edge\"\";v=\"\"113\"\"\",y",
        ] {
            assert!(lits.iter().any(|l| record.contains(l.as_str())), "{record}");
        }
    }

    /// An indicator with a version number is screened for by a run without
    /// letters, found whatever the case of the record's user agent; one
    /// without by itself, the screen ignoring case.
    #[test]
    fn user_agents_with_versions_are_screened_in_any_case() {
        let chrome = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/92.0.4515.159 Safari/537.36";
        assert_eq!(case_free_run(chrome), Some("92.0.4515.159 "));
        assert_eq!(
            case_free_run("python-requests/2.31.0"),
            Some("2.31.0"),
            "the version, not the name"
        );
        assert_eq!(case_free_run("Client=REST;Client=RESTSystem;;"), None);
        // A run ending in the value's own trailing space would not be in a
        // record whose user agent is the value trimmed.
        let mut padded = IocSet::default();
        padded.user_agents.push(UaIoc {
            value: "python-requests/2.31.0 ".into(),
            common: false,
            source: "test".into(),
        });
        assert!(ua_texts(&padded)
            .0
            .iter()
            .any(|l| "python-requests/2.31.0".contains(l.as_str())));
        assert_eq!(case_free_run("curl/8.0"), None, "too short to be rare");
        let mut s = IocSet::default();
        for v in [chrome, "Client=REST;Client=RESTSystem;;"] {
            s.user_agents.push(UaIoc {
                value: v.into(),
                common: false,
                source: "test".into(),
            });
        }
        let (lits, any_case) = ua_texts(&s);
        assert!(any_case);
        assert!(lits.contains(&"92.0.4515.159 ".to_string()));
        assert!(!lits.iter().any(|l| l == chrome), "{lits:?}");
        for record in [
            chrome.to_string(),
            chrome.to_ascii_lowercase(),
            chrome.to_ascii_uppercase(),
            chrome
                .replace("Chrome", "CHROME")
                .replace("Safari", "safari"),
            "client=rest;client=restsystem;;".to_string(),
            "Client=Rest;CLIENT=restSystem;;".to_string(),
        ] {
            let in_any_case = |l: &String| {
                record
                    .as_bytes()
                    .windows(l.len())
                    .any(|w| w.eq_ignore_ascii_case(l.as_bytes()))
            };
            assert!(lits.iter().any(in_any_case), "{record}");
        }
        assert_eq!(lits.len(), 2, "one text each, not its spellings: {lits:?}");
    }
}

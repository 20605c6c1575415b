//! Client addresses and CIDR ranges, one way for every part of tokenward.
//!
//! An IPv4-mapped IPv6 address (`::ffff:10.1.2.3`, what a dual-stack socket
//! reports for an IPv4 peer and what some logs write) is the IPv4 address:
//! [`canonical`] turns it into one, and [`Cidr`] compares addresses and
//! parses ranges (`::ffff:10.0.0.0/104` is `10.0.0.0/8`) through it.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

/// IPv4-mapped IPv6 addresses as plain IPv4, everything else unchanged.
pub fn canonical(ip: IpAddr) -> IpAddr {
    ip.to_canonical()
}

/// Parses the address forms found in audit logs: `1.2.3.4`, `1.2.3.4:port`,
/// `[2001:db8::1]:port`, `[2001:db8::1]`, bare IPv6, and IPv4-mapped IPv6
/// (returned as IPv4 so one address has one spelling).
pub fn parse_client_ip(s: &str) -> Option<IpAddr> {
    let s = s.trim();
    if s.is_empty() {
        return None;
    }
    let ip = if let Some(rest) = s.strip_prefix('[') {
        let end = rest.find(']')?;
        rest[..end].parse::<Ipv6Addr>().ok().map(IpAddr::V6)?
    } else if let Ok(ip) = s.parse::<IpAddr>() {
        ip
    } else if let Some((host, port)) = s.rsplit_once(':') {
        // Only IPv4 may carry a port without brackets; a bare IPv6 parsed above.
        if !port.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        IpAddr::V4(host.parse::<Ipv4Addr>().ok()?)
    } else {
        return None;
    };
    Some(canonical(ip))
}

/// An address range in CIDR notation (`10.0.0.0/8`, `2001:db8::/32`), or a
/// single address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Cidr {
    net: IpAddr,
    prefix: u8,
}

impl Cidr {
    /// Parses `a.b.c.d/n`, `v6/n` or a bare address (surrounding spaces
    /// allowed).
    pub fn parse(s: &str) -> Result<Cidr, String> {
        s.trim().parse()
    }

    /// Whether `ip` is inside the range (IPv4-mapped IPv6 compared as IPv4).
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.net, canonical(ip)) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix))
                    .unwrap_or(0);
                u32::from(net) & mask == u32::from(ip) & mask
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix))
                    .unwrap_or(0);
                u128::from(net) & mask == u128::from(ip) & mask
            }
            _ => false,
        }
    }

    /// Whether a field value (an address in any [`parse_client_ip`] form)
    /// is inside the range.
    pub fn contains_text(&self, s: &str) -> bool {
        parse_client_ip(s).is_some_and(|ip| self.contains(ip))
    }

    /// Whether the range is a single address.
    pub fn is_host(&self) -> bool {
        self.prefix == if self.net.is_ipv4() { 32 } else { 128 }
    }

    /// The network address.
    pub fn addr(&self) -> IpAddr {
        self.net
    }

    /// The prefix length.
    pub fn prefix(&self) -> u8 {
        self.prefix
    }
}

impl FromStr for Cidr {
    type Err = String;

    fn from_str(s: &str) -> Result<Cidr, String> {
        let (addr, prefix) = match s.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (s, None),
        };
        let net: IpAddr = addr
            .parse()
            .map_err(|_| format!("{s:?} is not an IP address or CIDR range"))?;
        let max = if net.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => max,
            Some(p) => match p.parse::<u8>() {
                Ok(n) if n <= max => n,
                _ => return Err(format!("{s:?}: prefix length must be 0..={max}")),
            },
        };
        let mapped = net.is_ipv6() && canonical(net).is_ipv4();
        Ok(Cidr {
            net: canonical(net),
            // ::ffff:10.0.0.0/104 is 10.0.0.0/8.
            prefix: if mapped {
                prefix.saturating_sub(96)
            } else {
                prefix
            },
        })
    }
}

impl fmt::Display for Cidr {
    /// A single address is written bare, a range as `net/prefix`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_host() {
            write!(f, "{}", self.net)
        } else {
            write!(f, "{}/{}", self.net, self.prefix)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_address_forms() {
        let p = |s| parse_client_ip(s).map(|i| i.to_string());
        assert_eq!(p("185.73.124.135:19823").as_deref(), Some("185.73.124.135"));
        assert_eq!(
            p("[2a01:110:8068:7:9bf8:aa87:e00a:5f1f]:36185").as_deref(),
            Some("2a01:110:8068:7:9bf8:aa87:e00a:5f1f")
        );
        assert_eq!(p("::ffff:10.1.2.3").as_deref(), Some("10.1.2.3"));
        assert_eq!(p(" 2001:db8::1 ").as_deref(), Some("2001:db8::1"));
        assert_eq!(p("[2001:db8::1]").as_deref(), Some("2001:db8::1"));
        assert_eq!(p("host:80"), None);
        assert_eq!(p("1.2.3.4:8x"), None);
        assert_eq!(p(""), None);
    }

    #[test]
    fn ranges_contain_and_refuse() {
        let c: Cidr = "10.0.0.0/8".parse().unwrap();
        assert!(c.contains("10.200.1.1".parse().unwrap()));
        assert!(!c.contains("11.0.0.1".parse().unwrap()));
        assert!(
            c.contains("::ffff:10.0.0.1".parse().unwrap()),
            "mapped IPv4 is IPv4"
        );
        assert!(c.contains_text("10.1.1.1:443"));
        let one: Cidr = "127.0.0.1".parse().unwrap();
        assert!(one.is_host() && one.contains("127.0.0.1".parse().unwrap()));
        assert_eq!(one.to_string(), "127.0.0.1");
        let all = Cidr::parse(" 0.0.0.0/0 ").unwrap();
        assert!(all.contains("1.2.3.4".parse().unwrap()));
        let v6: Cidr = "2001:db8::/32".parse().unwrap();
        assert!(v6.contains("2001:db8:ffff::1".parse().unwrap()));
        assert!(!v6.contains("10.0.0.1".parse().unwrap()));
        assert_eq!(v6.to_string(), "2001:db8::/32");
        let mapped: Cidr = "::ffff:10.0.0.0/104".parse().unwrap();
        assert_eq!(mapped, c);
        for bad in ["10.0.0.0/33", "x", "10.0.0.0/", "fd00::/129"] {
            assert!(bad.parse::<Cidr>().is_err(), "{bad}");
        }
    }
}

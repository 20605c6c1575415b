//! Client-address normalisation.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

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
    Some(ip.to_canonical())
}

/// An IPv4 or IPv6 network in CIDR notation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Cidr {
    net: IpAddr,
    prefix: u8,
}

impl Cidr {
    /// Parses `a.b.c.d/n` or `v6/n`; a bare address is a host network.
    pub fn parse(s: &str) -> Option<Cidr> {
        let (addr, prefix) = match s.split_once('/') {
            Some((a, p)) => (a.trim(), Some(p.trim().parse::<u8>().ok()?)),
            None => (s.trim(), None),
        };
        let net = addr.parse::<IpAddr>().ok()?.to_canonical();
        let max = if net.is_ipv4() { 32 } else { 128 };
        let prefix = prefix.unwrap_or(max);
        (prefix <= max).then_some(Cidr { net, prefix })
    }

    /// Whether `ip` lies in this network.
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.net, ip) {
            (IpAddr::V4(n), IpAddr::V4(a)) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix))
                    .unwrap_or(0);
                u32::from(n) & mask == u32::from(a) & mask
            }
            (IpAddr::V6(n), IpAddr::V6(a)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix))
                    .unwrap_or(0);
                u128::from(n) & mask == u128::from(a) & mask
            }
            _ => false,
        }
    }

    /// Whether the network is a single host.
    pub fn is_host(&self) -> bool {
        self.prefix == if self.net.is_ipv4() { 32 } else { 128 }
    }

    /// The network address.
    pub fn addr(&self) -> IpAddr {
        self.net
    }
}

impl std::fmt::Display for Cidr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
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
    fn forms() {
        let p = |s| parse_client_ip(s).map(|i| i.to_string());
        assert_eq!(p("185.73.124.135:19823").as_deref(), Some("185.73.124.135"));
        assert_eq!(
            p("[2a01:110:8068:7:9bf8:aa87:e00a:5f1f]:36185").as_deref(),
            Some("2a01:110:8068:7:9bf8:aa87:e00a:5f1f")
        );
        assert_eq!(p("2001:db8::1").as_deref(), Some("2001:db8::1"));
        assert_eq!(p("::ffff:192.0.2.1").as_deref(), Some("192.0.2.1"));
        assert_eq!(p(" 1.2.3.4 ").as_deref(), Some("1.2.3.4"));
        assert_eq!(p("not-an-ip"), None);
        assert_eq!(p(""), None);
    }

    #[test]
    fn cidr() {
        let c = Cidr::parse("51.89.156.0/24").unwrap();
        assert!(c.contains("51.89.156.153".parse().unwrap()));
        assert!(!c.contains("51.89.157.1".parse().unwrap()));
        assert!(Cidr::parse("2001:db8::/32")
            .unwrap()
            .contains("2001:db8:1::5".parse().unwrap()));
        assert!(Cidr::parse("0.0.0.0/0")
            .unwrap()
            .contains("8.8.8.8".parse().unwrap()));
        assert!(Cidr::parse("1.2.3.4/33").is_none());
    }
}

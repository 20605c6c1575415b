//! Trusted-proxy address ranges and the client address behind them.

use std::net::IpAddr;

use hyper::header::HeaderMap;

use tokenward_net::canonical;
pub use tokenward_net::Cidr;

/// Who sent a request, as far as the gateway can tell.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ClientAddr {
    /// The socket peer.
    pub peer: IpAddr,
    /// The client: the peer, or, when the peer is a trusted proxy, the
    /// right-most `X-Forwarded-For` entry that is not itself trusted.
    pub client: IpAddr,
    /// The `X-Forwarded-For` entries, left to right, when the peer is a
    /// trusted proxy (otherwise the header is attacker-controlled and is
    /// neither believed nor logged as a chain).
    pub chain: Option<Vec<String>>,
}

/// Longest `X-Forwarded-For` chain kept; longer ones keep their right-most
/// (closest, most trustworthy) entries.
const MAX_CHAIN: usize = 32;

impl ClientAddr {
    pub(crate) fn resolve(peer: IpAddr, headers: &HeaderMap, trusted: &[Cidr]) -> ClientAddr {
        let peer = canonical(peer);
        let is_trusted = |ip: IpAddr| trusted.iter().any(|c| c.contains(ip));
        if !is_trusted(peer) {
            return ClientAddr {
                peer,
                client: peer,
                chain: None,
            };
        }
        let mut chain: Vec<String> = headers
            .get_all("x-forwarded-for")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .map(|s| s.trim().to_owned())
            .filter(|s| !s.is_empty())
            .collect();
        if chain.len() > MAX_CHAIN {
            chain.drain(..chain.len() - MAX_CHAIN);
        }
        // Walk from the nearest hop outwards: every hop we trust vouches for
        // the one to its left; the first untrusted (or unparsable) entry is
        // as far as the chain can be believed.
        let mut client = peer;
        for entry in chain.iter().rev() {
            match entry.parse::<IpAddr>() {
                Ok(ip) => {
                    client = canonical(ip);
                    if !is_trusted(client) {
                        break;
                    }
                }
                Err(_) => break,
            }
        }
        ClientAddr {
            peer,
            client,
            chain: Some(chain),
        }
    }

    /// The `X-Forwarded-For` value to send upstream: the believed chain plus
    /// the peer, or just the peer when it is not a trusted proxy (a client
    /// cannot plant addresses for the upstream to believe).
    pub(crate) fn forwarded_for(&self) -> String {
        match &self.chain {
            Some(chain) if !chain.is_empty() => format!("{}, {}", chain.join(", "), self.peer),
            _ => self.peer.to_string(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cidrs(list: &[&str]) -> Vec<Cidr> {
        list.iter().map(|s| s.parse().unwrap()).collect()
    }

    #[test]
    fn cidr_parsing_and_matching() {
        let c: Cidr = "10.0.0.0/8".parse().unwrap();
        assert!(c.contains("10.1.2.3".parse().unwrap()));
        assert!(c.contains("::ffff:10.1.2.3".parse().unwrap()));
        assert!(!c.contains("11.0.0.1".parse().unwrap()));
        assert!(!c.contains("::1".parse().unwrap()));
        let one: Cidr = "127.0.0.1".parse().unwrap();
        assert!(one.contains("127.0.0.1".parse().unwrap()));
        assert!(!one.contains("127.0.0.2".parse().unwrap()));
        let all: Cidr = "0.0.0.0/0".parse().unwrap();
        assert!(all.contains("8.8.8.8".parse().unwrap()));
        let v6: Cidr = "fd00::/8".parse().unwrap();
        assert!(v6.contains("fd12::1".parse().unwrap()));
        let mapped: Cidr = "::ffff:10.0.0.0/104".parse().unwrap();
        assert!(mapped.contains("10.9.9.9".parse().unwrap()));
        for bad in ["10.0.0.0/33", "nope", "10.0.0.0/x", "::/129"] {
            assert!(bad.parse::<Cidr>().is_err(), "{bad}");
        }
    }

    #[test]
    fn forwarded_for_believed_only_from_trusted_peers() {
        let mut h = HeaderMap::new();
        h.insert("x-forwarded-for", "6.6.6.6, 203.0.113.9".parse().unwrap());
        let trusted = cidrs(&["10.0.0.0/8"]);
        let direct = ClientAddr::resolve("198.51.100.1".parse().unwrap(), &h, &trusted);
        assert_eq!(direct.client.to_string(), "198.51.100.1");
        assert_eq!(direct.chain, None);
        assert_eq!(direct.forwarded_for(), "198.51.100.1");

        let via = ClientAddr::resolve("10.0.0.5".parse().unwrap(), &h, &trusted);
        assert_eq!(via.client.to_string(), "203.0.113.9");
        assert_eq!(
            via.chain.as_deref(),
            Some(&["6.6.6.6".to_owned(), "203.0.113.9".to_owned()][..])
        );
        assert_eq!(via.forwarded_for(), "6.6.6.6, 203.0.113.9, 10.0.0.5");

        // Two trusted hops: the client is the first untrusted one.
        h.insert("x-forwarded-for", "203.0.113.9, 10.0.0.7".parse().unwrap());
        let two = ClientAddr::resolve("10.0.0.5".parse().unwrap(), &h, &trusted);
        assert_eq!(two.client.to_string(), "203.0.113.9");
        // Garbage stops the walk at the last trusted hop.
        h.insert("x-forwarded-for", "203.0.113.9, junk".parse().unwrap());
        let junk = ClientAddr::resolve("10.0.0.5".parse().unwrap(), &h, &trusted);
        assert_eq!(junk.client.to_string(), "10.0.0.5");
    }
}

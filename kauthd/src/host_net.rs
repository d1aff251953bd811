//! The network a remote host's failures count against: the one place that
//! turns a `PAM_RHOST` into the key of its rate limit. An IPv6 address
//! counts as its `[ratelimit] ipv6_prefix` network (a /64 by default, what
//! one customer holds), an IPv4 address as its `ipv4_prefix` network (the
//! address itself by default), an IPv4-mapped IPv6 address as IPv4, and
//! anything else (a host name) as itself.
//!
//! A full-length prefix is written as the bare address (`203.0.113.9`),
//! a shorter one as the network (`2001:db8:1:2::/64`, `198.51.100.0/24`).
//! A key given back (`kauthctl locks clear --host 2001:db8:1:2::/64`) and
//! any address inside its network give the same key.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// The prefix lengths in force (`[ratelimit] ipv4_prefix`, `ipv6_prefix`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Prefixes {
    pub ipv4: u8,
    pub ipv6: u8,
}

/// The key the failures of `rhost` count against.
pub fn limit_key(rhost: &str, prefixes: Prefixes) -> String {
    // A key given back: the address part, masked again.
    let address = match rhost.split_once('/') {
        Some((address, len)) if !len.is_empty() && len.bytes().all(|b| b.is_ascii_digit()) => {
            address
        }
        _ => rhost,
    };
    match address.parse::<IpAddr>() {
        Ok(IpAddr::V4(v4)) => ipv4_network(v4, prefixes.ipv4),
        Ok(IpAddr::V6(v6)) => match v6.to_ipv4_mapped() {
            Some(v4) => ipv4_network(v4, prefixes.ipv4),
            None => ipv6_network(v6, prefixes.ipv6),
        },
        Err(_) => rhost.to_owned(),
    }
}

fn ipv4_network(address: Ipv4Addr, prefix: u8) -> String {
    let prefix = prefix.min(32);
    if prefix == 32 {
        return address.to_string();
    }
    let mask = u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0);
    format!("{}/{prefix}", Ipv4Addr::from(u32::from(address) & mask))
}

fn ipv6_network(address: Ipv6Addr, prefix: u8) -> String {
    let prefix = prefix.min(128);
    if prefix == 128 {
        return address.to_string();
    }
    let mask = u128::MAX.checked_shl(128 - u32::from(prefix)).unwrap_or(0);
    format!("{}/{prefix}", Ipv6Addr::from(u128::from(address) & mask))
}

#[cfg(test)]
mod tests {
    use super::*;

    const DEFAULT: Prefixes = Prefixes { ipv4: 32, ipv6: 64 };

    #[test]
    fn ipv6_addresses_count_as_their_network() {
        assert_eq!(limit_key("2001:db8:1:2::5", DEFAULT), "2001:db8:1:2::/64");
        assert_eq!(
            limit_key("2001:db8:1:2:ffff:1:2:3", DEFAULT),
            "2001:db8:1:2::/64"
        );
        assert_eq!(limit_key("2001:db8:1:3::5", DEFAULT), "2001:db8:1:3::/64");
        let full = Prefixes {
            ipv4: 32,
            ipv6: 128,
        };
        assert_eq!(limit_key("2001:DB8::0:5", full), "2001:db8::5");
        let wide = Prefixes { ipv4: 32, ipv6: 48 };
        assert_eq!(limit_key("2001:db8:1:2::5", wide), "2001:db8:1::/48");
    }

    #[test]
    fn ipv4_and_mapped_addresses_count_as_ipv4() {
        assert_eq!(limit_key("203.0.113.9", DEFAULT), "203.0.113.9");
        assert_eq!(limit_key("::ffff:203.0.113.9", DEFAULT), "203.0.113.9");
        let slash24 = Prefixes { ipv4: 24, ipv6: 64 };
        assert_eq!(limit_key("203.0.113.9", slash24), "203.0.113.0/24");
        assert_eq!(limit_key("::ffff:203.0.113.200", slash24), "203.0.113.0/24");
    }

    #[test]
    fn a_key_given_back_and_names_stay_what_they_are() {
        assert_eq!(limit_key("2001:db8:1:2::/64", DEFAULT), "2001:db8:1:2::/64");
        assert_eq!(
            limit_key("2001:db8:1:2::9/64", DEFAULT),
            "2001:db8:1:2::/64"
        );
        let slash24 = Prefixes { ipv4: 24, ipv6: 64 };
        assert_eq!(limit_key("203.0.113.0/24", slash24), "203.0.113.0/24");
        assert_eq!(
            limit_key("host-1.example.org", DEFAULT),
            "host-1.example.org"
        );
        assert_eq!(limit_key("not/an/address", DEFAULT), "not/an/address");
        assert_eq!(limit_key("fe80::1%eth0", DEFAULT), "fe80::1%eth0");
    }
}

//! Host text → `parse_ip_literal` and `parse_host`.
//!
//! Neither may panic, they must agree on what is an address, and a host made only of digits
//! must read as `inet_aton` reads it: one 32-bit number, octal when it has a leading `0`
//! (`010` is 8), decimal otherwise, and no address when it does not fit in 32 bits.

#![no_main]

use std::net::{IpAddr, Ipv4Addr};

use libfuzzer_sys::fuzz_target;
use septa_policy::hostname::{HostLiteral, canonical_ip, parse_host, parse_ip_literal};

fuzz_target!(|data: &[u8]| {
    let Ok(host) = std::str::from_utf8(data) else {
        return;
    };
    let literal = parse_ip_literal(host);
    let classified = parse_host(host);
    if let Some(ip) = literal {
        assert_eq!(classified, Ok(HostLiteral::Ip(ip)), "{host:?}");
        let _ = canonical_ip(ip);
    }

    if !host.is_empty() && host.bytes().all(|byte| byte.is_ascii_digit()) {
        let expected = match host.strip_prefix('0').filter(|rest| !rest.is_empty()) {
            Some(octal) => u32::from_str_radix(octal, 8).ok(),
            None => host.parse::<u32>().ok(),
        };
        assert_eq!(
            literal,
            expected.map(|n| IpAddr::V4(Ipv4Addr::from(n))),
            "digits-only host {host:?}"
        );
    }
});

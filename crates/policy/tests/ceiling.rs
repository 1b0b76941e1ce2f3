//! The operator ceiling and host parsing: every spelling of an address is the address, and no
//! spelling gets a blocked address past the ceiling.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnet::IpNet;
use proptest::prelude::*;
use septa_policy::ceiling::{Ceiling, CeilingBlock, OPERATOR_RANGE_NAME};
use septa_policy::hostname::{
    HostError, HostLiteral, canonical_host_name, canonical_ip, parse_host, parse_ip_literal,
    validate_host_name,
};

fn net(text: &str) -> IpNet {
    text.parse().unwrap()
}

fn ip(text: &str) -> IpAddr {
    text.parse().unwrap()
}

/// Parses `spelling` as a literal and checks it against `ceiling`.
fn check_spelling(ceiling: &Ceiling, spelling: &str) -> Result<(), CeilingBlock> {
    let parsed = parse_ip_literal(spelling);
    assert!(
        parsed.is_some(),
        "`{spelling}` should parse as an IP literal"
    );
    ceiling.check(parsed.unwrap())
}

const LOOPBACK_SPELLINGS: &[(&str, &str)] = &[
    ("127.0.0.1", "127.0.0.1"),
    ("127.1", "127.0.0.1"),
    ("127.0.1", "127.0.0.1"),
    ("2130706433", "127.0.0.1"),
    ("0177.0.0.1", "127.0.0.1"),
    ("017700000001", "127.0.0.1"),
    ("0x7f.0.0.1", "127.0.0.1"),
    ("0X7F.0.0.1", "127.0.0.1"),
    ("0x7f000001", "127.0.0.1"),
    ("0x7f.1", "127.0.0.1"),
    ("0177.0x0.0.01", "127.0.0.1"),
    ("0x7f.0.0x1", "127.0.0.1"),
    ("00000000177.0.0.1", "127.0.0.1"),
    ("0x00000000007f.0.0.1", "127.0.0.1"),
    ("127.0.0.1.", "127.0.0.1"),
    ("127.1.", "127.0.0.1"),
    ("127.0.0.2", "127.0.0.2"),
    ("127.255.255.254", "127.255.255.254"),
    ("127.16777214", "127.255.255.254"),
    ("[::1]", "::1"),
    ("::1", "::1"),
    ("[::ffff:127.0.0.1]", "::ffff:127.0.0.1"),
    ("::ffff:127.0.0.1", "::ffff:127.0.0.1"),
    ("[0:0:0:0:0:ffff:7f00:1]", "::ffff:127.0.0.1"),
    (
        "[0000:0000:0000:0000:0000:FFFF:7F00:0001]",
        "::ffff:127.0.0.1",
    ),
    ("[::ffff:0:127.0.0.1]", "::ffff:0:127.0.0.1"),
    ("[::127.0.0.1]", "::127.0.0.1"),
    ("[64:ff9b::7f00:1]", "64:ff9b::7f00:1"),
    ("[2002:7f00:1::1]", "2002:7f00:1::1"),
    ("[::1%lo]", "::1"),
    ("[::1%25lo]", "::1"),
];

#[test]
fn every_loopback_spelling_parses_to_the_address_and_is_blocked() {
    let ceiling = Ceiling::default();
    for &(spelling, expected) in LOOPBACK_SPELLINGS {
        assert_eq!(
            parse_ip_literal(spelling),
            Some(ip(expected)),
            "`{spelling}`"
        );
        let block = check_spelling(&ceiling, spelling).expect_err(spelling);
        assert_eq!(block.name, "loopback", "`{spelling}`");
        assert!(
            block.canonical.is_loopback(),
            "`{spelling}` canonicalizes to {}",
            block.canonical
        );
    }
}

#[test]
fn metadata_address_is_blocked_in_every_spelling() {
    let ceiling = Ceiling::default();
    let spellings = [
        "169.254.169.254",
        "2852039166",
        "0xa9fea9fe",
        "0xA9.0xFE.0xA9.0xFE",
        "0251.0376.0251.0376",
        "025177524776",
        "169.254.43518",
        "169.16689662",
        "0xa9.254.0251.0xfe",
        "169.254.169.254.",
        "[::ffff:169.254.169.254]",
        "[::ffff:a9fe:a9fe]",
        "::ffff:169.254.169.254",
        "[64:ff9b::a9fe:a9fe]",
        "[2002:a9fe:a9fe::]",
    ];
    for spelling in spellings {
        let block = check_spelling(&ceiling, spelling).expect_err(spelling);
        assert_eq!(block.name, "metadata", "`{spelling}`");
        assert_eq!(block.range, net("169.254.169.254/32"), "`{spelling}`");
        assert_eq!(block.canonical, ip("169.254.169.254"), "`{spelling}`");
    }
    let aws_ipv6 = ceiling.check(ip("fd00:ec2::254")).unwrap_err();
    assert_eq!(aws_ipv6.name, "metadata");
}

#[test]
fn default_ceiling_blocks_each_special_range() {
    let ceiling = Ceiling::default();
    let cases = [
        ("0.0.0.0", "this-network"),
        ("10.1.2.3", "private"),
        ("172.31.255.255", "private"),
        ("192.168.1.1", "private"),
        ("100.64.0.1", "carrier-grade-nat"),
        ("169.254.1.1", "link-local"),
        ("192.0.0.8", "ietf-protocol-assignments"),
        ("192.0.2.1", "documentation"),
        ("198.51.100.7", "documentation"),
        ("203.0.113.9", "documentation"),
        ("198.19.0.1", "benchmarking"),
        ("224.0.0.251", "multicast"),
        ("240.0.0.1", "reserved"),
        ("255.255.255.255", "broadcast"),
        ("::", "unspecified"),
        ("::1", "loopback"),
        ("fd12:3456::1", "unique-local"),
        ("fe80::1", "link-local"),
        ("fec0::1", "site-local"),
        ("ff02::1", "multicast"),
        ("100::1", "discard-only"),
        ("2001:db8::1", "documentation"),
        ("::ffff:10.0.0.1", "private"),
        ("::ffff:0.0.0.0", "this-network"),
    ];
    for (address, name) in cases {
        let block = ceiling.check(ip(address)).expect_err(address);
        assert_eq!(block.name, name, "`{address}`");
    }
}

#[test]
fn public_addresses_are_allowed() {
    let ceiling = Ceiling::default();
    for address in [
        "1.1.1.1",
        "8.8.8.8",
        "93.184.216.34",
        "172.32.0.1",
        "2606:4700::1111",
        "2a00:1450:4001::200e",
        "::ffff:1.1.1.1",
        "64:ff9b::101:101",
        "2002:101:101::1",
    ] {
        assert_eq!(ceiling.check(ip(address)), Ok(()), "`{address}`");
    }
    assert_eq!(check_spelling(&ceiling, "16843009"), Ok(()));
}

#[test]
fn relaxation_opens_exactly_the_relaxed_range() {
    let ceiling = Ceiling::new(vec![], vec![net("127.0.0.1/32")]);
    assert_eq!(ceiling.check(ip("127.0.0.1")), Ok(()));
    assert_eq!(ceiling.check(ip("::ffff:127.0.0.1")), Ok(()));
    assert_eq!(check_spelling(&ceiling, "0x7f000001"), Ok(()));
    assert_eq!(ceiling.check(ip("127.0.0.2")).unwrap_err().name, "loopback");
    assert_eq!(ceiling.check(ip("10.0.0.1")).unwrap_err().name, "private");
    assert_eq!(ceiling.check(ip("::1")).unwrap_err().name, "loopback");
    assert_eq!(
        ceiling.check(ip("169.254.169.254")).unwrap_err().name,
        "metadata"
    );
}

#[test]
fn relaxation_in_mapped_form_means_the_ipv4_range() {
    let ceiling = Ceiling::new(vec![], vec![net("::ffff:127.0.0.1/128")]);
    assert_eq!(
        ceiling.relaxed_ranges().collect::<Vec<_>>(),
        [&net("127.0.0.1/32")]
    );
    assert_eq!(ceiling.check(ip("127.0.0.1")), Ok(()));
    assert!(ceiling.check(ip("127.0.0.2")).is_err());
}

#[test]
fn extra_block_beats_relaxation() {
    let ceiling = Ceiling::new(vec![net("127.0.0.0/24")], vec![net("127.0.0.0/8")]);
    let block = ceiling.check(ip("127.0.0.1")).unwrap_err();
    assert_eq!(block.name, OPERATOR_RANGE_NAME);
    assert_eq!(block.range, net("127.0.0.0/24"));
    assert_eq!(ceiling.check(ip("127.0.1.1")), Ok(()));
}

#[test]
fn extra_block_adds_a_public_range() {
    let ceiling = Ceiling::new(vec![net("1.1.1.0/24"), net("2002::/16")], vec![]);
    assert_eq!(
        ceiling.check(ip("1.1.1.1")).unwrap_err().range,
        net("1.1.1.0/24")
    );
    assert_eq!(
        ceiling.check(ip("::ffff:1.1.1.1")).unwrap_err().range,
        net("1.1.1.0/24")
    );
    // The whole 6to4 range is blocked whatever IPv4 address it embeds.
    assert_eq!(
        ceiling.check(ip("2002:808:808::1")).unwrap_err().range,
        net("2002::/16")
    );
    assert_eq!(ceiling.check(ip("8.8.8.8")), Ok(()));
}

#[test]
fn block_message_names_address_range_and_reason() {
    let ceiling = Ceiling::default();
    assert_eq!(
        ceiling.check(ip("127.0.0.1")).unwrap_err().to_string(),
        "`127.0.0.1` is in the operator ceiling's blocked range `127.0.0.0/8` (loopback)"
    );
    assert_eq!(
        ceiling
            .check(ip("::ffff:169.254.169.254"))
            .unwrap_err()
            .to_string(),
        "`::ffff:169.254.169.254` (`169.254.169.254`) is in the operator ceiling's blocked range \
         `169.254.169.254/32` (metadata)"
    );
}

#[test]
fn blocked_ranges_lists_extra_then_defaults() {
    let ceiling = Ceiling::new(vec![net("1.2.3.0/24")], vec![]);
    let ranges: Vec<_> = ceiling.blocked_ranges().collect();
    assert_eq!(
        ranges.first(),
        Some(&(&net("1.2.3.0/24"), OPERATOR_RANGE_NAME))
    );
    assert!(ranges.contains(&(&net("169.254.169.254/32"), "metadata")));
    assert!(ranges.contains(&(&net("fe80::/10"), "link-local")));
    assert_eq!(
        Ceiling::default().blocked_ranges().count() + 1,
        ranges.len()
    );
}

#[test]
fn names_are_not_ip_literals() {
    for name in [
        "localhost",
        "example.com",
        "metadata.google.internal",
        "0x7g.0.0.1",
        "a.127.0.0.1",
    ] {
        assert_eq!(parse_ip_literal(name), None, "`{name}`");
    }
    assert_eq!(
        parse_host("LocalHost."),
        Ok(HostLiteral::Name("localhost".to_owned()))
    );
    assert_eq!(parse_host("0x7f.1"), Ok(HostLiteral::Ip(ip("127.0.0.1"))));
}

#[test]
fn out_of_range_parts_are_not_addresses_and_not_names() {
    for host in [
        "256.0.0.1",
        "1.2.3.256",
        "1.2.65536",
        "1.16777216",
        "4294967296",
        "0x100000000",
        "08.0.0.1",
        "0189.0.0.1",
        "1.2.3.4.5",
        "127.0.0.1..",
        "[127.0.0.1]",
        "[::1",
        "::ffff:0177.0.0.1",
        "127.0.0.1:80",
    ] {
        assert_eq!(parse_ip_literal(host), None, "`{host}`");
        assert!(
            validate_host_name(host).is_err(),
            "`{host}` should not be a name"
        );
    }
}

#[test]
fn host_name_rules() {
    assert_eq!(validate_host_name("api.example.com"), Ok(()));
    assert_eq!(validate_host_name("xn--bcher-kva.example."), Ok(()));
    assert_eq!(validate_host_name("a-b.c0"), Ok(()));
    assert_eq!(validate_host_name(""), Err(HostError::Empty));
    assert!(matches!(
        validate_host_name("a..b"),
        Err(HostError::EmptyLabel { .. })
    ));
    assert!(matches!(
        validate_host_name(".a"),
        Err(HostError::EmptyLabel { .. })
    ));
    assert!(matches!(
        validate_host_name(&"a".repeat(64)),
        Err(HostError::LabelTooLong { .. })
    ));
    assert_eq!(validate_host_name(&"a".repeat(63)), Ok(()));
    let long = [
        "a".repeat(63),
        "b".repeat(63),
        "c".repeat(63),
        "d".repeat(61),
    ]
    .join(".");
    assert_eq!(long.len(), 253);
    assert_eq!(validate_host_name(&long), Ok(()));
    assert_eq!(validate_host_name(&format!("{long}.")), Ok(()));
    assert!(matches!(
        validate_host_name(&format!("{long}e")),
        Err(HostError::TooLong { len: 254, .. })
    ));
    assert!(matches!(
        validate_host_name("-a.com"),
        Err(HostError::HyphenAtLabelEdge { .. })
    ));
    for (host, bad) in [
        ("a_b.com", '_'),
        ("exa mple.com", ' '),
        ("bücher.de", 'ü'),
        ("a%2e.com", '%'),
    ] {
        assert_eq!(
            validate_host_name(host),
            Err(HostError::InvalidCharacter {
                host: host.to_owned(),
                character: bad
            })
        );
    }
    assert_eq!(
        validate_host_name("a_b.com").unwrap_err().to_string(),
        "host name `a_b.com` contains `_`; only ASCII letters, digits, `-` and `.` are allowed"
    );
    assert_eq!(
        canonical_host_name("API.Example.COM.").as_deref(),
        Ok("api.example.com")
    );
}

#[test]
fn canonical_ip_unwraps_embedded_ipv4_only() {
    let cases = [
        ("::ffff:1.2.3.4", "1.2.3.4"),
        ("::ffff:0:1.2.3.4", "1.2.3.4"),
        ("::1.2.3.4", "1.2.3.4"),
        ("64:ff9b::1.2.3.4", "1.2.3.4"),
        ("2002:102:304::", "1.2.3.4"),
        ("2002:102:304:ffff::1", "1.2.3.4"),
        ("::", "::"),
        ("::1", "::1"),
        ("::2", "0.0.0.2"),
        ("64:ff9b:1::1.2.3.4", "64:ff9b:1::102:304"),
        ("2606:4700::1111", "2606:4700::1111"),
        ("1.2.3.4", "1.2.3.4"),
    ];
    for (given, canonical) in cases {
        assert_eq!(canonical_ip(ip(given)), ip(canonical), "`{given}`");
    }
}

/// Teredo `2001:0:SERVER:FLAGS:PORT:CLIENT`, the client's address stored inverted.
fn teredo(server: Ipv4Addr, client: Ipv4Addr) -> IpAddr {
    let bits = 0x2001_0000_u128 << 96
        | u128::from(u32::from(server)) << 64
        | 0x8000_u128 << 48
        | 0x63bf_u128 << 32
        | u128::from(!u32::from(client));
    IpAddr::V6(Ipv6Addr::from(bits))
}

/// `v4` in local-use NAT64 `64:ff9b:1::/48` as a translator using `prefix_len` embeds it.
fn local_nat64(v4: Ipv4Addr, prefix_len: u32) -> IpAddr {
    let v4 = u128::from(u32::from(v4));
    let prefix = 0x0064_ff9b_0001_u128 << 80;
    let embedded = match prefix_len {
        48 => (v4 >> 16) << 64 | (v4 & 0xffff) << 40,
        56 => (v4 >> 24) << 64 | (v4 & 0xff_ffff) << 32,
        64 => v4 << 24,
        _ => v4,
    };
    IpAddr::V6(Ipv6Addr::from(prefix | embedded))
}

#[test]
fn tunnels_and_translators_to_a_blocked_network_are_blocked() {
    let ceiling = Ceiling::default();
    let public = Ipv4Addr::new(8, 8, 8, 8);
    let metadata = Ipv4Addr::new(169, 254, 169, 254);
    let cases = [
        ("64:ff9b:1::7f00:1", "loopback", "127.0.0.1"),
        ("64:ff9b:1::a9fe:a9fe", "metadata", "169.254.169.254"),
        ("64:ff9b:1:7f00:0:100::", "loopback", "127.0.0.1"),
        (
            "2001:0:808:808:8000:63bf:80ff:fffe",
            "loopback",
            "127.0.0.1",
        ),
        (
            "2001:0:4136:e378:8000:63bf:f5ff:fffe",
            "private",
            "10.0.0.1",
        ),
        ("2001:db9::5efe:a00:1", "private", "10.0.0.1"),
        ("2600::200:5efe:7f00:1", "loopback", "127.0.0.1"),
    ];
    for (given, name, reading) in cases {
        let block = ceiling.check(ip(given)).expect_err(given);
        assert_eq!(
            (block.name, block.canonical),
            (name, ip(reading)),
            "`{given}`"
        );
    }
    for prefix_len in [48, 56, 64, 96] {
        let block = ceiling
            .check(local_nat64(metadata, prefix_len))
            .expect_err("metadata through local-use nat64");
        assert_eq!(block.name, "metadata", "/{prefix_len}");
    }
    // A Teredo server in a blocked network is reached too (its bubbles go there).
    assert!(
        ceiling
            .check(teredo(Ipv4Addr::new(10, 0, 0, 1), public))
            .is_err()
    );
    assert_eq!(ceiling.check(teredo(public, public)), Ok(()));
    assert_eq!(ceiling.check(local_nat64(public, 96)), Ok(()));
    assert_eq!(
        ceiling.check(ip("2001:0:808:808:8000:63bf:f7f7:f7f7")),
        Ok(())
    );
    // A relaxation lifts the block on its address in every form, and on nothing else.
    let relaxed = Ceiling::new(Vec::new(), vec![net("127.0.0.1/32")]);
    assert_eq!(relaxed.check(ip("64:ff9b:1::7f00:1")), Ok(()));
    assert!(relaxed.check(ip("64:ff9b:1::7f00:2")).is_err());
    // An operator block of the whole tunnel prefix wins over what it leads to.
    let no_teredo = Ceiling::new(vec![net("2001::/32")], Vec::new());
    let block = no_teredo.check(teredo(public, public)).unwrap_err();
    assert_eq!(block.name, OPERATOR_RANGE_NAME);
}

proptest! {
    #[test]
    fn a_blocked_ipv4_address_is_blocked_through_every_tunnel(
        octets: [u8; 4],
        server: [u8; 4],
        prefix_len in prop::sample::select(vec![48_u32, 56, 64, 96]),
    ) {
        let ceiling = Ceiling::default();
        let v4 = Ipv4Addr::from(octets);
        if ceiling.check(IpAddr::V4(v4)).is_err() {
            // No translator forwards to "this network" (0.0.0.0/8), so a translated address
            // that also reads as a real destination is decided by that one.
            if octets[0] != 0 || octets == [0; 4] {
                prop_assert!(ceiling.check(local_nat64(v4, prefix_len)).is_err());
            }
            prop_assert!(ceiling.check(teredo(Ipv4Addr::from(server), v4)).is_err());
            prop_assert!(ceiling.check(IpAddr::V6(Ipv6Addr::from(
                (0x2002_u128 << 112) | u128::from(u32::from(v4)) << 80
            ))).is_err());
        }
    }

    #[test]
    fn any_u32_in_decimal_is_that_ipv4_address(n: u32) {
        prop_assert_eq!(parse_ip_literal(&n.to_string()), Some(IpAddr::V4(Ipv4Addr::from(n))));
    }

    #[test]
    fn any_u32_in_hex_and_octal_is_that_ipv4_address(n: u32) {
        let expected = Some(IpAddr::V4(Ipv4Addr::from(n)));
        prop_assert_eq!(parse_ip_literal(&format!("{n:#x}")), expected);
        prop_assert_eq!(parse_ip_literal(&format!("0{n:o}")), expected);
    }

    #[test]
    fn mapped_ipv6_canonicalizes_to_its_ipv4(octets: [u8; 4]) {
        let v4 = Ipv4Addr::from(octets);
        prop_assert_eq!(canonical_ip(IpAddr::V6(v4.to_ipv6_mapped())), IpAddr::V4(v4));
        let bracketed = format!("[{}]", v4.to_ipv6_mapped());
        let parsed = parse_ip_literal(&bracketed);
        prop_assert_eq!(parsed.map(canonical_ip), Some(IpAddr::V4(v4)));
    }

    #[test]
    fn mapped_form_gets_the_same_verdict_as_ipv4(octets: [u8; 4]) {
        let ceiling = Ceiling::default();
        let v4 = Ipv4Addr::from(octets);
        let verdict = ceiling.check(IpAddr::V4(v4)).map_err(|block| block.range);
        let mapped = ceiling.check(IpAddr::V6(v4.to_ipv6_mapped())).map_err(|block| block.range);
        prop_assert_eq!(verdict, mapped);
    }

    #[test]
    fn dotted_parts_in_any_radix_are_the_same_address(octets: [u8; 4], radixes: [u8; 4]) {
        let spelled: Vec<String> = octets
            .iter()
            .zip(radixes)
            .map(|(&octet, radix)| match radix % 3 {
                0 => octet.to_string(),
                1 => format!("0{octet:o}"),
                _ => format!("0x{octet:x}"),
            })
            .collect();
        let text = spelled.join(".");
        prop_assert_eq!(parse_ip_literal(&text), Some(IpAddr::V4(Ipv4Addr::from(octets))));
    }

    #[test]
    fn ipv6_display_round_trips(segments: [u16; 8]) {
        let v6 = Ipv6Addr::from(segments);
        prop_assert_eq!(parse_ip_literal(&v6.to_string()), Some(IpAddr::V6(v6)));
        prop_assert_eq!(parse_ip_literal(&format!("[{v6}]")), Some(IpAddr::V6(v6)));
    }
}

//! Property tests: the origin parser and key decoding against references
//! written from their specifications, the ABNF of PROTOCOL.md §2.1 and the
//! steps of RFC 8032 §5.1.3. The references are deliberately naive, and
//! share no code with the crate.

use std::net::Ipv6Addr;

use num_bigint::BigUint;
use proptest::prelude::*;
use sesame_proto::{AccountPublicKey, Error, Origin, ServerPublicKey};

// Origins, PROTOCOL.md §2.1.

/// `origin = scheme "://" host [ ":" port ]`, at most 100 bytes.
fn reference_origin(text: &str) -> bool {
    text.len() <= 100
        && ["http://", "https://"].iter().any(|scheme| text.strip_prefix(scheme).is_some_and(host_and_port))
}

/// `host [ ":" port ]`; no form of `host` outside brackets has a ':'.
fn host_and_port(text: &str) -> bool {
    if let Some(inner) = text.strip_prefix('[') {
        let Some((literal, after)) = inner.split_once(']') else { return false };
        return ipv6(literal) && (after.is_empty() || after.strip_prefix(':').is_some_and(port));
    }
    let (host, port_text) = match text.split_once(':') {
        Some((host, port_text)) => (host, Some(port_text)),
        None => (text, None),
    };
    (ipv4(host) || dns_name(host)) && port_text.is_none_or(port)
}

/// `port = %x31-39 *4DIGIT`, whose value is at most 65535.
fn port(text: &str) -> bool {
    let b = text.as_bytes();
    !b.is_empty()
        && b.len() <= 5
        && (b'1'..=b'9').contains(&b[0])
        && b.iter().all(u8::is_ascii_digit)
        && text.parse::<u32>().is_ok_and(|n| n <= 65535)
}

/// `ipv4 = dec-octet 3( "." dec-octet )`, with RFC 3986's `dec-octet`.
fn ipv4(text: &str) -> bool {
    let dec_octet = |o: &str| match o.as_bytes() {
        [d] => d.is_ascii_digit(),
        [a, b] => (b'1'..=b'9').contains(a) && b.is_ascii_digit(),
        [b'1', b, c] => b.is_ascii_digit() && c.is_ascii_digit(),
        [b'2', b'0'..=b'4', c] => c.is_ascii_digit(),
        [b'2', b'5', b'0'..=b'5'] => true,
        _ => false,
    };
    let octets: Vec<&str> = text.split('.').collect();
    octets.len() == 4 && octets.iter().all(|o| dec_octet(o))
}

/// `dns-name = label *( "." label )`, `label = ld [ *( ld / "-" ) ld ]`,
/// and the last label is not all digits.
fn dns_name(text: &str) -> bool {
    let ld = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    let label = |l: &str| {
        let b = l.as_bytes();
        !b.is_empty() && ld(b[0]) && ld(b[b.len() - 1]) && b.iter().all(|&c| ld(c) || c == b'-')
    };
    let labels: Vec<&str> = text.split('.').collect();
    labels.iter().all(|l| label(l)) && !labels[labels.len() - 1].bytes().all(|b| b.is_ascii_digit())
}

/// RFC 5952 §4 as rules: groups of 1–4 lowercase hex digits without
/// leading zeros; `::` stands for two or more zero groups, which must be the
/// whole of the longest run of zero groups, and the first of equal runs;
/// without `::` no two zero groups are adjacent.
fn ipv6(text: &str) -> bool {
    fn groups(part: &str) -> Option<Vec<bool>> {
        if part.is_empty() {
            return Some(Vec::new());
        }
        part.split(':')
            .map(|g| {
                let ok = (1..=4).contains(&g.len())
                    && g.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
                    && (g == "0" || !g.starts_with('0'));
                ok.then_some(g == "0")
            })
            .collect()
    }
    fn longest_zero_run(zeros: &[bool]) -> usize {
        zeros.split(|z| !z).map(<[bool]>::len).max().unwrap_or(0)
    }
    match text.split_once("::") {
        None => groups(text).is_some_and(|g| g.len() == 8 && longest_zero_run(&g) < 2),
        Some((left, right)) => {
            let (Some(l), Some(r)) = (groups(left), groups(right)) else { return false };
            if l.len() + r.len() > 6 {
                return false;
            }
            let run = 8 - l.len() - r.len();
            l.last() != Some(&true)
                && r.first() != Some(&true)
                && longest_zero_run(&l) < run
                && longest_zero_run(&r) <= run
        }
    }
}

fn ipv6_text() -> impl Strategy<Value = String> {
    let group = prop_oneof![3 => Just(0u16), 1 => Just(1u16), 2 => any::<u16>()];
    (prop::array::uniform8(group), 0..5u8).prop_map(|(groups, style)| {
        let ip = Ipv6Addr::from(groups);
        let join = |f: &dyn Fn(&u16) -> String| groups.iter().map(f).collect::<Vec<_>>().join(":");
        match style {
            0 => ip.to_string(),
            1 => join(&|g| format!("{g:x}")),
            2 => join(&|g| format!("{g:04x}")),
            3 => ip.to_string().to_uppercase(),
            // Compress the last zero group alone, or with its neighbours.
            _ => match groups.iter().rposition(|&g| g == 0) {
                Some(i) => {
                    let hex = |gs: &[u16]| gs.iter().map(|g| format!("{g:x}")).collect::<Vec<_>>().join(":");
                    format!("{}::{}", hex(&groups[..i]), hex(&groups[i + 1..]))
                }
                None => ip.to_string(),
            },
        }
    })
}

fn host() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-z0-9.-]{0,12}",
        "[a-zA-Z0-9._-]{1,8}",
        prop::collection::vec((0u16..300, any::<bool>()), 1..6).prop_map(|parts| {
            let octet = |&(n, zero): &(u16, bool)| if zero { format!("0{n}") } else { n.to_string() };
            parts.iter().map(octet).collect::<Vec<_>>().join(".")
        }),
        ipv6_text().prop_map(|text| format!("[{text}]")),
        "\\[[0-9a-f:.]{0,12}\\]",
        Just("localhost".to_owned()),
    ]
}

fn origin_text() -> impl Strategy<Value = String> {
    let scheme = prop_oneof![
        6 => Just("http://"),
        6 => Just("https://"),
        1 => Just("HTTP://"),
        1 => Just("ftp://"),
        1 => Just("http:/"),
    ];
    let port = prop_oneof![2 => Just(String::new()), 2 => ":[0-9]{1,6}", 1 => ":[+-]?[0-9]{0,3}"];
    let tail = prop_oneof![8 => Just(""), 1 => Just("/"), 1 => Just("@x"), 1 => Just(":")];
    (scheme, host(), port, tail).prop_map(|(scheme, host, port, tail)| format!("{scheme}{host}{port}{tail}"))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(4000))]

    #[test]
    fn origin_parser_accepts_exactly_what_the_grammar_allows(text in origin_text()) {
        prop_assert_eq!(Origin::parse(&text).is_ok(), reference_origin(&text), "{:?}", text);
    }

    #[test]
    fn origin_parser_accepts_exactly_what_the_grammar_allows_on_arbitrary_text(
        text in "(https?://)?[a-z0-9:/.\\[\\]+@-]{0,24}"
    ) {
        prop_assert_eq!(Origin::parse(&text).is_ok(), reference_origin(&text), "{:?}", text);
    }
}

#[test]
fn origin_reference_agrees_with_the_named_examples() {
    for ok in ["https://login.example.com", "http://127.0.0.1:8080", "http://[::1]", "http://[::ffff:7f00:1]:1"] {
        assert!(reference_origin(ok), "{ok}");
    }
    for bad in ["http://[::ffff:127.0.0.1]", "http://[1::1:0:0:0:1]", "http://a:+80", "http://127.1", "http://a..b"] {
        assert!(!reference_origin(bad), "{bad}");
    }
}

// Keys, RFC 8032 §5.1.3.

fn p() -> BigUint {
    (BigUint::from(1u8) << 255) - 19u8
}

fn inverse(a: &BigUint) -> BigUint {
    a.modpow(&(p() - 2u8), &p())
}

/// d = −121665 / 121666.
fn d() -> BigUint {
    (p() - 121665u32) * inverse(&BigUint::from(121666u32)) % p()
}

/// RFC 8032 §5.1.3, step by step. `None` where the RFC says decoding fails.
fn reference_decode(bytes: &[u8; 32]) -> Option<(BigUint, BigUint)> {
    let p = p();
    // 1. Bit 255 is x_0; the rest is y, which must be below p.
    let x_0 = u32::from(bytes[31] >> 7);
    let mut y_bytes = *bytes;
    y_bytes[31] &= 0x7f;
    let y = BigUint::from_bytes_le(&y_bytes);
    if y >= p {
        return None;
    }
    // 2. x² = u / v with u = y² − 1, v = d y² + 1; the candidate root is
    //    x = u v³ (u v⁷)^((p−5)/8).
    let y2 = &y * &y % &p;
    let u = (&y2 + &p - 1u8) % &p;
    let v = (d() * &y2 + 1u8) % &p;
    let v3 = v.modpow(&BigUint::from(3u8), &p);
    let v7 = v.modpow(&BigUint::from(7u8), &p);
    let x = &u * &v3 % &p * (&u * &v7 % &p).modpow(&((&p - 5u8) / 8u8), &p) % &p;
    // 3. Keep x, multiply it by 2^((p−1)/4), or fail.
    let vx2 = &v * &x % &p * &x % &p;
    let x = if vx2 == u {
        x
    } else if vx2 == (&p - &u) % &p {
        x * BigUint::from(2u8).modpow(&((&p - 1u8) / 4u8), &p) % &p
    } else {
        return None;
    };
    // 4. x = 0 with x_0 = 1 fails; otherwise pick the root whose parity is x_0.
    if x == BigUint::ZERO && x_0 == 1 {
        return None;
    }
    let x = if (&x % 2u8) == BigUint::from(x_0) { x } else { &p - x };
    Some((x, y))
}

/// Twisted Edwards addition with a = −1.
fn add((x1, y1): &(BigUint, BigUint), (x2, y2): &(BigUint, BigUint)) -> (BigUint, BigUint) {
    let p = p();
    let t = d() * x1 % &p * x2 % &p * y1 % &p * y2 % &p;
    let x3 = (x1 * y2 + y1 * x2) % &p * inverse(&((1u8 + &t) % &p)) % &p;
    let y3 = (y1 * y2 + x1 * x2) % &p * inverse(&((1u8 + &p - &t) % &p)) % &p;
    (x3, y3)
}

/// Small order: eight times the point is the neutral element (0, 1).
fn is_small_order(point: &(BigUint, BigUint)) -> bool {
    let p2 = add(point, point);
    let p4 = add(&p2, &p2);
    let p8 = add(&p4, &p4);
    p8 == (BigUint::ZERO, BigUint::from(1u8))
}

fn expected(bytes: &[u8; 32]) -> Result<(), Error> {
    match reference_decode(bytes) {
        None => Err(Error::InvalidPublicKey),
        Some(point) if is_small_order(&point) => Err(Error::WeakPublicKey),
        Some(_) => Ok(()),
    }
}

/// Random keys almost never hit the edges, so most cases are built near
/// them: y close to 0, 1, p − 1 and p, the small-order encodings, each with
/// either sign.
fn key_bytes() -> impl Strategy<Value = [u8; 32]> {
    let near = prop_oneof![
        (0u32..40).prop_map(BigUint::from),
        (0u32..40).prop_map(|k| p() - 20u8 + k),
        Just(BigUint::from_bytes_le(&hex::decode(ORDER_8).expect("hex"))),
    ];
    let edge = (near, any::<bool>()).prop_map(|(y, sign)| {
        let mut bytes = [0u8; 32];
        let le = y.to_bytes_le();
        bytes[..le.len()].copy_from_slice(&le);
        bytes[31] = bytes[31] & 0x7f | if sign { 0x80 } else { 0 };
        bytes
    });
    prop_oneof![1 => any::<[u8; 32]>(), 2 => edge]
}

/// The y of a point of order 8 (with its sign bit clear).
const ORDER_8: &str = "26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc05";

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1500))]

    #[test]
    fn key_decoding_follows_rfc_8032(bytes in key_bytes()) {
        let want = expected(&bytes);
        prop_assert_eq!(AccountPublicKey::from_bytes(&bytes).map(|k| k.to_bytes()), want.clone().map(|()| bytes));
        prop_assert_eq!(ServerPublicKey::from_bytes(&bytes).map(|k| k.to_bytes()), want.map(|()| bytes));
    }
}

#[test]
fn key_reference_finds_the_edges_it_is_meant_to_find() {
    let mut unreduced = [0xff; 32];
    unreduced[0] = 0xed + 10;
    unreduced[31] = 0x7f;
    assert_eq!(expected(&unreduced), Err(Error::InvalidPublicKey));
    let mut one = [0u8; 32];
    one[0] = 1;
    assert_eq!(expected(&one), Err(Error::WeakPublicKey));
    one[31] = 0x80;
    assert_eq!(expected(&one), Err(Error::InvalidPublicKey));
    let order_8: [u8; 32] = hex::decode(ORDER_8).unwrap().try_into().unwrap();
    assert_eq!(expected(&order_8), Err(Error::WeakPublicKey));
    let base_point = hex::decode("5866666666666666666666666666666666666666666666666666666666666666").unwrap();
    assert_eq!(expected(&base_point.try_into().unwrap()), Ok(()));
}

//! Validated names: origins, service names and account names.
//!
//! Each type can only be built through its parser, so a value that exists is
//! valid ("parse, don't validate").

use std::{
    fmt,
    net::{Ipv4Addr, Ipv6Addr},
};

use serde::{Deserialize, Serialize};

use crate::Error;

/// Longest origin a token may carry, in bytes.
pub const MAX_ORIGIN_LEN: usize = 100;
/// Longest service or account name, in bytes of UTF-8.
pub const MAX_NAME_LEN: usize = 64;

/// A web origin: `http` or `https`, a lowercase host, an optional port, and
/// nothing else (no path, no trailing slash, no user info). Exactly the
/// grammar of PROTOCOL.md §2.1, which gives each address one text form, so
/// two origin strings that differ always name different origins.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Origin(String);

impl Origin {
    pub fn parse(text: &str) -> Result<Self, Error> {
        if text.len() > MAX_ORIGIN_LEN {
            return Err(Error::InvalidOrigin);
        }
        let rest =
            text.strip_prefix("https://").or_else(|| text.strip_prefix("http://")).ok_or(Error::InvalidOrigin)?;
        let (host, port) = split_host_port(rest).ok_or(Error::InvalidOrigin)?;
        if is_valid_host(host) && port.is_none_or(is_valid_port) {
            Ok(Self(text.to_owned()))
        } else {
            Err(Error::InvalidOrigin)
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// True when the host is `localhost`, an IPv4 address in 127.0.0.0/8 or
    /// `[::1]`: the only hosts whose plain-HTTP origins an authenticator
    /// accepts by default, because their traffic never leaves the machine.
    pub fn is_loopback(&self) -> bool {
        let Some(rest) = self.0.strip_prefix("http://").or_else(|| self.0.strip_prefix("https://")) else {
            return false;
        };
        let host = split_host_port(rest).map_or("", |(h, _)| h);
        host == "localhost" || host == "[::1]" || host.parse::<Ipv4Addr>().is_ok_and(|ip| ip.is_loopback())
    }

    pub fn is_https(&self) -> bool {
        self.0.starts_with("https://")
    }
}

fn split_host_port(rest: &str) -> Option<(&str, Option<&str>)> {
    if rest.starts_with('[') {
        let end = rest.find(']')?;
        let (host, after) = rest.split_at(end + 1);
        match after {
            "" => Some((host, None)),
            _ => Some((host, Some(after.strip_prefix(':')?))),
        }
    } else {
        match rest.split_once(':') {
            Some((host, port)) => Some((host, Some(port))),
            None => Some((rest, None)),
        }
    }
}

/// `dns-name`, `ipv4` or `"[" ipv6 "]"` of §2.1.
fn is_valid_host(host: &str) -> bool {
    if let Some(literal) = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
        return literal.parse::<Ipv6Addr>().is_ok_and(|ip| canonical_ipv6(ip) == literal);
    }
    let is_label = |label: &str| {
        !label.is_empty()
            && !label.starts_with('-')
            && !label.ends_with('-')
            && label.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
    };
    if !host.split('.').all(is_label) {
        return false;
    }
    // A browser reads a host whose last label is a number as an IPv4
    // address and rewrites it ("127.1" is 127.0.0.1), so only the
    // dotted-quad form it writes back is an origin.
    let last = host.rsplit('.').next().unwrap_or(host);
    if last.bytes().all(|b| b.is_ascii_digit()) {
        return host.parse::<Ipv4Addr>().is_ok_and(|ip| ip.to_string() == host);
    }
    true
}

/// RFC 5952 §4: lowercase hex without leading zeros, and `::` for the
/// longest run of two or more zero groups (the first of equal runs). Never
/// the dotted form of §5, which browsers do not write in origins either.
fn canonical_ipv6(ip: Ipv6Addr) -> String {
    let groups = ip.segments();
    let (mut run_start, mut run_len) = (0, 0);
    let mut i = 0;
    while i < groups.len() {
        let start = i;
        while i < groups.len() && groups[i] == 0 {
            i += 1;
        }
        if i - start > run_len {
            (run_start, run_len) = (start, i - start);
        }
        i = i.max(start + 1);
    }
    let hex = |groups: &[u16]| groups.iter().map(|g| format!("{g:x}")).collect::<Vec<_>>().join(":");
    if run_len >= 2 {
        format!("{}::{}", hex(&groups[..run_start]), hex(&groups[run_start + run_len..]))
    } else {
        hex(&groups)
    }
}

/// ASCII digits without a leading zero, 1–65535. Not `u16::from_str` alone:
/// it takes a leading `+`.
fn is_valid_port(port: &str) -> bool {
    !port.starts_with('0') && port.bytes().all(|b| b.is_ascii_digit()) && port.parse::<u16>().is_ok()
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl TryFrom<String> for Origin {
    type Error = Error;
    fn try_from(value: String) -> Result<Self, Error> {
        Self::parse(&value)
    }
}

impl From<Origin> for String {
    fn from(value: Origin) -> Self {
        value.0
    }
}

/// Shared rule for service and account names: 1 to 64 bytes of UTF-8, no
/// control characters, no bidirectional controls, no zero-width characters,
/// no leading or trailing white space (Unicode White_Space, which is what
/// `str::trim` removes). Markup and quotes are allowed; every page escapes
/// them.
fn is_valid_name(text: &str) -> bool {
    !text.is_empty()
        && text.len() <= MAX_NAME_LEN
        && text.trim() == text
        && !text.chars().any(|c| c.is_control() || is_bidi_control(c) || is_zero_width(c))
}

/// Unicode's Bidi_Control characters. They reorder what follows them, so a
/// name could show one thing and be another.
fn is_bidi_control(c: char) -> bool {
    matches!(c, '\u{061c}' | '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

/// ZERO WIDTH SPACE, NON-JOINER and JOINER. They are not bidi controls, but
/// they are invisible, so two names that differ only by them look the same
/// to the person who has to tell them apart.
fn is_zero_width(c: char) -> bool {
    matches!(c, '\u{200b}'..='\u{200d}')
}

macro_rules! name_type {
    ($(#[$doc:meta])* $name:ident, $err:expr) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
        #[serde(try_from = "String", into = "String")]
        pub struct $name(String);

        impl $name {
            pub fn parse(text: &str) -> Result<Self, Error> {
                if is_valid_name(text) {
                    Ok(Self(text.to_owned()))
                } else {
                    Err($err)
                }
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl TryFrom<String> for $name {
            type Error = Error;
            fn try_from(value: String) -> Result<Self, Error> {
                Self::parse(&value)
            }
        }

        impl From<$name> for String {
            fn from(value: $name) -> Self {
                value.0
            }
        }
    };
}

name_type!(
    /// The display name of a service, as the authenticator shows it.
    ServiceName,
    Error::InvalidServiceName
);
name_type!(
    /// The name of an account within one service.
    AccountName,
    Error::InvalidAccountName
);
name_type!(
    /// What a person calls one of their authenticators ("work laptop"), so
    /// that they can tell an account's keys apart. It follows the rules of
    /// names, and nothing depends on it.
    KeyLabel,
    Error::InvalidKeyLabel
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_plain_origins() {
        for ok in [
            "https://example.com",
            "http://127.0.0.1:8080",
            "https://a-b.example:443",
            "http://[::1]:9000",
            "http://localhost",
        ] {
            assert!(Origin::parse(ok).is_ok(), "{ok}");
        }
    }

    #[test]
    fn rejects_origins_with_paths_case_or_credentials() {
        for bad in [
            "",
            "example.com",
            "ftp://example.com",
            "https://Example.com",
            "https://example.com/",
            "https://example.com/x",
            "https://user@example.com",
            "https://example.com:0",
            "https://example.com:65536",
            "https://example.com:",
            "https://.example.com",
            "https://exa mple.com",
            "https://example.com?x",
            "http://[::1",
        ] {
            assert_eq!(Origin::parse(bad), Err(Error::InvalidOrigin), "{bad:?}");
        }
    }

    #[test]
    fn rejects_ipv6_literals_that_are_not_addresses() {
        for bad in [
            "http://[:]",
            "http://[d]",
            "http://[1.2]",
            "http://[1:2:3:4:5:6:7:8:9]",
            "http://[::1%25eth0]",
            "http://[]",
        ] {
            assert_eq!(Origin::parse(bad), Err(Error::InvalidOrigin), "{bad:?}");
        }
    }

    #[test]
    fn rejects_ipv6_literals_not_in_their_one_canonical_form() {
        for bad in [
            "http://[::ffff:127.0.0.1]",
            "http://[0:0:0:0:0:0:0:1]",
            "http://[::01]",
            "http://[1::1:0:0:0:1]",
            "http://[1:0:0:1::1:1]",
            "http://[1:0::1]",
            "http://[::0:1]",
            "http://[1:2:3:4:5:6:7::]",
            "http://[::A]",
        ] {
            assert_eq!(Origin::parse(bad), Err(Error::InvalidOrigin), "{bad:?}");
        }
        for ok in [
            "http://[::ffff:7f00:1]",
            "http://[1:0:0:1::1]",
            "http://[1::1:0:0:1:1]",
            "http://[::1:0:0:0:1]",
            "http://[1:2:3:4:5:6:7:0]",
            "https://[::]:443",
        ] {
            assert!(Origin::parse(ok).is_ok(), "{ok}");
        }
    }

    #[test]
    fn rejects_ports_with_a_sign() {
        assert_eq!(Origin::parse("http://a:+80"), Err(Error::InvalidOrigin));
        assert_eq!(Origin::parse("http://a:+0"), Err(Error::InvalidOrigin));
        assert_eq!(Origin::parse("http://a:-1"), Err(Error::InvalidOrigin));
        assert!(Origin::parse("http://a:65535").is_ok());
    }

    #[test]
    fn rejects_empty_labels_and_numeric_hosts_that_are_not_dotted_quads() {
        for bad in ["http://a..b", "http://a.-b", "http://a-.b", "http://127.1", "http://127.0.0.01", "http://a.1"] {
            assert_eq!(Origin::parse(bad), Err(Error::InvalidOrigin), "{bad:?}");
        }
        assert!(Origin::parse("http://1a.b-c.d9").is_ok());
    }

    #[test]
    fn loopback_origins_are_recognised() {
        assert!(Origin::parse("http://127.0.0.1:8080").unwrap().is_loopback());
        assert!(Origin::parse("http://localhost:1").unwrap().is_loopback());
        assert!(Origin::parse("http://[::1]:1").unwrap().is_loopback());
        assert!(!Origin::parse("http://127.example.com").unwrap().is_loopback());
        assert!(!Origin::parse("http://10.0.0.1").unwrap().is_loopback());
        assert!(Origin::parse("http://127.255.0.9").unwrap().is_loopback());
        assert!(!Origin::parse("http://[::ffff:7f00:1]").unwrap().is_loopback());
        assert!(!Origin::parse("http://localhost.example").unwrap().is_loopback());
    }

    #[test]
    fn rejects_names_with_bidi_controls_including_the_arabic_letter_mark() {
        for bad in ["a\u{061c}b", "a\u{200e}b", "a\u{2067}b", "zero\u{200b}width", "a\u{200d}b"] {
            assert_eq!(AccountName::parse(bad), Err(Error::InvalidAccountName), "{bad:?}");
        }
    }

    #[test]
    fn names_may_not_start_or_end_with_unicode_white_space() {
        // U+001F is a control, refused as such; U+3000 is White_Space.
        assert_eq!(AccountName::parse("\u{3000}alice"), Err(Error::InvalidAccountName));
        assert_eq!(AccountName::parse("alice\u{a0}"), Err(Error::InvalidAccountName));
        assert!(AccountName::parse("a\u{a0}b").is_ok());
    }

    #[test]
    fn rejects_names_with_control_characters_or_padding() {
        for bad in ["", " alice", "alice ", "a\nb", "a\u{0}b", "bidi\u{202e}txt", &"x".repeat(65)] {
            assert_eq!(AccountName::parse(bad), Err(Error::InvalidAccountName), "{bad:?}");
        }
        assert!(AccountName::parse("<script>alert(1)</script>").is_ok());
        assert!(AccountName::parse("Zoë O'Brien; DROP TABLE account").is_ok());
        assert_eq!(ServiceName::parse(""), Err(Error::InvalidServiceName));
    }
}

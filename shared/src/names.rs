//! Validated names: origins, service names and account names.
//!
//! Each type can only be built through its parser, so a value that exists is
//! valid ("parse, don't validate").

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::Error;

/// Longest origin a token may carry, in bytes.
pub const MAX_ORIGIN_LEN: usize = 100;
/// Longest service or account name, in bytes of UTF-8.
pub const MAX_NAME_LEN: usize = 64;

/// A web origin: `http` or `https`, a lowercase host, an optional port, and
/// nothing else (no path, no trailing slash, no user info).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Origin(String);

impl Origin {
    pub fn parse(text: &str) -> Result<Self, Error> {
        if text.is_empty() || text.len() > MAX_ORIGIN_LEN {
            return Err(Error::InvalidOrigin);
        }
        let rest =
            text.strip_prefix("https://").or_else(|| text.strip_prefix("http://")).ok_or(Error::InvalidOrigin)?;
        let (host, port) = split_host_port(rest).ok_or(Error::InvalidOrigin)?;
        let host_ok = if let Some(v6) = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
            !v6.is_empty()
                && v6.bytes().all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase() || b == b':' || b == b'.')
        } else {
            !host.is_empty()
                && !host.starts_with(['.', '-'])
                && !host.ends_with(['.', '-'])
                && host.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'.' || b == b'-')
        };
        let port_ok = match port {
            None => true,
            Some(p) => !p.is_empty() && p.len() <= 5 && !p.starts_with('0') && p.parse::<u16>().is_ok(),
        };
        if host_ok && port_ok {
            Ok(Self(text.to_owned()))
        } else {
            Err(Error::InvalidOrigin)
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// True for `http://` origins whose host is a loopback address or
    /// `localhost`: the only plain-HTTP origins an authenticator should accept
    /// by default.
    pub fn is_loopback(&self) -> bool {
        let Some(rest) = self.0.strip_prefix("http://").or_else(|| self.0.strip_prefix("https://")) else {
            return false;
        };
        let host = split_host_port(rest).map_or("", |(h, _)| h);
        host == "localhost" || host == "[::1]" || host.starts_with("127.") && host.split('.').count() == 4
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
/// control characters, no leading or trailing white space. Markup and quotes
/// are allowed; every page escapes them.
fn is_valid_name(text: &str) -> bool {
    !text.is_empty()
        && text.len() <= MAX_NAME_LEN
        && text.trim() == text
        && !text.chars().any(|c| {
            c.is_control() || matches!(c, '\u{200b}'..='\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
        })
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
    fn loopback_origins_are_recognised() {
        assert!(Origin::parse("http://127.0.0.1:8080").unwrap().is_loopback());
        assert!(Origin::parse("http://localhost:1").unwrap().is_loopback());
        assert!(Origin::parse("http://[::1]:1").unwrap().is_loopback());
        assert!(!Origin::parse("http://127.example.com").unwrap().is_loopback());
        assert!(!Origin::parse("http://10.0.0.1").unwrap().is_loopback());
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

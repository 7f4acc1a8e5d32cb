//! 128-bit random identifiers, written as 32 lowercase hex digits.

use std::{fmt, str::FromStr};

use rand_core::CryptoRngCore;
use serde::{Deserialize, Serialize};

/// The text was not 32 lowercase hex digits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("an id is 32 lowercase hex digits")]
pub struct InvalidId;

fn parse_hex16(text: &str) -> Result<[u8; 16], InvalidId> {
    let bytes = text.as_bytes();
    if bytes.len() != 32 {
        return Err(InvalidId);
    }
    let digit = |b: u8| match b {
        b'0'..=b'9' => Ok(b - b'0'),
        b'a'..=b'f' => Ok(b - b'a' + 10),
        _ => Err(InvalidId),
    };
    let mut out = [0; 16];
    for (i, pair) in bytes.chunks_exact(2).enumerate() {
        out[i] = digit(pair[0])? << 4 | digit(pair[1])?;
    }
    Ok(out)
}

macro_rules! id_type {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(try_from = "String", into = "String")]
        pub struct $name(pub [u8; 16]);

        impl $name {
            pub fn random(rng: &mut impl CryptoRngCore) -> Self {
                let mut bytes = [0; 16];
                rng.fill_bytes(&mut bytes);
                Self(bytes)
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.0.iter().try_for_each(|b| write!(f, "{b:02x}"))
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, concat!(stringify!($name), "({})"), self)
            }
        }

        impl FromStr for $name {
            type Err = InvalidId;
            fn from_str(text: &str) -> Result<Self, InvalidId> {
                parse_hex16(text).map(Self)
            }
        }

        impl TryFrom<String> for $name {
            type Error = InvalidId;
            fn try_from(text: String) -> Result<Self, InvalidId> {
                text.parse()
            }
        }

        impl From<$name> for String {
            fn from(id: $name) -> String {
                id.to_string()
            }
        }

        /// On the wire an id is its text form, so its schema is the one
        /// [`parse_hex16`] accepts.
        #[cfg(feature = "openapi")]
        impl utoipa::PartialSchema for $name {
            fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
                utoipa::openapi::ObjectBuilder::new()
                    .schema_type(utoipa::openapi::schema::Type::String)
                    .pattern(Some(ID_PATTERN))
                    .description(Some(ID_DESCRIPTION))
                    .into()
            }
        }

        #[cfg(feature = "openapi")]
        impl utoipa::ToSchema for $name {}
    };
}

/// What [`parse_hex16`] accepts, as a JSON Schema pattern.
#[cfg(feature = "openapi")]
const ID_PATTERN: &str = "^[0-9a-f]{32}$";
#[cfg(feature = "openapi")]
const ID_DESCRIPTION: &str = "128 random bits as 32 lowercase hex digits";

id_type!(
    /// Identifies a service (a relying party) on a server.
    ServiceId
);
id_type!(
    /// Identifies one sign-in attempt. It appears in URLs, so it is not secret.
    ChallengeId
);
id_type!(
    /// Random bits in every token, so no two tokens are ever alike.
    Nonce
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_round_trip_through_hex() {
        let id = ChallengeId([0xab; 16]);
        assert_eq!(id.to_string(), "ab".repeat(16));
        assert_eq!(id.to_string().parse::<ChallengeId>(), Ok(id));
    }

    #[test]
    fn rejects_non_canonical_ids() {
        for bad in ["", "AB".repeat(16).as_str(), &"a".repeat(31), &"a".repeat(33), &"g".repeat(32)] {
            assert_eq!(bad.parse::<ServiceId>(), Err(InvalidId), "{bad:?}");
        }
    }
}

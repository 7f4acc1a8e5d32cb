//! JSON bodies shared by the server and the authenticator, beyond the signed
//! requests of [`crate::RegisterRequest`] and friends.

use serde::{Deserialize, Serialize};

use crate::{ChallengeId, ServiceId, UnixTime};

/// `GET /.well-known/sesame`: the server's identity key, which an
/// authenticator pins on first use.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServerKeyInfo {
    /// The protocol version the server speaks.
    pub version: u8,
    /// The server's public origin: the one in its tokens.
    pub origin: String,
    /// The key's fingerprint (PROTOCOL.md §2.2).
    pub key_id: String,
    /// The Ed25519 public key, 32 bytes in base64url without padding.
    pub public_key: String,
}

/// `POST /api/authenticator/context` with this body asks who is asking.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ContextRequest {
    /// The token text as scanned or pasted.
    pub token: String,
}

/// Who is asking: what the authenticator shows before it signs anything.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChallengeContext {
    pub challenge_id: ChallengeId,
    pub origin: String,
    pub service_id: ServiceId,
    pub service_name: String,
    pub status: Status,
    /// The address of the browser that asked for the challenge.
    pub ip: String,
    /// The browser's `User-Agent`, cut to 256 bytes.
    pub user_agent: String,
    pub requested_at: UnixTime,
    pub expires_at: UnixTime,
    /// What answering does: `sign_in` (register or log in) or `enroll` (add
    /// a key to `account`). Absent means `sign_in`.
    #[serde(default)]
    pub purpose: ChallengePurpose,
    /// For `enroll`, the existing account the new key joins; absent
    /// otherwise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub account: Option<String>,
    /// Whether the answer must carry the number that the page which is
    /// signing in shows (PROTOCOL.md §14). Absent means no.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub number_matching: bool,
}

/// What a challenge is for (PROTOCOL.md §6.2).
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ChallengePurpose {
    /// Answered with register, login, rekey or deny.
    #[default]
    SignIn,
    /// Answered with enroll or deny: it adds a key to an existing account.
    Enroll,
}

/// A challenge's state. It leaves `pending` once, for one of the others.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Pending,
    Completed,
    Denied,
    Expired,
    Cancelled,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Completed => "completed",
            Self::Denied => "denied",
            Self::Expired => "expired",
            Self::Cancelled => "cancelled",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        Some(match text {
            "pending" => Self::Pending,
            "completed" => Self::Completed,
            "denied" => Self::Denied,
            "expired" => Self::Expired,
            "cancelled" => Self::Cancelled,
            _ => return None,
        })
    }

    pub fn is_final(self) -> bool {
        self != Self::Pending
    }
}

/// The answer to a register, login or deny request.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Outcome {
    pub status: Status,
    /// `register` or `login`, for a completed challenge.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub purpose: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub account: Option<String>,
    /// `pending` when a registered key must be confirmed before it signs
    /// anyone in (§11); absent when it is usable at once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_state: Option<String>,
    /// For a login: the keys added to the account since the signing key's
    /// previous sign-in, newest first (PROTOCOL.md §6.4). Absent when there
    /// are none. Read leniently: an entry that does not decode is skipped,
    /// a member that is not a list reads as none, because the sign-in it
    /// reports on has already happened, and entries past the
    /// [`MAX_NEW_KEYS`] first readable ones are ignored.
    #[serde(default, deserialize_with = "new_keys", skip_serializing_if = "Vec::is_empty")]
    pub new_keys: Vec<NewKey>,
}

/// A key that joined an account since one of its authenticators last signed
/// in: what that authenticator tells its owner at its next sign-in
/// (PROTOCOL.md §6.4).
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NewKey {
    /// `sesame` for an authenticator's key, `passkey` for a passkey; kept
    /// as sent, and shown as `sesame` when it is anything else.
    pub kind: String,
    /// What the key is called (§4.1); empty when it has no name.
    #[serde(default)]
    pub label: String,
    /// When the key joined the account: added, or confirmed (§11). At
    /// most [`MAX_SAFE_TIME`], which every JSON reader holds exactly.
    pub added_at: UnixTime,
    /// The IP address of the device that added it; empty when unknown.
    #[serde(default)]
    pub added_from: String,
}

/// A [`NewKey`] reads only from a JSON object: serde would also read one
/// from a list of its members in order, which PROTOCOL.md §6.4 skips.
impl<'de> Deserialize<'de> for NewKey {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        struct Members {
            kind: String,
            #[serde(default)]
            label: String,
            added_at: UnixTime,
            #[serde(default)]
            added_from: String,
        }

        struct Object;

        impl<'de> serde::de::Visitor<'de> for Object {
            type Value = NewKey;

            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("an object with kind and added_at")
            }

            fn visit_map<A: serde::de::MapAccess<'de>>(self, map: A) -> Result<NewKey, A::Error> {
                let Members { kind, label, added_at, added_from } =
                    Members::deserialize(serde::de::value::MapAccessDeserializer::new(map))?;
                if added_at.as_secs() > MAX_SAFE_TIME {
                    return Err(serde::de::Error::custom("added_at is past 2^53 - 1"));
                }
                Ok(NewKey { kind, label, added_at, added_from })
            }
        }

        deserializer.deserialize_map(Object)
    }
}

/// The most keys one login's answer lists (PROTOCOL.md §6.4): the newest.
pub const MAX_NEW_KEYS: usize = 16;

/// The largest `added_at` (2^53 − 1): a time every JSON reader, JavaScript's
/// included, holds exactly.
pub const MAX_SAFE_TIME: u64 = (1 << 53) - 1;

/// `new_keys` as PROTOCOL.md §6.4 reads it: leniently, and no more than
/// [`MAX_NEW_KEYS`] of it.
fn new_keys<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<Vec<NewKey>, D::Error> {
    let mut keys: Vec<NewKey> = lenient_list(deserializer)?;
    keys.truncate(MAX_NEW_KEYS);
    Ok(keys)
}

/// A list whose unreadable entries are skipped, and which reads as empty
/// when it is not a list at all.
fn lenient_list<'de, D, T>(deserializer: D) -> Result<Vec<T>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de>,
{
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Lenient<T> {
        Read(T),
        Skipped(serde::de::IgnoredAny),
    }
    let list = match Lenient::<Vec<Lenient<T>>>::deserialize(deserializer)? {
        Lenient::Read(list) => list,
        Lenient::Skipped(_) => return Ok(Vec::new()),
    };
    Ok(list
        .into_iter()
        .filter_map(|entry| match entry {
            Lenient::Read(entry) => Some(entry),
            Lenient::Skipped(_) => None,
        })
        .collect())
}

/// Every error the HTTP API returns.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    /// A stable, machine-readable code.
    pub error: String,
    /// A sentence for people; it may be reworded.
    pub message: String,
}

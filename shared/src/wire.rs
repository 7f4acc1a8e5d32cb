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

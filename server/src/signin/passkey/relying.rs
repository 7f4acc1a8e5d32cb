//! Sesame as a WebAuthn relying party: its id and origin, the options of
//! each ceremony, and the checks of the browser's answers, through the
//! kanidm project's `webauthn-rs-core`.
//!
//! The relying party id is the host of `--public-url`, and the one origin
//! accepted is that URL's: a passkey is bound to the id it was registered
//! under, so a new public host makes every existing passkey useless
//! (docs/OPERATIONS.md; start-up counts them, [`super::store::foreign`]).
//!
//! The app builds its relying party once, with itself (`App::new`), and
//! every ceremony shares that one ([`super::PasskeyState`]).

use std::{sync::Arc, time::Duration};

use sesame_proto::Origin;
use url::Url;
use webauthn_rs_core::{
    error::WebauthnError,
    proto::{
        AttestationConveyancePreference, AuthenticationResult, AuthenticationState, COSEAlgorithm, Credential,
        CredentialID, PublicKeyCredential, RegisterPublicKeyCredential, RegistrationState, RequestChallengeResponse,
        RequestRegistrationExtensions, UserVerificationPolicy,
    },
    WebauthnCore,
};

use crate::error::{Error, Result};

/// Why a passkey whose signature counter did not move forwards is refused.
pub const COUNTER_REFUSED: &str = "its signature counter did not move forwards, so the passkey may have been copied";

/// How long a ceremony may take, from its start to its finish: the browser
/// is told so, and the stored state expires then.
pub const CEREMONY_SECS: u64 = 5 * 60;

/// The relying party that `--public-url` makes. A clone is the same one:
/// handing it to a request is two counts, not a new library instance.
#[derive(Clone)]
pub struct RelyingParty {
    core: Arc<WebauthnCore>,
    id: Arc<str>,
}

impl std::fmt::Debug for RelyingParty {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RelyingParty").field("id", &self.id).finish()
    }
}

impl RelyingParty {
    /// The relying party whose id is `origin`'s host and whose one accepted
    /// origin is `origin`, exactly (no other port, no subdomain).
    pub fn of(origin: &Origin) -> anyhow::Result<Self> {
        let (url, id) = url_and_id(origin)?;
        let core = WebauthnCore::new_unsafe_experts_only(
            "Sesame",
            &id,
            vec![url],
            Duration::from_secs(CEREMONY_SECS),
            Some(false),
            Some(false),
        );
        Ok(Self { core: Arc::new(core), id: id.into() })
    }

    pub fn id(&self) -> &str {
        &self.id
    }

    /// The options of a registration for the person whose WebAuthn user
    /// handle is `handle` (their account's subject), named `name`, and the
    /// state to keep until its finish. The credential must be discoverable,
    /// so that it can sign in without a name; `exclude` are the account's
    /// passkeys, which the authenticator must not make again.
    pub fn start_registration(
        &self,
        handle: &[u8],
        name: &str,
        require_user_verification: bool,
        exclude: Vec<CredentialID>,
    ) -> Result<(serde_json::Value, RegistrationState)> {
        let builder = self
            .core
            .new_challenge_register_builder(handle, name, name)
            .map_err(internal)?
            .attestation(AttestationConveyancePreference::None)
            // The library's own choice (ES256, RS256): every passkey
            // provider offers ES256.
            .credential_algorithms(COSEAlgorithm::secure_algs())
            .require_resident_key(true)
            .authenticator_attachment(None)
            .user_verification_policy(policy(require_user_verification))
            .reject_synchronised_authenticators(false)
            .exclude_credentials(Some(exclude))
            .hints(None)
            .extensions(Some(RequestRegistrationExtensions { cred_props: Some(true), ..Default::default() }));
        let (options, state) = self.core.generate_challenge_register(builder).map_err(internal)?;
        Ok((serde_json::to_value(options).map_err(|e| internal_text(e.to_string()))?, state))
    }

    /// Checks a registration's answer against its state: the new
    /// credential, to store.
    pub fn finish_registration(
        &self,
        answer: &RegisterPublicKeyCredential,
        state: &RegistrationState,
    ) -> Result<Credential> {
        self.core.register_credential(answer, state, None).map_err(refused)
    }

    /// The options of a sign-in with any of the service's passkeys, chosen
    /// by the browser (discoverable credentials, also for conditional UI),
    /// and the state to keep until its finish.
    pub fn start_sign_in(
        &self,
        require_user_verification: bool,
    ) -> Result<(RequestChallengeResponse, AuthenticationState)> {
        let builder = self
            .core
            .new_challenge_authenticate_builder(Vec::new(), Some(policy(require_user_verification)))
            .map_err(internal)?
            .extensions(None)
            .allow_backup_eligible_upgrade(true)
            .hints(None);
        self.core.generate_challenge_authenticate(builder).map_err(internal)
    }

    /// Checks a sign-in's answer made with `credential`, the passkey its
    /// credential id names. The library refuses a counter that does not
    /// move forwards (a cloned authenticator); the caller stores the
    /// credential only if no other sign-in has moved it meanwhile.
    pub fn finish_sign_in(
        &self,
        answer: &PublicKeyCredential,
        mut state: AuthenticationState,
        credential: Credential,
    ) -> Result<AuthenticationResult> {
        state.set_allowed_credentials(vec![credential]);
        self.core.authenticate_credential(answer, &state).map_err(refused)
    }
}

/// The relying party id of `origin`: its host, without a port.
pub fn rp_id(origin: &Origin) -> Result<String> {
    Ok(url_and_id(origin)?.1)
}

/// `origin` as a URL, and its host. An [`Origin`] is checked to be one, but
/// by rules of its own, which are not the URL parser's.
fn url_and_id(origin: &Origin) -> anyhow::Result<(Url, String)> {
    let url = Url::parse(origin.as_str()).map_err(|e| anyhow::anyhow!("the public URL {origin} is not a URL: {e}"))?;
    let id = url.host_str().map(str::to_owned).ok_or_else(|| anyhow::anyhow!("the public URL {origin} has no host"))?;
    Ok((url, id))
}

fn policy(require_user_verification: bool) -> UserVerificationPolicy {
    if require_user_verification {
        UserVerificationPolicy::Required
    } else {
        UserVerificationPolicy::Preferred
    }
}

fn internal(e: WebauthnError) -> Error {
    internal_text(e.to_string())
}

fn internal_text(e: String) -> Error {
    Error::Internal(anyhow::anyhow!("webauthn: {e}"))
}

/// What a person, or a client's developer, is told of an answer that does
/// not verify: which check failed, in words of our own.
fn refused(e: WebauthnError) -> Error {
    tracing::info!(error = %e, "a passkey answer was refused");
    Error::PasskeyRefused(match e {
        WebauthnError::MismatchedChallenge => "it answers another request",
        WebauthnError::InvalidRPOrigin => "it was made for another origin",
        WebauthnError::InvalidRPIDHash => "it was made for another relying party id",
        WebauthnError::InvalidClientDataType => "its client data is of the wrong type",
        WebauthnError::UserNotPresent => "the authenticator saw no user",
        WebauthnError::UserNotVerified => "this service requires user verification (a PIN or biometrics)",
        WebauthnError::CredentialPossibleCompromise => COUNTER_REFUSED,
        WebauthnError::CredentialNotFound => "it was made with another passkey",
        WebauthnError::ParseCBORFailure(_) | WebauthnError::ParseNOMFailure => "its CBOR does not decode",
        WebauthnError::ParseJSONFailure(_) | WebauthnError::ParseBase64Failure(_) => "its client data does not decode",
        WebauthnError::CredentialBackupEligibilityInconsistent | WebauthnError::CredentialMayNotBeHardwareBound => {
            "its backup flags changed in a way a passkey's cannot"
        }
        WebauthnError::CredentialExcludedFromRequest => "this passkey is already on the account",
        _ => "its signature or its data do not verify",
    })
}

//! Deciding whether to believe a token (docs/PROTOCOL.md §3.4 and §5): parse
//! it, find the server key pinned for its origin (pinning on first use),
//! verify the signature with that key and check the token's lifetime.

use sesame_proto::{Origin, ServerPublicKey, Token, UnixTime, UnverifiedToken};

use crate::{remote::Remote, store::Store, tls::ExtraRoots, ui::local_time, Error};

/// Allowance for a clock that differs from the server's.
pub(crate) const LEEWAY_SECS: u64 = 60;

/// Reads `text`, a bare token or a link to the web authenticator
/// (PROTOCOL.md §3.6), and refuses origins that are not safe to talk to.
pub(crate) fn parse(text: &str, insecure_http: bool) -> Result<UnverifiedToken, Error> {
    let token = UnverifiedToken::read(text)?;
    let origin = token.claimed_origin();
    if !origin.is_https() && !origin.is_loopback() && !insecure_http {
        return Err(Error::InsecureOrigin(origin.to_string()));
    }
    Ok(token)
}

/// The key pinned for the token's origin. If there is none yet, the key is
/// fetched from the origin itself, never taken from the token; it is stored
/// only once it has verified this token, so bad input pins nothing.
pub(crate) async fn verify(
    store: &Store,
    roots: &ExtraRoots,
    unverified: UnverifiedToken,
    now: UnixTime,
) -> Result<Token, Error> {
    let origin = unverified.claimed_origin().clone();
    let token = match store.pin(&origin).await? {
        Some(pin) => {
            if pin.public_key.key_id() != unverified.claimed_key_id() {
                return Err(Error::PinnedKeyChanged {
                    origin: origin.to_string(),
                    pinned_at: local_time(pin.pinned_at),
                });
            }
            unverified.verify(&pin.public_key)?
        }
        None => {
            let key = fetch_identity(&origin, roots).await?;
            let token = unverified.verify(&key)?;
            let pin = store.add_pin(&origin, &key, now).await?;
            if pin.public_key != key {
                // Another run pinned a different key meanwhile: believe the
                // pin, as a later run would.
                return Err(Error::PinnedKeyChanged {
                    origin: origin.to_string(),
                    pinned_at: local_time(pin.pinned_at),
                });
            }
            token
        }
    };
    token.check_lifetime(now, LEEWAY_SECS)?;
    Ok(token)
}

/// Fetches `{origin}/.well-known/sesame` and checks that it speaks for this
/// origin and that its key id is the id of its key.
async fn fetch_identity(origin: &Origin, roots: &ExtraRoots) -> Result<ServerPublicKey, Error> {
    let info = Remote::new(origin, roots)?.identity().await?;
    let bad = |reason: &str| Error::BadIdentity { origin: origin.to_string(), reason: reason.to_owned() };
    if info.version != 1 {
        return Err(bad("it speaks another protocol version"));
    }
    if info.origin != origin.as_str() {
        return Err(bad("its identity document names another origin"));
    }
    let key = ServerPublicKey::from_base64(&info.public_key).map_err(|_| bad("its public key is not valid"))?;
    if key.key_id().to_string() != info.key_id {
        return Err(bad("its key id does not match its key"));
    }
    Ok(key)
}

#[cfg(test)]
mod tests;

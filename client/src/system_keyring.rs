//! The operating system's keyring: the Secret Service (GNOME Keyring,
//! KeePassXC…) on Linux and the BSDs, the Keychain on macOS, the Credential
//! Manager on Windows. It keeps the random key that seals a keystore's
//! account keys, so that nobody types a passphrase (docs: README, "Keys at
//! rest").
//!
//! One entry per keystore: the service [`SERVICE`] and, as the user name,
//! the keystore's random id, which the keystore records. Two keystores
//! never share an entry, and a keystore that is moved or renamed finds its
//! own.
//!
//! The `keyring` crate's calls block, and its Secret Service client runs a
//! Tokio runtime of its own that must not be started from inside another:
//! each call runs on a thread of its own.

use zeroize::Zeroizing;

/// The service name of every entry.
pub(crate) const SERVICE: &str = "Sesame authenticator";

/// Why the keyring gave no key.
#[derive(Debug)]
pub(crate) enum Failure {
    /// The keyring answered, and holds no entry for this keystore.
    Missing,
    /// The keyring is locked, or refused access (a prompt was dismissed).
    Locked(String),
    /// There is no keyring to ask: no session bus, no Secret Service, or the
    /// platform failed.
    Unavailable(String),
}

/// The keyring's own words, on one line, for the end of an error message.
fn reason(error: &keyring::Error) -> String {
    use std::error::Error as _;
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let more = cause.to_string();
        if !text.contains(&more) {
            text = format!("{text}: {more}");
        }
        source = cause.source();
    }
    text
}

fn failure(error: keyring::Error) -> Failure {
    match error {
        keyring::Error::NoEntry => Failure::Missing,
        keyring::Error::NoStorageAccess(_) => Failure::Locked(reason(&error)),
        other => Failure::Unavailable(reason(&other)),
    }
}

/// Runs `call` on the entry of `keystore_id`, on a thread of its own.
async fn with_entry<T: Send + 'static>(
    keystore_id: &str,
    call: impl FnOnce(&keyring::Entry) -> keyring::Result<T> + Send + 'static,
) -> Result<T, Failure> {
    let user = keystore_id.to_owned();
    let (send, receive) = tokio::sync::oneshot::channel();
    std::thread::Builder::new()
        .name("system-keyring".into())
        .spawn(move || {
            let result = keyring::Entry::new(SERVICE, &user).and_then(|entry| call(&entry)).map_err(failure);
            let _ = send.send(result);
        })
        .map_err(|e| Failure::Unavailable(format!("cannot start a thread: {e}")))?;
    receive.await.map_err(|_| Failure::Unavailable("the keyring's client stopped".into()))?
}

/// The text stored for `keystore_id`.
pub(crate) async fn load(keystore_id: &str) -> Result<Zeroizing<String>, Failure> {
    with_entry(keystore_id, |entry| entry.get_password().map(Zeroizing::new)).await
}

/// Stores `text` for `keystore_id`, replacing any entry it had.
pub(crate) async fn store(keystore_id: &str, text: Zeroizing<String>) -> Result<(), Failure> {
    with_entry(keystore_id, move |entry| entry.set_password(&text)).await
}

/// Deletes the entry of `keystore_id`; an entry already gone is no failure.
pub(crate) async fn delete(keystore_id: &str) -> Result<(), Failure> {
    match with_entry(keystore_id, |entry| entry.delete_credential()).await {
        Err(Failure::Missing) => Ok(()),
        other => other,
    }
}

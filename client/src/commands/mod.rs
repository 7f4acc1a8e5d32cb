//! The commands, and what they share: the open keystore, the console, and the
//! steps every approval takes (trust the token, unlock, ask who is asking).

pub(crate) mod approve;
pub(crate) mod backup;
pub(crate) mod manage;
pub(crate) mod scan;

use std::{cell::RefCell, io, path::PathBuf};

use sesame_proto::{wire::ChallengeContext, Token};

use crate::{
    remote::Remote,
    store::{Account, Keyring, PlainBecause, Store},
    tls::ExtraRoots,
    trust,
    ui::{self, Console, Output},
    Error,
};

/// Everything a command works with.
#[derive(Debug)]
pub(crate) struct App {
    pub(crate) store: Store,
    pub(crate) db_path: PathBuf,
    pub(crate) console: Console,
    pub(crate) out: Output,
    pub(crate) insecure_http: bool,
    /// `--ca-file`: trusted for HTTPS on top of the system's store.
    pub(crate) roots: ExtraRoots,
    /// The line that says a server's key was pinned on first contact, while
    /// it waits for the command to succeed: without a terminal, a failure
    /// keeps its single line on stderr.
    pub(crate) first_contact: RefCell<Option<String>>,
}

/// Parses the token and checks it against the pinned server key. The
/// command line and the window both start every approval here.
pub(crate) async fn trusted(
    store: &Store,
    roots: &ExtraRoots,
    insecure_http: bool,
    text: &str,
) -> Result<(Token, Remote), Error> {
    let unverified = trust::parse(text, insecure_http)?;
    let token = trust::verify(store, roots, unverified, ui::now()).await?;
    let remote = Remote::new(&token.claims().origin, roots)?;
    Ok((token, remote))
}

/// Asks the server who is asking, and checks the answer is about this very
/// token and still pending.
pub(crate) async fn context(token: &Token, remote: &Remote) -> Result<ChallengeContext, Error> {
    let context = remote.context(token.as_str()).await?;
    let claims = token.claims();
    if context.challenge_id != claims.challenge_id
        || context.service_id != claims.service_id
        || context.origin != claims.origin.as_str()
    {
        return Err(Error::BadResponse {
            origin: claims.origin.to_string(),
            reason: "the request details are for another sign-in".into(),
        });
    }
    if context.status.is_final() {
        return Err(Error::AlreadyFinal(context.status.as_str()));
    }
    Ok(context)
}

impl App {
    /// Parses the token and checks it against the pinned server key. The
    /// first time a server is met, its key is pinned, and that is said in
    /// one line on stderr: at a terminal at once, before anything is asked,
    /// so that the person learns it also when they then answer no;
    /// otherwise with the result.
    async fn trusted(&self, text: &str) -> Result<(Token, Remote), Error> {
        let origin = trust::parse(text, self.insecure_http)?.claimed_origin().clone();
        let known = self.store.pin(&origin).await?.is_some();
        let trusted = trusted(&self.store, &self.roots, self.insecure_http, text).await?;
        if let (false, Some(pin)) = (known, self.store.pin(&origin).await?) {
            let line = format!(
                "First contact with {origin}: its key {} is now pinned, and any other key will be refused \
                 (sesame unpin {origin} forgets it).",
                pin.public_key.key_id(),
                origin = ui::safe(origin.as_str()),
            );
            if self.console.is_interactive() {
                eprintln!("{line}");
            } else {
                *self.first_contact.borrow_mut() = Some(line);
            }
        }
        Ok(trusted)
    }

    /// Unlocks the keystore, asking for the passphrase only if one is set.
    async fn unlock(&self) -> Result<Keyring, Error> {
        self.store.unlock(|| self.console.passphrase("Passphrase: ")).await
    }

    /// Asks the server who is asking, checks the answer is about this very
    /// token and still pending, and shows it.
    async fn context(&self, token: &Token, remote: &Remote, accounts: &[Account]) -> Result<ChallengeContext, Error> {
        let context = context(token, remote).await?;
        // A person at a terminal sees the details before anything is signed.
        // Scripts get them in the result instead, so that a failure stays one
        // line on stderr.
        if self.console.is_interactive() || io::IsTerminal::is_terminal(&io::stderr()) {
            ui::show_context(&context, accounts, ui::now());
        }
        Ok(context)
    }

    /// Says once per keystore that keys are stored unencrypted, and why:
    /// the keys of a new keystore are encrypted with a key in the system
    /// keyring, so this is said only where there was none to reach, where
    /// `--no-keyring` forbade it, or of a keystore made before.
    async fn notice_unencrypted(&self, keyring: &Keyring) -> Result<(), Error> {
        if !matches!(keyring, Keyring::Plain) || !self.store.first_notice("unencrypted_keys", ui::now()).await? {
            return Ok(());
        }
        let path = self.db_path.display();
        match self.store.plain_because() {
            Some(PlainBecause::NoKeyring(reason)) => eprintln!(
                "note: your keys are stored unencrypted in {path}: no system keyring could be reached ({}); to encrypt them, set a passphrase with: sesame passphrase (or, where a keyring is available, run: sesame keyring)",
                crate::error::one_line(&reason)
            ),
            Some(PlainBecause::OptedOut) => eprintln!(
                "note: your keys are stored unencrypted in {path} (--no-keyring); to encrypt them, set a passphrase with: sesame passphrase"
            ),
            None => eprintln!(
                "note: your keys are stored unencrypted in {path}; to encrypt them with a key kept in the system keyring, run: sesame keyring (or set a passphrase with: sesame passphrase)"
            ),
        }
        Ok(())
    }
}

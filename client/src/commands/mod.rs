//! The commands, and what they share: the open keystore, the console, and the
//! steps every approval takes (trust the token, unlock, ask who is asking).

pub(crate) mod approve;
pub(crate) mod backup;
mod manage;
pub(crate) mod scan;

use std::{
    io::{self, Read},
    path::PathBuf,
};

use sesame_proto::{wire::ChallengeContext, Token};

use crate::{
    opt::{Cli, Command},
    remote::Remote,
    store::{Account, Keyring, Store},
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
}

/// Runs one command line.
pub async fn run(cli: Cli) -> Result<(), Error> {
    let db_path = match cli.global.db {
        Some(path) => path,
        None => Store::default_path()?,
    };
    // Read before anything else, so that a bad file fails every command the
    // same way, not only the first one that goes on the network.
    let roots = ExtraRoots::from_option(cli.global.ca_file.as_ref())?;
    // `process` without a token reads it from stdin, unless stdin is the
    // terminal: then the user is asked to paste it.
    let mut stdin_token = None;
    if let Command::Process { token: None } = &cli.command {
        if !io::IsTerminal::is_terminal(&io::stdin()) {
            let mut text = String::new();
            io::stdin().take(64 * 1024).read_to_string(&mut text)?;
            stdin_token = Some(text);
        }
    }
    let console = Console::detect(stdin_token.is_some());
    let store = Store::open(&db_path).await?;
    let out = Output { json: cli.global.json };
    let mut app = App { store, db_path, console, out, insecure_http: cli.global.insecure_http, roots };
    let result = dispatch(&mut app, cli.command, stdin_token).await;
    app.store.close().await;
    result
}

async fn dispatch(app: &mut App, command: Command, stdin_token: Option<String>) -> Result<(), Error> {
    match command {
        Command::Process { token } => {
            let text = match token.or(stdin_token) {
                Some(text) => text,
                None => app.console.ask("Paste the token: ")?,
            };
            approve::process(app, &text).await
        }
        Command::Register { token, name, label, number, yes } => {
            approve::register(app, &token, &name, label.as_deref(), number, yes).await
        }
        Command::Login { token, account, rekey, number, yes } => {
            approve::login(app, &token, account.as_deref(), rekey, number, yes).await
        }
        Command::Enroll { token, label, yes } => approve::enroll(app, &token, label.as_deref(), yes).await,
        Command::Deny { token } => approve::deny(app, &token).await,
        Command::Scan { images, name, account, enroll, number, yes } => {
            let text = scan::token_from_images(&images)?;
            match (name, account) {
                _ if enroll => approve::enroll(app, &text, None, yes).await,
                (Some(name), _) => approve::register(app, &text, &name, None, number, yes).await,
                (None, Some(account)) => approve::login(app, &text, Some(&account), false, number, yes).await,
                (None, None) => approve::process(app, &text).await,
            }
        }
        Command::Accounts => manage::accounts(app).await,
        Command::Remove { account, service, origin } => {
            manage::remove(app, &account, &service, origin.as_deref()).await
        }
        Command::Passphrase => manage::passphrase(app).await,
        Command::Unpin { origin } => manage::unpin(app, &origin).await,
        Command::Export { out, force } => backup::export(app, &out, force).await,
        Command::Import { file, replace } => backup::import(app, &file, replace).await,
        Command::Ui(options) => crate::window::run(app, &options).await,
    }
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
    /// Parses the token and checks it against the pinned server key.
    async fn trusted(&self, text: &str) -> Result<(Token, Remote), Error> {
        trusted(&self.store, &self.roots, self.insecure_http, text).await
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

    /// Says once per keystore that keys are stored unencrypted.
    async fn notice_unencrypted(&self, keyring: &Keyring) -> Result<(), Error> {
        if matches!(keyring, Keyring::Plain) && self.store.first_notice("unencrypted_keys", ui::now()).await? {
            eprintln!(
                "note: your keys are stored unencrypted in {}; to encrypt them, set a passphrase with: sesame passphrase",
                self.db_path.display()
            );
        }
        Ok(())
    }
}

//! One command line, run: the keystore opened, the command dispatched to
//! the commands or to the window, and the keystore closed.
//!
//! It stands above both front ends: the window uses the commands' steps, and
//! neither knows this dispatcher.

use std::{
    cell::RefCell,
    io::{self, Read},
};

use crate::{
    commands::{approve, backup, manage, scan, App},
    opt::{Cli, Command},
    store::Store,
    tls::ExtraRoots,
    ui::{Console, Output},
    window, Error,
};

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
    let store = Store::open(&db_path).await?.with_system_keyring(!cli.global.no_keyring);
    let out = Output { json: cli.global.json };
    let mut app = App {
        store,
        db_path,
        console,
        out,
        insecure_http: cli.global.insecure_http,
        roots,
        first_contact: RefCell::default(),
    };
    let result = dispatch(&mut app, cli.command, stdin_token).await;
    app.store.close().await;
    result
}

async fn dispatch(app: &mut App, command: Command, stdin_token: Option<String>) -> Result<(), Error> {
    match command {
        Command::Process { token } => {
            let text = match token.or(stdin_token) {
                Some(text) => text,
                None => app.console.ask_token("Paste the token: ")?,
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
        Command::Keyring => manage::keyring(app).await,
        Command::Unpin { origin } => manage::unpin(app, &origin).await,
        Command::Export { out, force } => backup::export(app, &out, force).await,
        Command::Import { file, replace } => backup::import(app, &file, replace).await,
        Command::Ui(options) => window::run(app, &options).await,
    }
}

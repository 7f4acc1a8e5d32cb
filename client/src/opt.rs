//! Command-line options. Each `///` doc is that option's `--help`; the code
//! that acts on them lives in `commands/`.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};
use sesame_proto::MatchNumber;

/// Sesame's authenticator: holds your keys and approves sign-ins.
#[derive(Debug, Parser)]
#[command(name = "sesame", version, propagate_version = true)]
pub struct Cli {
    #[command(flatten)]
    pub global: Global,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Args)]
pub struct Global {
    /// The keystore file [default: sesame/sesame.db in your data directory]
    #[arg(long, global = true, env = "SESAME_DB", value_name = "PATH")]
    pub db: Option<PathBuf>,
    /// Print results (and errors) as JSON on stdout, for scripts
    #[arg(long, global = true)]
    pub json: bool,
    /// Accept plain-HTTP origins that are not loopback (unsafe: anyone on
    /// the network could read and change the traffic)
    #[arg(long, global = true)]
    pub insecure_http: bool,
    /// Also trust the certificate authorities in this PEM file for HTTPS, for
    /// this run (the system's trust store, or SSL_CERT_FILE and
    /// SSL_CERT_DIR, is always trusted)
    #[arg(long, global = true, env = "SESAME_CA_FILE", value_name = "PATH")]
    pub ca_file: Option<PathBuf>,
    /// Never use the system keyring (for scripts and CI): a new keystore's
    /// keys are then stored unencrypted unless you set a passphrase, and a
    /// keystore whose key is in the keyring cannot be opened
    #[arg(long, global = true, env = "SESAME_NO_KEYRING", value_parser = clap::builder::FalseyValueParser::new())]
    pub no_keyring: bool,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Show who is asking, then log in, register, deny or quit
    Process {
        /// The token from the login page; read from stdin when absent
        token: Option<String>,
    },
    /// Register a new account with a fresh key
    Register {
        /// The token from the login page
        token: String,
        /// The account name to register
        #[arg(long)]
        name: String,
        /// What to call this authenticator on the server's pages
        /// [default: this computer's host name]
        #[arg(long)]
        label: Option<String>,
        /// The number the page that is signing in shows, when its service
        /// asks for one [default: ask]
        #[arg(long, value_name = "N")]
        number: Option<MatchNumber>,
        /// Do not ask for confirmation
        #[arg(long, short)]
        yes: bool,
    },
    /// Log in with an account you registered before
    Login {
        /// The token from the login page
        token: String,
        /// The account to log in as [default: your only account at the service]
        #[arg(long)]
        account: Option<String>,
        /// Also replace the account's key with a new one, in the same answer;
        /// the old key no longer signs in afterwards
        #[arg(long)]
        rekey: bool,
        /// The number the page that is signing in shows, when its service
        /// asks for one [default: ask]
        #[arg(long, value_name = "N")]
        number: Option<MatchNumber>,
        /// Do not ask for confirmation
        #[arg(long, short)]
        yes: bool,
    },
    /// Add this authenticator to an account you already have, with the
    /// token of its "Add another authenticator" page or of a recovery link.
    /// Confirm the code it prints on that page
    Enroll {
        /// The token from the page
        token: String,
        /// What to call this authenticator on the server's pages
        /// [default: this computer's host name]
        #[arg(long)]
        label: Option<String>,
        /// Do not ask for confirmation
        #[arg(long, short)]
        yes: bool,
    },
    /// Refuse a sign-in request
    Deny {
        /// The token from the login page
        token: String,
    },
    /// Read the token from a photo or screenshot of the QR code (PNG or JPEG)
    Scan {
        /// Image files; the first Sesame QR code found is used
        #[arg(required = true, value_name = "IMAGE")]
        images: Vec<PathBuf>,
        /// Register a new account with this name instead of asking
        #[arg(long, conflicts_with = "account")]
        name: Option<String>,
        /// Log in as this account instead of asking
        #[arg(long, conflicts_with = "enroll")]
        account: Option<String>,
        /// Add this authenticator to the account the token names instead of
        /// asking
        #[arg(long, conflicts_with = "name")]
        enroll: bool,
        /// The number the page that is signing in shows, when its service
        /// asks for one (with --name or --account) [default: ask]
        #[arg(long, value_name = "N")]
        number: Option<MatchNumber>,
        /// Do not ask for confirmation (with --name, --account or --enroll)
        #[arg(long, short)]
        yes: bool,
    },
    /// List your accounts
    Accounts,
    /// Delete the local key of an account (the server keeps the account)
    Remove {
        /// The account name
        account: String,
        /// The service, by id or by name
        #[arg(long, value_name = "SERVICE")]
        service: String,
        /// The server's origin, when the service name alone is ambiguous
        #[arg(long)]
        origin: Option<String>,
    },
    /// Encrypt your keys with a passphrase, typed at each use, instead of
    /// the key kept in the system keyring; or change the passphrase. Scripts
    /// pass the current one in SESAME_PASSPHRASE and the new one in
    /// SESAME_NEW_PASSPHRASE (or, the first time, in SESAME_PASSPHRASE)
    Passphrase,
    /// Encrypt your keys with a random key kept in the system keyring (the
    /// Secret Service, the Keychain or the Credential Manager), so that no
    /// passphrase is typed: for a keystore made unencrypted, or with a
    /// passphrase, before there was a keyring. New keystores start so
    Keyring,
    /// Forget the server key pinned for an origin, after you have checked
    /// that its change is genuine
    Unpin {
        /// The origin, e.g. https://login.example.com
        origin: String,
    },
    /// Write every account key and pinned server key to a file, encrypted
    /// with a backup passphrase in the age format (`age -d` opens it too).
    /// The passphrase comes from SESAME_BACKUP_PASSPHRASE, or is typed twice
    Export {
        /// The backup file to write (mode 0600)
        #[arg(long, value_name = "FILE")]
        out: PathBuf,
        /// Overwrite FILE if it exists
        #[arg(long)]
        force: bool,
    },
    /// Merge a backup made by `sesame export` into this keystore, all or
    /// nothing. The passphrase comes from SESAME_BACKUP_PASSPHRASE, or is
    /// typed
    Import {
        /// The backup file
        #[arg(value_name = "FILE")]
        file: PathBuf,
        /// Where the backup holds another key for an account (or another
        /// pinned server key) than this keystore, take the backup's; without
        /// it, any such difference imports nothing
        #[arg(long)]
        replace: bool,
    },
    /// Open the authenticator's window: a local web page to paste, drop or
    /// scan tokens, approve sign-ins and look after your accounts
    Ui(UiOptions),
}

#[derive(Debug, Args)]
pub struct UiOptions {
    /// The address to serve the window on [default: 127.0.0.1 on a free port]
    #[arg(long, env = "SESAME_UI_LISTEN", value_name = "ADDR")]
    pub listen: Option<std::net::SocketAddr>,
    /// Allow --listen on an address other than loopback. Anyone who can
    /// reach it and learns the printed address can use your keys, and
    /// browsers allow the camera only on loopback or HTTPS
    #[arg(long)]
    pub allow_non_loopback: bool,
    /// Print the address without opening it in the default browser
    #[arg(long, env = "SESAME_UI_NO_BROWSER")]
    pub no_browser: bool,
}

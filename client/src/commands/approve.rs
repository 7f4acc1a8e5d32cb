//! Answering a token: `process`, `register`, `login` (and its `--rekey`),
//! `enroll` and `deny`.
//!
//! Every path trusts the token first (pinned key, signature, lifetime), then
//! shows who is asking, and only then signs. Local problems (no such account,
//! no terminal to confirm, wrong passphrase) are found before the server is
//! asked anything.

use rand::rngs::OsRng;
use serde_json::json;
use sesame_proto::{
    wire::{ChallengeContext, ChallengePurpose, Outcome},
    AccountKey, AccountName, ConfirmationCode, DenyRequest, EnrollRequest, KeyLabel, LoginRequest, MatchNumber,
    RegisterRequest, RekeyRequest, Token,
};

use super::App;
use crate::{
    remote::{Failure, Remote},
    store::{Account, Keyring, Slot, Store},
    ui::{self, safe},
    Error,
};

/// What an answer achieved: the JSON result of `--json`, and the same in
/// words. The command line prints it; the window shows it.
#[derive(Debug)]
pub(crate) struct Answered {
    pub(crate) json: serde_json::Value,
    pub(crate) text: String,
    /// Warnings that need the person, apart from the result: the keys that
    /// joined the account since this authenticator last signed in.
    pub(crate) notices: Vec<String>,
}

impl App {
    fn print(&self, answered: &Answered) {
        if let Some(line) = self.first_contact.take() {
            eprintln!("{line}");
        }
        self.out.result(&answered.json, &answered.text);
        if !self.out.json {
            for notice in &answered.notices {
                println!("{notice}");
            }
        }
    }
}

/// The JSON result every approval prints with `--json`.
fn result_json(
    token: &Token,
    context: &ChallengeContext,
    outcome: &Outcome,
    account: Option<&str>,
) -> serde_json::Value {
    let claims = token.claims();
    json!({
        "status": outcome.status.as_str(),
        "purpose": outcome.purpose,
        "account": account.or(outcome.account.as_deref()),
        "origin": claims.origin.as_str(),
        "service_id": claims.service_id.to_string(),
        "service_name": claims.service_name.as_str(),
        "challenge_id": claims.challenge_id.to_string(),
        "ip": context.ip,
        "user_agent": context.user_agent,
        "requested_at": context.requested_at.as_secs(),
    })
}

/// A register, login or rekey answers only a sign-in challenge.
pub(crate) fn expect_sign_in(context: &ChallengeContext) -> Result<(), Error> {
    match (context.purpose, &context.account) {
        (ChallengePurpose::SignIn, _) => Ok(()),
        (ChallengePurpose::Enroll, account) => {
            Err(Error::EnrollmentToken { account: safe(account.as_deref().unwrap_or_default()) })
        }
    }
}

/// The number an answer signs (PROTOCOL.md §14): the one the person gave,
/// when the challenge asks for one. Refused locally either way it does not
/// fit, so that no answer is sent that the server must refuse.
/// `how` says how to give one, where none was.
pub(crate) fn matched_number(
    context: &ChallengeContext,
    given: Option<MatchNumber>,
    how: &'static str,
) -> Result<Option<MatchNumber>, Error> {
    match (context.number_matching, given) {
        (true, Some(number)) => Ok(Some(number)),
        (true, None) => Err(Error::NumberNeeded(how)),
        (false, Some(_)) => Err(Error::NumberNotAsked),
        (false, None) => Ok(None),
    }
}

impl App {
    /// [`matched_number`], asking the person at the terminal when the
    /// challenge wants a number and none was given. Nothing is suggested:
    /// the number must come from the page that is signing in.
    fn number(&mut self, context: &ChallengeContext, given: Option<MatchNumber>) -> Result<Option<MatchNumber>, Error> {
        if context.number_matching && given.is_none() && self.console.is_interactive() {
            let typed = self.console.ask("Type the number shown on the page that is signing in: ")?;
            return Ok(Some(typed.parse()?));
        }
        matched_number(context, given, "pass it with --number")
    }
}

/// The account an enrollment challenge adds this authenticator to.
pub(crate) fn enroll_account(context: &ChallengeContext) -> Result<AccountName, Error> {
    match (context.purpose, &context.account) {
        (ChallengePurpose::Enroll, Some(account)) => Ok(AccountName::parse(account)?),
        (ChallengePurpose::Enroll, None) => Err(Error::BadResponse {
            origin: context.origin.clone(),
            reason: "an enrollment request that names no account".into(),
        }),
        (ChallengePurpose::SignIn, _) => Err(Error::NotAnEnrollment),
    }
}

/// The label a new key proposes: the one given, else this machine's host
/// name when it is a valid label, else none.
pub(crate) fn key_label(given: Option<&str>) -> Result<Option<KeyLabel>, Error> {
    if let Some(given) = given {
        return Ok(Some(KeyLabel::parse(given)?));
    }
    let host =
        std::fs::read_to_string("/proc/sys/kernel/hostname").or_else(|_| std::fs::read_to_string("/etc/hostname"));
    Ok(host.ok().and_then(|h| KeyLabel::parse(h.trim()).ok()))
}

pub(crate) async fn register(
    app: &mut App,
    text: &str,
    name: &str,
    label: Option<&str>,
    number: Option<MatchNumber>,
    yes: bool,
) -> Result<(), Error> {
    let name = AccountName::parse(name)?;
    let label = key_label(label)?;
    if !yes && !app.console.is_interactive() {
        return Err(Error::NeedsConfirmation("sesame register"));
    }
    let (token, remote) = app.trusted(text).await?;
    let accounts = app.store.accounts_at(&token.claims().origin, &token.claims().service_id).await?;
    if accounts.iter().any(|a| a.name == name.as_str()) {
        return Err(Error::LocalAccountExists {
            account: name.to_string(),
            service: token.claims().service_name.to_string(),
        });
    }
    let keyring = app.unlock().await?;
    let context = app.context(&token, &remote, &accounts).await?;
    expect_sign_in(&context)?;
    if !yes && !app.console.confirm(&format!("Register the new account {} here?", safe(name.as_str())))? {
        return Err(Error::Cancelled);
    }
    let number = app.number(&context, number)?;
    let new = NewKey::Register(label.as_ref());
    let answered = submit_new_key(&app.store, &token, &remote, &context, &keyring, &name, new, number).await?;
    // Only after success: a failure keeps its single line on stderr.
    app.notice_unencrypted(&keyring).await?;
    app.print(&answered);
    Ok(())
}

pub(crate) async fn enroll(app: &mut App, text: &str, label: Option<&str>, yes: bool) -> Result<(), Error> {
    if !yes && !app.console.is_interactive() {
        return Err(Error::NeedsConfirmation("sesame enroll"));
    }
    let label = key_label(label)?;
    let (token, remote) = app.trusted(text).await?;
    let accounts = app.store.accounts_at(&token.claims().origin, &token.claims().service_id).await?;
    let keyring = app.unlock().await?;
    let context = app.context(&token, &remote, &accounts).await?;
    let name = enroll_account(&context)?;
    if accounts.iter().any(|a| a.name == name.as_str()) {
        return Err(Error::LocalAccountExists {
            account: name.to_string(),
            service: token.claims().service_name.to_string(),
        });
    }
    let question = format!(
        "Add this authenticator to the account {} at {}?",
        safe(name.as_str()),
        safe(token.claims().service_name.as_str())
    );
    if !yes && !app.console.confirm(&question)? {
        return Err(Error::Cancelled);
    }
    let number = app.number(&context, None)?;
    let new = NewKey::Enroll(label.as_ref());
    let answered = submit_new_key(&app.store, &token, &remote, &context, &keyring, &name, new, number).await?;
    app.notice_unencrypted(&keyring).await?;
    app.print(&answered);
    Ok(())
}

/// What a new key is for.
#[derive(Debug, Clone, Copy)]
pub(crate) enum NewKey<'a> {
    /// A new account (PROTOCOL.md §6.3).
    Register(Option<&'a KeyLabel>),
    /// Another authenticator for an existing account (§12).
    Enroll(Option<&'a KeyLabel>),
}

/// Stores the key before the server hears of it, so that a crash can never
/// leave an account on the server whose key is lost; takes it back out when
/// the server refuses, so that a refused registration leaves nothing.
#[allow(clippy::too_many_arguments)] // each is one part of what is signed or where it is kept
pub(crate) async fn submit_new_key(
    store: &Store,
    token: &Token,
    remote: &Remote,
    context: &ChallengeContext,
    keyring: &Keyring,
    name: &AccountName,
    new: NewKey<'_>,
    number: Option<MatchNumber>,
) -> Result<Answered, Error> {
    let claims = token.claims();
    let slot = Slot { origin: &claims.origin, service_id: &claims.service_id, account: name };
    let key = AccountKey::generate(&mut OsRng);
    store.insert_unconfirmed(keyring, slot, &claims.service_name, &key, ui::now()).await?;
    let sent = match new {
        NewKey::Register(label) => {
            remote.register(&RegisterRequest::sign_matched(token, name, &key, number).with_label(label)).await
        }
        NewKey::Enroll(label) => remote.enroll(&EnrollRequest::sign_matched(token, name, &key, label, number)).await,
    };
    match sent {
        Ok(outcome) => {
            store.confirm(slot, ui::now()).await?;
            let mut json = result_json(token, context, &outcome, Some(name.as_str()));
            let registered = match new {
                NewKey::Register(_) => format!(
                    "Registered {} at {} ({})",
                    safe(name.as_str()),
                    safe(claims.service_name.as_str()),
                    claims.origin
                ),
                NewKey::Enroll(_) => format!(
                    "Added this authenticator to {} at {} ({})",
                    safe(name.as_str()),
                    safe(claims.service_name.as_str()),
                    claims.origin
                ),
            };
            let text = if outcome.key_state.as_deref() == Some("pending") {
                // Computed here from our own key, never taken from the
                // server: the page must show the same code for this key.
                let code = ConfirmationCode::of(&claims.challenge_id, &key.public_key());
                json["key_state"] = "pending".into();
                json["confirmation_code"] = code.digits().into();
                format!(
                    "{registered}. The key waits for confirmation: confirm it on the page only if the page shows the code {code}."
                )
            } else {
                format!("{registered}; the browser is signing in.")
            };
            Ok(Answered { json, text: format!("{text}\n{}", ui::requested_by(context)), notices: Vec::new() })
        }
        Err(failure @ (Failure::Refused { .. } | Failure::NotSent(_) | Failure::Certificate(_))) => {
            store.delete(claims.origin.as_str(), &claims.service_id.to_string(), name.as_str()).await?;
            Err(match failure {
                Failure::Refused { code, message } if code == "account_exists" => Error::AccountExists {
                    account: name.to_string(),
                    service: claims.service_name.to_string(),
                    reason: if message.is_empty() { "the name is taken".to_owned() } else { message },
                },
                other => remote.error(other),
            })
        }
        Err(Failure::Lost(reason) | Failure::Garbled(reason)) => {
            Err(Error::OutcomeUnknown { account: name.to_string(), reason })
        }
        Err(Failure::Fault { code, .. }) => {
            Err(Error::OutcomeUnknown { account: name.to_string(), reason: format!("server fault: {code}") })
        }
    }
}

/// The account to log in as: the one named, or the only one, or the one the
/// user picks.
fn choose_account(
    app: &mut App,
    token: &Token,
    accounts: &[Account],
    wanted: Option<&str>,
) -> Result<AccountName, Error> {
    let claims = token.claims();
    let service = claims.service_name.to_string();
    let names = || accounts.iter().map(|a| a.name.as_str()).collect::<Vec<_>>().join(", ");
    if accounts.is_empty() {
        return Err(Error::NoLocalAccount { service, origin: claims.origin.to_string() });
    }
    let chosen = match wanted {
        Some(wanted) => {
            let wanted = AccountName::parse(wanted)?;
            if !accounts.iter().any(|a| a.name == wanted.as_str()) {
                return Err(Error::UnknownLocalAccount { account: wanted.to_string(), service, names: names() });
            }
            return Ok(wanted);
        }
        None if accounts.len() == 1 => accounts[0].name.clone(),
        None if !app.console.is_interactive() => return Err(Error::AmbiguousAccount { service, names: names() }),
        None => {
            for (i, account) in accounts.iter().enumerate() {
                eprintln!("  {}) {}", i + 1, safe(&account.name));
            }
            let answer = app.console.ask("Log in as (number): ")?;
            let index =
                answer.parse::<usize>().ok().filter(|i| (1..=accounts.len()).contains(i)).ok_or(Error::Cancelled)?;
            accounts[index - 1].name.clone()
        }
    };
    Ok(AccountName::parse(&chosen)?)
}

pub(crate) async fn login(
    app: &mut App,
    text: &str,
    account: Option<&str>,
    rekey: bool,
    number: Option<MatchNumber>,
    yes: bool,
) -> Result<(), Error> {
    if !yes && !app.console.is_interactive() {
        return Err(Error::NeedsConfirmation("sesame login"));
    }
    let (token, remote) = app.trusted(text).await?;
    let accounts = app.store.accounts_at(&token.claims().origin, &token.claims().service_id).await?;
    let name = choose_account(app, &token, &accounts, account)?;
    let keyring = app.unlock().await?;
    let context = app.context(&token, &remote, &accounts).await?;
    expect_sign_in(&context)?;
    let question = if rekey { "Log in as {} and replace its key?" } else { "Log in as {}?" };
    if !yes && !app.console.confirm(&question.replace("{}", &safe(name.as_str())))? {
        return Err(Error::Cancelled);
    }
    let number = app.number(&context, number)?;
    let login = if rekey { Login::Rekey } else { Login::Plain };
    app.print(&submit_login(&app.store, &token, &remote, &context, &keyring, &name, login, number).await?);
    Ok(())
}

/// A plain login, or one that also replaces the account's key (§13).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Login {
    Plain,
    Rekey,
}

/// A test's way to stop the process at the two moments of a key change where
/// the keystore and the server disagree for a while: `rekey-staged`, after
/// the new key is stored and before the server hears of it, and
/// `rekey-answered`, after the server swapped the key and before this
/// keystore has. The process aborts, as if killed, so nothing after that
/// point runs. Stopping the server at any moment leaves it in one of the
/// same two states, since its swap is one transaction.
fn crash_point(name: &str) {
    if std::env::var_os("SESAME_CRASH_AT").is_some_and(|at| at == name) {
        std::process::abort();
    }
}

/// Logs in, or rekeys, keeping one working key whatever stops when
/// (docs/PROTOCOL.md §13): the new key is stored before it is sent, becomes
/// the account's key only once the server has confirmed it, and a change
/// whose answer was lost is settled at the next sign-in, on the same token.
#[allow(clippy::too_many_arguments)] // each is one part of what is signed or where it is kept
pub(crate) async fn submit_login(
    store: &Store,
    token: &Token,
    remote: &Remote,
    context: &ChallengeContext,
    keyring: &Keyring,
    name: &AccountName,
    login: Login,
    number: Option<MatchNumber>,
) -> Result<Answered, Error> {
    let claims = token.claims();
    let slot = Slot { origin: &claims.origin, service_id: &claims.service_id, account: name };
    let (key, next) = store.keys(keyring, slot).await?;
    let unsettled = next.is_some();
    let sent = match login {
        Login::Plain => remote.login(&LoginRequest::sign_matched(token, name, &key, number)).await,
        Login::Rekey => {
            // An earlier change whose outcome is unknown is retried with the
            // same new key, never a third one.
            let staged;
            let new_key = match &next {
                Some(next) => next,
                None => {
                    staged = AccountKey::generate(&mut OsRng);
                    store.stage_next_key(keyring, slot, &staged).await?;
                    crash_point("rekey-staged");
                    &staged
                }
            };
            remote.rekey(&RekeyRequest::sign_matched(token, name, &key, new_key, number)).await
        }
    };
    // Which key the server holds now, where that changed: `None` for the
    // old key, `Some(true)` when this answer replaced it, `Some(false)` when
    // an earlier, unsettled change had.
    let (outcome, replaced) = match (sent, next) {
        (Ok(outcome), _) => (outcome, (login == Login::Rekey).then_some(true)),
        // The server no longer takes the old key: an earlier change landed
        // though its answer never came. The new key signs this same token.
        (Err(Failure::Refused { code, .. }), Some(next)) if code == "bad_signature" => {
            let outcome = remote
                .login(&LoginRequest::sign_matched(token, name, &next, number))
                .await
                .map_err(|f| remote.error(f))?;
            (outcome, Some(false))
        }
        (Err(failure @ Failure::Refused { .. }), _) => {
            // A refused change leaves the server as it was, so a new key made
            // for this answer goes. One from an earlier, unsettled change
            // stays: this refusal says nothing about whether that one landed.
            if login == Login::Rekey && !unsettled {
                store.drop_next_key(slot).await?;
            }
            return Err(match failure {
                Failure::Refused { code, .. } if code == "unknown_account" => Error::UnknownAccount {
                    account: name.to_string(),
                    service_id: claims.service_id.to_string(),
                    origin: claims.origin.to_string(),
                },
                // The account is there, but none of its keys is this one.
                Failure::Refused { code, .. } if code == "bad_signature" => Error::KeyNotOnAccount {
                    account: name.to_string(),
                    service_id: claims.service_id.to_string(),
                    origin: claims.origin.to_string(),
                },
                other => remote.error(other),
            });
        }
        (Err(failure), _) => return Err(remote.error(failure)),
    };
    let rekeyed = replaced.is_some();
    if rekeyed {
        crash_point("rekey-answered");
        store.promote_next_key(slot, ui::now()).await?;
    } else if unsettled {
        // The old key still signs in, so an earlier change never landed:
        // its new key is forgotten.
        store.drop_next_key(slot).await?;
        store.confirm(slot, ui::now()).await?;
    } else {
        // A key whose registration outcome was unknown is now known good.
        store.confirm(slot, ui::now()).await?;
    }
    let mut text = format!("Signed in to {} as {}.", safe(claims.service_name.as_str()), safe(name.as_str()));
    match replaced {
        Some(true) => text.push_str(" Its key was replaced; the old one no longer signs in."),
        Some(false) => text.push_str(" An earlier key change had reached the server; it is now settled here too."),
        None => {}
    }
    // Keys that joined the account since this one last signed in: a key
    // its owner did not add is the one thing here that needs them.
    let account_page = format!("{}/services/{}/account", claims.origin, claims.service_id);
    let notices = outcome.new_keys.iter().map(|key| ui::new_key_notice(name.as_str(), key, &account_page)).collect();
    let mut json = result_json(token, context, &outcome, Some(name.as_str()));
    json["rekeyed"] = rekeyed.into();
    json["new_keys"] = serde_json::to_value(&outcome.new_keys).unwrap_or_default();
    Ok(Answered { json, text: format!("{text}\n{}", ui::requested_by(context)), notices })
}

pub(crate) async fn deny(app: &mut App, text: &str) -> Result<(), Error> {
    let (token, remote) = app.trusted(text).await?;
    let accounts = app.store.accounts_at(&token.claims().origin, &token.claims().service_id).await?;
    let keyring = if accounts.is_empty() { Keyring::Plain } else { app.unlock().await? };
    let context = app.context(&token, &remote, &accounts).await?;
    app.print(&submit_deny(&app.store, &token, &remote, &context, &keyring, &accounts).await?);
    Ok(())
}

/// Signs the refusal with the most recently used account key, or with a key
/// made for this one answer when there is none; that key is not kept.
pub(crate) async fn submit_deny(
    store: &Store,
    token: &Token,
    remote: &Remote,
    context: &ChallengeContext,
    keyring: &Keyring,
    accounts: &[Account],
) -> Result<Answered, Error> {
    let claims = token.claims();
    let key = match accounts.first() {
        Some(account) => {
            let name = AccountName::parse(&account.name)?;
            let slot = Slot { origin: &claims.origin, service_id: &claims.service_id, account: &name };
            store.key(keyring, slot).await?
        }
        None => AccountKey::generate(&mut OsRng),
    };
    let outcome = remote.deny(&DenyRequest::sign(token, &key)).await.map_err(|f| remote.error(f))?;
    let text = format!("Refused the sign-in to {} ({}).", safe(claims.service_name.as_str()), claims.origin);
    let text = format!("{text}\n{}", ui::requested_by(context));
    Ok(Answered { json: result_json(token, context, &outcome, None), text, notices: Vec::new() })
}

pub(crate) async fn process(app: &mut App, text: &str) -> Result<(), Error> {
    if !app.console.is_interactive() {
        return Err(Error::NeedsTerminal("sesame process"));
    }
    let (token, remote) = app.trusted(text).await?;
    let accounts = app.store.accounts_at(&token.claims().origin, &token.claims().service_id).await?;
    let keyring = app.unlock().await?;
    let context = app.context(&token, &remote, &accounts).await?;
    eprintln!();
    if context.purpose == ChallengePurpose::Enroll {
        let name = enroll_account(&context)?;
        eprintln!("  e) add this authenticator to {}", safe(name.as_str()));
        eprintln!("  d) deny this request");
        eprintln!("  q) quit without answering");
        return match app.console.ask("Your choice: ")?.as_str() {
            "e" | "E" => {
                let label = key_label(None)?;
                let number = app.number(&context, None)?;
                let new = NewKey::Enroll(label.as_ref());
                let answered =
                    submit_new_key(&app.store, &token, &remote, &context, &keyring, &name, new, number).await?;
                app.notice_unencrypted(&keyring).await?;
                app.print(&answered);
                Ok(())
            }
            "d" | "D" => {
                app.print(&submit_deny(&app.store, &token, &remote, &context, &keyring, &accounts).await?);
                Ok(())
            }
            _ => Err(Error::Cancelled),
        };
    }
    for (i, account) in accounts.iter().enumerate() {
        eprintln!("  {}) log in as {}", i + 1, safe(&account.name));
    }
    eprintln!("  r) register a new account");
    eprintln!("  d) deny this request");
    eprintln!("  q) quit without answering");
    let choice = app.console.ask("Your choice: ")?;
    match choice.as_str() {
        "r" | "R" => {
            let name = AccountName::parse(&app.console.ask("New account name: ")?)?;
            if accounts.iter().any(|a| a.name == name.as_str()) {
                return Err(Error::LocalAccountExists {
                    account: name.to_string(),
                    service: token.claims().service_name.to_string(),
                });
            }
            let label = key_label(None)?;
            let number = app.number(&context, None)?;
            let new = NewKey::Register(label.as_ref());
            let answered = submit_new_key(&app.store, &token, &remote, &context, &keyring, &name, new, number).await?;
            app.notice_unencrypted(&keyring).await?;
            app.print(&answered);
            Ok(())
        }
        "d" | "D" => {
            app.print(&submit_deny(&app.store, &token, &remote, &context, &keyring, &accounts).await?);
            Ok(())
        }
        other => match other.parse::<usize>() {
            Ok(i) if (1..=accounts.len()).contains(&i) => {
                let name = AccountName::parse(&accounts[i - 1].name)?;
                let number = app.number(&context, None)?;
                let login = Login::Plain;
                app.print(&submit_login(&app.store, &token, &remote, &context, &keyring, &name, login, number).await?);
                Ok(())
            }
            _ => Err(Error::Cancelled),
        },
    }
}

//! Answering a token: `process`, `register`, `login` and `deny`.
//!
//! Every path trusts the token first (pinned key, signature, lifetime), then
//! shows who is asking, and only then signs. Local problems (no such account,
//! no terminal to confirm, wrong passphrase) are found before the server is
//! asked anything.

use rand::rngs::OsRng;
use serde_json::json;
use sesame_proto::{
    wire::{ChallengeContext, Outcome},
    AccountKey, AccountName, ConfirmationCode, DenyRequest, LoginRequest, RegisterRequest, Token,
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
}

impl App {
    fn print(&self, answered: &Answered) {
        self.out.result(&answered.json, &answered.text);
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

pub(super) async fn register(app: &mut App, text: &str, name: &str, yes: bool) -> Result<(), Error> {
    let name = AccountName::parse(name)?;
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
    if !yes && !app.console.confirm(&format!("Register the new account {} here?", safe(name.as_str())))? {
        return Err(Error::Cancelled);
    }
    let answered = submit_register(&app.store, &token, &remote, &context, &keyring, &name).await?;
    // Only after success: a failure keeps its single line on stderr.
    app.notice_unencrypted(&keyring).await?;
    app.print(&answered);
    Ok(())
}

/// Stores the key before the server hears of it, so that a crash can never
/// leave an account on the server whose key is lost; takes it back out when
/// the server refuses, so that a refused registration leaves nothing.
pub(crate) async fn submit_register(
    store: &Store,
    token: &Token,
    remote: &Remote,
    context: &ChallengeContext,
    keyring: &Keyring,
    name: &AccountName,
) -> Result<Answered, Error> {
    let claims = token.claims();
    let slot = Slot { origin: &claims.origin, service_id: &claims.service_id, account: name };
    let key = AccountKey::generate(&mut OsRng);
    store.insert_unconfirmed(keyring, slot, &claims.service_name, &key, ui::now()).await?;
    let request = RegisterRequest::sign(token, name, &key);
    match remote.register(&request).await {
        Ok(outcome) => {
            store.confirm(slot, ui::now()).await?;
            let mut json = result_json(token, context, &outcome, Some(name.as_str()));
            let registered = format!(
                "Registered {} at {} ({})",
                safe(name.as_str()),
                safe(claims.service_name.as_str()),
                claims.origin
            );
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
            Ok(Answered { json, text: format!("{text}\n{}", ui::requested_by(context)) })
        }
        Err(failure @ (Failure::Refused { .. } | Failure::NotSent(_) | Failure::Certificate(_))) => {
            store.delete(claims.origin.as_str(), &claims.service_id.to_string(), name.as_str()).await?;
            Err(match failure {
                Failure::Refused { code, .. } if code == "account_exists" => {
                    Error::AccountExists { account: name.to_string(), service: claims.service_name.to_string() }
                }
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

pub(super) async fn login(app: &mut App, text: &str, account: Option<&str>, yes: bool) -> Result<(), Error> {
    if !yes && !app.console.is_interactive() {
        return Err(Error::NeedsConfirmation("sesame login"));
    }
    let (token, remote) = app.trusted(text).await?;
    let accounts = app.store.accounts_at(&token.claims().origin, &token.claims().service_id).await?;
    let name = choose_account(app, &token, &accounts, account)?;
    let keyring = app.unlock().await?;
    let context = app.context(&token, &remote, &accounts).await?;
    if !yes && !app.console.confirm(&format!("Log in as {}?", safe(name.as_str())))? {
        return Err(Error::Cancelled);
    }
    app.print(&submit_login(&app.store, &token, &remote, &context, &keyring, &name).await?);
    Ok(())
}

pub(crate) async fn submit_login(
    store: &Store,
    token: &Token,
    remote: &Remote,
    context: &ChallengeContext,
    keyring: &Keyring,
    name: &AccountName,
) -> Result<Answered, Error> {
    let claims = token.claims();
    let slot = Slot { origin: &claims.origin, service_id: &claims.service_id, account: name };
    let key = store.key(keyring, slot).await?;
    match remote.login(&LoginRequest::sign(token, name, &key)).await {
        Ok(outcome) => {
            // A key whose registration outcome was unknown is now known good.
            store.confirm(slot, ui::now()).await?;
            let text = format!("Signed in to {} as {}.", safe(claims.service_name.as_str()), safe(name.as_str()));
            let text = format!("{text}\n{}", ui::requested_by(context));
            Ok(Answered { json: result_json(token, context, &outcome, Some(name.as_str())), text })
        }
        Err(Failure::Refused { code, .. }) if code == "unknown_account" => Err(Error::UnknownAccount {
            account: name.to_string(),
            service_id: claims.service_id.to_string(),
            origin: claims.origin.to_string(),
        }),
        Err(failure) => Err(remote.error(failure)),
    }
}

pub(super) async fn deny(app: &mut App, text: &str) -> Result<(), Error> {
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
    Ok(Answered { json: result_json(token, context, &outcome, None), text })
}

pub(super) async fn process(app: &mut App, text: &str) -> Result<(), Error> {
    if !app.console.is_interactive() {
        return Err(Error::NeedsTerminal("sesame process"));
    }
    let (token, remote) = app.trusted(text).await?;
    let accounts = app.store.accounts_at(&token.claims().origin, &token.claims().service_id).await?;
    let keyring = app.unlock().await?;
    let context = app.context(&token, &remote, &accounts).await?;
    eprintln!();
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
            let answered = submit_register(&app.store, &token, &remote, &context, &keyring, &name).await?;
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
                app.print(&submit_login(&app.store, &token, &remote, &context, &keyring, &name).await?);
                Ok(())
            }
            _ => Err(Error::Cancelled),
        },
    }
}

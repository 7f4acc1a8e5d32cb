//! Looking after the keystore: `accounts`, `remove`, `passphrase`,
//! `keyring`, `unpin`.

use serde_json::json;
use sesame_proto::{Origin, UnixTime};

use super::App;
use crate::{
    store::{Keyring, Protection},
    ui::{local_time, safe},
    vault::{KdfParams, Passphrase},
    Error,
};

fn time_of(secs: i64) -> String {
    local_time(UnixTime::from_secs(u64::try_from(secs).unwrap_or(0)))
}

pub(crate) async fn accounts(app: &App) -> Result<(), Error> {
    let accounts = app.store.accounts().await?;
    if app.out.json {
        let list: Vec<_> = accounts
            .iter()
            .map(|a| {
                json!({
                    "origin": a.origin,
                    "service_id": a.service_id,
                    "service_name": a.service_name,
                    "account": a.name,
                    "public_key": sesame_proto::AccountPublicKey::from_bytes(&a.public_key).map(|k| k.to_base64()).ok(),
                    "confirmed": a.confirmed,
                    "rekey_pending": a.rekey_pending,
                    "created_at": a.created_at,
                    "last_used_at": a.last_used_at,
                    "key_since": a.key_since,
                })
            })
            .collect();
        println!("{}", serde_json::Value::Array(list));
        return Ok(());
    }
    if accounts.is_empty() {
        println!("No accounts yet. Register one with: sesame register TOKEN --name NAME");
        return Ok(());
    }
    for a in &accounts {
        let state = match (a.confirmed, a.rekey_pending) {
            (_, true) => "  (key change unsettled: the next sign-in settles it)",
            (false, _) => "  (unconfirmed: the server may not have it)",
            (true, false) => "",
        };
        let used = a.last_used_at.map_or_else(|| "never".to_owned(), time_of);
        println!(
            "{}  at {} ({}, service {})  created {}, last used {}{state}",
            safe(&a.name),
            safe(&a.service_name),
            a.origin,
            a.service_id,
            time_of(a.created_at),
            used
        );
    }
    Ok(())
}

/// Deletes one local key. `service` may be the id or the name; when the name
/// is on several servers, `origin` must say which.
pub(crate) async fn remove(app: &App, account: &str, service: &str, origin: Option<&str>) -> Result<(), Error> {
    let matches: Vec<_> = app
        .store
        .accounts()
        .await?
        .into_iter()
        .filter(|a| a.name == account && (a.service_id == service || a.service_name == service))
        .filter(|a| origin.is_none_or(|o| a.origin == o))
        .collect();
    let target = match matches.as_slice() {
        [one] => one,
        [] => {
            return Err(Error::NoSuchLocalAccount {
                account: account.to_owned(),
                service: service.to_owned(),
                origin: origin.map(str::to_owned),
            })
        }
        many => {
            let origins = many.iter().map(|a| format!("{} ({})", a.origin, a.service_id)).collect::<Vec<_>>();
            return Err(Error::AmbiguousService {
                account: account.to_owned(),
                service: service.to_owned(),
                origins: origins.join(", "),
            });
        }
    };
    app.store.delete(&target.origin, &target.service_id, &target.name).await?;
    let text = format!(
        "Removed the local key of {} at {} ({}).",
        safe(&target.name),
        safe(&target.service_name),
        target.origin
    );
    app.out.result(
        &json!({"removed": target.name, "origin": target.origin, "service_id": target.service_id, "service_name": target.service_name}),
        &text,
    );
    Ok(())
}

/// The new passphrase: `SESAME_NEW_PASSPHRASE`, or `SESAME_PASSPHRASE` when
/// none is set yet, or typed twice.
fn new_passphrase(app: &App, has_one: bool) -> Result<Passphrase, Error> {
    let from_env = std::env::var("SESAME_NEW_PASSPHRASE")
        .or_else(|e| if has_one { Err(e) } else { std::env::var("SESAME_PASSPHRASE") })
        .ok()
        .map(Passphrase::new);
    let new = match from_env {
        Some(new) => new,
        None => {
            let first = app.console.typed_secret("New passphrase: ")?.ok_or(Error::PassphraseRequired)?;
            let second = app.console.typed_secret("Repeat the new passphrase: ")?.ok_or(Error::PassphraseRequired)?;
            if first.as_str() != second.as_str() {
                return Err(Error::PassphraseMismatch);
            }
            first
        }
    };
    if new.as_str().is_empty() {
        return Err(Error::InvalidInput("the passphrase must not be empty".into()));
    }
    Ok(new)
}

/// The keys as they are now: opened with the passphrase (checked first, so
/// that a wrong one changes nothing) or with the system keyring's key.
async fn current_keys(app: &App, protection: Protection) -> Result<Keyring, Error> {
    match protection {
        Protection::Plain => Ok(Keyring::Plain),
        Protection::Passphrase | Protection::SystemKeyring => {
            app.store.unlock(|| app.console.passphrase("Current passphrase: ")).await
        }
    }
}

pub(crate) async fn passphrase(app: &App) -> Result<(), Error> {
    let protection = app.store.protection().await?;
    let has_one = protection == Protection::Passphrase;
    let current = current_keys(app, protection).await?;
    let new = new_passphrase(app, has_one)?;
    let count = app.store.set_passphrase(&current, &new, KdfParams::DEFAULT).await?;
    let verb = match protection {
        Protection::Passphrase => "Changed the passphrase",
        Protection::SystemKeyring => "Set a passphrase in place of the key in the system keyring",
        Protection::Plain => "Set a passphrase",
    };
    app.out.result(&json!({"passphrase": "set", "keys": count}), &format!("{verb}; {count} key(s) re-encrypted."));
    Ok(())
}

/// Moves the keys under a random key kept in the system keyring.
pub(crate) async fn keyring(app: &App) -> Result<(), Error> {
    let protection = app.store.protection().await?;
    let current = current_keys(app, protection).await?;
    let count = app.store.move_to_system_keyring(&current).await?;
    let text = format!(
        "Encrypted {count} key(s) with a key kept in the system keyring; no passphrase is asked for any more. A backup (sesame export) is the way to move them to another computer."
    );
    app.out.result(&json!({"keyring": "system", "keys": count}), &text);
    Ok(())
}

pub(crate) async fn unpin(app: &App, origin: &str) -> Result<(), Error> {
    let origin = Origin::parse(origin)?;
    let pin = app.store.pin(&origin).await?.ok_or_else(|| Error::NotPinned(origin.to_string()))?;
    app.store.unpin(&origin).await?;
    let text = format!(
        "Forgot the key {} pinned for {origin} on {}; the next token from it pins the key it serves then.",
        pin.public_key.key_id(),
        local_time(pin.pinned_at)
    );
    app.out.result(&json!({"unpinned": origin.as_str(), "key_id": pin.public_key.key_id().to_string()}), &text);
    Ok(())
}

//! The window's JSON API. Each handler parses, then hands the work to the
//! code the command line uses: `trusted` and `context` to decide whom to
//! believe, the `submit_*` functions to sign, the store for the rest.
//!
//! Text that a server chose goes through [`safe`] here too, and the page
//! only ever sets it as text, never as HTML.

use std::sync::Arc;

use axum::{
    body::Bytes,
    extract::State,
    http::{header, HeaderMap},
    response::{IntoResponse as _, Response},
    routing::{get, post},
    Json, Router,
};
use base64::Engine as _;
use serde::Deserialize;
use serde_json::{json, Value};
use sesame_proto::{wire::ChallengeContext, AccountName, MatchNumber, UnixTime};

use super::WindowState;
use crate::{
    backup,
    commands::{self, approve, scan},
    store::{Keyring, Protection},
    trust,
    ui::{local_time, now, relative, safe},
    vault::{KdfParams, Passphrase},
    Error,
};

pub(super) fn router() -> Router<WindowState> {
    Router::new()
        .route("/api/status", get(status))
        .route("/api/unlock", post(unlock))
        .route("/api/passphrase", post(passphrase))
        .route("/api/accounts", get(accounts))
        .route("/api/accounts/remove", post(remove))
        .route("/api/request", post(request))
        .route("/api/login", post(login))
        .route("/api/register", post(register))
        .route("/api/deny", post(deny))
        .route("/api/enroll", post(enroll))
        .route("/api/export", post(export))
}

type Answer = Result<Json<Value>, Error>;

fn time_of(secs: i64) -> String {
    local_time(UnixTime::from_secs(u64::try_from(secs).unwrap_or(0)))
}

impl WindowState {
    /// Locked: a passphrase is set and has not been typed in this run.
    async fn locked(&self) -> Result<bool, Error> {
        Ok(self.keyring.lock().await.is_none() && self.store.has_passphrase().await?)
    }
}

async fn status(State(state): State<WindowState>) -> Answer {
    Ok(Json(json!({
        "locked": state.locked().await?,
        "has_passphrase": state.store.has_passphrase().await?,
        // plain, passphrase or system_keyring: how the keys are kept.
        "protection": state.store.protection().await?.as_str(),
        "holds_keys": !state.store.accounts().await?.is_empty(),
        "keystore": state.db_path.display().to_string(),
    })))
}

#[derive(Deserialize)]
struct UnlockBody {
    passphrase: String,
}

/// Derives the key from the passphrase once for this run; a wrong one is
/// refused by the verifier. The lock is held throughout, so guesses are
/// taken one at a time.
async fn unlock(State(state): State<WindowState>, Json(body): Json<UnlockBody>) -> Answer {
    let mut held = state.keyring.lock().await;
    if !state.store.has_passphrase().await? {
        return Err(Error::InvalidInput("no passphrase is set: the keystore is not locked".into()));
    }
    let keyring = state.store.unlock(|| Ok(Passphrase::new(body.passphrase))).await?;
    *held = Some(Arc::new(keyring));
    Ok(Json(json!({"locked": false})))
}

#[derive(Deserialize)]
struct PassphraseBody {
    current: Option<String>,
    new: String,
    repeat: String,
}

/// Sets or changes the passphrase. The current one is asked for even when
/// the window is unlocked: whoever finds the window open must not be able to
/// lock the owner out.
async fn passphrase(State(state): State<WindowState>, Json(body): Json<PassphraseBody>) -> Answer {
    let mut held = state.keyring.lock().await;
    let protection = state.store.protection().await?;
    let has_one = protection == Protection::Passphrase;
    let current = match protection {
        Protection::Passphrase => {
            let typed = body.current.filter(|c| !c.is_empty());
            let typed = typed.ok_or_else(|| Error::InvalidInput("enter the current passphrase".into()))?;
            state.store.unlock(|| Ok(Passphrase::new(typed))).await?
        }
        Protection::SystemKeyring => state.store.unlock(|| Err(Error::Locked)).await?,
        Protection::Plain => Keyring::Plain,
    };
    if body.new.is_empty() {
        return Err(Error::InvalidInput("the passphrase must not be empty".into()));
    }
    if body.new != body.repeat {
        return Err(Error::PassphraseMismatch);
    }
    let count = state.store.set_passphrase(&current, &Passphrase::new(body.new.clone()), KdfParams::DEFAULT).await?;
    let keyring = state.store.unlock(|| Ok(Passphrase::new(body.new))).await?;
    *held = Some(Arc::new(keyring));
    let verb = if has_one { "Changed the passphrase" } else { "Set a passphrase" };
    Ok(Json(json!({"message": format!("{verb}; {count} key(s) re-encrypted."), "keys": count})))
}

/// Every account, grouped by origin and service, in the store's order.
async fn accounts(State(state): State<WindowState>) -> Answer {
    let mut groups: Vec<Value> = Vec::new();
    for account in state.store.accounts().await? {
        let entry = json!({
            "name": safe(&account.name),
            "confirmed": account.confirmed,
            "rekey_pending": account.rekey_pending,
            "created": time_of(account.created_at),
            "last_used": account.last_used_at.map(time_of),
        });
        let same = |g: &Value| g["origin"] == account.origin.as_str() && g["service_id"] == account.service_id.as_str();
        match groups.last_mut().filter(|g| same(g)) {
            Some(group) => {
                if let Some(list) = group["accounts"].as_array_mut() {
                    list.push(entry);
                }
            }
            None => groups.push(json!({
                "origin": account.origin,
                "service_id": account.service_id,
                "service_name": safe(&account.service_name),
                "accounts": [entry],
            })),
        }
    }
    Ok(Json(Value::Array(groups)))
}

#[derive(Deserialize)]
struct RemoveBody {
    origin: String,
    service_id: String,
    name: String,
}

/// Deletes one local key. The page has asked for confirmation, saying that
/// the server keeps the account.
async fn remove(State(state): State<WindowState>, Json(body): Json<RemoveBody>) -> Answer {
    if !state.store.delete(&body.origin, &body.service_id, &body.name).await? {
        return Err(Error::NoSuchLocalAccount {
            account: body.name,
            service: body.service_id,
            origin: Some(body.origin),
        });
    }
    let message = format!(
        "Removed the key of {} for {} from this device. The account still exists on the server.",
        safe(&body.name),
        body.origin
    );
    Ok(Json(json!({"message": message})))
}

#[derive(Deserialize)]
struct ExportBody {
    passphrase: String,
    repeat: String,
}

/// The whole keystore as an age-encrypted backup, the same file `sesame
/// export` writes, handed to the page to save as a download. The keys are
/// opened with the window's keyring, so a locked keystore exports nothing.
async fn export(State(state): State<WindowState>, Json(body): Json<ExportBody>) -> Result<Response, Error> {
    if body.passphrase != body.repeat {
        return Err(Error::PassphraseMismatch);
    }
    let passphrase = Passphrase::new(body.passphrase);
    backup::check_strength(&passphrase)?;
    if state.store.accounts().await?.is_empty() {
        return Err(Error::NothingToExport(state.db_path.clone()));
    }
    let keyring = state.keyring().await?;
    let document = commands::backup::document(&state.store, &keyring).await?;
    let bytes = tokio::task::spawn_blocking(move || {
        let mut out = Vec::new();
        backup::write(&document, &passphrase, &mut out).map(|()| out)
    })
    .await
    .map_err(|e| Error::Keystore(format!("the encryption failed: {e}")))??;
    let name = format!("sesame-backup-{}.age", local_time(now()).get(..10).unwrap_or("today"));
    Ok((
        [
            (header::CONTENT_TYPE, "application/octet-stream".to_owned()),
            (header::CONTENT_DISPOSITION, format!("attachment; filename=\"{name}\"")),
            (header::CACHE_CONTROL, "no-store".to_owned()),
        ],
        bytes,
    )
        .into_response())
}

/// Merges a backup file the page sends (its bytes as the body) into the
/// keystore, all or nothing, as `sesame import` does. The backup's
/// passphrase comes in a header, as base64 of its UTF-8 bytes (a header
/// carries no other text), so that the body stays the file itself.
pub(super) async fn import(State(state): State<WindowState>, headers: HeaderMap, body: Bytes) -> Answer {
    let what = std::path::Path::new("the backup");
    backup::check_envelope(what, &body)?;
    let passphrase = headers
        .get("x-sesame-backup-passphrase")
        .and_then(|v| base64::engine::general_purpose::STANDARD.decode(v.as_bytes()).ok())
        .and_then(|bytes| String::from_utf8(bytes).ok())
        .filter(|p| !p.is_empty())
        .ok_or(Error::BackupPassphraseRequired)?;
    let passphrase = Passphrase::new(passphrase);
    let replace = headers.get("x-sesame-replace").is_some_and(|v| v.as_bytes() == b"true");
    let keyring = state.keyring().await?;
    let contents = tokio::task::spawn_blocking(move || backup::read(what, &body, &passphrase))
        .await
        .map_err(|e| Error::Keystore(format!("the decryption failed: {e}")))??;
    let report = state.store.import(&keyring, &contents, replace).await?;
    let message = commands::backup::summary(what, &report);
    Ok(Json(json!({"message": message, "result": commands::backup::report_json(&report)})))
}

/// Reads the token out of a picture: a pasted or dropped screenshot, or one
/// frame of the camera. The same decoder as `sesame scan`, off the runtime's
/// thread because it is CPU work.
pub(super) async fn scan(body: Bytes) -> Answer {
    let token = tokio::task::spawn_blocking(move || scan::token_from_bytes(&body))
        .await
        .map_err(|e| Error::Keystore(format!("the decoder failed: {e}")))??;
    Ok(Json(json!({"token": token})))
}

#[derive(Deserialize)]
struct TokenBody {
    token: String,
}

/// Who is asking: trusts the token (pinning the server key the first time,
/// as the command line does), and asks the server for the request's details.
async fn request(State(state): State<WindowState>, Json(body): Json<TokenBody>) -> Answer {
    let text = body.token.trim();
    let known = state.store.pin(trust::parse(text, state.insecure_http)?.claimed_origin()).await?;
    let (token, remote) = commands::trusted(&state.store, &state.roots, state.insecure_http, text).await?;
    let claims = token.claims();
    let accounts = state.store.accounts_at(&claims.origin, &claims.service_id).await?;
    let context = commands::context(&token, &remote).await?;
    let pin = state.store.pin(&claims.origin).await?;
    let now = now();
    Ok(Json(json!({
        // The token alone, also when a link was pasted: the answers sign it.
        "token": token.as_str(),
        "origin": claims.origin.as_str(),
        "service_id": claims.service_id.to_string(),
        "service_name": safe(claims.service_name.as_str()),
        "ip": safe(&context.ip),
        "user_agent": safe(&context.user_agent),
        "requested_at": local_time(context.requested_at),
        "requested_ago": relative(context.requested_at, now),
        "expires": relative(context.expires_at, now),
        "pin": {
            "first_seen": known.is_none(),
            "key_id": pin.as_ref().map(|p| p.public_key.key_id().to_string()),
            "pinned_at": pin.as_ref().map(|p| local_time(p.pinned_at)),
        },
        "accounts": accounts.iter().map(|a| safe(&a.name)).collect::<Vec<_>>(),
        "locked": state.locked().await?,
        // An enrollment request adds this device to `enroll_account`
        // instead of signing in (docs/PROTOCOL.md §12).
        "purpose": context.purpose,
        "enroll_account": context.account.as_deref().map(safe),
        // The window asks for the number the page shows (PROTOCOL.md §14).
        "number_matching": context.number_matching,
    })))
}

fn answered(answered: &approve::Answered) -> Json<Value> {
    Json(json!({"message": answered.text, "notices": answered.notices, "result": answered.json}))
}

#[derive(Deserialize)]
struct LoginBody {
    token: String,
    account: String,
    /// Also replace the account's key (docs/PROTOCOL.md §13).
    #[serde(default)]
    rekey: bool,
    /// The number the person typed, as typed (docs/PROTOCOL.md §14).
    #[serde(default)]
    number: Option<String>,
}

/// The number the person typed into the window, checked against what the
/// challenge asks for.
fn typed_number(context: &ChallengeContext, typed: Option<&str>) -> Result<Option<MatchNumber>, Error> {
    let given = typed.map(str::trim).filter(|t| !t.is_empty()).map(str::parse).transpose()?;
    approve::matched_number(context, given, "type it into the box above the buttons")
}

async fn login(State(state): State<WindowState>, Json(body): Json<LoginBody>) -> Answer {
    let name = AccountName::parse(&body.account)?;
    let (token, remote) = commands::trusted(&state.store, &state.roots, state.insecure_http, body.token.trim()).await?;
    let claims = token.claims();
    let accounts = state.store.accounts_at(&claims.origin, &claims.service_id).await?;
    if !accounts.iter().any(|a| a.name == name.as_str()) {
        let names = accounts.iter().map(|a| a.name.as_str()).collect::<Vec<_>>().join(", ");
        return Err(Error::UnknownLocalAccount {
            account: name.to_string(),
            service: claims.service_name.to_string(),
            names,
        });
    }
    let keyring = state.keyring().await?;
    let context = commands::context(&token, &remote).await?;
    approve::expect_sign_in(&context)?;
    let number = typed_number(&context, body.number.as_deref())?;
    let login = if body.rekey { approve::Login::Rekey } else { approve::Login::Plain };
    Ok(answered(&approve::submit_login(&state.store, &token, &remote, &context, &keyring, &name, login, number).await?))
}

#[derive(Deserialize)]
struct RegisterBody {
    token: String,
    name: String,
    /// What to call this device on the server; the host name when absent.
    #[serde(default)]
    label: Option<String>,
    /// The number the person typed, as typed (docs/PROTOCOL.md §14).
    #[serde(default)]
    number: Option<String>,
}

async fn register(State(state): State<WindowState>, Json(body): Json<RegisterBody>) -> Answer {
    let name = AccountName::parse(body.name.trim())?;
    let (token, remote) = commands::trusted(&state.store, &state.roots, state.insecure_http, body.token.trim()).await?;
    let claims = token.claims();
    let accounts = state.store.accounts_at(&claims.origin, &claims.service_id).await?;
    if accounts.iter().any(|a| a.name == name.as_str()) {
        return Err(Error::LocalAccountExists { account: name.to_string(), service: claims.service_name.to_string() });
    }
    let label = approve::key_label(body.label.as_deref().map(str::trim).filter(|l| !l.is_empty()))?;
    let keyring = state.keyring().await?;
    let context = commands::context(&token, &remote).await?;
    approve::expect_sign_in(&context)?;
    let number = typed_number(&context, body.number.as_deref())?;
    let new = approve::NewKey::Register(label.as_ref());
    Ok(answered(&approve::submit_new_key(&state.store, &token, &remote, &context, &keyring, &name, new, number).await?))
}

#[derive(Deserialize)]
struct EnrollBody {
    token: String,
    #[serde(default)]
    label: Option<String>,
}

/// Adds this device to the account an enrollment request names.
async fn enroll(State(state): State<WindowState>, Json(body): Json<EnrollBody>) -> Answer {
    let label = approve::key_label(body.label.as_deref().map(str::trim).filter(|l| !l.is_empty()))?;
    let (token, remote) = commands::trusted(&state.store, &state.roots, state.insecure_http, body.token.trim()).await?;
    let claims = token.claims();
    let accounts = state.store.accounts_at(&claims.origin, &claims.service_id).await?;
    let keyring = state.keyring().await?;
    let context = commands::context(&token, &remote).await?;
    let name = approve::enroll_account(&context)?;
    if accounts.iter().any(|a| a.name == name.as_str()) {
        return Err(Error::LocalAccountExists { account: name.to_string(), service: claims.service_name.to_string() });
    }
    let number = approve::matched_number(&context, None, "this window cannot add a key to such a request")?;
    let new = approve::NewKey::Enroll(label.as_ref());
    Ok(answered(&approve::submit_new_key(&state.store, &token, &remote, &context, &keyring, &name, new, number).await?))
}

async fn deny(State(state): State<WindowState>, Json(body): Json<TokenBody>) -> Answer {
    let (token, remote) = commands::trusted(&state.store, &state.roots, state.insecure_http, body.token.trim()).await?;
    let claims = token.claims();
    let accounts = state.store.accounts_at(&claims.origin, &claims.service_id).await?;
    let keyring = if accounts.is_empty() { Arc::new(Keyring::Plain) } else { state.keyring().await? };
    let context = commands::context(&token, &remote).await?;
    Ok(answered(&approve::submit_deny(&state.store, &token, &remote, &context, &keyring, &accounts).await?))
}

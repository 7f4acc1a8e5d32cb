//! A service's applications: its OpenID Connect clients, any number of
//! them, each with its own client id, display name, redirect URIs, type
//! (confidential, with a secret stored only as a digest, or public, which
//! must use PKCE) and ID-token algorithm. A person signed in to a service is
//! signed in for every application of that service.

use std::{fmt, net::IpAddr};

use base64::{engine::general_purpose::URL_SAFE_NO_PAD as B64, Engine as _};
use rand::{rngs::OsRng, RngCore as _};
use serde::Deserialize;
use sha2::{Digest as _, Sha256};
use subtle::ConstantTimeEq as _;

use super::{groups, keys::Alg};
use crate::{
    audit::{self, Action, By, Record},
    db::{
        locks::{self, Doomed},
        sql::{query, Constraint as _, Row, Violation},
        Db,
    },
    error::{Error, Result},
};

/// Most redirect URIs of either kind a client may list.
const MAX_URIS: usize = 20;
/// Longest redirect URI accepted; browsers and servers cope with far more,
/// but no real callback address comes near it.
const MAX_URI_BYTES: usize = 2000;

/// A registered client: an application of a service.
#[derive(Clone)]
pub struct Client {
    pub service_id: String,
    pub client_id: String,
    /// What the authorization page calls the application.
    pub name: String,
    secret_hash: Option<Vec<u8>>,
    pub redirect_uris: Vec<String>,
    pub post_logout_redirect_uris: Vec<String>,
    pub alg: Alg,
    /// Gets a refresh token with every code, whether or not it asks for
    /// `offline_access`.
    pub refresh_tokens: bool,
    /// Asks the person, once per scope set, before it learns anything
    /// (`oidc::consent`).
    pub ask_consent: bool,
    pub created_at: i64,
    /// Known, when it was read with the client, to admit every account of
    /// its service (it names no group): then a sign-in needs no check of
    /// the account's groups. `false` when not known.
    pub admits_everyone: bool,
}

impl fmt::Debug for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Client")
            .field("service_id", &self.service_id)
            .field("client_id", &self.client_id)
            .field("name", &self.name)
            .field("public", &self.is_public())
            .field("redirect_uris", &self.redirect_uris)
            .finish_non_exhaustive()
    }
}

impl Client {
    /// A public client has no secret and must prove itself with PKCE.
    pub fn is_public(&self) -> bool {
        self.secret_hash.is_none()
    }

    /// Whether `presented` is this client's secret. Digests of 256-bit
    /// secrets are compared in constant time all the same.
    pub fn secret_matches(&self, presented: &str) -> bool {
        self.secret_hash.as_deref().is_some_and(|stored| {
            let digest = Sha256::digest(presented.as_bytes());
            bool::from(stored.ct_eq(digest.as_slice()))
        })
    }

    /// Exact string comparison, never a prefix or a normalised form: a
    /// redirect URI that differs by one character is another address.
    pub fn allows_redirect(&self, uri: &str) -> bool {
        self.redirect_uris.iter().any(|allowed| allowed == uri)
    }

    pub fn allows_post_logout_redirect(&self, uri: &str) -> bool {
        self.post_logout_redirect_uris.iter().any(|allowed| allowed == uri)
    }
}

/// The settings an admin gives, as the API takes them.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[schema(as = OidcClientSettings)]
#[serde(deny_unknown_fields)]
pub struct SettingsJson {
    /// 1 to 20 absolute URIs, compared as exact strings.
    pub redirect_uris: Vec<String>,
    /// 0 to 20 absolute URIs.
    #[serde(default)]
    pub post_logout_redirect_uris: Vec<String>,
    /// A client without a secret, which must use PKCE.
    #[serde(default)]
    pub public: bool,
    /// `RS256` (when absent) or `EdDSA`.
    #[serde(default)]
    pub id_token_signed_response_alg: Option<String>,
    /// A refresh token with every code, whether or not the application
    /// asks for `offline_access`. Left out: none for a new client, kept for
    /// a change.
    #[serde(default)]
    pub refresh_tokens: Option<bool>,
    /// Ask each person, once per set of scopes, before the application
    /// learns anything: for applications the service does not vouch for.
    /// Left out: not asked for a new client, kept for a change.
    #[serde(default)]
    pub ask_consent: Option<bool>,
}

impl SettingsJson {
    /// These settings for a change of `current`: what they leave out of
    /// its policies stays as it is, so that a script which sends only the
    /// URIs turns nothing off.
    pub fn keeping(self, current: &Client) -> Self {
        Self {
            refresh_tokens: self.refresh_tokens.or(Some(current.refresh_tokens)),
            ask_consent: self.ask_consent.or(Some(current.ask_consent)),
            ..self
        }
    }
}

/// Settings that passed validation.
#[derive(Debug, Clone)]
pub struct Settings {
    redirect_uris: Vec<String>,
    post_logout_redirect_uris: Vec<String>,
    public: bool,
    alg: Alg,
    refresh_tokens: bool,
    ask_consent: bool,
    /// The groups the application admits, by name, when they are to be
    /// set: none admits every account of the service. `None` keeps them.
    allowed_groups: Option<Vec<String>>,
}

impl Settings {
    /// These settings, also setting the groups the application admits
    /// (`None` keeps them as they are).
    pub fn admitting(self, allowed_groups: Option<Vec<String>>) -> Self {
        Self { allowed_groups, ..self }
    }

    /// A client without a secret, which must use PKCE.
    pub fn is_public(&self) -> bool {
        self.public
    }

    pub fn parse(json: SettingsJson) -> Result<Self> {
        if json.redirect_uris.is_empty() {
            return Err(invalid("redirect_uris must list at least one URI"));
        }
        let alg = match json.id_token_signed_response_alg.as_deref() {
            None => Alg::Rs256,
            Some(text) => Alg::parse(text)
                .ok_or_else(|| invalid("id_token_signed_response_alg must be \"RS256\" or \"EdDSA\""))?,
        };
        Ok(Self {
            redirect_uris: uris("redirect_uris", json.redirect_uris)?,
            post_logout_redirect_uris: uris("post_logout_redirect_uris", json.post_logout_redirect_uris)?,
            public: json.public,
            alg,
            refresh_tokens: json.refresh_tokens.unwrap_or(false),
            ask_consent: json.ask_consent.unwrap_or(false),
            allowed_groups: None,
        })
    }
}

fn invalid(message: impl Into<String>) -> Error {
    Error::bad_request("invalid_client_settings", message)
}

/// An application's display name, under the rules of service names: what
/// the authorization page shows a person must be plain to read.
pub fn parse_name(text: &str) -> Result<String> {
    sesame_proto::ServiceName::parse(text).map(String::from).map_err(|_| {
        Error::bad_request(
            "invalid_application_name",
            "an application's name must be 1 to 64 bytes of printable text, without white space at either end",
        )
    })
}

/// Checks a list of redirect URIs, keeping each exactly as given (it is
/// compared as a string later) and dropping repeats.
fn uris(field: &str, list: Vec<String>) -> Result<Vec<String>> {
    if list.len() > MAX_URIS {
        return Err(invalid(format!("{field} may list at most {MAX_URIS} URIs")));
    }
    let mut kept: Vec<String> = Vec::with_capacity(list.len());
    for uri in list {
        check_uri(field, &uri)?;
        if !kept.contains(&uri) {
            kept.push(uri);
        }
    }
    Ok(kept)
}

/// A redirect URI is absolute, has no fragment (RFC 6749 §3.1.2), and is
/// HTTPS, plain HTTP to this machine (RFC 8252 §7.3), or a private-use
/// scheme of a native app (`com.example.app:/cb`, RFC 8252 §7.1).
fn check_uri(field: &str, uri: &str) -> Result<()> {
    let refuse = |why: &str| invalid(format!("{field}: {uri:?} {why}"));
    if uri.len() > MAX_URI_BYTES {
        return Err(invalid(format!("{field}: a URI may be at most {MAX_URI_BYTES} bytes long")));
    }
    if uri.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(refuse("contains white space or control characters"));
    }
    let parsed = url::Url::parse(uri).map_err(|_| refuse("is not an absolute URI"))?;
    if parsed.fragment().is_some() {
        return Err(refuse("has a fragment, which redirect URIs may not have"));
    }
    if !parsed.username().is_empty() || parsed.password().is_some() {
        return Err(refuse("carries credentials"));
    }
    match parsed.scheme() {
        "https" => Ok(()),
        "http" if is_loopback(&parsed) => Ok(()),
        "http" => Err(refuse("is plain HTTP to another machine; use https (http is allowed for loopback only)")),
        scheme if scheme.contains('.') => Ok(()),
        _ => Err(refuse("has a scheme that is neither https nor a private-use scheme like com.example.app")),
    }
}

fn is_loopback(url: &url::Url) -> bool {
    match url.host() {
        Some(url::Host::Domain(domain)) => domain == "localhost",
        Some(url::Host::Ipv4(ip)) => IpAddr::V4(ip).is_loopback(),
        Some(url::Host::Ipv6(ip)) => IpAddr::V6(ip).is_loopback(),
        None => false,
    }
}

const COLUMNS: &str =
    "service_id, client_id, name, secret_hash, redirect_uris, post_logout_redirect_uris, id_token_alg, \
     refresh_tokens, ask_consent, created_at";

fn from_row(row: &dyn Row) -> Result<Client> {
    let list = |column: &str| -> Result<Vec<String>> {
        let text = row.text(column)?;
        serde_json::from_str(&text).map_err(|e| Error::Internal(anyhow::anyhow!("{column} does not parse: {e}")))
    };
    let alg = row.text("id_token_alg")?;
    Ok(Client {
        service_id: row.text("service_id")?,
        client_id: row.text("client_id")?,
        name: row.text("name")?,
        secret_hash: row.opt_blob("secret_hash")?,
        redirect_uris: list("redirect_uris")?,
        post_logout_redirect_uris: list("post_logout_redirect_uris")?,
        alg: Alg::parse(&alg).ok_or_else(|| Error::Internal(anyhow::anyhow!("unknown stored algorithm {alg}")))?,
        refresh_tokens: row.bool("refresh_tokens")?,
        ask_consent: row.bool("ask_consent")?,
        created_at: row.int("created_at")?,
        admits_everyone: false,
    })
}

pub async fn by_client_id(db: &Db, client_id: &str) -> Result<Option<Client>> {
    // Only [`new_client_id`] makes client ids. Anything else names no
    // client, and on PostgreSQL, whose text cannot hold a NUL byte, looking
    // it up would fail as a database error.
    if !is_client_id(client_id) {
        return Ok(None);
    }
    // Read on every authorization, finish and token request: on the
    // sign-in's own read path, and with whether it admits every account,
    // which spares those an admission query (`oidc::admission`).
    let sql = format!(
        "SELECT {COLUMNS}, NOT EXISTS (SELECT 1 FROM application_group x WHERE x.client_id = $1) AS everyone \
         FROM oidc_application WHERE client_id = $1"
    );
    let read = |row: &dyn Row| Ok(Client { admits_everyone: row.bool("everyone")?, ..from_row(row)? });
    Ok(db.read_here(query(&sql).bind(client_id), read).await?.into_iter().next())
}

/// The application `client_id` of service `service_id`, or
/// `unknown_application`: an application of another service is unknown here.
pub async fn of_service(db: &Db, service_id: &str, client_id: &str) -> Result<Client> {
    match by_client_id(db, client_id).await? {
        Some(client) if client.service_id == service_id => Ok(client),
        _ => Err(Error::UnknownApplication),
    }
}

/// Every application of `service_id`, the first made first.
pub async fn all_of_service(db: &Db, service_id: &str) -> Result<Vec<Client>> {
    let sql = format!("SELECT {COLUMNS} FROM oidc_application WHERE service_id = $1 ORDER BY created_at, client_id");
    db.fetch_all(query(&sql).bind(service_id), from_row).await
}

/// The service's first application, which the API's older routes under
/// `…/services/{id}/oidc` address, or `oidc_not_configured`.
pub async fn first_of_service(db: &Db, service_id: &str) -> Result<Client> {
    all_of_service(db, service_id).await?.into_iter().next().ok_or(Error::OidcNotConfigured)
}

/// A client secret: 256 random bits, shown once.
fn new_secret() -> (String, Vec<u8>) {
    let mut bytes = [0u8; 32];
    OsRng.fill_bytes(&mut bytes);
    let secret = B64.encode(bytes);
    let digest = Sha256::digest(secret.as_bytes()).to_vec();
    (secret, digest)
}

fn new_client_id() -> String {
    let mut bytes = [0u8; 16];
    OsRng.fill_bytes(&mut bytes);
    hex::encode(bytes)
}

/// What [`new_client_id`] makes: 32 lowercase hex digits.
fn is_client_id(text: &str) -> bool {
    text.len() == 32 && text.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// Another application of the same service already has this name.
fn name_taken(name: &str) -> Error {
    Error::bad_request("application_name_taken", format!("this service already has an application named {name:?}"))
}

fn uris_json(list: &[String]) -> Result<String> {
    Ok(serde_json::to_string(list).map_err(anyhow::Error::from)?)
}

fn describe(client: &Client) -> String {
    format!(
        "application {:?}, client {}, {}, {} redirect URI(s)",
        client.name,
        client.client_id,
        if client.is_public() { "public" } else { "confidential" },
        client.redirect_uris.len()
    )
}

/// The audit record's detail for `client`, with the groups it admits when
/// this change set them.
fn detail(client: &Client, allowed: Option<&[String]>) -> String {
    match allowed {
        None => describe(client),
        Some([]) => format!("{}, admits every account", describe(client)),
        Some(names) => format!("{}, admits only groups {}", describe(client), groups::listed(names)),
    }
}

/// Makes a new application of `service_id`. Returns it, and its secret for
/// a confidential client.
pub(crate) async fn create(
    db: &Db,
    service_id: &str,
    name: &str,
    settings: &Settings,
    by: &By<'_>,
) -> Result<(Client, Option<String>)> {
    let (secret, digest) = new_secret();
    let insert = format!(
        "INSERT INTO oidc_application (service_id, client_id, name, secret_hash, redirect_uris, \
         post_logout_redirect_uris, id_token_alg, refresh_tokens, ask_consent, created_at, updated_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $10) RETURNING {COLUMNS}"
    );
    let mut write = db.begin_write().await?;
    if settings.allowed_groups.is_some() {
        // The lock order: the service's groups before what names them.
        locks::groups(&mut write.conn(), service_id).await?;
    }
    let client = write
        .conn()
        .fetch_one(
            query(&insert)
                .bind(service_id)
                .bind(new_client_id())
                .bind(name)
                .bind((!settings.public).then(|| digest.clone()))
                .bind(uris_json(&settings.redirect_uris)?)
                .bind(uris_json(&settings.post_logout_redirect_uris)?)
                .bind(settings.alg.as_str())
                .bind(settings.refresh_tokens)
                .bind(settings.ask_consent)
                .bind(by.at),
            from_row,
        )
        .await
        .on(Violation::ForeignKey, Error::UnknownService)
        .on(Violation::Unique, name_taken(name))?;
    let allowed = match &settings.allowed_groups {
        Some(names) => Some(groups::set_application(&mut write.conn(), service_id, &client.client_id, names).await?),
        None => None,
    };
    let detail = detail(&client, allowed.as_deref());
    audit::record(&mut write.conn(), by, Record::new(Action::OidcClientCreated, service_id, &detail)).await?;
    write.commit().await?;
    Ok((client, (!settings.public).then_some(secret)))
}

/// Changes application `client_id` of `service_id`, and its name when one
/// is given. Returns it, and its secret when this call made one: a public
/// client turned confidential. The client id never changes.
pub(crate) async fn change(
    db: &Db,
    service_id: &str,
    client_id: &str,
    name: Option<&str>,
    settings: &Settings,
    by: &By<'_>,
) -> Result<(Client, Option<String>)> {
    let (secret, digest) = new_secret();
    // The CASE keeps an existing secret, drops it for a public client, and
    // gives one to a client turned confidential.
    let update = format!(
        "UPDATE oidc_application SET name = COALESCE($3, name), redirect_uris = $4, \
         post_logout_redirect_uris = $5, id_token_alg = $6, \
         secret_hash = CASE WHEN $7 THEN NULL ELSE COALESCE(secret_hash, $8) END, updated_at = $9, \
         refresh_tokens = $10, ask_consent = $11 \
         WHERE service_id = $1 AND client_id = $2 RETURNING {COLUMNS}"
    );
    let mut write = db.begin_write().await?;
    if settings.allowed_groups.is_some() {
        // The lock order: the service's groups before what names them.
        locks::groups(&mut write.conn(), service_id).await?;
    }
    let changed = write
        .conn()
        .fetch_optional(
            query(&update)
                .bind(service_id)
                .bind(client_id)
                .bind(name)
                .bind(uris_json(&settings.redirect_uris)?)
                .bind(uris_json(&settings.post_logout_redirect_uris)?)
                .bind(settings.alg.as_str())
                .bind(settings.public)
                .bind(digest.clone())
                .bind(by.at)
                .bind(settings.refresh_tokens)
                .bind(settings.ask_consent),
            from_row,
        )
        .await
        .on(Violation::Unique, name_taken(name.unwrap_or_default()))?;
    let client = changed.ok_or(Error::UnknownApplication)?;
    let allowed = match &settings.allowed_groups {
        Some(names) => Some(groups::set_application(&mut write.conn(), service_id, &client.client_id, names).await?),
        None => None,
    };
    let detail = detail(&client, allowed.as_deref());
    audit::record(&mut write.conn(), by, Record::new(Action::OidcClientChanged, service_id, &detail)).await?;
    write.commit().await?;
    let made_secret = client.secret_hash.as_deref() == Some(digest.as_slice());
    Ok((client, made_secret.then_some(secret)))
}

/// Removes application `client_id` of `service_id`: its waiting requests,
/// codes and tokens go with it.
pub(crate) async fn remove(db: &Db, service_id: &str, client_id: &str, by: &By<'_>) -> Result<()> {
    let mut write = db.begin_write().await?;
    let mut conn = write.conn();
    locks::before_delete(&mut conn, Doomed::Client(client_id)).await?;
    let delete = query("DELETE FROM oidc_application WHERE service_id = $1 AND client_id = $2 RETURNING name");
    let gone = conn.fetch_optional(delete.bind(service_id).bind(client_id), |row| row.text("name")).await?;
    let name = gone.ok_or(Error::UnknownApplication)?;
    let detail = format!("application {name:?}, client {client_id}");
    audit::record(&mut conn, by, Record::new(Action::OidcClientRemoved, service_id, &detail)).await?;
    write.commit().await?;
    Ok(())
}

/// Gives confidential application `client_id` a new secret; the old one
/// stops working at once. Tokens already issued stay valid until they
/// expire.
pub(crate) async fn rotate_secret(db: &Db, service_id: &str, client_id: &str, by: &By<'_>) -> Result<(Client, String)> {
    let (secret, digest) = new_secret();
    let mut write = db.begin_write().await?;
    let update = format!(
        "UPDATE oidc_application SET secret_hash = $3, updated_at = $4 \
         WHERE service_id = $1 AND client_id = $2 AND secret_hash IS NOT NULL RETURNING {COLUMNS}"
    );
    let rotate = query(&update).bind(service_id).bind(client_id).bind(digest).bind(by.at);
    let Some(client) = write.conn().fetch_optional(rotate, from_row).await? else {
        // Why not, read through the write's own connection (see
        // `Db::begin_write`); dropping the write rolls it back.
        let sql = format!("SELECT {COLUMNS} FROM oidc_application WHERE service_id = $1 AND client_id = $2");
        let found = write.conn().fetch_optional(query(&sql).bind(service_id).bind(client_id), from_row).await?;
        return Err(match found {
            Some(_) => Error::bad_request("public_client", "a public client has no secret to rotate"),
            None => Error::UnknownApplication,
        });
    };
    let detail = format!("application {:?}, client {}", client.name, client.client_id);
    audit::record(&mut write.conn(), by, Record::new(Action::OidcSecretRotated, service_id, &detail)).await?;
    write.commit().await?;
    Ok((client, secret))
}

//! OpenID Connect from the outside: a service's client settings through the
//! admin API, PKCE pairs, authorization requests, a cookie-keeping HTTP
//! browser that walks the authorization endpoint's login page as its script
//! does, and raw token and userinfo calls whose every answer a test can
//! inspect. The relying party that uses a real OIDC library is in [`crate::rp`].

use std::collections::HashMap;

use anyhow::{bail, ensure, Context as _};
use base64::{engine::general_purpose::URL_SAFE_NO_PAD as B64URL, Engine as _};
use openidconnect::{
    core::{CoreIdToken, CoreIdTokenVerifier, CoreJwsSigningAlgorithm, CoreProviderMetadata},
    ClientId, IssuerUrl, Nonce,
};
use reqwest::{header::HeaderMap, redirect, StatusCode, Url};
use serde::Deserialize;
use serde_json::Value;
use sha2::{Digest as _, Sha256};

use crate::{stderr, Admin, Result, Server, Sesame};

/// A service's OIDC client settings, as the admin API answers them. The
/// secret is there only when it was just created or rotated.
#[derive(Debug, Clone, Deserialize)]
pub struct OidcClient {
    pub client_id: String,
    #[serde(default)]
    pub client_secret: Option<String>,
    pub redirect_uris: Vec<String>,
    pub post_logout_redirect_uris: Vec<String>,
    pub public: bool,
    #[serde(default)]
    pub id_token_signed_response_alg: Option<String>,
    /// Whether each person is asked before the application learns anything.
    #[serde(default)]
    pub ask_consent: bool,
}

impl OidcClient {
    /// The secret, which a confidential client got when it was created.
    pub fn secret(&self) -> Result<&str> {
        self.client_secret.as_deref().context("this client has no secret (public, or read back without one)")
    }

    /// The first registered redirect URI.
    pub fn redirect_uri(&self) -> &str {
        self.redirect_uris.first().map_or("", String::as_str)
    }
}

impl Admin {
    /// `PUT /admin/api/services/{id}/oidc` with `settings`, answered as is.
    pub async fn put_oidc(&self, service_id: &str, settings: &Value) -> Result<reqwest::Response> {
        let path = format!("/admin/api/services/{service_id}/oidc");
        Ok(self.request(reqwest::Method::PUT, &path).json(settings).send().await?)
    }

    /// Makes the service an OIDC client; fails unless the answer is 200.
    pub async fn enable_oidc(&self, service_id: &str, settings: &Value) -> Result<OidcClient> {
        let res = self.put_oidc(service_id, settings).await?;
        if res.status() != StatusCode::OK {
            bail!("PUT oidc for {service_id} answered {}: {}", res.status(), res.text().await?);
        }
        Ok(res.json().await?)
    }

    /// `POST /admin/api/services/{id}/applications`: one more application of
    /// the service, with its own client id (and secret, for a confidential
    /// one); fails unless the answer is 201.
    pub async fn create_application(&self, service_id: &str, settings: &Value) -> Result<OidcClient> {
        let path = format!("/admin/api/services/{service_id}/applications");
        let res = self.request(reqwest::Method::POST, &path).json(settings).send().await?;
        if res.status() != StatusCode::CREATED {
            bail!("creating an application of {service_id} answered {}: {}", res.status(), res.text().await?);
        }
        Ok(res.json().await?)
    }

    /// `PUT /admin/api/services/{id}/accounts/{name}/profile` with
    /// `profile` (`{"display_name", "email"}`); returns the profile as set.
    pub async fn set_profile(&self, service_id: &str, account: &str, profile: &Value) -> Result<Value> {
        let path = format!("/admin/api/services/{service_id}/accounts/{account}/profile");
        let res = self.request(reqwest::Method::PUT, &path).json(profile).send().await?;
        if res.status() != StatusCode::OK {
            bail!("setting the profile of {account} answered {}: {}", res.status(), res.text().await?);
        }
        Ok(res.json().await?)
    }

    /// `POST /admin/api/services/{id}/groups` with `{"name": name}`.
    pub async fn create_group(&self, service_id: &str, name: &str) -> Result<Value> {
        let path = format!("/admin/api/services/{service_id}/groups");
        let res = self.request(reqwest::Method::POST, &path).json(&serde_json::json!({ "name": name })).send().await?;
        if res.status() != StatusCode::CREATED {
            bail!("making group {name} answered {}: {}", res.status(), res.text().await?);
        }
        Ok(res.json().await?)
    }

    /// `PUT /admin/api/services/{id}/accounts/{name}/groups`: `account`
    /// belongs to `groups`, and to no other.
    pub async fn set_groups(&self, service_id: &str, account: &str, groups: &[&str]) -> Result<Value> {
        let path = format!("/admin/api/services/{service_id}/accounts/{account}/groups");
        let body = serde_json::json!({ "groups": groups });
        let res = self.request(reqwest::Method::PUT, &path).json(&body).send().await?;
        if res.status() != StatusCode::OK {
            bail!("setting the groups of {account} answered {}: {}", res.status(), res.text().await?);
        }
        Ok(res.json().await?)
    }

    /// `POST /admin/api/services/{id}/oidc/secret`: a new secret.
    pub async fn rotate_oidc_secret(&self, service_id: &str) -> Result<OidcClient> {
        let path = format!("/admin/api/services/{service_id}/oidc/secret");
        let res = self.request(reqwest::Method::POST, &path).send().await?;
        if res.status() != StatusCode::OK {
            bail!("rotating the secret of {service_id} answered {}: {}", res.status(), res.text().await?);
        }
        Ok(res.json().await?)
    }
}

/// 128 random bits as base64url: a state, a nonce or a name.
pub fn random_text() -> String {
    B64URL.encode(rand::random::<[u8; 16]>())
}

/// A PKCE pair (RFC 7636): the verifier the client keeps and the S256
/// challenge it sends.
#[derive(Debug, Clone)]
pub struct Pkce {
    pub verifier: String,
    pub challenge: String,
}

impl Pkce {
    pub fn new() -> Self {
        // 32 random bytes give a 43-character verifier, the shortest allowed.
        let verifier = B64URL.encode(rand::random::<[u8; 32]>());
        let challenge = B64URL.encode(Sha256::digest(verifier.as_bytes()));
        Self { verifier, challenge }
    }
}

impl Default for Pkce {
    fn default() -> Self {
        Self::new()
    }
}

/// An authorization request, as a relying party builds one. Every field can
/// be changed or left out, so that tests can send what a broken or hostile
/// client would.
#[derive(Debug, Clone)]
pub struct AuthRequest {
    pub client_id: Option<String>,
    pub redirect_uri: Option<String>,
    pub response_type: Option<String>,
    pub scope: Option<String>,
    pub state: Option<String>,
    pub nonce: Option<String>,
    pub code_challenge: Option<String>,
    pub code_challenge_method: Option<String>,
    /// More parameters, such as `prompt` or `max_age`.
    pub extra: Vec<(String, String)>,
}

impl AuthRequest {
    /// A correct request for `client`: code flow, `openid`, a fresh state
    /// and nonce, and PKCE S256 with `pkce`.
    pub fn new(client: &OidcClient, pkce: &Pkce) -> Self {
        Self {
            client_id: Some(client.client_id.clone()),
            redirect_uri: Some(client.redirect_uri().to_owned()),
            response_type: Some("code".into()),
            scope: Some("openid".into()),
            state: Some(random_text()),
            nonce: Some(random_text()),
            code_challenge: Some(pkce.challenge.clone()),
            code_challenge_method: Some("S256".into()),
            extra: Vec::new(),
        }
    }

    /// The request as a URL on the authorization endpoint of `base`.
    pub fn url(&self, base: &str) -> Result<String> {
        let fields = [
            ("client_id", &self.client_id),
            ("redirect_uri", &self.redirect_uri),
            ("response_type", &self.response_type),
            ("scope", &self.scope),
            ("state", &self.state),
            ("nonce", &self.nonce),
            ("code_challenge", &self.code_challenge),
            ("code_challenge_method", &self.code_challenge_method),
        ];
        let params = fields
            .iter()
            .filter_map(|(k, v)| v.as_deref().map(|v| (*k, v)))
            .chain(self.extra.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        Ok(Url::parse_with_params(&format!("{base}/oidc/authorize"), params)?.into())
    }
}

/// Where the provider sent the browser back to: the redirect's URL and its
/// query parameters.
#[derive(Debug, Clone)]
pub struct Callback {
    pub url: Url,
    pub params: HashMap<String, String>,
}

impl Callback {
    pub fn parse(location: &str) -> Result<Self> {
        let url = Url::parse(location).with_context(|| format!("the redirect {location:?} is not a URL"))?;
        let params = url.query_pairs().into_owned().collect();
        Ok(Self { url, params })
    }

    pub fn param(&self, name: &str) -> Option<&str> {
        self.params.get(name).map(String::as_str)
    }

    /// The URL without its query: where the client asked to be sent.
    pub fn target(&self) -> String {
        let mut url = self.url.clone();
        url.set_query(None);
        url.into()
    }

    /// The authorization code; fails, naming the error, when there is none.
    pub fn code(&self) -> Result<&str> {
        match (self.param("code"), self.param("error")) {
            (Some(code), None) => Ok(code),
            _ => bail!("the provider sent no code: {}", self.url),
        }
    }
}

/// The authorization endpoint's login page, as far as a script needs it.
#[derive(Debug, Clone)]
pub struct LoginPage {
    pub html: String,
    /// The sign-in token shown in `#token`.
    pub token: String,
    /// Where the page's script posts when the sign-in is over.
    pub finish_url: String,
    /// Where its Cancel button posts.
    pub cancel_url: String,
}

impl LoginPage {
    fn parse(html: String) -> Result<Self> {
        let token = element_text(&html, r#"id="token""#).context("no #token on the authorization page")?;
        let finish_url = attribute(&html, "data-finish-url").context("no data-finish-url on the login page")?;
        let cancel_url = attribute(&html, "data-cancel-url").context("no data-cancel-url on the login page")?;
        Ok(Self { html, token, finish_url, cancel_url })
    }
}

/// The text inside the first element whose opening tag contains `marker`.
fn element_text(html: &str, marker: &str) -> Option<String> {
    let start = html.find(marker)?;
    let open_end = start + html[start..].find('>')? + 1;
    let text = html[open_end..].split('<').next()?;
    Some(unescape(text.trim()))
}

/// The value of the first `name="…"` attribute.
fn attribute(html: &str, name: &str) -> Option<String> {
    let marker = format!(r#"{name}=""#);
    let start = html.find(&marker)? + marker.len();
    Some(unescape(html[start..].split('"').next()?))
}

/// Undoes the HTML escaping askama applies to text and attributes.
fn unescape(text: &str) -> String {
    text.replace("&#x2f;", "/")
        .replace("&#47;", "/")
        .replace("&#x27;", "'")
        .replace("&#39;", "'")
        .replace("&quot;", "\"")
        .replace("&#34;", "\"")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&amp;", "&")
}

/// A browser without JavaScript: it keeps cookies, follows no redirect, and
/// does by hand what the login page's script does.
#[derive(Debug, Clone)]
pub struct OidcBrowser {
    pub client: reqwest::Client,
    base: String,
    origin: String,
}

impl OidcBrowser {
    pub fn new(server: &Server) -> Self {
        let client = reqwest::Client::builder()
            .cookie_store(true)
            .redirect(redirect::Policy::none())
            .user_agent("Mozilla/5.0 (X11; Linux x86_64) SesameTestBrowser/1.0")
            .build()
            .expect("a reqwest client builds");
        Self { client, base: server.base.clone(), origin: server.origin.clone() }
    }

    fn url(&self, url: &str) -> String {
        if url.starts_with("http://") || url.starts_with("https://") {
            url.to_owned()
        } else {
            format!("{}{url}", self.base)
        }
    }

    /// GETs `url` and returns the answer as it came.
    pub async fn get(&self, url: &str) -> Result<reqwest::Response> {
        Ok(self.client.get(self.url(url)).send().await?)
    }

    /// Opens the authorization endpoint and expects the login page.
    pub async fn open(&self, url: &str) -> Result<LoginPage> {
        let res = self.get(url).await?;
        let status = res.status();
        let location = res.headers().get("location").map(|v| v.to_str().unwrap_or_default().to_owned());
        let html = res.text().await?;
        ensure!(status == StatusCode::OK, "the authorization endpoint answered {status} (to {location:?}): {html}");
        LoginPage::parse(html)
    }

    /// Posts the finish URL, as the page does when the sign-in is over, and
    /// returns where the provider redirects the browser.
    pub async fn finish(&self, page: &LoginPage) -> Result<Callback> {
        // A form post from the page: the browser names the page's origin.
        let res = self.client.post(self.url(&page.finish_url)).header("origin", &self.origin).send().await?;
        redirect_of(res).await
    }

    /// Presses Cancel.
    pub async fn cancel(&self, page: &LoginPage) -> Result<()> {
        let res = self.client.post(self.url(&page.cancel_url)).header("origin", &self.origin).send().await?;
        ensure!(res.status().is_success(), "cancel answered {}: {}", res.status(), res.text().await?);
        Ok(())
    }

    /// The whole sign-in: opens the page for `request`, has `sesame` act on
    /// its token with `args` (the token is appended), and finishes.
    pub async fn sign_in(&self, request: &AuthRequest, sesame: &Sesame, args: &[&str]) -> Result<Callback> {
        let page = self.open(&request.url(&self.base)?).await?;
        let mut args = args.to_vec();
        args.insert(1, &page.token);
        let out = sesame.run(&args);
        ensure!(out.status.success(), "sesame {} failed: {}", args[0], stderr(&out));
        self.finish(&page).await
    }
}

/// The target of a 303 (or any redirect), or an error naming what came
/// instead.
pub async fn redirect_of(res: reqwest::Response) -> Result<Callback> {
    let status = res.status();
    let location = res.headers().get("location").and_then(|v| v.to_str().ok()).map(str::to_owned);
    match location {
        Some(location) if status.is_redirection() => Callback::parse(&location),
        _ => bail!("expected a redirect, got {status}: {}", res.text().await?),
    }
}

/// How a client proves who it is at the token endpoint.
#[derive(Debug, Clone, Copy)]
pub enum ClientAuth<'a> {
    /// `client_secret_basic`: id and secret in `Authorization: Basic`.
    Basic { id: &'a str, secret: &'a str },
    /// `client_secret_post`: id and secret in the form.
    Post { id: &'a str, secret: &'a str },
    /// A public client: its id in the form, PKCE its only proof.
    Public { id: &'a str },
}

impl<'a> ClientAuth<'a> {
    pub fn basic(client: &'a OidcClient) -> Result<Self> {
        Ok(Self::Basic { id: &client.client_id, secret: client.secret()? })
    }

    pub fn post(client: &'a OidcClient) -> Result<Self> {
        Ok(Self::Post { id: &client.client_id, secret: client.secret()? })
    }
}

/// An HTTP answer kept whole: status, headers and the JSON body (`Null` if
/// the body is not JSON).
#[derive(Debug, Clone)]
pub struct Answer {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Value,
}

impl Answer {
    /// Reads the whole answer.
    pub async fn read_from(res: reqwest::Response) -> Result<Self> {
        let status = res.status();
        let headers = res.headers().clone();
        let text = res.text().await?;
        Ok(Self { status, headers, body: serde_json::from_str(&text).unwrap_or(Value::Null) })
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// The body's `error`.
    pub fn error(&self) -> Option<&str> {
        self.body["error"].as_str()
    }

    /// A string field of the body.
    pub fn field(&self, name: &str) -> Result<&str> {
        self.body[name].as_str().with_context(|| format!("no {name:?} in {}", self.body))
    }
}

/// A code redemption at `{base}/oidc/token`.
#[derive(Debug, Clone)]
pub struct Redemption<'a> {
    pub auth: ClientAuth<'a>,
    pub code: &'a str,
    pub redirect_uri: &'a str,
    pub code_verifier: Option<&'a str>,
}

impl Redemption<'_> {
    /// Posts the form to the token endpoint of `base`.
    pub async fn send(&self, http: &reqwest::Client, base: &str) -> Result<Answer> {
        let mut form =
            vec![("grant_type", "authorization_code"), ("code", self.code), ("redirect_uri", self.redirect_uri)];
        if let Some(verifier) = self.code_verifier {
            form.push(("code_verifier", verifier));
        }
        let mut req = http.post(format!("{base}/oidc/token"));
        match self.auth {
            ClientAuth::Basic { id, secret } => req = req.basic_auth(id, Some(secret)),
            ClientAuth::Post { id, secret } => form.extend([("client_id", id), ("client_secret", secret)]),
            ClientAuth::Public { id } => form.push(("client_id", id)),
        }
        Answer::read_from(req.form(&form).send().await?).await
    }
}

/// `GET {base}/oidc/userinfo` with `access_token` as the bearer.
pub async fn userinfo(base: &str, access_token: &str) -> Result<Answer> {
    Answer::read_from(
        reqwest::Client::new().get(format!("{base}/oidc/userinfo")).bearer_auth(access_token).send().await?,
    )
    .await
}

/// Checks an ID token the way a relying party must, with the `openidconnect`
/// crate: its signature through the provider's published JWKS (found by
/// discovery), `alg`, `iss`, `aud`, `exp` and `nonce`. Returns its claims as
/// JSON.
pub async fn verify_id_token(
    issuer: &str,
    client_id: &str,
    alg: CoreJwsSigningAlgorithm,
    id_token: &str,
    nonce: &str,
) -> Result<Value> {
    let http = reqwest::Client::builder().redirect(redirect::Policy::none()).build()?;
    let metadata = CoreProviderMetadata::discover_async(IssuerUrl::new(issuer.to_owned())?, &http)
        .await
        .context("discovery failed")?;
    let verifier = CoreIdTokenVerifier::new_public_client(
        ClientId::new(client_id.to_owned()),
        metadata.issuer().clone(),
        metadata.jwks().clone(),
    )
    .set_allowed_algs([alg]);
    let token: CoreIdToken = id_token.parse().context("the ID token does not parse")?;
    let claims = token.claims(&verifier, &Nonce::new(nonce.to_owned())).context("the ID token does not verify")?;
    Ok(serde_json::to_value(claims)?)
}

/// The claims of a JWT, decoded without any check: for looking at a token
/// that [`verify_id_token`] or the relying party checks elsewhere.
pub fn unverified_claims(jwt: &str) -> Result<Value> {
    let payload = jwt.split('.').nth(1).context("a JWT has three parts")?;
    Ok(serde_json::from_slice(&B64URL.decode(payload)?)?)
}

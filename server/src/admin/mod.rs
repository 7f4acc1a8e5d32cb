//! The admin side: services and their accounts, as a JSON API for scripts
//! (bearer token) and a web page for people (session cookie and CSRF token).
//!
//! Both go through the same queries in `store`, so they cannot drift apart.

mod accounts;
pub(crate) mod api;
pub(crate) mod api_accounts;
pub(crate) mod applications;
mod form;
pub(crate) mod groups;
mod kit;
pub(crate) mod links;
pub(crate) mod log;
mod notice;
pub(crate) mod oidc;
mod pages;
pub(crate) mod profiles;
mod services;
mod sesame;
mod session;
mod signin;
mod store;

use anyhow::Context as _;
use axum::Router;
use sesame_proto::ServiceName;

use crate::{config::Config, oidc::OidcState, state::AppState};

/// The name of the service created by `--demo`.
const DEMO_SERVICE: &str = "Demo";

pub fn router<S: OidcState>() -> Router<S> {
    Router::new()
        .merge(api::router())
        .merge(api_accounts::router())
        .merge(links::router())
        .merge(profiles::router())
        .merge(groups::router())
        .merge(accounts::router())
        .merge(pages::router())
        .merge(signin::router())
        .merge(services::router())
        .merge(sesame::router())
        .merge(applications::router())
        .merge(oidc::router())
        .merge(log::router())
}

/// Start-up work of the admin side: the built-in "Sesame admin" service
/// (created before anyone can take its name), and with `--demo` a "Demo"
/// service to try the sign-in with, created once and reused on every later
/// start.
pub async fn on_start(state: &AppState, config: &Config) -> anyhow::Result<()> {
    let now = state.clock.now().as_secs() as i64;
    store::admin_service(&state.db, now).await.map_err(|e| anyhow::anyhow!("cannot create the admin service: {e}"))?;
    if config.demo {
        let name = ServiceName::parse(DEMO_SERVICE).expect("the demo service name is valid");
        let id = store::ensure_service(&state.db, &name, now)
            .await
            .map_err(|e| anyhow::anyhow!("cannot create the demo service: {e}"))?;
        println!("Demo service login page: {}", store::login_url(&state.settings.origin, &id));
        let (client, secret) = oidc::demo_client(state, &id).await.context("cannot set up the demo OIDC client")?;
        let issuer = &state.settings.origin;
        println!("Demo OpenID Connect client (the secret is new on every --demo start):");
        println!("  issuer:        {issuer}");
        println!("  discovery:     {issuer}/.well-known/openid-configuration");
        println!("  client_id:     {}", client.client_id);
        println!("  client_secret: {secret}");
        println!("  redirect_uris: {}", client.redirect_uris.join(" "));
    }
    Ok(())
}

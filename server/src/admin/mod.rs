//! (to be written)

use axum::Router;

use crate::{AppState, Config};

pub fn router() -> Router<AppState> {
    Router::new()
}

/// Start-up work of the admin side (the demo service, for one).
pub async fn on_start(_state: &AppState, _config: &Config) -> anyhow::Result<()> {
    Ok(())
}

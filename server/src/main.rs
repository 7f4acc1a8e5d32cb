//! The `sesame-server` binary: parse options, set up logging, serve.

use std::process::ExitCode;

use clap::Parser as _;
use sesame_server::Config;
use tracing_subscriber::EnvFilter;

#[tokio::main]
async fn main() -> ExitCode {
    let config = Config::parse();
    tracing_subscriber::fmt()
        .with_env_filter(EnvFilter::try_from_env("SESAME_LOG").unwrap_or_else(|_| EnvFilter::new("info")))
        .with_writer(std::io::stderr)
        .init();
    match sesame_server::run(config).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("sesame-server: {e:#}");
            ExitCode::FAILURE
        }
    }
}

//! The `sesame-server` binary: parse options, set up logging, serve.

use std::{io::IsTerminal as _, process::ExitCode};

use clap::Parser as _;
use sesame_server::{config::LogFormat, Config};
use tracing_subscriber::EnvFilter;

#[tokio::main]
async fn main() -> ExitCode {
    let config = Config::parse();
    let filter = EnvFilter::try_from_env("SESAME_LOG").unwrap_or_else(|_| EnvFilter::new("info"));
    let logs = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    match config.log_format {
        // Colour codes are for people at a terminal; in a file or a
        // journal they are noise that breaks searching.
        LogFormat::Text => logs.with_ansi(std::io::stderr().is_terminal()).init(),
        // One JSON object per line, the span fields (method, route) included.
        LogFormat::Json => logs.json().with_current_span(true).with_span_list(false).init(),
    }
    match sesame_server::run(config).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("sesame-server: {e:#}");
            ExitCode::FAILURE
        }
    }
}

//! The `sesame-server` binary: parse options, set up logging, serve.

use std::{io::IsTerminal as _, process::ExitCode};

use clap::Parser as _;
use sesame_server::{
    config::{Command, LogFormat},
    Config,
};
use tracing_subscriber::{layer::SubscriberExt as _, util::SubscriberInitExt as _, EnvFilter, Layer as _};

/// mimalloc rather than the system's allocator: with glibc's, the memory of
/// a burst of connections (2,000 event streams opened and closed) stayed
/// with the process, and grew with each burst until fragmentation settled;
/// mimalloc returns it, and the soak in docs/BENCHMARKS.md stays flat.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> ExitCode {
    let config = Config::parse();
    let filter = EnvFilter::try_from_env("SESAME_LOG").unwrap_or_else(|_| EnvFilter::new("info"));
    let logs = tracing_subscriber::fmt::layer().with_writer(std::io::stderr);
    let logs = match config.log_format {
        // Colour codes are for people at a terminal; in a file or a
        // journal they are noise that breaks searching.
        LogFormat::Text => logs.with_ansi(std::io::stderr().is_terminal()).boxed(),
        // One JSON object per line, the span fields (method, route) included.
        LogFormat::Json => logs.json().with_current_span(true).with_span_list(false).boxed(),
    };
    // The filter is the subscriber's, not a filter of the one layer: with a
    // per-layer filter, an event found disabled by `tracing::enabled!` and
    // then never emitted (sqlx asks before it logs a statement) leaves the
    // layer's filter state behind, and the next event on that thread, one of
    // the server's own, is dropped although its target is enabled.
    tracing_subscriber::registry().with(filter).with(logs).init();
    let outcome = match &config.command {
        Some(Command::Backup { out, force }) => {
            sesame_server::ops::backup::backup(&config, out, *force).await.map(|w| {
                println!("Backed up {} to {} ({} bytes)", w.source.display(), out.display(), w.bytes);
            })
        }
        None => sesame_server::run(config).await,
    };
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("sesame-server: {e:#}");
            ExitCode::FAILURE
        }
    }
}

//! `sesame`: parse the command line, run it, and turn any failure into one
//! line on stderr (and a JSON object on stdout with `--json`).

use std::process::ExitCode;

use clap::Parser as _;
use serde_json::json;

use sesame::{opt::Cli, ui};

fn main() -> ExitCode {
    let cli = Cli::parse();
    // Before the runtime starts its threads: reading the time zone is only
    // safe while the process has one thread.
    ui::init_local_offset();
    let json = cli.global.json;
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("sesame: cannot start: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(sesame::run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            let message = sesame::error_line(&error);
            eprintln!("sesame: {message}");
            if json {
                println!("{}", json!({"error": error.code(), "message": message}));
            }
            ExitCode::FAILURE
        }
    }
}

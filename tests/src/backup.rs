//! Backups: `sesame-server backup`, and a server on a restored data directory.

use super::*;

impl Server {
    /// Starts a server on an existing data directory, such as one restored
    /// from a backup.
    pub async fn start_in(data_dir: TempDir, options: ServerOptions) -> Result<Self> {
        Self::spawn(options, data_dir).await
    }
}

/// Runs `sesame-server ARGS…` to completion (a command such as `backup`,
/// not the server), with no database or Redis from the environment.
pub fn server_command(args: &[&std::ffi::OsStr]) -> Result<Output> {
    Command::new(server_bin())
        .args(args)
        .env("SESAME_LOG", "warn")
        .env_remove("SESAME_DATABASE_URL")
        .env_remove("SESAME_REDIS_URL")
        .env_remove("SESAME_DATA_DIR")
        .stdin(Stdio::null())
        .output()
        .context("cannot run sesame-server")
}

/// Reads `status` events until one that is no longer `pending` (an
/// authenticator opening the request sends a pending one first), and
/// returns its data.
pub async fn final_status(events: &mut EventStream, timeout: Duration) -> Result<Value> {
    let deadline = Instant::now() + timeout;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let status = events.next_named("status", left).await?.json();
        if status["status"] != "pending" {
            return Ok(status);
        }
    }
}

//! `sesame-server backup --out FILE`: a consistent copy of the embedded
//! SQLite database, taken while the server keeps serving.
//!
//! `VACUUM INTO` reads the database inside one read transaction, so the copy
//! is a snapshot of one moment even while the server commits (WAL lets the
//! reader and the writer run side by side), and it holds every commit,
//! including those still in the WAL file, which a plain `cp` would miss. The
//! copy is written under a temporary name next to `FILE`, checked, synced
//! and only then renamed into place: a failed backup leaves no partial file
//! behind, and an existing `FILE` is replaced only with `--force`, in one
//! atomic step. The copy is its owner's alone (mode 0600) from its first
//! byte, since it holds the server's signing seed.
//!
//! The backup opens the database as it is and runs no migration: a newer
//! binary must not upgrade the schema of a database an older server serves.

use std::{
    path::{Path, PathBuf},
    time::Duration,
};

use anyhow::{bail, Context as _};
use sqlx::{sqlite::SqliteConnectOptions, ConnectOptions as _, Connection as _};

use crate::config::Config;

/// What a finished backup wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Written {
    pub source: PathBuf,
    pub bytes: u64,
}

/// Copies the server's SQLite database to `out`. Refuses an existing `out`
/// unless `force`.
pub async fn backup(config: &Config, out: &Path, force: bool) -> anyhow::Result<Written> {
    let source = source_path(config)?;
    if !source.is_file() {
        bail!("no database at {} (check --data-dir or --database-url)", source.display());
    }
    if !force && std::fs::symlink_metadata(out).is_ok() {
        bail!("{} already exists; pass --force to replace it", out.display());
    }
    let partial = partial_path(out)?;
    let outcome = write_copy(&source, &partial).await;
    let outcome = outcome.and_then(|()| {
        std::fs::rename(&partial, out)
            .with_context(|| format!("cannot move the backup into place at {}", out.display()))
    });
    if let Err(e) = outcome {
        // Never leave half a database where a restore might pick it up.
        let _ = std::fs::remove_file(&partial);
        return Err(e);
    }
    sync_parent(out);
    let bytes = std::fs::metadata(out).map(|m| m.len()).unwrap_or(0);
    Ok(Written { source, bytes })
}

/// The database file the server uses: `sesame.db` in the data directory,
/// or the path of a `sqlite://` URL. PostgreSQL has its own tools.
fn source_path(config: &Config) -> anyhow::Result<PathBuf> {
    let Some(url) = &config.database_url else {
        return Ok(config.data_dir.join("sesame.db"));
    };
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        bail!("backup copies the embedded SQLite database; back PostgreSQL up with pg_dump (see OPERATIONS.md)");
    }
    let rest =
        url.strip_prefix("sqlite://").or_else(|| url.strip_prefix("sqlite:")).context("unsupported database URL")?;
    let path = rest.split_once('?').map_or(rest, |(path, _)| path);
    Ok(PathBuf::from(path))
}

/// `.NAME.partial` next to `out`: the same file system, so the final rename
/// is atomic.
fn partial_path(out: &Path) -> anyhow::Result<PathBuf> {
    let name = out.file_name().context("--out must name a file")?.to_string_lossy();
    let partial = out.with_file_name(format!(".{name}.partial"));
    // A leftover of a backup that was killed: it was never complete.
    match std::fs::remove_file(&partial) {
        Ok(()) => Ok(partial),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(partial),
        Err(e) => Err(e).with_context(|| format!("cannot remove the stale {}", partial.display())),
    }
}

/// `VACUUM INTO` the partial file, check it, and sync it to disk.
async fn write_copy(source: &Path, partial: &Path) -> anyhow::Result<()> {
    // Neither created nor migrated: the database as the server left it. The
    // busy timeout covers a checkpoint that holds a lock for a moment.
    let options =
        SqliteConnectOptions::new().filename(source).busy_timeout(Duration::from_secs(30)).disable_statement_logging();
    let mut conn = options.connect().await.with_context(|| format!("cannot open {}", source.display()))?;
    let target = partial.to_str().context("--out must be a UTF-8 path")?;
    // The copy holds the server's signing seed and the OIDC signing keys:
    // it is made readable by its owner alone before a byte goes into it.
    // SQLite writes into an empty file it finds, and keeps its mode.
    private_file(partial).with_context(|| format!("cannot write the backup to {}", partial.display()))?;
    sqlx::query("VACUUM INTO $1")
        .bind(target)
        .execute(&mut conn)
        .await
        .with_context(|| format!("cannot write the backup to {}", partial.display()))?;
    conn.close().await?;

    let copy = SqliteConnectOptions::new().filename(partial).read_only(true).disable_statement_logging();
    let mut conn = copy.connect().await.context("cannot open the copy to check it")?;
    let verdict: String = sqlx::query_scalar("PRAGMA quick_check").fetch_one(&mut conn).await?;
    conn.close().await?;
    if verdict != "ok" {
        bail!("the copy failed its check ({verdict}); nothing was written");
    }
    std::fs::File::open(partial)
        .and_then(|file| file.sync_all())
        .with_context(|| format!("cannot sync {} to disk", partial.display()))?;
    Ok(())
}

/// Creates `path`, empty, readable and writable by its owner only.
fn private_file(path: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt as _;
    std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(path).map(drop)
}

/// Syncs the folder that holds `path`, so that the rename survives a power
/// loss. Best effort: some file systems cannot sync a folder.
fn sync_parent(path: &Path) {
    let parent = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    if let Ok(dir) = std::fs::File::open(parent) {
        let _ = dir.sync_all();
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser as _;

    use super::*;

    fn config(args: &[&str]) -> Config {
        Config::parse_from([&["sesame-server"][..], args].concat())
    }

    #[test]
    fn the_source_is_the_data_directory_or_the_sqlite_url() {
        assert_eq!(
            source_path(&config(&["--data-dir", "/srv/sesame"])).expect("a path"),
            Path::new("/srv/sesame/sesame.db")
        );
        let url = config(&["--database-url", "sqlite:///var/lib/sesame/x.db?mode=rwc"]);
        assert_eq!(source_path(&url).expect("a path"), Path::new("/var/lib/sesame/x.db"));
    }

    #[test]
    fn postgres_is_sent_to_pg_dump() {
        let err = source_path(&config(&["--database-url", "postgres://db/sesame"])).expect_err("not SQLite");
        assert!(err.to_string().contains("pg_dump"), "{err}");
    }
}

//! TLS to the database and Redis: a PostgreSQL cluster and a Redis server of
//! the test's own, each presenting a certificate from a test CA.

use super::*;

/// Runs `cmd` as the `postgres` user when we are root (PostgreSQL refuses to
/// run as root), as ourselves otherwise.
fn as_postgres(program: &Path, args: &[&std::ffi::OsStr]) -> Command {
    let root = rustix::process::getuid().is_root();
    let mut cmd = if root { Command::new("runuser") } else { Command::new(program) };
    if root {
        cmd.args(["-u", "postgres", "--"]).arg(program);
    }
    cmd.args(args);
    cmd
}

/// The newest installed PostgreSQL's `bin` folder (Debian's layout).
fn postgres_bin_dir() -> Result<PathBuf> {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .context("no /usr/lib/postgresql (install it: apt-get install postgresql)")?
        .filter_map(|e| e.ok().map(|e| e.path().join("bin")))
        .filter(|p| p.join("initdb").exists())
        .collect();
    dirs.sort_by_key(|p| {
        p.parent().and_then(|v| v.file_name()).and_then(|v| v.to_str()).and_then(|v| v.parse::<u32>().ok())
    });
    dirs.pop().context("no PostgreSQL with initdb under /usr/lib/postgresql")
}

/// A PostgreSQL cluster of one test, listening on 127.0.0.1 only, and with
/// `ssl = on` and a given server certificate if asked. Tests can stop it and
/// start it again under a running server. Stopped on drop.
#[derive(Debug)]
pub struct PgCluster {
    pub port: u16,
    dir: TempDir,
    bin: PathBuf,
    /// The server options `pg_ctl start` passes, kept for a restart.
    options: String,
}

impl PgCluster {
    /// A cluster without TLS.
    pub fn start() -> Result<Self> {
        Self::start_with(None)
    }

    /// A cluster that offers TLS with `leaf` as its certificate.
    pub fn start_tls(leaf: &proxy::Leaf) -> Result<Self> {
        Self::start_with(Some(leaf))
    }

    fn start_with(leaf: Option<&proxy::Leaf>) -> Result<Self> {
        let dir = tempfile::Builder::new().prefix("sesame-pg-").tempdir()?;
        let bin = postgres_bin_dir()?;
        let data = dir.path().join("data");
        let port = free_port();
        let mut options = format!("-p {port} -k {} -c listen_addresses=127.0.0.1 -c fsync=off", dir.path().display());
        if let Some(leaf) = leaf {
            // The postgres user must own its folder, and may only use a key
            // that no one else can read.
            let (crt, key) = (dir.path().join("server.crt"), dir.path().join("server.key"));
            std::fs::copy(&leaf.cert, &crt)?;
            std::fs::copy(&leaf.key, &key)?;
            use std::os::unix::fs::PermissionsExt as _;
            std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600))?;
            options.push_str(&format!(
                " -c ssl=on -c ssl_cert_file={} -c ssl_key_file={}",
                crt.display(),
                key.display()
            ));
        }
        if rustix::process::getuid().is_root() {
            let status = Command::new("chown").args(["-R", "postgres"]).arg(dir.path()).status()?;
            ensure_success(status, "chown")?;
        }
        let out = as_postgres(
            &bin.join("initdb"),
            &[
                "-D".as_ref(),
                data.as_os_str(),
                "--auth=trust".as_ref(),
                "-U".as_ref(),
                "postgres".as_ref(),
                "--no-sync".as_ref(),
            ],
        )
        .output()
        .context("cannot run initdb")?;
        if !out.status.success() {
            bail!("initdb failed: {}", String::from_utf8_lossy(&out.stderr));
        }
        let cluster = Self { port, dir, bin, options };
        cluster.restart()?;
        Ok(cluster)
    }

    /// Starts the (stopped) cluster again, on the same port and data.
    pub fn restart(&self) -> Result<()> {
        let log = self.dir.path().join("server.log");
        let out = self
            .pg_ctl(&[
                "-l".as_ref(),
                log.as_os_str(),
                "-w".as_ref(),
                "-o".as_ref(),
                self.options.as_ref(),
                "start".as_ref(),
            ])
            .output()
            .context("cannot run pg_ctl")?;
        if !out.status.success() {
            bail!("pg_ctl start failed: {}", std::fs::read_to_string(&log).unwrap_or_default());
        }
        Ok(())
    }

    /// Stops it at once, as a crash or a lost network would, ending every
    /// connection.
    pub fn stop(&self) -> Result<()> {
        let out = self.pg_ctl(&["-m".as_ref(), "immediate".as_ref(), "-w".as_ref(), "stop".as_ref()]).output()?;
        if !out.status.success() {
            bail!("pg_ctl stop failed: {}", String::from_utf8_lossy(&out.stderr));
        }
        Ok(())
    }

    fn pg_ctl(&self, args: &[&std::ffi::OsStr]) -> Command {
        let data = self.dir.path().join("data");
        let mut all: Vec<&std::ffi::OsStr> = vec!["-D".as_ref(), data.as_os_str()];
        all.extend_from_slice(args);
        as_postgres(&self.bin.join("pg_ctl"), &all)
    }

    /// The URL of its `postgres` database over TCP, without any TLS option.
    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    /// Runs one query over the Unix socket (no TLS) and returns its output.
    pub fn query(&self, sql: &str) -> Result<String> {
        let out = Command::new("psql")
            .args(["-h"])
            .arg(self.dir.path())
            .args(["-p", &self.port.to_string(), "-U", "postgres", "-d", "postgres", "-qtAc", sql])
            .output()
            .context("cannot run psql")?;
        if !out.status.success() {
            bail!("psql {sql:?} failed: {}", String::from_utf8_lossy(&out.stderr));
        }
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
    }
}

impl Drop for PgCluster {
    fn drop(&mut self) {
        let _ = self.stop();
    }
}

fn ensure_success(status: std::process::ExitStatus, what: &str) -> Result<()> {
    if !status.success() {
        bail!("{what} failed with {status}");
    }
    Ok(())
}

impl Redis {
    /// A Redis that speaks only TLS, with `leaf` as its certificate; clients
    /// need not present one. `restart` brings it back without TLS, so tests
    /// of TLS do not restart it.
    pub fn start_tls(leaf: &proxy::Leaf, ca: &Path) -> Result<Self> {
        let dir = tempfile::Builder::new().prefix("sesame-redis-tls-").tempdir()?;
        let port = free_port();
        let mut child = Command::new("redis-server")
            .args(["--port", "0", "--tls-port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no", "--tls-auth-clients", "no"])
            .arg("--tls-cert-file")
            .arg(&leaf.cert)
            .arg("--tls-key-file")
            .arg(&leaf.key)
            .arg("--tls-ca-cert-file")
            .arg(ca)
            .arg("--dir")
            .arg(dir.path())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .context("cannot start redis-server")?;
        let stdout = child.stdout.take().context("redis stdout")?;
        let redis = Self { child: Some(child), port, dir };
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let ready = BufReader::new(stdout).lines().map_while(|l| l.ok()).any(|l| l.contains("Ready to accept"));
            let _ = tx.send(ready);
        });
        if !rx.recv_timeout(Duration::from_secs(10)).unwrap_or(false) {
            bail!("redis-server with TLS on port {port} did not become ready (is it built with TLS?)");
        }
        Ok(redis)
    }

    /// `rediss://127.0.0.1:PORT`, for a server started with [`Redis::start_tls`].
    pub fn tls_url(&self) -> String {
        format!("rediss://127.0.0.1:{}", self.port)
    }
}

/// Runs `sesame-server ARGS…` (SQLite in a fresh data directory unless the
/// arguments say otherwise) and expects it to stop by itself within 30 s;
/// returns its exit code and stderr.
pub fn server_start_failure(args: &[&std::ffi::OsStr]) -> Result<(Option<i32>, String)> {
    let data_dir = tempfile::Builder::new().prefix("sesame-e2e-").tempdir()?;
    let mut child = Command::new(server_bin())
        .arg("--listen")
        .arg(format!("127.0.0.1:{}", free_port()))
        .arg("--data-dir")
        .arg(data_dir.path())
        .arg("--admin-token")
        .arg(ADMIN_TOKEN)
        .args(args)
        .env("SESAME_LOG", "warn")
        .env_remove("SESAME_DATABASE_URL")
        .env_remove("SESAME_REDIS_URL")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .context("cannot start sesame-server")?;
    let deadline = Instant::now() + Duration::from_secs(30);
    while child.try_wait()?.is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            let out = child.wait_with_output()?;
            bail!("sesame-server kept running; stderr:\n{}", String::from_utf8_lossy(&out.stderr));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let out = child.wait_with_output()?;
    Ok((out.status.code(), String::from_utf8_lossy(&out.stderr).into_owned()))
}

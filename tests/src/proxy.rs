//! Deployments behind TLS: a certificate authority made by the test, and
//! nginx run from the very configuration docs/OPERATIONS.md shows, so that
//! the documentation and what is tested cannot drift apart.

use std::{
    net::TcpStream,
    path::PathBuf,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{bail, ensure, Context as _};
use base64::{engine::general_purpose::STANDARD as B64, Engine as _};
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair, KeyUsagePurpose};
use sha2::{Digest as _, Sha256};
use tempfile::TempDir;

use crate::{workspace_root, Result};

/// How long a certificate is valid, relative to now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Validity {
    /// From yesterday to a week from now.
    Current,
    /// Ended yesterday.
    Expired,
}

/// A certificate authority of the test's own, as a company runs one. Its
/// files live in a folder that goes with it.
pub struct TestCa {
    key: KeyPair,
    cert: rcgen::Certificate,
    dir: TempDir,
}

impl std::fmt::Debug for TestCa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestCa").field("dir", &self.dir.path()).finish_non_exhaustive()
    }
}

/// A server certificate and its key, as PEM files.
#[derive(Debug, Clone)]
pub struct Leaf {
    pub cert: PathBuf,
    pub key: PathBuf,
    /// base64(SHA-256(SubjectPublicKeyInfo)), as Chromium's
    /// `--ignore-certificate-errors-spki-list` takes it.
    pub spki_sha256: String,
}

impl TestCa {
    pub fn new(name: &str) -> Result<Self> {
        let dir = tempfile::Builder::new().prefix("sesame-ca-").tempdir()?;
        let key = KeyPair::generate()?;
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        params.distinguished_name.push(DnType::CommonName, name);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let cert = params.self_signed(&key)?;
        std::fs::write(dir.path().join("ca.pem"), cert.pem())?;
        Ok(Self { key, cert, dir })
    }

    /// The CA certificate as a PEM file, as a user would be handed it.
    pub fn pem_file(&self) -> PathBuf {
        self.dir.path().join("ca.pem")
    }

    /// Issues a server certificate for `host` and writes it as `file.pem`
    /// and `file.key`.
    pub fn issue(&self, file: &str, host: &str, validity: Validity) -> Result<Leaf> {
        let key = KeyPair::generate()?;
        let mut params = CertificateParams::new(vec![host.to_owned()])?;
        params.distinguished_name.push(DnType::CommonName, host);
        let day = time::Duration::days(1);
        let now = time::OffsetDateTime::now_utc();
        (params.not_before, params.not_after) = match validity {
            Validity::Current => (now - day, now + 7 * day),
            Validity::Expired => (now - 30 * day, now - day),
        };
        let cert = params.signed_by(&key, &self.cert, &self.key)?;
        let leaf = Leaf {
            cert: self.dir.path().join(format!("{file}.pem")),
            key: self.dir.path().join(format!("{file}.key")),
            spki_sha256: B64.encode(Sha256::digest(key.public_key_der())),
        };
        std::fs::write(&leaf.cert, cert.pem())?;
        std::fs::write(&leaf.key, key.serialize_pem())?;
        Ok(leaf)
    }
}

/// The one ```nginx block of docs/OPERATIONS.md, with each `(from, to)`
/// replaced. Every `from` must occur, so that a change to the document
/// that the test no longer matches fails here, loudly, rather than testing
/// something else.
pub fn documented_nginx_config(replacements: &[(&str, &str)]) -> Result<String> {
    let doc = std::fs::read_to_string(workspace_root().join("docs").join("OPERATIONS.md"))?;
    let blocks: Vec<&str> =
        doc.split("```nginx\n").skip(1).filter_map(|rest| rest.split_once("\n```").map(|b| b.0)).collect();
    let [block] = blocks.as_slice() else {
        bail!("docs/OPERATIONS.md has {} nginx blocks, expected one", blocks.len())
    };
    let mut config = (*block).to_owned();
    for (from, to) in replacements {
        ensure!(config.contains(from), "the documented nginx configuration no longer contains {from:?}");
        config = config.replace(from, to);
    }
    Ok(config)
}

/// An nginx owned by the test: not a daemon, one process, with its pid
/// file, logs and temporary files in its own folder. Killed on drop.
#[derive(Debug)]
pub struct Nginx {
    child: Child,
    pub port: u16,
    dir: TempDir,
}

impl Nginx {
    /// Runs nginx with `http` (what goes inside the `http` block, such as
    /// the documented configuration) and waits until `port` accepts
    /// connections.
    pub fn start(http: &str, port: u16) -> Result<Self> {
        let dir = tempfile::Builder::new().prefix("sesame-nginx-").tempdir()?;
        let path = |name: &str| dir.path().join(name).display().to_string();
        // `master_process off` keeps nginx to this one process, which runs as
        // whoever started the test (even root), so that no worker running as
        // another user needs access to the test's folder.
        let config = format!(
            "daemon off;\nmaster_process off;\npid {pid};\nerror_log {log} info;\n\
             events {{ worker_connections 1024; }}\n\
             http {{\n    access_log {access};\n    client_body_temp_path {tmp}/body;\n    proxy_temp_path {tmp}/proxy;\n\
             fastcgi_temp_path {tmp}/fastcgi;\n    uwsgi_temp_path {tmp}/uwsgi;\n    scgi_temp_path {tmp}/scgi;\n\
             {http}\n}}\n",
            pid = path("nginx.pid"),
            log = path("error.log"),
            access = path("access.log"),
            tmp = path("tmp"),
        );
        std::fs::create_dir(dir.path().join("tmp"))?;
        std::fs::write(dir.path().join("nginx.conf"), config)?;
        let log = std::fs::File::create(dir.path().join("stderr.log"))?;
        let child = Command::new(nginx_bin())
            .arg("-p")
            .arg(dir.path())
            .arg("-c")
            .arg(dir.path().join("nginx.conf"))
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .context("cannot start nginx (install it: apt-get install nginx)")?;
        let mut nginx = Self { child, port, dir };
        nginx.wait_ready()?;
        Ok(nginx)
    }

    fn wait_ready(&mut self) -> Result<()> {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(status) = self.child.try_wait()? {
                bail!("nginx exited with {status}:\n{}", self.log());
            }
            if TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!("nginx did not listen on port {} within 10 s:\n{}", self.port, self.log());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// What nginx wrote to stderr and its error log.
    pub fn log(&self) -> String {
        let read = |name: &str| std::fs::read_to_string(self.dir.path().join(name)).unwrap_or_default();
        format!("{}{}", read("stderr.log"), read("error.log"))
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!("--- nginx log (port {}) ---\n{}", self.port, self.log());
        }
    }
}

/// nginx, or `SESAME_TEST_NGINX`.
fn nginx_bin() -> PathBuf {
    std::env::var_os("SESAME_TEST_NGINX").map_or_else(|| PathBuf::from("/usr/sbin/nginx"), PathBuf::from)
}

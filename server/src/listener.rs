//! TLS on the public listener: the certificate and key from `--tls-cert`
//! and `--tls-key`, HTTP/2 offered through ALPN, and reloads without a
//! restart.
//!
//! Behind a proxy the listener speaks plain HTTP, as before. Alone, it
//! speaks TLS, and a browser that negotiates `h2` carries every event
//! stream of every open login page over one connection: over HTTP/1.1 a
//! browser opens at most six connections per server, and a few waiting
//! login pages use them all.
//!
//! Short-lived certificates are renewed in place, so the files are read
//! again every `--tls-check-interval` seconds and on `SIGHUP`. A handshake
//! takes whichever certificate is current when it starts; connections
//! already open keep theirs. A certificate that cannot be used (a missing
//! file, no PEM, a key of another certificate) stops the start with one
//! line, and at a reload leaves the previous one serving, with an error in
//! the log.

use std::{
    path::PathBuf,
    sync::{Arc, PoisonError, RwLock},
    time::Duration,
};

use anyhow::{bail, Context as _};
use rustls::{
    crypto::CryptoProvider,
    pki_types::{pem::PemObject as _, CertificateDer, PrivateKeyDer},
    server::{ClientHello, ResolvesServerCert},
    sign::CertifiedKey,
    InconsistentKeys, ServerConfig,
};
use sha2::{Digest as _, Sha256};
use tokio_rustls::TlsAcceptor;

use crate::config::Config;

/// The protocols offered through ALPN, in the server's order of preference.
const ALPN: [&[u8]; 2] = [b"h2", b"http/1.1"];

/// The listener's TLS: its acceptor and what reloads its certificate.
#[derive(Debug)]
pub struct ListenerTls {
    files: CertFiles,
    current: Arc<Current>,
    /// The files' contents when they were last looked at.
    seen: Contents,
    config: Arc<ServerConfig>,
}

/// The two files, named as their options in every error.
#[derive(Debug, Clone)]
struct CertFiles {
    cert: PathBuf,
    key: PathBuf,
}

/// What the two files held, or why they could not be read.
type Contents = Result<(Vec<u8>, Vec<u8>), String>;

impl ListenerTls {
    /// The listener's TLS from `--tls-cert` and `--tls-key`; `None` when
    /// neither is given. Every problem with the files is one line that
    /// names the option and the file.
    pub fn from_config(config: &Config) -> anyhow::Result<Option<Self>> {
        let files = match (&config.tls_cert, &config.tls_key) {
            (None, None) => return Ok(None),
            (Some(cert), Some(key)) => CertFiles { cert: cert.clone(), key: key.clone() },
            (Some(_), None) => bail!("--tls-cert needs --tls-key, the file of its private key"),
            (None, Some(_)) => bail!("--tls-key needs --tls-cert, the file of its certificate"),
        };
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let cert =
            std::fs::read(&files.cert).with_context(|| format!("cannot read --tls-cert {}", files.cert.display()))?;
        let key =
            std::fs::read(&files.key).with_context(|| format!("cannot read --tls-key {}", files.key.display()))?;
        let certified = files.parse(&cert, &key, &provider)?;
        tracing::info!(fingerprint = fingerprint(&certified), "TLS certificate loaded");
        let current = Arc::new(Current(RwLock::new(Arc::new(certified))));
        let mut server = ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .context("rustls offers no TLS version with ring")?
            .with_no_client_auth()
            .with_cert_resolver(current.clone());
        server.alpn_protocols = ALPN.iter().map(|p| p.to_vec()).collect();
        Ok(Some(Self { files, current, seen: Ok((cert, key)), config: Arc::new(server) }))
    }

    /// The acceptor for the listener's connections. Its handshakes take the
    /// certificate current at the time, whatever [`ListenerTls::watch`]
    /// does after this call.
    pub fn acceptor(&self) -> TlsAcceptor {
        TlsAcceptor::from(self.config.clone())
    }

    /// Watches the files: reloads the certificate whenever they change
    /// (looked at every `interval`; never when it is zero) and at each
    /// `SIGHUP`, for as long as the process runs. The signal is taken from
    /// here on, so a `SIGHUP` no longer ends the process.
    pub fn watch(mut self, interval: Duration) -> anyhow::Result<()> {
        #[cfg(unix)]
        let mut hangup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
            .context("cannot listen for SIGHUP")?;
        tokio::spawn(async move {
            loop {
                let poll = async {
                    if interval.is_zero() {
                        std::future::pending::<()>().await;
                    }
                    tokio::time::sleep(interval).await;
                };
                #[cfg(unix)]
                let asked = async {
                    if hangup.recv().await.is_none() {
                        std::future::pending::<()>().await;
                    }
                };
                #[cfg(not(unix))]
                let asked = std::future::pending::<()>();
                let forced = tokio::select! {
                    () = poll => false,
                    () = asked => true,
                };
                self.look(forced).await;
            }
        });
        Ok(())
    }

    /// Reads the files and, when they changed or `forced`, makes what they
    /// hold the current certificate. A change is reported once: files that
    /// stay broken are not reported again at every look.
    async fn look(&mut self, forced: bool) {
        let contents = self.files.read().await;
        if !forced && contents == self.seen {
            return;
        }
        self.seen = contents.clone();
        let provider = rustls::crypto::ring::default_provider();
        let loaded =
            contents.map_err(anyhow::Error::msg).and_then(|(cert, key)| self.files.parse(&cert, &key, &provider));
        match loaded {
            Ok(certified) => {
                let fingerprint = fingerprint(&certified);
                *self.current.0.write().unwrap_or_else(PoisonError::into_inner) = Arc::new(certified);
                tracing::info!(fingerprint, "TLS certificate reloaded");
            }
            Err(e) => {
                tracing::error!(
                    error = %format_args!("{e:#}"),
                    "cannot reload the TLS certificate; the previous one keeps serving"
                );
            }
        }
    }
}

impl CertFiles {
    /// Both files' contents, or the one line that says which cannot be read.
    async fn read(&self) -> Contents {
        let read = |option: &'static str, path: PathBuf| async move {
            tokio::fs::read(&path).await.map_err(|e| format!("cannot read {option} {}: {e}", path.display()))
        };
        Ok((read("--tls-cert", self.cert.clone()).await?, read("--tls-key", self.key.clone()).await?))
    }

    /// The certificate chain in `cert` with the key in `key`, checked to
    /// belong together.
    fn parse(&self, cert: &[u8], key: &[u8], provider: &CryptoProvider) -> anyhow::Result<CertifiedKey> {
        let (cert_file, key_file) = (self.cert.display(), self.key.display());
        let chain = CertificateDer::pem_slice_iter(cert)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| anyhow::anyhow!("--tls-cert {cert_file} is not valid PEM ({e})"))?;
        if chain.is_empty() {
            bail!("--tls-cert {cert_file} holds no PEM certificate (-----BEGIN CERTIFICATE-----)");
        }
        let key = PrivateKeyDer::from_pem_slice(key).map_err(|e| match e {
            rustls::pki_types::pem::Error::NoItemsFound => {
                anyhow::anyhow!("--tls-key {key_file} holds no PEM private key (-----BEGIN PRIVATE KEY-----)")
            }
            e => anyhow::anyhow!("--tls-key {key_file} is not valid PEM ({e})"),
        })?;
        let signing = provider
            .key_provider
            .load_private_key(key)
            .map_err(|e| anyhow::anyhow!("--tls-key {key_file} holds a key that cannot sign ({e})"))?;
        let certified = CertifiedKey::new(chain, signing);
        match certified.keys_match() {
            // A key whose public half rustls cannot compute is taken on
            // trust, as rustls itself does.
            Ok(()) | Err(rustls::Error::InconsistentKeys(InconsistentKeys::Unknown)) => Ok(certified),
            Err(rustls::Error::InconsistentKeys(InconsistentKeys::KeyMismatch)) => {
                bail!("--tls-key {key_file} is not the key of the certificate in --tls-cert {cert_file}")
            }
            Err(e) => bail!("the first certificate in --tls-cert {cert_file} is not valid ({e})"),
        }
    }
}

/// The certificate handshakes take, replaced whole at a reload.
#[derive(Debug)]
struct Current(RwLock<Arc<CertifiedKey>>);

impl ResolvesServerCert for Current {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.0.read().unwrap_or_else(PoisonError::into_inner).clone())
    }
}

/// The SHA-256 of the server's certificate, in hex, as `openssl x509
/// -fingerprint -sha256` shows it (without the colons), so that the log
/// says which certificate is serving.
fn fingerprint(certified: &CertifiedKey) -> String {
    certified.cert.first().map_or_else(String::new, |cert| hex::encode(Sha256::digest(cert.as_ref())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_file_without_the_other_is_one_line() {
        use clap::Parser as _;
        let config = Config::parse_from(["sesame-server", "--tls-cert", "cert.pem"]);
        let err = ListenerTls::from_config(&config).expect_err("a certificate without its key");
        assert_eq!(err.to_string(), "--tls-cert needs --tls-key, the file of its private key");
        let config = Config::parse_from(["sesame-server", "--tls-key", "key.pem"]);
        let err = ListenerTls::from_config(&config).expect_err("a key without its certificate");
        assert_eq!(err.to_string(), "--tls-key needs --tls-cert, the file of its certificate");
    }

    #[test]
    fn the_public_url_defaults_to_https_with_a_certificate() {
        use clap::Parser as _;
        let listen = ["sesame-server", "--listen", "127.0.0.1:8443"];
        let plain = Config::parse_from(listen);
        assert_eq!(plain.default_public_url(), "http://127.0.0.1:8443");
        let tls = Config::parse_from([&listen[..], &["--tls-cert", "cert.pem", "--tls-key", "key.pem"]].concat());
        assert_eq!(tls.default_public_url(), "https://127.0.0.1:8443");
    }
}

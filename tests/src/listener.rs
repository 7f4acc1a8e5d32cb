//! TLS on the server's own listener: its certificate files, and a client
//! that says which certificate it was shown and which protocol ALPN chose.

use std::sync::Arc;

use base64::{engine::general_purpose::STANDARD as B64, Engine as _};
use rustls::pki_types::{pem::PemObject as _, CertificateDer, ServerName};
use tokio_rustls::{client::TlsStream, TlsConnector};

use super::*;
use crate::proxy::{Leaf, TestCa, Validity};

/// The host name the listener's certificates are issued for.
pub const HOST: &str = "localhost";

/// The files `--tls-cert` and `--tls-key` name, in a folder of their own
/// that tests write new certificates into, and the CA that issues them.
#[derive(Debug, Clone)]
pub struct ListenerCert {
    pub cert: PathBuf,
    pub key: PathBuf,
    /// The CA certificate, which clients of the test trust.
    pub ca: PathBuf,
    /// The Chromium switch that trusts the first certificate's key.
    pub spki_sha256: String,
}

/// A CA, and the listener's files holding the first certificate it issued.
#[derive(Debug)]
pub struct ListenerCa {
    pub ca: TestCa,
    pub files: ListenerCert,
    /// The listener's folder, removed with the CA.
    _dir: TempDir,
}

impl ListenerCa {
    pub fn new() -> Result<Self> {
        let ca = TestCa::new("Example Corp Internal CA")?;
        let dir = tempfile::Builder::new().prefix("sesame-listener-").tempdir()?;
        let first = ca.issue("first", HOST, Validity::Current)?;
        let files = ListenerCert {
            cert: dir.path().join("fullchain.pem"),
            key: dir.path().join("privkey.pem"),
            ca: ca.pem_file(),
            spki_sha256: first.spki_sha256.clone(),
        };
        std::fs::copy(&first.cert, &files.cert)?;
        std::fs::copy(&first.key, &files.key)?;
        Ok(Self { ca, files, _dir: dir })
    }

    /// A new certificate for the same host, named `name` in the CA's
    /// folder, not yet in the listener's files.
    pub fn issue(&self, name: &str) -> Result<Leaf> {
        self.ca.issue(name, HOST, Validity::Current)
    }

    /// Puts `leaf` in the listener's files, as a renewal does: each file
    /// written whole under another name and renamed over the old one.
    pub fn install(&self, leaf: &Leaf) -> Result<()> {
        replace(&self.files.key, &std::fs::read(&leaf.key)?)?;
        replace(&self.files.cert, &std::fs::read(&leaf.cert)?)
    }

    /// The DER of the certificate the listener's files hold now.
    pub fn installed(&self) -> Result<Vec<u8>> {
        certificate_der(&self.files.cert)
    }
}

/// Replaces `path` with `contents` at once (a rename), so that the server
/// never reads half a file.
pub fn replace(path: &Path, contents: &[u8]) -> Result<()> {
    let part = path.with_extension("part");
    std::fs::write(&part, contents)?;
    std::fs::rename(&part, path)?;
    Ok(())
}

/// The DER of the first certificate in a PEM file.
pub fn certificate_der(path: &Path) -> Result<Vec<u8>> {
    let pem = std::fs::read_to_string(path)?;
    let body = pem
        .split("-----BEGIN CERTIFICATE-----")
        .nth(1)
        .and_then(|rest| rest.split("-----END CERTIFICATE-----").next())
        .with_context(|| format!("{} holds no certificate", path.display()))?;
    Ok(B64.decode(body.split_whitespace().collect::<String>())?)
}

/// What a TLS handshake with the listener settled.
#[derive(Debug)]
pub struct Handshake {
    /// The certificate the server presented, as DER.
    pub certificate: Vec<u8>,
    /// The protocol ALPN chose, if any.
    pub alpn: Option<String>,
    pub stream: TlsStream<tokio::net::TcpStream>,
}

/// Connects to `127.0.0.1:port` over TLS as `localhost`, trusting only the
/// CA in `ca`, and offers `alpn`. A new connection each time, so it meets
/// whichever certificate is current.
pub async fn handshake(port: u16, ca: &Path, alpn: &[&str]) -> Result<Handshake> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(ca)? {
        roots.add(cert?)?;
    }
    let mut config = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|p| p.as_bytes().to_vec()).collect();
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port)).await?;
    let stream = TlsConnector::from(Arc::new(config)).connect(ServerName::try_from(HOST)?, tcp).await?;
    let (_, session) = stream.get_ref();
    let certificate =
        session.peer_certificates().and_then(|c| c.first()).context("the server presented no certificate")?.to_vec();
    let alpn = session.alpn_protocol().map(|p| String::from_utf8_lossy(p).into_owned());
    Ok(Handshake { certificate, alpn, stream })
}

/// Sends `GET path` over HTTP/2 on an open TLS stream; returns the
/// response's status and HTTP version.
pub async fn get_over_http2(stream: TlsStream<tokio::net::TcpStream>, path: &str) -> Result<(u16, reqwest::Version)> {
    use hyper_util::rt::{TokioExecutor, TokioIo};
    let (mut sender, connection) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream)).await?;
    tokio::spawn(connection);
    let request = hyper::Request::get(format!("https://{HOST}{path}")).body(String::new())?;
    let response = sender.send_request(request).await?;
    Ok((response.status().as_u16(), response.version()))
}

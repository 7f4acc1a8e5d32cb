//! What the authenticator trusts for HTTPS: the system's trust store, as
//! curl and browsers do, plus the CAs of `--ca-file` for one run; and the
//! reason, in words, when an origin's certificate is refused.
//!
//! The system's store is read by rustls-native-certs (through reqwest's
//! native-roots feature): `/etc/ssl/certs` and its kin on Linux, or only
//! what `SSL_CERT_FILE` and `SSL_CERT_DIR` name when they are set. No root
//! list is compiled in, so a company's own CA works once the system trusts it.

use std::path::{Path, PathBuf};

use rustls::pki_types::{pem::PemObject as _, CertificateDer};

use crate::Error;

/// Certificate authorities trusted on top of the system's, for one run.
#[derive(Clone, Default)]
pub(crate) struct ExtraRoots(Vec<reqwest::Certificate>);

impl std::fmt::Debug for ExtraRoots {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("ExtraRoots").field(&self.0.len()).finish()
    }
}

impl ExtraRoots {
    /// Reads every PEM certificate in `path`. A file that cannot be read, or
    /// that holds no usable certificate, is an error: silently trusting
    /// nothing more would surface later as a puzzling "unknown issuer".
    pub(crate) fn load(path: &Path) -> Result<Self, Error> {
        let fail = |reason: String| Error::CaFile { path: path.to_owned(), reason };
        let pem = std::fs::read(path).map_err(|e| fail(e.to_string()))?;
        let ders = CertificateDer::pem_slice_iter(&pem)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|_| fail("it is not a PEM certificate file".into()))?;
        if ders.is_empty() {
            return Err(fail("it holds no PEM certificate (-----BEGIN CERTIFICATE-----)".into()));
        }
        // Checked here, as a trust anchor, so that a damaged certificate is
        // reported against the file rather than as a failed connection.
        let mut check = rustls::RootCertStore::empty();
        let mut certs = Vec::with_capacity(ders.len());
        for der in ders {
            check.add(der.clone()).map_err(|e| fail(format!("a certificate in it is not valid: {e}")))?;
            certs.push(reqwest::Certificate::from_der(&der).map_err(|e| fail(e.to_string()))?);
        }
        Ok(Self(certs))
    }

    /// `--ca-file`, if given.
    pub(crate) fn from_option(path: Option<&PathBuf>) -> Result<Self, Error> {
        path.map_or_else(|| Ok(Self::default()), |path| Self::load(path))
    }

    /// Sets the client's trust anchors: the system's and these, never a
    /// compiled-in list (even when a build of the whole workspace turns on
    /// reqwest's webpki-roots feature for another crate).
    pub(crate) fn apply(&self, builder: reqwest::ClientBuilder) -> reqwest::ClientBuilder {
        let builder = builder.tls_built_in_root_certs(false).tls_built_in_native_certs(true);
        self.0.iter().cloned().fold(builder, reqwest::ClientBuilder::add_root_certificate)
    }
}

/// Why the origin's certificate was refused, if that is what `error` is.
pub(crate) fn certificate_problem(error: &reqwest::Error) -> Option<&'static str> {
    use rustls::CertificateError as C;

    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(current) = source {
        if let Some(rustls::Error::InvalidCertificate(problem)) = unwrap_io(current).downcast_ref::<rustls::Error>() {
            return Some(match problem {
                C::UnknownIssuer => "its certificate is issued by an authority this computer does not trust (add your CA with --ca-file or to the system's trust store)",
                C::Expired | C::ExpiredContext { .. } => "its certificate has expired",
                C::NotValidYet | C::NotValidYetContext { .. } => "its certificate is not valid yet (check this computer's clock)",
                C::NotValidForName | C::NotValidForNameContext { .. } => "its certificate is for another name",
                C::Revoked => "its certificate has been revoked",
                _ => "its certificate is not valid",
            });
        }
        source = current.source();
    }
    None
}

/// The error inside any layers of `io::Error`. The TLS stack wraps a rustls
/// error in an io::Error, and the connector wraps that in another; an
/// io::Error's `source()` skips the error it wraps, so the chain alone
/// never shows it.
fn unwrap_io<'e>(mut error: &'e (dyn std::error::Error + 'static)) -> &'e (dyn std::error::Error + 'static) {
    while let Some(inner) = error.downcast_ref::<std::io::Error>().and_then(|io| io.get_ref()) {
        error = inner;
    }
    error
}

//! TLS to PostgreSQL and Redis: the CA files, and errors a person can act on.
//!
//! Both links use rustls. PostgreSQL trusts the system's store (through
//! rustls-native-certs, so `SSL_CERT_FILE` and `SSL_CERT_DIR` apply) plus
//! `--database-ca-file`; Redis trusts `--redis-ca-file` when it is given,
//! and the system's store otherwise. A CA file forces verification: it is
//! refused beside a PostgreSQL `sslmode` that would fall back to plain text
//! or skip the host name, and beside a `redis://` URL.

use std::path::Path;

use anyhow::{bail, Context as _};
use rustls::pki_types::{pem::PemObject as _, CertificateDer};

/// Installs ring as rustls's process-wide provider. sqlx picks its provider
/// itself, but the Redis client asks for the process default, which must be
/// unambiguous whatever else the build pulls in.
pub fn install_crypto_provider() {
    // Already installed (by an earlier call, or a test) is fine.
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// Reads a PEM file of CA certificates. `option` names the option in the
/// error, so the one line at start-up says what to fix.
pub fn read_ca_file(path: &Path, option: &str) -> anyhow::Result<Vec<u8>> {
    let pem = std::fs::read(path).with_context(|| format!("cannot read {option} {}", path.display()))?;
    let certificates = CertificateDer::pem_slice_iter(&pem).filter(Result::is_ok).count();
    if certificates == 0 {
        bail!("{option} {} holds no PEM certificate", path.display());
    }
    Ok(pem)
}

/// The PostgreSQL URL to connect with: `url` with `sslrootcert` set to
/// `ca_file`, and `sslmode=verify-full` unless it names `verify-ca` or
/// `verify-full` already.
pub fn database_url(url: &str, ca_file: Option<&Path>) -> anyhow::Result<String> {
    let Some(ca_file) = ca_file else {
        return Ok(url.to_owned());
    };
    if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
        bail!("--database-ca-file is for PostgreSQL; the embedded SQLite database needs none");
    }
    read_ca_file(ca_file, "--database-ca-file")?;
    let path = ca_file.to_str().context("--database-ca-file must be a UTF-8 path")?;
    let query = url.split_once('?').map_or("", |(_, query)| query);
    let mode = query.split('&').find_map(|pair| pair.strip_prefix("sslmode="));
    let mut url = url.to_owned();
    let mut add = |pair: String| {
        url.push(if url.contains('?') { '&' } else { '?' });
        url.push_str(&pair);
    };
    match mode {
        None => add("sslmode=verify-full".to_owned()),
        Some("verify-full" | "verify-ca") => {}
        Some(other) => bail!(
            "--database-ca-file needs sslmode=verify-full (or verify-ca) in --database-url, not sslmode={other}, \
             which could connect without checking the certificate"
        ),
    }
    add(format!("sslrootcert={}", encode(path)));
    Ok(url)
}

/// Percent-encodes what a URL query value cannot hold as is.
fn encode(value: &str) -> String {
    value
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' | b'/' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// Why a TLS handshake failed, if it failed on the peer's certificate:
/// walks `error`'s sources for rustls's verdict and says it in words.
pub fn certificate_problem(error: &(dyn std::error::Error + 'static)) -> Option<String> {
    let mut next = Some(error);
    while let Some(e) = next {
        if let Some(rustls::Error::InvalidCertificate(reason)) = e.downcast_ref::<rustls::Error>() {
            return Some(describe(reason));
        }
        // io::Error hides its payload from `source()`.
        if let Some(inner) = e.downcast_ref::<std::io::Error>().and_then(|io| io.get_ref()) {
            if let Some(rustls::Error::InvalidCertificate(reason)) = inner.downcast_ref::<rustls::Error>() {
                return Some(describe(reason));
            }
        }
        // Some clients keep only the text of the error they wrap.
        if let Some(reason) = e.to_string().split("invalid peer certificate: ").nth(1) {
            return Some(describe_text(reason));
        }
        next = e.source();
    }
    None
}

/// [`describe`] for rustls's `Debug` text of a certificate error.
fn describe_text(reason: &str) -> String {
    if reason.starts_with("UnknownIssuer") {
        describe(&rustls::CertificateError::UnknownIssuer)
    } else if reason.starts_with("NotValidForName") {
        describe(&rustls::CertificateError::NotValidForName)
    } else if reason.starts_with("Expired") {
        describe(&rustls::CertificateError::Expired)
    } else {
        format!("its certificate was refused ({})", reason.trim())
    }
}

fn describe(reason: &rustls::CertificateError) -> String {
    use rustls::CertificateError as C;
    match reason {
        C::UnknownIssuer => "its certificate is issued by an authority that is not trusted (check the CA file)".into(),
        C::NotValidForName | C::NotValidForNameContext { .. } => "its certificate is for another host name".into(),
        C::Expired | C::ExpiredContext { .. } => "its certificate has expired".into(),
        other => format!("its certificate was refused ({other:?})"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ca_file() -> tempfile::NamedTempFile {
        use std::io::Write as _;
        // Any well-formed certificate will do: only the PEM framing and DER
        // parse are checked here.
        let mut file = tempfile::NamedTempFile::new().expect("a temp file");
        let pem = "-----BEGIN CERTIFICATE-----\nMAA=\n-----END CERTIFICATE-----\n";
        file.write_all(pem.as_bytes()).expect("write");
        file
    }

    #[test]
    fn a_ca_file_turns_on_full_verification() {
        let ca = ca_file();
        let url = database_url("postgres://db.internal/sesame", Some(ca.path())).expect("a TLS URL");
        assert!(url.starts_with("postgres://db.internal/sesame?sslmode=verify-full&sslrootcert=/"), "{url}");
        let url = database_url("postgres://db/s?sslmode=verify-ca", Some(ca.path())).expect("a TLS URL");
        assert!(url.starts_with("postgres://db/s?sslmode=verify-ca&sslrootcert="), "{url}");
    }

    #[test]
    fn a_ca_file_beside_a_mode_that_may_skip_verification_is_refused() {
        let ca = ca_file();
        for mode in ["disable", "prefer", "require"] {
            let err = database_url(&format!("postgres://db/s?sslmode={mode}"), Some(ca.path()))
                .expect_err("a weak sslmode must be refused");
            assert!(err.to_string().contains("needs sslmode=verify-full"), "{err}");
        }
        let err = database_url("sqlite://x.db", Some(ca.path())).expect_err("SQLite takes no CA");
        assert!(err.to_string().contains("is for PostgreSQL"), "{err}");
    }

    #[test]
    fn a_missing_or_empty_ca_file_is_one_clear_error() {
        let err = read_ca_file(Path::new("/nonexistent/ca.pem"), "--redis-ca-file").expect_err("missing");
        assert!(err.to_string().starts_with("cannot read --redis-ca-file /nonexistent/ca.pem"), "{err}");
        let empty = tempfile::NamedTempFile::new().expect("a temp file");
        let err = read_ca_file(empty.path(), "--redis-ca-file").expect_err("empty");
        assert!(err.to_string().ends_with("holds no PEM certificate"), "{err}");
    }

    #[test]
    fn paths_are_encoded_for_the_query() {
        assert_eq!(encode("/etc/ssl/my ca&x.pem"), "/etc/ssl/my%20ca%26x.pem");
    }
}

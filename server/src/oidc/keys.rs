//! The ID-token signing keys: made on first use, kept in the database so
//! that every instance signs with the same key and publishes the same set,
//! and rotated in three steps so that relying parties that cache the key set
//! never meet a `kid` they do not know.
//!
//! Per algorithm there is a `current` key that signs, a `next` key that is
//! published but does not sign yet, and after a rotation a `retired` key that
//! is published until the following rotation. A rotation drops the retired
//! key, retires the current one, promotes the next one and makes a new next
//! one; as long as rotations are further apart than relying parties cache the
//! key set and than ID tokens live, every token verifies against every
//! cached set.

use std::{
    collections::HashMap,
    fmt,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use base64::{engine::general_purpose::URL_SAFE_NO_PAD as B64, Engine as _};
use jsonwebtoken::{
    jwk::{
        AlgorithmParameters, CommonParameters, Jwk, JwkSet, KeyAlgorithm, OctetKeyPairParameters, OctetKeyPairType,
        PublicKeyUse, RSAKeyParameters, RSAKeyType,
    },
    Algorithm, Header,
};
use openssl::{
    hash::MessageDigest,
    pkey::{PKey, Private},
    rsa::Rsa,
    sign::Signer,
};
use rand::{rngs::OsRng, RngCore as _};
use ring::signature::{Ed25519KeyPair, KeyPair as _};
use rsa::{pkcs1::EncodeRsaPrivateKey as _, traits::PublicKeyParts as _, RsaPrivateKey};
use serde::Serialize;

use crate::{
    audit::{self, Action, By, Record},
    db::{sql::query, Db},
    error::{Error, Result},
};

/// How long an instance keeps using the signing keys it loaded before it
/// looks again. Another instance's rotation is seen within this time; until
/// then this one signs with the key just retired, which is still published.
const CACHE_TTL: Duration = Duration::from_secs(60);

/// RSA modulus size: what every relying party accepts and RFC 7518 §3.3
/// requires at least.
const RSA_BITS: usize = 2048;

/// An ID-token signature algorithm the provider offers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Alg {
    /// RSASSA-PKCS1-v1_5 with SHA-256: every OpenID provider must offer it.
    Rs256,
    /// Ed25519 (RFC 8037).
    EdDsa,
}

impl Alg {
    pub const ALL: [Alg; 2] = [Alg::Rs256, Alg::EdDsa];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Rs256 => "RS256",
            Self::EdDsa => "EdDSA",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|alg| alg.as_str() == text)
    }

    fn jwt(self) -> Algorithm {
        match self {
            Self::Rs256 => Algorithm::RS256,
            Self::EdDsa => Algorithm::EdDSA,
        }
    }
}

/// A key that signs ID tokens, parsed once when it is loaded.
///
/// `jsonwebtoken` takes a key as DER and parses it again at every
/// signature; for RSA that parse checks the key's arithmetic, and cost as
/// much as the signature itself. Held parsed, a signature is only the
/// signature (docs/BENCHMARKS.md).
pub struct SigningKey {
    kid: String,
    alg: Alg,
    pair: Pair,
    /// The JWS header, already base64url-encoded: the same for every token.
    header: String,
}

/// A parsed private key. RSA signs through OpenSSL: an RSA-2048
/// signature costs about 240 µs there and about 570 µs in ring on the same
/// machine, and it is the largest single cost of an OIDC sign-in
/// (docs/BENCHMARKS.md). Both blind the private-key operation.
enum Pair {
    Rsa(PKey<Private>),
    Ed25519(Ed25519KeyPair),
}

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SigningKey").field("kid", &self.kid).field("alg", &self.alg).finish_non_exhaustive()
    }
}

impl SigningKey {
    /// Parses the stored private key of `alg`: PKCS#1 DER for RSA, PKCS#8
    /// for Ed25519.
    fn parse(kid: String, alg: Alg, der: &[u8]) -> Result<Self> {
        let broken = |e: &dyn fmt::Display| {
            Error::Internal(anyhow::anyhow!("the {} key {kid} does not parse: {e}", alg.as_str()))
        };
        let pair = match alg {
            Alg::Rs256 => {
                let rsa = Rsa::private_key_from_der(der).map_err(|e| broken(&e))?;
                if !rsa.check_key().map_err(|e| broken(&e))? {
                    return Err(broken(&"its numbers do not make an RSA key"));
                }
                Pair::Rsa(PKey::from_rsa(rsa).map_err(|e| broken(&e))?)
            }
            Alg::EdDsa => Pair::Ed25519(Ed25519KeyPair::from_pkcs8_maybe_unchecked(der).map_err(|e| broken(&e))?),
        };
        let mut header = Header::new(alg.jwt());
        header.kid = Some(kid.clone());
        let header = serde_json::to_vec(&header).map_err(|e| broken(&e))?;
        Ok(Self { header: B64.encode(header), kid, alg, pair })
    }

    /// Signs `claims` as a compact JWS (RFC 7515 §7.1) with this key's
    /// `kid`: what `jsonwebtoken::encode` makes, with the key parsed once.
    pub fn sign(&self, claims: &impl Serialize) -> Result<String> {
        let failed = |e: &dyn fmt::Display| Error::Internal(anyhow::anyhow!("cannot sign an ID token: {e}"));
        let claims = serde_json::to_vec(claims).map_err(|e| failed(&e))?;
        let mut jws = format!("{}.{}", self.header, B64.encode(claims));
        let signature = match &self.pair {
            // RSASSA-PKCS1-v1_5 with SHA-256 (RS256), OpenSSL's default
            // padding for an RSA key.
            Pair::Rsa(key) => Signer::new(MessageDigest::sha256(), key)
                .and_then(|mut signer| signer.sign_oneshot_to_vec(jws.as_bytes()))
                .map_err(|e| failed(&e))?,
            Pair::Ed25519(pair) => pair.sign(jws.as_bytes()).as_ref().to_vec(),
        };
        jws.push('.');
        B64.encode_string(signature, &mut jws);
        Ok(jws)
    }
}

/// The signing keys loaded at one moment, per algorithm.
type Loaded = (Instant, HashMap<Alg, Arc<SigningKey>>);

/// The signing keys this instance loaded, per algorithm, and when.
#[derive(Debug, Default)]
pub struct KeyCache {
    loaded: Mutex<Option<Loaded>>,
}

impl KeyCache {
    /// The current key for `alg`, made if there is none yet.
    pub async fn signing(&self, db: &Db, alg: Alg, now: i64) -> Result<Arc<SigningKey>> {
        if let Some(key) = self.cached(alg) {
            return Ok(key);
        }
        let key = Arc::new(current(db, alg, now).await?);
        let mut loaded = self.loaded.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let fresh = loaded.as_ref().is_some_and(|(at, _)| at.elapsed() < CACHE_TTL);
        if !fresh {
            *loaded = Some((Instant::now(), HashMap::new()));
        }
        if let Some((_, keys)) = loaded.as_mut() {
            keys.insert(alg, key.clone());
        }
        Ok(key)
    }

    fn cached(&self, alg: Alg) -> Option<Arc<SigningKey>> {
        let loaded = self.loaded.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let (at, keys) = loaded.as_ref()?;
        (at.elapsed() < CACHE_TTL).then(|| keys.get(&alg).cloned()).flatten()
    }

    /// Forgets what was loaded, after this instance rotated.
    pub fn clear(&self) {
        *self.loaded.lock().unwrap_or_else(|poisoned| poisoned.into_inner()) = None;
    }
}

/// Loads the current key for `alg`, making the current and next keys first
/// when the database has none.
async fn current(db: &Db, alg: Alg, now: i64) -> Result<SigningKey> {
    if let Some(key) = load_current(db, alg).await? {
        return Ok(key);
    }
    ensure(db, alg, "current", now).await?;
    ensure(db, alg, "next", now).await?;
    load_current(db, alg).await?.ok_or_else(|| Error::Internal(anyhow::anyhow!("no current {} key", alg.as_str())))
}

async fn load_current(db: &Db, alg: Alg) -> Result<Option<SigningKey>> {
    db.fetch_optional(
        query("SELECT kid, private_der FROM oidc_signing_key WHERE alg = $1 AND state = 'current'").bind(alg.as_str()),
        |row| SigningKey::parse(row.text("kid")?, alg, &row.blob("private_der")?),
    )
    .await
}

/// Makes a key in `state` for `alg` unless one exists. Two instances racing
/// here both make one; the partial unique index keeps exactly one.
async fn ensure(db: &Db, alg: Alg, state: &str, now: i64) -> Result<()> {
    let exists = db
        .fetch_optional(
            query("SELECT kid FROM oidc_signing_key WHERE alg = $1 AND state = $2").bind(alg.as_str()).bind(state),
            |row| row.text("kid"),
        )
        .await?;
    if exists.is_some() {
        return Ok(());
    }
    let made = tokio::task::spawn_blocking(move || generate(alg))
        .await
        .map_err(|e| Error::Internal(anyhow::anyhow!("key generation stopped: {e}")))??;
    let mut write = db.begin_write().await?;
    write
        .conn()
        .execute(
            query(
                "INSERT INTO oidc_signing_key (kid, alg, state, private_der, public_jwk, created_at) \
                 VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT DO NOTHING",
            )
            .bind(made.kid)
            .bind(alg.as_str())
            .bind(state)
            .bind(made.private_der)
            .bind(made.public_jwk)
            .bind(now),
        )
        .await?;
    write.commit().await?;
    Ok(())
}

/// A freshly made key, ready to store.
struct Made {
    kid: String,
    private_der: Vec<u8>,
    public_jwk: String,
}

/// Makes a key pair. Slow for RSA (a few hundred milliseconds), so it runs
/// off the async threads.
fn generate(alg: Alg) -> Result<Made> {
    let mut id = [0u8; 12];
    OsRng.fill_bytes(&mut id);
    let kid = B64.encode(id);
    let failed = |what: &str| Error::Internal(anyhow::anyhow!("cannot make an {} key: {what}", alg.as_str()));
    let (private_der, params) = match alg {
        Alg::Rs256 => {
            let private = RsaPrivateKey::new(&mut OsRng, RSA_BITS).map_err(|e| failed(&e.to_string()))?;
            let der = private.to_pkcs1_der().map_err(|e| failed(&e.to_string()))?;
            let params = AlgorithmParameters::RSA(RSAKeyParameters {
                key_type: RSAKeyType::RSA,
                n: B64.encode(private.n().to_bytes_be()),
                e: B64.encode(private.e().to_bytes_be()),
            });
            (der.as_bytes().to_vec(), params)
        }
        Alg::EdDsa => {
            let rng = ring::rand::SystemRandom::new();
            let pkcs8 = Ed25519KeyPair::generate_pkcs8(&rng).map_err(|e| failed(&e.to_string()))?;
            let pair = Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).map_err(|e| failed(&e.to_string()))?;
            let params = AlgorithmParameters::OctetKeyPair(OctetKeyPairParameters {
                key_type: OctetKeyPairType::OctetKeyPair,
                curve: jsonwebtoken::jwk::EllipticCurve::Ed25519,
                x: B64.encode(pair.public_key().as_ref()),
            });
            (pkcs8.as_ref().to_vec(), params)
        }
    };
    let jwk = Jwk {
        common: CommonParameters {
            public_key_use: Some(PublicKeyUse::Signature),
            key_algorithm: Some(match alg {
                Alg::Rs256 => KeyAlgorithm::RS256,
                Alg::EdDsa => KeyAlgorithm::EdDSA,
            }),
            key_id: Some(kid.clone()),
            ..CommonParameters::default()
        },
        algorithm: params,
    };
    let public_jwk = serde_json::to_string(&jwk).map_err(|e| failed(&e.to_string()))?;
    Ok(Made { kid, private_der, public_jwk })
}

/// Every published key: next, current and retired, of every algorithm.
/// Makes the keys first when there are none, so that a relying party that
/// fetches the set before the first sign-in already finds them.
pub async fn published(db: &Db, now: i64) -> Result<JwkSet> {
    for alg in Alg::ALL {
        current(db, alg, now).await?;
    }
    let rows = db
        .fetch_all(query("SELECT public_jwk FROM oidc_signing_key ORDER BY alg, created_at"), |row| {
            row.text("public_jwk")
        })
        .await?;
    let keys = rows
        .iter()
        .map(|text| serde_json::from_str::<Jwk>(text))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| Error::Internal(anyhow::anyhow!("a stored JWK does not parse: {e}")))?;
    Ok(JwkSet { keys })
}

/// A published key, as the admin API lists it.
#[derive(Debug, Clone, Serialize)]
pub struct KeyInfo {
    pub kid: String,
    pub alg: String,
    pub state: String,
    pub created_at: i64,
}

pub async fn list(db: &Db) -> Result<Vec<KeyInfo>> {
    db.fetch_all(query("SELECT kid, alg, state, created_at FROM oidc_signing_key ORDER BY alg, created_at"), |row| {
        Ok(KeyInfo {
            kid: row.text("kid")?,
            alg: row.text("alg")?,
            state: row.text("state")?,
            created_at: row.int("created_at")?,
        })
    })
    .await
}

/// One rotation step for every algorithm (see the module comment). The new
/// next keys are made before the transaction, which then only moves rows.
pub(crate) async fn rotate(db: &Db, by: &By<'_>) -> Result<()> {
    let mut made = Vec::new();
    for alg in Alg::ALL {
        current(db, alg, by.at).await?;
        let key = tokio::task::spawn_blocking(move || generate(alg))
            .await
            .map_err(|e| Error::Internal(anyhow::anyhow!("key generation stopped: {e}")))??;
        made.push((alg, key));
    }
    let mut write = db.begin_write().await?;
    let mut conn = write.conn();
    if conn.is_postgres() {
        // One rotation at a time. Each statement below reads a snapshot
        // taken as it starts, and a row another rotation has just moved is
        // skipped rather than moved again: two rotations at once would
        // promote two keys, which the one-current-key index refuses (a
        // 500). This lock waits for a rotation in flight, so that the
        // statements then see what it did; readers do not wait for it.
        conn.execute(query("LOCK TABLE oidc_signing_key IN SHARE ROW EXCLUSIVE MODE")).await?;
    }
    // On SQLite the first statement writes, so SQLite takes the write lock
    // at once.
    conn.execute(query("DELETE FROM oidc_signing_key WHERE state = 'retired'")).await?;
    conn.execute(query("UPDATE oidc_signing_key SET state = 'retired' WHERE state = 'current'")).await?;
    conn.execute(query("UPDATE oidc_signing_key SET state = 'current' WHERE state = 'next'")).await?;
    for (alg, key) in made {
        conn.execute(
            query(
                "INSERT INTO oidc_signing_key (kid, alg, state, private_der, public_jwk, created_at) \
                 VALUES ($1, $2, 'next', $3, $4, $5)",
            )
            .bind(key.kid)
            .bind(alg.as_str())
            .bind(key.private_der)
            .bind(key.public_jwk)
            .bind(by.at),
        )
        .await?;
    }
    audit::record(&mut conn, by, Record::new(Action::OidcKeysRotated, "", "")).await?;
    write.commit().await?;
    Ok(())
}

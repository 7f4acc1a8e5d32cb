//! The state every handler shares, and how it is built from the config:
//! the parts below the features (storage, the bus, the clock, the server's
//! key, the settings and the limits), none of a feature's own.

use std::{fmt, sync::Arc};

use anyhow::Context as _;
use axum::extract::FromRef;
use rand::{rngs::OsRng, RngCore as _};
use sesame_proto::{Origin, ServerKey, ServerPublicKey};
use sha2::{Digest as _, Sha256};

use crate::{
    bus::Bus,
    clock::Clock,
    config::Config,
    db::{sql::query, Db},
    http::extract::TrustedProxies,
    http::limit::{RateLimiter, StreamLimits},
    tls,
};

/// The state every handler shares: one `Arc`, so that handing it to a
/// request (axum clones it for every extractor that asks) is one count, not
/// one per pool, limiter and key.
#[derive(Clone, Debug)]
pub struct AppState(Arc<Shared>);

impl AppState {
    pub fn new(shared: Shared) -> Self {
        Self(Arc::new(shared))
    }

    /// A new state: a copy of this one with `change` made (tests).
    pub fn with(&self, change: impl FnOnce(&mut Shared)) -> Self {
        let mut shared = Shared::clone(&self.0);
        change(&mut shared);
        Self::new(shared)
    }
}

/// A router's state as everything below the assembly sees it: whatever it
/// is, it hands out the shared parts. The assembly's `App` is one. A
/// feature's router runs on any (`fn router<S: RouterState>()`), or on any
/// that also hands out the feature's own parts (`challenge::SignInState`,
/// `oidc::OidcState`), so that no feature names the whole, and a handler
/// takes each part it needs through `FromRef` (`State<AppState>`).
pub trait RouterState: Clone + Send + Sync + 'static {
    fn app_state(&self) -> &AppState;
}

impl<S: RouterState> FromRef<S> for AppState {
    fn from_ref(state: &S) -> Self {
        state.app_state().clone()
    }
}

impl<S: RouterState> FromRef<S> for TrustedProxies {
    fn from_ref(state: &S) -> Self {
        state.app_state().settings.trusted_proxies.clone()
    }
}

impl FromRef<AppState> for TrustedProxies {
    fn from_ref(state: &AppState) -> Self {
        state.settings.trusted_proxies.clone()
    }
}

impl std::ops::Deref for AppState {
    type Target = Shared;

    fn deref(&self) -> &Shared {
        &self.0
    }
}

/// What [`AppState`] holds.
#[derive(Clone, Debug)]
pub struct Shared {
    pub db: Db,
    pub bus: Bus,
    pub clock: Arc<dyn Clock>,
    pub identity: Arc<Identity>,
    pub settings: Arc<Settings>,
    pub admin_token: Arc<AdminToken>,
    pub limits: Limits,
}

/// The origin placed in tokens: `--public-url`, or the listen address
/// ([`Config::default_public_url`]).
pub fn origin_from(config: &Config) -> anyhow::Result<Origin> {
    let text = match &config.public_url {
        Some(url) => url.trim_end_matches('/').to_owned(),
        None => config.default_public_url(),
    };
    Origin::parse(&text).map_err(|_| {
        anyhow::anyhow!("--public-url must be an origin like https://login.example.com (scheme, lowercase host, optional port, no path), not {text:?}")
    })
}

/// Builds the state from the config: connects, migrates, fills what the
/// migrations could not ([`crate::names::fill`]), loads the key.
/// Returns the admin token too when it was generated for this run.
pub async fn state_from(config: &Config, clock: Arc<dyn Clock>) -> anyhow::Result<(AppState, Option<String>)> {
    let origin = origin_from(config)?;
    let url = match &config.database_url {
        Some(url) => url.clone(),
        None => {
            std::fs::create_dir_all(&config.data_dir)
                .with_context(|| format!("cannot create the data directory {}", config.data_dir.display()))?;
            Db::sqlite_url(&config.data_dir)
        }
    };
    tls::install_crypto_provider();
    let url = tls::database_url(&url, config.database_ca_file.as_deref())?;
    let db = Db::connect(&url).await?;
    // Before anything can create a name: the rows of an older database get
    // the keys that refuse look-alikes of their names.
    crate::names::fill(&db).await.context("cannot fill the look-alike keys of names")?;
    let identity = Identity::load_or_create(&db, clock.now().as_secs() as i64).await?;
    let redis_ca = match &config.redis_ca_file {
        Some(_) if config.redis_url.is_none() => anyhow::bail!("--redis-ca-file needs --redis-url"),
        Some(path) => Some(tls::read_ca_file(path, "--redis-ca-file")?),
        None => None,
    };
    let bus = match &config.redis_url {
        None => Bus::local(),
        // The pid names this instance's connection in Redis's CLIENT LIST, so
        // an operator can tell the instances apart.
        Some(url) => Bus::redis_with_ca(url, &format!("sesame-{}", std::process::id()), redis_ca.as_deref()).await?,
    };
    let (admin_token, generated) = match &config.admin_token {
        Some(token) if token.len() >= 16 => (AdminToken::new(token), None),
        Some(_) => anyhow::bail!("--admin-token must be at least 16 characters"),
        None => {
            let token = AdminToken::generate();
            (AdminToken::new(&token), Some(token))
        }
    };
    let settings = Settings {
        origin,
        challenge_ttl_secs: config.challenge_ttl,
        rotation_secs: config.rotation,
        code_window_secs: config.code_window,
        trusted_proxies: config.trusted_proxies.clone().into(),
    };
    let state = AppState::new(Shared {
        db,
        bus: bus.clone(),
        clock,
        identity: Arc::new(identity),
        settings: Arc::new(settings),
        admin_token: Arc::new(admin_token),
        limits: Limits::per_minute(config.rate_limit)
            .shared_through(&bus)
            .with_streams(StreamLimits::new(config.max_streams_per_challenge, config.max_streams_per_address)),
    });
    Ok((state, generated))
}

/// Tunables that come from the command line.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The origin in every token; answers for any other origin are refused.
    pub origin: Origin,
    pub challenge_ttl_secs: u64,
    pub rotation_secs: u8,
    pub code_window_secs: u64,
    /// Peers whose `X-Forwarded-For` is believed.
    pub trusted_proxies: TrustedProxies,
}

impl Settings {
    pub fn new(origin: Origin) -> Self {
        let trusted_proxies = TrustedProxies::default();
        Self { origin, challenge_ttl_secs: 300, rotation_secs: 3, code_window_secs: 30, trusted_proxies }
    }

    /// Cookies get `Secure` whenever the public origin is HTTPS.
    pub fn secure_cookies(&self) -> bool {
        self.origin.is_https()
    }
}

/// Separate buckets, so that a flood of page loads cannot stop answers.
#[derive(Debug, Clone)]
pub struct Limits {
    pub challenges: RateLimiter,
    pub submissions: RateLimiter,
    pub streams: StreamLimits,
}

impl Limits {
    /// Rate limits of `n` a minute kept in memory, and the default stream
    /// caps.
    pub fn per_minute(n: u32) -> Self {
        Self {
            challenges: RateLimiter::new("challenges", n),
            submissions: RateLimiter::new("submissions", n),
            streams: StreamLimits::default(),
        }
    }

    /// Keeps the rate limits in Redis when the bus goes through Redis, so
    /// that several instances share them.
    pub fn shared_through(mut self, bus: &Bus) -> Self {
        if let Bus::Redis(redis) = bus {
            self.challenges = self.challenges.in_redis(redis.clone());
            self.submissions = self.submissions.in_redis(redis.clone());
        }
        self
    }

    pub fn with_streams(mut self, streams: StreamLimits) -> Self {
        self.streams = streams;
        self
    }
}

/// The server's Ed25519 identity: the key that signs every token.
pub struct Identity {
    key: ServerKey,
    public: ServerPublicKey,
}

impl Identity {
    pub fn new(key: ServerKey) -> Self {
        let public = key.public_key();
        Self { key, public }
    }

    /// Loads the key from the database, creating it on first start. Instances
    /// that share a database race to insert; `ON CONFLICT DO NOTHING` lets the
    /// first one win and every instance then reads the same key.
    pub async fn load_or_create(db: &Db, now: i64) -> anyhow::Result<Self> {
        let candidate = ServerKey::generate(&mut OsRng);
        let store = async {
            let mut write = db.begin_write().await?;
            let insert =
                query("INSERT INTO server_key (id, seed, created_at) VALUES (1, $1, $2) ON CONFLICT (id) DO NOTHING")
                    .bind(candidate.to_seed().to_vec())
                    .bind(now);
            write.conn().execute(insert).await?;
            write.commit().await
        };
        store.await.context("cannot store the server key")?;
        let seed = db
            .fetch_one(query("SELECT seed FROM server_key WHERE id = 1"), |row| row.blob("seed"))
            .await
            .context("cannot read the server key")?;
        let seed: [u8; 32] = seed.try_into().map_err(|_| anyhow::anyhow!("the stored server key is corrupt"))?;
        Ok(Self::new(ServerKey::from_seed(&seed)))
    }

    pub fn key(&self) -> &ServerKey {
        &self.key
    }

    pub fn public_key(&self) -> &ServerPublicKey {
        &self.public
    }
}

impl fmt::Debug for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Identity").field("public", &self.public).finish_non_exhaustive()
    }
}

/// The admin bearer token. Only its SHA-256 digest is kept, and presented
/// tokens are compared digest to digest, so comparison time reveals nothing
/// about the token.
pub struct AdminToken {
    digest: [u8; 32],
}

impl AdminToken {
    pub fn new(token: &str) -> Self {
        Self { digest: Sha256::digest(token.as_bytes()).into() }
    }

    /// A fresh random token (256 bits, base64url).
    pub fn generate() -> String {
        use base64::Engine as _;
        let mut bytes = [0u8; 32];
        OsRng.fill_bytes(&mut bytes);
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
    }

    pub fn matches(&self, presented: &str) -> bool {
        let digest: [u8; 32] = Sha256::digest(presented.as_bytes()).into();
        digest == self.digest
    }

    /// What an admin session opened with this token records: a digest of the
    /// token's digest under its own label, so the stored value is useful for
    /// nothing but telling whether the token has changed since.
    pub fn session_digest(&self) -> [u8; 32] {
        Sha256::new().chain_update(b"sesame/admin-session-token\0").chain_update(self.digest).finalize().into()
    }
}

impl fmt::Debug for AdminToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("AdminToken(<redacted>)")
    }
}

//! `--web.config.file`, in the format of Prometheus's exporter-toolkit:
//! TLS (re-read when the files change, without a restart) and basic auth
//! with bcrypt hashes.
//!
//! ```yaml
//! tls_server_config:
//!   cert_file: server.crt
//!   key_file: server.key
//!   client_auth_type: RequireAndVerifyClientCert   # optional
//!   client_ca_file: ca.crt                          # with client auth
//!   min_version: TLS12                              # or TLS13
//! basic_auth_users:
//!   prometheus: $2y$10$...                          # bcrypt hash
//! probes_without_auth: true                         # ours: /healthz, /readyz open
//! ```

use std::collections::{BTreeMap, HashMap};
use std::hash::{BuildHasher, RandomState};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant, SystemTime};

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::{RootCertStore, ServerConfig};
use serde::Deserialize;

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct WebConfigFile {
    #[serde(default)]
    pub tls_server_config: Option<TlsServerConfig>,
    #[serde(default)]
    pub basic_auth_users: BTreeMap<String, String>,
    /// Not in exporter-toolkit: `/healthz` and `/readyz` answered without
    /// credentials when basic auth is on, for probes that cannot send any
    /// (the kubelet's, the image's `healthcheck`). They say only whether
    /// the exporter is up and which accounts are not ready yet.
    #[serde(default)]
    pub probes_without_auth: bool,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct TlsServerConfig {
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
    #[serde(default)]
    pub client_auth_type: ClientAuth,
    #[serde(default)]
    pub client_ca_file: Option<PathBuf>,
    #[serde(default)]
    pub min_version: Option<TlsVersion>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
pub(crate) enum ClientAuth {
    #[default]
    NoClientCert,
    VerifyClientCertIfGiven,
    RequireAndVerifyClientCert,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub(crate) enum TlsVersion {
    TLS12,
    TLS13,
}

#[derive(Debug, thiserror::Error)]
#[error("web config file {file}: {message}")]
pub struct WebConfigError {
    pub file: String,
    pub message: String,
}

/// The checked web configuration.
pub struct WebSecurity {
    pub tls: Option<Arc<TlsReloader>>,
    pub auth: Option<BasicAuth>,
    /// `probes_without_auth`.
    pub open_probes: bool,
}

/// Reads and checks the file; the TLS files are loaded once here so a bad
/// certificate stops the exporter at start, not at the first scrape.
pub fn load(path: &Path) -> Result<WebSecurity, WebConfigError> {
    use figment::providers::{Format, Yaml};
    let err = |message: String| WebConfigError {
        file: path.display().to_string(),
        message,
    };
    if !path.is_file() {
        return Err(err("file not found or not a regular file".into()));
    }
    let cfg: WebConfigFile = figment::Figment::from(Yaml::file_exact(path))
        .extract()
        .map_err(|e| err(e.to_string()))?;
    let base = path.parent().unwrap_or(Path::new("."));
    for (user, hash) in &cfg.basic_auth_users {
        if user.is_empty() || user.contains(':') {
            return Err(err(format!(
                "basic_auth_users: user name '{user}' must be non-empty and without ':'"
            )));
        }
        if hash
            .parse::<bcrypt::HashParts>()
            .map_or(true, |p| !(4..=31).contains(&p.get_cost()))
        {
            return Err(err(format!(
                "basic_auth_users.{user}: expected a bcrypt hash ($2a$, $2b$ or $2y$...)"
            )));
        }
    }
    let tls = match cfg.tls_server_config {
        None => None,
        Some(t) => {
            let resolve = |p: &Path| {
                if p.is_absolute() {
                    p.to_owned()
                } else {
                    base.join(p)
                }
            };
            let t = TlsServerConfig {
                cert_file: resolve(&t.cert_file),
                key_file: resolve(&t.key_file),
                client_ca_file: t.client_ca_file.as_deref().map(resolve),
                ..t
            };
            if t.client_auth_type != ClientAuth::NoClientCert && t.client_ca_file.is_none() {
                return Err(err("tls_server_config.client_ca_file: required when client_auth_type verifies client certificates".into()));
            }
            let reloader =
                TlsReloader::new(t).map_err(|m| err(format!("tls_server_config: {m}")))?;
            Some(Arc::new(reloader))
        }
    };
    let auth = if cfg.basic_auth_users.is_empty() {
        None
    } else {
        Some(BasicAuth::new(cfg.basic_auth_users).map_err(err)?)
    };
    Ok(WebSecurity {
        tls,
        auth,
        open_probes: cfg.probes_without_auth,
    })
}

fn build(t: &TlsServerConfig) -> Result<ServerConfig, String> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&t.cert_file)
        .and_then(|it| it.collect::<Result<_, _>>())
        .map_err(|e| format!("cert_file {}: {e}", t.cert_file.display()))?;
    if certs.is_empty() {
        return Err(format!(
            "cert_file {}: no certificate in it",
            t.cert_file.display()
        ));
    }
    let key = PrivateKeyDer::from_pem_file(&t.key_file)
        .map_err(|e| format!("key_file {}: {e}", t.key_file.display()))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let versions: &[&rustls::SupportedProtocolVersion] = match t.min_version {
        Some(TlsVersion::TLS13) => &[&rustls::version::TLS13],
        _ => &[&rustls::version::TLS12, &rustls::version::TLS13],
    };
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(versions)
        .map_err(|e| e.to_string())?;
    let builder = match (t.client_auth_type, &t.client_ca_file) {
        (ClientAuth::NoClientCert, _) | (_, None) => builder.with_no_client_auth(),
        (auth, Some(ca)) => {
            let mut roots = RootCertStore::empty();
            for c in CertificateDer::pem_file_iter(ca)
                .map_err(|e| format!("client_ca_file {}: {e}", ca.display()))?
            {
                let c = c.map_err(|e| format!("client_ca_file {}: {e}", ca.display()))?;
                roots
                    .add(c)
                    .map_err(|e| format!("client_ca_file {}: {e}", ca.display()))?;
            }
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider);
            let verifier = if auth == ClientAuth::VerifyClientCertIfGiven {
                verifier.allow_unauthenticated()
            } else {
                verifier
            };
            builder.with_client_cert_verifier(
                verifier
                    .build()
                    .map_err(|e| format!("client_ca_file {}: {e}", ca.display()))?,
            )
        }
    };
    let mut cfg = builder
        .with_single_cert(certs, key)
        .map_err(|e| format!("cert_file and key_file do not make a usable pair: {e}"))?;
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(cfg)
}

fn modified(p: &Path) -> Option<SystemTime> {
    std::fs::metadata(p).and_then(|m| m.modified()).ok()
}

/// The TLS configuration, rebuilt when its files change on disk (checked at
/// most once a second, on new connections). A broken new file is logged
/// and the last good configuration kept.
pub struct TlsReloader {
    settings: TlsServerConfig,
    current: RwLock<Arc<ServerConfig>>,
    state: Mutex<(Instant, Vec<Option<SystemTime>>)>,
}

impl TlsReloader {
    fn new(settings: TlsServerConfig) -> Result<Self, String> {
        let cfg = build(&settings)?;
        let stamps = Self::stamps(&settings);
        Ok(Self {
            settings,
            current: RwLock::new(Arc::new(cfg)),
            state: Mutex::new((Instant::now(), stamps)),
        })
    }

    fn stamps(t: &TlsServerConfig) -> Vec<Option<SystemTime>> {
        let mut v = vec![modified(&t.cert_file), modified(&t.key_file)];
        if let Some(ca) = &t.client_ca_file {
            v.push(modified(ca));
        }
        v
    }

    /// The configuration for a new connection.
    pub fn config(&self) -> Arc<ServerConfig> {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        if state.0.elapsed() >= Duration::from_secs(1) {
            state.0 = Instant::now();
            let stamps = Self::stamps(&self.settings);
            if stamps != state.1 {
                match build(&self.settings) {
                    Ok(cfg) => {
                        state.1 = stamps;
                        *self.current.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(cfg);
                        tracing::info!("TLS certificate files changed: reloaded");
                    }
                    Err(e) => {
                        tracing::error!(error = %e, "TLS certificate files changed but do not load; keeping the previous ones")
                    }
                }
            }
        }
        self.current
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}

/// Basic auth against bcrypt hashes, as Prometheus's exporter-toolkit does
/// it, without side channels:
///
/// - an unknown user costs the same bcrypt work as a known one (a check
///   against a dummy hash of the highest configured cost), so response times
///   do not tell which user names exist;
/// - bcrypt runs on the blocking pool, never on the async workers, and at
///   most half the cores' worth at once (a FIFO semaphore), so a flood of
///   bad logins queues behind itself instead of taking every core from the
///   pollers and the scrapes;
/// - a successful check is remembered, keyed by the user and a randomly
///   seeded hash of the password (never the password), so repeated scrapes
///   cost a map look-up.
pub struct BasicAuth {
    users: BTreeMap<String, String>,
    /// A hash of a random password at the highest cost among `users`.
    dummy: String,
    verified: Mutex<HashMap<(String, u64), ()>>,
    seed: RandomState,
    verifiers: Arc<tokio::sync::Semaphore>,
}

/// The number of bcrypt checks that may run at once: half the cores, so at
/// least one core always stays for polls and scrapes.
fn verifier_slots() -> usize {
    std::thread::available_parallelism().map_or(1, |n| (n.get() / 2).max(1))
}

/// Splits an `Authorization` header value into user and password. The
/// scheme is matched case-insensitively (RFC 9110, section 11.1).
fn basic_credentials(header: &str) -> Option<(String, String)> {
    use base64::Engine;
    let (scheme, rest) = header.trim_start().split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let raw = base64::engine::general_purpose::STANDARD
        .decode(rest.trim())
        .ok()?;
    let s = String::from_utf8(raw).ok()?;
    let (u, p) = s.split_once(':')?;
    Some((u.to_owned(), p.to_owned()))
}

impl BasicAuth {
    /// `users` hold bcrypt hashes (checked by [`load`]); the error says
    /// why the dummy hash cannot be made.
    fn new(users: BTreeMap<String, String>) -> Result<Self, String> {
        let cost = users
            .values()
            .filter_map(|h| h.parse::<bcrypt::HashParts>().ok())
            .map(|p| p.get_cost())
            .max()
            .unwrap_or(bcrypt::DEFAULT_COST);
        // The dummy's password is random and thrown away: nobody can log in
        // as an unknown user by guessing it.
        let password = format!("{:x}", RandomState::new().hash_one(Instant::now()));
        let dummy = bcrypt::hash(password, cost)
            .map_err(|e| format!("basic_auth_users: cost {cost}: {e}"))?;
        Ok(Self {
            users,
            dummy,
            verified: Mutex::new(HashMap::new()),
            seed: RandomState::new(),
            verifiers: Arc::new(tokio::sync::Semaphore::new(verifier_slots())),
        })
    }

    fn fingerprint(&self, password: &str) -> u64 {
        self.seed.hash_one(password)
    }

    /// Checks an `Authorization` header value.
    pub async fn check(&self, header: Option<&str>) -> bool {
        let Some((user, password)) = header.and_then(basic_credentials) else {
            return false;
        };
        let (hash, known) = match self.users.get(&user) {
            Some(h) => (h.clone(), true),
            None => (self.dummy.clone(), false),
        };
        let key = (user, self.fingerprint(&password));
        if known
            && self
                .verified
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .contains_key(&key)
        {
            return true;
        }
        let Ok(_slot) = self.verifiers.clone().acquire_owned().await else {
            return false;
        };
        let ok =
            tokio::task::spawn_blocking(move || bcrypt::verify(password, &hash).unwrap_or(false))
                .await
                .unwrap_or(false)
                && known;
        if ok {
            let mut v = self.verified.lock().unwrap_or_else(|p| p.into_inner());
            if v.len() > 1000 {
                v.clear();
            }
            v.insert(key, ());
        }
        ok
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine;

    fn header(scheme: &str, user: &str, password: &str) -> String {
        let b64 = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
        format!("{scheme} {b64}")
    }

    fn auth(cost: u32) -> BasicAuth {
        let hash = bcrypt::hash("s3cret", cost).unwrap();
        BasicAuth::new(BTreeMap::from([("prometheus".to_owned(), hash)])).unwrap()
    }

    #[tokio::test]
    async fn the_basic_scheme_is_matched_case_insensitively() {
        let a = auth(4);
        for scheme in ["Basic", "basic", "BASIC", "bAsIc"] {
            assert!(
                a.check(Some(&header(scheme, "prometheus", "s3cret"))).await,
                "{scheme}"
            );
        }
        assert!(
            !a.check(Some(&header("Bearer", "prometheus", "s3cret")))
                .await
        );
        assert!(!a.check(Some("Basic")).await);
        assert!(!a.check(Some("Basic !!!")).await);
        assert!(!a.check(None).await);
    }

    #[tokio::test]
    async fn an_unknown_user_is_refused_even_with_the_dummy_cost() {
        let a = auth(4);
        assert!(
            a.dummy.starts_with("$2") && a.dummy.contains("$04$"),
            "{}",
            a.dummy
        );
        assert!(!a.check(Some(&header("Basic", "nobody", "s3cret"))).await);
        assert!(!a.check(Some(&header("Basic", "prometheus", "wrong"))).await);
    }

    /// Median wall time of `n` checks of `h`.
    async fn median_check_time(a: &BasicAuth, h: &str, n: usize) -> Duration {
        let mut times = Vec::new();
        for _ in 0..n {
            let t = Instant::now();
            assert!(!a.check(Some(h)).await);
            times.push(t.elapsed());
        }
        times.sort();
        times[n / 2]
    }

    #[tokio::test]
    async fn an_unknown_user_and_a_wrong_password_take_comparable_time() {
        // Cost 8 takes several milliseconds, far above scheduling noise.
        let a = auth(8);
        let unknown = median_check_time(&a, &header("Basic", "nobody", "x"), 7).await;
        let wrong = median_check_time(&a, &header("Basic", "prometheus", "x"), 7).await;
        assert!(
            unknown >= Duration::from_millis(2) && wrong >= Duration::from_millis(2),
            "both cost bcrypt work: unknown {unknown:?}, wrong password {wrong:?}"
        );
        // Same work, so the same order of magnitude; a factor of 3 leaves
        // room for a shared machine's noise between the two series.
        let (lo, hi) = (unknown.min(wrong), unknown.max(wrong));
        assert!(
            hi < lo * 3,
            "unknown {unknown:?} vs wrong password {wrong:?}"
        );
    }
}

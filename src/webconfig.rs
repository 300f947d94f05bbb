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
pub struct WebConfigFile {
    #[serde(default)]
    pub tls_server_config: Option<TlsServerConfig>,
    #[serde(default)]
    pub basic_auth_users: BTreeMap<String, String>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsServerConfig {
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
pub enum ClientAuth {
    #[default]
    NoClientCert,
    VerifyClientCertIfGiven,
    RequireAndVerifyClientCert,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub enum TlsVersion {
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
        if hash.parse::<bcrypt::HashParts>().is_err() {
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
    let auth = (!cfg.basic_auth_users.is_empty()).then(|| BasicAuth::new(cfg.basic_auth_users));
    Ok(WebSecurity { tls, auth })
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

/// Basic auth against bcrypt hashes. bcrypt is slow by design, so a
/// successful check is remembered (keyed by a randomly seeded hash of the
/// password, never the password) and repeated scrapes cost a map look-up.
pub struct BasicAuth {
    users: BTreeMap<String, String>,
    verified: Mutex<HashMap<(String, u64), ()>>,
    seed: RandomState,
}

impl BasicAuth {
    fn new(users: BTreeMap<String, String>) -> Self {
        Self {
            users,
            verified: Mutex::new(HashMap::new()),
            seed: RandomState::new(),
        }
    }

    fn fingerprint(&self, password: &str) -> u64 {
        self.seed.hash_one(password)
    }

    /// Checks an `Authorization` header value.
    pub async fn check(&self, header: Option<&str>) -> bool {
        use base64::Engine;
        let Some((user, password)) = header
            .and_then(|h| h.strip_prefix("Basic "))
            .and_then(|b| {
                base64::engine::general_purpose::STANDARD
                    .decode(b.trim())
                    .ok()
            })
            .and_then(|raw| String::from_utf8(raw).ok())
            .and_then(|s| s.split_once(':').map(|(u, p)| (u.to_owned(), p.to_owned())))
        else {
            return false;
        };
        let Some(hash) = self.users.get(&user).cloned() else {
            return false;
        };
        let key = (user, self.fingerprint(&password));
        if self
            .verified
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .contains_key(&key)
        {
            return true;
        }
        let ok =
            tokio::task::spawn_blocking(move || bcrypt::verify(password, &hash).unwrap_or(false))
                .await
                .unwrap_or(false);
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

//! Token signing keys: a tenant's JWKS from its OpenID discovery document (cached, fetched
//! again on an unknown `kid` at most once a minute, never more), a JWKS file, or the
//! development key.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::RwLock;
use std::time::{Duration, Instant};

use jsonwebtoken::DecodingKey;
use jsonwebtoken::jwk::JwkSet;
use serde::Deserialize;
use tokio::sync::Mutex;

use crate::error::Error;

/// Least time between two JWKS fetches.
const REFETCH_EVERY: Duration = Duration::from_secs(60);

/// Where signing keys come from.
#[derive(Debug, Clone)]
pub(crate) enum KeySource {
    /// An OpenID discovery document URL (its `jwks_uri` has the keys).
    Discovery(String),
    /// A JWKS file.
    File(PathBuf),
    /// A JWKS given inline (the development key).
    Inline(JwkSet),
}

#[derive(Debug, Deserialize)]
struct OpenIdConfiguration {
    jwks_uri: String,
}

#[derive(Debug)]
struct Discovery {
    url: String,
    client: reqwest::Client,
    last_fetch: Mutex<Option<Instant>>,
}

/// The trusted keys by `kid`.
#[derive(Debug)]
pub(crate) struct Keys {
    keys: RwLock<HashMap<String, DecodingKey>>,
    discovery: Option<Discovery>,
}

impl Keys {
    /// Loads file and inline keys and fetches the discovered ones (a failed fetch is logged
    /// and tried again on the first token).
    pub(crate) async fn load(sources: Vec<KeySource>) -> Result<Self, Error> {
        let mut keys = HashMap::new();
        let mut discovery = None;
        for source in sources {
            match source {
                KeySource::File(path) => {
                    let text = std::fs::read_to_string(&path)
                        .map_err(|e| Error::Auth(format!("JWKS file {}: {e}", path.display())))?;
                    let set: JwkSet = serde_json::from_str(&text).map_err(|e| {
                        Error::Auth(format!("JWKS file {}: not a JWKS: {e}", path.display()))
                    })?;
                    add(&mut keys, &set);
                }
                KeySource::Inline(set) => add(&mut keys, &set),
                KeySource::Discovery(url) => {
                    let client = reqwest::Client::builder()
                        .timeout(Duration::from_secs(10))
                        .build()
                        .map_err(|e| Error::Auth(format!("HTTP client: {e}")))?;
                    discovery = Some(Discovery {
                        url,
                        client,
                        last_fetch: Mutex::new(None),
                    });
                }
            }
        }
        let keys = Self {
            keys: RwLock::new(keys),
            discovery,
        };
        if let Some(d) = &keys.discovery
            && let Err(e) = keys.refresh().await
        {
            tracing::warn!(url = %d.url, error = %e, "cannot fetch the signing keys yet; trying again on the first token");
        }
        Ok(keys)
    }

    /// The key `kid`, fetching the JWKS again when it is unknown (rate-limited).
    pub(crate) async fn get(&self, kid: &str) -> Option<DecodingKey> {
        if let Some(key) = self.cached(kid) {
            return Some(key);
        }
        if let Err(e) = self.refresh().await {
            tracing::warn!(error = %e, "cannot fetch the signing keys");
        }
        self.cached(kid)
    }

    fn cached(&self, kid: &str) -> Option<DecodingKey> {
        self.keys.read().ok()?.get(kid).cloned()
    }

    /// Fetches the discovered JWKS unless it was fetched less than a minute ago.
    async fn refresh(&self) -> Result<(), String> {
        let Some(d) = &self.discovery else {
            return Ok(());
        };
        let mut last = d.last_fetch.lock().await;
        if last.is_some_and(|t| t.elapsed() < REFETCH_EVERY) {
            return Ok(());
        }
        *last = Some(Instant::now());
        let get = |url: String| async move {
            d.client
                .get(&url)
                .send()
                .await
                .and_then(reqwest::Response::error_for_status)
                .map_err(|e| format!("{url}: {e}"))
        };
        let config: OpenIdConfiguration = get(d.url.clone())
            .await?
            .json()
            .await
            .map_err(|e| format!("{}: not an OpenID configuration: {e}", d.url))?;
        let set: JwkSet = get(config.jwks_uri.clone())
            .await?
            .json()
            .await
            .map_err(|e| format!("{}: not a JWKS: {e}", config.jwks_uri))?;
        let mut keys = self.keys.write().map_err(|_| "key cache poisoned")?;
        add(&mut keys, &set);
        tracing::info!(keys = set.keys.len(), url = %config.jwks_uri, "signing keys fetched");
        Ok(())
    }
}

/// Adds the RSA keys of `set` that have a `kid`.
fn add(keys: &mut HashMap<String, DecodingKey>, set: &JwkSet) {
    for jwk in &set.keys {
        let Some(kid) = &jwk.common.key_id else {
            continue;
        };
        match DecodingKey::from_jwk(jwk) {
            Ok(key) => {
                keys.insert(kid.clone(), key);
            }
            Err(e) => tracing::warn!(%kid, error = %e, "skipping an unusable signing key"),
        }
    }
}

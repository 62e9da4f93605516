//! Development tokens: RS256 tokens signed by a local key, for laptops, demos and tests. The
//! server trusts that key only when started with `--dev-tokens`.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::audit::sha256_hex;
use crate::error::{Error, Result};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use rsa::RsaPrivateKey;
use rsa::pkcs8::{DecodePrivateKey, EncodePrivateKey, LineEnding};
use rsa::traits::PublicKeyParts;

/// `iss` of development tokens.
pub(crate) const ISSUER: &str = "https://patientflow.invalid/dev";
/// `tid` of development tokens.
pub(crate) const TENANT: &str = "00000000-0000-0000-0000-000000000000";
/// `aud` of patientflow tokens unless configured otherwise.
pub(crate) const AUDIENCE: &str = "api://patientflow";

/// The development key file unless `--dev-key` says otherwise.
pub(crate) fn default_path() -> PathBuf {
    let base = std::env::var_os("XDG_CONFIG_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".config")))
        .unwrap_or_else(std::env::temp_dir);
    base.join("patientflow").join("dev-signing-key.pem")
}

/// The development signing key.
pub(crate) struct DevKey {
    encoding: EncodingKey,
    kid: String,
    jwks: JwkSet,
}

impl std::fmt::Debug for DevKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DevKey").field("kid", &self.kid).finish()
    }
}

impl DevKey {
    /// The key at `path`, created (RSA 2048, PKCS#8 PEM, owner-only) when missing.
    pub(crate) fn load_or_create(path: &Path) -> Result<Self> {
        let err = |what: &str, e: &dyn std::fmt::Display| {
            Error::Auth(format!("development key {}: {what}: {e}", path.display()))
        };
        let key = if path.exists() {
            let pem = std::fs::read_to_string(path).map_err(|e| err("cannot read", &e))?;
            RsaPrivateKey::from_pkcs8_pem(&pem).map_err(|e| err("not a PKCS#8 RSA key", &e))?
        } else {
            let key = RsaPrivateKey::new(&mut rsa::rand_core::OsRng, 2048)
                .map_err(|e| err("cannot generate", &e))?;
            let pem = key
                .to_pkcs8_pem(LineEnding::LF)
                .map_err(|e| err("cannot encode", &e))?;
            if let Some(dir) = path.parent() {
                std::fs::create_dir_all(dir).map_err(|e| err("cannot create its folder", &e))?;
            }
            write_private(path, pem.as_bytes()).map_err(|e| err("cannot write", &e))?;
            tracing::info!(path = %path.display(), "created a development signing key");
            key
        };
        let pem = key
            .to_pkcs8_pem(LineEnding::LF)
            .map_err(|e| err("cannot encode", &e))?;
        let encoding =
            EncodingKey::from_rsa_pem(pem.as_bytes()).map_err(|e| err("unusable", &e))?;
        let n = URL_SAFE_NO_PAD.encode(key.n().to_bytes_be());
        let e = URL_SAFE_NO_PAD.encode(key.e().to_bytes_be());
        let kid = format!("patientflow-dev-{}", &sha256_hex(n.as_bytes())[..12]);
        let jwks = serde_json::from_value(serde_json::json!({"keys": [{
            "kty": "RSA", "use": "sig", "alg": "RS256", "kid": kid, "n": n, "e": e
        }]}))
        .map_err(|e| err("cannot describe as a JWK", &e))?;
        Ok(Self {
            encoding,
            kid,
            jwks,
        })
    }

    /// The public key as a JWKS (what the server trusts with `--dev-tokens`).
    pub(crate) fn jwks(&self) -> JwkSet {
        self.jwks.clone()
    }

    /// A token for `oid` with app roles `roles`, valid for `ttl`.
    pub(crate) fn mint(&self, oid: &str, roles: &[String], ttl: Duration) -> Result<String> {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs();
        let claims = serde_json::json!({
            "iss": ISSUER,
            "aud": AUDIENCE,
            "tid": TENANT,
            "oid": oid,
            "sub": oid,
            "roles": roles,
            "iat": now,
            "nbf": now,
            "exp": now + ttl.as_secs(),
            "ver": "2.0",
        });
        let mut header = Header::new(Algorithm::RS256);
        header.kid = Some(self.kid.clone());
        jsonwebtoken::encode(&header, &claims, &self.encoding)
            .map_err(|e| Error::Auth(format!("cannot sign a development token: {e}")))
    }
}

#[cfg(unix)]
fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?
        .write_all(bytes)
}

#[cfg(not(unix))]
fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    std::fs::write(path, bytes)
}

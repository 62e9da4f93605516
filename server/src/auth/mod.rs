//! Authentication: Microsoft Entra ID access tokens (or, with `--dev-tokens`, development
//! tokens signed by a local key) → a [`Principal`] → its [`Access`] under the policies.
//!
//! Only RS256 is accepted. Signing keys come from the tenant's OpenID discovery document
//! (its `jwks_uri`; cached, fetched again on an unknown `kid` at most once a minute) or from a
//! JWKS file for offline sites. `iss` (v1 and v2 forms), `aud`, `exp` and `nbf` are checked
//! with a minute of leeway. A token that validated is remembered (see [`Validated`]), so a
//! client's repeated calls cost one signature check, not one each.

pub(crate) mod dev;
mod keys;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use jsonwebtoken::{Algorithm, Validation};
use patientflow_sql::rbac::{Access, Policies, Principal};
use serde::Deserialize;

pub(crate) use keys::{KeySource, Keys};

/// Clock skew tolerated on `exp` and `nbf`, seconds.
const LEEWAY_SECS: u64 = 60;

/// How long a validated token is trusted without checking its signature again (never past
/// its `exp`): a signing key withdrawn from the tenant's JWKS stops its tokens within this.
const REMEMBER: Duration = Duration::from_secs(300);

/// Validated tokens remembered at most; the memory is cleared when full.
const REMEMBERED: usize = 4096;

/// Why a request carries no usable token. The message is for the client; it says what to do
/// and never which check a forged token failed in detail beyond that.
#[derive(Debug, thiserror::Error)]
pub(crate) enum AuthError {
    /// No `Authorization: Bearer` token.
    #[error("missing bearer token: send `Authorization: Bearer <Entra ID access token>`")]
    Missing,
    /// The token is not valid.
    #[error("invalid token: {0}")]
    Invalid(String),
}

/// Where tokens are trusted from and what they must say.
#[derive(Debug, Clone)]
pub(crate) struct AuthSettings {
    /// Accepted `iss` values.
    pub(crate) issuers: Vec<String>,
    /// Accepted `aud` values.
    pub(crate) audiences: Vec<String>,
    /// Tenants whose tokens are accepted (`tid`); empty: any the issuers sign for.
    pub(crate) tenants: Vec<String>,
    /// Signing keys.
    pub(crate) keys: Vec<KeySource>,
}

/// The claims patientflow reads.
#[derive(Debug, Deserialize)]
struct Claims {
    exp: u64,
    oid: Option<String>,
    sub: Option<String>,
    tid: Option<String>,
    #[serde(default)]
    roles: Vec<String>,
    #[serde(default)]
    groups: Vec<String>,
    /// Present when the user is in too many groups to list (the "groups overage").
    #[serde(rename = "_claim_names", default)]
    claim_names: Option<serde_json::Map<String, serde_json::Value>>,
    #[serde(default)]
    hasgroups: bool,
}

/// Validates tokens and resolves principals' access.
#[derive(Debug)]
pub(crate) struct Auth {
    keys: Keys,
    validation: Validation,
    tenants: Vec<String>,
    policies: Policies,
    validated: Validated,
    /// Requests refused for a missing or invalid token, both doors.
    pub(crate) refused: AtomicU64,
}

/// Tokens that validated, with the access they carry, until their `exp` or [`REMEMBER`]
/// after validation, whichever comes first. Only a byte-equal token hits, so a forged or
/// altered token is always checked in full.
#[derive(Debug, Default)]
struct Validated(Mutex<HashMap<String, (Instant, Arc<Access>)>>);

impl Validated {
    fn get(&self, token: &str) -> Option<Arc<Access>> {
        let mut tokens = self.0.lock().ok()?;
        match tokens.get(token) {
            Some((until, access)) if Instant::now() < *until => Some(Arc::clone(access)),
            Some(_) => {
                tokens.remove(token);
                None
            }
            None => None,
        }
    }

    fn put(&self, token: &str, exp: u64, access: &Arc<Access>) {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        let left = Duration::from_secs(exp).saturating_sub(now).min(REMEMBER);
        let Ok(mut tokens) = self.0.lock() else {
            return;
        };
        if tokens.len() >= REMEMBERED {
            tokens.clear();
        }
        tokens.insert(
            token.to_string(),
            (Instant::now() + left, Arc::clone(access)),
        );
    }
}

impl Auth {
    pub(crate) async fn new(
        settings: AuthSettings,
        policies: Policies,
    ) -> Result<Self, crate::error::Error> {
        let mut validation = Validation::new(Algorithm::RS256);
        validation.algorithms = vec![Algorithm::RS256];
        validation.leeway = LEEWAY_SECS;
        validation.validate_nbf = true;
        validation.set_audience(&settings.audiences);
        validation.set_issuer(&settings.issuers);
        validation.set_required_spec_claims(&["exp", "iss", "aud"]);
        Ok(Self {
            keys: Keys::load(settings.keys).await?,
            validation,
            tenants: settings.tenants,
            policies,
            validated: Validated::default(),
            refused: AtomicU64::new(0),
        })
    }

    /// The principal a bearer token stands for, and the token's `exp`.
    async fn principal(&self, token: &str) -> Result<(Principal, u64), AuthError> {
        let invalid = |m: &str| AuthError::Invalid(m.to_string());
        let header = jsonwebtoken::decode_header(token).map_err(|_| invalid("not a signed JWT"))?;
        if header.alg != Algorithm::RS256 {
            return Err(invalid("only RS256-signed tokens are accepted"));
        }
        let kid = header
            .kid
            .ok_or_else(|| invalid("the token names no signing key (kid)"))?;
        let key = self
            .keys
            .get(&kid)
            .await
            .ok_or_else(|| invalid("signed by a key this server does not trust"))?;
        let data = jsonwebtoken::decode::<Claims>(token, &key, &self.validation).map_err(|e| {
            use jsonwebtoken::errors::ErrorKind as K;
            AuthError::Invalid(
                match e.kind() {
                    K::ExpiredSignature => "the token has expired; get a new one",
                    K::ImmatureSignature => "the token is not valid yet (nbf)",
                    K::InvalidIssuer => "the token was issued by an untrusted issuer",
                    K::InvalidAudience => "the token is for another audience",
                    K::InvalidSignature => "the signature does not verify",
                    K::MissingRequiredClaim(_) => "the token lacks exp, iss or aud",
                    _ => "the token does not validate",
                }
                .to_string(),
            )
        })?;
        let claims = data.claims;
        let tid = claims.tid.unwrap_or_default();
        if !self.tenants.is_empty() && !self.tenants.contains(&tid) {
            return Err(invalid("the token belongs to another tenant"));
        }
        let oid = claims
            .oid
            .or(claims.sub)
            .ok_or_else(|| invalid("the token has no oid"))?;
        let overage = claims.hasgroups
            || claims
                .claim_names
                .as_ref()
                .is_some_and(|names| names.contains_key("groups"));
        let groups = if overage {
            tracing::warn!(%oid, "token has a groups overage claim: group grants ignored (use app roles); no Graph call is made");
            Vec::new()
        } else {
            claims.groups
        };
        let principal = Principal {
            oid,
            tid,
            roles: claims.roles,
            groups,
        };
        Ok((principal, claims.exp))
    }

    /// The access of the bearer of `authorization` (an `Authorization` header value) at
    /// `door`; a refusal is counted and logged.
    pub(crate) async fn access(
        &self,
        authorization: Option<&str>,
        door: &'static str,
    ) -> Result<Arc<Access>, AuthError> {
        let Some(token) = bearer(authorization) else {
            return Err(self.refuse(AuthError::Missing, door));
        };
        if let Some(access) = self.validated.get(token) {
            return Ok(access);
        }
        match self.principal(token).await {
            Ok((principal, exp)) => {
                let access = Arc::new(self.policies.access(principal));
                self.validated.put(token, exp, &access);
                Ok(access)
            }
            Err(reason) => Err(self.refuse(reason, door)),
        }
    }

    /// Counts and logs a refusal.
    fn refuse(&self, reason: AuthError, door: &'static str) -> AuthError {
        self.refused.fetch_add(1, Ordering::Relaxed);
        tracing::info!(target: "patientflow::audit", door, outcome = "unauthenticated", %reason);
        reason
    }
}

/// The token of a `Bearer` authorization header value.
fn bearer(authorization: Option<&str>) -> Option<&str> {
    let (scheme, token) = authorization?.trim().split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now() -> u64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs()
    }

    fn access() -> Arc<Access> {
        Arc::new(Access::unrestricted(Principal::default()))
    }

    #[test]
    fn a_validated_token_is_remembered_until_it_expires() {
        let validated = Validated::default();
        validated.put("token-a", now() + 3600, &access());
        assert!(validated.get("token-a").is_some());
        // Only the same bytes hit.
        assert!(validated.get("token-a ").is_none());
        assert!(validated.get("token-b").is_none());
        // An expired token is not remembered: it is checked in full, and refused.
        validated.put("token-old", now() - 1, &access());
        assert!(validated.get("token-old").is_none());
    }

    #[test]
    fn a_token_is_remembered_for_at_most_the_remember_window() {
        let validated = Validated::default();
        validated.put("token-a", now() + 86_400, &access());
        let until = validated.0.lock().unwrap()["token-a"].0;
        assert!(until <= Instant::now() + REMEMBER);
    }
}

//! Token verification: signatures (HS256 with the shared secret; ES256/RS256 against a cached
//! JWKS), audience and issuer. Expiry and roles are the core's to decide; this never lets a token
//! through on a key it could not check, and never says why a token failed to the client.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use alice_core::TokenCheck;
use alice_handoff::{Gate, Snapshot};
use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde_json::{json, Value};
use tokio::sync::Mutex;
use tokio::time::Instant;

use crate::config::AuthSettings;

/// The least time between two refetches of a loaded JWKS caused by unknown key ids.
const JWKS_REFETCH_INTERVAL: Duration = Duration::from_secs(30);
/// The least time between two attempts to load a JWKS that has no keys yet.
const JWKS_RETRY_INTERVAL: Duration = Duration::from_secs(1);
const JWKS_TIMEOUT: Duration = Duration::from_secs(5);

/// Checks tokens; cheap to clone and share.
#[derive(Clone)]
pub struct Verifier {
    inner: Arc<Inner>,
}

struct Inner {
    secret: DecodingKey,
    audience: Option<String>,
    issuer: Option<String>,
    jwks: Option<Jwks>,
}

type Keys = HashMap<String, (DecodingKey, Algorithm)>;

/// The cached key set. A token whose `kid` is known is checked against it at once, whatever else
/// is going on: it reads the current set (`Snapshot`), never waiting for a fetch. Only tokens
/// with an unknown `kid` line up for a fetch, one at a time, and at most one per interval fetches.
struct Jwks {
    url: String,
    client: reqwest::Client,
    keys: Snapshot<Keys>,
    /// Held by whoever may fetch: one fetch at a time; those behind it look again first.
    fetching: Mutex<()>,
    /// Loading a set that has no keys yet (the first time, or after failures).
    load: Gate,
    /// Refetching a loaded set because a token names a key id it lacks.
    refetch: Gate,
    /// The gates count milliseconds from here.
    started: Instant,
}

impl Verifier {
    pub fn new(settings: &AuthSettings) -> Verifier {
        let jwks = settings.jwks_url.as_ref().map(|url| Jwks {
            url: url.clone(),
            client: reqwest::Client::builder().timeout(JWKS_TIMEOUT).build().unwrap_or_default(),
            keys: Snapshot::new(HashMap::new()),
            fetching: Mutex::new(()),
            load: Gate::new(JWKS_RETRY_INTERVAL.as_millis() as u64),
            refetch: Gate::new(JWKS_REFETCH_INTERVAL.as_millis() as u64),
            started: Instant::now(),
        });
        Verifier {
            inner: Arc::new(Inner {
                secret: DecodingKey::from_secret(&settings.secret),
                audience: settings.audience.clone(),
                issuer: settings.issuer.clone(),
                jwks,
            }),
        }
    }

    /// Verifies a token's signature, audience and issuer; returns its claims.
    pub async fn verify(&self, token: Option<&str>) -> TokenCheck {
        let Some(token) = token.map(str::trim).filter(|t| !t.is_empty()) else {
            return TokenCheck::Missing;
        };
        match self.claims(token).await {
            Some(claims) => TokenCheck::Verified(claims),
            None => TokenCheck::Invalid,
        }
    }

    async fn claims(&self, token: &str) -> Option<Value> {
        let header = jsonwebtoken::decode_header(token).ok()?;
        let key = match header.alg {
            Algorithm::HS256 => self.inner.secret.clone(),
            Algorithm::ES256 | Algorithm::RS256 => {
                let (key, alg) = self.inner.jwks.as_ref()?.key(header.kid.as_deref()?).await?;
                if alg != header.alg {
                    return None;
                }
                key
            }
            _ => return None,
        };
        let mut validation = Validation::new(header.alg);
        // Expiry is decided by the core, on its own clock; `exp` and `sub` are required there.
        validation.validate_exp = false;
        // An audience or issuer that is set must be in the token: jsonwebtoken compares only
        // the claims a token carries unless they are required.
        validation.required_spec_claims.clear();
        validation.leeway = 0;
        match &self.inner.audience {
            Some(aud) => {
                validation.set_audience(&[aud]);
                validation.required_spec_claims.insert("aud".into());
            }
            None => validation.validate_aud = false,
        }
        if let Some(iss) = &self.inner.issuer {
            validation.set_issuer(&[iss]);
            validation.required_spec_claims.insert("iss".into());
        }
        let data = jsonwebtoken::decode::<Value>(token, &key, &validation).ok()?;
        data.claims.is_object().then_some(data.claims)
    }
}

impl Jwks {
    /// The key for `kid`, fetching the set again (at most once per interval) when it is unknown.
    async fn key(&self, kid: &str) -> Option<(DecodingKey, Algorithm)> {
        if let Some(k) = self.cached().get(kid) {
            return Some(k.clone());
        }
        let _turn = self.fetching.lock().await;
        // The fetch this one waited behind may have brought the key.
        let keys = self.cached();
        if let Some(k) = keys.get(kid) {
            return Some(k.clone());
        }
        let now_ms = self.started.elapsed().as_millis() as u64;
        let gate = if keys.is_empty() { &self.load } else { &self.refetch };
        if !gate.try_claim(now_ms) {
            return None;
        }
        match self.fetch().await {
            Ok(fetched) => {
                let found = fetched.get(kid).cloned();
                self.keys.publish(fetched);
                found
            }
            Err(e) => {
                tracing::warn!(url = %self.url, error = %e, "could not fetch the JWKS");
                None
            }
        }
    }

    fn cached(&self) -> Arc<Keys> {
        self.keys.load()
    }

    async fn fetch(&self) -> Result<Keys, reqwest::Error> {
        let set: JwkSet = self.client.get(&self.url).send().await?.error_for_status()?.json().await?;
        let mut keys = HashMap::new();
        for jwk in &set.keys {
            let (Some(kid), Ok(key)) = (jwk.common.key_id.clone(), DecodingKey::from_jwk(jwk)) else {
                continue;
            };
            let alg = match &jwk.algorithm {
                jsonwebtoken::jwk::AlgorithmParameters::EllipticCurve(_) => Algorithm::ES256,
                jsonwebtoken::jwk::AlgorithmParameters::RSA(_) => Algorithm::RS256,
                _ => continue,
            };
            keys.insert(kid, (key, alg));
        }
        tracing::info!(keys = keys.len(), "fetched the JWKS");
        Ok(keys)
    }
}

/// Signs an HS256 token for `sub` with `role`, valid for `ttl`, with no audience or issuer.
pub fn sign(secret: &[u8], sub: &str, role: &str, ttl: Duration) -> String {
    hs256(secret, &claims(sub, role, ttl))
}

/// A token this server accepts: [`sign`] with its secret, carrying the audience and issuer it
/// requires when they are set (the `token` command's and the development tokens).
pub fn sign_for(auth: &AuthSettings, sub: &str, role: &str, ttl: Duration) -> String {
    let mut claims = claims(sub, role, ttl);
    if let Some(aud) = &auth.audience {
        claims["aud"] = json!(aud);
    }
    if let Some(iss) = &auth.issuer {
        claims["iss"] = json!(iss);
    }
    hs256(&auth.secret, &claims)
}

fn claims(sub: &str, role: &str, ttl: Duration) -> Value {
    let now = chrono_now_secs();
    json!({ "sub": sub, "role": role, "iat": now, "exp": now + ttl.as_secs() })
}

fn hs256(secret: &[u8], claims: &Value) -> String {
    // HS256 signing of a JSON object cannot fail.
    jsonwebtoken::encode(&Header::new(Algorithm::HS256), claims, &EncodingKey::from_secret(secret))
        .unwrap_or_default()
}

fn chrono_now_secs() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

/// The token a handshake offers: the CONNECT auth object's `token`, else `Authorization: Bearer`.
/// The query string is never read (it ends up in access logs).
pub fn token_from(auth: Option<&Value>, authorization: Option<&str>) -> Option<String> {
    let from_auth = auth
        .and_then(|a| a.get("token"))
        .and_then(Value::as_str)
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .map(str::to_owned);
    from_auth.or_else(|| {
        let h = authorization?.trim();
        let (scheme, rest) = h.split_once(' ')?;
        scheme.eq_ignore_ascii_case("bearer").then(|| rest.trim().to_owned())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(audience: Option<&str>) -> AuthSettings {
        AuthSettings {
            secret: b"0123456789abcdef0123".to_vec(),
            jwks_url: None,
            audience: audience.map(str::to_owned),
            issuer: None,
            dev_mode: false,
        }
    }

    #[tokio::test]
    async fn hs256_round_trip_and_bad_signatures() {
        let v = Verifier::new(&settings(None));
        let token = sign(b"0123456789abcdef0123", "u1", "reader", Duration::from_secs(60));
        match v.verify(Some(&token)).await {
            TokenCheck::Verified(c) => assert_eq!(c["sub"], "u1"),
            other => panic!("{other:?}"),
        }
        let forged = sign(b"another-secret-of-some-length", "u1", "reader", Duration::from_secs(60));
        assert_eq!(v.verify(Some(&forged)).await, TokenCheck::Invalid);
        assert_eq!(v.verify(Some("not.a.jwt")).await, TokenCheck::Invalid);
        assert_eq!(v.verify(Some("  ")).await, TokenCheck::Missing);
        assert_eq!(v.verify(None).await, TokenCheck::Missing);
    }

    #[tokio::test]
    async fn audience_is_enforced_when_set() {
        let secret = b"0123456789abcdef0123";
        let with_aud = |aud: &str| {
            let claims = json!({"sub": "u", "role": "reader", "exp": chrono_now_secs() + 60, "aud": aud});
            jsonwebtoken::encode(&Header::default(), &claims, &EncodingKey::from_secret(secret)).unwrap()
        };
        let v = Verifier::new(&settings(Some("alice")));
        assert!(matches!(v.verify(Some(&with_aud("alice"))).await, TokenCheck::Verified(_)));
        assert_eq!(v.verify(Some(&with_aud("other"))).await, TokenCheck::Invalid);
        // Without JWT_AUDIENCE, Supabase's "authenticated" audience is fine.
        let v = Verifier::new(&settings(None));
        assert!(matches!(v.verify(Some(&with_aud("authenticated"))).await, TokenCheck::Verified(_)));
    }

    #[test]
    fn token_comes_from_auth_then_bearer_header() {
        let auth = json!({"token": "a"});
        assert_eq!(token_from(Some(&auth), Some("Bearer b")).as_deref(), Some("a"));
        assert_eq!(token_from(Some(&json!({})), Some("Bearer b")).as_deref(), Some("b"));
        assert_eq!(token_from(Some(&json!({"token": ""})), Some("Bearer b")).as_deref(), Some("b"));
        assert_eq!(token_from(None, Some("bearer  c ")).as_deref(), Some("c"));
        assert_eq!(token_from(None, Some("Basic xyz")), None);
        assert_eq!(token_from(None, None), None);
    }
}

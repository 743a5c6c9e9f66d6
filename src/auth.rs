//! Tenant-scoped credentials: API keys (SHA-256 hashes in tenant files) and JWTs (HS256, RS256,
//! ES256), and the cross-tenant check that a credential belongs to the tenant it is used on.
//!
//! A credential arrives as `X-API-Key: <key>` or `Authorization: Bearer <key or JWT>`. What
//! this module answers is who the credential says the caller is; the proxy decides what that
//! means for the request (401 on `require_auth` routes, 403 TENANT_MISMATCH when it names
//! another tenant).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use sha2::{Digest, Sha256};

use crate::client_headers::{ClientHeaders, Repeated, Seen};
use crate::config::ValidJwt;
use crate::roles::Roles;

mod failure;
pub use failure::AuthFailure;

/// What the request's credential established.
#[derive(Debug, Clone)]
pub enum Credential {
    /// No credential presented.
    None,
    /// A known API key of `tenant`.
    ApiKey {
        tenant: Arc<str>,
        name: Arc<str>,
        roles: Arc<Roles>,
    },
    /// A verified JWT.
    Token(Arc<VerifiedToken>),
    /// A credential was presented but is not valid; the reason goes to the audit log and the
    /// `gateway_auth_failures_total{reason}` metric.
    Invalid(AuthFailure),
    /// Valid credentials of two different tenants in one request (403 whatever the route).
    Conflicting,
}

impl Credential {
    /// The tenant the credential belongs to, if it is valid.
    pub fn tenant(&self) -> Option<&str> {
        match self {
            Credential::ApiKey { tenant, .. } => Some(tenant),
            Credential::Token(t) => t.tenant.as_deref(),
            Credential::None | Credential::Invalid(_) | Credential::Conflicting => None,
        }
    }

    pub fn is_valid(&self) -> bool {
        matches!(self, Credential::ApiKey { .. } | Credential::Token(_))
    }

    /// The roles of a valid credential (empty for `None` and `Invalid`).
    pub fn roles(&self) -> &Roles {
        static NO_ROLES: std::sync::OnceLock<Roles> = std::sync::OnceLock::new();
        match self {
            Credential::ApiKey { roles, .. } => roles,
            Credential::Token(t) => &t.roles,
            Credential::None | Credential::Invalid(_) | Credential::Conflicting => {
                NO_ROLES.get_or_init(Roles::default)
            }
        }
    }
}

/// Claims of a verified token that the gateway uses.
#[derive(Debug)]
pub struct VerifiedToken {
    pub tenant: Option<Box<str>>,
    pub subject: Option<http::HeaderValue>,
    /// From the `roles_claim` (`auth.jwt.roles_claim`, default `roles`).
    pub roles: Roles,
    /// `exp`, unix seconds: the cache never serves the token past it.
    pub expires_at: u64,
}

/// SHA-256 of an API key.
pub fn key_hash(key: &[u8]) -> [u8; 32] {
    Sha256::digest(key).into()
}

/// Every API key of the config, by hash.
#[derive(Debug, Default)]
pub struct ApiKeyIndex {
    by_hash: HashMap<[u8; 32], ApiKeyEntry, foldhash::fast::RandomState>,
}

/// Owner, name and roles of one API key.
#[derive(Debug, Clone)]
pub struct ApiKeyEntry {
    pub tenant: Arc<str>,
    pub name: Arc<str>,
    pub roles: Arc<Roles>,
}

impl ApiKeyIndex {
    pub fn insert(&mut self, hash: [u8; 32], tenant: &str, name: &str, roles: Arc<Roles>) {
        let entry = ApiKeyEntry {
            tenant: tenant.into(),
            name: name.into(),
            roles,
        };
        self.by_hash.insert(hash, entry);
    }

    /// The tenant, name and roles of a presented key, found by its SHA-256. The map compares
    /// hashes, not keys: the caller cannot choose a hash, so lookup timing reveals nothing about
    /// a stored key, and no second comparison is needed.
    pub fn find(&self, key: &[u8]) -> Option<ApiKeyEntry> {
        self.by_hash.get(&key_hash(key)).cloned()
    }

    pub fn len(&self) -> usize {
        self.by_hash.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_hash.is_empty()
    }
}

/// Verification keys and rules for JWTs, compiled with the snapshot (so a JWKS file reloads
/// with the config), with a cache of verified tokens.
pub struct JwtVerifier {
    keys: Vec<(Algorithm, Option<String>, DecodingKey)>,
    validation_base: Validation,
    tenant_claim: String,
    /// `auth.jwt.forward`: send the verified token upstream.
    pub forward: bool,
    roles_claim: String,
    cache: moka::sync::Cache<[u8; 32], Arc<VerifiedToken>>,
}

impl std::fmt::Debug for JwtVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JwtVerifier")
            .field("keys", &self.keys.len())
            .finish_non_exhaustive()
    }
}

impl JwtVerifier {
    /// Builds the verifier from validated `[auth.jwt]` (its keys were loaded by validation).
    pub fn compile(cfg: ValidJwt) -> Self {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.leeway = cfg.leeway.as_secs();
        validation.validate_nbf = true;
        validation.validate_exp = true;
        // jsonwebtoken only compares iss/aud when the token has them: configured means required.
        if !cfg.issuer.is_empty() {
            validation.set_issuer(&[&cfg.issuer]);
            validation.required_spec_claims.insert("iss".into());
        }
        if cfg.audience.is_empty() {
            validation.validate_aud = false;
        } else {
            validation.set_audience(&[&cfg.audience]);
            validation.required_spec_claims.insert("aud".into());
        }
        Self {
            keys: cfg.keys,
            validation_base: validation,
            tenant_claim: cfg.tenant_claim,
            forward: cfg.forward,
            roles_claim: cfg.roles_claim,
            cache: moka::sync::Cache::builder()
                .max_capacity(100_000)
                .time_to_live(Duration::from_secs(3600))
                .build(),
        }
    }

    /// Verifies a compact JWT (cached by its hash, never past `exp`).
    pub fn verify(&self, token: &str, now: u64) -> Result<Arc<VerifiedToken>, AuthFailure> {
        let hash = key_hash(token.as_bytes());
        if let Some(v) = self.cache.get(&hash) {
            if v.expires_at + self.validation_base.leeway > now {
                return Ok(v);
            }
            self.cache.invalidate(&hash);
            return Err(AuthFailure::TokenExpired);
        }
        let header = jsonwebtoken::decode_header(token).map_err(|_| AuthFailure::TokenMalformed)?;
        let mut last = AuthFailure::TokenNoKey;
        for (alg, kid, key) in &self.keys {
            if *alg != header.alg || (kid.is_some() && header.kid.is_some() && kid != &header.kid) {
                continue;
            }
            let mut validation = self.validation_base.clone();
            validation.algorithms = vec![*alg];
            match jsonwebtoken::decode::<HashMap<String, serde_json::Value>>(
                token,
                key,
                &validation,
            ) {
                Ok(data) => {
                    let claims = data.claims;
                    // A token that names no tenant is a credential of no tenant, not of all.
                    let Some(tenant) = claims
                        .get(&self.tenant_claim)
                        .and_then(|v| v.as_str())
                        .filter(|t| !t.is_empty())
                    else {
                        return Err(AuthFailure::TokenMissingTenant);
                    };
                    let roles = if self.roles_claim.is_empty() {
                        Roles::default()
                    } else {
                        Roles::from_claim(claims.get(&self.roles_claim))?
                    };
                    let verified = Arc::new(VerifiedToken {
                        tenant: Some(tenant.into()),
                        subject: claims
                            .get("sub")
                            .and_then(|v| v.as_str())
                            .and_then(|s| http::HeaderValue::from_str(s).ok()),
                        roles,
                        expires_at: claims
                            .get("exp")
                            .and_then(|v| v.as_u64().or_else(|| v.as_f64().map(|f| f as u64)))
                            .unwrap_or(0),
                    });
                    self.cache.insert(hash, verified.clone());
                    return Ok(verified);
                }
                Err(e) => {
                    last = AuthFailure::from_jwt_error(e.kind());
                    // A bad signature may verify with the next key of the same algorithm;
                    // any other failure is about the claims, which no other key changes.
                    if last != AuthFailure::TokenBadSignature {
                        break;
                    }
                }
            }
        }
        Err(last)
    }
}

/// A compact JWS: three base64url parts. API keys never contain dots.
fn looks_like_jwt(s: &str) -> bool {
    s.bytes().filter(|&b| b == b'.').count() == 2
}

/// Which request headers carried a credential the proxy must not forward: verified API keys
/// always, verified JWTs when `auth.jwt.forward = false`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StripCredentials {
    pub x_api_key: bool,
    pub authorization: bool,
}

/// The outcome of reading every credential of a request.
#[derive(Debug, Clone)]
pub struct Authentication {
    pub credential: Credential,
    pub strip: StripCredentials,
}

/// The token of an `Authorization` value when its scheme is `Bearer`, in any case (schemes are
/// case-insensitive, RFC 9110 §11.1); `None` for other schemes (`Basic …` is the backend's).
/// `Some("")` for a Bearer without a token (which presents no credential).
pub fn bearer_token(value: &str) -> Option<&str> {
    let value = value.trim_matches([' ', '\t']);
    let (scheme, token) = match value.find([' ', '\t']) {
        Some(i) => (&value[..i], value[i..].trim_matches([' ', '\t'])),
        None => (value, ""),
    };
    scheme.eq_ignore_ascii_case("bearer").then_some(token)
}

/// Verifies one presented credential (an API key or a compact JWT).
fn verify_one(
    presented: &str,
    keys: &ApiKeyIndex,
    jwt: Option<&JwtVerifier>,
    now: u64,
) -> Credential {
    if presented.is_empty() {
        return Credential::Invalid(AuthFailure::MalformedCredential);
    }
    if looks_like_jwt(presented) {
        return match jwt {
            Some(v) => match v.verify(presented, now) {
                Ok(t) => Credential::Token(t),
                Err(reason) => Credential::Invalid(reason),
            },
            None => Credential::Invalid(AuthFailure::TokenNotConfigured),
        };
    }
    match keys.find(presented.as_bytes()) {
        Some(ApiKeyEntry {
            tenant,
            name,
            roles,
        }) => Credential::ApiKey {
            tenant,
            name,
            roles,
        },
        None => Credential::Invalid(AuthFailure::UnknownApiKey),
    }
}

/// Two credentials of one request: both must verify and name the same tenant. Any invalid one
/// makes the whole invalid (never half-checked); two tenants are a conflict (403).
fn combine(a: Credential, b: Credential) -> Credential {
    match (a, b) {
        (Credential::None, c) | (c, Credential::None) => c,
        (Credential::Invalid(r), _) | (_, Credential::Invalid(r)) => Credential::Invalid(r),
        (Credential::Conflicting, _) | (_, Credential::Conflicting) => Credential::Conflicting,
        (a, b) if a.tenant() != b.tenant() => Credential::Conflicting,
        // Same tenant: the token carries the user, so it wins.
        (t @ Credential::Token(_), _) | (_, t @ Credential::Token(_)) => t,
        (a, _) => a,
    }
}

/// Reads every credential of the request: `X-API-Key` and `Authorization: Bearer`. A header
/// repeated (two keys, two Authorization lines) is ambiguous and invalid.
pub fn authenticate<'r>(
    headers: &ClientHeaders<'r>,
    keys: &ApiKeyIndex,
    jwt: Option<&JwtVerifier>,
    now: u64,
) -> Authentication {
    let forward_jwt = jwt.is_none_or(|v| v.forward);
    let mut strip = StripCredentials::default();
    let one = |seen: Seen<'r>| -> Result<Option<&'r str>, AuthFailure> {
        match seen.one() {
            Ok(None) => Ok(None),
            Err(Repeated) => Err(AuthFailure::AmbiguousCredentials),
            Ok(Some(v)) => v
                .to_str()
                .map(Some)
                .map_err(|_| AuthFailure::MalformedCredential),
        }
    };
    let invalid = |reason| Authentication {
        credential: Credential::Invalid(reason),
        strip: StripCredentials::default(),
    };
    let api_key = match one(headers.api_key) {
        Ok(v) => v.map(|v| v.trim_matches([' ', '\t'])),
        Err(reason) => return invalid(reason),
    };
    let bearer = match one(headers.authorization) {
        Ok(v) => v.and_then(bearer_token),
        Err(reason) => return invalid(reason),
    };
    let mut credential = Credential::None;
    for (presented, from_api_key_header) in [(api_key, true), (bearer, false)] {
        // An empty value (`Bearer ` with no token) presents nothing.
        let Some(presented) = presented.filter(|p| !p.is_empty()) else {
            continue;
        };
        let c = verify_one(presented, keys, jwt, now);
        let remove = match &c {
            Credential::ApiKey { .. } => true,
            Credential::Token(_) => !forward_jwt,
            _ => false,
        };
        if from_api_key_header {
            strip.x_api_key = remove;
        } else {
            strip.authorization = remove;
        }
        credential = combine(credential, c);
    }
    Authentication { credential, strip }
}

/// A fresh random API key (`tgk_` + 64 hex characters) and its SHA-256 hex.
pub fn new_api_key() -> Result<(String, String), getrandom::Error> {
    let mut bytes = [0u8; 32];
    getrandom::getrandom(&mut bytes)?;
    let key = format!("tgk_{}", hex::encode(bytes));
    let hash = hex::encode(key_hash(key.as_bytes()));
    Ok((key, hash))
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderMap;
    use jsonwebtoken::{encode, EncodingKey, Header};

    fn verifier(secret: &str, aud: &str) -> JwtVerifier {
        let env = format!("TG_TEST_SECRET_{}", secret.len() * 31 + aud.len());
        std::env::set_var(&env, secret);
        let cfg = crate::config::JwtConfig {
            hs256_secret_env: env,
            audience: aud.into(),
            issuer: "https://auth.test".into(),
            ..crate::config::JwtConfig::default()
        };
        JwtVerifier::compile(crate::test_support::valid_jwt(cfg))
    }

    fn token(secret: &str, claims: serde_json::Value) -> String {
        encode(
            &Header::new(Algorithm::HS256),
            &claims,
            &EncodingKey::from_secret(secret.as_bytes()),
        )
        .unwrap()
    }

    const NOW: u64 = 1_800_000_000;

    #[test]
    fn verifies_and_rejects_tokens() {
        let v = verifier("s3cret", "tg");
        let claims = |aud: &str, tenant: &str| serde_json::json!({"tenant_id": tenant, "sub": "u1", "exp": NOW + 600, "aud": aud, "iss": "https://auth.test"});
        let t = v
            .verify(&token("s3cret", claims("tg", "acme")), NOW)
            .unwrap();
        assert_eq!(t.tenant.as_deref(), Some("acme"));
        assert_eq!(t.subject.as_ref().unwrap(), "u1");
        // `alg: none`: header {"alg":"none"}, no signature.
        let alg_none = "eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0.eyJ0ZW5hbnRfaWQiOiJhY21lIiwiZXhwIjo5OTk5OTk5OTk5fQ.";
        for (what, presented, want) in [
            (
                "wrong key",
                token("other", claims("tg", "acme")),
                AuthFailure::TokenBadSignature,
            ),
            (
                "wrong audience",
                token("s3cret", claims("x", "acme")),
                AuthFailure::TokenWrongAudience,
            ),
            (
                "empty tenant",
                token("s3cret", claims("tg", "")),
                AuthFailure::TokenMissingTenant,
            ),
            (
                "not base64",
                "a.b.c".to_string(),
                AuthFailure::TokenMalformed,
            ),
            (
                "alg none",
                alg_none.to_string(),
                AuthFailure::TokenMalformed,
            ),
        ] {
            assert_eq!(v.verify(&presented, NOW).unwrap_err(), want, "{what}");
        }
    }

    #[test]
    fn token_roles_from_the_claim() {
        let v = verifier("r0les", "tg");
        let claims = |roles: serde_json::Value| serde_json::json!({"tenant_id": "acme", "exp": NOW + 600, "aud": "tg", "iss": "https://auth.test", "roles": roles});
        let list = v
            .verify(&token("r0les", claims(serde_json::json!(["b", "a"]))), NOW)
            .unwrap();
        assert_eq!(list.roles.iter().collect::<Vec<_>>(), ["a", "b"]);
        let scope = v
            .verify(&token("r0les", claims(serde_json::json!("b a"))), NOW)
            .unwrap();
        assert_eq!(scope.roles, list.roles);
        assert_eq!(
            v.verify(&token("r0les", claims(serde_json::json!([1]))), NOW)
                .unwrap_err(),
            AuthFailure::TokenInvalidRoles
        );
        let none = serde_json::json!({"tenant_id": "acme", "exp": NOW + 600, "aud": "tg", "iss": "https://auth.test"});
        assert!(v
            .verify(&token("r0les", none), NOW)
            .unwrap()
            .roles
            .is_empty());
    }

    #[test]
    fn cached_tokens_expire() {
        let v = verifier("abc", "");
        // jsonwebtoken checks exp against the real clock: use a real expiry.
        let exp = crate::quota::unix_now() + 120;
        let t = token(
            "abc",
            serde_json::json!({"tenant_id": "acme", "exp": exp, "iss": "https://auth.test"}),
        );
        assert!(v.verify(&t, exp - 60).is_ok());
        // Served from the cache, but never past exp (+ leeway).
        assert_eq!(
            v.verify(&t, exp + 31).unwrap_err(),
            AuthFailure::TokenExpired
        );
    }

    #[test]
    fn bearer_scheme_in_any_case() {
        for (value, want) in [
            ("Bearer abc", Some("abc")),
            ("bearer abc", Some("abc")),
            ("BEARER abc", Some("abc")),
            ("bEaReR \t abc  ", Some("abc")),
            ("Bearer", Some("")),
            ("Bearer ", Some("")),
            ("Basic abc", None),
            ("Bearerabc", None),
            ("", None),
        ] {
            assert_eq!(bearer_token(value), want, "{value:?}");
        }
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(3000))]

        /// Arbitrary header bytes never panic and never verify as a credential by accident.
        #[test]
        fn arbitrary_credential_headers_never_panic(
            api_key in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..40),
            authorization in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..60),
            twice in proptest::prelude::any::<bool>(),
        ) {
            let v = verifier("pt-secret", "");
            let mut idx = ApiKeyIndex::default();
            idx.insert(key_hash(b"tgk_known"), "acme", "ci", Arc::new(Roles::default()));
            let mut headers = HeaderMap::new();
            if let Ok(value) = http::HeaderValue::from_bytes(&api_key) {
                headers.append("x-api-key", value.clone());
                if twice {
                    headers.append("x-api-key", value);
                }
            }
            if let Ok(value) = http::HeaderValue::from_bytes(&authorization) {
                headers.append(http::header::AUTHORIZATION, value);
            }
            if let Ok(value) = std::str::from_utf8(&authorization) {
                let _ = bearer_token(value);
            }
            let auth = authenticate(&ClientHeaders::scan(&headers), &idx, Some(&v), NOW);
            proptest::prop_assert!(!matches!(auth.credential, Credential::Token(_)));
            if matches!(auth.credential, Credential::ApiKey { .. }) {
                proptest::prop_assert!(!twice);
            }
        }
    }

    #[test]
    fn api_keys() {
        let mut idx = ApiKeyIndex::default();
        let (key, hash) = new_api_key().unwrap();
        let mut h = [0u8; 32];
        hex::decode_to_slice(&hash, &mut h).unwrap();
        idx.insert(h, "acme", "ci", Arc::new(Roles::new(["admin"])));
        let mut headers = HeaderMap::new();
        headers.insert("x-api-key", key.parse().unwrap());
        assert!(
            matches!(authenticate(&ClientHeaders::scan(&headers), &idx, None, NOW).credential, Credential::ApiKey { ref tenant, .. } if &**tenant == "acme")
        );
        assert!(
            authenticate(&ClientHeaders::scan(&headers), &idx, None, NOW)
                .credential
                .roles()
                .contains("admin")
        );
        let mut headers = HeaderMap::new();
        headers.insert("authorization", format!("Bearer {key}").parse().unwrap());
        assert_eq!(
            authenticate(&ClientHeaders::scan(&headers), &idx, None, NOW)
                .credential
                .tenant(),
            Some("acme")
        );
        headers.insert("authorization", "Bearer nope".parse().unwrap());
        assert!(matches!(
            authenticate(&ClientHeaders::scan(&headers), &idx, None, NOW).credential,
            Credential::Invalid(AuthFailure::UnknownApiKey)
        ));
        assert!(matches!(
            authenticate(&ClientHeaders::scan(&HeaderMap::new()), &idx, None, NOW).credential,
            Credential::None
        ));
    }
}

//! Wire format of `[auth.jwt]`: how bearer JWTs are verified and what their claims mean.

use std::time::Duration;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct AuthConfig {
    pub jwt: Option<JwtConfig>,
}

#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct JwtConfig {
    pub hs256_secret_env: String,
    pub public_key_files: Vec<String>,
    pub jwks_file: String,
    pub issuer: String,
    pub audience: String,
    pub tenant_claim: String,
    /// Claim with the caller's roles: a list of strings, or one space-separated string.
    pub roles_claim: String,
    #[serde(with = "humantime_serde")]
    #[schemars(with = "String")]
    pub leeway: Duration,
    /// Forward a verified JWT upstream in `Authorization` (default); `false` removes it.
    pub forward: bool,
}

impl Default for JwtConfig {
    fn default() -> Self {
        Self {
            hs256_secret_env: "GATEWAY_JWT_SECRET".into(),
            public_key_files: vec![],
            jwks_file: String::new(),
            issuer: String::new(),
            audience: String::new(),
            tenant_claim: "tenant_id".into(),
            roles_claim: "roles".into(),
            leeway: Duration::from_secs(30),
            forward: true,
        }
    }
}

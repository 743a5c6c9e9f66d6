//! Secrets the config names by environment variable (admin token, JWT HS256 secret, domain
//! verification secret), read in this one place, once per load: a reload reads them again
//! together with the files, and every component gets them from the validated config.

use super::GatewayConfig;

/// The values of the environment variables the config names; unset and empty are `None`.
#[derive(Clone, Default)]
pub struct Secrets {
    /// `admin.token_env`: bearer token for `/admin/v1/*`.
    pub admin_token: Option<String>,
    /// `auth.jwt.hs256_secret_env`, read only when `[auth.jwt]` is configured.
    pub jwt_hs256: Option<String>,
    /// `acme.verification_secret_env`: key of the custom-domain TXT tokens.
    pub domain_verification: Option<Vec<u8>>,
}

impl std::fmt::Debug for Secrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Secrets")
            .field("admin_token", &self.admin_token.is_some())
            .field("jwt_hs256", &self.jwt_hs256.is_some())
            .field("domain_verification", &self.domain_verification.is_some())
            .finish()
    }
}

impl Secrets {
    /// Reads every secret `g` names from the process environment.
    pub fn read(g: &GatewayConfig) -> Self {
        let var = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
        Self {
            admin_token: var(&g.admin.token_env),
            jwt_hs256: g.auth.jwt.as_ref().and_then(|j| var(&j.hs256_secret_env)),
            domain_verification: var(&g.acme.verification_secret_env).map(String::into_bytes),
        }
    }
}

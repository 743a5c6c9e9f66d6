//! Gateway configs and tenant snippets that several test modules start from, so that a test
//! names only what it adds to them.

use sha2::{Digest, Sha256};

use crate::harness::{Echo, Gateway, GatewayConfig, TenantToml};

/// The default config on `echo` with the one tenant `acme` (plan `pro`, `acme.localhost`).
pub fn acme_config(echo: &Echo) -> GatewayConfig {
    GatewayConfig::with_echo(echo).tenant(TenantToml::new("acme"))
}

/// A running gateway on [`acme_config`].
pub async fn acme_gateway(echo: &Echo) -> Gateway {
    acme_config(echo).start().await
}

/// Hex SHA-256 of `s`: how tenant files name an API key.
pub fn sha256_hex(s: &str) -> String {
    hex::encode(Sha256::digest(s.as_bytes()))
}

/// `tenant` with an `[[api_keys]]` entry for `key`, named `name`.
pub fn with_api_key(tenant: TenantToml, key: &str, name: &str) -> TenantToml {
    tenant
        .line("[[api_keys]]")
        .line(&format!("sha256 = \"{}\"", sha256_hex(key)))
        .line(&format!("name = \"{name}\""))
}

/// A running gateway on [`acme_config`] with one more `[server]` line.
pub async fn acme_gateway_with_server(echo: &Echo, line: &str) -> Gateway {
    acme_config(echo).server(line).start().await
}

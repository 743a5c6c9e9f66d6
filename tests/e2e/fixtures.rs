//! Gateway configs that several test modules start from, so that a test names only what it
//! adds to them.

use crate::harness::{Echo, Gateway, GatewayConfig, TenantToml};

/// The default config on `echo` with the one tenant `acme` (plan `pro`, `acme.localhost`).
pub fn acme_config(echo: &Echo) -> GatewayConfig {
    GatewayConfig::with_echo(echo).tenant(TenantToml::new("acme"))
}

/// A running gateway on [`acme_config`].
pub async fn acme_gateway(echo: &Echo) -> Gateway {
    acme_config(echo).start().await
}

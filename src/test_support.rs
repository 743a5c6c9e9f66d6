//! Shared builders for unit tests: configs from TOML text, validated without touching disk.

use crate::config::{
    parse_toml, GatewayConfig, JwtConfig, RawConfig, TenantFile, ValidConfig, ValidJwt,
};
use crate::snapshot::Snapshot;

/// One named pool `shared` and the plans `free` (chat) and `pro` (chat, analytics) with request
/// and message quotas: the part of `gateway.toml` most unit tests need (append it after
/// `[server]`; a `features` catalogue, when wanted, goes before `[server]`).
pub const SHARED_POOL_AND_PLANS: &str = r#"
[upstreams.shared]
addrs = ["127.0.0.1:3000"]
[plans.free]
features = ["chat"]
quotas.requests = { limit = 20, period = "second" }
quotas.messages = { limit = 1000, period = "month" }
[plans.pro]
features = ["chat", "analytics"]
quotas.requests = { limit = 100, period = "second" }
quotas.messages = { limit = 100000, period = "month" }
"#;

/// A raw config of `gateway` (TOML) and tenant files `(file name, TOML)` under `tenants/`.
pub fn raw_config(gateway: &str, tenants: &[(&str, &str)]) -> RawConfig {
    raw_of(
        parse_toml("gateway.toml", gateway).expect("gateway.toml parses"),
        tenants,
    )
}

/// [`raw_config`] from an already built [`GatewayConfig`].
pub fn raw_of(gateway: GatewayConfig, tenants: &[(&str, &str)]) -> RawConfig {
    let tenants = tenants
        .iter()
        .map(|(name, text)| {
            let file = format!("tenants/{name}");
            let tenant = parse_toml(&file, text).expect("tenant parses");
            TenantFile { file, tenant }
        })
        .collect();
    RawConfig {
        dir: ".".into(),
        main_file: "gateway.toml".into(),
        gateway,
        tenants,
        content_hash: 0,
    }
}

/// The validated form of a config that must be valid.
pub fn valid(raw: RawConfig) -> ValidConfig {
    raw.validate().expect("config is valid")
}

/// The snapshot of a config that must be valid.
pub fn snapshot(gateway: &str, tenants: &[(&str, &str)]) -> Snapshot {
    Snapshot::compile(valid(raw_config(gateway, tenants)))
}

/// `[auth.jwt]` as validation loads it (secret read from `hs256_secret_env`).
pub fn valid_jwt(jwt: JwtConfig) -> ValidJwt {
    let gateway = GatewayConfig {
        auth: crate::config::AuthConfig { jwt: Some(jwt) },
        ..GatewayConfig::default()
    };
    valid(raw_of(gateway, &[])).jwt.expect("[auth.jwt] is set")
}

//! Shared builders for unit tests: configs from TOML text, validated without touching disk.

use crate::config::{
    parse_toml, GatewayConfig, JwtConfig, RawConfig, TenantFile, ValidConfig, ValidJwt,
};
use crate::snapshot::Snapshot;

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

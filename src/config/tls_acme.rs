//! Wire format of `[tls]` (the certificates dir) and `[acme]` (Let's Encrypt issuance and custom-domain
//! verification).

use std::time::Duration;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct TlsConfig {
    pub certs_dir: String,
}

impl Default for TlsConfig {
    fn default() -> Self {
        Self {
            certs_dir: "../certs".into(),
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct AcmeConfig {
    pub enabled: bool,
    pub issue_for_subdomains: bool,
    pub directory_url: String,
    pub contact: Vec<String>,
    pub ca_roots: Vec<String>,
    pub renew_before_ratio: f64,
    pub dns_servers: Vec<String>,
    pub verification_secret_env: String,
    /// How often names are checked for issuance, renewal and certificates published by peers.
    #[serde(with = "humantime_serde")]
    #[schemars(with = "String")]
    pub check_interval: Duration,
    /// First wait after a failed order; doubles up to `retry_max`.
    #[serde(with = "humantime_serde")]
    #[schemars(with = "String")]
    pub retry_base: Duration,
    #[serde(with = "humantime_serde")]
    #[schemars(with = "String")]
    pub retry_max: Duration,
    /// How often verified custom domains are checked again for their TXT record.
    #[serde(with = "humantime_serde")]
    #[schemars(with = "String")]
    pub domain_recheck_interval: Duration,
    /// How long a domain whose TXT record disappeared keeps routing before it stops.
    #[serde(with = "humantime_serde")]
    #[schemars(with = "String")]
    pub domain_failure_grace: Duration,
}

impl Default for AcmeConfig {
    fn default() -> Self {
        Self {
            enabled: false,
            issue_for_subdomains: false,
            directory_url: "https://acme-v02.api.letsencrypt.org/directory".into(),
            contact: vec![],
            ca_roots: vec![],
            renew_before_ratio: 0.33,
            dns_servers: vec![],
            verification_secret_env: "GATEWAY_DOMAIN_SECRET".into(),
            check_interval: Duration::from_secs(60),
            retry_base: Duration::from_secs(60),
            retry_max: Duration::from_secs(6 * 3600),
            domain_recheck_interval: Duration::from_secs(3600),
            domain_failure_grace: Duration::from_secs(24 * 3600),
        }
    }
}

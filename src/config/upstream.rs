//! Wire format of `[upstreams.<name>]` and a tenant's inline `upstream` table: addresses, upstream TLS and
//! timeouts.

use std::time::Duration;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct UpstreamConfig {
    pub addrs: Vec<String>,
    pub tls: bool,
    /// SNI and verification name for `tls = true`; defaults to the address host.
    pub sni: Option<String>,
    /// Extra CA bundle (PEM) for `tls = true`.
    pub ca_file: Option<String>,
    #[serde(with = "humantime_serde")]
    #[schemars(with = "String")]
    pub connect_timeout: Duration,
    #[serde(with = "humantime_serde")]
    #[schemars(with = "String")]
    pub read_timeout: Duration,
    #[serde(with = "humantime_serde")]
    #[schemars(with = "String")]
    pub write_timeout: Duration,
    /// How long an idle keep-alive connection to this upstream is kept for reuse.
    #[serde(with = "humantime_serde")]
    #[schemars(with = "String")]
    pub idle_timeout: Duration,
}

impl Default for UpstreamConfig {
    fn default() -> Self {
        Self {
            addrs: vec![],
            tls: false,
            sni: None,
            ca_file: None,
            connect_timeout: Duration::from_secs(2),
            read_timeout: Duration::from_secs(30),
            write_timeout: Duration::from_secs(30),
            idle_timeout: Duration::from_secs(60),
        }
    }
}

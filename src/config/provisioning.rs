//! Wire format of `[provisioning]`: programs run when a tenant is created, deleted or changes plan or status.

use std::time::Duration;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// `[provisioning]`: programs run when a tenant is created, deleted or changes plan or status
/// (argv lists, never a shell; see `provision::hooks`).
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct ProvisioningConfig {
    /// `["/path/to/program", "arg", …]`; empty: no hook.
    pub on_create: Vec<String>,
    pub on_delete: Vec<String>,
    /// Run when a change touches the plan or the status.
    pub on_update: Vec<String>,
    /// A hook still running after this is killed and counts as failed.
    #[serde(with = "humantime_serde")]
    #[schemars(with = "String")]
    pub timeout: Duration,
}

impl Default for ProvisioningConfig {
    fn default() -> Self {
        Self {
            on_create: Vec::new(),
            on_delete: Vec::new(),
            on_update: Vec::new(),
            timeout: Duration::from_secs(30),
        }
    }
}

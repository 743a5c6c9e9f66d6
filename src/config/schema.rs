//! JSON Schemas of the two config file kinds, generated from the serde types (schemars), for
//! editors with TOML support (taplo / Even Better TOML) and for tests. Validation that needs
//! more than one file (duplicate ids, unknown plan names) stays in `validate`.

use schemars::gen::SchemaSettings;
use schemars::JsonSchema;
use serde_json::Value;

use super::{GatewayConfig, TenantConfig};

/// Which file a schema describes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SchemaKind {
    /// `gateway.toml`
    Gateway,
    /// `tenants/<id>.toml`
    Tenant,
}

/// The JSON Schema (draft-07, the newest taplo reads) of one config file kind.
pub fn json_schema(kind: SchemaKind) -> Value {
    match kind {
        SchemaKind::Gateway => schema_of::<GatewayConfig>("tenant-gateway: gateway.toml"),
        SchemaKind::Tenant => schema_of::<TenantConfig>("tenant-gateway: tenants/<id>.toml"),
    }
}

fn schema_of<T: JsonSchema>(title: &str) -> Value {
    let mut root = SchemaSettings::draft07()
        .into_generator()
        .into_root_schema_for::<T>();
    if let Some(meta) = root.schema.metadata.as_mut() {
        meta.title = Some(title.to_string());
    } else {
        root.schema.metadata().title = Some(title.to_string());
    }
    serde_json::to_value(root).unwrap_or(Value::Null)
}

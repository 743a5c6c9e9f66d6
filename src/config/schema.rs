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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::parse_toml;
    use std::path::{Path, PathBuf};

    const UNKNOWN: &str = "surely_not_a_key";

    fn conf_dir() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("conf")
    }

    /// `conf/gateway.toml` and every `conf/tenants/*.toml`, with their schema kind.
    fn conf_files() -> Vec<(PathBuf, SchemaKind)> {
        let mut files = vec![(conf_dir().join("gateway.toml"), SchemaKind::Gateway)];
        let tenants = crate::config::list_tenant_files(&conf_dir().join("tenants")).expect("ls");
        assert!(!tenants.is_empty(), "conf/tenants has no tenant files");
        files.extend(tenants.into_iter().map(|p| (p, SchemaKind::Tenant)));
        files
    }

    fn toml_as_json(text: &str) -> Value {
        let v: toml::Value = toml::from_str(text).expect("TOML");
        serde_json::to_value(v).expect("TOML as JSON")
    }

    fn schema_errors(kind: SchemaKind, instance: &Value) -> Vec<String> {
        let validator = jsonschema::validator_for(&json_schema(kind)).expect("valid schema");
        validator
            .iter_errors(instance)
            .map(|e| format!("{} at {}", e, e.instance_path()))
            .collect()
    }

    /// What `check` says about the text (the same parser `config::load` runs), or `None`.
    fn check_error(kind: SchemaKind, file: &str, text: &str) -> Option<String> {
        match kind {
            SchemaKind::Gateway => parse_toml::<GatewayConfig>(file, text).err(),
            SchemaKind::Tenant => parse_toml::<TenantConfig>(file, text).err(),
        }
        .map(|e| e.to_string())
    }

    /// JSON pointers of every table in the document, tables inside arrays included.
    fn tables(v: &Value, at: String, out: &mut Vec<String>) {
        match v {
            Value::Object(map) => {
                out.push(at.clone());
                for (k, child) in map {
                    tables(child, format!("{at}/{k}"), out);
                }
            }
            Value::Array(items) => {
                for (i, child) in items.iter().enumerate() {
                    tables(child, format!("{at}/{i}"), out);
                }
            }
            _ => {}
        }
    }

    #[test]
    fn every_file_in_conf_validates_against_its_schema() {
        for (path, kind) in conf_files() {
            let text = std::fs::read_to_string(&path).expect("read conf file");
            let errors = schema_errors(kind, &toml_as_json(&text));
            assert!(errors.is_empty(), "{}: {errors:#?}", path.display());
            assert_eq!(check_error(kind, "f", &text), None, "{}", path.display());
        }
    }

    /// Each table of each example file gets an unknown key in turn; the schema and `check`
    /// must both reject it. In a table of names (`[plans]`, `[upstreams]`, `quotas`) the key is
    /// a new entry of the wrong type, which both reject as well.
    #[test]
    fn an_unknown_key_in_any_table_fails_the_schema_as_it_fails_check() {
        let mut cases = 0;
        for (path, kind) in conf_files() {
            let text = std::fs::read_to_string(&path).expect("read conf file");
            let doc = toml_as_json(&text);
            let mut pointers = Vec::new();
            tables(&doc, String::new(), &mut pointers);
            for pointer in pointers {
                let mut changed = doc.clone();
                let Some(Value::Object(table)) = changed.pointer_mut(&pointer) else {
                    continue;
                };
                table.insert(UNKNOWN.into(), Value::Bool(true));
                let schema = schema_errors(kind, &changed);
                assert!(
                    !schema.is_empty(),
                    "{}: the schema accepts {UNKNOWN} at {pointer:?}",
                    path.display()
                );
                let as_toml = toml::to_string(&changed).expect("to TOML");
                let check = check_error(kind, "f", &as_toml);
                assert!(
                    check.as_deref().is_some_and(|e| e.contains(UNKNOWN)),
                    "{}: check must name {UNKNOWN} at {pointer:?}, said {check:?}",
                    path.display()
                );
                cases += 1;
            }
        }
        assert!(cases >= 10, "only {cases} tables tried");
    }

    #[test]
    fn a_wrong_type_or_enum_value_fails_the_schema() {
        let bad = [
            (SchemaKind::Gateway, "[server]\nthreads = \"two\"\n"),
            (SchemaKind::Gateway, "[quota]\nbackend = \"memcached\"\n"),
            (
                SchemaKind::Gateway,
                "[plans.free]\nquotas.requests = { limit = 5, period = \"week\" }\n",
            ),
            (
                SchemaKind::Tenant,
                "id = \"a\"\nplan = \"free\"\nupstream = \"shared\"\nstatus = \"paused\"\n",
            ),
            (SchemaKind::Tenant, "id = \"a\"\nupstream = \"shared\"\n"),
        ];
        for (kind, text) in bad {
            assert!(
                !schema_errors(kind, &toml_as_json(text)).is_empty(),
                "{text}"
            );
            assert!(check_error(kind, "f", text).is_some(), "{text}");
        }
    }
}

//! Unit tests of provisioning against temporary config dirs.

use super::*;

const GATEWAY: &str = r#"
features = ["chat", "analytics"]

[server]
http_listen = ["127.0.0.1:18080"]
admin_listen = "127.0.0.1:19090"
base_domains = ["localhost"]

[upstreams.shared]
addrs = ["127.0.0.1:3000"]

[plans.free]
features = ["chat"]
quotas.messages = { limit = 1000, period = "month" }

[plans.pro]
features = ["chat", "analytics"]
quotas.messages = { limit = 100000, period = "month" }
"#;

const ACME: &str = r#"# Acme: our first customer. Keep this comment.
id = "acme"
name = "Acme Corp"
plan = "free"          # upgraded next quarter
upstream = "shared"

[quotas]
# negotiated in the contract
messages = { limit = 5000, period = "month" }
"#;

fn setup() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("tenants")).unwrap();
    let path = dir.path().join("gateway.toml");
    std::fs::write(&path, GATEWAY).unwrap();
    std::fs::write(dir.path().join("tenants/acme.toml"), ACME).unwrap();
    (dir, path)
}

fn new_tenant(id: &str) -> NewTenant {
    NewTenant {
        id: id.into(),
        plan: "pro".into(),
        organization_id: Some("org_1".into()),
        name: Some("Globex \"Inc\"".into()),
        custom_domains: vec!["app.globex.com".into()],
        features_enabled: vec!["analytics".into()],
        quotas: BTreeMap::from([(
            "messages".to_string(),
            QuotaLimitConfig {
                limit: 42,
                period: Period::Month,
            },
        )]),
        schema: Some("tenant_globex".into()),
        ..NewTenant::default()
    }
}

/// Every file in the tenants dir, hidden ones included.
fn listing(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir.join("tenants"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

#[test]
fn create_writes_a_file_that_check_accepts() {
    let (dir, path) = setup();
    let written = create(&path, new_tenant("globex")).unwrap();
    assert_eq!(written, dir.path().join("tenants/globex.toml"));
    let text = std::fs::read_to_string(&written).unwrap();
    assert!(
        text.starts_with("# created by tenant-gateway on "),
        "{text}"
    );
    assert!(
        text.contains("upstream = \"shared\"\n"),
        "default pool: {text}"
    );
    assert!(text.contains("name = \"Globex \\\"Inc\\\"\"\n"), "{text}");
    assert!(text.contains("\n[quotas]"), "{text}");
    assert!(
        text.contains("messages = { limit = 42, period = \"month\" }"),
        "{text}"
    );
    // What `check` does.
    let raw = config::load(&path).unwrap();
    let snapshot = Snapshot::compile(&raw).unwrap();
    assert_eq!(snapshot.hosts.len(), 2);
    let t = &raw
        .tenants
        .iter()
        .find(|t| t.tenant.id == "globex")
        .unwrap()
        .tenant;
    assert_eq!(t.name, "Globex \"Inc\"");
    assert_eq!(t.custom_domains, ["app.globex.com"]);
    assert_eq!(t.quotas["messages"].limit, 42);
    assert_eq!(
        listing(dir.path()),
        ["acme.toml", "globex.toml"],
        "no temp file left"
    );
}

#[test]
fn create_refuses_an_existing_id() {
    let (dir, path) = setup();
    let err = create(&path, new_tenant("acme")).unwrap_err();
    assert!(
        matches!(err, ProvisionError::Exists { ref id, .. } if id == "acme"),
        "{err}"
    );
    // Same id in a file of another name.
    std::fs::write(
        dir.path().join("tenants/other-name.toml"),
        "id = \"initech\"\nplan = \"free\"\nupstream = \"shared\"\n",
    )
    .unwrap();
    let err = create(&path, new_tenant("initech")).unwrap_err();
    match err {
        ProvisionError::Exists { file, .. } => assert_eq!(file, "tenants/other-name.toml"),
        e => panic!("expected Exists, got {e}"),
    }
    assert_eq!(
        std::fs::read_to_string(dir.path().join("tenants/acme.toml")).unwrap(),
        ACME
    );
}

#[test]
fn create_with_an_unknown_plan_writes_nothing() {
    let (dir, path) = setup();
    let mut t = new_tenant("globex");
    t.plan = "gold".into();
    let err = create(&path, t).unwrap_err();
    let ProvisionError::Invalid(errors) = &err else {
        panic!("expected Invalid, got {err}");
    };
    assert_eq!(errors.len(), 1, "{err}");
    assert_eq!(errors[0].file, "tenants/globex.toml");
    assert_eq!(errors[0].key, "plan");
    assert_eq!(
        err.to_string(),
        "tenants/globex.toml: plan: unknown plan \"gold\""
    );
    assert_eq!(listing(dir.path()), ["acme.toml"]);
}

#[test]
fn create_checks_cross_file_rules_and_ids() {
    let (dir, path) = setup();
    // Unsafe ids are refused before any path is built.
    let err = create(&path, new_tenant("../gateway")).unwrap_err();
    assert!(
        matches!(&err, ProvisionError::Invalid(e) if e[0].key == "id"),
        "{err}"
    );
    // Two pools: the upstream must be named.
    let mut two = GATEWAY.to_string();
    two.push_str("\n[upstreams.other]\naddrs = [\"127.0.0.1:3001\"]\n");
    std::fs::write(&path, two).unwrap();
    let err = create(&path, new_tenant("globex")).unwrap_err();
    assert!(
        matches!(&err, ProvisionError::Invalid(e) if e[0].key == "upstream"),
        "{err}"
    );
    let mut t = new_tenant("globex");
    t.upstream = Some("other".into());
    create(&path, t).unwrap();
    // A custom domain another tenant already claims.
    let mut t = new_tenant("hooli");
    t.upstream = Some("shared".into());
    t.features_enabled = vec!["nope".into()];
    let err = create(&path, t).unwrap_err();
    let ProvisionError::Invalid(errors) = &err else {
        panic!("expected Invalid, got {err}");
    };
    let keys: Vec<&str> = errors.iter().map(|e| e.key.as_str()).collect();
    assert_eq!(keys, ["custom_domains[0]", "features_enabled[0]"], "{err}");
    assert_eq!(listing(dir.path()), ["acme.toml", "globex.toml"]);
}

#[test]
fn update_edits_only_patched_keys_and_keeps_comments() {
    let (dir, path) = setup();
    let file = dir.path().join("tenants/acme.toml");
    let written = update(
        &path,
        "acme",
        TenantPatch {
            plan: Some("pro".into()),
            features_enabled: Some(vec!["analytics".into()]),
            quotas: Some(BTreeMap::from([(
                "messages".to_string(),
                Some(QuotaLimitConfig {
                    limit: 7000,
                    period: Period::Month,
                }),
            )])),
            ..TenantPatch::default()
        },
    )
    .unwrap();
    assert_eq!(written, file);
    let text = std::fs::read_to_string(&file).unwrap();
    let expected = r#"# Acme: our first customer. Keep this comment.
id = "acme"
name = "Acme Corp"
plan = "pro"          # upgraded next quarter
upstream = "shared"
features_enabled = ["analytics"]

[quotas]
# negotiated in the contract
messages = { limit = 7000, period = "month" }
"#;
    assert_eq!(text, expected);
    config::load(&path).unwrap();

    set_status(&path, "acme", TenantStatus::Suspended).unwrap();
    let raw = config::load(&path).unwrap();
    assert_eq!(raw.tenants[0].tenant.status, TenantStatus::Suspended);
    let text = std::fs::read_to_string(&file).unwrap();
    assert!(text.contains("# Acme: our first customer. Keep this comment."));
    assert!(text.contains("status = \"suspended\""), "{text}");

    // Removing the override.
    update(
        &path,
        "acme",
        TenantPatch {
            quotas: Some(BTreeMap::from([("messages".to_string(), None)])),
            ..TenantPatch::default()
        },
    )
    .unwrap();
    let raw = config::load(&path).unwrap();
    assert!(raw.tenants[0].tenant.quotas.is_empty());
    assert_eq!(listing(dir.path()), ["acme.toml"], "no temp file left");
}

#[test]
fn update_rejects_invalid_changes_and_unknown_tenants() {
    let (dir, path) = setup();
    let err = update(
        &path,
        "acme",
        TenantPatch {
            plan: Some("gold".into()),
            ..TenantPatch::default()
        },
    )
    .unwrap_err();
    assert_eq!(
        err.to_string(),
        "tenants/acme.toml: plan: unknown plan \"gold\""
    );
    assert_eq!(
        std::fs::read_to_string(dir.path().join("tenants/acme.toml")).unwrap(),
        ACME
    );
    let err = set_status(&path, "nobody", TenantStatus::Active).unwrap_err();
    assert!(matches!(err, ProvisionError::NotFound { .. }), "{err}");
}

#[test]
fn delete_moves_the_file_to_deleted() {
    let (dir, path) = setup();
    let moved = delete(&path, "acme").unwrap();
    assert_eq!(moved.parent().unwrap(), dir.path().join("tenants/.deleted"));
    let name = moved.file_name().unwrap().to_string_lossy().into_owned();
    assert!(
        name.starts_with("acme-") && name.ends_with(".toml"),
        "{name}"
    );
    assert_eq!(std::fs::read_to_string(&moved).unwrap(), ACME);
    assert!(!dir.path().join("tenants/acme.toml").exists());
    // The loader ignores .deleted/.
    let raw = config::load(&path).unwrap();
    assert!(raw.tenants.is_empty());
    assert!(matches!(
        delete(&path, "acme"),
        Err(ProvisionError::NotFound { .. })
    ));
    // The id is free again.
    create(&path, new_tenant("acme")).unwrap();
}

#[test]
fn json_bodies_deny_unknown_fields() {
    let t: NewTenant = serde_json::from_str(
        r#"{"id":"x","plan":"free","quotas":{"messages":{"limit":1,"period":"day"}}}"#,
    )
    .unwrap();
    assert_eq!(t.quotas["messages"].period, Period::Day);
    assert!(serde_json::from_str::<NewTenant>(r#"{"id":"x","plan":"free","bogus":1}"#).is_err());
    let p: TenantPatch =
        serde_json::from_str(r#"{"status":"suspended","quotas":{"messages":null}}"#).unwrap();
    assert_eq!(p.status, Some(TenantStatus::Suspended));
    assert_eq!(p.quotas.unwrap()["messages"], None);
    assert!(serde_json::from_str::<TenantPatch>(r#"{"id":"y"}"#).is_err());
}

//! Unit tests of provisioning against temporary config dirs.

use super::*;
use crate::test_support::SHARED_POOL_AND_PLANS;

const SERVER: &str = r#"
features = ["chat", "analytics"]

[server]
http_listen = ["127.0.0.1:18080"]
admin_listen = "127.0.0.1:19090"
base_domains = ["localhost"]
"#;

/// A feature catalogue, one base domain and [`SHARED_POOL_AND_PLANS`].
static GATEWAY: std::sync::LazyLock<String> =
    std::sync::LazyLock::new(|| format!("{SERVER}{SHARED_POOL_AND_PLANS}"));

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
    std::fs::write(&path, &*GATEWAY).unwrap();
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
    for line in [
        "upstream = \"shared\"\n", // the default pool
        "name = \"Globex \\\"Inc\\\"\"\n",
        "\n[quotas]",
        "messages = { limit = 42, period = \"month\" }",
    ] {
        assert!(text.contains(line), "{line:?} in {text}");
    }
    // What `check` does.
    let raw = config::read_validated(&path).unwrap();
    let snapshot = crate::snapshot::Snapshot::compile(raw.clone().validate().unwrap());
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
    let raw = config::read_validated(&path).unwrap();
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
    let raw = config::read_validated(&path).unwrap();
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
    let raw = config::read_validated(&path).unwrap();
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

// ---------------------------------------------------------------------------------------------
// With [provisioning] hooks

/// The test config plus a `[provisioning]` table.
fn setup_with_hooks(provisioning: &str) -> (tempfile::TempDir, PathBuf) {
    let (dir, path) = setup();
    std::fs::write(
        &path,
        format!("{}\n[provisioning]\n{provisioning}\n", *GATEWAY),
    )
    .unwrap();
    (dir, path)
}

#[test]
fn a_failing_on_create_writes_nothing() {
    let (dir, path) = setup_with_hooks(
        r#"on_create = ["/bin/sh", "-c", "echo creating; echo 'no database for you' >&2; exit 2"]"#,
    );
    let before = listing(dir.path());
    match create(&path, new_tenant("globex")) {
        Err(ProvisionError::Hook(f)) => {
            assert_eq!(f.kind, hooks::HookFailureKind::Exit(Some(2)));
            assert_eq!(f.stderr_tail, ["no database for you"]);
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(listing(dir.path()), before);
    // Nothing stays reserved: the id can be tried again.
    assert!(matches!(
        create(&path, new_tenant("globex")),
        Err(ProvisionError::Hook(_))
    ));
}

#[test]
fn a_tenant_being_provisioned_is_reserved() {
    let (dir, path) = setup_with_hooks(
        r#"on_create = ["/bin/sh", "-c", "touch started; while [ ! -e release ]; do sleep 0.02; done"]"#,
    );
    let slow = {
        let path = path.clone();
        std::thread::spawn(move || create(&path, new_tenant("globex")))
    };
    let started = dir.path().join("started");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while !started.exists() {
        assert!(std::time::Instant::now() < deadline, "hook never started");
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    // Its id and its custom domain are taken; unrelated changes go through meanwhile.
    assert!(matches!(
        create(&path, new_tenant("globex")),
        Err(ProvisionError::Exists { .. })
    ));
    let mut rival = new_tenant("rival");
    rival.schema = None;
    match create(&path, rival) {
        Err(ProvisionError::Invalid(errors)) => {
            let joined: String = errors.iter().map(|e| e.to_string()).collect();
            assert!(
                joined.contains("tenants/rival.toml: custom_domains[0]")
                    && joined.contains("\"globex\""),
                "{joined}"
            );
        }
        other => panic!("{other:?}"),
    }
    let patch = TenantPatch {
        plan: Some("pro".into()),
        ..TenantPatch::default()
    };
    update(&path, "acme", patch).unwrap();
    assert!(!dir.path().join("tenants/globex.toml").exists());
    std::fs::write(dir.path().join("release"), "").unwrap();
    let written = slow.join().unwrap().unwrap();
    assert_eq!(written, dir.path().join("tenants/globex.toml"));
    assert!(written.exists());
}

#[test]
fn on_update_runs_for_plan_and_status_changes_only_and_can_refuse() {
    let (dir, path) = setup_with_hooks(
        r#"on_update = ["/bin/sh", "-c", "echo \"$TENANT_PREVIOUS_PLAN>$TENANT_PLAN $TENANT_PREVIOUS_STATUS>$TENANT_STATUS\" >> updates; test ! -e refuse"]"#,
    );
    let file = dir.path().join("tenants/acme.toml");
    let updates = dir.path().join("updates");
    let plan = |p: &str| TenantPatch {
        plan: Some(p.into()),
        ..TenantPatch::default()
    };
    update(&path, "acme", plan("pro")).unwrap();
    set_status(&path, "acme", TenantStatus::Suspended).unwrap();
    let features = TenantPatch {
        features_enabled: Some(vec!["analytics".into()]),
        ..TenantPatch::default()
    };
    update(&path, "acme", features).unwrap();
    assert_eq!(
        std::fs::read_to_string(&updates).unwrap(),
        "free>pro active>active\npro>pro active>suspended\n"
    );
    std::fs::write(dir.path().join("refuse"), "").unwrap();
    let before = std::fs::read_to_string(&file).unwrap();
    assert!(matches!(
        update(&path, "acme", plan("free")),
        Err(ProvisionError::Hook(_))
    ));
    assert_eq!(std::fs::read_to_string(&file).unwrap(), before);
}

#[test]
fn the_delete_hook_gets_the_deleted_tenant() {
    let (dir, path) = setup_with_hooks(
        r#"on_delete = ["/bin/sh", "-c", "echo \"$TENANT_EVENT $TENANT_ID $TENANT_PLAN\" > deleted"]"#,
    );
    let moved = delete(&path, "acme").unwrap();
    assert!(
        !dir.path().join("deleted").exists(),
        "delete itself runs no hook"
    );
    run_delete_hook(&path, &moved).unwrap();
    assert_eq!(
        std::fs::read_to_string(dir.path().join("deleted")).unwrap(),
        "delete acme free\n"
    );
}

//! Tenant provisioning without hand-editing: create, patch, suspend/activate and delete tenant
//! files, each change validated against the WHOLE config before a byte reaches the disk.
//!
//! This is the file-level API behind `tenant-gateway tenant …` and `POST/PATCH/DELETE
//! /admin/v1/tenants`; it does not reload anything itself (the running gateway's file watch, or
//! an explicit reload, picks the change up). Files are written atomically (hidden temp file in
//! the tenants dir + rename), so a reload never reads half a file and the loader never reads
//! the temp file. Deleted tenants are moved to `tenants/.deleted/`, never destroyed.
//!
//! Every function blocks (file I/O; compiling the config may resolve upstream host names): call
//! them from `spawn_blocking` in async code. Changes are serialised inside one process; two
//! processes provisioning at the same moment (the CLI next to the admin API) can still race on
//! cross-tenant checks such as a custom domain claimed twice, and the next reload then rejects
//! the config and keeps the old one serving.

use std::collections::BTreeMap;
use std::fmt;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

use serde::Deserialize;

use crate::config::{
    self, BrandingConfig, ConfigError, ConfigErrors, GatewayConfig, Period, QuotaLimitConfig,
    RawConfig, TenantConfig, TenantFile, TenantStatus,
};
use crate::snapshot::Snapshot;
use crate::tenant::is_valid_label;

/// Serialises every change made through this module in this process, so two admin requests
/// never validate against the same old state and both write.
static PROVISION_LOCK: Mutex<()> = Mutex::new(());

/// Name of the directory, inside the tenants dir, that receives deleted tenant files.
pub const DELETED_DIR: &str = ".deleted";

/// A tenant to create. Doubles as the JSON body of `POST /admin/v1/tenants`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewTenant {
    /// Slug: a lower-case DNS label; also the file name (`tenants/<id>.toml`) and, unless
    /// `subdomain` is set, the subdomain.
    pub id: String,
    pub plan: String,
    #[serde(default)]
    pub status: TenantStatus,
    #[serde(default)]
    pub subdomain: Option<String>,
    #[serde(default)]
    pub organization_id: Option<String>,
    #[serde(default)]
    pub name: Option<String>,
    /// Named upstream pool. Default: the only pool, when the config has exactly one.
    #[serde(default)]
    pub upstream: Option<String>,
    #[serde(default)]
    pub custom_domains: Vec<String>,
    #[serde(default)]
    pub features_enabled: Vec<String>,
    #[serde(default)]
    pub features_disabled: Vec<String>,
    /// Overrides of the plan's quotas, by resource.
    #[serde(default)]
    pub quotas: BTreeMap<String, QuotaLimitConfig>,
    /// Sent upstream as `X-Tenant-Schema`.
    #[serde(default)]
    pub schema: Option<String>,
    #[serde(default)]
    pub branding: Option<BrandingConfig>,
}

/// A change to an existing tenant: only the keys that are `Some` are touched. Doubles as the
/// JSON body of `PATCH /admin/v1/tenants/{id}`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TenantPatch {
    #[serde(default)]
    pub plan: Option<String>,
    #[serde(default)]
    pub status: Option<TenantStatus>,
    /// Replaces the whole list.
    #[serde(default)]
    pub features_enabled: Option<Vec<String>>,
    /// Replaces the whole list.
    #[serde(default)]
    pub features_disabled: Option<Vec<String>>,
    /// Merged into the tenant's quota overrides, resource by resource (JSON merge-patch
    /// style): a limit sets or replaces that resource's override, `null` removes it so the
    /// plan's quota applies again; resources not named are left alone.
    #[serde(default)]
    pub quotas: Option<BTreeMap<String, Option<QuotaLimitConfig>>>,
}

impl TenantPatch {
    pub fn is_empty(&self) -> bool {
        let TenantPatch {
            plan,
            status,
            features_enabled,
            features_disabled,
            quotas,
        } = self;
        plan.is_none()
            && status.is_none()
            && features_enabled.is_none()
            && features_disabled.is_none()
            && quotas.is_none()
    }
}

/// Why a provisioning call changed nothing.
///
/// Suggested HTTP mapping: `NotFound` 404, `Exists` 409, `Invalid` 422 (with the error list),
/// `Io` 500.
#[derive(Debug, thiserror::Error)]
pub enum ProvisionError {
    #[error("tenant {id:?} not found")]
    NotFound { id: String },
    /// The id is taken, by a file of that name or by a tenant id inside any file.
    #[error("{file}: id: tenant {id:?} already exists")]
    Exists { id: String, file: String },
    /// The change would make the config invalid (or it is invalid already); every error names
    /// file and key, like `tenants/x.toml: plan: unknown plan "gold"`.
    #[error("{}", InvalidList(.0))]
    Invalid(Vec<ConfigError>),
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

impl From<ConfigErrors> for ProvisionError {
    fn from(e: ConfigErrors) -> Self {
        ProvisionError::Invalid(e.0)
    }
}

impl From<ConfigError> for ProvisionError {
    fn from(e: ConfigError) -> Self {
        ProvisionError::Invalid(vec![e])
    }
}

struct InvalidList<'a>(&'a [ConfigError]);

impl fmt::Display for InvalidList<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> ProvisionError + '_ {
    move |source| ProvisionError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Creates `tenants/<id>.toml`; returns its path.
///
/// Refuses an id that exists as a file or as a tenant id in any file. The file is rendered as a
/// person would write it, then the whole config (as if the file existed) is validated and
/// compiled; only then is the file written. Nothing is written on any error.
pub fn create(config_path: &Path, t: NewTenant) -> Result<PathBuf, ProvisionError> {
    let _guard = PROVISION_LOCK.lock().unwrap_or_else(|p| p.into_inner());
    let layout = Layout::read(config_path)?;
    check_id(&layout.rel(&format!("{}.toml", t.id)), &t.id)?;
    let file_name = format!("{}.toml", t.id);
    let rel = layout.rel(&file_name);
    let path = layout.tenants_dir.join(&file_name);
    if path.exists() {
        return Err(ProvisionError::Exists {
            id: t.id,
            file: rel,
        });
    }

    let mut raw = config::load(config_path)?;
    if let Some(other) = raw.tenants.iter().find(|tf| tf.tenant.id == t.id) {
        return Err(ProvisionError::Exists {
            id: t.id,
            file: other.file.clone(),
        });
    }
    let upstream = match t.upstream.clone() {
        Some(u) => u,
        None => default_pool(&raw.gateway, &rel)?,
    };
    let text = render(&t, &upstream, &today_utc());
    let tenant: TenantConfig = config::parse_toml(&rel, &text)?;
    raw.tenants.push(TenantFile {
        file: rel.clone(),
        tenant,
    });
    validate_whole(&raw)?;
    write_new(&layout.tenants_dir, &path, &text).map_err(|e| match e {
        WriteNewError::Exists => ProvisionError::Exists {
            id: t.id,
            file: rel,
        },
        WriteNewError::Io(path, source) => ProvisionError::Io { path, source },
    })?;
    Ok(path)
}

/// Edits only the keys named in `patch` in the tenant's file, keeping every comment and the
/// formatting of everything else; validates the whole config with the edited content before
/// writing. Returns the path of the file.
pub fn update(config_path: &Path, id: &str, patch: TenantPatch) -> Result<PathBuf, ProvisionError> {
    let _guard = PROVISION_LOCK.lock().unwrap_or_else(|p| p.into_inner());
    let mut raw = config::load(config_path)?;
    let Some(index) = raw.tenants.iter().position(|tf| tf.tenant.id == id) else {
        return Err(ProvisionError::NotFound { id: id.into() });
    };
    let rel = raw.tenants[index].file.clone();
    let path = raw.dir.join(&rel);
    let text = std::fs::read_to_string(&path).map_err(io_err(&path))?;
    let edited = apply_patch(&rel, &text, &patch)?;
    if edited == text {
        return Ok(path);
    }
    raw.tenants[index].tenant = config::parse_toml(&rel, &edited)?;
    validate_whole(&raw)?;
    let dir = path.parent().unwrap_or_else(|| Path::new("."));
    write_replace(dir, &path, &edited)
        .map_err(|(path, source)| ProvisionError::Io { path, source })?;
    Ok(path)
}

/// Suspends or activates a tenant (an [`update`] of `status` only).
pub fn set_status(
    config_path: &Path,
    id: &str,
    status: TenantStatus,
) -> Result<PathBuf, ProvisionError> {
    update(
        config_path,
        id,
        TenantPatch {
            status: Some(status),
            ..TenantPatch::default()
        },
    )
}

/// Moves the tenant's file to `tenants/.deleted/<id>-<unix time>.toml`; returns the new path.
///
/// Works even when the rest of the config is invalid (removing a tenant cannot break another
/// file, and may be how an operator repairs a duplicate).
pub fn delete(config_path: &Path, id: &str) -> Result<PathBuf, ProvisionError> {
    let _guard = PROVISION_LOCK.lock().unwrap_or_else(|p| p.into_inner());
    let layout = Layout::read(config_path)?;
    let path = find_tenant_file(&layout, id)?;
    let deleted_dir = layout.tenants_dir.join(DELETED_DIR);
    std::fs::create_dir_all(&deleted_dir).map_err(io_err(&deleted_dir))?;
    let stamp = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let mut target = deleted_dir.join(format!("{id}-{stamp}.toml"));
    let mut n = 1;
    while target.exists() {
        target = deleted_dir.join(format!("{id}-{stamp}-{n}.toml"));
        n += 1;
    }
    std::fs::rename(&path, &target).map_err(io_err(&path))?;
    Ok(target)
}

// ---------------------------------------------------------------------------------------------
// Where things are

/// The config dir and its tenants dir, read from `gateway.toml` alone.
struct Layout {
    tenants_dir: PathBuf,
    /// `server.tenants_dir` as written, for file names in errors (`tenants/x.toml`).
    tenants_rel: String,
}

impl Layout {
    fn read(config_path: &Path) -> Result<Layout, ProvisionError> {
        let dir = config_path
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or_else(|| Path::new("."));
        let main_file = config_path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "gateway.toml".into());
        let text = std::fs::read_to_string(config_path).map_err(io_err(config_path))?;
        let gateway: GatewayConfig = config::parse_toml(&main_file, &text)?;
        Ok(Layout {
            tenants_dir: dir.join(&gateway.server.tenants_dir),
            tenants_rel: gateway.server.tenants_dir.trim_end_matches('/').to_string(),
        })
    }

    /// A tenant file's name as the loader reports it.
    fn rel(&self, file_name: &str) -> String {
        format!("{}/{}", self.tenants_rel, file_name)
    }
}

/// The file holding tenant `id`: `<id>.toml` when it says so, else any file with that id.
fn find_tenant_file(layout: &Layout, id: &str) -> Result<PathBuf, ProvisionError> {
    if !is_valid_label(id) {
        return Err(ProvisionError::NotFound { id: id.into() });
    }
    let files =
        config::list_tenant_files(&layout.tenants_dir).map_err(io_err(&layout.tenants_dir))?;
    let id_of = |path: &Path| -> Option<String> {
        let text = std::fs::read_to_string(path).ok()?;
        let doc: toml_edit::DocumentMut = text.parse().ok()?;
        doc.get("id")?.as_str().map(str::to_string)
    };
    let by_name = layout.tenants_dir.join(format!("{id}.toml"));
    if files.contains(&by_name) && id_of(&by_name).as_deref() == Some(id) {
        return Ok(by_name);
    }
    files
        .into_iter()
        .find(|p| id_of(p).as_deref() == Some(id))
        .ok_or_else(|| ProvisionError::NotFound { id: id.into() })
}

/// The id must be a safe file name before it is ever joined to a path.
fn check_id(rel: &str, id: &str) -> Result<(), ProvisionError> {
    if is_valid_label(id) && id.to_ascii_lowercase() == id {
        Ok(())
    } else {
        Err(ConfigError::new(
            rel,
            "id",
            format!("tenant ids are lower-case DNS labels: {id:?}"),
        )
        .into())
    }
}

fn default_pool(g: &GatewayConfig, rel: &str) -> Result<String, ProvisionError> {
    let mut names = g.upstreams.keys();
    match (names.next(), names.next()) {
        (Some(only), None) => Ok(only.clone()),
        (None, _) => Err(ConfigError::new(
            rel,
            "upstream",
            "required: the config defines no upstream pool",
        )
        .into()),
        (Some(_), Some(_)) => Err(ConfigError::new(
            rel,
            "upstream",
            format!(
                "required: the config has several upstream pools ({}); name one",
                g.upstreams
                    .keys()
                    .map(String::as_str)
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        )
        .into()),
    }
}

/// What `tenant-gateway check` runs: cross-file validation, then compilation.
fn validate_whole(raw: &RawConfig) -> Result<(), ProvisionError> {
    let errors = config::validate(raw);
    if !errors.is_empty() {
        return Err(ProvisionError::Invalid(errors));
    }
    Snapshot::compile(raw)?;
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Rendering and editing TOML

fn today_utc() -> String {
    chrono::Utc::now().format("%Y-%m-%d").to_string()
}

/// A TOML basic string, always on one line with `"` quotes (toml_edit would pick a multi-line
/// or literal form for some content, which people do not write).
fn quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            c if c.is_control() => out.push_str(&format!("\\u{:04X}", u32::from(c))),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn quote_list(items: &[String]) -> String {
    let quoted: Vec<String> = items.iter().map(|s| quote(s)).collect();
    format!("[{}]", quoted.join(", "))
}

fn period_name(p: Period) -> &'static str {
    match p {
        Period::Second => "second",
        Period::Minute => "minute",
        Period::Hour => "hour",
        Period::Day => "day",
        Period::Month => "month",
    }
}

fn status_name(s: TenantStatus) -> &'static str {
    match s {
        TenantStatus::Active => "active",
        TenantStatus::Suspended => "suspended",
    }
}

fn quota_inline(q: &QuotaLimitConfig) -> String {
    format!(
        "{{ limit = {}, period = \"{}\" }}",
        q.limit,
        period_name(q.period)
    )
}

/// The file a person would write: fixed key order (that of the example `conf/tenants/acme.toml`),
/// a header comment, tables last.
fn render(t: &NewTenant, upstream: &str, date: &str) -> String {
    let NewTenant {
        id,
        plan,
        status,
        subdomain,
        organization_id,
        name,
        upstream: _,
        custom_domains,
        features_enabled,
        features_disabled,
        quotas,
        schema,
        branding,
    } = t;
    let mut s = String::new();
    s.push_str(&format!("# created by tenant-gateway on {date} (UTC)\n"));
    s.push_str(&format!("id = {}\n", quote(id)));
    if let Some(org) = organization_id {
        s.push_str(&format!("organization_id = {}\n", quote(org)));
    }
    if let Some(name) = name {
        s.push_str(&format!("name = {}\n", quote(name)));
    }
    s.push_str(&format!("plan = {}\n", quote(plan)));
    s.push_str(&format!(
        "status = \"{}\"  # active | suspended\n",
        status_name(*status)
    ));
    if let Some(sub) = subdomain {
        s.push_str(&format!("subdomain = {}\n", quote(sub)));
    }
    s.push_str(&format!(
        "custom_domains = {}\n",
        quote_list(custom_domains)
    ));
    s.push_str(&format!(
        "features_enabled = {}\n",
        quote_list(features_enabled)
    ));
    s.push_str(&format!(
        "features_disabled = {}\n",
        quote_list(features_disabled)
    ));
    s.push_str(&format!("upstream = {}\n", quote(upstream)));
    if let Some(schema) = schema {
        s.push_str(&format!("schema = {}\n", quote(schema)));
    }
    if !quotas.is_empty() {
        s.push_str("\n[quotas]  # overrides of the plan's quotas\n");
        for (res, q) in quotas {
            s.push_str(&format!(
                "{} = {}\n",
                toml_edit::Key::new(res.as_str()),
                quota_inline(q)
            ));
        }
    }
    if let Some(b) = branding {
        let BrandingConfig {
            logo,
            primary_color,
            secondary_color,
        } = b;
        let lines: Vec<String> = [
            ("logo", logo),
            ("primary_color", primary_color),
            ("secondary_color", secondary_color),
        ]
        .into_iter()
        .filter_map(|(k, v)| v.as_ref().map(|v| format!("{k} = {}\n", quote(v))))
        .collect();
        if !lines.is_empty() {
            s.push_str("\n[branding]\n");
            s.extend(lines);
        }
    }
    s
}

/// Sets a root-level value, keeping the key's comments above it and the comment after the old
/// value; a missing key is appended after the other root keys.
fn set_root_value(doc: &mut toml_edit::DocumentMut, key: &str, value: toml_edit::Value) {
    let root = doc.as_table_mut();
    match root.get_mut(key) {
        Some(toml_edit::Item::Value(old)) => {
            let decor = old.decor().clone();
            *old = value;
            *old.decor_mut() = decor;
        }
        _ => {
            root.insert(key, toml_edit::Item::Value(value));
        }
    }
}

fn string_array(items: &[String]) -> toml_edit::Value {
    let mut a = toml_edit::Array::new();
    for i in items {
        a.push(i.as_str());
    }
    toml_edit::Value::Array(a)
}

fn quota_table(q: &QuotaLimitConfig) -> toml_edit::InlineTable {
    let mut t = toml_edit::InlineTable::new();
    // Both fit i64: limits are far below 2^63 in practice; clamp rather than wrap.
    t.insert("limit", i64::try_from(q.limit).unwrap_or(i64::MAX).into());
    t.insert("period", period_name(q.period).into());
    t.fmt();
    t
}

/// Applies a patch to the text of a tenant file with `toml_edit`, touching only patched keys.
fn apply_patch(rel: &str, text: &str, patch: &TenantPatch) -> Result<String, ProvisionError> {
    let mut doc: toml_edit::DocumentMut = text.parse().map_err(|e: toml_edit::TomlError| {
        ConfigError::new(rel, "-", e.to_string().trim().to_string())
    })?;
    let TenantPatch {
        plan,
        status,
        features_enabled,
        features_disabled,
        quotas,
    } = patch;
    if let Some(plan) = plan {
        set_root_value(&mut doc, "plan", plan.as_str().into());
    }
    if let Some(status) = status {
        set_root_value(&mut doc, "status", status_name(*status).into());
    }
    if let Some(list) = features_enabled {
        set_root_value(&mut doc, "features_enabled", string_array(list));
    }
    if let Some(list) = features_disabled {
        set_root_value(&mut doc, "features_disabled", string_array(list));
    }
    if let Some(changes) = quotas {
        patch_quotas(rel, &mut doc, changes)?;
    }
    Ok(doc.to_string())
}

fn patch_quotas(
    rel: &str,
    doc: &mut toml_edit::DocumentMut,
    changes: &BTreeMap<String, Option<QuotaLimitConfig>>,
) -> Result<(), ProvisionError> {
    let root = doc.as_table_mut();
    if !root.contains_key("quotas") {
        if changes.values().all(Option::is_none) {
            return Ok(());
        }
        root.insert("quotas", toml_edit::Item::Table(toml_edit::Table::new()));
    }
    let Some(quotas) = root.get_mut("quotas").and_then(|i| i.as_table_like_mut()) else {
        return Err(ConfigError::new(rel, "quotas", "is not a table; edit it by hand").into());
    };
    for (res, change) in changes {
        match change {
            None => {
                quotas.remove(res);
            }
            Some(q) => {
                let inline = quota_table(q);
                match quotas.get_mut(res) {
                    // `[quotas.messages]` sub-table: keep it a table, set its keys.
                    Some(toml_edit::Item::Table(t)) => {
                        t.insert(
                            "limit",
                            toml_edit::value(i64::try_from(q.limit).unwrap_or(i64::MAX)),
                        );
                        t.insert("period", toml_edit::value(period_name(q.period)));
                    }
                    Some(toml_edit::Item::Value(old)) => {
                        let decor = old.decor().clone();
                        *old = toml_edit::Value::InlineTable(inline);
                        *old.decor_mut() = decor;
                    }
                    _ => {
                        quotas.insert(
                            res,
                            toml_edit::Item::Value(toml_edit::Value::InlineTable(inline)),
                        );
                    }
                }
            }
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Atomic writes

enum WriteNewError {
    Exists,
    Io(PathBuf, std::io::Error),
}

/// A hidden temp file in `dir` (the loader skips names starting with `.`), fully written and
/// synced.
fn write_temp(dir: &Path, target: &Path, text: &str) -> Result<PathBuf, (PathBuf, std::io::Error)> {
    let name = target
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let nonce = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    let tmp = dir.join(format!(".{name}.{}.{nonce}.tmp", std::process::id()));
    let result = (|| {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&tmp)?;
        f.write_all(text.as_bytes())?;
        f.sync_all()
    })();
    match result {
        Ok(()) => Ok(tmp),
        Err(e) => {
            let _ = std::fs::remove_file(&tmp);
            Err((tmp, e))
        }
    }
}

/// Creates `target` atomically without ever replacing an existing file: the temp file is
/// hard-linked to the target name (which fails if it exists), then unlinked.
fn write_new(dir: &Path, target: &Path, text: &str) -> Result<(), WriteNewError> {
    let tmp = write_temp(dir, target, text).map_err(|(p, e)| WriteNewError::Io(p, e))?;
    let linked = std::fs::hard_link(&tmp, target);
    let result = match linked {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Err(WriteNewError::Exists),
        // Filesystems without hard links: check, then rename (a tiny window for a race with
        // another process, which the next reload would report as a duplicate).
        Err(_) if target.exists() => Err(WriteNewError::Exists),
        Err(_) => {
            return std::fs::rename(&tmp, target).map_err(|e| {
                let _ = std::fs::remove_file(&tmp);
                WriteNewError::Io(target.to_path_buf(), e)
            })
        }
    };
    let _ = std::fs::remove_file(&tmp);
    result
}

/// Replaces `target` atomically (temp file + rename).
fn write_replace(dir: &Path, target: &Path, text: &str) -> Result<(), (PathBuf, std::io::Error)> {
    let tmp = write_temp(dir, target, text)?;
    std::fs::rename(&tmp, target).map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        (target.to_path_buf(), e)
    })
}

#[cfg(test)]
mod tests {
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
        assert!(
            serde_json::from_str::<NewTenant>(r#"{"id":"x","plan":"free","bogus":1}"#).is_err()
        );
        let p: TenantPatch =
            serde_json::from_str(r#"{"status":"suspended","quotas":{"messages":null}}"#).unwrap();
        assert_eq!(p.status, Some(TenantStatus::Suspended));
        assert_eq!(p.quotas.unwrap()["messages"], None);
        assert!(serde_json::from_str::<TenantPatch>(r#"{"id":"y"}"#).is_err());
    }
}

//! Tenant provisioning without hand-editing: create, patch, suspend/activate and delete tenant
//! files, each change validated against the WHOLE config before a byte reaches the disk.
//!
//! This is the file-level API behind `tenant-gateway tenant …` and `POST/PATCH/DELETE
//! /admin/v1/tenants`; it does not reload anything itself (the running gateway's file watch, or
//! an explicit reload, picks the change up). Files are written atomically
//! ([`crate::atomic_file`]: hidden temp file in the tenants dir, then a hard link for a new
//! file or a rename for a change), so a reload never reads half a file and the loader never
//! reads the temp file. Deleted tenants are moved to `tenants/.deleted/`, never destroyed.
//!
//! With `[provisioning]` hooks configured ([`hooks`]), `create` runs `on_create` after
//! validation and before the file is written (a failing hook leaves nothing behind: the
//! create → provision → rollback order), `update` runs `on_update` the same way when the plan or
//! status changes, and [`run_delete_hook`] runs `on_delete` once the tenant no longer routes.
//! A hook runs outside the lock that serialises changes, so a hanging hook holds up only its
//! own request; tenants whose hook is still running are reserved, so no other change can claim
//! their id, subdomain or domains meanwhile.
//!
//! Every function blocks (file I/O, hooks; compiling the config may resolve upstream host
//! names): call them from `spawn_blocking` in async code. Changes are serialised inside one process; two
//! processes provisioning at the same moment (the CLI next to the admin API) can still race on
//! cross-tenant checks such as a custom domain claimed twice, and the next reload then rejects
//! the config and keeps the old one serving.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};
use std::time::{SystemTime, UNIX_EPOCH};

use serde::Deserialize;

use crate::atomic_file::{write_atomic, write_new, WriteNewError};
use crate::config::names::is_valid_label;
use crate::config::{
    self, BrandingConfig, ConfigError, ConfigErrors, GatewayConfig, Period, ProvisioningConfig,
    QuotaLimitConfig, RawConfig, TenantConfig, TenantFile, TenantStatus,
};

pub mod hooks;
mod toml_text;
use hooks::{HookEvent, HookFailure, HookTenant};
use toml_text::{apply_patch, render, today_utc};

/// Tenant files are plain config (the umask narrows it).
const TENANT_FILE_MODE: u32 = 0o666;

/// Serialises every change made through this module in this process, so two admin requests
/// never validate against the same old state and both write. Holds the tenants being created
/// whose `on_create` hook is still running: validation counts them as if their files existed.
static PROVISION_LOCK: Mutex<Vec<Pending>> = Mutex::new(Vec::new());

fn lock() -> MutexGuard<'static, Vec<Pending>> {
    PROVISION_LOCK.lock().unwrap_or_else(|p| p.into_inner())
}

/// A tenant of the config in `config_dir` whose creation waits for its `on_create` hook.
struct Pending {
    config_dir: PathBuf,
    file: TenantFile,
}

/// The directory a config's reservations are kept under (one process may serve several
/// configs: the tests do).
fn config_key(dir: &Path) -> PathBuf {
    std::fs::canonicalize(dir).unwrap_or_else(|_| dir.to_path_buf())
}

/// Reservations of the config in `dir`.
fn pending_in<'a>(list: &'a [Pending], dir: &'a Path) -> impl Iterator<Item = &'a TenantFile> {
    list.iter()
        .filter(move |p| p.config_dir == dir)
        .map(|p| &p.file)
}

/// Removes a reservation when the create that made it ends, however it ends.
struct Reservation<'a> {
    config_dir: &'a Path,
    id: &'a str,
}

impl Drop for Reservation<'_> {
    fn drop(&mut self) {
        lock().retain(|p| !(p.config_dir == self.config_dir && p.file.tenant.id == self.id));
    }
}

/// Name of the directory, inside the tenants dir, that receives deleted tenant files.
pub const DELETED_DIR: &str = ".deleted";

/// A tenant to create. Doubles as the JSON body of `POST /admin/v1/tenants` and as the flags of
/// `tenant-gateway tenant new` (the keys without a flag are API-only).
#[derive(Debug, Clone, Default, Deserialize, clap::Args)]
#[serde(deny_unknown_fields)]
pub struct NewTenant {
    /// Slug: a lower-case DNS label; also the file name (`tenants/<id>.toml`) and, unless
    /// `subdomain` is set, the subdomain.
    #[arg(long)]
    pub id: String,
    #[arg(long)]
    pub plan: String,
    #[serde(default)]
    #[arg(skip)]
    pub status: TenantStatus,
    #[serde(default)]
    #[arg(long)]
    pub subdomain: Option<String>,
    #[serde(default)]
    #[arg(long)]
    pub organization_id: Option<String>,
    #[serde(default)]
    #[arg(long)]
    pub name: Option<String>,
    /// Named upstream pool (default: the only one, if there is exactly one).
    #[serde(default)]
    #[arg(long)]
    pub upstream: Option<String>,
    #[serde(default)]
    #[arg(skip)]
    pub custom_domains: Vec<String>,
    #[serde(default)]
    #[arg(skip)]
    pub features_enabled: Vec<String>,
    #[serde(default)]
    #[arg(skip)]
    pub features_disabled: Vec<String>,
    /// Overrides of the plan's quotas, by resource.
    #[serde(default)]
    #[arg(skip)]
    pub quotas: BTreeMap<String, QuotaLimitConfig>,
    /// Sent upstream as `X-Tenant-Schema`.
    #[serde(default)]
    #[arg(skip)]
    pub schema: Option<String>,
    #[serde(default)]
    #[arg(skip)]
    pub branding: Option<BrandingConfig>,
}

/// A change to an existing tenant: only the keys that are `Some` are touched. Doubles as the
/// JSON body of `PATCH /admin/v1/tenants/{id}`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
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
    /// True when the patch touches nothing (every key absent; a new key is covered by
    /// `Default` and `PartialEq` without a change here).
    pub fn is_empty(&self) -> bool {
        *self == TenantPatch::default()
    }
}

/// Why a provisioning call changed nothing.
///
/// The admin API answers `NotFound` 404, `Exists` 409, `Invalid` 400 INVALID_TENANT (with the
/// error list), `Hook` 502, `Io` 500.
#[derive(Debug, thiserror::Error)]
pub enum ProvisionError {
    #[error("tenant {id:?} not found")]
    NotFound { id: String },
    /// The id is taken, by a file of that name or by a tenant id inside any file.
    #[error("{file}: id: tenant {id:?} already exists")]
    Exists { id: String, file: String },
    /// The change would make the config invalid (or it is invalid already); every error names
    /// file and key, like `tenants/x.toml: plan: unknown plan "gold"`.
    #[error("{}", config::ErrorList(.0))]
    Invalid(Vec<ConfigError>),
    /// A `[provisioning]` hook failed; nothing was changed (for `on_delete`: the tenant is
    /// already gone from the config, see [`run_delete_hook`]).
    #[error("{0}")]
    Hook(#[from] HookFailure),
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
    let mut pending = lock();
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

    let mut raw = config::read_validated(config_path)?;
    let key = config_key(&raw.dir);
    if let Some(other) = raw
        .tenants
        .iter()
        .chain(pending_in(&pending, &key))
        .find(|tf| tf.tenant.id == t.id)
    {
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
    let hook_tenant = HookTenant::of(&tenant);
    let file = TenantFile {
        file: rel.clone(),
        tenant,
    };
    // Reserved tenants first, so a clash is reported on the new tenant's file.
    raw.tenants.extend(pending_in(&pending, &key).cloned());
    raw.tenants.push(file.clone());
    validate_whole(&raw)?;
    let write = || {
        write_new(&path, text.as_bytes(), TENANT_FILE_MODE).map_err(|e| match e {
            WriteNewError::Exists => ProvisionError::Exists {
                id: t.id.clone(),
                file: rel.clone(),
            },
            WriteNewError::Io(path, source) => ProvisionError::Io { path, source },
        })
    };
    let hooks = &raw.gateway.provisioning;
    if hooks.on_create.is_empty() {
        write()?;
        return Ok(path);
    }
    // Reserve the tenant, then run the hook without holding the lock.
    pending.push(Pending {
        config_dir: key.clone(),
        file,
    });
    drop(pending);
    let _reservation = Reservation {
        config_dir: &key,
        id: &t.id,
    };
    hooks::run(hooks, &raw.dir, HookEvent::Create, &hook_tenant)?;
    let written = {
        let _guard = lock();
        write()
    };
    if let Err(e) = written {
        // Provisioned but not created (a file appeared under the name from outside this
        // process): undo the provisioning.
        let _ = hooks::run(hooks, &raw.dir, HookEvent::Delete, &hook_tenant);
        return Err(e);
    }
    Ok(path)
}

/// Edits only the keys named in `patch` in the tenant's file, keeping every comment and the
/// formatting of everything else; validates the whole config with the edited content before
/// writing. Returns the path of the file.
///
/// When the plan or the status changes and `on_update` is set, the hook runs after validation
/// and before the write; a failing hook leaves the file as it was.
pub fn update(config_path: &Path, id: &str, patch: TenantPatch) -> Result<PathBuf, ProvisionError> {
    let prepared = {
        let pending = lock();
        let prepared = prepare_update(config_path, id, &patch, &pending)?;
        if prepared.hook.is_none() {
            prepared.write()?;
            return Ok(prepared.path);
        }
        prepared
    };
    if let Some((cfg, dir, tenant)) = &prepared.hook {
        hooks::run(cfg, dir, HookEvent::Update, tenant)?;
    }
    let pending = lock();
    // Another change may have landed while the hook ran: apply the patch to what is there now.
    let again = prepare_update(config_path, id, &patch, &pending)?;
    again.write()?;
    Ok(again.path)
}

/// An edit of one tenant file, validated, not yet written.
struct PreparedUpdate {
    path: PathBuf,
    /// `None` when the patch changes nothing.
    edited: Option<String>,
    /// The `on_update` hook to run first (plan or status changed and the hook is set).
    hook: Option<(ProvisioningConfig, PathBuf, HookTenant)>,
}

impl PreparedUpdate {
    fn write(&self) -> Result<(), ProvisionError> {
        let Some(edited) = &self.edited else {
            return Ok(());
        };
        write_atomic(&self.path, edited.as_bytes(), TENANT_FILE_MODE).map_err(|source| {
            ProvisionError::Io {
                path: self.path.clone(),
                source,
            }
        })
    }
}

fn prepare_update(
    config_path: &Path,
    id: &str,
    patch: &TenantPatch,
    pending: &[Pending],
) -> Result<PreparedUpdate, ProvisionError> {
    let mut raw = config::read_validated(config_path)?;
    let Some(index) = raw.tenants.iter().position(|tf| tf.tenant.id == id) else {
        return Err(ProvisionError::NotFound { id: id.into() });
    };
    let rel = raw.tenants[index].file.clone();
    let path = raw.dir.join(&rel);
    let text = std::fs::read_to_string(&path).map_err(io_err(&path))?;
    let edited = apply_patch(&rel, &text, patch)?;
    if edited == text {
        return Ok(PreparedUpdate {
            path,
            edited: None,
            hook: None,
        });
    }
    let before = std::mem::replace(
        &mut raw.tenants[index].tenant,
        config::parse_toml(&rel, &edited)?,
    );
    let after = &raw.tenants[index].tenant;
    let lifecycle_change = before.plan != after.plan || before.status != after.status;
    let hook = (lifecycle_change && !raw.gateway.provisioning.on_update.is_empty()).then(|| {
        let mut tenant = HookTenant::of(after);
        tenant.previous = Some((before.plan.clone(), before.status));
        (raw.gateway.provisioning.clone(), raw.dir.clone(), tenant)
    });
    let key = config_key(&raw.dir);
    raw.tenants.extend(pending_in(pending, &key).cloned());
    validate_whole(&raw)?;
    Ok(PreparedUpdate {
        path,
        edited: Some(edited),
        hook,
    })
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
///
/// Runs no hook: call [`run_delete_hook`] with the returned path once the tenant has stopped
/// routing (after the reload).
pub fn delete(config_path: &Path, id: &str) -> Result<PathBuf, ProvisionError> {
    let _guard = lock();
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

/// Runs `on_delete` for a tenant file moved to `.deleted/` by [`delete`]. Deleting a tenant from
/// the gateway cannot be undone by a failing hook: the error is returned for the caller to
/// report (the file stays in `.deleted/`, so the hook can be run again by hand).
pub fn run_delete_hook(config_path: &Path, deleted_file: &Path) -> Result<(), ProvisionError> {
    let layout = Layout::read(config_path)?;
    if layout.provisioning.on_delete.is_empty() {
        return Ok(());
    }
    let text = std::fs::read_to_string(deleted_file).map_err(io_err(deleted_file))?;
    let name = deleted_file.display().to_string();
    let tenant: TenantConfig = config::parse_toml(&name, &text)?;
    hooks::run(
        &layout.provisioning,
        &layout.config_dir,
        HookEvent::Delete,
        &HookTenant::of(&tenant),
    )?;
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Where things are

/// The config dir and its tenants dir, read from `gateway.toml` alone.
struct Layout {
    config_dir: PathBuf,
    provisioning: ProvisioningConfig,
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
            config_dir: dir.to_path_buf(),
            provisioning: gateway.provisioning,
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

/// What `tenant-gateway check` runs: the whole config's validation (compiling a validated
/// config cannot fail).
fn validate_whole(raw: &RawConfig) -> Result<(), ProvisionError> {
    raw.clone().validate()?;
    Ok(())
}

#[cfg(test)]
mod tests;

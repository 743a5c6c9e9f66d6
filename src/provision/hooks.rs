//! Provisioning hooks: the programs of `[provisioning]` (`on_create`, `on_update`, `on_delete`)
//! that build what a tenant needs outside the gateway (its database, schema or row-level
//! security context), run with the tenant in their environment.
//!
//! A hook is an argv list executed directly, never through a shell, in its own process group
//! with stdin closed; its stdout and stderr go line by line into the log (target
//! `provisioning`) and the last lines of stderr come back to the caller when it fails. A hook
//! still running at `timeout` is killed with its whole process group, and so are programs a
//! finished hook left behind holding its output (after one second). Running one blocks only
//! the calling thread: callers in async code use `spawn_blocking`, so the proxy, the admin API
//! and reloads carry on. Every run leaves one audit line.

use std::collections::VecDeque;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::config::{ProvisioningConfig, TenantConfig, TenantStatus};

/// Lines of stderr kept for the error answer.
pub const STDERR_TAIL_LINES: usize = 10;
/// Longest line kept (log and tail); longer lines are cut.
const MAX_LINE: usize = 1000;
/// How long programs a finished hook left behind may keep its output open.
const LINGER_GRACE: Duration = Duration::from_secs(1);

/// Which lifecycle step a hook runs for (`TENANT_EVENT`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HookEvent {
    Create,
    Update,
    Delete,
}

impl HookEvent {
    pub fn name(self) -> &'static str {
        match self {
            HookEvent::Create => "create",
            HookEvent::Update => "update",
            HookEvent::Delete => "delete",
        }
    }

    /// The key in `[provisioning]`.
    pub fn key(self) -> &'static str {
        match self {
            HookEvent::Create => "on_create",
            HookEvent::Update => "on_update",
            HookEvent::Delete => "on_delete",
        }
    }

    fn argv(self, cfg: &ProvisioningConfig) -> &[String] {
        match self {
            HookEvent::Create => &cfg.on_create,
            HookEvent::Update => &cfg.on_update,
            HookEvent::Delete => &cfg.on_delete,
        }
    }
}

/// The tenant as a hook sees it: `TENANT_ID`, `TENANT_ORGANIZATION_ID`, `TENANT_PLAN`,
/// `TENANT_STATUS`, `TENANT_SCHEMA` (empty when unset), `TENANT_SUBDOMAIN`, and for updates
/// `TENANT_PREVIOUS_PLAN` / `TENANT_PREVIOUS_STATUS`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HookTenant {
    pub id: String,
    pub organization_id: String,
    pub plan: String,
    pub status: TenantStatus,
    pub schema: String,
    pub subdomain: String,
    /// Plan and status before an update.
    pub previous: Option<(String, TenantStatus)>,
}

impl HookTenant {
    pub fn of(t: &TenantConfig) -> HookTenant {
        HookTenant {
            id: t.id.clone(),
            organization_id: t.organization_id.clone(),
            plan: t.plan.clone(),
            status: t.status,
            schema: t.schema.clone().unwrap_or_default(),
            subdomain: t.subdomain.clone().unwrap_or_else(|| t.id.clone()),
            previous: None,
        }
    }

    fn env(&self, event: HookEvent) -> Vec<(&'static str, String)> {
        let mut env = vec![
            ("TENANT_EVENT", event.name().to_string()),
            ("TENANT_ID", self.id.clone()),
            ("TENANT_ORGANIZATION_ID", self.organization_id.clone()),
            ("TENANT_PLAN", self.plan.clone()),
            ("TENANT_STATUS", status_name(self.status).to_string()),
            ("TENANT_SCHEMA", self.schema.clone()),
            ("TENANT_SUBDOMAIN", self.subdomain.clone()),
        ];
        if let Some((plan, status)) = &self.previous {
            env.push(("TENANT_PREVIOUS_PLAN", plan.clone()));
            env.push(("TENANT_PREVIOUS_STATUS", status_name(*status).to_string()));
        }
        env
    }
}

fn status_name(s: TenantStatus) -> &'static str {
    match s {
        TenantStatus::Active => "active",
        TenantStatus::Suspended => "suspended",
    }
}

/// How a hook failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HookFailureKind {
    /// Could not be started (missing program, not executable).
    Spawn(String),
    /// Exited non-zero (`None`: killed by a signal).
    Exit(Option<i32>),
    /// Still running at the timeout; killed.
    Timeout(Duration),
}

/// A failed hook: what happened and the last lines it wrote to stderr.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}", self.describe())]
pub struct HookFailure {
    pub event: HookEvent,
    pub kind: HookFailureKind,
    pub stderr_tail: Vec<String>,
}

impl HookFailure {
    /// `provisioning hook on_create failed (exit status 3): <last stderr lines>`.
    pub fn describe(&self) -> String {
        let what = match &self.kind {
            HookFailureKind::Spawn(e) => format!("could not start: {e}"),
            HookFailureKind::Exit(Some(code)) => format!("exit status {code}"),
            HookFailureKind::Exit(None) => "killed by a signal".to_string(),
            HookFailureKind::Timeout(t) => {
                format!("timed out after {}", humantime::format_duration(*t))
            }
        };
        let mut text = format!("provisioning hook {} failed ({what})", self.event.key());
        if !self.stderr_tail.is_empty() {
            text.push_str(": ");
            text.push_str(&self.stderr_tail.join("\n"));
        }
        text
    }
}

/// Runs the hook configured for `event`, if any. `dir` is the config dir: the working
/// directory of the hook, and what a relative program path (one with a `/`) is resolved
/// against; a bare name is looked up in `PATH`.
pub fn run(
    cfg: &ProvisioningConfig,
    dir: &Path,
    event: HookEvent,
    tenant: &HookTenant,
) -> Result<(), HookFailure> {
    let argv = event.argv(cfg);
    let Some((program, args)) = argv.split_first() else {
        return Ok(());
    };
    let started = Instant::now();
    let result = execute(
        program_path(dir, program),
        args,
        dir,
        event,
        tenant,
        cfg.timeout,
    );
    let elapsed_ms = started.elapsed().as_millis() as u64;
    // One field list for both outcomes; only the level and the error differ.
    macro_rules! audit {
        ($level:ident, $outcome:literal $(, $error:expr)?) => {
            tracing::$level!(
                target: "audit",
                tenant = %tenant.id,
                hook = event.key(),
                program = %program,
                elapsed_ms,
                outcome = $outcome,
                $(error = %$error,)?
                "provisioning hook"
            )
        };
    }
    match &result {
        Ok(()) => audit!(info, "ok"),
        Err(failure) => audit!(warn, "failed", failure),
    }
    result
}

fn program_path(dir: &Path, program: &str) -> PathBuf {
    let p = Path::new(program);
    if p.is_relative() && program.contains('/') {
        dir.join(p)
    } else {
        p.to_path_buf()
    }
}

fn execute(
    program: PathBuf,
    args: &[String],
    dir: &Path,
    event: HookEvent,
    tenant: &HookTenant,
    timeout: Duration,
) -> Result<(), HookFailure> {
    use std::os::unix::process::CommandExt;
    let fail = |kind, stderr_tail| HookFailure {
        event,
        kind,
        stderr_tail,
    };
    let mut child = Command::new(&program)
        .args(args)
        .envs(tenant.env(event))
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        // Its own group, so a timeout kills the programs it started too.
        .process_group(0)
        .spawn()
        .map_err(|e| {
            fail(
                HookFailureKind::Spawn(format!("{}: {e}", program.display())),
                vec![],
            )
        })?;
    let tail = Arc::new(Mutex::new(VecDeque::with_capacity(STDERR_TAIL_LINES)));
    let readers = [
        child
            .stdout
            .take()
            .map(|out| forward_lines(out, "stdout", event, &tenant.id, None)),
        child
            .stderr
            .take()
            .map(|err| forward_lines(err, "stderr", event, &tenant.id, Some(tail.clone()))),
    ];
    let deadline = Instant::now() + timeout;
    let status = wait_until(&mut child, deadline);
    let readers: Vec<_> = readers.into_iter().flatten().collect();
    match status {
        None => kill_group(&mut child),
        // Programs the hook left running still hold its output open: give them a moment to
        // finish writing, then end them, so a hook that exited never holds up its caller.
        Some(_) => {
            let grace = (Instant::now() + LINGER_GRACE).min(deadline);
            while readers.iter().any(|r| !r.is_finished()) && Instant::now() < grace {
                std::thread::sleep(Duration::from_millis(10));
            }
            if readers.iter().any(|r| !r.is_finished()) {
                kill_process_group(&child);
            }
        }
    }
    // With the group gone every pipe is closed, so the readers finish.
    for reader in readers {
        let _ = reader.join();
    }
    let stderr_tail: Vec<String> = tail
        .lock()
        .map(|t| t.iter().cloned().collect())
        .unwrap_or_default();
    match status {
        Some(s) if s.success() => Ok(()),
        Some(s) => Err(fail(HookFailureKind::Exit(s.code()), stderr_tail)),
        None => Err(fail(HookFailureKind::Timeout(timeout), stderr_tail)),
    }
}

/// The exit status, or `None` when the deadline passed first.
fn wait_until(child: &mut Child, deadline: Instant) -> Option<ExitStatus> {
    let mut pause = Duration::from_millis(2);
    loop {
        match child.try_wait() {
            Ok(Some(status)) => return Some(status),
            Ok(None) => {}
            Err(_) => return None,
        }
        let now = Instant::now();
        if now >= deadline {
            return None;
        }
        std::thread::sleep(pause.min(deadline - now));
        pause = (pause * 2).min(Duration::from_millis(50));
    }
}

fn kill_group(child: &mut Child) {
    kill_process_group(child);
    let _ = child.kill();
    let _ = child.wait();
}

/// SIGKILL to the hook's process group (its id is the hook's pid, still reserved while any
/// member lives, even after the hook itself was reaped).
fn kill_process_group(child: &Child) {
    let pid = rustix::process::Pid::from_child(child);
    let _ = rustix::process::kill_process_group(pid, rustix::process::Signal::KILL);
}

/// Logs every line of a hook's output; keeps the last lines of stderr in `tail`.
fn forward_lines(
    stream: impl Read + Send + 'static,
    name: &'static str,
    event: HookEvent,
    tenant: &str,
    tail: Option<Arc<Mutex<VecDeque<String>>>>,
) -> std::thread::JoinHandle<()> {
    let tenant = tenant.to_string();
    std::thread::spawn(move || {
        let mut reader = BufReader::new(stream);
        let mut buf = Vec::new();
        loop {
            buf.clear();
            match reader.read_until(b'\n', &mut buf) {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
            let mut line = String::from_utf8_lossy(&buf).trim_end().to_string();
            if line.len() > MAX_LINE {
                let mut cut = MAX_LINE;
                while !line.is_char_boundary(cut) {
                    cut -= 1;
                }
                line.truncate(cut);
            }
            tracing::info!(target: "provisioning", tenant = %tenant, hook = event.key(), stream = name, "{line}");
            if let Some(tail) = &tail {
                if let Ok(mut t) = tail.lock() {
                    if t.len() == STDERR_TAIL_LINES {
                        t.pop_front();
                    }
                    t.push_back(line);
                }
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tenant() -> HookTenant {
        HookTenant {
            id: "acme".into(),
            organization_id: "org_1".into(),
            plan: "pro".into(),
            status: TenantStatus::Active,
            schema: "tenant_acme".into(),
            subdomain: "acme-co".into(),
            previous: None,
        }
    }

    fn cfg(event: HookEvent, argv: &[&str], timeout: Duration) -> ProvisioningConfig {
        let argv: Vec<String> = argv.iter().map(|s| s.to_string()).collect();
        let mut c = ProvisioningConfig {
            timeout,
            ..ProvisioningConfig::default()
        };
        match event {
            HookEvent::Create => c.on_create = argv,
            HookEvent::Update => c.on_update = argv,
            HookEvent::Delete => c.on_delete = argv,
        }
        c
    }

    /// A temp config dir, a file in it, and `script` with that file's path in place of `{}`
    /// (what the hook writes, or must never get to write).
    fn scratch(script: &str) -> (tempfile::TempDir, std::path::PathBuf, String) {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("hook.out");
        let script = script.replace("{}", &file.display().to_string());
        (dir, file, script)
    }

    fn sh(script: &str) -> Vec<&str> {
        vec!["/bin/sh", "-c", script]
    }

    #[test]
    fn no_hook_is_success() {
        let c = ProvisioningConfig::default();
        assert_eq!(
            run(&c, Path::new("."), HookEvent::Create, &tenant()),
            Ok(())
        );
    }

    #[test]
    fn the_tenant_is_in_the_environment() {
        let (dir, out, script) = scratch(
            "printf '%s|%s|%s|%s|%s|%s|%s|%s|%s' \"$TENANT_EVENT\" \"$TENANT_ID\" \"$TENANT_ORGANIZATION_ID\" \"$TENANT_PLAN\" \"$TENANT_STATUS\" \"$TENANT_SCHEMA\" \"$TENANT_SUBDOMAIN\" \"$TENANT_PREVIOUS_PLAN\" \"$TENANT_PREVIOUS_STATUS\" > {}",
        );
        let mut t = tenant();
        t.previous = Some(("free".into(), TenantStatus::Suspended));
        let c = cfg(HookEvent::Update, &sh(&script), Duration::from_secs(10));
        run(&c, dir.path(), HookEvent::Update, &t).unwrap();
        assert_eq!(
            std::fs::read_to_string(&out).unwrap(),
            "update|acme|org_1|pro|active|tenant_acme|acme-co|free|suspended"
        );
    }

    #[test]
    fn arguments_are_not_interpreted_by_a_shell() {
        // printf gets the argument verbatim; a shell would expand or run it.
        let (dir, out, script) = scratch("printf '%s' \"$1\" > {}");
        let argv = ["/bin/sh", "-c", &script, "hook", "$(touch pwned); `id` *"];
        let c = cfg(HookEvent::Create, &argv, Duration::from_secs(10));
        run(&c, dir.path(), HookEvent::Create, &tenant()).unwrap();
        assert_eq!(
            std::fs::read_to_string(&out).unwrap(),
            "$(touch pwned); `id` *"
        );
        assert!(!dir.path().join("pwned").exists());
    }

    #[test]
    fn failures_carry_the_last_stderr_lines() {
        let script = "for i in $(seq 1 15); do echo \"line $i\" >&2; done; echo out; exit 3";
        let c = cfg(HookEvent::Create, &sh(script), Duration::from_secs(10));
        let err = run(&c, Path::new("."), HookEvent::Create, &tenant()).unwrap_err();
        assert_eq!(err.kind, HookFailureKind::Exit(Some(3)));
        let want: Vec<String> = (6..=15).map(|i| format!("line {i}")).collect();
        assert_eq!(err.stderr_tail, want);
        let text = err.to_string();
        assert!(
            text.starts_with("provisioning hook on_create failed (exit status 3): line 6"),
            "{text}"
        );
    }

    #[test]
    fn a_hung_hook_and_its_children_are_killed_at_the_timeout() {
        // The background child keeps the pipes open; killing only the shell would hang.
        let (dir, marker, script) = scratch("echo starting >&2; (sleep 5; touch {}) & sleep 5");
        let c = cfg(HookEvent::Delete, &sh(&script), Duration::from_millis(300));
        let started = Instant::now();
        let err = run(&c, dir.path(), HookEvent::Delete, &tenant()).unwrap_err();
        assert!(
            started.elapsed() < Duration::from_secs(3),
            "{:?}",
            started.elapsed()
        );
        assert_eq!(
            err.kind,
            HookFailureKind::Timeout(Duration::from_millis(300))
        );
        assert_eq!(err.stderr_tail, ["starting"]);
        std::thread::sleep(Duration::from_millis(100));
        assert!(!marker.exists());
    }

    #[test]
    fn programs_left_running_by_a_finished_hook_do_not_hold_it_up() {
        let (dir, marker, script) = scratch("(sleep 2; touch {}) & echo done; exit 0");
        let c = cfg(HookEvent::Create, &sh(&script), Duration::from_secs(20));
        let started = Instant::now();
        run(&c, dir.path(), HookEvent::Create, &tenant()).unwrap();
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "{:?}",
            started.elapsed()
        );
        // The leftover was killed with the group: it never gets to write.
        std::thread::sleep(Duration::from_millis(2500));
        assert!(!marker.exists());
    }

    #[test]
    fn missing_programs_and_relative_paths() {
        let dir = tempfile::tempdir().unwrap();
        let c = cfg(
            HookEvent::Create,
            &["./no-such-hook.sh"],
            Duration::from_secs(5),
        );
        let err = run(&c, dir.path(), HookEvent::Create, &tenant()).unwrap_err();
        assert!(
            matches!(&err.kind, HookFailureKind::Spawn(e) if e.contains("no-such-hook.sh")),
            "{err:?}"
        );
        // A relative path with a slash is found in the config dir, which is also the cwd.
        let script = dir.path().join("hook.sh");
        std::fs::write(&script, "#!/bin/sh\ntest \"$(pwd -P)\" = \"$1\"\n").unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
        let real = dir.path().canonicalize().unwrap();
        let c = cfg(
            HookEvent::Create,
            &["./hook.sh", real.to_str().unwrap()],
            Duration::from_secs(5),
        );
        run(&c, dir.path(), HookEvent::Create, &tenant()).unwrap();
    }
}

//! Atomic file writes, the one implementation for every file the gateway writes (tenant files,
//! certificates, the ACME account, the domain registry): a hidden temp file next to the target,
//! written and fsynced, then renamed (replace) or hard-linked (create, never replacing), then
//! the directory fsynced, so a reader or a crash sees the old file or the new one, never half.
//!
//! Temp names start with `.`, which the tenants loader and the certificate scan skip.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

/// Why [`write_new`] did not create the file.
#[derive(Debug)]
pub enum WriteNewError {
    /// The target already exists; it is left as it was.
    Exists,
    Io(PathBuf, std::io::Error),
}

/// Replaces (or creates) `path` atomically with `contents`; `mode` is the permission of the new
/// file (before the umask). Creates the parent directory when missing.
pub fn write_atomic(path: &Path, contents: &[u8], mode: u32) -> std::io::Result<()> {
    let dir = parent_of(path);
    std::fs::create_dir_all(dir)?;
    let tmp = write_temp(dir, path, contents, mode)?;
    if let Err(e) = std::fs::rename(&tmp, path) {
        let _ = std::fs::remove_file(&tmp);
        return Err(e);
    }
    sync_dir(dir)
}

/// Creates `path` atomically without ever replacing an existing file: the temp file is
/// hard-linked to the target name (which fails if it exists), then unlinked.
pub fn write_new(path: &Path, contents: &[u8], mode: u32) -> Result<(), WriteNewError> {
    let dir = parent_of(path);
    let tmp = write_temp(dir, path, contents, mode)
        .map_err(|e| WriteNewError::Io(path.to_path_buf(), e))?;
    let result = match std::fs::hard_link(&tmp, path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Err(WriteNewError::Exists),
        // Filesystems without hard links: check, then rename (a tiny window for a race with
        // another process, which the next reload would report as a duplicate).
        Err(_) if path.exists() => Err(WriteNewError::Exists),
        Err(_) => match std::fs::rename(&tmp, path) {
            Ok(()) => return sync_dir(dir).map_err(|e| WriteNewError::Io(dir.to_path_buf(), e)),
            Err(e) => Err(WriteNewError::Io(path.to_path_buf(), e)),
        },
    };
    let _ = std::fs::remove_file(&tmp);
    result?;
    sync_dir(dir).map_err(|e| WriteNewError::Io(dir.to_path_buf(), e))
}

fn parent_of(path: &Path) -> &Path {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

/// A hidden temp file in `dir`, unique to this process and moment, fully written and synced;
/// removed again when anything fails.
fn write_temp(dir: &Path, target: &Path, contents: &[u8], mode: u32) -> std::io::Result<PathBuf> {
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
            .mode(mode)
            .open(&tmp)?;
        f.write_all(contents)?;
        f.sync_all()
    })();
    match result {
        Ok(()) => Ok(tmp),
        Err(e) => {
            let _ = std::fs::remove_file(&tmp);
            Err(e)
        }
    }
}

/// Makes the rename durable: the new directory entry is on disk once this returns.
fn sync_dir(dir: &Path) -> std::io::Result<()> {
    std::fs::File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn leftovers(dir: &Path) -> Vec<String> {
        std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with('.'))
            .collect()
    }

    #[test]
    fn replaces_with_mode_and_leaves_no_temp_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/key.pem");
        write_atomic(&path, b"one", 0o600).unwrap();
        write_atomic(&path, b"two", 0o600).unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"two");
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        assert!(leftovers(path.parent().unwrap()).is_empty());
    }

    #[test]
    fn write_new_never_replaces() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("acme.toml");
        write_new(&path, b"first", 0o644).unwrap();
        assert!(matches!(
            write_new(&path, b"second", 0o644),
            Err(WriteNewError::Exists)
        ));
        assert_eq!(std::fs::read(&path).unwrap(), b"first");
        assert!(leftovers(dir.path()).is_empty());
    }

    #[test]
    fn a_failed_write_leaves_the_target_untouched() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.toml");
        write_atomic(&path, b"kept", 0o644).unwrap();
        // The target name is a directory now: the rename fails, the temp file is removed.
        let blocked = dir.path().join("d");
        std::fs::create_dir(blocked.join("x").parent().unwrap()).unwrap();
        std::fs::write(blocked.join("x"), b"").unwrap();
        assert!(write_atomic(&blocked, b"new", 0o644).is_err());
        assert_eq!(std::fs::read(&path).unwrap(), b"kept");
        assert!(leftovers(dir.path()).is_empty());
    }
}

//! Atomic tenant-file writes: a hidden, synced temp file in the tenants dir, then a hard link
//! (create, never replacing) or a rename (replace), so a reload never reads half a file.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

pub(super) enum WriteNewError {
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
pub(super) fn write_new(dir: &Path, target: &Path, text: &str) -> Result<(), WriteNewError> {
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
pub(super) fn write_replace(
    dir: &Path,
    target: &Path,
    text: &str,
) -> Result<(), (PathBuf, std::io::Error)> {
    let tmp = write_temp(dir, target, text)?;
    std::fs::rename(&tmp, target).map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        (target.to_path_buf(), e)
    })
}

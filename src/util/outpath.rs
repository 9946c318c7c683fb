//! The output-path policy every command that writes follows, checked before any work:
//!
//! - an output is never the same file as an input (canonical paths and device + inode are
//!   compared, so symlinks and hard links are caught), `--force` or not;
//! - an existing output is replaced only with `--force`;
//! - the output's folder must exist (or, for folders we create, its nearest existing ancestor)
//!   and be writable — probed by creating and removing a file there.
//!
//! Files are written to `<name>.tmp<PID>` beside the target ([`tmp_path`]), synced, renamed
//! into place and the folder synced ([`commit`]); a failed write removes its temp file.
//! Stale temp files of our naming (`<name>.tmp<PID>` next to an output we are about to write)
//! are removed at start-up when that PID is ours or no longer a running process
//! ([`remove_stale_temps`]).

use std::io::Write as _;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// The temporary name used while writing `path`: `<name>.tmp<PID>` in the same folder.
pub fn tmp_path(path: &Path) -> PathBuf {
    let mut name = path.file_name().map(|n| n.to_os_string()).unwrap_or_default();
    name.push(format!(".tmp{}", std::process::id()));
    path.with_file_name(name)
}

/// The folder holding `path` (`.` for a bare file name).
pub fn parent_dir(path: &Path) -> &Path {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

/// The canonical path of `p`, or of its folder joined with its name when `p` does not exist yet.
fn resolved(p: &Path) -> Option<PathBuf> {
    p.canonicalize().ok().or_else(|| Some(parent_dir(p).canonicalize().ok()?.join(p.file_name()?)))
}

/// Whether `a` and `b` name the same file: equal canonical paths (for a path that does not
/// exist yet, its folder's canonical path and its name), or equal device and inode (hard links).
pub fn same_file(a: &Path, b: &Path) -> bool {
    if let (Some(x), Some(y)) = (resolved(a), resolved(b)) {
        if x == y {
            return true;
        }
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        if let (Ok(x), Ok(y)) = (std::fs::metadata(a), std::fs::metadata(b)) {
            return x.dev() == y.dev() && x.ino() == y.ino();
        }
    }
    false
}

/// Whether `inner` is `dir` itself or a path inside it (both existing).
fn is_within(inner: &Path, dir: &Path) -> bool {
    match (inner.canonicalize(), dir.canonicalize()) {
        (Ok(i), Ok(d)) => i.starts_with(&d),
        _ => false,
    }
}

/// Refuse when `out` (an output given as `flag`) is the same file as one of `inputs`
/// (`(flag, path)` pairs: the inputs and the outputs already checked; a directory input also
/// covers the files in it).
pub fn check_not_input(flag: &str, out: &Path, inputs: &[(&str, &Path)]) -> Result<()> {
    for (what, input) in inputs {
        if same_file(out, input) || (input.is_dir() && is_within(out, input)) {
            return Err(Error::usage(format!(
                "{flag} {} is the same file as {what} {}: an output never replaces an input or another output \
                 (nothing was written); choose another path",
                out.display(),
                input.display()
            )));
        }
    }
    Ok(())
}

/// The whole policy for one output file: not an input, not an existing file unless `force`,
/// not a directory, its folder exists and is writable. Removes our stale temp files of it.
pub fn check_file(flag: &str, out: &Path, inputs: &[(&str, &Path)], force: bool) -> Result<()> {
    check_replace(flag, out, inputs, force)?;
    let dir = parent_dir(out);
    if !dir.is_dir() {
        return Err(Error::usage(format!("{flag} {}: the folder {} does not exist", out.display(), dir.display())));
    }
    check_writable(flag, dir)?;
    remove_stale_temps_of(out);
    Ok(())
}

/// [`check_file`] for a file in a folder the command creates when missing.
pub fn check_file_in_new_dir(flag: &str, out: &Path, inputs: &[(&str, &Path)], force: bool) -> Result<()> {
    check_replace(flag, out, inputs, force)?;
    check_dir(flag, parent_dir(out), inputs)?;
    remove_stale_temps_of(out);
    Ok(())
}

fn check_replace(flag: &str, out: &Path, inputs: &[(&str, &Path)], force: bool) -> Result<()> {
    check_not_input(flag, out, inputs)?;
    if out.is_dir() {
        return Err(Error::usage(format!("{flag} {} is a directory; give a file path", out.display())));
    }
    if out.exists() && !force {
        return Err(Error::usage(format!("{flag} {} exists; pass --force to replace it (nothing was written)", out.display())));
    }
    Ok(())
}

/// An output folder (created when written): it is not an input, not a file, and it or its
/// nearest existing ancestor is writable.
pub fn check_dir(flag: &str, dir: &Path, inputs: &[(&str, &Path)]) -> Result<()> {
    for (what, input) in inputs {
        if same_file(dir, input) {
            return Err(Error::usage(format!("{flag} {} is the input {what}; choose another folder", dir.display())));
        }
    }
    if dir.exists() && !dir.is_dir() {
        return Err(Error::usage(format!("{flag} {} exists and is not a folder", dir.display())));
    }
    let mut existing = dir;
    while !existing.exists() {
        existing = match existing.parent() {
            Some(p) if !p.as_os_str().is_empty() => p,
            _ => Path::new("."),
        };
    }
    if !existing.is_dir() {
        return Err(Error::usage(format!("{flag} {}: {} is not a folder", dir.display(), existing.display())));
    }
    check_writable(flag, existing)
}

/// Probe that files can be created in `dir` (a read-only folder or file system fails here,
/// before any work, instead of after training).
fn check_writable(flag: &str, dir: &Path) -> Result<()> {
    let probe = dir.join(format!(".finetune-probe.tmp{}", std::process::id()));
    match std::fs::OpenOptions::new().write(true).create_new(true).open(&probe) {
        Ok(f) => {
            drop(f);
            let _ = std::fs::remove_file(&probe);
            Ok(())
        }
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            let _ = std::fs::remove_file(&probe);
            Ok(())
        }
        Err(e) => Err(Error::usage(format!("{flag}: cannot write in {}: {e}", dir.display()))),
    }
}

/// Whether process `pid` is running (or might be: a process we may not signal counts).
pub fn pid_alive(pid: u32) -> bool {
    if pid == std::process::id() {
        return true;
    }
    #[cfg(unix)]
    {
        let Ok(p) = libc::pid_t::try_from(pid) else { return false };
        // SAFETY: kill with signal 0 only checks that the process exists.
        let r = unsafe { libc::kill(p, 0) };
        r == 0 || std::io::Error::last_os_error().raw_os_error() == Some(libc::EPERM)
    }
    #[cfg(not(unix))]
    {
        true
    }
}

/// The PID of a temp name `<base>.tmp<PID>` whose `<base>` passes `owns`.
fn temp_pid(name: &str, owns: &dyn Fn(&str) -> bool) -> Option<u32> {
    let (base, pid) = name.rsplit_once(".tmp")?;
    if pid.is_empty() || !pid.bytes().all(|b| b.is_ascii_digit()) || !owns(base) {
        return None;
    }
    pid.parse().ok()
}

/// Remove files `<base>.tmp<PID>` in `dir` whose `<base>` passes `owns` and whose PID is ours
/// or not a running process; returns the removed paths.
pub fn remove_stale_temps(dir: &Path, owns: &dyn Fn(&str) -> bool) -> Vec<PathBuf> {
    let mut removed = Vec::new();
    let Ok(rd) = std::fs::read_dir(dir) else { return removed };
    let me = std::process::id();
    for e in rd.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let Some(pid) = temp_pid(&name, owns) else { continue };
        if (pid == me || !pid_alive(pid)) && e.file_type().is_ok_and(|t| t.is_file()) && std::fs::remove_file(e.path()).is_ok() {
            removed.push(e.path());
        }
    }
    removed
}

/// [`remove_stale_temps`] for the temp files of one output file.
pub fn remove_stale_temps_of(out: &Path) -> Vec<PathBuf> {
    let Some(name) = out.file_name().map(|n| n.to_string_lossy().into_owned()) else { return Vec::new() };
    remove_stale_temps(parent_dir(out), &|base| base == name)
}

/// Sync a folder, so that a rename in it is on disk.
pub fn sync_dir(dir: &Path) -> std::io::Result<()> {
    #[cfg(unix)]
    {
        std::fs::File::open(dir)?.sync_all()
    }
    #[cfg(not(unix))]
    {
        let _ = dir;
        Ok(())
    }
}

/// Rename the finished, synced `tmp` to `path` and sync the folder; on failure the temp file
/// is removed.
pub fn commit(tmp: &Path, path: &Path) -> std::io::Result<()> {
    if let Err(e) = std::fs::rename(tmp, path) {
        let _ = std::fs::remove_file(tmp);
        return Err(e);
    }
    sync_dir(parent_dir(path))
}

/// Write `bytes` to `path` atomically: temp file beside it, sync, rename, sync the folder. On
/// any error the temp file is removed and the target is untouched.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let tmp = tmp_path(path);
    let res = (|| {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        drop(f);
        commit(&tmp, path)
    })();
    res.map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        Error::io(path, e)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn temp_names() {
        let owns = |b: &str| b == "a.gguf";
        assert_eq!(temp_pid("a.gguf.tmp123", &owns), Some(123));
        assert_eq!(temp_pid("a.gguf.tmp", &owns), None);
        assert_eq!(temp_pid("a.gguf.tmp12x", &owns), None);
        assert_eq!(temp_pid("b.gguf.tmp123", &owns), None);
        assert!(pid_alive(std::process::id()));
    }
}

//! Crash-safe file writes, shared by every llb crate that writes a file a later run reads.
//!
//! A file is written to a temporary sibling with a unique name
//! (`.<name>.<process id>.<random hex>.tmp`), flushed to disk (`fsync`), renamed over the target,
//! and the folder is flushed too. Readers therefore see the old file, no file, or the whole new
//! file: never a torn one, whether the writer is killed, the disk fills up, or another process
//! writes the same path at the same time (each writer has its own temporary file; the last rename
//! wins, and both wrote complete files).
//!
//! A temporary file left by a killed process is removed by the next successful write of the same
//! path (Linux only: the owner's process id must no longer be running).

use std::fs::{File, OpenOptions};
use std::hash::{BuildHasher, Hasher};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// The suffix of every temporary name [`temp_path`] makes (also used by callers that stage a
/// whole folder under a [`temp_path`] name before renaming it into place).
pub const TEMP_SUFFIX: &str = ".tmp";

/// Writes `bytes` to `path` atomically (see the module docs); missing parent folders are created.
///
/// # Errors
/// The underlying IO error, its message naming the step and the file that failed (the target,
/// its temporary sibling or its folder); on error no temporary file is left behind and `path` is
/// unchanged.
pub fn write(path: &Path, bytes: &[u8]) -> io::Result<()> {
    write_with(path, |file| file.write_all(bytes))
}

/// Creates a temporary sibling of `path`, lets `fill` write it, then flushes, renames and syncs
/// as [`write()`] does. When `fill` fails, the temporary file is removed and `path` is unchanged,
/// so `fill` may also refuse the content (e.g. a checksum mismatch) by returning an error.
///
/// # Errors
/// Whatever `fill` returns, or the IO error of a step, named as in [`write()`].
pub fn write_with<T>(path: &Path, fill: impl FnOnce(&mut File) -> io::Result<T>) -> io::Result<T> {
    let dir = parent_dir(path);
    std::fs::create_dir_all(dir).map_err(|e| context(e, "creating the folder", dir))?;
    let (tmp, mut file) = create_temp(path)?;
    let result = fill(&mut file)
        .map_err(|e| context(e, "writing", &tmp))
        .and_then(|value| {
            file.flush().map_err(|e| context(e, "writing", &tmp))?;
            file.sync_all().map_err(|e| context(e, "syncing", &tmp))?;
            drop(file);
            std::fs::rename(&tmp, path).map_err(|e| context(e, "renaming into place", path))?;
            Ok(value)
        })
        .inspect_err(|_| {
            let _ = std::fs::remove_file(&tmp);
        })?;
    sync_dir(dir)?;
    remove_stale_temps(path);
    Ok(result)
}

/// A fresh unique temporary path beside `path`: `.<name>.<process id>.<16 hex digits>.tmp`.
pub fn temp_path(path: &Path) -> PathBuf {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u64(COUNTER.fetch_add(1, Ordering::Relaxed));
    hasher.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos()),
    );
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let (pid, random) = (std::process::id(), hasher.finish());
    parent_dir(path).join(format!(".{name}.{pid}.{random:016x}{TEMP_SUFFIX}"))
}

/// `true` for a name [`temp_path`] makes for some target (whatever its process id).
pub fn is_temp_name(file_name: &str) -> bool {
    parse_temp_name(file_name).is_some()
}

/// Flushes a folder's entries (a rename inside it) to disk. File systems that cannot sync a
/// folder (they report it as unsupported or invalid) are accepted as they are.
///
/// # Errors
/// Any other IO error, naming the folder.
pub fn sync_dir(dir: &Path) -> io::Result<()> {
    #[cfg(unix)]
    {
        let synced = File::open(dir).and_then(|d| d.sync_all());
        match synced {
            Err(e)
                if !matches!(
                    e.kind(),
                    io::ErrorKind::InvalidInput | io::ErrorKind::Unsupported
                ) =>
            {
                return Err(context(e, "syncing the folder", dir));
            }
            _ => {}
        }
    }
    #[cfg(not(unix))]
    let _ = dir;
    Ok(())
}

fn parent_dir(path: &Path) -> &Path {
    path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."))
}

/// Creates a new temporary file; a name already taken (by chance) is never reused.
fn create_temp(path: &Path) -> io::Result<(PathBuf, File)> {
    let mut last = None;
    for _ in 0..16 {
        let tmp = temp_path(path);
        match OpenOptions::new().write(true).create_new(true).open(&tmp) {
            Ok(file) => return Ok((tmp, file)),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => last = Some(tmp),
            Err(e) => return Err(context(e, "creating", &tmp)),
        }
    }
    let tmp = last.unwrap_or_else(|| temp_path(path));
    Err(context(io::ErrorKind::AlreadyExists.into(), "creating a unique temporary file", &tmp))
}

/// `(target name, process id)` of a temporary file name.
fn parse_temp_name(file_name: &str) -> Option<(&str, u32)> {
    let rest = file_name.strip_prefix('.')?.strip_suffix(TEMP_SUFFIX)?;
    let (rest, random) = rest.rsplit_once('.')?;
    let (target, pid) = rest.rsplit_once('.')?;
    let hex = random.len() == 16 && random.bytes().all(|b| b.is_ascii_hexdigit());
    (hex && !target.is_empty()).then_some(())?;
    Some((target, pid.parse().ok()?))
}

/// Removes temporary siblings of `path` whose writer is no longer running (a killed run).
/// Best effort: failures are ignored, and nothing is removed where process ids cannot be checked.
fn remove_stale_temps(path: &Path) {
    #[cfg(target_os = "linux")]
    {
        let Some(name) = path.file_name().and_then(|n| n.to_str()) else { return };
        let Ok(entries) = std::fs::read_dir(parent_dir(path)) else { return };
        for entry in entries.flatten() {
            let file_name = entry.file_name();
            let Some((target, pid)) = file_name.to_str().and_then(parse_temp_name) else {
                continue;
            };
            let alive = pid == std::process::id() || Path::new(&format!("/proc/{pid}")).exists();
            if target == name && !alive {
                let _ = std::fs::remove_file(entry.path());
            }
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = path;
}

/// The same error kind, its message prefixed with the step and the path.
pub(crate) fn context(e: io::Error, step: &str, path: &Path) -> io::Error {
    io::Error::new(e.kind(), format!("{step} {}: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    fn scratch(name: &str) -> PathBuf {
        let dir = std::env::temp_dir()
            .join(format!("llb-types-atomic-{name}-{}", std::process::id()))
            .join(format!("{:x}", std::collections::hash_map::RandomState::new().hash_one(0)));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn write_replaces_and_leaves_only_the_target() {
        let dir = scratch("replace");
        let path = dir.join("sub").join("f.bin");
        write(&path, b"one").unwrap();
        write(&path, b"two").unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"two");
        assert_eq!(names(path.parent().unwrap()), ["f.bin"]);
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn temp_names_are_unique_and_recognised() {
        let path = Path::new("/x/scores.csv");
        let a = temp_path(path);
        let b = temp_path(path);
        assert_ne!(a, b);
        let name = a.file_name().unwrap().to_str().unwrap();
        assert!(name.starts_with(&format!(".scores.csv.{}.", std::process::id())), "{name}");
        assert_eq!(parse_temp_name(name), Some(("scores.csv", std::process::id())));
        for other in
            ["scores.csv", ".scores.csv.tmp", ".scores.csv.12.xyz.tmp", "..1.0123456789abcdef.tmp"]
        {
            assert!(!is_temp_name(other), "{other}");
        }
    }

    /// Regression: a failing writer (here a full disk) must leave the old file and no temporary.
    #[test]
    fn a_failed_fill_keeps_the_old_file_and_removes_the_temporary() {
        let dir = scratch("fail");
        let path = dir.join("model.json");
        write(&path, b"old").unwrap();
        let err = write_with(&path, |file| {
            file.write_all(b"half")?;
            Err::<(), _>(io::Error::new(io::ErrorKind::StorageFull, "no space left on device"))
        })
        .unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::StorageFull);
        assert_eq!(std::fs::read(&path).unwrap(), b"old");
        assert_eq!(names(&dir), ["model.json"]);
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn errors_name_the_file_that_failed() {
        let dir = scratch("name");
        let blocker = dir.join("file");
        std::fs::write(&blocker, b"").unwrap();
        // A regular file where a folder is needed.
        let err = write(&blocker.join("x.json"), b"{}").unwrap_err();
        assert!(err.to_string().contains(&*blocker.to_string_lossy()), "{err}");
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn temporaries_of_dead_processes_are_removed_by_the_next_write() {
        let dir = scratch("stale");
        let path = dir.join("entry.safetensors");
        // Process ids above the kernel's maximum (4,194,304) never run.
        let dead = dir.join(".entry.safetensors.4999999.0123456789abcdef.tmp");
        let other_target = dir.join(".other.4999999.0123456789abcdef.tmp");
        let alive = dir.join(format!(".entry.safetensors.{}.fedcba9876543210.tmp", 1));
        for p in [&dead, &other_target, &alive] {
            std::fs::write(p, b"partial").unwrap();
        }
        write(&path, b"whole").unwrap();
        assert!(!dead.exists());
        assert!(other_target.exists() && alive.exists(), "only this target's dead temporaries go");
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn concurrent_writers_of_one_path_each_leave_a_whole_file() {
        let dir = scratch("race");
        let path = dir.join("shared.bin");
        let contents: Vec<Vec<u8>> = (0..8u8).map(|i| vec![i; 64 * 1024]).collect();
        std::thread::scope(|s| {
            for bytes in &contents {
                let path = &path;
                s.spawn(move || {
                    for _ in 0..10 {
                        write(path, bytes).unwrap();
                    }
                });
            }
        });
        let got = std::fs::read(&path).unwrap();
        assert!(contents.contains(&got), "the file is one writer's whole content");
        assert_eq!(names(&dir), ["shared.bin"]);
        std::fs::remove_dir_all(dir).unwrap();
    }
}

//! Advisory file locks between llb processes that share a cache or an output folder.
//!
//! A [`FileLock`] holds an exclusive `flock`-style lock (`std::fs::File::lock`) on a small lock
//! file for as long as it lives; the operating system releases it when the process exits, killed
//! or not, so a crashed run never leaves a stale lock behind. Lock files are empty and are never
//! deleted (deleting a lock file while another process waits on it would let two processes hold
//! "the" lock at once).
//!
//! Locks are advisory: they order llb processes among themselves, not other programs. Within one
//! process, taking a lock on a file the process already holds blocks forever: hold at most one
//! lock per file.

use crate::atomic::context;
use std::fs::{File, OpenOptions, TryLockError};
use std::io;
use std::path::{Path, PathBuf};

/// An exclusive lock on a file, released when dropped.
#[derive(Debug)]
pub struct FileLock {
    file: File,
    path: PathBuf,
}

impl FileLock {
    /// Waits until this process holds the exclusive lock on `path` (created empty, with its
    /// parent folders, if missing).
    ///
    /// # Errors
    /// The IO error of creating, opening or locking the file, naming it.
    pub fn exclusive(path: &Path) -> io::Result<Self> {
        let file = open(path)?;
        file.lock().map_err(|e| context(e, "locking", path))?;
        Ok(Self { file, path: path.to_path_buf() })
    }

    /// Takes the exclusive lock on `path` if no other holder has it; `Ok(None)` when one has.
    ///
    /// # Errors
    /// As [`FileLock::exclusive`].
    pub fn try_exclusive(path: &Path) -> io::Result<Option<Self>> {
        let file = open(path)?;
        match file.try_lock() {
            Ok(()) => Ok(Some(Self { file, path: path.to_path_buf() })),
            Err(TryLockError::WouldBlock) => Ok(None),
            Err(TryLockError::Error(e)) => Err(context(e, "locking", path)),
        }
    }

    /// Like [`FileLock::exclusive`], but first tries without waiting and calls `on_wait` once
    /// when another holder makes it wait (e.g. to log which file it is waiting for).
    ///
    /// # Errors
    /// As [`FileLock::exclusive`].
    pub fn exclusive_or_wait(path: &Path, on_wait: impl FnOnce()) -> io::Result<Self> {
        match Self::try_exclusive(path)? {
            Some(lock) => Ok(lock),
            None => {
                on_wait();
                Self::exclusive(path)
            }
        }
    }

    /// The lock file.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for FileLock {
    fn drop(&mut self) {
        // Closing the file releases the lock too; unlocking first makes it immediate.
        let _ = self.file.unlock();
    }
}

fn open(path: &Path) -> io::Result<File> {
    if let Some(dir) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|e| context(e, "creating the folder", dir))?;
    }
    OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)
        .map_err(|e| context(e, "opening the lock file", path))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc;
    use std::time::Duration;

    fn lock_path(name: &str) -> PathBuf {
        std::env::temp_dir()
            .join(format!("llb-types-lock-{name}-{}", std::process::id()))
            .join("x.lock")
    }

    #[test]
    fn a_held_lock_refuses_a_second_holder_until_dropped() {
        let path = lock_path("refuse");
        let first = FileLock::exclusive(&path).unwrap();
        assert_eq!(first.path(), path);
        assert!(FileLock::try_exclusive(&path).unwrap().is_none());
        drop(first);
        assert!(FileLock::try_exclusive(&path).unwrap().is_some());
        std::fs::remove_dir_all(path.parent().unwrap()).unwrap();
    }

    #[test]
    fn a_waiter_gets_the_lock_when_the_holder_lets_go() {
        let path = lock_path("wait");
        let held = FileLock::exclusive(&path).unwrap();
        let (waiting, waited) = mpsc::channel();
        let (acquired, got) = mpsc::channel();
        let waiter = {
            let path = path.clone();
            std::thread::spawn(move || {
                let lock =
                    FileLock::exclusive_or_wait(&path, || waiting.send(()).unwrap()).unwrap();
                acquired.send(()).unwrap();
                drop(lock);
            })
        };
        waited.recv().unwrap();
        // Still held: the waiter cannot have it yet.
        assert!(got.recv_timeout(Duration::from_millis(50)).is_err());
        drop(held);
        got.recv().unwrap();
        waiter.join().unwrap();
        std::fs::remove_dir_all(path.parent().unwrap()).unwrap();
    }
}

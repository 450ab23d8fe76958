//! Verified writes: atomic writes that hash what they write (through `llb_types::atomic` and
//! `llb_types::sha256`), and the `.sha256` sidecars of hub files.

use std::fs;
use std::io::{self, Read};
use std::path::Path;

use llb_types::sha256::HashingReader;

use crate::error::{Error, Result};

/// Streams `reader` into `path` with the workspace's one atomic writer
/// ([`llb_types::atomic::write_with`]: a uniquely named temporary file in the same folder, synced,
/// renamed over `path`, folder synced), hashing on the way, and calls `check` with the SHA-256
/// before the rename. Missing parent folders are created. Returns the SHA-256.
///
/// When `check` or the copy fails, the temporary file is removed and `path` is left as it was.
pub(crate) fn write_verified(
    path: &Path,
    reader: &mut dyn Read,
    check: impl FnOnce(&str) -> Result<()>,
) -> Result<String> {
    let mut checked = None;
    let written = llb_types::atomic::write_with(path, |file| {
        let mut hashing = HashingReader::new(reader);
        io::copy(&mut hashing, file)?;
        let sum = hashing.hex_digest();
        // A refused sum is carried out of the writer (which then removes its temporary file).
        if let Err(e) = check(&sum) {
            checked = Some(e);
            return Err(io::Error::other("checksum refused"));
        }
        Ok(sum)
    });
    match (written, checked) {
        (_, Some(refused)) => Err(refused),
        (Ok(sum), None) => Ok(sum),
        (Err(source), None) => Err(Error::Io { path: path.to_path_buf(), source }),
    }
}

/// The path of the `.sha256` sidecar that records a hub file's sum.
pub(crate) fn sidecar_path(path: &Path) -> std::path::PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(".sha256");
    path.with_file_name(name)
}

/// Reads a sidecar; `Ok(None)` when it does not exist.
pub(crate) fn read_sidecar(path: &Path) -> Result<Option<String>> {
    let sidecar = sidecar_path(path);
    let text = match fs::read_to_string(&sidecar) {
        Ok(text) => text,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(Error::Io { path: sidecar, source: e }),
    };
    let sum = text.split_whitespace().next().unwrap_or_default().to_ascii_lowercase();
    if is_sha256_hex(&sum) {
        Ok(Some(sum))
    } else {
        Err(Error::BadSidecar { path: sidecar, content: text.chars().take(80).collect() })
    }
}

/// `true` for 64 lower-case hex digits.
pub(crate) fn is_sha256_hex(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|c| c.is_ascii_digit() || (b'a'..=b'f').contains(&c))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Yields `good` bytes, then fails.
    struct FailingReader {
        good: usize,
    }

    impl Read for FailingReader {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            if self.good == 0 {
                return Err(io::Error::other("disk on fire"));
            }
            let n = self.good.min(buf.len());
            buf[..n].fill(7);
            self.good -= n;
            Ok(n)
        }
    }

    fn entries(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    #[test]
    fn known_digests() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a/b/abc.txt");
        let sum = write_verified(&path, &mut &b"abc"[..], |_| Ok(())).unwrap();
        assert_eq!(sum, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
        assert_eq!(llb_types::sha256::sha256_file(&path).unwrap(), sum);
        #[cfg(unix)]
        {
            // Same mode as a file made by `fs::write` (0o666 less the umask), not tempfile's 0o600.
            use std::os::unix::fs::PermissionsExt;
            let plain = dir.path().join("plain");
            fs::write(&plain, b"abc").unwrap();
            let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode(&path), mode(&plain));
        }
        let empty = dir.path().join("empty");
        assert_eq!(
            write_verified(&empty, &mut &b""[..], |_| Ok(())).unwrap(),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }

    #[test]
    fn failed_copy_leaves_no_temporary_file_and_keeps_the_old_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("data.bin");
        llb_types::atomic::write(&path, b"old").unwrap();
        let err =
            write_verified(&path, &mut FailingReader { good: 100_000 }, |_| Ok(())).unwrap_err();
        assert!(matches!(&err, Error::Io { path: p, .. } if p == &path), "{err}");
        assert_eq!(entries(dir.path()), ["data.bin"]);
        assert_eq!(fs::read(&path).unwrap(), b"old");
    }

    #[test]
    fn failed_check_leaves_no_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("data.bin");
        let err = write_verified(&path, &mut &b"xyz"[..], |_| Err(Error::NoCacheRoot)).unwrap_err();
        assert!(matches!(err, Error::NoCacheRoot));
        assert!(entries(dir.path()).is_empty());
    }

    #[test]
    fn sidecars() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("model.safetensors");
        assert_eq!(sidecar_path(&path), dir.path().join("model.safetensors.sha256"));
        assert_eq!(read_sidecar(&path).unwrap(), None);
        let sum = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";
        fs::write(sidecar_path(&path), format!("{}  model.safetensors\n", sum.to_uppercase()))
            .unwrap();
        assert_eq!(read_sidecar(&path).unwrap().as_deref(), Some(sum));
        fs::write(sidecar_path(&path), "not a sum").unwrap();
        assert!(matches!(read_sidecar(&path), Err(Error::BadSidecar { .. })));
    }
}

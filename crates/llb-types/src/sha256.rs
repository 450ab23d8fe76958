//! SHA-256 as lower-case hex, the one implementation every llb crate hashes content with
//! (feature `sha256`): cache keys, model checksums, asset verification.
//!
//! [`sha256_hex`] hashes bytes in memory, [`sha256_file`] streams a file, [`Sha256Hasher`] is the
//! incremental form (also an [`io::Write`] sink), and [`HashingReader`] hashes whatever is read
//! through it, so a download can be verified while it is copied.

use sha2::{Digest, Sha256};
use std::fmt::Write as _;
use std::fs::File;
use std::io::{self, Read, Write};
use std::path::Path;

/// Lower-case hex SHA-256 (64 digits) of `bytes`.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex(&Sha256::digest(bytes))
}

/// Lower-case hex SHA-256 of the file at `path`, read in 64 KiB chunks (never whole in memory).
///
/// # Errors
/// The IO error of opening or reading `path`, its message naming the path.
pub fn sha256_file(path: &Path) -> io::Result<String> {
    let file = File::open(path).map_err(|e| crate::atomic::context(e, "opening", path))?;
    let mut reader = HashingReader::new(file);
    let mut buffer = vec![0u8; 64 * 1024];
    loop {
        match reader.read(&mut buffer) {
            Ok(0) => break,
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(crate::atomic::context(e, "reading", path)),
        }
    }
    Ok(reader.hex_digest())
}

/// An incremental SHA-256: feed it with [`update`](Self::update) (or as an [`io::Write`] sink),
/// then read the digest once.
#[derive(Debug, Clone, Default)]
pub struct Sha256Hasher {
    inner: Sha256,
}

impl Sha256Hasher {
    /// An empty hasher (the digest of no bytes so far).
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds `bytes` to the hashed stream.
    pub fn update(&mut self, bytes: &[u8]) {
        self.inner.update(bytes);
    }

    /// The 32-byte digest of everything fed so far.
    pub fn finish_bytes(self) -> [u8; 32] {
        self.inner.finalize().into()
    }

    /// The digest as 64 lower-case hex digits.
    pub fn finish_hex(self) -> String {
        hex(&self.finish_bytes())
    }
}

impl Write for Sha256Hasher {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.update(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// A reader that hashes every byte read through it.
#[derive(Debug)]
pub struct HashingReader<R> {
    inner: R,
    hasher: Sha256Hasher,
}

impl<R: Read> HashingReader<R> {
    /// Wraps `inner`; nothing is hashed yet.
    pub fn new(inner: R) -> Self {
        Self { inner, hasher: Sha256Hasher::new() }
    }

    /// The lower-case hex SHA-256 of the bytes read so far.
    pub fn hex_digest(self) -> String {
        self.hasher.finish_hex()
    }
}

impl<R: Read> Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }
}

fn hex(digest: &[u8]) -> String {
    digest.iter().fold(String::with_capacity(2 * digest.len()), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// FIPS 180-2, appendix B.1 and B.2, and the empty message.
    const VECTORS: [(&[u8], &str); 3] = [
        (b"abc", "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"),
        (b"", "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"),
        (
            b"abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq",
            "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1",
        ),
    ];

    fn check(input: &[u8], expected: &str) {
        assert_eq!(sha256_hex(input), expected);
        let mut hasher = Sha256Hasher::new();
        for chunk in input.chunks(5) {
            hasher.update(chunk);
        }
        assert_eq!(hasher.finish_hex(), expected);
        let mut reader = HashingReader::new(input);
        io::copy(&mut reader, &mut io::sink()).unwrap();
        assert_eq!(reader.hex_digest(), expected);
    }

    #[test]
    fn fips_vectors() {
        for (input, expected) in VECTORS {
            check(input, expected);
        }
    }

    #[test]
    fn file_digest_streams_past_one_buffer() {
        let dir = std::env::temp_dir().join(format!("llb-types-sha256-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("big.bin");
        let bytes: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
        std::fs::write(&path, &bytes).unwrap();
        assert_eq!(sha256_file(&path).unwrap(), sha256_hex(&bytes));
        let mut sink = Sha256Hasher::new();
        sink.write_all(&bytes).unwrap();
        assert_eq!(sink.finish_hex(), sha256_hex(&bytes));
        let missing = dir.join("missing.bin");
        let err = sha256_file(&missing).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::NotFound);
        assert!(err.to_string().contains("missing.bin"), "{err}");
        std::fs::remove_dir_all(dir).unwrap();
    }
}

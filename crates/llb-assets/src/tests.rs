//! Crate-level tests: fetching into a cache from archives built by the tests themselves, with a
//! counting fake registry client and a fake hub cache. No network.

use std::io::{Cursor, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use crate::hub::tests::fake_hub;
use crate::*;

/// A registry client that "downloads" a fixed archive and counts its calls.
#[derive(Debug)]
struct FakeRegistry {
    file_name: &'static str,
    archive: Vec<u8>,
    calls: AtomicUsize,
}

impl FakeRegistry {
    fn new(file_name: &'static str, archive: Vec<u8>) -> Arc<Self> {
        Arc::new(Self { file_name, archive, calls: AtomicUsize::new(0) })
    }

    fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }
}

impl Fetcher for FakeRegistry {
    fn download(&self, _package: &Package, dir: &Path) -> Result<PathBuf> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        let path = dir.join(self.file_name);
        std::fs::write(&path, &self.archive).unwrap();
        Ok(path)
    }
}

fn sum(bytes: &[u8]) -> &'static str {
    llb_types::sha256::sha256_hex(bytes).leak()
}

fn wheel(members: &[(&str, &[u8])]) -> Vec<u8> {
    let mut zip = zip::ZipWriter::new(Cursor::new(Vec::new()));
    let options = zip::write::SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Deflated);
    for (name, bytes) in members {
        zip.start_file(*name, options).unwrap();
        zip.write_all(bytes).unwrap();
    }
    zip.finish().unwrap().into_inner()
}

/// A `.deb`: `debian-binary`, `control.tar.xz`, and `data.tar<compression>` whose members are
/// stored as `./usr/...`, like dpkg-deb builds them.
fn deb(members: &[(&str, &[u8])], compression: &str) -> Vec<u8> {
    let mut tar = tar::Builder::new(Vec::new());
    for (name, bytes) in members {
        let mut header = tar::Header::new_gnu();
        header.set_size(bytes.len() as u64);
        header.set_mode(0o644);
        header.set_cksum();
        tar.append_data(&mut header, format!(".{name}"), *bytes).unwrap();
    }
    let tar = tar.into_inner().unwrap();
    let data = match compression {
        "" => tar,
        ".xz" => {
            let mut enc = xz2::write::XzEncoder::new(Vec::new(), 1);
            enc.write_all(&tar).unwrap();
            enc.finish().unwrap()
        }
        ".gz" => {
            let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            enc.write_all(&tar).unwrap();
            enc.finish().unwrap()
        }
        ".zst" => {
            ruzstd::encoding::compress_to_vec(&tar[..], ruzstd::encoding::CompressionLevel::Fastest)
        }
        other => panic!("no test encoder for {other}"),
    };
    let mut ar = ar::Builder::new(Vec::new());
    let parts: [(String, Vec<u8>); 3] = [
        ("debian-binary".to_owned(), b"2.0\n".to_vec()),
        ("control.tar.xz".to_owned(), b"not read".to_vec()),
        (format!("data.tar{compression}"), data),
    ];
    for (name, bytes) in parts {
        ar.append(&ar::Header::new(name.into_bytes(), bytes.len() as u64), &bytes[..]).unwrap();
    }
    ar.into_inner().unwrap()
}

fn pypi(
    id: &'static str,
    inner_path: &'static str,
    dest: &'static str,
    sha256: &'static str,
) -> Asset {
    Asset {
        id,
        source: Source::Pypi { package: "demo", version: "1.0", inner_path },
        dest,
        sha256: Some(sha256),
    }
}

fn debian(
    id: &'static str,
    inner_path: &'static str,
    dest: &'static str,
    sha256: &'static str,
) -> Asset {
    Asset {
        id,
        source: Source::Debian { package: "dataset-demo", inner_path },
        dest,
        sha256: Some(sha256),
    }
}

fn offline() -> FetchOptions {
    FetchOptions::offline(None)
}

/// Lists every file under `dir`, relative, sorted.
fn files_under(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else {
                out.push(path.strip_prefix(dir).unwrap().to_string_lossy().replace('\\', "/"));
            }
        }
    }
    out.sort();
    out
}

#[test]
fn wheel_members_are_unpacked_once_and_then_served_from_the_cache() {
    let (brick, grass) = (b"brick pixels".as_slice(), b"grass pixels".as_slice());
    let registry = FakeRegistry::new(
        "demo-1.0-py3-none-any.whl",
        wheel(&[
            ("demo/data/brick.png", brick),
            ("demo/data/grass.png", grass),
            ("demo/__init__.py", b""),
        ]),
    );
    let dir = tempfile::tempdir().unwrap();
    let cache = AssetCache::new(dir.path()).with_fetcher(registry.clone());
    let assets = [
        pypi("t/brick", "demo/data/brick.png", "images/t/brick.png", sum(brick)),
        pypi("t/grass", "demo/data/grass.png", "images/t/grass.png", sum(grass)),
    ];
    let first = cache.fetch_all(&assets, &offline()).unwrap();
    assert_eq!(registry.calls(), 1, "one download for two files of one package");
    assert_eq!(
        first.iter().map(|f| f.outcome).collect::<Vec<_>>(),
        [Outcome::Fetched, Outcome::Fetched]
    );
    assert_eq!(std::fs::read(cache.path_of(&assets[0])).unwrap(), brick);
    assert_eq!(first[1].path, dir.path().join("images/t/grass.png"));
    assert_eq!(first[1].sha256, sum(grass));
    assert_eq!(files_under(dir.path()), ["images/t/brick.png", "images/t/grass.png"]);

    let second = cache.fetch_all(&assets, &offline()).unwrap();
    assert_eq!(registry.calls(), 1, "a filled cache must not invoke the client");
    assert!(second.iter().all(|f| f.outcome == Outcome::Cached));
    assert_eq!(
        cache.verify(&assets[0]).unwrap(),
        CacheState::Valid { sha256: sum(brick).to_owned() }
    );
}

#[test]
fn deb_members_are_unpacked_for_every_data_compression() {
    let (images, labels) = (b"idx3 images".as_slice(), b"idx1 labels".as_slice());
    for compression in ["", ".xz", ".gz", ".zst"] {
        let archive = deb(
            &[
                ("/usr/share/doc/demo/copyright", b"MIT"),
                ("/usr/share/demo/images.gz", images),
                ("/usr/share/demo/labels.gz", labels),
            ],
            compression,
        );
        let registry = FakeRegistry::new("dataset-demo_1_all.deb", archive);
        let dir = tempfile::tempdir().unwrap();
        let cache = AssetCache::new(dir.path()).with_fetcher(registry.clone());
        let assets = [
            debian("d/labels", "/usr/share/demo/labels.gz", "images/d/labels.gz", sum(labels)),
            debian("d/images", "/usr/share/demo/images.gz", "images/d/images.gz", sum(images)),
        ];
        let fetched = cache.fetch_all(&assets, &offline()).unwrap();
        assert_eq!(registry.calls(), 1, "{compression}");
        assert_eq!(std::fs::read(&fetched[0].path).unwrap(), labels, "{compression}");
        assert_eq!(std::fs::read(&fetched[1].path).unwrap(), images, "{compression}");
    }
}

#[test]
fn checksum_mismatch_names_the_file_and_both_sums_and_writes_nothing() {
    let registry = FakeRegistry::new("demo.whl", wheel(&[("demo/a.bin", b"tampered")]));
    let dir = tempfile::tempdir().unwrap();
    let cache = AssetCache::new(dir.path()).with_fetcher(registry);
    let expected = sum(b"original");
    let asset = pypi("demo/a", "demo/a.bin", "raw/a.bin", expected);
    let err = cache.fetch(&asset, &offline()).unwrap_err();
    let text = err.to_string();
    for needle in
        ["demo/a", "demo/a.bin", "pypi:demo==1.0", expected, sum(b"tampered"), "raw/a.bin"]
    {
        assert!(text.contains(needle), "`{needle}` missing from: {text}");
    }
    assert!(matches!(err, Error::ChecksumMismatch { .. }));
    assert!(files_under(dir.path()).is_empty(), "{:?}", files_under(dir.path()));
}

#[test]
fn corrupt_cached_file_is_fetched_again() {
    let registry = FakeRegistry::new("demo.whl", wheel(&[("demo/a.bin", b"good")]));
    let dir = tempfile::tempdir().unwrap();
    let cache = AssetCache::new(dir.path()).with_fetcher(registry.clone());
    let asset = pypi("demo/a", "demo/a.bin", "raw/a.bin", sum(b"good"));
    llb_types::atomic::write(&cache.path_of(&asset), b"bit rot").unwrap();
    assert_eq!(
        cache.verify(&asset).unwrap(),
        CacheState::Mismatch {
            expected: sum(b"good").to_owned(),
            actual: sum(b"bit rot").to_owned()
        }
    );
    assert_eq!(cache.fetch(&asset, &offline()).unwrap().outcome, Outcome::Refetched);
    assert_eq!(registry.calls(), 1);
    assert_eq!(std::fs::read(cache.path_of(&asset)).unwrap(), b"good");
}

#[test]
fn missing_member_is_an_error_naming_member_and_package() {
    for (file_name, archive, source) in [
        (
            "demo.whl",
            wheel(&[("demo/a.bin", b"a")]),
            Source::Pypi { package: "demo", version: "1.0", inner_path: "demo/b.bin" },
        ),
        (
            "demo.deb",
            deb(&[("/usr/share/demo/a", b"a")], ".xz"),
            Source::Debian { package: "demo", inner_path: "/usr/share/demo/b" },
        ),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let cache = AssetCache::new(dir.path()).with_fetcher(FakeRegistry::new(file_name, archive));
        let asset = Asset { id: "demo/b", source, dest: "raw/b", sha256: Some(sum(b"b")) };
        let err = cache.fetch(&asset, &offline()).unwrap_err();
        assert!(
            matches!(&err, Error::MemberMissing { member, .. } if member.ends_with("demo/b.bin") || member.ends_with("demo/b")),
            "{err}"
        );
        assert!(err.to_string().contains("demo"), "{err}");
    }
}

#[test]
fn garbage_archive_is_an_archive_error() {
    for file_name in ["demo.whl", "demo.deb"] {
        let dir = tempfile::tempdir().unwrap();
        let cache = AssetCache::new(dir.path())
            .with_fetcher(FakeRegistry::new(file_name, b"not an archive".to_vec()));
        let source = if file_name.ends_with("whl") {
            Source::Pypi { package: "demo", version: "1.0", inner_path: "a" }
        } else {
            Source::Debian { package: "demo", inner_path: "/a" }
        };
        let asset = Asset { id: "demo/a", source, dest: "raw/a", sha256: Some(sum(b"a")) };
        let err = cache.fetch(&asset, &offline()).unwrap_err();
        assert!(matches!(err, Error::Archive { .. }), "{file_name}: {err}");
    }
}

const HUB_ASSET: Asset = Asset {
    id: "demo/hub",
    source: Source::Hub { repo: "org/demo-small", file: "model.safetensors" },
    dest: "weights/demo.safetensors",
    sha256: None,
};

#[test]
fn hub_files_are_copied_with_a_sidecar_and_then_served_from_the_cache() {
    let hub_dir = tempfile::tempdir().unwrap();
    fake_hub(hub_dir.path(), "org/demo-small", "model.safetensors", b"hub weights");
    let dir = tempfile::tempdir().unwrap();
    let cache = AssetCache::new(dir.path());
    let options = FetchOptions::offline(Some(hub_dir.path().to_path_buf()));
    assert_eq!(cache.verify(&HUB_ASSET).unwrap(), CacheState::Missing);
    let first = cache.fetch(&HUB_ASSET, &options).unwrap();
    assert_eq!((first.outcome, first.sha256.as_str()), (Outcome::Fetched, sum(b"hub weights")));
    assert_eq!(
        files_under(dir.path()),
        ["weights/demo.safetensors", "weights/demo.safetensors.sha256"]
    );
    // The llb cache now stands alone: no hub cache needed.
    assert_eq!(cache.fetch(&HUB_ASSET, &offline()).unwrap().outcome, Outcome::Cached);
    llb_types::atomic::write(&cache.path_of(&HUB_ASSET), b"bit rot").unwrap();
    assert_eq!(cache.fetch(&HUB_ASSET, &options).unwrap().outcome, Outcome::Refetched);
    assert_eq!(std::fs::read(cache.path_of(&HUB_ASSET)).unwrap(), b"hub weights");
}

#[test]
fn missing_hub_file_is_an_error_and_a_bundle_falls_back_to_the_registry() {
    let hub_dir = tempfile::tempdir().unwrap();
    let options = FetchOptions::offline(Some(hub_dir.path().to_path_buf()));
    let dir = tempfile::tempdir().unwrap();
    let registry = FakeRegistry::new("demo.whl", wheel(&[("demo/model.onnx", b"onnx")]));
    let cache = AssetCache::new(dir.path()).with_fetcher(registry.clone());
    let err = cache.fetch(&HUB_ASSET, &options).unwrap_err();
    assert!(matches!(&err, Error::HubMissing { repo, .. } if repo == "org/demo-small"), "{err}");

    let onnx = pypi("demo/onnx", "demo/model.onnx", "raw/model.onnx", sum(b"onnx"));
    let bundle = Bundle {
        name: "demo",
        registry: std::slice::from_ref(Box::leak(Box::new(onnx))),
        hub: &[HUB_ASSET],
        folders: &[],
    };
    let fetched = cache.fetch_bundle(&bundle, &options).unwrap();
    assert_eq!((fetched.route, registry.calls()), (Route::Registry, 1));
    assert_eq!(fetched.files[0].asset, "demo/onnx");

    // Once the hub file exists (e.g. converted and recorded), the hub route wins.
    llb_types::atomic::write(&cache.path_of(&HUB_ASSET), b"converted").unwrap();
    assert_eq!(cache.verify(&HUB_ASSET).unwrap(), CacheState::Unrecorded);
    assert_eq!(cache.record_sha256(&HUB_ASSET).unwrap(), sum(b"converted"));
    let fetched = cache.fetch_bundle(&bundle, &options).unwrap();
    assert_eq!(
        (fetched.route, fetched.files[0].outcome, registry.calls()),
        (Route::Hub, Outcome::Cached, 1)
    );
}

/// The files of the demo data folder inside the wheel, as `(path below the prefix, bytes)`.
const FOLDER_FILES: [(&str, &[u8]); 3] = [
    ("labels.csv", b"images/a.png 1.0 mono\n"),
    ("images/b.png", b"bbb"),
    ("images/a.png", b"aaa"),
];

/// A wheel holding the demo folder under `demo/data/`, plus members outside the prefix.
fn folder_wheel(files: &[(&str, &[u8])]) -> Vec<u8> {
    let mut members: Vec<(String, &[u8])> =
        vec![("demo/__init__.py".to_owned(), b""), ("demo-1.0.dist-info/RECORD".to_owned(), b"x")];
    members.extend(files.iter().map(|(p, b)| (format!("demo/data/{p}"), *b)));
    let borrowed: Vec<(&str, &[u8])> = members.iter().map(|(p, b)| (p.as_str(), *b)).collect();
    wheel(&borrowed)
}

/// The listing sum of `files`, computed the way `sha256sum` prints it, independently of the code.
fn listing_sum(files: &[(&str, &[u8])]) -> &'static str {
    let mut lines: Vec<(String, String)> =
        files.iter().map(|(p, b)| ((*p).to_owned(), sum(b).to_owned())).collect();
    lines.sort();
    let text: String = lines.iter().map(|(p, s)| format!("{s}  {p}\n")).collect();
    sum(text.as_bytes())
}

fn demo_folder(wheel_bytes: &[u8], listing: &'static str) -> FolderAsset {
    FolderAsset {
        id: "demo-folder",
        package: "demo",
        version: "1.0",
        wheel_sha256: sum(wheel_bytes),
        prefix: "demo/data/",
        dest: "images/demo",
        n_files: 3,
        listing_sha256: listing,
    }
}

#[test]
fn folder_is_unpacked_whole_and_then_served_from_the_cache() {
    let archive = folder_wheel(&FOLDER_FILES);
    let folder = demo_folder(&archive, listing_sum(&FOLDER_FILES));
    let registry = FakeRegistry::new("demo-1.0-py3-none-any.whl", archive);
    let dir = tempfile::tempdir().unwrap();
    let cache = AssetCache::new(dir.path()).with_fetcher(registry.clone());
    assert_eq!(cache.verify_folder(&folder).unwrap(), CacheState::Missing);
    let bundle = Bundle {
        name: "demo",
        registry: &[],
        hub: &[],
        folders: std::slice::from_ref(Box::leak(Box::new(folder))),
    };
    let fetched = cache.fetch_bundle(&bundle, &offline()).unwrap();
    assert_eq!(fetched.files.len(), 1);
    let first = &fetched.files[0];
    assert_eq!(
        (first.asset, first.outcome, first.sha256.as_str(), registry.calls()),
        ("demo-folder", Outcome::Fetched, folder.listing_sha256, 1)
    );
    assert_eq!(first.path, dir.path().join("images/demo"));
    assert_eq!(
        files_under(dir.path()),
        ["images/demo/images/a.png", "images/demo/images/b.png", "images/demo/labels.csv"]
    );
    assert_eq!(std::fs::read(dir.path().join("images/demo/images/b.png")).unwrap(), b"bbb");
    let again = cache.fetch_folder(&folder).unwrap();
    assert_eq!((again.outcome, registry.calls()), (Outcome::Cached, 1));

    // A changed file and an extra file both make the folder corrupt; it is fetched again whole.
    std::fs::write(dir.path().join("images/demo/images/a.png"), b"bit rot").unwrap();
    assert!(matches!(cache.verify_folder(&folder).unwrap(), CacheState::Mismatch { .. }));
    assert_eq!(cache.fetch_folder(&folder).unwrap().outcome, Outcome::Refetched);
    std::fs::write(dir.path().join("images/demo/extra.txt"), b"x").unwrap();
    assert_eq!(cache.fetch_folder(&folder).unwrap().outcome, Outcome::Refetched);
    assert_eq!(registry.calls(), 3);
    assert_eq!(files_under(dir.path()).len(), 3, "{:?}", files_under(dir.path()));
    assert_eq!(std::fs::read(dir.path().join("images/demo/images/a.png")).unwrap(), b"aaa");
}

#[test]
fn a_killed_fetch_leaves_nothing_that_passes_as_complete() {
    let archive = folder_wheel(&FOLDER_FILES);
    let folder = demo_folder(&archive, listing_sum(&FOLDER_FILES));
    let dir = tempfile::tempdir().unwrap();
    let registry = FakeRegistry::new("demo.whl", archive);
    let cache = AssetCache::new(dir.path()).with_fetcher(registry.clone());
    // What a fetch killed while unpacking leaves: a hidden staging folder with part of the files.
    let staging = dir.path().join("images/.demo.abc123.tmp/images");
    std::fs::create_dir_all(&staging).unwrap();
    std::fs::write(staging.join("a.png"), b"aaa").unwrap();
    assert_eq!(cache.verify_folder(&folder).unwrap(), CacheState::Missing);
    // A folder that holds only some of the files is not complete either.
    std::fs::create_dir_all(dir.path().join("images/demo/images")).unwrap();
    std::fs::write(dir.path().join("images/demo/images/a.png"), b"aaa").unwrap();
    assert!(matches!(cache.verify_folder(&folder).unwrap(), CacheState::Mismatch { .. }));
    assert_eq!(cache.fetch_folder(&folder).unwrap().outcome, Outcome::Refetched);
    assert!(matches!(cache.verify_folder(&folder).unwrap(), CacheState::Valid { .. }));
}

#[test]
fn wrong_wheel_or_listing_sum_is_an_error_and_writes_no_folder() {
    let archive = folder_wheel(&FOLDER_FILES);
    let listing = listing_sum(&FOLDER_FILES);
    let tampered = folder_wheel(&[FOLDER_FILES[0], FOLDER_FILES[1], ("images/a.png", b"evil")]);
    for (served, folder, needle) in [
        // The wheel differs from the recorded one: refused before unpacking.
        (tampered.clone(), demo_folder(&archive, listing), "the wheel of pypi:demo==1.0"),
        // The wheel is the recorded one but its files are not what the listing says.
        (
            tampered.clone(),
            demo_folder(&tampered, listing),
            "listing of 3 files under `demo/data/`",
        ),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let cache = AssetCache::new(dir.path()).with_fetcher(FakeRegistry::new("demo.whl", served));
        let err = cache.fetch_folder(&folder).unwrap_err();
        let text = err.to_string();
        assert!(matches!(err, Error::ChecksumMismatch { .. }), "{text}");
        assert!(text.contains(needle) && text.contains("demo-folder"), "{text}");
        assert!(files_under(dir.path()).is_empty(), "{:?}", files_under(dir.path()));
        let leftovers: Vec<_> = std::fs::read_dir(dir.path().join("images"))
            .map(|d| d.map(|e| e.unwrap().file_name()).collect())
            .unwrap_or_default();
        assert!(leftovers.is_empty(), "{leftovers:?}");
    }
}

#[test]
fn folder_wheel_without_the_prefix_or_with_unsafe_paths_is_refused() {
    let empty = wheel(&[("demo/__init__.py", b"")]);
    let dir = tempfile::tempdir().unwrap();
    let cache =
        AssetCache::new(dir.path()).with_fetcher(FakeRegistry::new("demo.whl", empty.clone()));
    let err = cache.fetch_folder(&demo_folder(&empty, listing_sum(&[]))).unwrap_err();
    assert!(matches!(&err, Error::MemberMissing { member, .. } if member == "demo/data/"), "{err}");

    let unsafe_wheel = wheel(&[("demo/data/../../escape.txt", b"x")]);
    let cache = AssetCache::new(dir.path())
        .with_fetcher(FakeRegistry::new("demo.whl", unsafe_wheel.clone()));
    let err = cache.fetch_folder(&demo_folder(&unsafe_wheel, listing_sum(&[]))).unwrap_err();
    assert!(err.to_string().contains("unsafe member path"), "{err}");
    assert!(files_under(dir.path()).is_empty());
}

#[test]
fn cache_paths_follow_the_destination() {
    let cache = AssetCache::new("/cache");
    assert_eq!(cache.root(), Path::new("/cache"));
    assert_eq!(cache.path_of(&TEXTURE_ASSETS[0]), Path::new("/cache/images/textures/brick.png"));
}

#[test]
fn autotraits() {
    fn check<T: Send + Sync>() {}
    check::<AssetCache>();
    check::<RegistryClient>();
    check::<Error>();
    check::<Asset>();
    check::<FolderAsset>();
    check::<FetchOptions>();
    check::<BundleFetch>();
}

//! Fashion-MNIST one-class protocol from the idx gz files, materialised as PNG files.

use crate::contamination::{ContaminationReport, anomalies_needed, check_contamination_ratio};
use crate::error::{Error, Result};
use crate::sample::{Dataset, Sample, require_file};
use flate2::read::GzDecoder;
use llb_types::{Label, SampleId};
use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use std::io::Read;
use std::path::{Path, PathBuf};

/// Fashion-MNIST class names, by label index.
pub const FASHION_MNIST_CLASSES: [&str; 10] = [
    "t-shirt",
    "trouser",
    "pullover",
    "dress",
    "coat",
    "sandal",
    "shirt",
    "sneaker",
    "bag",
    "ankle-boot",
];

/// Which class is normal and how much of the training set is contaminated.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FashionMnistConfig {
    /// Label index (0..=9) of the normal class.
    pub normal_class: u8,
    /// Fraction α of training images drawn from the nine other classes, in `[0, 1)`.
    pub contamination_ratio: f64,
    /// Seed of the draw of contaminating images.
    pub seed: u64,
}

/// Builds the one-class protocol (as in Deep SAD, Ruff et al., ICLR 2020): training holds every
/// training-split image of the normal class plus `round(α·n/(1−α))` training-split images of the
/// other classes (seeded draw, hidden label anomalous); test holds the whole test split, the
/// normal class normal and the nine others anomalous.
///
/// `idx_dir` holds `train-images-idx3-ubyte.gz`, `train-labels-idx1-ubyte.gz`,
/// `t10k-images-idx3-ubyte.gz` and `t10k-labels-idx1-ubyte.gz`. The selected images are written
/// as 28×28 grey PNG files to `out_dir/train/<index>.png` and `out_dir/test/<index>.png` (index in
/// the original split, 5 digits); ids are those relative paths. Existing files are overwritten
/// with identical bytes, so the output is the same for the same inputs and config.
///
/// # Errors
/// - [`Error::Config`] for a class outside 0..=9 or α outside `[0, 1)`;
/// - [`Error::MissingFile`], [`Error::Parse`] for missing or malformed idx files;
/// - [`Error::Io`], [`Error::Encode`] when writing PNG files fails.
pub fn read_fashion_mnist(
    idx_dir: &Path,
    out_dir: &Path,
    config: &FashionMnistConfig,
) -> Result<Dataset> {
    let _span =
        tracing::info_span!("read_fashion_mnist", normal_class = config.normal_class).entered();
    if config.normal_class > 9 {
        return Err(Error::config(
            "normal_class",
            config.normal_class,
            "a Fashion-MNIST label in 0..=9",
        ));
    }
    check_contamination_ratio(config.contamination_ratio)?;
    let normal = config.normal_class;
    let (train_images, train_labels) = read_split(idx_dir, "train")?;
    let (test_images, test_labels) = read_split(idx_dir, "t10k")?;

    let mut train_idx: Vec<usize> =
        (0..train_labels.len()).filter(|&i| train_labels[i] == normal).collect();
    let n_normal = train_idx.len();
    let mut others: Vec<usize> =
        (0..train_labels.len()).filter(|&i| train_labels[i] != normal).collect();
    others.shuffle(&mut ChaCha8Rng::seed_from_u64(config.seed));
    let wanted = anomalies_needed(n_normal, config.contamination_ratio);
    let n_anomalous = wanted.min(others.len());
    train_idx.extend_from_slice(&others[..n_anomalous]);

    let category = format!("fashion-mnist-{}", FASHION_MNIST_CLASSES[normal as usize]);
    let train = materialise(out_dir, "train", &train_images, &train_labels, &train_idx, normal)?;
    let all_test: Vec<usize> = (0..test_labels.len()).collect();
    let test = materialise(out_dir, "test", &test_images, &test_labels, &all_test, normal)?;
    let report = ContaminationReport {
        requested_ratio: config.contamination_ratio,
        achieved_ratio: n_anomalous as f64 / (n_normal + n_anomalous).max(1) as f64,
        n_train_normal: n_normal,
        n_train_anomalous: n_anomalous,
        seed: Some(config.seed),
    };
    let dataset = Dataset {
        category,
        root: out_dir.to_path_buf(),
        train,
        test,
        pool: Vec::new(),
        contamination: Some(report),
    };
    dataset.finish(out_dir)
}

/// Images (flat 28·28 bytes each) and labels of one split.
type Split = (Vec<Vec<u8>>, Vec<u8>);

fn read_split(dir: &Path, prefix: &str) -> Result<Split> {
    let images_path = dir.join(format!("{prefix}-images-idx3-ubyte.gz"));
    let labels_path = dir.join(format!("{prefix}-labels-idx1-ubyte.gz"));
    let (dims, pixels) = read_idx(&images_path, 3)?;
    let (label_dims, labels) = read_idx(&labels_path, 1)?;
    if dims[1] != 28 || dims[2] != 28 {
        return Err(Error::parse(
            &images_path,
            format!("images are {}x{}, expected 28x28", dims[1], dims[2]),
        ));
    }
    if label_dims[0] != dims[0] {
        return Err(Error::parse(
            &labels_path,
            format!("{} labels for {} images", label_dims[0], dims[0]),
        ));
    }
    if let Some(bad) = labels.iter().find(|&&l| l > 9) {
        return Err(Error::parse(&labels_path, format!("label {bad} outside 0..=9")));
    }
    let images = pixels.chunks_exact(28 * 28).map(<[u8]>::to_vec).collect();
    Ok((images, labels))
}

/// The most data bytes an idx file may hold (Fashion-MNIST's largest, the training images, holds
/// 47 MB): a header asking for more is refused before anything is allocated or decompressed.
pub(crate) const MAX_IDX_BYTES: usize = 256 << 20;

/// Reads a gzip-compressed idx file of unsigned bytes with `n_dims` dimensions.
fn read_idx(path: &Path, n_dims: usize) -> Result<(Vec<usize>, Vec<u8>)> {
    require_file(path, || "the Fashion-MNIST idx layout".to_string())?;
    let file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    parse_idx(GzDecoder::new(std::io::BufReader::new(file)), n_dims, path)
}

/// Parses an idx stream: the header first, then exactly the data bytes it announces (checked
/// against [`MAX_IDX_BYTES`] with overflow-checked arithmetic), so a gzip bomb or a lying header
/// is refused without decompressing or allocating more than the header allows.
pub(crate) fn parse_idx(
    mut reader: impl Read,
    n_dims: usize,
    path: &Path,
) -> Result<(Vec<usize>, Vec<u8>)> {
    let gzip = |e: std::io::Error| Error::parse(path, format!("gzip: {e}"));
    let header_len = 4 + 4 * n_dims;
    let mut header = Vec::with_capacity(header_len);
    (&mut reader).take(header_len as u64).read_to_end(&mut header).map_err(gzip)?;
    if header.len() < header_len {
        return Err(Error::parse(
            path,
            format!("{} bytes, shorter than the idx header", header.len()),
        ));
    }
    if header[..3] != [0, 0, 0x08] || header[3] as usize != n_dims {
        return Err(Error::parse(
            path,
            format!("magic {:02x?}, expected unsigned-byte idx with {n_dims} dims", &header[..4]),
        ));
    }
    let dims: Vec<usize> = header[4..]
        .chunks_exact(4)
        .map(|c| u32::from_be_bytes([c[0], c[1], c[2], c[3]]) as usize)
        .collect();
    let expected = dims
        .iter()
        .try_fold(1usize, |n, &d| n.checked_mul(d))
        .filter(|&n| n <= MAX_IDX_BYTES)
        .ok_or_else(|| {
            Error::parse(
                path,
                format!("header dims {dims:?} ask for more than {MAX_IDX_BYTES} bytes"),
            )
        })?;
    // Not preallocated from the header: the buffer grows only as real data arrives.
    let mut bytes = Vec::new();
    reader.take(expected as u64 + 1).read_to_end(&mut bytes).map_err(gzip)?;
    if bytes.len() != expected {
        let got =
            if bytes.len() > expected { "more than".to_string() } else { bytes.len().to_string() };
        return Err(Error::parse(path, format!("{got} data bytes, header says {expected}")));
    }
    Ok((dims, bytes))
}

fn materialise(
    out: &Path,
    split: &str,
    images: &[Vec<u8>],
    labels: &[u8],
    idx: &[usize],
    normal: u8,
) -> Result<Vec<Sample>> {
    let dir = out.join(split);
    std::fs::create_dir_all(&dir).map_err(|e| Error::io(&dir, e))?;
    idx.par_iter()
        .map(|&i| {
            let id = SampleId::new(format!("{split}/{i:05}.png"));
            let path: PathBuf = out.join(id.as_str());
            let image = image::GrayImage::from_raw(28, 28, images[i].clone())
                .ok_or_else(|| Error::parse(&path, "image buffer is not 28x28"))?;
            image.save(&path).map_err(|source| Error::Encode { path: path.clone(), source })?;
            let mut sample = Sample::unlabelled(id, path);
            let anomalous = labels[i] != normal;
            sample.label = Some(if anomalous { Label::Anomalous } else { Label::Normal });
            sample.defect_type =
                anomalous.then(|| FASHION_MNIST_CLASSES[labels[i] as usize].to_string());
            Ok(sample)
        })
        .collect()
}

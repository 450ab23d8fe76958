//! MVTec AD layout: `<category>/train/good`, `<category>/test/<defect>/`,
//! `<category>/ground_truth/<defect>/<stem>_mask.png`. The built-in benchmark writes this layout too,
//! and version 2 adds a contamination pool: `<category>/pool/<defect>/` with masks in
//! `<category>/ground_truth_pool/<defect>/<stem>_mask.png`.

use crate::error::{Error, Result};
use crate::sample::{Dataset, Sample, list_dirs, list_images, relative_id, require_file};
use llb_types::Label;
use std::path::Path;

/// Reads one category of a data set in the MVTec AD layout under `root`.
///
/// Sample ids are paths relative to `root` (e.g. `bottle/test/broken_large/000.png`). Test images
/// under `good` are [`Label::Normal`] with no mask; every other test folder is a defect type whose
/// images are [`Label::Anomalous`] and must have a mask `ground_truth/<defect>/<stem>_mask.png`.
/// Training images are all normal (the layout's promise; use [`contaminate`](crate::contaminate)
/// for a noisy split).
///
/// When the category has a `pool` folder (the built-in benchmark v2 writes one), its defect
/// folders are read into [`Dataset::pool`] the same way, with masks
/// `ground_truth_pool/<defect>/<stem>_mask.png`; without one the pool is empty and the category
/// reads as plain MVTec AD.
///
/// # Errors
/// - [`Error::MissingFile`] when the category folder, `train/good`, `test` or a mask is missing;
/// - [`Error::Empty`] when `train/good` or `test` holds no image;
/// - [`Error::Parse`] for a `pool/good` folder (the pool holds anomalies only);
/// - [`Error::Io`] when a folder cannot be listed.
pub fn read_mvtec(root: &Path, category: &str) -> Result<Dataset> {
    let _span = tracing::info_span!("read_mvtec", category).entered();
    let cat_dir = root.join(category);
    let layout = || "the MVTec AD layout".to_string();
    for dir in [cat_dir.join("train/good"), cat_dir.join("test")] {
        if !dir.is_dir() {
            return Err(Error::MissingFile { path: dir, referenced_by: layout() });
        }
    }
    let train_dir = cat_dir.join("train/good");
    let mut train = Vec::new();
    for path in list_images(&train_dir)? {
        let mut sample = Sample::unlabelled(relative_id(root, &path)?, path);
        sample.label = Some(Label::Normal);
        train.push(sample);
    }
    if train.is_empty() {
        return Err(Error::Empty { path: train_dir });
    }
    let test_dir = cat_dir.join("test");
    let test = read_labelled(root, &test_dir, &cat_dir.join("ground_truth"), "test")?;
    if test.is_empty() {
        return Err(Error::Empty { path: test_dir });
    }
    let pool_dir = cat_dir.join("pool");
    let pool = if pool_dir.is_dir() {
        read_labelled(root, &pool_dir, &cat_dir.join("ground_truth_pool"), "pool")?
    } else {
        Vec::new()
    };
    tracing::debug!(
        n_train = train.len(),
        n_test = test.len(),
        n_pool = pool.len(),
        "read MVTec AD layout"
    );
    let dataset = Dataset {
        category: category.to_string(),
        root: root.to_path_buf(),
        train,
        test,
        pool,
        contamination: None,
    };
    dataset.finish(&cat_dir)
}

/// Reads the images of every sub-folder of `dir`: `good` ones are normal (allowed only when
/// `split` is `test`), every other folder is a defect type whose images need a mask
/// `<masks>/<defect>/<stem>_mask.png`.
fn read_labelled(root: &Path, dir: &Path, masks: &Path, split: &str) -> Result<Vec<Sample>> {
    let good_allowed = split == "test";
    let mut samples = Vec::new();
    for defect_dir in list_dirs(dir)? {
        let defect =
            defect_dir.file_name().and_then(|n| n.to_str()).unwrap_or_default().to_string();
        if defect == "good" && !good_allowed {
            return Err(Error::parse(
                &defect_dir,
                "the pool holds anomalies only, not `good` images",
            ));
        }
        for path in list_images(&defect_dir)? {
            let mut sample = Sample::unlabelled(relative_id(root, &path)?, path.clone());
            if defect == "good" {
                sample.label = Some(Label::Normal);
            } else {
                let stem = path.file_stem().and_then(|s| s.to_str()).unwrap_or_default();
                let mask = masks.join(&defect).join(format!("{stem}_mask.png"));
                require_file(&mask, || format!("{split} image {}", path.display()))?;
                sample.label = Some(Label::Anomalous);
                sample.defect_type = Some(defect.clone());
                sample.mask_path = Some(mask);
            }
            samples.push(sample);
        }
    }
    Ok(samples)
}

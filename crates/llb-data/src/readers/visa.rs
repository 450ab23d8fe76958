//! VisA: the 1-class split `split_csv/1cls.csv` (columns object, split, label, image, mask) with
//! image and mask paths relative to the data set root.

use crate::error::{Error, Result};
use crate::sample::{Dataset, Sample, relative_id, require_file};
use llb_types::Label;
use std::path::Path;

const COLUMNS: [&str; 5] = ["object", "split", "label", "image", "mask"];

/// Reads one object of VisA from `root/split_csv/1cls.csv`.
///
/// Rows with `split` = `train` go to training, `test` to test; `label` is `normal` or `anomaly`
/// (anomalous rows must name a mask). Ids are the image paths relative to `root`. VisA has one
/// defect folder for all anomalies, so `defect_type` is `anomaly`.
///
/// # Errors
/// - [`Error::MissingFile`] when the csv, an image or a mask is missing (naming the csv line);
/// - [`Error::Parse`] for a missing column, an unknown split or label, or an object with no rows;
/// - [`Error::DuplicateId`] when two rows name the same image.
pub fn read_visa(root: &Path, object: &str) -> Result<Dataset> {
    let _span = tracing::info_span!("read_visa", category = object).entered();
    let csv_path = root.join("split_csv/1cls.csv");
    require_file(&csv_path, || "the VisA layout".to_string())?;
    let text = std::fs::read_to_string(&csv_path).map_err(|e| Error::io(&csv_path, e))?;
    let mut lines = text.trim_start_matches('\u{feff}').lines().enumerate();
    let header: Vec<&str> =
        lines.next().map(|(_, l)| l.split(',').map(str::trim).collect()).unwrap_or_default();
    let mut index = [0usize; 5];
    for (slot, name) in index.iter_mut().zip(COLUMNS) {
        *slot = header
            .iter()
            .position(|h| *h == name)
            .ok_or_else(|| Error::parse(&csv_path, format!("header has no column `{name}`")))?;
    }
    let (mut train, mut test) = (Vec::new(), Vec::new());
    for (n, line) in lines {
        if line.trim().is_empty() {
            continue;
        }
        let line_no = n + 1;
        let cells: Vec<&str> = line.split(',').map(str::trim).collect();
        let cell = |i: usize| cells.get(index[i]).copied().unwrap_or("");
        if cell(0) != object {
            continue;
        }
        let at = || format!("{} line {line_no}", csv_path.display());
        let image = root.join(cell(3));
        require_file(&image, at)?;
        let mut sample = Sample::unlabelled(relative_id(root, &image)?, image);
        match cell(2) {
            "normal" => sample.label = Some(Label::Normal),
            "anomaly" => {
                let mask = root.join(cell(4));
                if cell(4).is_empty() {
                    return Err(Error::parse(
                        &csv_path,
                        format!("line {line_no}: anomaly without a mask"),
                    ));
                }
                require_file(&mask, at)?;
                sample.label = Some(Label::Anomalous);
                sample.defect_type = Some("anomaly".to_string());
                sample.mask_path = Some(mask);
            }
            other => {
                return Err(Error::parse(
                    &csv_path,
                    format!("line {line_no}: unknown label `{other}`"),
                ));
            }
        }
        match cell(1) {
            "train" => train.push(sample),
            "test" => test.push(sample),
            other => {
                return Err(Error::parse(
                    &csv_path,
                    format!("line {line_no}: unknown split `{other}`"),
                ));
            }
        }
    }
    if train.is_empty() || test.is_empty() {
        return Err(Error::parse(
            &csv_path,
            format!(
                "object `{object}` has {} train and {} test rows; both must be non-empty",
                train.len(),
                test.len()
            ),
        ));
    }
    tracing::debug!(n_train = train.len(), n_test = test.len(), "read VisA split");
    let dataset = Dataset {
        category: object.to_string(),
        root: root.to_path_buf(),
        train,
        test,
        pool: Vec::new(),
        contamination: None,
    };
    dataset.finish(&csv_path)
}

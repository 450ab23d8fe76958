//! Real-IAD: json splits (`realiad_jsons`, `realiad_jsons_sv`, `realiad_jsons_fuiad_{0.0,0.1,0.2,0.4}`)
//! over the image tree `realiad_1024/<category>/`, with 5-view sample groups.

use crate::contamination::ContaminationReport;
use crate::error::{Error, Result};
use crate::sample::{Dataset, Sample, require_file};
use llb_types::{GroupId, Label, SampleId};
use serde::{Deserialize, Serialize};
use std::path::Path;

/// Which Real-IAD json split to read.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RealIadSplit {
    /// `realiad_jsons`: the multi-view split with a clean training set.
    Standard,
    /// `realiad_jsons_sv`: the single-view split.
    SingleView,
    /// `realiad_jsons_fuiad_0.0`: FUIAD, no contamination.
    #[serde(rename = "fuiad-0.0")]
    Fuiad00,
    /// `realiad_jsons_fuiad_0.1`: FUIAD, 10 % of training images anomalous.
    #[serde(rename = "fuiad-0.1")]
    Fuiad01,
    /// `realiad_jsons_fuiad_0.2`: FUIAD, 20 % of training images anomalous.
    #[serde(rename = "fuiad-0.2")]
    Fuiad02,
    /// `realiad_jsons_fuiad_0.4`: FUIAD, 40 % of training images anomalous.
    #[serde(rename = "fuiad-0.4")]
    Fuiad04,
}

impl RealIadSplit {
    /// The folder (next to `realiad_1024`) holding this split's `<category>.json` files.
    pub fn json_folder(self) -> &'static str {
        match self {
            Self::Standard => "realiad_jsons",
            Self::SingleView => "realiad_jsons_sv",
            Self::Fuiad00 => "realiad_jsons_fuiad_0.0",
            Self::Fuiad01 => "realiad_jsons_fuiad_0.1",
            Self::Fuiad02 => "realiad_jsons_fuiad_0.2",
            Self::Fuiad04 => "realiad_jsons_fuiad_0.4",
        }
    }

    /// The nominal fraction of anomalous training images, for FUIAD splits.
    pub fn contamination_ratio(self) -> Option<f64> {
        match self {
            Self::Standard | Self::SingleView => None,
            Self::Fuiad00 => Some(0.0),
            Self::Fuiad01 => Some(0.1),
            Self::Fuiad02 => Some(0.2),
            Self::Fuiad04 => Some(0.4),
        }
    }
}

#[derive(Deserialize)]
struct SplitFile {
    train: Vec<Entry>,
    test: Vec<Entry>,
}

#[derive(Deserialize)]
struct Entry {
    category: String,
    anomaly_class: String,
    image_path: String,
    mask_path: Option<String>,
}

/// Reads one category of Real-IAD under `root`, which holds `realiad_1024/` and the json folders.
///
/// Equivalent to [`read_realiad_json`] with `root/<split folder>/<category>.json` and
/// `root/realiad_1024/<category>`.
///
/// # Errors
/// As [`read_realiad_json`].
pub fn read_realiad(root: &Path, split: RealIadSplit, category: &str) -> Result<Dataset> {
    let json = root.join(split.json_folder()).join(format!("{category}.json"));
    let mut dataset =
        read_realiad_json(&json, &root.join("realiad_1024").join(category), category)?;
    if let Some(requested_ratio) = split.contamination_ratio() {
        let n_train_anomalous = dataset.n_train_anomalous();
        let n_train_normal = dataset.train.len() - n_train_anomalous;
        dataset.contamination = Some(ContaminationReport {
            requested_ratio,
            achieved_ratio: n_train_anomalous as f64 / dataset.train.len() as f64,
            n_train_normal,
            n_train_anomalous,
            seed: None,
        });
    }
    Ok(dataset)
}

/// Reads one Real-IAD split file; image and mask paths in it are relative to `category_dir`
/// (`realiad_1024/<category>`).
///
/// Ids are `<category>/<image_path>`. `anomaly_class` `OK` is [`Label::Normal`], anything else
/// [`Label::Anomalous`] with that defect type. In FUIAD splits the contaminating anomalies sit in
/// `train` with their true class: the label is kept (hidden) for purity reports. Every sample gets
/// its [`GroupId`] from [`realiad_group`].
///
/// # Errors
/// - [`Error::MissingFile`] when the json, an image or a mask is missing (naming the entry);
/// - [`Error::Parse`] for malformed json, an entry of another category, an anomaly without mask,
///   or a file name without the group prefix;
/// - [`Error::DuplicateId`] when two entries name the same image;
/// - [`Error::Empty`] when the training or the test list is empty.
pub fn read_realiad_json(json: &Path, category_dir: &Path, category: &str) -> Result<Dataset> {
    let _span = tracing::info_span!("read_realiad", category).entered();
    require_file(json, || "the Real-IAD layout".to_string())?;
    let text = std::fs::read_to_string(json).map_err(|e| Error::io(json, e))?;
    let file: SplitFile =
        serde_json::from_str(&text).map_err(|e| Error::parse(json, e.to_string()))?;
    let convert = |list: Vec<Entry>, split: &str| -> Result<Vec<Sample>> {
        if list.is_empty() {
            return Err(Error::Empty { path: json.to_path_buf() });
        }
        list.into_iter()
            .enumerate()
            .map(|(i, e)| entry_sample(e, json, category_dir, category, split, i))
            .collect()
    };
    let train = convert(file.train, "train")?;
    let test = convert(file.test, "test")?;
    tracing::debug!(n_train = train.len(), n_test = test.len(), "read Real-IAD split");
    let dataset = Dataset {
        category: category.to_string(),
        root: category_dir.to_path_buf(),
        train,
        test,
        pool: Vec::new(),
        contamination: None,
    };
    dataset.finish(json)
}

fn entry_sample(
    e: Entry,
    json: &Path,
    category_dir: &Path,
    category: &str,
    split: &str,
    i: usize,
) -> Result<Sample> {
    let at = || format!("{} {split}[{i}]", json.display());
    if e.category != category {
        return Err(Error::parse(
            json,
            format!("{split}[{i}] has category `{}`, expected `{category}`", e.category),
        ));
    }
    let image = category_dir.join(&e.image_path);
    require_file(&image, at)?;
    let mut sample =
        Sample::unlabelled(SampleId::new(format!("{category}/{}", e.image_path)), image.clone());
    sample.group = Some(realiad_group(&image)?);
    if e.anomaly_class == "OK" {
        sample.label = Some(Label::Normal);
    } else {
        let mask_rel = e.mask_path.ok_or_else(|| {
            Error::parse(json, format!("{split}[{i}] is anomalous but has no mask_path"))
        })?;
        let mask = category_dir.join(mask_rel);
        require_file(&mask, at)?;
        sample.label = Some(Label::Anomalous);
        sample.defect_type = Some(e.anomaly_class);
        sample.mask_path = Some(mask);
    }
    Ok(sample)
}

/// The physical-sample group of a Real-IAD image: the file-name prefix
/// `<category>_<4 digits>_<status>` before `_C<view>_` (e.g. `audiojack_0001_OK` for
/// `audiojack_0001_OK_C2_20231021130200.jpg`).
///
/// # Errors
/// [`Error::Parse`] naming the file when its name does not have that shape.
pub fn realiad_group(path: &Path) -> Result<GroupId> {
    let bad = |why: &str| {
        Error::parse(
            path,
            format!("file name is not `<category>_<4 digits>_<status>_C<view>_...`: {why}"),
        )
    };
    let name = path.file_name().and_then(|n| n.to_str()).ok_or_else(|| bad("not UTF-8"))?;
    let bytes = name.as_bytes();
    let cut = (0..bytes.len())
        .find(|&i| {
            let digits = bytes[i..].iter().skip(2).take_while(|b| b.is_ascii_digit()).count();
            bytes[i..].starts_with(b"_C") && digits > 0 && bytes.get(i + 2 + digits) == Some(&b'_')
        })
        .ok_or_else(|| bad("no `_C<view>_`"))?;
    let prefix = &name[..cut];
    let mut parts = prefix.rsplitn(3, '_');
    let (status, number, category) = (parts.next(), parts.next(), parts.next());
    match (status, number, category) {
        (Some(s), Some(n), Some(c))
            if !s.is_empty()
                && !c.is_empty()
                && n.len() == 4
                && n.bytes().all(|b| b.is_ascii_digit()) =>
        {
            Ok(GroupId::new(prefix))
        }
        _ => Err(bad("prefix before `_C<view>_` is not `<category>_<4 digits>_<status>`")),
    }
}

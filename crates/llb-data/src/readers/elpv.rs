//! ELPV: electroluminescence images of solar cells (`images/cellNNNN.png`, 300×300 grey) with
//! `labels.csv` (whitespace separated, no header: image path, defect probability, cell type),
//! split at random, keyed to the file ids, into a fixed test set, a normal training set and a
//! pool of defective cells for contamination.

use crate::error::{Error, Result};
use crate::sample::{Dataset, Sample, require_file, seeded_key};
use llb_types::{Label, SampleId};
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;
use std::fmt;
use std::path::Path;

/// The solar-cell technology of a cell: ELPV's third column, and the category of an ELPV
/// [`Dataset`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ElpvCellType {
    /// Monocrystalline cells (1,074 images).
    Mono,
    /// Polycrystalline cells (1,550 images).
    Poly,
}

impl ElpvCellType {
    /// Both types, in name order.
    pub const ALL: [ElpvCellType; 2] = [ElpvCellType::Mono, ElpvCellType::Poly];

    /// The name in `labels.csv` and of the category: `mono` or `poly`.
    pub fn name(self) -> &'static str {
        match self {
            Self::Mono => "mono",
            Self::Poly => "poly",
        }
    }

    /// The type named `name` (`mono` or `poly`), if any.
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|t| t.name() == name)
    }
}

impl fmt::Display for ElpvCellType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Where the mildly defective cells (defect probability 1/3 or 2/3) go.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ElpvMild {
    /// Left out of the data set.
    Exclude,
    /// Added to the test set as anomalies of defect type `mild`.
    Test,
    /// Added to the pool as anomalies of defect type `mild`, so contamination may draw them.
    Pool,
}

/// How one ELPV category is split.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ElpvConfig {
    /// The cell type read.
    pub category: ElpvCellType,
    /// Seed of the random split (keyed to the file ids).
    pub split_seed: u64,
    /// Normal cells (probability 0) in the test set.
    pub n_test_normal: usize,
    /// Defective cells (probability 1) in the test set; the other defective cells form the pool.
    pub n_test_anomalous: usize,
    /// Normal cells in the training set; `None` takes all normals not in the test set.
    pub n_train_normal: Option<usize>,
    /// Where the cells of probability 1/3 and 2/3 go.
    pub mild: ElpvMild,
}

impl ElpvConfig {
    /// The split used by llb's benchmark v2 (this project's choice, not from the ELPV papers):
    /// seed 0, 100 normal and 100 defective test cells, 300 normal training cells, mild cells
    /// left out. 300 training normals keep α = 0.4 within reach of the pool in both categories
    /// (round(0.4·300/0.6) = 200 draws; the pool holds 213 mono and 302 poly cells).
    pub fn llb_v2(category: ElpvCellType) -> Self {
        Self {
            category,
            split_seed: 0,
            n_test_normal: 100,
            n_test_anomalous: 100,
            n_train_normal: Some(300),
            mild: ElpvMild::Exclude,
        }
    }
}

/// One line of `labels.csv`.
#[derive(Clone, Debug, PartialEq)]
pub struct ElpvCell {
    /// The image path relative to the data folder, e.g. `images/cell0001.png`; the sample id.
    pub id: SampleId,
    /// The defect probability assessed by experts: 0, 1/3, 2/3 or 1.
    pub defect_probability: f64,
    /// The cell type.
    pub cell_type: ElpvCellType,
    /// The 1-based line of `labels.csv` it came from.
    pub line: usize,
}

/// Reads `root/labels.csv`.
///
/// # Errors
/// - [`Error::MissingFile`] when `labels.csv` is missing;
/// - [`Error::Parse`] naming the line for a line without three fields, a path that is absolute
///   or leaves the folder, a probability other than 0, 1/3, 2/3 or 1, or an unknown cell type;
/// - [`Error::DuplicateId`] when two lines name the same image.
pub fn read_elpv_labels(root: &Path) -> Result<Vec<ElpvCell>> {
    let csv = root.join("labels.csv");
    require_file(&csv, || "the ELPV layout (labels.csv next to images/)".to_string())?;
    let text = std::fs::read_to_string(&csv).map_err(|e| Error::io(&csv, e))?;
    let mut cells = Vec::new();
    let mut seen = BTreeSet::new();
    for (n, line) in text.trim_start_matches('\u{feff}').lines().enumerate() {
        let line_no = n + 1;
        let fields: Vec<&str> = line.split_whitespace().collect();
        if fields.is_empty() {
            continue;
        }
        let bad = |what: String| Error::parse(&csv, format!("line {line_no}: {what}"));
        let [path, probability, cell_type] = fields[..] else {
            return Err(bad(format!(
                "expected 3 whitespace-separated fields (path, defect probability, cell type), got {}",
                fields.len()
            )));
        };
        if path.starts_with('/') || path.split('/').any(|p| p.is_empty() || p == "..") {
            return Err(bad(format!("image path `{path}` is not relative to the data folder")));
        }
        let value: f64 = probability
            .parse()
            .map_err(|_| bad(format!("defect probability `{probability}` is not a number")))?;
        if ![0.0, 1.0 / 3.0, 2.0 / 3.0, 1.0].iter().any(|p| (value - p).abs() < 1e-6) {
            return Err(bad(format!(
                "defect probability `{probability}` is not one of 0, 1/3, 2/3, 1"
            )));
        }
        let cell_type = ElpvCellType::from_name(cell_type).ok_or_else(|| {
            bad(format!("unknown cell type `{cell_type}` (expected mono or poly)"))
        })?;
        let id = SampleId::new(path);
        if !seen.insert(id.clone()) {
            return Err(Error::DuplicateId { id, origin: csv });
        }
        cells.push(ElpvCell { id, defect_probability: value, cell_type, line: line_no });
    }
    if cells.is_empty() {
        return Err(Error::parse(&csv, "no labelled cells"));
    }
    Ok(cells)
}

/// Reads one cell type of ELPV from `root` (the folder holding `labels.csv` and `images/`) and
/// splits it at random, keyed to the file ids and `split_seed` (never by file order:
/// neighbouring files are cells of one module):
/// - test: `n_test_normal` normal cells (probability 0) and `n_test_anomalous` defective cells
///   (probability 1), plus the mild cells with [`ElpvMild::Test`];
/// - train: `n_train_normal` (or all remaining) normal cells, labelled normal (hidden);
/// - pool ([`Dataset::pool`]): the remaining defective cells, plus the mild cells with
///   [`ElpvMild::Pool`].
///
/// Cells are ranked by the first 8 bytes of SHA-256(`llb-elpv-split`, seed, id), so a split does
/// not depend on the order of `labels.csv`, and a larger count takes a superset. Ids are the paths in
/// `labels.csv` (e.g. `images/cell0001.png`); defective cells have defect type `defect` (ELPV
/// has no types), mild ones `mild`; there are no masks and no groups.
///
/// # Errors
/// - as [`read_elpv_labels`];
/// - [`Error::MissingFile`] naming the `labels.csv` line of an image that does not exist;
/// - [`Error::Config`] when the category has fewer normal or defective cells than asked for.
pub fn read_elpv(root: &Path, config: &ElpvConfig) -> Result<Dataset> {
    let _span = tracing::info_span!("read_elpv", category = %config.category).entered();
    let csv = root.join("labels.csv");
    let cells: Vec<ElpvCell> =
        read_elpv_labels(root)?.into_iter().filter(|c| c.cell_type == config.category).collect();
    let sample = |cell: &ElpvCell, defect: Option<&str>| -> Result<Sample> {
        let path = cell.id.as_str().split('/').fold(root.to_path_buf(), |p, part| p.join(part));
        require_file(&path, || format!("{} line {}", csv.display(), cell.line))?;
        let mut s = Sample::unlabelled(cell.id.clone(), path);
        s.label = Some(if defect.is_some() { Label::Anomalous } else { Label::Normal });
        s.defect_type = defect.map(str::to_string);
        Ok(s)
    };
    let ranked = |keep: &dyn Fn(f64) -> bool| -> Vec<&ElpvCell> {
        let mut list: Vec<&ElpvCell> =
            cells.iter().filter(|c| keep(c.defect_probability)).collect();
        list.sort_by_cached_key(|c| {
            (seeded_key("llb-elpv-split", config.split_seed, &c.id), c.id.clone())
        });
        list
    };
    let normals = ranked(&|p| p < 1e-6);
    let defects = ranked(&|p| p > 1.0 - 1e-6);
    let mild = ranked(&|p| p > 1e-6 && p < 1.0 - 1e-6);
    let n_train =
        config.n_train_normal.unwrap_or(normals.len().saturating_sub(config.n_test_normal));
    if config.n_test_normal + n_train > normals.len() {
        return Err(Error::config(
            "n_test_normal + n_train_normal",
            config.n_test_normal + n_train,
            format!("at most the {} normal {} cells", normals.len(), config.category),
        ));
    }
    if config.n_test_anomalous > defects.len() {
        return Err(Error::config(
            "n_test_anomalous",
            config.n_test_anomalous,
            format!("at most the {} defective {} cells", defects.len(), config.category),
        ));
    }
    let (test_normals, rest) = normals.split_at(config.n_test_normal);
    let (test_defects, pool_defects) = defects.split_at(config.n_test_anomalous);
    let mut test = Vec::new();
    for cell in test_normals {
        test.push(sample(cell, None)?);
    }
    for cell in test_defects {
        test.push(sample(cell, Some("defect"))?);
    }
    let train = rest[..n_train].iter().map(|c| sample(c, None)).collect::<Result<Vec<_>>>()?;
    let mut pool =
        pool_defects.iter().map(|c| sample(c, Some("defect"))).collect::<Result<Vec<_>>>()?;
    let mild_samples = || mild.iter().map(|c| sample(c, Some("mild"))).collect::<Result<Vec<_>>>();
    match config.mild {
        ElpvMild::Exclude => {}
        ElpvMild::Test => test.extend(mild_samples()?),
        ElpvMild::Pool => pool.extend(mild_samples()?),
    }
    tracing::debug!(n_train = train.len(), n_test = test.len(), n_pool = pool.len(), "read ELPV");
    let dataset = Dataset {
        category: config.category.name().to_string(),
        root: root.to_path_buf(),
        train,
        test,
        pool,
        contamination: None,
    };
    dataset.finish(&csv)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    /// `labels.csv` of a tiny tree: per cell type, 12 normal, 2 + 1 mild and 8 defective cells,
    /// interleaved like the real file.
    fn labels() -> String {
        let mut text = String::new();
        for i in 0..46 {
            let cell_type = if i % 2 == 0 { "mono" } else { "poly" };
            let probability = match i / 2 {
                0..12 => "0.0",
                12 | 13 => "0.3333333333333333",
                14 => "0.6666666666666666",
                _ => "1.0",
            };
            text.push_str(&format!("images/cell{:04}.png  {probability}  {cell_type}\n", i + 1));
        }
        text
    }

    fn tree(text: &str) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("images")).unwrap();
        std::fs::write(dir.path().join("labels.csv"), text).unwrap();
        for i in 0..46 {
            let path = dir.path().join(format!("images/cell{:04}.png", i + 1));
            image::GrayImage::from_pixel(8, 8, image::Luma([i as u8])).save(path).unwrap();
        }
        dir
    }

    fn config(n_train_normal: Option<usize>, mild: ElpvMild) -> ElpvConfig {
        ElpvConfig {
            category: ElpvCellType::Mono,
            split_seed: 3,
            n_test_normal: 4,
            n_test_anomalous: 3,
            n_train_normal,
            mild,
        }
    }

    fn ids(samples: &[Sample]) -> BTreeSet<String> {
        samples.iter().map(|s| s.id.to_string()).collect()
    }

    /// Checks the error of reading a tree with `text` as labels.csv contains `expected`.
    fn check_err(text: &str, expected: &str) {
        let dir = tree(text);
        let err = read_elpv(dir.path(), &config(None, ElpvMild::Exclude)).unwrap_err();
        assert!(err.to_string().contains(expected), "`{expected}` missing from: {err}");
        assert!(err.to_string().contains("labels.csv"), "{err}");
    }

    #[test]
    fn split_has_the_asked_counts_labels_and_types() {
        let dir = tree(&labels());
        let d = read_elpv(dir.path(), &config(None, ElpvMild::Exclude)).unwrap();
        assert_eq!(d.category, "mono");
        assert_eq!((d.train.len(), d.n_train_anomalous()), (8, 0));
        assert_eq!((d.test.len(), d.n_test_anomalous()), (7, 3));
        assert_eq!(d.pool.len(), 5);
        assert!(
            d.pool.iter().all(|s| s.is_anomalous() && s.defect_type.as_deref() == Some("defect"))
        );
        assert!(
            d.train.iter().chain(&d.test).chain(&d.pool).all(|s| {
                let n: usize = s.id.as_str()[11..15].parse().unwrap();
                n % 2 == 1 && s.mask_path.is_none() && s.group.is_none() && s.image_path.is_file()
            }),
            "only odd-numbered (mono) cells, no masks, no groups"
        );
        assert!(ids(&d.train).is_disjoint(&ids(&d.test)));
        assert_eq!(
            d.test[0].image_path,
            dir.path().join("images").join(&d.test[0].id.as_str()[7..])
        );
        let some_train = read_elpv(dir.path(), &config(Some(5), ElpvMild::Exclude)).unwrap();
        assert!(ids(&some_train.train).is_subset(&ids(&d.train)), "a smaller count takes a subset");
        assert_eq!(some_train.test, d.test);
    }

    #[test]
    fn split_is_random_keyed_to_ids_not_to_the_file_order() {
        let dir = tree(&labels());
        let d = read_elpv(dir.path(), &config(None, ElpvMild::Exclude)).unwrap();
        let test_normals: Vec<_> =
            d.test.iter().filter(|s| !s.is_anomalous()).map(|s| s.id.to_string()).collect();
        let first_normals: Vec<_> =
            (0..4).map(|i| format!("images/cell{:04}.png", 2 * i + 1)).collect();
        assert_ne!(test_normals, first_normals, "not the first lines of the file");
        let text = labels();
        let mut reversed: Vec<&str> = text.lines().collect();
        reversed.reverse();
        let shuffled = tree(&reversed.join("\n"));
        let again = read_elpv(shuffled.path(), &config(None, ElpvMild::Exclude)).unwrap();
        assert_eq!(
            (ids(&again.train), ids(&again.test), ids(&again.pool)),
            (ids(&d.train), ids(&d.test), ids(&d.pool))
        );
        let other =
            read_elpv(dir.path(), &ElpvConfig { split_seed: 4, ..config(None, ElpvMild::Exclude) })
                .unwrap();
        assert_ne!(ids(&other.test), ids(&d.test));
    }

    #[test]
    fn mild_cells_go_where_the_config_says() {
        let dir = tree(&labels());
        let count_mild =
            |s: &[Sample]| s.iter().filter(|s| s.defect_type.as_deref() == Some("mild")).count();
        for (mild, in_test, in_pool) in
            [(ElpvMild::Exclude, 0, 0), (ElpvMild::Test, 3, 0), (ElpvMild::Pool, 0, 3)]
        {
            let d = read_elpv(dir.path(), &config(None, mild)).unwrap();
            assert_eq!((count_mild(&d.test), count_mild(&d.pool)), (in_test, in_pool), "{mild:?}");
            assert!(
                d.test
                    .iter()
                    .chain(&d.pool)
                    .filter(|s| count_mild(std::slice::from_ref(*s)) == 1)
                    .all(Sample::is_anomalous)
            );
        }
    }

    #[test]
    fn bad_labels_give_errors_naming_the_file_and_line() {
        let good = labels();
        check_err(&good.replacen("0.0  mono", "0.0  mono  extra", 1), "line 1: expected 3");
        check_err(&good.replacen("0.0  poly", "0.5  poly", 1), "line 2: defect probability `0.5`");
        check_err(
            &good.replacen("0.0  poly", "x  poly", 1),
            "line 2: defect probability `x` is not a number",
        );
        check_err(&good.replacen("poly", "thin-film", 1), "line 2: unknown cell type `thin-film`");
        check_err(
            &good.replacen("images/cell0002.png", "../cell0002.png", 1),
            "line 2: image path",
        );
        check_err(
            &good.replacen("images/cell0003.png", "images/cell0001.png", 1),
            "duplicate sample id images/cell0001.png",
        );
        let missing = good.replacen("images/cell0003.png", "images/cell9999.png", 1);
        let dir = tree(&missing);
        let err = read_elpv(dir.path(), &config(None, ElpvMild::Exclude)).unwrap_err();
        assert!(
            matches!(&err, Error::MissingFile { path, referenced_by } if path.ends_with("cell9999.png") && referenced_by.ends_with("labels.csv line 3")),
            "{err}"
        );
        let empty = tempfile::tempdir().unwrap();
        let err = read_elpv(empty.path(), &config(None, ElpvMild::Exclude)).unwrap_err();
        assert!(
            matches!(&err, Error::MissingFile { path, .. } if path.ends_with("labels.csv")),
            "{err}"
        );
    }

    #[test]
    fn asking_for_more_cells_than_there_are_is_a_config_error() {
        let dir = tree(&labels());
        let err = read_elpv(dir.path(), &config(Some(9), ElpvMild::Exclude)).unwrap_err();
        assert!(
            matches!(&err, Error::Config { field: "n_test_normal + n_train_normal", .. }),
            "{err}"
        );
        let err = read_elpv(
            dir.path(),
            &ElpvConfig { n_test_anomalous: 9, ..config(None, ElpvMild::Exclude) },
        )
        .unwrap_err();
        assert!(err.to_string().contains("at most the 8 defective mono cells"), "{err}");
    }

    #[test]
    fn config_round_trips_through_json_and_rejects_unknown_fields() {
        let preset = ElpvConfig::llb_v2(ElpvCellType::Poly);
        let json = serde_json::to_string(&preset).unwrap();
        assert!(
            json.contains(r#""category":"poly""#) && json.contains(r#""mild":"exclude""#),
            "{json}"
        );
        assert_eq!(serde_json::from_str::<ElpvConfig>(&json).unwrap(), preset);
        let extra = json.replacen('{', r#"{"threshold":0.5,"#, 1);
        assert!(
            serde_json::from_str::<ElpvConfig>(&extra)
                .unwrap_err()
                .to_string()
                .contains("threshold")
        );
    }
}

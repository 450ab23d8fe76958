//! `llb metrics`: image metrics from a CSV of scores, pixel metrics from a folder of `.npy`
//! anomaly maps and PNG masks, printed as one JSON object on stdout.
//!
//! Exit codes: 0 on success, 2 for bad input (unreadable or malformed files, degenerate labels;
//! the message names the file), 1 for an internal failure.

use anyhow::Context;
use llb_metrics::{
    BinnedConfig, BinnedPixelEvaluator, ExactPixelEvaluator, ImageMetrics, PixelEvaluator,
    sample_scores,
};
use llb_types::GroupId;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use crate::npy::read_npy;

/// Arguments of `llb metrics`.
#[derive(Debug, clap::Args)]
#[command(group(clap::ArgGroup::new("input").required(true).multiple(true).args(["image_scores", "maps"])))]
pub(crate) struct MetricsArgs {
    /// CSV with a header and columns `id,label,score` (label 0 normal, 1 anomalous; higher score
    /// = more anomalous): prints `i_auroc`, `i_ap`, `i_f1max`. With an extra `group` column
    /// (the physical sample of each view) it also prints `s_auroc`, `s_ap`, `s_f1max` on
    /// per-sample scores (max over views).
    #[arg(long, value_name = "FILE.csv")]
    image_scores: Option<PathBuf>,
    /// Folder of anomaly maps, one float32 2-D `.npy` (`<f4`, C order) per image: prints
    /// `p_auroc`, `p_ap`, `p_f1max`, `p_aupro`, computed at the maps' resolution.
    #[arg(long, value_name = "DIR", requires = "masks")]
    maps: Option<PathBuf>,
    /// Folder of ground-truth PNG masks named like the maps (`<stem>.png`; non-zero =
    /// anomalous). A missing mask means an all-normal image.
    #[arg(long, value_name = "DIR", requires = "maps")]
    masks: Option<PathBuf>,
    /// Use the streaming evaluator with this many histogram bins (memory independent of the
    /// number of maps) instead of the exact one, which sorts every pixel.
    #[arg(long, value_name = "N", requires = "maps")]
    bins: Option<usize>,
    /// Lower end of the histogram (with `--max-score`); by default a first pass over the maps
    /// finds the smallest score.
    #[arg(long, requires_all = ["bins", "max_score"], allow_hyphen_values = true)]
    min_score: Option<f64>,
    /// Upper end of the histogram (with `--min-score`); by default the largest score.
    #[arg(long, requires_all = ["bins", "min_score"], allow_hyphen_values = true)]
    max_score: Option<f64>,
}

/// A problem with the user's files or data: exit code 2.
#[derive(Debug)]
pub(crate) struct BadInput(String);

impl std::fmt::Display for BadInput {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for BadInput {}

pub(crate) fn bad(message: impl Into<String>) -> anyhow::Error {
    anyhow::Error::new(BadInput(message.into()))
}

/// Runs `llb metrics`, prints the JSON object or the error, and returns the exit code (the
/// caller installs the logger).
#[allow(clippy::print_stderr, reason = "a command line reports its errors on stderr")]
pub(crate) fn main(args: &MetricsArgs) -> ExitCode {
    match run(args) {
        Ok(json) => {
            println!("{json}");
            ExitCode::SUCCESS
        }
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::from(exit_status(&err))
        }
    }
}

/// 2 when any error in the chain is bad input, else 1.
fn exit_status(err: &anyhow::Error) -> u8 {
    if err.chain().any(|e| e.is::<BadInput>()) { 2 } else { 1 }
}

/// Computes the requested metrics as one JSON object.
fn run(args: &MetricsArgs) -> anyhow::Result<serde_json::Value> {
    let mut out = serde_json::Map::new();
    if let Some(csv) = &args.image_scores {
        let table = read_image_scores(csv)?;
        let in_csv = |e: llb_metrics::Error| bad(format!("{}: {e}", csv.display()));
        let m = ImageMetrics::exact(&table.scores, &table.labels).map_err(in_csv)?;
        out.insert("i_auroc".into(), m.auroc.into());
        out.insert("i_ap".into(), m.ap.into());
        out.insert("i_f1max".into(), m.f1max.into());
        if let Some(groups) = &table.groups {
            let samples = sample_scores(groups, &table.scores, &table.labels).map_err(in_csv)?;
            let m = ImageMetrics::exact(&samples.scores, &samples.labels).map_err(in_csv)?;
            out.insert("s_auroc".into(), m.auroc.into());
            out.insert("s_ap".into(), m.ap.into());
            out.insert("s_f1max".into(), m.f1max.into());
        }
    }
    if let (Some(maps), Some(masks)) = (&args.maps, &args.masks) {
        let files = list_maps(maps)?;
        let mut evaluator: Box<dyn PixelEvaluator> = match args.bins {
            None => Box::new(ExactPixelEvaluator::new()),
            Some(n_bins) => {
                let (min_score, max_score) = match (args.min_score, args.max_score) {
                    (Some(min), Some(max)) => (min, max),
                    _ => score_range(&files)?,
                };
                let config = BinnedConfig { n_bins, min_score, max_score };
                Box::new(BinnedPixelEvaluator::new(&config).map_err(|e| bad(e.to_string()))?)
            }
        };
        for file in &files {
            let map = read_npy(file)?;
            let mask = read_mask(masks, file, map.width, map.height)?;
            evaluator
                .add(&map.values, &mask, map.width, map.height)
                .map_err(|e| bad(format!("{}: {e}", file.display())))?;
        }
        let m = evaluator.finish().map_err(|e| bad(format!("{}: {e}", maps.display())))?;
        tracing::info!(n_maps = files.len(), bins = ?args.bins, "pixel metrics");
        out.insert("p_auroc".into(), m.auroc.into());
        out.insert("p_ap".into(), m.ap.into());
        out.insert("p_f1max".into(), m.f1max.into());
        out.insert("p_aupro".into(), m.aupro.into());
    }
    Ok(serde_json::Value::Object(out))
}

/// The rows of an image-score CSV.
#[derive(Debug)]
pub(crate) struct ImageScores {
    scores: Vec<f32>,
    labels: Vec<bool>,
    /// The `group` column, when the file has one.
    groups: Option<Vec<GroupId>>,
}

/// Reads `id,label,score[,group]` rows (columns found by header name, in any order).
fn read_image_scores(path: &Path) -> anyhow::Result<ImageScores> {
    let bytes = std::fs::read(path).map_err(|e| bad(format!("reading {}: {e}", path.display())))?;
    parse_image_scores(&bytes, &path.display().to_string())
}

/// Parses image-score CSV text (RFC 4180: quoted fields may hold commas, quotes and line
/// breaks); `name` names the source in errors.
pub(crate) fn parse_image_scores(bytes: &[u8], name: &str) -> anyhow::Result<ImageScores> {
    let mut reader =
        csv::ReaderBuilder::new().trim(csv::Trim::All).flexible(true).from_reader(bytes);
    let header = reader.headers().map_err(|e| bad(format!("{name}: {e}")))?.clone();
    if header.iter().all(str::is_empty) {
        return Err(bad(format!("{name}: empty file")));
    }
    let columns: Vec<&str> = header.iter().collect();
    let column = |wanted: &str| {
        columns.iter().position(|c| *c == wanted).ok_or_else(|| {
            let header = columns.join(",");
            bad(format!("{name}: header `{header}` lacks column `{wanted}` (need id,label,score)"))
        })
    };
    let (id_col, label_col, score_col) = (column("id")?, column("label")?, column("score")?);
    let group_col = columns.iter().position(|c| *c == "group");
    let (mut scores, mut labels, mut groups) = (Vec::new(), Vec::new(), Vec::new());
    let mut seen = std::collections::BTreeSet::new();
    for record in reader.records() {
        let record = record.map_err(|e| bad(format!("{name}: {e}")))?;
        let at = || format!("{name}:{}", record.position().map_or(0, |p| p.line()));
        if record.len() != columns.len() {
            return Err(bad(format!(
                "{}: {} fields, header has {}",
                at(),
                record.len(),
                columns.len()
            )));
        }
        let id = &record[id_col];
        if !seen.insert(id.to_string()) {
            return Err(bad(format!("{}: duplicate id `{id}`", at())));
        }
        labels.push(match &record[label_col] {
            "0" => false,
            "1" => true,
            other => return Err(bad(format!("{}: label `{other}` is not 0 or 1", at()))),
        });
        let raw = &record[score_col];
        match raw.parse::<f32>() {
            Ok(score) if score.is_finite() => scores.push(score),
            _ => return Err(bad(format!("{}: score `{raw}` is not a finite number", at()))),
        }
        if let Some(col) = group_col {
            groups.push(GroupId::new(&record[col]));
        }
    }
    Ok(ImageScores { scores, labels, groups: group_col.map(|_| groups) })
}

/// The `.npy` files of a folder, sorted by name.
fn list_maps(dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let entries =
        std::fs::read_dir(dir).map_err(|e| bad(format!("listing {}: {e}", dir.display())))?;
    let mut files = Vec::new();
    for entry in entries {
        let path = entry.map_err(|e| bad(format!("listing {}: {e}", dir.display())))?.path();
        if path.extension().is_some_and(|e| e == "npy") {
            files.push(path);
        }
    }
    if files.is_empty() {
        return Err(bad(format!("{}: no .npy anomaly maps", dir.display())));
    }
    files.sort();
    Ok(files)
}

/// Smallest and largest score over all maps (the streaming evaluator's first pass).
fn score_range(files: &[PathBuf]) -> anyhow::Result<(f64, f64)> {
    let (mut min, mut max) = (f32::INFINITY, f32::NEG_INFINITY);
    for file in files {
        let map = read_npy(file)?;
        if let Some(i) = map.values.iter().position(|v| !v.is_finite()) {
            let value = map.values[i];
            return Err(bad(format!(
                "{}: value {value} at index {i} is not finite",
                file.display()
            )));
        }
        for &v in &map.values {
            min = min.min(v);
            max = max.max(v);
        }
    }
    // A constant map still needs a non-empty range.
    let (min, max) = (f64::from(min), f64::from(max));
    Ok(if min < max { (min, max) } else { (min - 0.5, max + 0.5) })
}

/// The mask for `map_file` (`<stem>.png` in `dir`), or all-normal when there is none.
fn read_mask(
    dir: &Path,
    map_file: &Path,
    width: usize,
    height: usize,
) -> anyhow::Result<Vec<bool>> {
    let stem = map_file.file_stem().context("a listed map has a file name")?;
    let path = dir.join(stem).with_extension("png");
    if !path.exists() {
        return Ok(vec![false; width * height]);
    }
    let image = llb_data::decode_image(&path).map_err(|e| bad(format!("reading mask: {e}")))?;
    let (w, h) = (image.width() as usize, image.height() as usize);
    if (w, h) != (width, height) {
        return Err(bad(format!(
            "mask {} is {w}×{h} but map {} is {width}×{height}",
            path.display(),
            map_file.display()
        )));
    }
    Ok(image.into_luma16().into_raw().into_iter().map(|v| v != 0).collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::npy::npy_bytes;

    fn write(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
        let path = dir.join(name);
        std::fs::write(&path, bytes).unwrap();
        path
    }

    fn args(dir: &Path, bins: Option<usize>) -> MetricsArgs {
        MetricsArgs {
            image_scores: None,
            maps: Some(dir.join("maps")),
            masks: Some(dir.join("masks")),
            bins,
            min_score: None,
            max_score: None,
        }
    }

    #[test]
    fn csv_rows_are_read_and_bad_rows_named() {
        let dir = tempfile::tempdir().unwrap();
        let ok = write(dir.path(), "ok.csv", b"score,id,label\n0.5,a,0\n0.9,b,1\n\n0.1,c,0\n");
        let table = read_image_scores(&ok).unwrap();
        assert_eq!(table.scores, [0.5, 0.9, 0.1]);
        assert_eq!(table.labels, [false, true, false]);
        assert!(table.groups.is_none());
        let cases: [(&[u8], &str); 5] = [
            (b"id,label,score\na,0,0.5\nb,2,0.1\n", "bad.csv:3: label `2`"),
            (b"id,label,score\na,0,nan\n", "bad.csv:2: score `nan`"),
            (b"id,label,score\na,0\n", "bad.csv:2: 2 fields"),
            (b"id,score\na,0.1\n", "lacks column `label`"),
            (b"id,label,score\na,0,0.1\na,1,0.2\n", "duplicate id `a`"),
        ];
        for (text, expected) in cases {
            let path = write(dir.path(), "bad.csv", text);
            let err = read_image_scores(&path).unwrap_err();
            assert!(format!("{err:#}").contains(expected), "{err:#}");
            assert_eq!(exit_status(&err), 2);
        }
    }

    #[test]
    fn a_group_column_adds_sample_metrics() {
        let dir = tempfile::tempdir().unwrap();
        // Sample s1 (normal) peaks at 0.6; s2 (one defective view) peaks at 0.5: S-AUROC 0.
        let csv = "id,group,label,score\na,s1,0,0.6\nb,s1,0,0.1\nc,s2,0,0.2\nd,s2,1,0.5\n";
        let path = write(dir.path(), "views.csv", csv.as_bytes());
        let args = MetricsArgs { image_scores: Some(path), ..args(dir.path(), None) };
        let json = run(&MetricsArgs { maps: None, masks: None, ..args }).unwrap();
        assert_eq!(json["s_auroc"], 0.0);
        assert_eq!(json["i_auroc"], 2.0 / 3.0);
    }

    #[test]
    fn maps_and_masks_give_pixel_metrics_exact_and_binned() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("maps")).unwrap();
        std::fs::create_dir_all(dir.path().join("masks")).unwrap();
        write(
            &dir.path().join("maps"),
            "a.npy",
            &npy_bytes("<f4", "(2, 2)", &[0.1, 0.9, 0.2, 0.3]),
        );
        write(
            &dir.path().join("maps"),
            "b.npy",
            &npy_bytes("<f4", "(2, 2)", &[0.1, 0.2, 0.3, 0.4]),
        );
        let mask = image::GrayImage::from_raw(2, 2, vec![0, 255, 0, 0]).unwrap();
        mask.save(dir.path().join("masks/a.png")).unwrap();
        for bins in [None, Some(100)] {
            let json = run(&args(dir.path(), bins)).unwrap();
            let mut keys: Vec<&String> = json.as_object().unwrap().keys().collect();
            keys.sort();
            assert_eq!(keys, ["p_ap", "p_aupro", "p_auroc", "p_f1max"]);
            assert_eq!(json["p_auroc"], 1.0, "{bins:?}");
            assert_eq!(json["p_aupro"], 1.0, "{bins:?}");
        }
        let small = image::GrayImage::from_raw(1, 1, vec![255]).unwrap();
        small.save(dir.path().join("masks/b.png")).unwrap();
        let err = run(&args(dir.path(), None)).unwrap_err();
        assert!(format!("{err:#}").contains("b.png is 1×1"), "{err:#}");
        assert_eq!(exit_status(&err), 2);
        write(&dir.path().join("maps"), "b.npy", &npy_bytes("<i4", "(2, 2)", &[0.0; 4]));
        let err = run(&args(dir.path(), None)).unwrap_err();
        assert!(format!("{err:#}").contains("b.npy: dtype '<i4'"), "{err:#}");
    }

    #[test]
    fn internal_failures_exit_with_1() {
        assert_eq!(exit_status(&anyhow::anyhow!("broken pipe")), 1);
    }
}

//! The grid of an experiment as data: every (data set, category, α, seed) cell in manifest order
//! with its planned rows and their keys, and the results assembled from rows found by key. One
//! process, a resumed run and a merge of shard logs all write `<name>.json` through
//! [`assemble`], so their files are the same bytes whenever their rows are.

use super::dataset::DatasetSpec;
use super::log::{log_paths, read_rows};
use super::manifest::Manifest;
use super::run::{Cell, Planned, ResultRow, plan};
use std::collections::BTreeMap;
use std::path::Path;

/// One cell of the grid with its planned rows, each with its resume key.
pub(crate) struct GridCell<'a> {
    /// Data set, category, α and seed.
    pub(crate) cell: Cell<'a>,
    /// SHA-256 of the cell's content (data set, category, α, seed): the shard assignment key.
    pub(crate) key: String,
    /// The rows, in table order, with their keys.
    pub(crate) planned: Vec<(Planned, String)>,
}

/// Every cell of `manifest`, in manifest order: data sets, their categories, seeds, ratios.
pub(crate) fn grid<'a>(
    manifest: &'a Manifest,
    categories: &'a [(&'a DatasetSpec, String)],
) -> anyhow::Result<Vec<GridCell<'a>>> {
    let mut cells = Vec::new();
    for (dataset, category) in categories {
        for &seed in &manifest.seeds {
            for &ratio in &manifest.contamination_ratios {
                let cell = Cell { manifest, dataset, category, ratio, seed };
                let description = serde_json::json!({
                    "cell_format": 1,
                    "dataset": dataset,
                    "category": category,
                    "contamination_ratio": ratio,
                    "seed": seed,
                });
                let key =
                    llb_types::sha256::sha256_hex(serde_json::to_string(&description)?.as_bytes());
                let planned = plan(manifest, ratio, seed)
                    .into_iter()
                    .map(|p| {
                        let key = cell.key(&p.settings)?;
                        Ok((p, key))
                    })
                    .collect::<anyhow::Result<_>>()?;
                cells.push(GridCell { cell, key, planned });
            }
        }
    }
    Ok(cells)
}

/// The rows of every log of manifest `name` in `out` (see [`log_paths`]) by key; the first row
/// read wins, so the choice among rows computed twice does not depend on directory order.
pub(crate) fn read_logs(out: &Path, name: &str) -> anyhow::Result<BTreeMap<String, ResultRow>> {
    let mut done = BTreeMap::new();
    for path in log_paths(out, name)? {
        for row in read_rows(&path)? {
            done.entry(row.key.clone()).or_insert(row);
        }
    }
    Ok(done)
}

/// The results' rows in table order, each found by key and labelled as planned (rows with equal
/// settings share one computation), or an error naming the missing rows.
pub(crate) fn assemble(
    grid: &[GridCell<'_>],
    done: &BTreeMap<String, ResultRow>,
) -> anyhow::Result<Vec<ResultRow>> {
    let mut rows = Vec::new();
    let mut missing = Vec::new();
    for cell in grid {
        for (planned, key) in &cell.planned {
            match done.get(key) {
                Some(row) => rows.push(ResultRow {
                    method: planned.method.clone(),
                    ablation: planned.ablation.clone(),
                    ..row.clone()
                }),
                None => missing.push(format!(
                    "{} α={} seed={} {}{}",
                    cell.cell.category,
                    cell.cell.ratio,
                    cell.cell.seed,
                    planned.method,
                    planned.ablation.as_ref().map_or(String::new(), |a| format!(" [{a}]"))
                )),
            }
        }
    }
    if !missing.is_empty() {
        let shown = missing.iter().take(5).cloned().collect::<Vec<_>>().join("; ");
        anyhow::bail!(
            "{} of {} rows are in no log (e.g. {shown}): run the shards that hold them",
            missing.len(),
            missing.len() + rows.len()
        );
    }
    Ok(rows)
}

//! What the review page shows, as the JSON its script reads: the stage-1 verdicts, scores and
//! rules, the histogram, the borderline band, purity figures and the thumbnails' names.
//!
//! Rows are ordered by fused score, most suspicious first (ties by id); row `i`'s thumbnails
//! are `review/img/{i:05}.jpg` and `review/heat/{i:05}.jpg`. Keys are short because a page
//! carries one row per training image (10,000 rows ≈ 2 MB).

use super::thumbs::HeatScale;
use llb_data::Sample;
use llb_purify::{
    Decision, Decisions, Histogram, HistogramBin, Purification, PurityReport, ScoreTable, Selection,
};
use llb_types::{Label, SampleId};
use serde::Serialize;
use std::collections::BTreeMap;

/// Everything the review page is made from.
pub(crate) struct ReviewInput<'a> {
    /// What was screened (data-set category or folder).
    pub(crate) title: String,
    /// The detector of the sub-models, e.g. `patchcore`.
    pub(crate) detector: String,
    /// Every training image scored by every sub-model.
    pub(crate) table: &'a ScoreTable,
    /// Fused scores and the final selection (after any decisions).
    pub(crate) purification: &'a Purification,
    /// The selection rule's own verdicts (before decisions).
    pub(crate) rule_selection: &'a Selection,
    /// Decisions applied to this fit, if any.
    pub(crate) decisions: Option<&'a Decisions>,
    /// The training samples (paths, hidden labels, defect types).
    pub(crate) samples: &'a [Sample],
}

/// The page's data (serialised into it).
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct ReviewData {
    pub(crate) title: String,
    pub(crate) detector: String,
    pub(crate) models: Vec<String>,
    pub(crate) fusion: String,
    /// The selection rule (as configured).
    pub(crate) selection: String,
    pub(crate) cut: f32,
    pub(crate) n: usize,
    pub(crate) n_kept: usize,
    pub(crate) n_dropped: usize,
    /// Images scored by at least one sub-model that did not train on them.
    pub(crate) n_eligible: usize,
    /// The fewest out-of-subset sub-models any image had.
    pub(crate) min_out_of_subset: usize,
    /// The borderline band `[lo, hi]` of fused scores around the cut, and its size.
    pub(crate) band: [f32; 2],
    pub(crate) band_size: usize,
    /// Colour scale of the heat maps, `None` when no map was kept.
    pub(crate) heat: Option<HeatScale>,
    /// Why some images have no heat map, if any.
    pub(crate) maps_note: Option<String>,
    pub(crate) hist: Vec<HistogramBin>,
    pub(crate) purity: Option<PurityReport>,
    /// The decisions file applied to this fit and its size.
    pub(crate) decisions: Option<(String, usize)>,
    /// A fingerprint of the rows, naming the page's saved decisions in the browser.
    pub(crate) key: String,
    pub(crate) rows: Vec<Row>,
}

/// One training image.
#[derive(Serialize)]
pub(crate) struct Row {
    /// Sample id.
    pub(crate) id: String,
    /// Fused score.
    pub(crate) f: f32,
    /// 1 when the final model trains on it.
    pub(crate) k: u8,
    /// 1 when the selection rule kept it.
    pub(crate) r: u8,
    /// The decision applied to it, if any.
    pub(crate) d: Option<Decision>,
    /// `[score, 1 if in-subset]` per sub-model.
    pub(crate) s: Vec<(f32, u8)>,
    /// Hidden label: 1 anomalous, 0 normal.
    pub(crate) l: Option<u8>,
    /// Defect type of an anomalous image.
    pub(crate) t: Option<String>,
    /// 1 when in the borderline band.
    pub(crate) b: u8,
    /// 1 when the thumbnail / heat map exists (set once written).
    pub(crate) img: u8,
    pub(crate) heat: u8,
}

impl ReviewData {
    /// The page's data, rows most suspicious first; thumbnail flags start at 0.
    pub(crate) fn new(input: &ReviewInput<'_>, heat: Option<HeatScale>) -> anyhow::Result<Self> {
        let fused = &input.purification.fused;
        let selection = &input.purification.selection;
        let rule_kept: std::collections::BTreeSet<_> = input.rule_selection.kept.iter().collect();
        let kept: std::collections::BTreeSet<_> = selection.kept.iter().collect();
        let by_id: BTreeMap<&SampleId, &Sample> =
            input.samples.iter().map(|s| (&s.id, s)).collect();
        let labels: BTreeMap<SampleId, Label> =
            input.samples.iter().filter_map(|s| s.label.map(|l| (s.id.clone(), l))).collect();
        let labelled = !labels.is_empty() && labels.len() == input.samples.len();
        let cells: BTreeMap<&SampleId, &[llb_purify::ScoreCell]> = input.table.rows().collect();
        let (band, band_ids) = borderline(fused.iter(), selection.cut);
        let mut order: Vec<usize> = fused.ascending_order();
        order.reverse();
        let rows: Vec<Row> = order
            .iter()
            .map(|&i| {
                let id = &fused.sample_ids()[i];
                let sample = by_id.get(id);
                let label = sample.and_then(|s| s.label);
                Row {
                    id: id.to_string(),
                    f: fused.anomaly_scores()[i],
                    k: kept.contains(id).into(),
                    r: rule_kept.contains(id).into(),
                    d: input.decisions.and_then(|d| d.by_id.get(id).copied()),
                    s: cells
                        .get(id)
                        .map(|c| c.iter().map(|c| (c.anomaly_score, c.in_subset.into())).collect())
                        .unwrap_or_default(),
                    l: label.map(|l| l.is_anomalous().into()),
                    t: sample.and_then(|s| s.defect_type.clone()),
                    b: band_ids.contains(id).into(),
                    img: 0,
                    heat: 0,
                }
            })
            .collect();
        let out_counts = rows.iter().map(|r| r.s.iter().filter(|(_, inside)| *inside == 0).count());
        let n_eligible = out_counts.clone().filter(|&n| n > 0).count();
        let min_out_of_subset = out_counts.min().unwrap_or(0);
        let histogram = Histogram::new(fused, labelled.then_some(&labels), 40)?;
        let purity = if labelled { Some(PurityReport::new(selection, &labels)?) } else { None };
        Ok(Self {
            title: input.title.clone(),
            detector: input.detector.clone(),
            models: input.table.models().to_vec(),
            fusion: fused.rule().to_string(),
            selection: input.rule_selection.rule.clone(),
            cut: selection.cut,
            n: rows.len(),
            n_kept: selection.kept.len(),
            n_dropped: selection.dropped.len(),
            n_eligible,
            min_out_of_subset,
            band,
            band_size: band_ids.len(),
            heat,
            maps_note: None,
            hist: histogram.bins,
            purity,
            decisions: input.decisions.map(|d| (d.source.display().to_string(), d.len())),
            key: fingerprint(&rows),
            rows,
        })
    }
}

/// The borderline band: the `max(10, 5 %)` images whose fused scores lie nearest the cut (ties by
/// id), as its score range and its ids.
fn borderline<'a>(
    scores: impl Iterator<Item = (&'a SampleId, f32)>,
    cut: f32,
) -> ([f32; 2], std::collections::BTreeSet<&'a SampleId>) {
    let mut by_distance: Vec<(f32, &SampleId, f32)> =
        scores.map(|(id, s)| ((s - cut).abs(), id, s)).collect();
    by_distance.sort_by(|a, b| a.0.total_cmp(&b.0).then_with(|| a.1.cmp(b.1)));
    let size = (by_distance.len() / 20).max(10).min(by_distance.len());
    let near = &by_distance[..size];
    let lo = near.iter().map(|n| n.2).fold(cut, f32::min);
    let hi = near.iter().map(|n| n.2).fold(cut, f32::max);
    ([lo, hi], near.iter().map(|n| n.1).collect())
}

/// FNV-1a over the ids, fused-score bits, verdicts and applied decisions, in hex: a refit with
/// decisions gets a new key, so its page starts from the decisions it applied.
fn fingerprint(rows: &[Row]) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for row in rows {
        let decision = row.d.map_or(0, |d| d as u8 + 1);
        let tail = [row.k, row.r, decision];
        for b in row.id.bytes().chain(row.f.to_bits().to_le_bytes()).chain(tail) {
            h = (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3);
        }
    }
    format!("{h:016x}")
}

/// The heat maps' colour scale, one for the whole page: red at the screening score, in map
/// units, of the image at the rule's cut (the mean of its out-of-subset sub-model scores; all of
/// them when none is out of subset), blue at `typical` (the maps' typical level), or at half the
/// red end when `typical` is not below it. `None` when the red end is not positive.
pub(crate) fn heat_scale(
    table: &ScoreTable,
    rule_selection: &Selection,
    typical: Option<f32>,
) -> Option<HeatScale> {
    let at_cut = rule_selection.kept.last()?;
    let (_, cells) = table.rows().find(|(id, _)| *id == at_cut)?;
    let out: Vec<f32> = cells.iter().filter(|c| !c.in_subset).map(|c| c.anomaly_score).collect();
    let pool: Vec<f32> =
        if out.is_empty() { cells.iter().map(|c| c.anomaly_score).collect() } else { out };
    let high = pool.iter().sum::<f32>() / pool.len() as f32;
    let low = typical.filter(|t| t.is_finite() && *t < high).unwrap_or(high / 2.0);
    (high.is_finite() && high > 0.0).then_some(HeatScale { low, high })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_band_holds_the_scores_nearest_the_cut() {
        let ids: Vec<SampleId> = (0..40).map(|i| SampleId::new(format!("{i:02}"))).collect();
        let scores: Vec<f32> = (0..40).map(|i| i as f32).collect();
        let (band, members) = borderline(ids.iter().zip(scores.iter().copied()), 20.0);
        assert_eq!(members.len(), 10);
        assert_eq!(band, [15.0, 24.0]);
        assert!(members.contains(&SampleId::new("20")) && !members.contains(&SampleId::new("25")));
    }
}

//! The shared curve walk: every evaluator turns its data into cumulative counts at decreasing
//! thresholds and feeds them to [`CurveAccumulator`], which integrates AUROC, AP, F1max and AUPRO
//! in one pass without storing the curve.
//!
//! A point is `(tp, fp, pro)`: the number of anomalous and normal items with score ≥ τ, and the
//! sum over ground-truth regions of the region's covered fraction at τ. Points arrive in order of
//! decreasing τ, so all three are non-decreasing. The curve implicitly starts at `(0, 0, 0)`.
//!
//! Conventions (those of scikit-learn's `roc_auc_score`, `average_precision_score` and
//! `precision_recall_curve`, and of the AUPRO definition in `method.md`):
//! - AUROC: trapezoids on the ROC curve through every distinct threshold, computed on integer
//!   counts, so tied scores contribute one half per tied pair;
//! - AP: `Σ (R_n − R_{n−1}) · P_n`, a step (not trapezoid) sum;
//! - F1max: the largest `2PR / (P + R)` over distinct thresholds, which equals
//!   `2·tp / (tp + fp + n_pos)` and is 0 where `tp = 0`;
//! - AUPRO: trapezoids on PRO against FPR for FPR ≤ `limit`, the last segment linearly
//!   interpolated at `limit`, the area divided by `limit`.
//!
//! The accumulator also sums, segment by segment, how far any curve that passes through the same
//! points could be from the one integrated here. For a binned evaluator these sums bound the
//! distance between the binned and the exact metrics (see `BinnedPixelEvaluator::max_error`).

/// Totals that fix the normalisation of a curve.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Totals {
    /// Number of anomalous items (images or pixels).
    pub(crate) n_pos: u64,
    /// Number of normal items.
    pub(crate) n_neg: u64,
    /// Number of ground-truth regions (0 when AUPRO is not wanted).
    pub(crate) n_regions: u64,
}

/// Metric values (or their error bounds) produced by [`CurveAccumulator::finish`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct CurveValues {
    pub(crate) auroc: f64,
    pub(crate) ap: f64,
    pub(crate) f1max: f64,
    /// `None` when the totals have no regions.
    pub(crate) aupro: Option<f64>,
}

/// Integrates the metrics over points fed in decreasing-threshold order.
#[derive(Debug, Clone)]
pub(crate) struct CurveAccumulator {
    totals: Totals,
    fpr_limit: f64,
    tp: u64,
    fp: u64,
    pro: f64,
    /// `Σ Δfp · (tp_prev + tp)`: twice the ROC area in count units.
    auroc_twice: u128,
    ap: f64,
    f1max: f64,
    aupro_area: f64,
    /// `Σ Δfp · Δtp`: twice the AUROC error bound in count units.
    auroc_slack: u128,
    ap_slack: f64,
    f1_upper: f64,
    aupro_slack: f64,
}

impl CurveAccumulator {
    /// A new accumulator; `totals` must have `n_pos > 0` and `n_neg > 0` (callers check).
    pub(crate) fn new(totals: Totals, fpr_limit: f64) -> Self {
        Self {
            totals,
            fpr_limit,
            tp: 0,
            fp: 0,
            pro: 0.0,
            auroc_twice: 0,
            ap: 0.0,
            f1max: 0.0,
            aupro_area: 0.0,
            auroc_slack: 0,
            ap_slack: 0.0,
            f1_upper: 0.0,
            aupro_slack: 0.0,
        }
    }

    /// Adds the next point: cumulative counts at the next lower threshold.
    ///
    /// `pro_sum` is the sum over regions of covered fractions (not yet divided by `n_regions`).
    pub(crate) fn push(&mut self, tp: u64, fp: u64, pro_sum: f64) {
        let (tp0, fp0, pro0) = (self.tp, self.fp, self.pro);
        if tp == tp0 && fp == fp0 {
            return;
        }
        let n_pos = self.totals.n_pos as f64;
        let d_tp = u128::from(tp - tp0);
        let d_fp = u128::from(fp - fp0);
        self.auroc_twice += d_fp * u128::from(tp0 + tp);
        self.auroc_slack += d_fp * d_tp;
        if tp > tp0 {
            let d_recall = (tp - tp0) as f64 / n_pos;
            let precision = tp as f64 / (tp + fp) as f64;
            self.ap += d_recall * precision;
            let p_max = tp as f64 / (tp + fp0) as f64;
            let p_min = (tp0 + 1) as f64 / (tp0 + 1 + fp) as f64;
            self.ap_slack += d_recall * (p_max - p_min);
        }
        if tp > 0 {
            let f1 = 2.0 * tp as f64 / (tp as f64 + fp as f64 + n_pos);
            self.f1max = self.f1max.max(f1);
        }
        if tp > 0 {
            let upper = 2.0 * tp as f64 / (tp as f64 + fp0 as f64 + n_pos);
            self.f1_upper = self.f1_upper.max(upper);
        }
        if self.totals.n_regions > 0 {
            self.push_pro(fp0, fp, pro0, pro_sum);
        }
        self.tp = tp;
        self.fp = fp;
        self.pro = pro_sum;
    }

    fn push_pro(&mut self, fp0: u64, fp: u64, pro0: f64, pro_sum: f64) {
        let n_neg = self.totals.n_neg as f64;
        let n_regions = self.totals.n_regions as f64;
        let (x0, x1) = (fp0 as f64 / n_neg, fp as f64 / n_neg);
        let (y0, y1) = (pro0 / n_regions, pro_sum / n_regions);
        let limit = self.fpr_limit;
        if x0 >= limit || x1 == x0 {
            return;
        }
        if x1 <= limit {
            self.aupro_area += (x1 - x0) * (y0 + y1) / 2.0;
            self.aupro_slack += (x1 - x0) * (y1 - y0);
        } else {
            let y_limit = y0 + (y1 - y0) * (limit - x0) / (x1 - x0);
            self.aupro_area += (limit - x0) * (y0 + y_limit) / 2.0;
            self.aupro_slack += (limit - x0) * (y1 - y0);
        }
    }

    /// The metrics of the curve fed so far (which must have reached every item).
    pub(crate) fn finish(&self) -> CurveValues {
        let pn = u128::from(self.totals.n_pos) * u128::from(self.totals.n_neg);
        CurveValues {
            auroc: self.auroc_twice as f64 / (2.0 * pn as f64),
            ap: self.ap,
            f1max: self.f1max,
            aupro: (self.totals.n_regions > 0).then(|| self.aupro_area / self.fpr_limit),
        }
    }

    /// For each metric, the largest distance between [`finish`](Self::finish) and the same metric
    /// of any finer curve through the same points (a curve whose extra points lie between the
    /// fed ones).
    pub(crate) fn slack(&self) -> CurveValues {
        let pn = u128::from(self.totals.n_pos) * u128::from(self.totals.n_neg);
        CurveValues {
            auroc: self.auroc_slack as f64 / (2.0 * pn as f64),
            ap: self.ap_slack,
            f1max: (self.f1_upper - self.f1max).max(0.0),
            aupro: (self.totals.n_regions > 0).then(|| self.aupro_slack / self.fpr_limit),
        }
    }
}

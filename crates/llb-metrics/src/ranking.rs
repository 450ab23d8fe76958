//! Exact ranking: scores become order-preserving integer keys, are sorted, and the sorted runs
//! are walked from the highest score down, one curve point per distinct score.

use crate::curve::CurveAccumulator;

/// Maps a finite `f32` to a `u32` whose unsigned order is the float order.
///
/// `-0.0` and `0.0` map to the same key, so they tie as they do in NumPy.
pub(crate) fn order_key(score: f32) -> u32 {
    // Adding +0.0 turns -0.0 into +0.0 and leaves every other finite value unchanged.
    let bits = (score + 0.0).to_bits();
    if bits & 0x8000_0000 != 0 { !bits } else { bits | 0x8000_0000 }
}

/// Packs an anomalous item's score key with the size of its ground-truth region (1 for images).
pub(crate) fn positive_key(score: f32, region_size: u32) -> u64 {
    (u64::from(order_key(score)) << 32) | u64::from(region_size)
}

/// Feeds the curve of two ascending-sorted key lists to `acc`, highest threshold first.
///
/// `negatives` are the keys of normal items, `positives` those of anomalous items packed by
/// [`positive_key`]. Each anomalous item adds `1 / region_size` to the PRO sum.
pub(crate) fn walk_sorted(negatives: &[u32], positives: &[u64], acc: &mut CurveAccumulator) {
    let (mut i, mut j) = (negatives.len(), positives.len());
    let (mut tp, mut fp, mut pro) = (0u64, 0u64, 0.0f64);
    while i > 0 || j > 0 {
        let next_neg = (i > 0).then(|| negatives[i - 1]);
        let next_pos = (j > 0).then(|| (positives[j - 1] >> 32) as u32);
        let threshold = next_neg.max(next_pos).unwrap_or_default();
        while i > 0 && negatives[i - 1] == threshold {
            i -= 1;
            fp += 1;
        }
        while j > 0 && (positives[j - 1] >> 32) as u32 == threshold {
            j -= 1;
            tp += 1;
            pro += 1.0 / (positives[j] & 0xFFFF_FFFF) as f64;
        }
        acc.push(tp, fp, pro);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn order_key_preserves_float_order() {
        let values = [f32::MIN, -3.5, -1e-30, -0.0, 0.0, 1e-30, 0.5, 7.0, f32::MAX];
        for pair in values.windows(2) {
            assert!(order_key(pair[0]) <= order_key(pair[1]), "{pair:?}");
        }
        assert_eq!(order_key(-0.0), order_key(0.0));
        assert!(order_key(-1e-30) < order_key(0.0));
    }

    #[test]
    fn positive_key_sorts_by_score_first() {
        assert!(positive_key(0.5, 1000) < positive_key(0.6, 1));
        assert_eq!(positive_key(0.5, 7) & 0xFFFF_FFFF, 7);
    }
}

//! Order-independent statistics on `f32` scores, computed in `f64`.
//!
//! Every function sorts its input before summing, so the result depends only on the multiset of
//! values, never on their order: this is what makes the built-in rules exactly (bit for bit)
//! permutation-equivariant.

/// The values as `f64`, sorted ascending (`total_cmp`).
pub(crate) fn sorted(values: impl IntoIterator<Item = f32>) -> Vec<f64> {
    let mut v: Vec<f64> = values.into_iter().map(f64::from).collect();
    v.sort_by(f64::total_cmp);
    v
}

/// Mean of sorted values; 0 for an empty slice.
pub(crate) fn mean(sorted: &[f64]) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    sorted.iter().sum::<f64>() / sorted.len() as f64
}

/// Population variance (divide by n, as `numpy.var`) of sorted values.
pub(crate) fn variance(sorted: &[f64]) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let m = mean(sorted);
    let mut dev: Vec<f64> = sorted.iter().map(|x| (x - m) * (x - m)).collect();
    dev.sort_by(f64::total_cmp);
    dev.iter().sum::<f64>() / sorted.len() as f64
}

/// Median of sorted values (mean of the middle two for an even count); 0 for an empty slice.
pub(crate) fn median(sorted: &[f64]) -> f64 {
    let n = sorted.len();
    match n {
        0 => 0.0,
        _ if n % 2 == 1 => sorted[n / 2],
        _ => 0.5 * (sorted[n / 2 - 1] + sorted[n / 2]),
    }
}

/// Ranks `1..=n` of the values, ties sharing their average rank, in input order.
pub(crate) fn average_ranks(values: &[f32]) -> Vec<f64> {
    let mut order: Vec<usize> = (0..values.len()).collect();
    order.sort_by(|&a, &b| values[a].total_cmp(&values[b]));
    let mut ranks = vec![0.0; values.len()];
    let mut start = 0;
    while start < order.len() {
        let mut end = start + 1;
        while end < order.len() && values[order[end]] == values[order[start]] {
            end += 1;
        }
        // Positions start..end (0-based) hold equal values: ranks start+1..=end, averaged.
        let rank = (start + 1 + end) as f64 / 2.0;
        for &i in &order[start..end] {
            ranks[i] = rank;
        }
        start = end;
    }
    ranks
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statistics_of_a_small_sample() {
        let s = sorted([4.0, 1.0, 3.0, 2.0]);
        assert_eq!(s, [1.0, 2.0, 3.0, 4.0]);
        assert_eq!(mean(&s), 2.5);
        assert_eq!(variance(&s), 1.25);
        assert_eq!(median(&s), 2.5);
        assert_eq!(median(&s[..3]), 2.0);
        assert_eq!(mean(&[]), 0.0);
    }

    #[test]
    fn ties_share_the_average_rank() {
        assert_eq!(average_ranks(&[0.5, 0.1, 0.5, 0.9]), [2.5, 1.0, 2.5, 4.0]);
        assert_eq!(average_ranks(&[7.0, 7.0, 7.0]), [2.0, 2.0, 2.0]);
    }
}

//! Shards of an experiment: `llb experiment --shard I/N` computes the cells that a balanced,
//! content-keyed assignment gives to shard `I` (0-based) of `N`, and appends them to its own log,
//! `<name>.shard-I-of-N.rows.jsonl`; `llb experiment --merge` assembles every log into
//! `<name>.json`.
//!
//! Key decision: the unit of assignment is the (data set, category, α, seed) *cell*, not the row.
//! The rows of one cell share the cell's feature extraction (done once per process) and, for the
//! purified rows and the selection, fusion and keep-fraction ablations, one stage-1 table (K
//! sub-model fits, the dominant cost); splitting a cell over shards would fit that stage 1 once
//! per shard that holds one of its rows. Cells of one category at other α and seeds share most
//! images, so their features overlap across shards: each shard extracts a category's images at
//! most once (the feature cache is content-addressed and shared), a bounded cost next to stage 1.
//!
//! The assignment depends only on the cells' content keys and weights (their planned row
//! counts), never on manifest order: cells sorted by weight (heaviest first) and then key go each
//! to the least-loaded shard (longest-processing-time first), so shards differ by at most one
//! cell's rows.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

/// Shard `index` (0-based, as Slurm's `SLURM_ARRAY_TASK_ID` with `--array=0-<N-1>` and
/// Kubernetes' `JOB_COMPLETION_INDEX` count) of `count`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Shard {
    /// This shard, `0 ≤ index < count`.
    pub(crate) index: usize,
    /// How many shards the grid is cut into, at least 1.
    pub(crate) count: usize,
}

impl FromStr for Shard {
    type Err = String;

    /// Parses `I/N` with `0 ≤ I < N`.
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let bad = || format!("`{text}` is not a shard `I/N` (0-based: 0 ≤ I < N, e.g. 0/4)");
        let (index, count) = text.split_once('/').ok_or_else(bad)?;
        let index: usize = index.trim().parse().map_err(|_| bad())?;
        let count: usize = count.trim().parse().map_err(|_| bad())?;
        if count == 0 || index >= count {
            return Err(bad());
        }
        Ok(Shard { index, count })
    }
}

impl fmt::Display for Shard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.index, self.count)
    }
}

impl Shard {
    /// The shard's own resume log: `<name>.shard-I-of-N.rows.jsonl`.
    pub(crate) fn log_name(&self, name: &str) -> String {
        format!("{name}.shard-{}-of-{}.rows.jsonl", self.index, self.count)
    }
}

/// The shard (0-based) of each cell among `count` shards; `cells` are `(content key, weight)`.
/// Duplicate keys are one cell. Independent of the order of `cells`.
pub(crate) fn assign(cells: &[(String, usize)], count: usize) -> BTreeMap<String, usize> {
    let unique: BTreeMap<&str, usize> = cells.iter().map(|(k, w)| (k.as_str(), *w)).collect();
    let mut order: Vec<(&str, usize)> = unique.into_iter().collect();
    order.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
    let mut load = vec![0usize; count.max(1)];
    let mut assignment = BTreeMap::new();
    for (key, weight) in order {
        let (shard, _) =
            load.iter().enumerate().min_by_key(|&(i, l)| (*l, i)).expect("at least one shard");
        load[shard] += weight;
        assignment.insert(key.to_owned(), shard);
    }
    assignment
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check_parse(text: &str, expected: Option<(usize, usize)>) {
        let parsed = text.parse::<Shard>().ok().map(|s| (s.index, s.count));
        assert_eq!(parsed, expected, "{text}");
    }

    #[test]
    fn shards_are_zero_based_i_of_n() {
        check_parse("0/1", Some((0, 1)));
        check_parse("2/3", Some((2, 3)));
        check_parse("3/3", None);
        check_parse("0/0", None);
        check_parse("-1/3", None);
        check_parse("1", None);
        check_parse("a/b", None);
        let err = "4/4".parse::<Shard>().unwrap_err();
        assert!(err.contains("`4/4`") && err.contains("0 ≤ I < N"), "{err}");
        assert_eq!(Shard { index: 1, count: 4 }.to_string(), "1/4");
        assert_eq!(Shard { index: 1, count: 4 }.log_name("b"), "b.shard-1-of-4.rows.jsonl");
    }

    fn cells(weights: &[usize]) -> Vec<(String, usize)> {
        weights
            .iter()
            .enumerate()
            .map(|(i, &w)| (llb_types::sha256::sha256_hex(&[i as u8]), w))
            .collect()
    }

    #[test]
    fn assignment_ignores_cell_order_and_balances_weights() {
        let cells = cells(&[16, 2, 2, 2, 2, 16, 2, 2, 2, 2, 16, 2]);
        let mut reversed = cells.clone();
        reversed.reverse();
        let a = assign(&cells, 3);
        assert_eq!(a, assign(&reversed, 3));
        let mut load = [0; 3];
        for (key, w) in &cells {
            load[a[key]] += w;
        }
        // 66 rows: one heavy cell and five light ones per shard.
        assert_eq!(load, [22, 22, 22]);
    }

    #[test]
    fn every_cell_goes_to_exactly_one_shard_of_any_count() {
        let cells = cells(&[5, 3, 3, 1, 8, 2, 2]);
        for count in 1..=9 {
            let a = assign(&cells, count);
            assert_eq!(a.len(), cells.len());
            assert!(a.values().all(|&s| s < count));
        }
        // More shards than cells: the extra shards are empty, none has two cells.
        let a = assign(&cells, 9);
        let used: std::collections::BTreeSet<_> = a.values().collect();
        assert_eq!(used.len(), cells.len());
    }
}

//! Stage 1, step 1: cut the training set into K disjoint blocks.

use crate::{Error, Result};
use llb_types::{GroupId, SampleId};
use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;
use std::collections::{BTreeMap, BTreeSet};

/// How samples are assigned to blocks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum PartitionMode {
    /// A seeded random permutation of the samples cut into K near-equal blocks (the paper and the
    /// official code, which split per image).
    Random,
    /// A seeded random permutation of the groups (physical samples) cut into K blocks of
    /// near-equal image counts, so that all views of one physical sample land in one block.
    /// Samples without a group are groups of their own.
    GroupAware,
}

/// Partition settings.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PartitionConfig {
    /// Number of blocks (sub-models), `K ≥ 1`.
    pub k: usize,
    /// Seed of the permutation.
    pub seed: u64,
    /// Per-sample or group-aware split.
    pub mode: PartitionMode,
}

/// K disjoint blocks of sample ids whose union is the training set.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Partition {
    blocks: Vec<Vec<SampleId>>,
}

impl Partition {
    /// Splits `samples` (id and optional group) into `config.k` blocks.
    ///
    /// The result depends on the set of samples, the seed and the mode only, not on the order of
    /// `samples`: the input is sorted by id before the seeded shuffle. With the random mode block
    /// `j < K − 1` holds `⌊N / K⌋` samples and the last block takes the remainder.
    ///
    /// # Errors
    /// [`Error::Partition`] when `k` is zero, larger than the number of samples (or groups), or an
    /// id appears twice.
    pub fn new(samples: &[(SampleId, Option<GroupId>)], config: &PartitionConfig) -> Result<Self> {
        let k = config.k;
        let mut sorted: Vec<&(SampleId, Option<GroupId>)> = samples.iter().collect();
        sorted.sort_by(|a, b| a.0.cmp(&b.0));
        if let Some(w) = sorted.windows(2).find(|w| w[0].0 == w[1].0) {
            return Err(Error::Partition(format!("sample id `{}` appears twice", w[0].0)));
        }
        let mut rng = ChaCha8Rng::seed_from_u64(config.seed);
        let units: Vec<Vec<SampleId>> = match config.mode {
            PartitionMode::Random => sorted.iter().map(|(id, _)| vec![id.clone()]).collect(),
            PartitionMode::GroupAware => {
                let mut groups: BTreeMap<String, Vec<SampleId>> = BTreeMap::new();
                for (id, group) in &sorted {
                    let key = match group {
                        Some(g) => format!("g:{g}"),
                        None => format!("s:{id}"),
                    };
                    groups.entry(key).or_default().push(id.clone());
                }
                groups.into_values().collect()
            }
        };
        if k == 0 || k > units.len() {
            return Err(Error::Partition(format!(
                "k = {k} blocks for {} {}: need 1 ≤ k ≤ that number",
                units.len(),
                if config.mode == PartitionMode::Random { "samples" } else { "groups" }
            )));
        }
        let mut units = units;
        units.shuffle(&mut rng);
        let n_images: usize = units.iter().map(Vec::len).sum();
        let per_block = n_images / k;
        let mut blocks: Vec<Vec<SampleId>> = vec![Vec::new(); k];
        let mut j = 0;
        let remaining_units = units.len();
        for (i, unit) in units.into_iter().enumerate() {
            // Move on when this block is full, but leave at least one unit for each later block.
            let units_left = remaining_units - i;
            let blocks_left = k - j - 1;
            if j + 1 < k && (blocks[j].len() >= per_block.max(1) || units_left <= blocks_left) {
                j += 1;
            }
            blocks[j].extend(unit);
        }
        Ok(Self { blocks })
    }

    /// The blocks, `D_1 .. D_K`.
    pub fn blocks(&self) -> &[Vec<SampleId>] {
        &self.blocks
    }

    /// Number of blocks K.
    pub fn k(&self) -> usize {
        self.blocks.len()
    }

    /// The block index of every sample.
    pub fn block_of(&self) -> BTreeMap<SampleId, usize> {
        let mut map = BTreeMap::new();
        for (j, block) in self.blocks.iter().enumerate() {
            for id in block {
                map.insert(id.clone(), j);
            }
        }
        map
    }

    /// All ids, in block order.
    pub fn ids(&self) -> BTreeSet<SampleId> {
        self.blocks.iter().flatten().cloned().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn samples(n: usize, views: usize) -> Vec<(SampleId, Option<GroupId>)> {
        (0..n)
            .map(|i| {
                let group = (views > 0).then(|| GroupId::new(format!("S{:03}", i / views)));
                (SampleId::new(format!("img{i:03}.png")), group)
            })
            .collect()
    }

    fn config(k: usize, mode: PartitionMode) -> PartitionConfig {
        PartitionConfig { k, seed: 7, mode }
    }

    fn check(n: usize, k: usize, expected_sizes: &[usize]) {
        let p = Partition::new(&samples(n, 0), &config(k, PartitionMode::Random)).unwrap();
        let sizes: Vec<usize> = p.blocks().iter().map(Vec::len).collect();
        assert_eq!(sizes, expected_sizes, "n = {n}, k = {k}");
        assert_eq!(p.ids().len(), n, "blocks are disjoint and cover the set");
    }

    #[test]
    fn random_blocks_are_near_equal_and_last_takes_the_remainder() {
        check(10, 3, &[3, 3, 4]);
        check(9, 3, &[3, 3, 3]);
        check(5, 5, &[1, 1, 1, 1, 1]);
        check(7, 1, &[7]);
    }

    #[test]
    fn same_seed_same_blocks_whatever_the_input_order() {
        let mut s = samples(40, 0);
        let a = Partition::new(&s, &config(4, PartitionMode::Random)).unwrap();
        s.reverse();
        let b = Partition::new(&s, &config(4, PartitionMode::Random)).unwrap();
        assert_eq!(a, b);
        let c =
            Partition::new(&s, &PartitionConfig { seed: 8, ..config(4, PartitionMode::Random) })
                .unwrap();
        assert_ne!(a, c, "another seed gives another split");
    }

    #[test]
    fn group_aware_keeps_views_together() {
        let s = samples(50, 5);
        let p = Partition::new(&s, &config(3, PartitionMode::GroupAware)).unwrap();
        let block_of = p.block_of();
        for (id, group) in &s {
            for (other, other_group) in &s {
                if group == other_group {
                    assert_eq!(block_of[id], block_of[other], "{id} and {other} share a group");
                }
            }
        }
        assert!(p.blocks().iter().all(|b| !b.is_empty()));
        assert_eq!(p.ids().len(), 50);
    }

    #[test]
    fn bad_k_and_duplicates_are_errors() {
        let s = samples(4, 0);
        for k in [0, 5] {
            let err = Partition::new(&s, &config(k, PartitionMode::Random)).unwrap_err();
            assert!(err.to_string().contains(&format!("k = {k}")), "{err}");
        }
        let mut dup = samples(3, 0);
        dup.push(dup[0].clone());
        let err = Partition::new(&dup, &config(2, PartitionMode::Random)).unwrap_err();
        assert!(err.to_string().contains("img000.png"), "{err}");
    }
}

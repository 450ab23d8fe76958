//! The heat maps of the review page: for each training image, the mean of the anomaly maps of
//! the sub-models that did not train on it, kept at [`MAP_SIDE`]² (max-pooled), so memory stays
//! bounded (4 KiB per image and sub-model block at most; ≈ 80 MiB at 10,000 images).
//!
//! [`ReviewMaps`] is the [`MapObserver`] stage 1 feeds. Per sub-model it collects the pooled
//! out-of-subset maps, adds them to the running sums when the sub-model finishes, and hands them
//! to the stage-1 resume cache (`id length u32 LE, id bytes, MAP_SIDE² f32 LE` per image), so a
//! resumed run shows the same maps as an uninterrupted one.

use llb_submodel::MapObserver;
use llb_types::SampleId;
use std::collections::{BTreeMap, BTreeSet};

/// Side of a stored heat map, in cells.
pub(crate) const MAP_SIDE: usize = 32;
const CELLS: usize = MAP_SIDE * MAP_SIDE;

/// Running means of the out-of-subset anomaly maps of every training image.
pub(crate) struct ReviewMaps {
    /// Size `(H, W)` of the maps stage 1 computes.
    map_size: (usize, usize),
    ids: Vec<SampleId>,
    row_of: BTreeMap<SampleId, usize>,
    /// Per image, the sum of its pooled out-of-subset maps, `MAP_SIDE²` values each.
    sums: Vec<f32>,
    /// Per image, how many maps were added.
    counts: Vec<u16>,
    /// The current sub-model's pooled out-of-subset maps.
    pending: Vec<(usize, Vec<f32>)>,
    /// Sub-models whose scores were resumed without maps.
    without_maps: BTreeSet<usize>,
}

impl ReviewMaps {
    /// Empty maps for `ids`, which stage 1 scores at `map_size` `(H, W)`.
    pub(crate) fn new(ids: &[SampleId], map_size: (usize, usize)) -> Self {
        let row_of = ids.iter().cloned().zip(0..).collect();
        Self {
            map_size,
            ids: ids.to_vec(),
            row_of,
            sums: vec![0.0; ids.len() * CELLS],
            counts: vec![0; ids.len()],
            pending: Vec::new(),
            without_maps: BTreeSet::new(),
        }
    }

    /// The mean pooled map of `id` (`MAP_SIDE²`, row-major), if any sub-model that did not train
    /// on it left a map.
    pub(crate) fn mean(&self, id: &SampleId) -> Option<Vec<f32>> {
        let row = *self.row_of.get(id)?;
        let count = self.counts[row];
        (count > 0).then(|| {
            let sum = &self.sums[row * CELLS..(row + 1) * CELLS];
            sum.iter().map(|v| v / f32::from(count)).collect()
        })
    }

    /// The typical level of the maps: the median, over images, of the median cell of each
    /// image's mean map (what most of a normal image looks like); `None` without maps.
    pub(crate) fn typical_level(&self) -> Option<f32> {
        let mut medians: Vec<f32> = (0..self.counts.len())
            .filter(|&row| self.counts[row] > 0)
            .map(|row| {
                let mut cells = self.sums[row * CELLS..(row + 1) * CELLS].to_vec();
                cells.sort_by(f32::total_cmp);
                cells[CELLS / 2] / f32::from(self.counts[row])
            })
            .collect();
        medians.sort_by(f32::total_cmp);
        medians.get(medians.len() / 2).copied()
    }

    /// Sub-models whose scores came from the resume cache without maps.
    pub(crate) fn blocks_without_maps(&self) -> &BTreeSet<usize> {
        &self.without_maps
    }

    fn add(&mut self, row: usize, pooled: &[f32]) {
        let sum = &mut self.sums[row * CELLS..(row + 1) * CELLS];
        sum.iter_mut().zip(pooled).for_each(|(s, v)| *s += v);
        self.counts[row] = self.counts[row].saturating_add(1);
    }

    /// Parses the bytes of [`MapObserver::finish_block`]; `None` when they are malformed or name
    /// an image this run does not have.
    fn parse(&self, mut bytes: &[u8]) -> Option<Vec<(usize, Vec<f32>)>> {
        let mut out = Vec::new();
        while !bytes.is_empty() {
            let len = u32::from_le_bytes(bytes.get(..4)?.try_into().ok()?) as usize;
            let id = std::str::from_utf8(bytes.get(4..4 + len)?).ok()?;
            let row = *self.row_of.get(&SampleId::new(id))?;
            let values = bytes.get(4 + len..4 + len + 4 * CELLS)?;
            let map = values.chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]));
            out.push((row, map.collect()));
            bytes = &bytes[4 + len + 4 * CELLS..];
        }
        Some(out)
    }
}

impl MapObserver for ReviewMaps {
    fn observe(&mut self, _block: usize, sample: &SampleId, in_subset: bool, map: &[f32]) {
        if in_subset {
            return;
        }
        if let Some(&row) = self.row_of.get(sample) {
            self.pending.push((row, max_pool(map, self.map_size)));
        }
    }

    fn finish_block(&mut self, _block: usize) -> Option<Vec<u8>> {
        let pending = std::mem::take(&mut self.pending);
        let mut bytes = Vec::with_capacity(pending.len() * (4 * CELLS + 40));
        for (row, pooled) in &pending {
            let id = self.ids[*row].as_str().as_bytes();
            bytes.extend_from_slice(&(id.len() as u32).to_le_bytes());
            bytes.extend_from_slice(id);
            pooled.iter().for_each(|v| bytes.extend_from_slice(&v.to_le_bytes()));
        }
        pending.iter().for_each(|(row, pooled)| self.add(*row, pooled));
        Some(bytes)
    }

    fn resume_block(&mut self, block: usize, saved: Option<Vec<u8>>) {
        match saved.and_then(|bytes| self.parse(&bytes)) {
            Some(maps) => maps.iter().for_each(|(row, pooled)| self.add(*row, pooled)),
            None => {
                tracing::warn!(block, "sub-model resumed without review maps");
                self.without_maps.insert(block);
            }
        }
    }
}

/// Max-pools a `[H, W]` map onto `MAP_SIDE²` cells (each cell covers a near-equal block of
/// pixels), keeping hot spots at their full value.
pub(crate) fn max_pool(map: &[f32], (h, w): (usize, usize)) -> Vec<f32> {
    let edges =
        |n: usize, i: usize| (i * n / MAP_SIDE, ((i + 1) * n / MAP_SIDE).max(i * n / MAP_SIDE + 1));
    let mut out = Vec::with_capacity(CELLS);
    for cy in 0..MAP_SIDE {
        let (y0, y1) = edges(h, cy);
        for cx in 0..MAP_SIDE {
            let (x0, x1) = edges(w, cx);
            let mut best = f32::NEG_INFINITY;
            for y in y0..y1.min(h) {
                for &v in &map[y * w + x0.min(w)..y * w + x1.min(w)] {
                    best = best.max(v);
                }
            }
            out.push(if best.is_finite() { best } else { 0.0 });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids() -> Vec<SampleId> {
        ["a.png", "b,\"c\".png", "d.png"].iter().map(|s| SampleId::new(*s)).collect()
    }

    /// A 64×64 map, zero but for one hot pixel at `(y, x)`.
    fn hot(y: usize, x: usize, value: f32) -> Vec<f32> {
        let mut map = vec![0.0; 64 * 64];
        map[y * 64 + x] = value;
        map
    }

    #[test]
    fn pooling_keeps_the_hot_spot_where_it_was() {
        let pooled = max_pool(&hot(10, 63, 5.0), (64, 64));
        assert_eq!(pooled.len(), CELLS);
        assert_eq!(pooled[5 * MAP_SIDE + 31], 5.0);
        assert_eq!(pooled.iter().filter(|&&v| v != 0.0).count(), 1);
        // Maps smaller than the grid repeat pixels instead of leaving cells empty.
        let small = max_pool(&[1.0, 2.0, 3.0, 4.0], (2, 2));
        assert_eq!((small[0], small[CELLS - 1]), (1.0, 4.0));
    }

    #[test]
    fn means_use_only_out_of_subset_maps_and_resume_gives_the_same() {
        let ids = ids();
        let mut maps = ReviewMaps::new(&ids, (64, 64));
        maps.observe(0, &ids[0], true, &hot(0, 0, 100.0));
        maps.observe(0, &ids[1], false, &hot(0, 0, 2.0));
        let first = maps.finish_block(0).unwrap();
        maps.observe(1, &ids[1], false, &hot(0, 0, 4.0));
        maps.observe(1, &ids[0], false, &hot(0, 0, 1.0));
        let second = maps.finish_block(1).unwrap();
        assert_eq!(maps.mean(&ids[1]).unwrap()[0], 3.0);
        assert_eq!(maps.mean(&ids[0]).unwrap()[0], 1.0, "the in-subset map is left out");
        assert!(maps.mean(&ids[2]).is_none());
        assert_eq!(maps.typical_level(), Some(0.0), "one hot cell of 1024 leaves the median at 0");

        let mut resumed = ReviewMaps::new(&ids, (64, 64));
        resumed.resume_block(0, Some(first));
        resumed.resume_block(1, Some(second));
        for id in &ids {
            assert_eq!(resumed.mean(id), maps.mean(id), "{id}");
        }
        assert!(resumed.blocks_without_maps().is_empty());
        resumed.resume_block(2, None);
        resumed.resume_block(3, Some(vec![1, 2, 3]));
        assert_eq!(resumed.blocks_without_maps().iter().copied().collect::<Vec<_>>(), [2, 3]);
    }
}

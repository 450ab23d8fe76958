//! Connected ground-truth regions of a binary mask, with 8-connectivity (a pixel touches the
//! eight around it), as `scipy.ndimage.label` with a full 3×3 structure computes them.

/// The connected regions of one `width × height` mask in row-major order.
#[derive(Debug, Clone, Default)]
pub(crate) struct Regions {
    /// `labels[p]`: 0 for a normal pixel, else `1 + ` the index of its region in `sizes`.
    pub(crate) labels: Vec<u32>,
    /// Number of pixels of each region, in order of each region's first pixel.
    pub(crate) sizes: Vec<u32>,
}

impl Regions {
    /// Labels the anomalous (`true`) pixels of `mask`, reusing this value's buffers.
    ///
    /// `mask.len()` must equal `width * height` (callers check).
    pub(crate) fn label(&mut self, mask: &[bool], width: usize, height: usize) {
        debug_assert_eq!(mask.len(), width * height);
        self.labels.clear();
        self.labels.resize(mask.len(), 0);
        self.sizes.clear();
        let mut stack = Vec::new();
        for start in 0..mask.len() {
            if !mask[start] || self.labels[start] != 0 {
                continue;
            }
            let label = self.sizes.len() as u32 + 1;
            self.labels[start] = label;
            stack.push(start);
            let mut size = 0u32;
            while let Some(p) = stack.pop() {
                size += 1;
                let (x, y) = (p % width, p / width);
                for ny in y.saturating_sub(1)..=(y + 1).min(height - 1) {
                    for nx in x.saturating_sub(1)..=(x + 1).min(width - 1) {
                        let q = ny * width + nx;
                        if mask[q] && self.labels[q] == 0 {
                            self.labels[q] = label;
                            stack.push(q);
                        }
                    }
                }
            }
            self.sizes.push(size);
        }
    }

    /// The size of the region pixel `p` belongs to (`p` must be anomalous).
    pub(crate) fn size_of(&self, p: usize) -> u32 {
        self.sizes[self.labels[p] as usize - 1]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(rows: &[&str], expected_sizes: &[u32]) {
        let width = rows[0].len();
        let mask: Vec<bool> = rows.iter().flat_map(|r| r.bytes().map(|b| b == b'#')).collect();
        let mut regions = Regions::default();
        regions.label(&mask, width, rows.len());
        assert_eq!(regions.sizes, expected_sizes, "{rows:?}");
        for (p, &anomalous) in mask.iter().enumerate() {
            assert_eq!(regions.labels[p] != 0, anomalous);
        }
    }

    #[test]
    fn diagonal_neighbours_join() {
        check(&["#..", ".#.", "..#"], &[3]);
        check(&["..#", ".#.", "#.."], &[3]);
    }

    #[test]
    fn separate_blobs_and_edges() {
        check(&["##..#", "##..#", ".....", "#...#"], &[4, 2, 1, 1]);
        check(&["....."], &[]);
        check(&["#"], &[1]);
        check(&["#.#.#"], &[1, 1, 1]);
    }

    #[test]
    fn u_shape_is_one_region() {
        check(&["#...#", "#...#", "#####"], &[9]);
    }
}

//! Fitting on a set, not a sequence: training rows are put in [`SampleId`] order before any
//! detector sees them, and random choices are keyed to ids, so a fitted model does not depend on
//! the order of its input rows (and a sample keeps its random draws when other samples come and
//! go).

use crate::{Error, Result};
use candle_core::Tensor;
use llb_types::SampleId;

/// Training features in ascending id order.
#[derive(Clone, Debug)]
pub(crate) struct IdOrdered {
    /// The ids, ascending and unique.
    pub(crate) ids: Vec<SampleId>,
    /// One tensor `[N, ...]` per layer, rows in the order of `ids`.
    pub(crate) layers: Vec<Tensor>,
}

/// Puts the rows of every layer in ascending id order.
///
/// # Errors
/// [`Error::Empty`] without layers or ids, [`Error::Shape`] when a layer's row count differs
/// from the number of ids, [`Error::DuplicateId`] when an id occurs twice.
pub(crate) fn in_id_order(ids: &[SampleId], layers: &[Tensor]) -> Result<IdOrdered> {
    if layers.is_empty() || ids.is_empty() {
        return Err(Error::Empty {
            what: format!("{} feature layers for {} training ids", layers.len(), ids.len()),
        });
    }
    for (index, layer) in layers.iter().enumerate() {
        let rows = layer.dims().first().copied().unwrap_or(0);
        if rows != ids.len() {
            return Err(Error::Shape {
                what: format!("feature layer {index}"),
                expected: format!("one row per training id ({})", ids.len()),
                got: layer.dims().to_vec(),
            });
        }
    }
    let mut order: Vec<u32> = (0..ids.len() as u32).collect();
    order.sort_by(|&a, &b| ids[a as usize].cmp(&ids[b as usize]));
    if let Some(pair) = order.windows(2).find(|w| ids[w[0] as usize] == ids[w[1] as usize]) {
        return Err(Error::DuplicateId { id: ids[pair[0] as usize].clone() });
    }
    let sorted: Vec<SampleId> = order.iter().map(|&i| ids[i as usize].clone()).collect();
    if order.iter().zip(0u32..).all(|(&o, i)| o == i) {
        return Ok(IdOrdered { ids: sorted, layers: layers.to_vec() });
    }
    let index = Tensor::from_vec(order, ids.len(), layers[0].device())?;
    let layers = layers.iter().map(|l| l.index_select(&index, 0)).collect::<Result<_, _>>()?;
    Ok(IdOrdered { ids: sorted, layers })
}

/// What a keyed random draw is for; each purpose draws independently.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Purpose {
    /// The image the greedy coreset starts from.
    CoresetStart = 1,
    /// Random memory-bank subsampling.
    BankSample = 2,
    /// Dinomaly's image order in one epoch (mixed with the epoch).
    EpochOrder = 3,
}

/// A 64-bit key that is a pure function of `(seed, purpose, index, id)`: the same sample gets the
/// same key whatever else is in the training set and wherever its row is.
pub(crate) fn id_key(seed: u64, purpose: Purpose, index: u64, id: &SampleId) -> u64 {
    // FNV-1a over the id's bytes, then SplitMix64 finalisers to mix in the other parts.
    let text = id.as_str().bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    });
    let mut key = splitmix64(seed ^ splitmix64(purpose as u64));
    key = splitmix64(key ^ index);
    splitmix64(key ^ text)
}

/// A key for `(sample key, position)`: one draw per patch of an image.
pub(crate) fn position_key(sample_key: u64, position: u64) -> u64 {
    splitmix64(sample_key ^ splitmix64(position.wrapping_add(0x9e37_79b9_7f4a_7c15)))
}

/// The SplitMix64 output function (Steele, Lea and Flood 2014).
fn splitmix64(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// Row positions `0..ids.len()` ordered by ascending key (ties, which need a 64-bit collision,
/// by position): a seeded permutation of the rows that depends only on the ids.
pub(crate) fn keyed_order(ids: &[SampleId], seed: u64, purpose: Purpose, index: u64) -> Vec<u32> {
    let keys: Vec<u64> = ids.iter().map(|id| id_key(seed, purpose, index, id)).collect();
    let mut order: Vec<u32> = (0..ids.len() as u32).collect();
    order.sort_by_key(|&i| (keys[i as usize], i));
    order
}

/// Ids `row000000`, `row000001`, … for tests that do not care about ids (ascending, so the rows
/// keep their order).
#[cfg(test)]
pub(crate) fn row_ids(n: usize) -> Vec<SampleId> {
    (0..n).map(|i| SampleId::new(format!("row{i:06}"))).collect()
}

/// [`Fit::fit`](crate::Fit::fit) with [`row_ids`] for tests that do not care about ids.
#[cfg(test)]
pub(crate) trait FitRows: crate::Fit {
    /// Fits on `layers` with one generated id per row of the first layer.
    fn fit_rows(&self, layers: &[Tensor]) -> Result<Self::Model> {
        let n = layers.first().and_then(|l| l.dims().first().copied()).unwrap_or(0);
        self.fit(&row_ids(n), layers)
    }
}

#[cfg(test)]
impl<F: crate::Fit> FitRows for F {}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    fn ids(names: &[&str]) -> Vec<SampleId> {
        names.iter().map(|n| SampleId::new(*n)).collect()
    }

    #[test]
    fn rows_follow_their_ids() -> Result<()> {
        let layer = Tensor::new(&[[3f32, 30.], [1., 10.], [2., 20.]], &Device::Cpu)?;
        let out = in_id_order(&ids(&["c", "a", "b"]), &[layer])?;
        assert_eq!(out.ids, ids(&["a", "b", "c"]));
        assert_eq!(out.layers[0].to_vec2::<f32>()?, vec![[1., 10.], [2., 20.], [3., 30.]]);
        Ok(())
    }

    #[test]
    fn bad_inputs_are_named_errors() {
        let layer = Tensor::zeros((2, 1), candle_core::DType::F32, &Device::Cpu).unwrap();
        let dup = in_id_order(&ids(&["a", "a"]), std::slice::from_ref(&layer));
        assert!(matches!(dup, Err(Error::DuplicateId { id }) if id.as_str() == "a"));
        let short = in_id_order(&ids(&["a"]), std::slice::from_ref(&layer));
        assert!(matches!(short, Err(Error::Shape { .. })));
        assert!(matches!(in_id_order(&[], &[]), Err(Error::Empty { .. })));
    }

    #[test]
    fn keys_depend_on_the_id_not_on_the_company() {
        let a = SampleId::new("train/good/001.png");
        let k = id_key(7, Purpose::BankSample, 0, &a);
        assert_eq!(k, id_key(7, Purpose::BankSample, 0, &a));
        assert_ne!(k, id_key(8, Purpose::BankSample, 0, &a));
        assert_ne!(k, id_key(7, Purpose::CoresetStart, 0, &a));
        assert_ne!(k, id_key(7, Purpose::BankSample, 1, &a));
        assert_ne!(k, id_key(7, Purpose::BankSample, 0, &SampleId::new("train/good/002.png")));
        // A keyed order of a subset is the full order restricted to that subset.
        let all = ids(&["a", "b", "c", "d", "e", "f"]);
        let full: Vec<&SampleId> = keyed_order(&all, 1, Purpose::EpochOrder, 0)
            .iter()
            .map(|&i| &all[i as usize])
            .collect();
        let some = ids(&["b", "d", "f"]);
        let part: Vec<&SampleId> = keyed_order(&some, 1, Purpose::EpochOrder, 0)
            .iter()
            .map(|&i| &some[i as usize])
            .collect();
        let restricted: Vec<&SampleId> = full.into_iter().filter(|id| some.contains(id)).collect();
        assert_eq!(part, restricted);
    }
}

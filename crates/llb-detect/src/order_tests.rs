//! Property tests: every detector fitted on a permutation of its training rows (ids moving with
//! their rows) gives a bit-identical model, so a purified set that keeps every image equals the
//! plain fit whatever order stage 1 hands it over in.

use crate::order::row_ids;
use crate::patchcore::test_data::normal_features;
use crate::{
    BankSampling, Detector, DinomalyConfig, Fit, LrSchedule, OutlierScore, PatchCoreConfig, Result,
    SoftPatchConfig, TrainingLength,
};
use candle_core::{Device, Tensor};
use llb_types::SampleId;
use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;

const N: usize = 12;
const C: usize = 8;
const GRID: (usize, usize) = (4, 4);

fn layers(n: usize, seed: u64) -> Vec<Tensor> {
    let values = normal_features(n, C, GRID, seed);
    vec![Tensor::from_vec(values, (n, C, GRID.0, GRID.1), &Device::Cpu).unwrap()]
}

/// The training rows in a seeded random order, ids moving with their rows.
fn shuffled(ids: &[SampleId], layers: &[Tensor], seed: u64) -> (Vec<SampleId>, Vec<Tensor>) {
    let mut order: Vec<u32> = (0..ids.len() as u32).collect();
    order.shuffle(&mut ChaCha8Rng::seed_from_u64(seed));
    let index = Tensor::from_vec(order.clone(), order.len(), &Device::Cpu).unwrap();
    let ids = order.iter().map(|&i| ids[i as usize].clone()).collect();
    (ids, layers.iter().map(|l| l.index_select(&index, 0).unwrap()).collect())
}

/// Fits on the rows as given and on three permutations; the maps of fresh test features must be
/// bit-identical.
fn check<F: Fit>(config: &F) -> Result<()> {
    let train = layers(N, 1);
    // Ids that do not sort in row order, so "as given" is not already canonical.
    let ids: Vec<SampleId> = (0..N).map(|i| SampleId::new(format!("img{}", (i * 7) % N))).collect();
    let test = layers(3, 2);
    let reference = config.fit(&ids, &train)?.anomaly_maps(&test, (8, 8))?;
    for seed in 0..3 {
        let (ids, train) = shuffled(&ids, &train, seed);
        let maps = config.fit(&ids, &train)?.anomaly_maps(&test, (8, 8))?;
        let (a, b) =
            (reference.flatten_all()?.to_vec1::<f32>()?, maps.flatten_all()?.to_vec1::<f32>()?);
        let same = a.iter().zip(&b).all(|(x, y)| x.to_bits() == y.to_bits());
        assert!(same, "permutation {seed} changed the model");
    }
    Ok(())
}

#[test]
fn patchcore_greedy_coreset_ignores_row_order() -> Result<()> {
    check(&PatchCoreConfig {
        coreset_fraction: 0.2,
        projection_dim: Some(4),
        ..PatchCoreConfig::roth2022()
    })
}

#[test]
fn patchcore_random_bank_with_neighbours_ignores_row_order() -> Result<()> {
    check(&PatchCoreConfig {
        coreset_fraction: 0.3,
        bank_sampling: BankSampling::Random,
        n_neighbours: 4,
        ..PatchCoreConfig::roth2022()
    })
}

#[test]
fn softpatch_ignores_row_order() -> Result<()> {
    check(&SoftPatchConfig {
        outlier_score: OutlierScore::Lof { k: 3 },
        coreset_fraction: 0.25,
        projection_dim: Some(4),
        ..SoftPatchConfig::jiang2022()
    })
}

#[test]
fn dinomaly_ignores_row_order() -> Result<()> {
    let mut config = DinomalyConfig::guo2025();
    config.head_dim = 4;
    config.decoder_depth = 2;
    config.n_groups = 1;
    config.length = TrainingLength::Iterations(4);
    config.batch_size = 4;
    config.inference_batch_size = 3;
    config.schedule = LrSchedule::WarmCosine { warmup_iters: 1, final_lr: 1e-3 };
    check(&config)
}

#[test]
fn the_same_row_order_under_other_ids_is_another_model() -> Result<()> {
    // Guards against a vacuous pass: ids do steer the random choices.
    let config = PatchCoreConfig {
        coreset_fraction: 0.3,
        bank_sampling: BankSampling::Random,
        ..PatchCoreConfig::roth2022()
    };
    let train = layers(N, 1);
    let a = config.fit(&row_ids(N), &train)?;
    let other: Vec<SampleId> = (0..N).map(|i| SampleId::new(format!("other{i:03}"))).collect();
    let b = config.fit(&other, &train)?;
    assert_ne!(a.bank().to_vec2::<f32>()?, b.bank().to_vec2::<f32>()?);
    Ok(())
}

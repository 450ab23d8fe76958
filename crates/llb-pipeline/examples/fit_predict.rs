//! Fits a detector on a folder of unlabeled images and scores new images, with the library alone:
//! `cargo run -p llb-pipeline --example fit_predict -- TRAIN_DIR TEST_DIR MODEL_DIR CACHE_DIR`.
//! `CACHE_DIR` is `llb fetch`'s cache (it reads `weights/dinov2-vits14.safetensors`); the model
//! folder and the scores (`id,score,anomalous` on stdout) are what `llb fit` and `llb predict`
//! give with their default options (`crates/llb-cli/tests/it/library.rs` checks it).

#![allow(clippy::print_stdout, reason = "the example's output is the scores on stdout")]

use candle_core::Device;
use llb_pipeline::{Error, Extractor, FitSettings, Model, ModelCard, OnBadImage, OutputFolder};
use std::path::PathBuf;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<PathBuf> = std::env::args_os().skip(1).map(PathBuf::from).collect();
    let [train_dir, test_dir, model_dir, cache] = <[PathBuf; 4]>::try_from(args)
        .map_err(|_| "usage: fit_predict TRAIN_DIR TEST_DIR MODEL_DIR CACHE_DIR")?;
    let settings = FitSettings::default();
    settings.check()?; // the rules are resolved before any image is read
    let device = Device::Cpu;
    let weights = cache.join("weights/dinov2-vits14.safetensors");
    let features = llb_features::FeatureCache::open(cache.join("features"))?;
    let extractor = Extractor::open(&settings.encoder, &weights, features, &device)?;

    // Fit: stage 1 screens the training images, stage 2 fits the detector on the kept ones.
    let samples = llb_data::read_image_folder(&train_dir)?;
    let train = extractor.extract(&samples, OnBadImage::Skip)?;
    let groups = llb_pipeline::groups_of(&samples, &train.ids);
    let stage1_dir = cache.join("stage1");
    let key = extractor.cache_key();
    let screening = llb_pipeline::screen(&train, &groups, &settings, &key, Some(&stage1_dir))?;
    let mut fitted = llb_pipeline::fit_final(&train, &settings, screening)?;
    let threshold = llb_pipeline::calibrate_threshold(&train, &fitted.kept, &settings)?;
    fitted.model.name_training_images(&fitted.kept)?;
    let n_kept = fitted.kept.len();
    let card = ModelCard::new(settings, &extractor, &train.ids, n_kept, threshold, None);
    let folder = OutputFolder::create(&model_dir)?;
    folder.save_model(&card, &extractor, &fitted.model)?;
    folder.commit()?;

    // Predict: read the folder back, refuse other encoder weights, score every new image.
    let model = Model::load(&model_dir, &device)?;
    model.check_weights(&extractor)?;
    let test = extractor.extract(&llb_data::read_image_folder(&test_dir)?, OnBadImage::Skip)?;
    let (rule, size) = (model.card.settings.test_score, extractor.image_size_px());
    llb_pipeline::for_each_scored::<Error>(&model.detector, rule, &test, size, |id, score, _| {
        let anomalous = ModelCard::is_anomalous(score, model.card.threshold);
        println!("{id},{score},{anomalous}");
        Ok(())
    })?;
    Ok(())
}

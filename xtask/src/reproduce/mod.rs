//! `cargo xtask reproduce`: fetch, run the committed manifest with the release `llb` binary, and
//! render `results/<name>.json` into `results/<name>.csv`, `docs/tables/<name>.md` and
//! `docs/tables/<name>.svg`; or one shard of it, the merge of the shards, or both as Slurm jobs
//! (see `shards`).

mod render;
mod results;
mod shards;
mod slurm;
mod stats;
mod svg;

use anyhow::Context;
use std::path::{Path, PathBuf};
use xshell::Shell;

/// The default manifest: the built-in benchmark (v2), PatchCore and SoftPatch.
const DEFAULT_MANIFEST: &str = "xtask/manifests/benchmark.json";

/// `--full`: the default grid plus the Dinomaly backbone (hours on two cores).
const FULL_MANIFEST: &str = "xtask/manifests/benchmark-full.json";

/// The 30 Real-IAD categories.
const REALIAD_CATEGORIES: [&str; 30] = [
    "audiojack",
    "bottle_cap",
    "button_battery",
    "end_cap",
    "eraser",
    "fire_hood",
    "mint",
    "mounts",
    "pcb",
    "phone_battery",
    "plastic_nut",
    "plastic_plug",
    "porcelain_doll",
    "regulator",
    "rolled_strip_base",
    "sim_card_set",
    "switch",
    "tape",
    "terminalblock",
    "toothbrush",
    "toy",
    "toy_brick",
    "transistor1",
    "u_block",
    "usb",
    "usb_adaptor",
    "vcpluger",
    "woodstick",
    "wooden_beads",
    "zipper",
];

/// Runs `cargo xtask reproduce [--full | --manifest PATH] [--realiad ROOT [--categories A,B]]
/// [--render-only | --shard I/N | --merge | --slurm [--shards N] [--partition P]
/// [--gpus-per-task G] [--time T] [--submit]] [--out DIR] [--llb PATH | --features F]
/// [--device D] [--no-fetch]`.
pub(crate) fn run(sh: &Shell, args: &[String]) -> anyhow::Result<()> {
    let mut manifest = PathBuf::from(DEFAULT_MANIFEST);
    let mut realiad: Option<PathBuf> = None;
    let mut categories: Vec<String> = REALIAD_CATEGORIES.iter().map(|c| c.to_string()).collect();
    let mut render_only = false;
    let mut options = shards::Options::default();
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "--manifest" => manifest = it.next().context("--manifest needs a path")?.into(),
            "--full" => manifest = FULL_MANIFEST.into(),
            "--realiad" => {
                realiad = Some(it.next().context("--realiad needs the Real-IAD root")?.into())
            }
            "--categories" => {
                let list = it.next().context("--categories needs a comma-separated list")?;
                categories = list.split(',').map(str::to_owned).collect();
            }
            "--render-only" => render_only = true,
            other => {
                anyhow::ensure!(
                    options.parse_arg(other, &mut it)?,
                    "reproduce: unknown argument `{other}`"
                )
            }
        }
    }
    options.check()?;
    if let Some(root) = &realiad {
        manifest = realiad_manifest(&manifest, root, &categories)?;
    }
    let text = std::fs::read_to_string(&manifest)
        .with_context(|| format!("reading {}", manifest.display()))?;
    let name = serde_json::from_str::<serde_json::Value>(&text)?["name"]
        .as_str()
        .context("the manifest has no `name`")?
        .to_owned();
    if render_only {
        return render_files(&options.out_root(), &name);
    }
    shards::run(sh, &options, &manifest, &name, realiad.is_none())
}

/// Renders `results/<name>.json` into the CSV, Markdown and SVG files.
pub(crate) fn render_files(root: &Path, name: &str) -> anyhow::Result<()> {
    let json = root.join("results").join(format!("{name}.json"));
    let text =
        std::fs::read_to_string(&json).with_context(|| format!("reading {}", json.display()))?;
    let results =
        results::Results::parse(&text).with_context(|| format!("parsing {}", json.display()))?;
    let tables = root.join("docs/tables");
    let outputs = [
        (root.join("results").join(format!("{name}.csv")), render::csv(&results)?),
        (tables.join(format!("{name}.md")), render::markdown(&results)),
        (tables.join(format!("{name}-headline.md")), render::headline(&results)),
        (tables.join(format!("{name}.svg")), svg::metric_vs_alpha(&results)),
    ];
    for (path, text) in outputs {
        llb_types::atomic::write(&path, text.as_bytes())
            .with_context(|| format!("writing {}", path.display()))?;
    }
    println!("{}", render::markdown(&results));
    Ok(())
}

/// The default manifest pointed at a Real-IAD copy: the given categories (all 30 by default),
/// its FUIAD splits.
fn realiad_manifest(base: &Path, root: &Path, categories: &[String]) -> anyhow::Result<PathBuf> {
    let text =
        std::fs::read_to_string(base).with_context(|| format!("reading {}", base.display()))?;
    let mut manifest: serde_json::Value = serde_json::from_str(&text)?;
    manifest["name"] = "realiad".into();
    manifest["datasets"] =
        serde_json::json!([{"kind": "realiad", "root": root, "categories": categories}]);
    manifest["contamination_ratios"] = serde_json::json!([0.0, 0.1, 0.2, 0.4]);
    let path = crate::project_root().join("results/realiad.manifest.json");
    llb_types::atomic::write(&path, serde_json::to_string_pretty(&manifest)?.as_bytes())
        .with_context(|| format!("writing {}", path.display()))?;
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Rendering is a pure function of the committed results: the committed tables must be what
    /// the committed JSON renders to (regenerate with `cargo xtask reproduce --render-only`).
    #[test]
    fn committed_results_render_to_committed_tables() {
        let root = crate::project_root();
        let json = root.join("results/benchmark.json");
        let text = std::fs::read_to_string(&json).expect("results/benchmark.json is committed");
        let results = results::Results::parse(&text).unwrap();
        let table = std::fs::read_to_string(root.join("docs/tables/benchmark.md")).unwrap();
        assert_eq!(render::markdown(&results), table, "run `cargo xtask reproduce --render-only`");
        let csv = std::fs::read_to_string(root.join("results/benchmark.csv")).unwrap();
        assert_eq!(render::csv(&results).unwrap(), csv);
        let headline =
            std::fs::read_to_string(root.join("docs/tables/benchmark-headline.md")).unwrap();
        assert_eq!(render::headline(&results), headline);
    }

    /// The README's results table is the generated headline, verbatim: numbers in the README
    /// come from the committed results, never from hand edits.
    #[test]
    fn readme_carries_the_generated_headline() {
        let root = crate::project_root();
        let headline =
            std::fs::read_to_string(root.join("docs/tables/benchmark-headline.md")).unwrap();
        let readme = std::fs::read_to_string(root.join("README.md")).unwrap();
        assert!(
            readme.contains(&headline),
            "README.md must contain docs/tables/benchmark-headline.md"
        );
    }
}

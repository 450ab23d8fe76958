//! How `cargo xtask reproduce` runs a manifest: in one process, as one shard (`--shard I/N`), as
//! the merge of the shards' logs (`--merge`), or as a Slurm array job plus a dependent merge job
//! (`--slurm`), with the `llb` executable built here or given (`--llb`).

use super::slurm::SlurmPlan;
use anyhow::Context;
use std::path::{Path, PathBuf};
use xshell::{Shell, cmd};

/// What to run.
#[derive(Clone, Debug, Default, PartialEq)]
pub(crate) enum Mode {
    /// The whole grid in this process, then the tables.
    #[default]
    Whole,
    /// Shard `I/N` (0-based) of the grid's cells, appended to its own log; no tables.
    Shard(String),
    /// `results/<name>.json` from every log, then the tables.
    Merge,
    /// Write (and with `submit`, submit) the Slurm array and merge scripts.
    Slurm,
}

/// The options of `reproduce` beyond the manifest choice.
#[derive(Clone, Debug, Default)]
pub(crate) struct Options {
    pub(crate) mode: Mode,
    /// Folder standing in for the project root: `results/` and `docs/tables/` go under it.
    pub(crate) out: Option<PathBuf>,
    /// A built `llb` to run instead of building the release one.
    pub(crate) llb: Option<PathBuf>,
    /// Cargo features of the release build, e.g. `cuda`.
    pub(crate) features: Option<String>,
    /// `llb --device`.
    pub(crate) device: Option<String>,
    /// Skip `llb fetch` (the cache is complete, or the nodes have no network).
    pub(crate) no_fetch: bool,
    pub(crate) partition: Option<String>,
    pub(crate) gpus_per_task: Option<u32>,
    pub(crate) time: Option<String>,
    /// Array tasks of `--slurm`.
    pub(crate) shards: Option<usize>,
    /// Submit the scripts with `sbatch`.
    pub(crate) submit: bool,
}

impl Options {
    /// Consumes `arg` (and its value from `rest`) if it is one of these options.
    pub(crate) fn parse_arg(
        &mut self,
        arg: &str,
        rest: &mut std::slice::Iter<'_, String>,
    ) -> anyhow::Result<bool> {
        let mut value =
            |what: &str| rest.next().cloned().with_context(|| format!("{arg} needs {what}"));
        match arg {
            "--shard" => {
                let shard = value("a shard I/N")?;
                check_shard(&shard)?;
                self.set_mode(Mode::Shard(shard))?;
            }
            "--merge" => self.set_mode(Mode::Merge)?,
            "--slurm" => self.set_mode(Mode::Slurm)?,
            "--out" => self.out = Some(value("a folder")?.into()),
            "--llb" => self.llb = Some(value("the path of an llb executable")?.into()),
            "--features" => self.features = Some(value("cargo features, e.g. cuda")?),
            "--device" => self.device = Some(value("cpu, cuda or cuda:N")?),
            "--no-fetch" => self.no_fetch = true,
            "--partition" => self.partition = Some(value("a partition")?),
            "--gpus-per-task" => {
                let gpus = value("a number of GPUs")?;
                self.gpus_per_task = Some(gpus.parse().with_context(|| {
                    format!("--gpus-per-task `{gpus}` is not a number of GPUs")
                })?);
            }
            "--time" => self.time = Some(value("a time limit, e.g. 04:00:00")?),
            "--shards" => {
                let n = value("a number of shards")?;
                let parsed: usize = n.parse().ok().filter(|&n| n > 0).with_context(|| {
                    format!("--shards `{n}` is not a positive number of shards")
                })?;
                self.shards = Some(parsed);
            }
            "--submit" => self.submit = true,
            _ => return Ok(false),
        }
        Ok(true)
    }

    fn set_mode(&mut self, mode: Mode) -> anyhow::Result<()> {
        anyhow::ensure!(
            self.mode == Mode::Whole,
            "reproduce: choose one of --shard, --merge and --slurm"
        );
        self.mode = mode;
        Ok(())
    }

    /// Slurm-only options outside `--slurm` are mistakes, not silently ignored.
    pub(crate) fn check(&self) -> anyhow::Result<()> {
        if self.mode != Mode::Slurm {
            let slurm_only = [
                ("--partition", self.partition.is_some()),
                ("--gpus-per-task", self.gpus_per_task.is_some()),
                ("--time", self.time.is_some()),
                ("--shards", self.shards.is_some()),
                ("--submit", self.submit),
            ];
            if let Some((flag, _)) = slurm_only.iter().find(|(_, set)| *set) {
                anyhow::bail!("reproduce: {flag} only applies with --slurm");
            }
        }
        Ok(())
    }

    /// The folder holding `results/` and `docs/tables/`.
    pub(crate) fn out_root(&self) -> PathBuf {
        let root = crate::project_root();
        self.out.as_ref().map_or(root.clone(), |out| root.join(out))
    }
}

/// `I/N` with `0 ≤ I < N`, as `llb experiment --shard` takes it.
fn check_shard(shard: &str) -> anyhow::Result<()> {
    let parsed = shard
        .split_once('/')
        .and_then(|(i, n)| Some((i.parse::<usize>().ok()?, n.parse::<usize>().ok()?)));
    anyhow::ensure!(
        matches!(parsed, Some((i, n)) if i < n),
        "--shard `{shard}` is not a shard I/N (0-based: 0 ≤ I < N, e.g. 0/4)"
    );
    Ok(())
}

/// Runs the manifest as `options` say; `fetch` is false for data sets outside the cache.
pub(crate) fn run(
    sh: &Shell,
    options: &Options,
    manifest: &Path,
    name: &str,
    fetch: bool,
) -> anyhow::Result<()> {
    let root = crate::project_root();
    let manifest = root.join(manifest);
    let out = options.out_root();
    let results = out.join("results");
    let llb = match &options.llb {
        Some(llb) => root.join(llb),
        None => {
            let mut args = vec!["--locked", "--package", "llb-cli"];
            if let Some(features) = &options.features {
                args.extend(["--features", features]);
            }
            crate::cargo_build_executable(sh, &args, "llb")?
        }
    };
    if fetch && !options.no_fetch && options.mode != Mode::Merge {
        cmd!(sh, "{llb} fetch").run().context("llb fetch")?;
    }
    let device = options.device.clone().unwrap_or_else(|| "cpu".into());
    let experiment = |extra: &[&str]| {
        cmd!(
            sh,
            "{llb} --device {device} experiment --manifest {manifest} --out {results} {extra...}"
        )
        .run()
        .with_context(|| format!("llb experiment {}", extra.join(" ")))
    };
    match &options.mode {
        Mode::Whole => experiment(&[])?,
        Mode::Shard(shard) => return experiment(&["--shard", shard]),
        Mode::Merge => experiment(&["--merge"])?,
        Mode::Slurm => {
            return slurm(sh, options, SlurmPlanParts { manifest, name, llb, out, device });
        }
    }
    super::render_files(&out, name)
}

/// The resolved paths of a Slurm plan.
struct SlurmPlanParts<'a> {
    manifest: PathBuf,
    name: &'a str,
    llb: PathBuf,
    out: PathBuf,
    device: String,
}

/// Writes the array and merge scripts under `<out>/results/slurm`, prints them, and with
/// `--submit` submits both; the last line printed is JSON naming the scripts (and job ids).
fn slurm(sh: &Shell, options: &Options, parts: SlurmPlanParts<'_>) -> anyhow::Result<()> {
    let cache = std::env::var_os("LLB_CACHE").map_or_else(
        || PathBuf::from(std::env::var_os("HOME").unwrap_or_default()).join(".cache/llb"),
        PathBuf::from,
    );
    let plan = SlurmPlan {
        name: parts.name.to_owned(),
        manifest: parts.manifest,
        llb: parts.llb,
        xtask: std::env::current_exe().context("the path of this xtask executable")?,
        out: parts.out,
        cache: crate::project_root().join(cache),
        device: parts.device,
        shards: options.shards.unwrap_or(4),
        partition: options.partition.clone(),
        gpus_per_task: options.gpus_per_task,
        time: options.time.clone(),
    };
    let dir = plan.dir();
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let array = dir.join(format!("{}.array.sbatch", plan.name));
    let merge = dir.join(format!("{}.merge.sbatch", plan.name));
    for (path, text) in [(&array, plan.array_script()), (&merge, plan.merge_script())] {
        llb_types::atomic::write(path, text.as_bytes())
            .with_context(|| format!("writing {}", path.display()))?;
        println!("# {}\n{text}", path.display());
    }
    let mut report = serde_json::json!({"array_script": array, "merge_script": merge});
    if options.submit {
        let array_job = job_id(&cmd!(sh, "sbatch --parsable {array}").read().context("sbatch")?)?;
        let dependency = format!("--dependency=afterok:{array_job}");
        let merge_job =
            job_id(&cmd!(sh, "sbatch --parsable {dependency} {merge}").read().context("sbatch")?)?;
        report["array_job"] = array_job.into();
        report["merge_job"] = merge_job.into();
    } else {
        println!(
            "# submit: id=$(sbatch --parsable {}) && sbatch --dependency=afterok:$id {}",
            array.display(),
            merge.display()
        );
    }
    println!("{report}");
    Ok(())
}

/// The job id in `sbatch --parsable`'s answer (`<id>` or `<id>;<cluster>`).
fn job_id(answer: &str) -> anyhow::Result<String> {
    let id = answer.trim().split(';').next().unwrap_or_default();
    anyhow::ensure!(
        !id.is_empty() && id.chars().all(|c| c.is_ascii_digit()),
        "sbatch answered `{}`, not a job id",
        answer.trim()
    );
    Ok(id.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> anyhow::Result<Options> {
        let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
        let mut options = Options::default();
        let mut it = args.iter();
        while let Some(arg) = it.next() {
            anyhow::ensure!(options.parse_arg(arg, &mut it)?, "unknown {arg}");
        }
        options.check()?;
        Ok(options)
    }

    fn check_error(args: &[&str], expected: &str) {
        let err = parse(args).unwrap_err().to_string();
        assert!(err.contains(expected), "{args:?}: {err}");
    }

    #[test]
    fn options_parse_and_mistakes_are_named() {
        let slurm = parse(&["--slurm", "--shards", "3", "--partition", "gpu", "--submit"]).unwrap();
        assert_eq!((slurm.mode, slurm.shards, slurm.submit), (Mode::Slurm, Some(3), true));
        assert_eq!(parse(&["--shard", "2/3"]).unwrap().mode, Mode::Shard("2/3".into()));
        check_error(&["--shard", "3/3"], "0 ≤ I < N");
        check_error(&["--shard", "1"], "`1` is not a shard");
        check_error(&["--shard", "0/2", "--merge"], "choose one of");
        check_error(&["--partition", "gpu"], "--partition only applies with --slurm");
        check_error(&["--slurm", "--shards", "0"], "not a positive number");
        check_error(&["--slurm", "--gpus-per-task", "x"], "`x` is not a number of GPUs");
        check_error(&["--shard"], "--shard needs a shard I/N");
    }

    #[test]
    fn sbatch_answers_give_job_ids() {
        assert_eq!(job_id("123\n").unwrap(), "123");
        assert_eq!(job_id("77;cluster").unwrap(), "77");
        assert!(job_id("sbatch: error: x").is_err());
    }

    /// The Kubernetes Indexed Job of `docs/cluster.md` runs as many shards as it has
    /// completions, and its merge reads the same manifest and results folder.
    #[test]
    fn kubernetes_job_shards_match_its_completions() {
        let root = crate::project_root().join("deploy/kubernetes");
        let shards = std::fs::read_to_string(root.join("llb-experiment.yaml")).unwrap();
        let value = |key: &str| {
            let line = shards.lines().find_map(|l| l.trim().strip_prefix(key)).unwrap();
            line.trim().to_owned()
        };
        let completions = value("completions:");
        assert_eq!(value("parallelism:"), completions);
        assert_eq!(value("completionMode:"), "Indexed");
        let shard = format!("--shard \"${{JOB_COMPLETION_INDEX}}/{completions}\"");
        assert!(shards.contains(&shard), "no `{shard}` in llb-experiment.yaml");
        let merge = std::fs::read_to_string(root.join("llb-merge.yaml")).unwrap();
        for same in ["/work/manifests/benchmark.json", "/work/results", "claimName: llb-work"] {
            assert!(shards.contains(same) && merge.contains(same), "{same}");
        }
    }
}

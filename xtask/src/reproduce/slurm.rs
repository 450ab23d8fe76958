//! `cargo xtask reproduce --slurm`: the two `sbatch` scripts of a sharded run, as pure text.
//! The array script runs one `llb experiment --shard I/N` per task (`--array=0-<N-1>`, so
//! `SLURM_ARRAY_TASK_ID` is the 0-based shard); the merge script, submitted with
//! `--dependency=afterok:<array job>`, runs `llb experiment --merge` and renders the tables.

use std::path::{Path, PathBuf};

/// Everything the scripts name; every path absolute (jobs start in another shell, perhaps on
/// another node that sees the same shared file system).
#[derive(Clone, Debug)]
pub(crate) struct SlurmPlan {
    /// The manifest's `name` (job names, log and result files).
    pub(crate) name: String,
    /// The manifest file.
    pub(crate) manifest: PathBuf,
    /// The `llb` executable the tasks run.
    pub(crate) llb: PathBuf,
    /// The `xtask` executable the merge job renders with.
    pub(crate) xtask: PathBuf,
    /// The folder holding `results/` and `docs/tables/` (the project root by default).
    pub(crate) out: PathBuf,
    /// The shared asset, feature and stage-1 cache (`LLB_CACHE` in every job).
    pub(crate) cache: PathBuf,
    /// `llb --device`: `cpu`, `cuda` or `cuda:N`.
    pub(crate) device: String,
    /// Array tasks, one per shard.
    pub(crate) shards: usize,
    /// `sbatch --partition`.
    pub(crate) partition: Option<String>,
    /// `sbatch --gpus-per-task` (array tasks only; the merge needs no GPU).
    pub(crate) gpus_per_task: Option<u32>,
    /// `sbatch --time` of each array task, e.g. `04:00:00`.
    pub(crate) time: Option<String>,
}

impl SlurmPlan {
    /// Where the scripts and the jobs' logs go: `<out>/results/slurm`.
    pub(crate) fn dir(&self) -> PathBuf {
        self.out.join("results").join("slurm")
    }

    /// The `#SBATCH` lines every job shares.
    fn common(&self, job: &str, log: &str) -> String {
        let mut lines = format!("#SBATCH --job-name={job}\n#SBATCH --ntasks=1\n");
        if let Some(partition) = &self.partition {
            lines.push_str(&format!("#SBATCH --partition={partition}\n"));
        }
        lines.push_str(&format!("#SBATCH --output={}\n", self.dir().join(log).display()));
        lines
    }

    /// The prologue of every job: strict shell, the shared cache, the working folder.
    fn prologue(&self) -> String {
        format!(
            "set -euo pipefail\nexport LLB_CACHE={}\ncd {}\n",
            quote(&self.cache),
            quote(&self.out)
        )
    }

    /// The array script: `--array=0-<N-1>`, one shard per task.
    pub(crate) fn array_script(&self) -> String {
        let mut s = format!(
            "#!/bin/bash\n# Shards of the llb experiment `{}`: task I runs `llb experiment --shard I/{}`.\n\
             # Written by `cargo xtask reproduce --slurm`; the merge job waits for every task.\n",
            self.name, self.shards
        );
        s.push_str(
            &self.common(&format!("llb-{}", self.name), &format!("{}-%A_%a.out", self.name)),
        );
        s.push_str(&format!("#SBATCH --array=0-{}\n", self.shards.saturating_sub(1)));
        if let Some(gpus) = self.gpus_per_task {
            s.push_str(&format!("#SBATCH --gpus-per-task={gpus}\n"));
        }
        if let Some(time) = &self.time {
            s.push_str(&format!("#SBATCH --time={time}\n"));
        }
        s.push_str(&self.prologue());
        s.push_str(&format!(
            "exec {} --device {} experiment --manifest {} --out {} --shard \"${{SLURM_ARRAY_TASK_ID}}/{}\"\n",
            quote(&self.llb),
            self.device,
            quote(&self.manifest),
            quote(&self.out.join("results")),
            self.shards
        ));
        s
    }

    /// The merge script: `results/<name>.json` from the shards' logs, then the tables.
    /// Submitted with `--dependency=afterok:<array job>`; a failed shard cancels it.
    pub(crate) fn merge_script(&self) -> String {
        let mut s = format!(
            "#!/bin/bash\n# Merge of the llb experiment `{}`: results/{}.json from the {} shard logs, then the tables.\n\
             # Written by `cargo xtask reproduce --slurm`; submitted with --dependency=afterok:<array job>.\n",
            self.name, self.name, self.shards
        );
        s.push_str(
            &self.common(
                &format!("llb-{}-merge", self.name),
                &format!("{}-merge-%j.out", self.name),
            ),
        );
        s.push_str("#SBATCH --kill-on-invalid-dep=yes\n");
        s.push_str(&self.prologue());
        s.push_str(&format!(
            "{} experiment --manifest {} --out {} --merge\n",
            quote(&self.llb),
            quote(&self.manifest),
            quote(&self.out.join("results"))
        ));
        s.push_str(&format!(
            "exec {} reproduce --manifest {} --out {} --render-only\n",
            quote(&self.xtask),
            quote(&self.manifest),
            quote(&self.out)
        ));
        s
    }
}

/// `path` as one shell word: bare when it holds only safe characters, else single-quoted.
fn quote(path: &Path) -> String {
    let text = path.display().to_string();
    let safe = |c: char| c.is_ascii_alphanumeric() || "/._-+=:,@%".contains(c);
    if !text.is_empty() && text.chars().all(safe) {
        text
    } else {
        format!("'{}'", text.replace('\'', r"'\''"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use expect_test::expect;

    fn plan() -> SlurmPlan {
        SlurmPlan {
            name: "benchmark".into(),
            manifest: "/home/r/llb/xtask/manifests/benchmark.json".into(),
            llb: "/home/r/llb/target/release/llb".into(),
            xtask: "/home/r/llb/target/debug/xtask".into(),
            out: "/home/r/llb".into(),
            cache: "/shared/llb cache".into(),
            device: "cuda".into(),
            shards: 8,
            partition: Some("gpu".into()),
            gpus_per_task: Some(1),
            time: Some("04:00:00".into()),
        }
    }

    #[test]
    fn array_script_runs_one_shard_per_task() {
        expect![[r#"
            #!/bin/bash
            # Shards of the llb experiment `benchmark`: task I runs `llb experiment --shard I/8`.
            # Written by `cargo xtask reproduce --slurm`; the merge job waits for every task.
            #SBATCH --job-name=llb-benchmark
            #SBATCH --ntasks=1
            #SBATCH --partition=gpu
            #SBATCH --output=/home/r/llb/results/slurm/benchmark-%A_%a.out
            #SBATCH --array=0-7
            #SBATCH --gpus-per-task=1
            #SBATCH --time=04:00:00
            set -euo pipefail
            export LLB_CACHE='/shared/llb cache'
            cd /home/r/llb
            exec /home/r/llb/target/release/llb --device cuda experiment --manifest /home/r/llb/xtask/manifests/benchmark.json --out /home/r/llb/results --shard "${SLURM_ARRAY_TASK_ID}/8"
        "#]]
        .assert_eq(&plan().array_script());
    }

    #[test]
    fn merge_script_merges_then_renders_without_a_gpu() {
        expect![[r#"
            #!/bin/bash
            # Merge of the llb experiment `benchmark`: results/benchmark.json from the 8 shard logs, then the tables.
            # Written by `cargo xtask reproduce --slurm`; submitted with --dependency=afterok:<array job>.
            #SBATCH --job-name=llb-benchmark-merge
            #SBATCH --ntasks=1
            #SBATCH --partition=gpu
            #SBATCH --output=/home/r/llb/results/slurm/benchmark-merge-%j.out
            #SBATCH --kill-on-invalid-dep=yes
            set -euo pipefail
            export LLB_CACHE='/shared/llb cache'
            cd /home/r/llb
            /home/r/llb/target/release/llb experiment --manifest /home/r/llb/xtask/manifests/benchmark.json --out /home/r/llb/results --merge
            exec /home/r/llb/target/debug/xtask reproduce --manifest /home/r/llb/xtask/manifests/benchmark.json --out /home/r/llb --render-only
        "#]]
        .assert_eq(&plan().merge_script());
    }

    #[test]
    fn cpu_plans_without_partition_name_no_gpu_and_quote_odd_paths() {
        let plan = SlurmPlan {
            partition: None,
            gpus_per_task: None,
            time: None,
            device: "cpu".into(),
            shards: 1,
            llb: "/it's/llb".into(),
            ..plan()
        };
        let script = plan.array_script();
        assert!(script.contains("#SBATCH --array=0-0\n"), "{script}");
        for absent in ["--partition", "--gpus-per-task", "--time"] {
            assert!(!script.contains(absent), "{absent} in\n{script}");
        }
        assert!(script.contains(r"exec '/it'\''s/llb' --device cpu"), "{script}");
    }
}

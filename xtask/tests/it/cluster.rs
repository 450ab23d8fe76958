//! A one-node Slurm cluster on this machine, from the Debian packages `slurm-wlm` and `munge`:
//! munged, slurmctld and slurmd started as root with every file (key, socket, state, spool,
//! logs, configuration) in a folder of the test's and ports that were free a moment before.
//! Dropping the [`Cluster`] stops the three daemons it started, and only those.

use anyhow::{Context, bail, ensure};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

/// The daemons of a running one-node cluster.
pub(crate) struct Cluster {
    dir: PathBuf,
    /// Its `slurm.conf`; client commands find it through `SLURM_CONF`.
    pub(crate) conf: PathBuf,
}

/// Runs `program args`, failing with its stderr when it does not succeed.
pub(crate) fn run(command: &mut Command) -> anyhow::Result<Output> {
    let output = command.output().with_context(|| format!("starting {command:?}"))?;
    ensure!(
        output.status.success(),
        "{command:?} exited with {}:\n{}{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    Ok(output)
}

fn stdout(command: &mut Command) -> anyhow::Result<String> {
    Ok(String::from_utf8_lossy(&run(command)?.stdout).trim().to_owned())
}

/// A TCP port nobody listened on a moment ago.
fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("0.0.0.0:0")?.local_addr()?.port())
}

impl Cluster {
    /// Starts munged, slurmctld and slurmd with their files under `dir` and waits until the
    /// node is idle.
    ///
    /// # Errors
    /// Why the cluster could not start: not root, a missing program, a daemon that exited, or a
    /// node that never became idle (with the daemons' logs).
    pub(crate) fn start(dir: &Path) -> anyhow::Result<Self> {
        let uid = stdout(Command::new("id").arg("-u"))?;
        ensure!(uid == "0", "the daemons run as root (SlurmUser=root), but this is uid {uid}");
        for program in ["munged", "slurmctld", "slurmd", "sbatch", "scontrol", "sinfo"] {
            let found = Command::new("sh")
                .args(["-c", &format!("command -v {program}")])
                .output()
                .is_ok_and(|o| o.status.success());
            ensure!(found, "`{program}` is not installed: `apt-get install slurm-wlm munge`");
        }
        for sub in ["munge", "state", "spool", "log"] {
            std::fs::create_dir_all(dir.join(sub))?;
        }
        let cluster = Cluster { dir: dir.to_path_buf(), conf: dir.join("slurm.conf") };
        // From here on, dropping `cluster` stops whatever started.
        let mut key = vec![0u8; 1024];
        std::io::Read::read_exact(&mut std::fs::File::open("/dev/urandom")?, &mut key)?;
        let key_file = dir.join("munge/munge.key");
        std::fs::write(&key_file, key)?;
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&key_file, std::fs::Permissions::from_mode(0o600))?;
        std::fs::set_permissions(dir.join("munge"), std::fs::Permissions::from_mode(0o700))?;
        run(Command::new("munged")
            .arg("--force")
            .arg(format!("--socket={}", cluster.socket().display()))
            .arg(format!("--key-file={}", key_file.display()))
            .arg(format!("--log-file={}", dir.join("log/munged.log").display()))
            .arg(format!("--pid-file={}", dir.join("munged.pid").display()))
            .arg(format!("--seed-file={}", dir.join("munge/seed").display())))
        .context("starting munged")?;
        let host = stdout(Command::new("hostname").arg("-s"))?;
        let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
        std::fs::write(&cluster.conf, cluster.config(&host, cpus, free_port()?, free_port()?))?;
        let conf = cluster.conf.clone();
        run(Command::new("slurmctld").arg("-f").arg(&conf).arg("-i"))
            .context("starting slurmctld")?;
        run(Command::new("slurmd").arg("-f").arg(&conf)).context("starting slurmd")?;
        let started = Instant::now();
        loop {
            let state = cluster.client("sinfo").args(["-h", "-N", "-o", "%t"]).output();
            let state = state.map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned());
            match state.as_deref() {
                Ok("idle") => return Ok(cluster),
                _ if started.elapsed() > Duration::from_secs(60) => {
                    bail!("node `{host}` not idle after 60 s ({state:?}){}", cluster.logs())
                }
                _ => std::thread::sleep(Duration::from_millis(250)),
            }
        }
    }

    fn socket(&self) -> PathBuf {
        self.dir.join("munge/munge.sock")
    }

    /// `slurm.conf` for one node, `host`, with `cpus` CPUs: no cgroups, no accounting.
    fn config(&self, host: &str, cpus: usize, ctld_port: u16, slurmd_port: u16) -> String {
        let d = self.dir.display();
        format!(
            "ClusterName=llbtest\nSlurmctldHost={host}\nSlurmctldPort={ctld_port}\n\
             SlurmdPort={slurmd_port}\nSlurmUser=root\nSlurmdUser=root\nAuthType=auth/munge\n\
             CredType=cred/munge\nAuthInfo=socket={socket}\nStateSaveLocation={d}/state\n\
             SlurmdSpoolDir={d}/spool\nSlurmctldPidFile={d}/slurmctld.pid\n\
             SlurmdPidFile={d}/slurmd.pid\nSlurmctldLogFile={d}/log/slurmctld.log\n\
             SlurmdLogFile={d}/log/slurmd.log\nProctrackType=proctrack/linuxproc\n\
             TaskPlugin=task/none\nJobAcctGatherType=jobacct_gather/none\n\
             AccountingStorageType=accounting_storage/none\nJobCompType=jobcomp/none\n\
             SchedulerType=sched/builtin\nSelectType=select/cons_tres\n\
             SelectTypeParameters=CR_CPU\nReturnToService=2\nMpiDefault=none\n\
             MinJobAge=3600\n\
             NodeName={host} CPUs={cpus} RealMemory=1000 State=UNKNOWN\n\
             PartitionName=debug Nodes={host} Default=YES MaxTime=INFINITE State=UP\n",
            socket = self.socket().display()
        )
    }

    /// A Slurm client command (`sbatch`, `scontrol`, …) pointed at this cluster.
    pub(crate) fn client(&self, program: &str) -> Command {
        let mut command = Command::new(program);
        command.env("SLURM_CONF", &self.conf);
        command
    }

    /// The `JobState` of every job of `id` (one per array task), from `scontrol show job`.
    pub(crate) fn job_states(&self, id: &str) -> anyhow::Result<Vec<String>> {
        let text = stdout(self.client("scontrol").args(["show", "job", "-o", id]))?;
        Ok(text
            .lines()
            .filter_map(|l| l.split_whitespace().find_map(|f| f.strip_prefix("JobState=")))
            .map(str::to_owned)
            .collect())
    }

    /// Waits until every job of `id` has ended, returning their final states.
    ///
    /// # Errors
    /// Still running after `timeout`, or `scontrol` failing.
    pub(crate) fn wait(&self, id: &str, timeout: Duration) -> anyhow::Result<Vec<String>> {
        let started = Instant::now();
        loop {
            let states = self.job_states(id)?;
            let ended =
                ["COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "NODE_FAIL", "OUT_OF_MEMORY"];
            if !states.is_empty() && states.iter().all(|s| ended.contains(&s.as_str())) {
                return Ok(states);
            }
            ensure!(
                started.elapsed() < timeout,
                "job {id} has not ended after {timeout:?}: {states:?}{}",
                self.logs()
            );
            std::thread::sleep(Duration::from_millis(500));
        }
    }

    /// The daemons' logs, for failure messages.
    pub(crate) fn logs(&self) -> String {
        ["munged", "slurmctld", "slurmd"]
            .iter()
            .map(|d| {
                let path = self.dir.join(format!("log/{d}.log"));
                let text = std::fs::read_to_string(&path).unwrap_or_else(|e| e.to_string());
                let tail: Vec<&str> = text.lines().rev().take(40).collect();
                let tail: Vec<&str> = tail.into_iter().rev().collect();
                format!("\n--- {} (last 40 lines)\n{}", path.display(), tail.join("\n"))
            })
            .collect()
    }

    /// The pid in `file`, if the process still runs.
    fn live_pid(&self, file: &str) -> Option<String> {
        let pid = std::fs::read_to_string(self.dir.join(file)).ok()?.trim().to_owned();
        Path::new("/proc").join(&pid).exists().then_some(pid)
    }
}

impl Drop for Cluster {
    /// Asks slurmctld to shut the cluster down, then stops by pid whatever of the three daemons
    /// still runs (SIGTERM, then SIGKILL after 10 s).
    fn drop(&mut self) {
        let _ = self.client("scontrol").arg("shutdown").output();
        for signal in ["-TERM", "-KILL"] {
            let pids: Vec<String> = ["slurmctld.pid", "slurmd.pid", "munged.pid"]
                .iter()
                .filter_map(|f| self.live_pid(f))
                .collect();
            for pid in &pids {
                let _ = Command::new("kill").args([signal, pid]).output();
            }
            let started = Instant::now();
            while started.elapsed() < Duration::from_secs(10)
                && pids.iter().any(|p| Path::new("/proc").join(p).exists())
            {
                std::thread::sleep(Duration::from_millis(100));
            }
        }
    }
}

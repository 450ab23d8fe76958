//! Argument parsing, logging set-up and dispatch to the subcommands.

use clap::{Parser, Subcommand};

use crate::{eval_cmd, experiment, fetch_cmd, fit_cmd, metrics_cmd, predict_cmd, review_cmd};

/// Noisy-data image anomaly detection: learning-bias purification (arXiv 2508.07441).
#[derive(Debug, Parser)]
#[command(name = "llb", version, about)]
struct Cli {
    /// More detail in error messages and logs (repeat for more).
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    verbose: u8,
    /// Where the networks and detectors run: `cpu`, `cuda` (GPU 0) or `cuda:N` (GPU N; needs an
    /// `llb` built with `--features cuda`).
    #[arg(long, global = true, default_value = "cpu", value_name = "cpu|cuda|cuda:N")]
    device: DeviceChoice,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Fetch texture photos, Fashion-MNIST and pretrained weights into the asset cache.
    Fetch(fetch_cmd::FetchArgs),
    /// Fit a detector on a training set: stage-1 screening, then the final model on the kept images.
    Fit(fit_cmd::FitArgs),
    /// Stage 1 alone: rank the training images by how defective they look and list the ones to drop.
    Purify(fit_cmd::FitArgs),
    /// Score new images with a fitted model: scores, verdicts, heat-map overlays and report.html.
    Predict(predict_cmd::PredictArgs),
    /// The review page of a score table alone (another selection rule, or another tool's
    /// scores), without refitting.
    Review(review_cmd::ReviewArgs),
    /// Metrics of a fitted model on a labelled test split.
    Eval(eval_cmd::EvalArgs),
    /// Run a manifest's grid of data sets, contamination ratios, methods and ablations
    /// (what `cargo xtask reproduce` runs).
    Experiment(experiment::ExperimentArgs),
    /// Image metrics from a CSV of scores, pixel metrics from `.npy` maps and PNG masks (JSON on
    /// stdout; exit code 2 for bad input).
    Metrics(metrics_cmd::MetricsArgs),
}

/// Parses the arguments, runs the subcommand and maps errors to exit codes.
pub(crate) fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let device = match cli.device.open() {
        Ok(device) => device,
        Err(err) => return exit_code(Err(err)),
    };
    let result = match &cli.command {
        Command::Fetch(args) => fetch_cmd::run(args, cli.verbose),
        Command::Fit(args) => with_logs(cli.verbose, || fit_cmd::run(args, false, &device)),
        Command::Purify(args) => with_logs(cli.verbose, || fit_cmd::run(args, true, &device)),
        Command::Predict(args) => with_logs(cli.verbose, || predict_cmd::run(args, &device)),
        Command::Review(args) => with_logs(cli.verbose, || review_cmd::run(args)),
        Command::Eval(args) => with_logs(cli.verbose, || eval_cmd::run(args, &device)),
        Command::Experiment(args) => with_logs(cli.verbose, || experiment::run(args, &device)),
        Command::Metrics(args) => {
            init_tracing(cli.verbose);
            return metrics_cmd::main(args); // Exit code 2 for bad input, 1 otherwise.
        }
    };
    exit_code(result)
}

/// The `--device` option: which candle device runs the networks and detectors.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum DeviceChoice {
    /// The CPU (the default).
    Cpu,
    /// The CUDA GPU of this ordinal (`cuda` is `cuda:0`).
    Cuda(usize),
}

impl std::str::FromStr for DeviceChoice {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "cpu" => Ok(Self::Cpu),
            "cuda" => Ok(Self::Cuda(0)),
            _ => s
                .strip_prefix("cuda:")
                .and_then(|n| n.parse().ok())
                .map(Self::Cuda)
                .ok_or_else(|| format!("`{s}` is not a device: use cpu, cuda or cuda:N")),
        }
    }
}

impl std::fmt::Display for DeviceChoice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Cpu => f.write_str("cpu"),
            Self::Cuda(n) => write!(f, "cuda:{n}"),
        }
    }
}

impl DeviceChoice {
    /// Opens the device. A CUDA device in an `llb` built without the `cuda` feature is an input
    /// error (exit code 2); a CUDA device that the driver cannot open is a failure (exit code 1).
    fn open(self) -> anyhow::Result<candle_core::Device> {
        match self {
            Self::Cpu => Ok(candle_core::Device::Cpu),
            Self::Cuda(_) if !cfg!(feature = "cuda") => Err(metrics_cmd::bad(format!(
                "--device {self}: this llb was built without the `cuda` feature (rebuild with \
                 `cargo build --release -p llb-cli --features cuda`, or use --device cpu)"
            ))),
            Self::Cuda(ordinal) => candle_core::Device::new_cuda(ordinal).map_err(|e| {
                anyhow::Error::new(e).context(format!("opening CUDA device {ordinal}"))
            }),
        }
    }
}

/// Maps a subcommand's result to an exit code, printing the error and its context on one line
/// on failure: 2 when the input is at fault (a file, a data set, a rule name, an option), 1 for
/// an internal failure.
#[allow(clippy::print_stderr, reason = "a command line reports its errors on stderr")]
fn exit_code(result: anyhow::Result<()>) -> std::process::ExitCode {
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err:#}");
            std::process::ExitCode::from(if is_bad_input(&err) { 2 } else { 1 })
        }
    }
}

/// `true` when some error in the chain blames the input: a data-set, metric or rule error from
/// the libraries, a pipeline error that blames the input (`llb_pipeline::Error::blames_input`),
/// a missing file, or an option the command line rejected. The one place errors become exit
/// codes.
fn is_bad_input(err: &anyhow::Error) -> bool {
    err.chain().any(|e| {
        e.is::<metrics_cmd::BadInput>()
            || e.downcast_ref::<llb_pipeline::Error>()
                .is_some_and(llb_pipeline::Error::blames_input)
            || e.downcast_ref::<llb_submodel::Error>()
                .is_some_and(llb_submodel::Error::blames_input)
            || e.is::<llb_data::Error>()
            || e.is::<llb_metrics::Error>()
            || e.is::<llb_purify::Error>()
            || e.downcast_ref::<std::io::Error>()
                .is_some_and(|io| io.kind() == std::io::ErrorKind::NotFound)
    })
}

/// Installs the stderr logger, then runs `f`.
fn with_logs(verbose: u8, f: impl FnOnce() -> anyhow::Result<()>) -> anyhow::Result<()> {
    init_tracing(verbose);
    f()
}

/// Installs a stderr logger filtered by `RUST_LOG` (default `info`, `debug` with `-v`), with
/// progress bars for long spans when stderr is a terminal; does nothing when a subscriber is
/// already installed.
pub(crate) fn init_tracing(verbose: u8) {
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    let default = if verbose > 0 { "debug" } else { "info" };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let terminal = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let indicatif = tracing_indicatif::IndicatifLayer::new();
    let fmt = tracing_subscriber::fmt::layer()
        .with_ansi(terminal)
        .with_writer(indicatif.get_stderr_writer());
    let _already_installed = tracing_subscriber::registry()
        .with(filter)
        .with(fmt)
        .with(terminal.then_some(indicatif))
        .try_init();
}

#[cfg(test)]
mod tests {
    use super::{DeviceChoice, is_bad_input};

    #[test]
    fn device_choices_parse_and_print_back() {
        for (text, choice) in [
            ("cpu", DeviceChoice::Cpu),
            ("cuda", DeviceChoice::Cuda(0)),
            ("cuda:3", DeviceChoice::Cuda(3)),
        ] {
            assert_eq!(text.parse::<DeviceChoice>(), Ok(choice));
        }
        assert_eq!(DeviceChoice::Cuda(3).to_string(), "cuda:3");
        for bad in ["gpu", "cuda:", "cuda:x", "cuda:-1", "CPU", "cuda0"] {
            let err = bad.parse::<DeviceChoice>().unwrap_err();
            assert!(err.contains("cpu, cuda or cuda:N"), "{bad}: {err}");
        }
    }

    #[test]
    fn cpu_opens() {
        assert!(DeviceChoice::Cpu.open().unwrap().is_cpu());
    }

    #[cfg(not(feature = "cuda"))]
    #[test]
    fn cuda_without_the_feature_is_bad_input() {
        let err = DeviceChoice::Cuda(1).open().unwrap_err();
        assert!(is_bad_input(&err));
        assert!(format!("{err:#}").contains("built without the `cuda` feature"), "{err:#}");
    }

    #[test]
    fn input_errors_are_told_from_internal_ones() {
        let missing = std::io::Error::new(std::io::ErrorKind::NotFound, "no such file");
        assert!(is_bad_input(&anyhow::Error::new(missing).context("reading model/llb.json")));
        assert!(is_bad_input(&crate::metrics_cmd::bad("--data needs --category")));
        let rule =
            llb_purify::AggregatorRegistry::with_builtins().build("no-such-rule").err().unwrap();
        assert!(is_bad_input(&anyhow::Error::new(rule)));
        assert!(!is_bad_input(&anyhow::anyhow!("tensor backend failed")));
    }
}

//! End-to-end tests of the `llb` binary: each module runs the built executable.

// Bad input through the binary (corrupt images, empty folders, out-of-range settings): the rows
// of the bad-input table in docs/reliability.md.
mod bad_input;

// SIGKILL at 20 points of `llb fit` and `llb experiment` then resume, and two fits on one cache at
// once: outputs bit-identical to an uninterrupted run alone, no partial file left.
mod crash;

// The library route: `llb-pipeline`'s `fit_predict` example gives `llb fit` + `llb predict`'s model
// and scores bit for bit.
mod library;

// `llb metrics` on temporary CSV files: JSON keys on stdout, exit code 2 naming a bad file.
mod metrics;

// `llb fit` → `llb predict` → `llb eval` on a tiny generated benchmark with the real DINOv2-S
// weights from the cache (`llb fetch` fills it; CI runs it first).
mod pipeline;

// `llb experiment` on a tiny data set in Real-IAD's layout (json FUIAD splits, 5-view samples):
// the `--realiad` route of `cargo xtask reproduce`, with group-aware stage 1.
mod realiad;

// Results follow the set of images and the full settings: keep-everything purification equals
// the plain fit bit for bit, and experiment rows are reused exactly when their settings match.
mod order;

// `--shard I/N` and `--merge`: shards at once on one cache, merged into what one process writes.
mod shard;

// `llb fit --stage1-only --subset k` per job, then `--from-stage1`: the plain fit's model folder;
// two processes at once on one cache store each feature entry and sub-model once.
mod stage1_split;

// `--device`: cpu works, malformed values and CUDA in a CPU-only build are input errors.
mod device;

// A headless Chromium driven over WebDriver (chromedriver), with the network off.
mod browser;

// `review.html` and `report.html` in that browser: verdicts, decisions exported and refitted.
mod review;

//! Fuzzing of the command line's own parsers of outside bytes (`llb_types::fuzz`): `.npy` maps,
//! image-score CSV files and run manifests (the experiment log has its own, in its module).
//! A fixed number of seeded mutants each; no panic, peak memory linear in the input length.

use crate::experiment::Manifest;
use crate::metrics_cmd::parse_image_scores;
use crate::npy::{npy_bytes, parse_npy};
use llb_types::fuzz::{PeakAlloc, run};
use std::path::Path;

#[global_allocator]
static ALLOC: PeakAlloc = PeakAlloc;

#[test]
fn npy_reader() {
    let corpus = vec![
        npy_bytes("<f4", "(2, 3)", &[1.0, 2.0, 3.0, 4.0, 5.0, 6.5]),
        npy_bytes("<f4", "(4, 4)", &[0.25; 16]),
    ];
    let tokens: [&[u8]; 5] = [b"(4294967296, 4294967296)", b"'<f8'", b"True", b"\x02\x00", b"}"];
    // The values never take more than the input (their byte count is checked first).
    run(".npy map", &corpus, &tokens, 2000, 21, |len| 4 * len + 4096, |b| parse_npy(b).map(drop))
        .assert_clean();
}

#[test]
fn image_score_csv_reader() {
    let corpus = vec![
        b"id,label,score\na,0,0.5\n\"b,1\",1,0.9\nc,0,0.1\n".to_vec(),
        "score,id,label,group\n0.6,\"q\"\"uote\",0,s1\n0.1,ü,1,s1\n".as_bytes().to_vec(),
    ];
    let tokens: [&[u8]; 6] = [b",", b"\"", b"\n", b"NaN", b"inf", b"-1e40"];
    run(
        "image-score csv",
        &corpus,
        &tokens,
        2000,
        22,
        |len| 64 * len + 16 * 1024,
        |b| parse_image_scores(b, "s.csv").map(drop),
    )
    .assert_clean();
}

/// A manifest in the current schema with every data-set kind: benchmark v1 and v2, MVTec,
/// Real-IAD and ELPV, two seeds, and an ablation.
fn current_schema_manifest() -> Vec<u8> {
    let v1 = serde_json::to_value(llb_data::BenchmarkConfig::llb_benchmark_v1()).unwrap();
    let v2 = serde_json::to_value(llb_data::BenchmarkConfig::llb_benchmark_v2()).unwrap();
    let mono = serde_json::to_value(llb_data::ElpvConfig::llb_v2(llb_data::ElpvCellType::Mono));
    let settings = serde_json::json!({
        "encoder": {"kind": "dinov2-vits14", "layers": [3, 5], "image_size_px": 224},
        "detector": {"kind": "patchcore", "coreset_fraction": 0.1, "projection_dim": 128,
            "reweight_neighbours": null, "blur_sigma_px": 4.0, "seed": 0},
        "purify": {
            "stage1": {"partition": {"k": 3, "seed": 0, "mode": "random"},
                "screening_score": {"top-mean": {"fraction": 0.01}}, "batch_size": 16},
            "fusion": "mean", "selection": "keep-fraction(0.6)"},
        "test_score": "max", "calibration_seed": 0});
    let manifest = serde_json::json!({
        "name": "all-kinds",
        "datasets": [
            {"kind": "benchmark", "config": v1, "categories": ["brick"]},
            {"kind": "benchmark", "config": v2, "categories": ["paving"], "textures": "v2"},
            {"kind": "mvtec", "root": "/data/mvtec", "categories": ["bottle"]},
            {"kind": "realiad", "root": "/data/realiad", "categories": ["audiojack"]},
            {"kind": "elpv", "configs": [mono.unwrap()]}
        ],
        "contamination_ratios": [0.0, 0.1, 0.4],
        "seeds": [0, 1],
        "pixel_eval_px": 224,
        "backbones": [{"name": "patchcore", "settings": settings}],
        "ablation_ratios": [0.1],
        "ablations": [{"vary": "k", "values": [2, 5]}]
    });
    serde_json::to_vec_pretty(&manifest).unwrap()
}

/// Mutants of a manifest with every data-set kind and of the committed
/// `xtask/manifests/benchmark.json` (when it is in the schema this version reads: the lead may
/// be midway through replacing it, and `llb experiment` refuses it then anyway).
#[test]
fn run_manifest_reader() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("manifest.json");
    let committed =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../xtask/manifests/benchmark.json");
    let committed = std::fs::read(committed).unwrap();
    std::fs::write(&path, &committed).unwrap();
    let mut corpus = vec![current_schema_manifest()];
    if Manifest::read(&path).is_ok() {
        corpus.push(committed);
    }
    let tokens: [&[u8]; 6] =
        [b"null", b"-1", b"1e999", b"\"k\": 0,", b"[[[[[[[[[[[[[[[[[[[[", b"18446744073709551616"];
    // serde_json holds the text and the parsed manifest: a small multiple of the input.
    run(
        "run manifest",
        &corpus,
        &tokens,
        1000,
        23,
        |len| 64 * len + 64 * 1024,
        |b| {
            std::fs::write(&path, b).unwrap();
            Manifest::read(&path).map(drop)
        },
    )
    .assert_clean();
}

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

#[test]
fn run_manifest_reader() {
    let committed =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../xtask/manifests/benchmark.json");
    let corpus = vec![std::fs::read(committed).unwrap()];
    let tokens: [&[u8]; 6] =
        [b"null", b"-1", b"1e999", b"\"k\": 0,", b"[[[[[[[[[[[[[[[[[[[[", b"18446744073709551616"];
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("manifest.json");
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

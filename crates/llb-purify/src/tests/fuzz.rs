//! Fuzzing of the score-table CSV reader (`llb_types::fuzz`): seeded mutants of real tables,
//! no panic, peak memory linear in the input length.

use crate::{ScoreCell, ScoreTable};
use llb_types::SampleId;
use llb_types::fuzz::{PeakAlloc, run};
use std::path::Path;

#[global_allocator]
static ALLOC: PeakAlloc = PeakAlloc;

#[test]
fn score_table_csv_reader() {
    let table = |ids: &[&str]| {
        let models = vec!["submodel-0".to_string(), "sub,model \"1\"".to_string()];
        let rows = ids
            .iter()
            .enumerate()
            .map(|(i, id)| {
                let s = i as f32 / 3.0;
                (SampleId::new(*id), vec![ScoreCell::in_subset(s), ScoreCell::out_of_subset(-s)])
            })
            .collect();
        ScoreTable::new(models, rows).unwrap().to_csv_string().into_bytes()
    };
    let corpus = vec![
        table(&["good/000.png", "bad,one.png", "quote\"d.png", "naïve/ü.png"]),
        table(&["a", "b", "c", "d", "e", "f"]),
    ];
    let tokens: [&[u8]; 9] =
        [b",", b"\"", b"\"\"", b"\r\n", b"NaN", b"-inf", b"1e39", b"true", b"99999999999999999999"];
    // The text, its records and the table: a small multiple of the input.
    run(
        "score-table csv",
        &corpus,
        &tokens,
        2000,
        11,
        |len| 64 * len + 4096,
        |bytes| {
            let text = std::str::from_utf8(bytes).map_err(|e| e.to_string())?;
            ScoreTable::from_csv_str(text, Path::new("t.csv")).map(drop).map_err(|e| e.to_string())
        },
    )
    .assert_clean();
}

//! The review and report pages in a real headless Chromium with the network off: `review.html`
//! of a fitted model lists every training image with its `purification.csv` verdict, decisions
//! clicked in the page export as `decisions.csv`, `llb fit --decisions` honours every one, and
//! `report.html` of `llb predict` shows verdicts and nearest training patches.
//!
//! `LLB_UPDATE_SCREENSHOTS=1` also writes the pages' screenshots to `docs/img/`.

use super::browser::Browser;
use super::pipeline::{llb, scratch_cache, tiny_benchmark};
use llb_data::DefectKind;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// `id → column` of a CSV written by `llb` (ids without commas or quotes here).
fn csv_column(path: &Path, column: &str) -> BTreeMap<String, String> {
    let text = std::fs::read_to_string(path).unwrap();
    let mut lines = text.lines();
    let header: Vec<&str> = lines.next().unwrap().split(',').collect();
    let at = header.iter().position(|h| *h == column).unwrap_or_else(|| panic!("no {column}"));
    lines
        .map(|l| l.split(',').collect::<Vec<_>>())
        .map(|f| (f[0].to_string(), f[at].to_string()))
        .collect()
}

fn file_url(path: &Path) -> String {
    format!("file://{}", path.canonicalize().unwrap().display())
}

/// Every `(id, verdict)` the page lists, page after page, at 10 rows per page.
fn listed_rows(browser: &Browser) -> BTreeMap<String, String> {
    browser.click("#page-size option[value='10']");
    browser.click("button[data-filter='all']");
    let mut listed = BTreeMap::new();
    loop {
        let rows = browser.run(
            "return [...document.querySelectorAll('#rows [data-id]')]
                .map(r => [r.dataset.id, r.dataset.verdict]);",
            json!([]),
        );
        for row in rows.as_array().unwrap() {
            let (id, verdict) = (row[0].as_str().unwrap(), row[1].as_str().unwrap());
            assert!(listed.insert(id.to_string(), verdict.to_string()).is_none(), "{id} twice");
        }
        if browser.run("return document.getElementById('next').disabled;", json!([])) == json!(true)
        {
            return listed;
        }
        browser.click("#next");
    }
}

/// The page loaded nothing from the network and cannot reach it.
fn check_offline(browser: &Browser) {
    let resources = browser.run(
        "return performance.getEntriesByType('resource').map(e => e.name)
            .concat([location.href]);",
        json!([]),
    );
    for url in resources.as_array().unwrap() {
        assert!(url.as_str().unwrap().starts_with("file:"), "loaded {url}");
    }
    let img = "return [...document.images].filter(i => i.complete && i.naturalWidth === 0).length;";
    assert_eq!(browser.run(img, json!([])), json!(0), "every visible image loads");
}

/// Waits up to 20 s for the browser to finish downloading `path`.
fn downloaded(path: &Path) -> PathBuf {
    let started = std::time::Instant::now();
    let partial = path.with_extension("csv.crdownload");
    while !path.is_file() || partial.exists() {
        assert!(started.elapsed().as_secs() < 20, "{} was not downloaded", path.display());
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    path.to_path_buf()
}

/// Saves a screenshot under `dir`, and into `docs/img/` with `LLB_UPDATE_SCREENSHOTS=1`.
fn screenshot(browser: &Browser, dir: &Path, name: &str) {
    let png = browser.screenshot();
    assert!(png.starts_with(b"\x89PNG"), "{name} is a PNG");
    assert!(png.len() < 1 << 20, "{name}: {} bytes, over 1 MiB", png.len());
    std::fs::write(dir.join(name), &png).unwrap();
    if std::env::var_os("LLB_UPDATE_SCREENSHOTS").is_some() {
        let docs = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../docs/img").join(name);
        std::fs::write(docs, &png).unwrap();
    }
}

#[test]
fn review_decisions_round_trip_through_a_headless_browser() {
    let dir = tempfile::tempdir().unwrap();
    let cache = scratch_cache(dir.path());
    let data = dir.path().join("data");
    let kinds = vec![DefectKind::Stain, DefectKind::Hole, DefectKind::CutPaste];
    tiny_benchmark(&data, 5, (112, 256), (24, 6, 12), kinds);
    let (cache, data) = (cache.to_str().unwrap(), format!("mvtec:{}", data.display()));
    let model = dir.path().join("model");
    let fit = |out: &Path, extra: &[&str]| {
        let args = [
            "fit",
            "--data",
            &data,
            "--category",
            "tex",
            "--contamination",
            "0.2",
            "--out",
            out.to_str().unwrap(),
            "-k",
            "3",
            "--selection",
            "keep-fraction(0.8)",
            "--cache",
            cache,
            "--image-size",
            "112",
        ];
        llb(&[&args[..], extra].concat())
    };
    let first = fit(&model, &[]);
    assert_eq!(first["n_train"], 30);
    let verdicts = csv_column(&model.join("purification.csv"), "verdict");
    assert_eq!(verdicts.len(), 30);

    // Every training image is listed once, with the verdict purification.csv gives it.
    let downloads = dir.path().join("downloads");
    std::fs::create_dir_all(&downloads).unwrap();
    let browser = Browser::start(&downloads);
    browser.resize(1360, 1500);
    browser.open(&file_url(&model.join("review.html")));
    check_offline(&browser);
    let fetch = "return fetch('http://example.com/').then(() => 'reached', () => 'blocked');";
    assert_eq!(browser.run(fetch, json!([])), json!("blocked"), "the browser has no network");
    assert_eq!(listed_rows(&browser), verdicts);

    // Decide: keep the most suspicious dropped image, drop the most suspicious kept one, and
    // confirm one kept image (a decision that agrees with the rule).
    browser.click("#page-size option[value='50']");
    let id_of = |filter: &str, nth: usize| -> String {
        browser.click(&format!("button[data-filter='{filter}']"));
        let ids = browser.run(
            "return [...document.querySelectorAll('#rows [data-id]')].map(r => r.dataset.id);",
            json!([]),
        );
        ids[nth].as_str().unwrap().to_string()
    };
    let rescued = id_of("dropped", 0);
    let removed = id_of("kept", 0);
    let confirmed = id_of("kept", 3);
    for (id, action) in [(&rescued, "keep"), (&removed, "drop"), (&confirmed, "keep")] {
        browser.click("button[data-filter='all']");
        let selector = format!("[data-id='{id}'] button[data-action='{action}']");
        browser.click(&selector);
    }
    browser.click("button[data-filter='all']");
    let counter = browser.run("return document.getElementById('counter').textContent;", json!([]));
    assert_eq!(counter, json!("3 marked, 2 overrule the rule"));
    browser.click("#page-size option[value='10']");
    browser.run("window.scrollTo(0, 0);", json!([]));
    screenshot(&browser, dir.path(), "review-page.png");
    browser.click("#export");
    let exported = downloaded(&downloads.join("decisions.csv"));
    let csv = std::fs::read_to_string(&exported).unwrap();
    let mut lines: Vec<&str> = csv.lines().collect();
    assert_eq!(lines.remove(0), "id,decision");
    lines.sort();
    let mut expected =
        vec![format!("{rescued},keep"), format!("{removed},drop"), format!("{confirmed},keep")];
    expected.sort();
    assert_eq!(lines, expected);

    // The refit honours every decision, and changes nothing else.
    let refit = dir.path().join("refit");
    let second = fit(&refit, &["--decisions", exported.to_str().unwrap()]);
    let after = csv_column(&refit.join("purification.csv"), "verdict");
    let decided = csv_column(&refit.join("purification.csv"), "decision");
    for (id, verdict) in &after {
        let want = match id.as_str() {
            i if i == rescued || i == confirmed => "kept",
            i if i == removed => "dropped",
            _ => verdicts[id].as_str(),
        };
        assert_eq!(verdict, want, "{id}");
        assert_eq!(decided[id].is_empty(), ![&rescued, &removed, &confirmed].contains(&id), "{id}");
    }
    assert_eq!(second["n_kept"], first["n_kept"]);
    let applied: Value =
        serde_json::from_slice(&std::fs::read(refit.join("decisions-applied.json")).unwrap())
            .unwrap();
    assert_eq!(applied["kept_added"], json!([rescued]));
    assert_eq!(applied["kept_removed"], json!([removed]));
    let f32_of = |v: &Value| v.as_f64().unwrap() as f32;
    assert_eq!(f32_of(&applied["threshold_before"]), f32_of(&first["threshold"]));
    assert_eq!(f32_of(&applied["threshold_after"]), f32_of(&second["threshold"]));
    assert_eq!(applied["reviewed"].as_array().unwrap().len(), 3);
    for reviewed in applied["reviewed"].as_array().unwrap() {
        assert!(reviewed["score_before"].as_f64().unwrap() > 0.0, "{reviewed}");
        assert!(reviewed["score_after"].as_f64().unwrap() > 0.0, "{reviewed}");
    }
    let card: Value =
        serde_json::from_slice(&std::fs::read(refit.join("llb.json")).unwrap()).unwrap();
    assert_eq!(card["decisions"]["decisions"][&removed], "drop");
    assert_eq!(card["n_kept"], second["n_kept"]);

    // The refit's page starts from the applied decisions.
    browser.open(&file_url(&refit.join("review.html")));
    let counter = browser.run("return document.getElementById('counter').textContent;", json!([]));
    assert_eq!(counter, json!("3 marked, 2 overrule the rule"));
    assert_eq!(listed_rows(&browser), after);

    // The prediction report: every test image with its verdict, nearest training patches named.
    let predictions = dir.path().join("predictions");
    let predict = llb(&[
        "predict",
        "--model",
        refit.to_str().unwrap(),
        "--input",
        dir.path().join("data/tex/test").to_str().unwrap(),
        "--out",
        predictions.to_str().unwrap(),
        "--cache",
        cache,
    ]);
    let scored = csv_column(&predictions.join("scores.csv"), "verdict");
    browser.resize(1360, 1300);
    browser.open(&file_url(&predictions.join("report.html")));
    check_offline(&browser);
    browser.click("#page-size option[value='100']");
    let shown = browser.run(
        "return [...document.querySelectorAll('#rows [data-id]')].map(r => [r.dataset.id,
            r.dataset.verdict, r.querySelector('.nearest b')?.textContent ?? null]);",
        json!([]),
    );
    let shown = shown.as_array().unwrap();
    assert_eq!(shown.len(), predict["n_images"].as_u64().unwrap() as usize);
    let kept_after: Vec<&String> =
        after.iter().filter(|(_, v)| *v == "kept").map(|(i, _)| i).collect();
    for row in shown {
        let id = row[0].as_str().unwrap();
        assert_eq!(row[1], json!(scored[id]), "{id}");
        if row[1] == "anomalous" {
            let source = row[2].as_str().unwrap_or_else(|| panic!("{id}: no nearest patch"));
            assert!(kept_after.iter().any(|k| *k == source), "{id}: {source} is not in the bank");
        }
    }
    browser.click("#page-size option[value='10']");
    screenshot(&browser, dir.path(), "report-page.png");
}

/// Writes `n` distinct 64×64 PNG images and a K = 3 score table for them (about 3 % anomalous,
/// scoring high out of subset), and returns the table's path.
fn synthetic_scores(dir: &Path, n: usize) -> PathBuf {
    use llb_purify::{ScoreCell, ScoreTable};
    let images = dir.join("images");
    std::fs::create_dir_all(&images).unwrap();
    let mut rows = Vec::with_capacity(n);
    for i in 0..n {
        // One name needs quoting in CSV: the page's export must quote it.
        let id = if i == 1 { "img_00001,\"q\".png".to_string() } else { format!("img_{i:05}.png") };
        let shade = |x: u32, y: u32| ((x * 3 + y * 5 + i as u32 * 7) % 200 + 30) as u8;
        image::RgbImage::from_fn(64, 64, |x, y| image::Rgb([shade(x, y), shade(y, x), 128]))
            .save(images.join(&id))
            .unwrap();
        let wobble = ((i * 7919) % 1000) as f32 / 1000.0;
        let base = if i % 33 == 0 { 1.6 } else { 1.0 } + 0.1 * wobble;
        let cells = (0..3)
            .map(|j| {
                if j == i % 3 { ScoreCell::in_subset(1.0) } else { ScoreCell::out_of_subset(base) }
            })
            .collect();
        rows.push((llb_types::SampleId::new(id), cells));
    }
    let models = (0..3).map(|j| format!("submodel-{j}")).collect();
    let path = dir.join("score_table.csv");
    ScoreTable::new(models, rows).unwrap().save_csv(&path).unwrap();
    path
}

/// A large review page stays paged: the DOM holds one page of rows whatever the training set's
/// size, and paging lists every image once. `LLB_REVIEW_SCALE_N` (default 1,200) sets the size;
/// the test prints the page's size and the time until it is ready (measurements, not checks).
#[test]
#[allow(clippy::print_stderr, reason = "the test reports its measurements")]
fn a_large_review_page_is_paged() {
    let n: usize = std::env::var("LLB_REVIEW_SCALE_N").map_or(1200, |v| v.parse().unwrap());
    let dir = tempfile::tempdir().unwrap();
    let scores = synthetic_scores(dir.path(), n);
    let out = dir.path().join("review");
    let started = std::time::Instant::now();
    let summary = llb(&[
        "review",
        "--scores",
        scores.to_str().unwrap(),
        "--images",
        dir.path().join("images").to_str().unwrap(),
        "--selection",
        "keep-fraction(0.95)",
        "--out",
        out.to_str().unwrap(),
    ]);
    let write_seconds = started.elapsed().as_secs_f64();
    assert_eq!(summary["n_samples"], n);
    let page_bytes = std::fs::metadata(out.join("review.html")).unwrap().len();
    let thumb_bytes: u64 = std::fs::read_dir(out.join("review/img"))
        .unwrap()
        .map(|e| e.unwrap().metadata().unwrap().len())
        .sum();

    let browser = Browser::start(dir.path());
    browser.resize(1360, 1000);
    browser.open(&file_url(&out.join("review.html")));
    check_offline(&browser);
    let ready_ms = browser.run("return +document.body.dataset.readyMs;", json!([]));
    browser.click("#page-size option[value='200']");
    let mut listed = 0;
    let mut pages = 0;
    let page_switch = "const t = performance.now(); document.getElementById('next').click();
        return performance.now() - t;";
    let mut slowest_switch_ms: f64 = 0.0;
    loop {
        let in_dom =
            browser.run("return document.querySelectorAll('#rows [data-id]').length;", json!([]));
        let in_dom = in_dom.as_u64().unwrap() as usize;
        assert!(in_dom <= 200, "{in_dom} rows in the DOM at once");
        let images = browser.run("return document.images.length;", json!([]));
        assert!(images.as_u64().unwrap() <= 2 * 200, "{images} images in the DOM");
        listed += in_dom;
        pages += 1;
        if browser.run("return document.getElementById('next').disabled;", json!([])) == json!(true)
        {
            break;
        }
        let ms = browser.run(page_switch, json!([])).as_f64().unwrap();
        slowest_switch_ms = slowest_switch_ms.max(ms);
    }
    assert_eq!((listed, pages), (n, n.div_ceil(200)));

    // An id with a comma and quotes survives the page's CSV export and llb's parser.
    let tricky = "img_00001,\"q\".png";
    browser.type_into("input[type=search]", "00001,");
    browser.click("#rows [data-id] button[data-action='drop']");
    browser.click("#export");
    let exported = downloaded(&dir.path().join("decisions.csv"));
    let decisions = llb_purify::Decisions::load_csv(&exported).unwrap();
    let expected = [(llb_types::SampleId::new(tricky), llb_purify::Decision::Drop)];
    assert_eq!(decisions.by_id, expected.into_iter().collect());
    eprintln!(
        "review page at {n} training images: review.html {page_bytes} bytes, thumbnails \
         {thumb_bytes} bytes in review/img, written in {write_seconds:.1} s; ready {ready_ms} ms \
         after navigation start; slowest page switch (200 rows) {slowest_switch_ms:.0} ms"
    );
}

/// The JSON a page embeds in `#data`.
fn page_data(page: &Path) -> Value {
    let html = std::fs::read_to_string(page).unwrap();
    let tag = "type=\"application/json\">";
    let start = html.find(tag).unwrap() + tag.len();
    let end = start + html[start..].find("</script>").unwrap();
    serde_json::from_str(&html[start..end]).unwrap()
}

/// `llb` with `args`, expected to fail: its exit code and stderr.
fn llb_fails(args: &[&str]) -> (i32, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_llb"))
        .args(args)
        .env("RUST_LOG", "warn")
        .output()
        .unwrap();
    assert!(!out.status.success(), "llb {args:?} succeeded");
    (out.status.code().unwrap(), String::from_utf8_lossy(&out.stderr).into_owned())
}

#[test]
fn bad_decisions_are_input_errors_and_old_models_report_without_provenance() {
    let dir = tempfile::tempdir().unwrap();
    let cache = scratch_cache(dir.path());
    let data = dir.path().join("data");
    tiny_benchmark(&data, 3, (56, 128), (12, 2, 4), vec![DefectKind::Stain]);
    let (cache, data) = (cache.to_str().unwrap(), format!("mvtec:{}", data.display()));
    let model = dir.path().join("model");
    let common = [
        "--data",
        &data,
        "--category",
        "tex",
        "--contamination",
        "0.25",
        "-k",
        "2",
        "--cache",
        cache,
        "--image-size",
        "56",
        "--out",
        model.to_str().unwrap(),
    ];
    llb(&[&["fit"][..], &common].concat());

    let decisions = dir.path().join("decisions.csv");
    std::fs::write(&decisions, "id,decision\ntex/train/good/nope.png,drop\n").unwrap();
    let with = ["--decisions", decisions.to_str().unwrap()];
    let (code, err) = llb_fails(&[&["fit"][..], &common, &with].concat());
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("tex/train/good/nope.png") && err.contains("decisions.csv"), "{err}");
    let (code, err) = llb_fails(&[&["fit"][..], &common, &with, &["--no-purify"]].concat());
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("--no-purify"), "{err}");
    std::fs::write(&decisions, "id,decision\ntex/train/good/000.png,maybe\n").unwrap();
    let (code, err) = llb_fails(&[&["purify"][..], &common, &with].concat());
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("decisions.csv:2: decision `maybe`"), "{err}");

    // A model saved before provenance existed still predicts; its report says so.
    std::fs::remove_file(model.join("detector/bank_provenance.json")).unwrap();
    let predictions = dir.path().join("predictions");
    llb(&[
        "predict",
        "--model",
        model.to_str().unwrap(),
        "--input",
        dir.path().join("data/tex/test/stain").to_str().unwrap(),
        "--out",
        predictions.to_str().unwrap(),
        "--cache",
        cache,
        "--threshold",
        "0",
    ]);
    let report = page_data(&predictions.join("report.html"));
    assert_eq!(report["provenance"], "none");
    let rows = report["rows"].as_array().unwrap();
    assert_eq!(rows.len(), 4);
    for row in rows {
        assert_eq!(row["anomalous"], true, "threshold 0 calls every image anomalous");
        assert!(row["nearest"]["distance"].as_f64().unwrap() >= 0.0, "{row}");
        assert_eq!(row["nearest"]["source_id"], Value::Null, "{row}");
    }
}

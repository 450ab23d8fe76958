//! Unit tests of the benchmark generator: exact masks, determinism, region split, bad input.

use super::config::{BenchmarkConfig, DefectKind, TileSource};
use super::defects;
use super::math::tile_rng;
use super::texture::{Region, crop_tile};
use super::*;
use crate::error::Error;
use crate::read_mvtec;
use std::path::Path;

fn small_config(seed: u64) -> BenchmarkConfig {
    BenchmarkConfig {
        seed,
        tile_size_px: 48,
        n_train_good: 3,
        n_test_good: 2,
        n_test_defective: 6,
        defect_kinds: DefectKind::ALL.to_vec(),
        tile_source: TileSource::DisjointHalves,
    }
}

fn textures() -> Vec<Texture> {
    vec![synthetic_texture("stone", 1, 64, 112), synthetic_texture("wood", 2, 80, 96)]
}

#[test]
fn every_defect_changes_only_its_mask_and_changes_it_visibly() {
    let texture = synthetic_texture("t", 3, 128, 256);
    for (kind, size) in DefectKind::ALL.into_iter().flat_map(|k| [(k, 32), (k, 96)]) {
        for trial in 0..6 {
            let mut rng = tile_rng(11, "t", kind as u64, trial);
            let clean =
                crop_tile(&texture, Region::Test, TileSource::DisjointHalves, size, &mut rng);
            let donor =
                crop_tile(&texture, Region::Test, TileSource::DisjointHalves, size, &mut rng);
            let mut tile = clean.clone();
            let mask = defects::apply(kind, &mut tile, &donor, &mut rng);
            let mut inside = (0usize, 0.0f64);
            for (i, &m) in mask.iter().enumerate() {
                let change: f32 =
                    (0..3).map(|c| (tile.data[3 * i + c] - clean.data[3 * i + c]).abs()).sum();
                if m {
                    inside = (inside.0 + 1, inside.1 + f64::from(change));
                } else {
                    assert_eq!(
                        change, 0.0,
                        "{kind:?} trial {trial} changed pixel {i} outside its mask"
                    );
                }
            }
            assert!(inside.0 > 0, "{kind:?} {size} px trial {trial}: empty mask");
            let mean_change = inside.1 / inside.0 as f64;
            assert!(
                mean_change > 0.01,
                "{kind:?} trial {trial}: mean change {mean_change} inside the mask"
            );
        }
    }
}

#[test]
fn training_and_test_tiles_come_from_disjoint_halves() {
    let image =
        image::RgbImage::from_fn(40, 80, |_, y| image::Rgb([if y < 40 { 0 } else { 255 }; 3]));
    let texture = Texture { name: "halves".into(), image };
    for i in 0..20 {
        let mut rng = tile_rng(0, "halves", 0, i);
        let halves = TileSource::DisjointHalves;
        assert!(
            crop_tile(&texture, Region::Train, halves, 32, &mut rng).data.iter().all(|&v| v == 0.0)
        );
        assert!(
            crop_tile(&texture, Region::Test, halves, 32, &mut rng).data.iter().all(|&v| v == 1.0)
        );
    }
}

#[test]
fn whole_photo_tiles_come_from_both_halves() {
    let image =
        image::RgbImage::from_fn(40, 80, |_, y| image::Rgb([if y < 40 { 0 } else { 255 }; 3]));
    let texture = Texture { name: "halves".into(), image };
    let reaches_bottom = (0..40).any(|i| {
        let mut rng = tile_rng(0, "halves", 0, i);
        crop_tile(&texture, Region::Train, TileSource::WholePhoto, 32, &mut rng).data.contains(&1.0)
    });
    assert!(reaches_bottom, "training crops reach into the bottom half");
}

#[test]
fn generated_tree_reads_back_with_binary_non_empty_masks() {
    let dir = tempfile::tempdir().unwrap();
    let names = generate_benchmark(&textures(), &small_config(4), dir.path()).unwrap();
    assert_eq!(names, ["stone", "wood"]);
    let d = read_mvtec(dir.path(), "wood").unwrap();
    assert_eq!((d.train.len(), d.test.len(), d.n_test_anomalous()), (3, 8, 6));
    let kinds: Vec<&str> = d.test.iter().filter_map(|s| s.defect_type.as_deref()).collect();
    assert_eq!(kinds, ["colour_shift", "cut_paste", "hole", "scratch", "stain", "warp"]);
    for sample in &d.test {
        let tile = image::open(&sample.image_path).unwrap();
        assert_eq!((tile.width(), tile.height(), tile.color()), (48, 48, image::ColorType::Rgb8));
        if let Some(mask) = &sample.mask_path {
            let mask = image::open(mask).unwrap().to_luma8();
            assert!(mask.pixels().all(|p| p.0[0] == 0 || p.0[0] == 255));
            assert!(mask.pixels().any(|p| p.0[0] == 255), "{}", sample.id);
        }
    }
}

#[test]
fn generation_is_deterministic_and_follows_the_seed() {
    let run = |seed: u64| {
        let dir = tempfile::tempdir().unwrap();
        generate_benchmark(&textures(), &small_config(seed), dir.path()).unwrap();
        checksum_tree(dir.path()).unwrap()
    };
    let first = run(4);
    assert_eq!(first.lines().count(), 2 * (3 + 2 + 2 * 6));
    assert_eq!(run(4), first);
    assert_ne!(run(5), first);
}

#[test]
fn bad_configs_and_textures_are_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let check = |config: BenchmarkConfig, textures: &[Texture], expected: &str| {
        let err = generate_benchmark(textures, &config, dir.path()).unwrap_err();
        assert!(err.to_string().contains(expected), "{err}");
    };
    check(BenchmarkConfig { tile_size_px: 16, ..small_config(0) }, &textures(), "tile_size_px");
    check(BenchmarkConfig { defect_kinds: vec![], ..small_config(0) }, &textures(), "defect_kinds");
    let repeated = vec![DefectKind::Hole, DefectKind::Hole];
    check(
        BenchmarkConfig { defect_kinds: repeated, ..small_config(0) },
        &textures(),
        "defect_kinds",
    );
    check(small_config(0), &[], "textures");
    let twins = [synthetic_texture("a", 1, 64, 112), synthetic_texture("a", 2, 64, 112)];
    check(small_config(0), &twins, "unique");
    check(small_config(0), &[synthetic_texture("Bad Name", 1, 64, 112)], "texture name");
    let err =
        generate_benchmark(&[synthetic_texture("short", 1, 64, 90)], &small_config(0), dir.path())
            .unwrap_err();
    assert!(
        matches!(&err, Error::TooSmall { path, height: 90, .. } if path == Path::new("short")),
        "{err}"
    );
}

#[test]
fn contact_sheet_has_one_row_per_category_and_a_column_per_kind() {
    let dir = tempfile::tempdir().unwrap();
    let names = generate_benchmark(&textures(), &small_config(4), dir.path()).unwrap();
    let sheet = render_contact_sheet(dir.path(), &names, 20).unwrap();
    assert_eq!(sheet.dimensions(), (4 + 7 * 24, 4 + 2 * 24));
    // The first cell (a normal tile) has no outline colour; some defect cell does.
    let outline = |p: [u8; 3]| p[0] > 150 && p[1] < 110 && p[2] < 110;
    let red = |x0: u32, y0: u32| {
        (0..20).any(|y| (0..20).any(|x| outline(sheet.get_pixel(x0 + x, y0 + y).0)))
    };
    assert!(!red(4, 4));
    assert!((1..7).any(|c| red(4 + 24 * c, 4)));
    let err = render_contact_sheet(dir.path(), &["missing".to_string()], 20).unwrap_err();
    assert!(matches!(&err, Error::Io { path, .. } if path.ends_with("missing/test")), "{err}");
}

#[test]
fn config_round_trips_through_json_and_rejects_unknown_fields() {
    let v1 = BenchmarkConfig::llb_benchmark_v1();
    let json = serde_json::to_string(&v1).unwrap();
    assert!(
        json.contains(
            r#""defect_kinds":["colour_shift","cut_paste","hole","scratch","stain","warp"]"#
        ),
        "{json}"
    );
    assert_eq!(serde_json::from_str::<BenchmarkConfig>(&json).unwrap(), v1);
    let extra = json.replacen('{', r#"{"threshold":0.5,"#, 1);
    let err = serde_json::from_str::<BenchmarkConfig>(&extra).unwrap_err();
    assert!(err.to_string().contains("threshold"), "{err}");
}

//! Unit tests of the benchmark generator: exact masks, determinism, region split, bad input.

use super::catalogue;
use super::config::{BenchmarkConfig, DefectCatalogueConfig, DefectKind, TileSource};
use super::defects;
use super::math::tile_rng;
use super::texture::{Region, crop_tile};
use super::*;
use crate::error::Error;
use crate::{ContaminationConfig, contaminate, read_mvtec};
use std::collections::BTreeMap;
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
        n_pool_defective: 0,
        defect_catalogue: None,
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
    let sheet = render_contact_sheet(dir.path(), &names, 20, 1).unwrap();
    assert_eq!(sheet.dimensions(), (4 + 7 * 24, 4 + 2 * 24));
    // The first cell (a normal tile) has no outline colour; some defect cell does.
    let outline = |p: [u8; 3]| p[0] > 150 && p[1] < 110 && p[2] < 110;
    let red = |x0: u32, y0: u32| {
        (0..20).any(|y| (0..20).any(|x| outline(sheet.get_pixel(x0 + x, y0 + y).0)))
    };
    assert!(!red(4, 4));
    assert!((1..7).any(|c| red(4 + 24 * c, 4)));
    let err = render_contact_sheet(dir.path(), &["missing".to_string()], 20, 1).unwrap_err();
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

/// A small benchmark v2 config: a catalogue of 2–3 types and a pool.
fn small_v2_config(seed: u64) -> BenchmarkConfig {
    BenchmarkConfig {
        seed,
        tile_size_px: 96,
        n_train_good: 6,
        n_test_good: 3,
        n_test_defective: 9,
        defect_kinds: DefectKind::ALL.to_vec(),
        tile_source: TileSource::WholePhoto,
        n_pool_defective: 12,
        defect_catalogue: Some(DefectCatalogueConfig { min_types: 2, max_types: 3 }),
    }
}

fn v2_textures() -> Vec<Texture> {
    vec![synthetic_texture("stone", 1, 160, 128), synthetic_texture("wood", 2, 176, 144)]
}

#[test]
fn catalogue_types_change_only_their_mask_and_change_it_visibly() {
    let textures = v2_textures();
    for seed in 0..8 {
        let config = small_v2_config(seed);
        let types = catalogue::draw(&config, &textures, 0).unwrap();
        for (t, defect_type) in types.iter().enumerate() {
            for trial in 0..4 {
                let mut rng = tile_rng(seed, "stone", 100 + t as u64, trial);
                let clean =
                    crop_tile(&textures[0], Region::Test, TileSource::WholePhoto, 64, &mut rng);
                let mut tile = clean.clone();
                let mask = defect_type.apply(&mut tile, &textures, &mut rng);
                let (mut n, mut change) = (0usize, 0.0f64);
                for (i, &m) in mask.iter().enumerate() {
                    let d: f32 =
                        (0..3).map(|c| (tile.data[3 * i + c] - clean.data[3 * i + c]).abs()).sum();
                    if m {
                        (n, change) = (n + 1, change + f64::from(d));
                    } else {
                        assert_eq!(
                            d, 0.0,
                            "{:?} changed pixel {i} outside its mask",
                            defect_type.kind
                        );
                    }
                }
                assert!(
                    n > 0 && change / n as f64 > 0.01,
                    "{:?}: {n} px, change {change}",
                    defect_type.kind
                );
                assert!(n < 96 * 96 / 4, "{:?} covers {n} of 9216 px", defect_type.kind);
            }
        }
    }
}

#[test]
fn catalogue_has_distinct_kinds_within_bounds_and_depends_on_category_and_seed() {
    let textures = v2_textures();
    let kinds = |seed: u64, t: usize| -> Vec<DefectKind> {
        catalogue::draw(&small_v2_config(seed), &textures, t)
            .unwrap()
            .iter()
            .map(|d| d.kind)
            .collect()
    };
    let mut seen = std::collections::BTreeSet::new();
    for seed in 0..10 {
        for t in 0..2 {
            let k = kinds(seed, t);
            assert!((2..=3).contains(&k.len()), "{k:?}");
            let mut sorted = k.clone();
            sorted.dedup();
            assert_eq!(sorted.len(), k.len(), "distinct kinds: {k:?}");
            assert!(k.windows(2).all(|w| w[0].folder_name() < w[1].folder_name()));
            seen.insert(k);
        }
    }
    assert!(seen.len() > 3, "catalogues differ across seeds and categories: {seen:?}");
    assert_eq!(kinds(4, 1), kinds(4, 1));
    // The order of the texture list does not matter.
    let reversed: Vec<Texture> = textures.iter().rev().cloned().collect();
    let a = catalogue::draw(&small_v2_config(4), &textures, 0).unwrap();
    let b = catalogue::draw(&small_v2_config(4), &reversed, 1).unwrap();
    assert_eq!(
        a.iter().map(|d| d.kind).collect::<Vec<_>>(),
        b.iter().map(|d| d.kind).collect::<Vec<_>>()
    );
    assert!(catalogue::draw(&small_config(0), &textures, 0).is_none(), "v1 has no catalogue");
}

/// Defect pixel counts per type folder of `<cat>/<split>` (masks under `masks`).
fn mask_areas(cat: &Path, masks: &str) -> BTreeMap<String, Vec<usize>> {
    let mut areas = BTreeMap::new();
    for dir in crate::sample::list_dirs(&cat.join(masks)).unwrap() {
        let kind = dir.file_name().unwrap().to_string_lossy().into_owned();
        for mask in crate::sample::list_images(&dir).unwrap() {
            let mask = image::open(mask).unwrap().to_luma8();
            let n = mask.pixels().filter(|p| p.0[0] == 255).count();
            areas.entry(kind.clone()).or_insert_with(Vec::new).push(n);
        }
    }
    areas
}

#[test]
fn v2_tree_has_a_pool_and_its_types_recur_with_a_steady_size() {
    let dir = tempfile::tempdir().unwrap();
    let names = generate_benchmark(&v2_textures(), &small_v2_config(7), dir.path()).unwrap();
    for name in &names {
        let d = read_mvtec(dir.path(), name).unwrap();
        assert_eq!(
            (d.train.len(), d.test.len(), d.n_test_anomalous(), d.pool.len()),
            (6, 12, 9, 12)
        );
        let test_types: std::collections::BTreeSet<_> =
            d.test.iter().filter_map(|s| s.defect_type.clone()).collect();
        let pool_types: std::collections::BTreeSet<_> =
            d.pool.iter().filter_map(|s| s.defect_type.clone()).collect();
        assert_eq!(test_types, pool_types, "the pool holds the test set's types");
        let cat = dir.path().join(name);
        let (test, pool) =
            (mask_areas(&cat, "ground_truth"), mask_areas(&cat, "ground_truth_pool"));
        for (kind, areas) in test.iter().chain(&pool) {
            let (lo, hi) = (areas.iter().min().unwrap(), areas.iter().max().unwrap());
            // Size jitter is ±5 % in length (±10 % in area); pixel rounding adds more on small masks.
            assert!(*hi as f64 <= 1.7 * *lo as f64, "{name}/{kind}: mask areas {areas:?}");
        }
        let noisy =
            contaminate(d.clone(), &ContaminationConfig { contamination_ratio: 0.4, seed: 1 })
                .unwrap();
        assert_eq!(noisy.test, d.test);
        assert_eq!(noisy.n_train_anomalous(), 4);
    }
    let again = tempfile::tempdir().unwrap();
    generate_benchmark(&v2_textures(), &small_v2_config(7), again.path()).unwrap();
    assert_eq!(checksum_tree(again.path()).unwrap(), checksum_tree(dir.path()).unwrap());
}

#[test]
fn v1_config_json_is_unchanged_by_the_v2_fields() {
    let json = serde_json::to_string(&BenchmarkConfig::llb_benchmark_v1()).unwrap();
    assert!(!json.contains("pool") && !json.contains("catalogue"), "{json}");
    let v2 = BenchmarkConfig::llb_benchmark_v2();
    let json = serde_json::to_string(&v2).unwrap();
    assert!(json.contains(r#""n_pool_defective":120"#), "{json}");
    assert_eq!(serde_json::from_str::<BenchmarkConfig>(&json).unwrap(), v2);
    v2.validate().unwrap();
}

#[test]
fn bad_catalogues_are_rejected() {
    for (min_types, max_types) in [(0, 2), (3, 2), (2, 7)] {
        let config = BenchmarkConfig {
            defect_catalogue: Some(DefectCatalogueConfig { min_types, max_types }),
            ..small_v2_config(0)
        };
        let err = config.validate().unwrap_err();
        assert!(err.to_string().contains("defect_catalogue"), "{err}");
    }
}

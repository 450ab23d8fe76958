//! Unit tests of the readers, on small trees written by the tests themselves.

use super::*;
use crate::error::Error;
use crate::sample::Dataset;
use llb_types::{GroupId, Label};
use std::path::Path;

fn write_png(path: &Path, w: u32, h: u32) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    image::RgbImage::from_pixel(w, h, image::Rgb([10, 20, 30])).save(path).unwrap();
}

fn write_text(path: &Path, text: &str) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, text).unwrap();
}

/// `(id, label, defect, has mask)` per sample, for compact comparisons.
fn summary(samples: &[crate::Sample]) -> Vec<(String, Option<Label>, Option<String>, bool)> {
    samples
        .iter()
        .map(|s| (s.id.to_string(), s.label, s.defect_type.clone(), s.mask_path.is_some()))
        .collect()
}

fn n(id: &str) -> (String, Option<Label>, Option<String>, bool) {
    (id.to_string(), Some(Label::Normal), None, false)
}

fn a(id: &str, defect: &str) -> (String, Option<Label>, Option<String>, bool) {
    (id.to_string(), Some(Label::Anomalous), Some(defect.to_string()), true)
}

fn mvtec_tree(root: &Path) {
    for f in [
        "train/good/001.png",
        "train/good/000.png",
        "test/good/000.png",
        "test/crack/000.png",
        "test/crack/001.png",
    ] {
        write_png(&root.join("widget").join(f), 8, 8);
    }
    for f in ["ground_truth/crack/000_mask.png", "ground_truth/crack/001_mask.png"] {
        write_png(&root.join("widget").join(f), 8, 8);
    }
}

#[test]
fn mvtec_layout_is_read_with_sorted_ids_labels_and_masks() {
    let dir = tempfile::tempdir().unwrap();
    mvtec_tree(dir.path());
    let d = read_mvtec(dir.path(), "widget").unwrap();
    assert_eq!(summary(&d.train), [n("widget/train/good/000.png"), n("widget/train/good/001.png")]);
    assert_eq!(
        summary(&d.test),
        [
            a("widget/test/crack/000.png", "crack"),
            a("widget/test/crack/001.png", "crack"),
            n("widget/test/good/000.png")
        ]
    );
    assert_eq!(
        d.test[0].mask_path.as_deref(),
        Some(dir.path().join("widget/ground_truth/crack/000_mask.png").as_path())
    );
    assert!(d.contamination.is_none());
}

#[test]
fn mvtec_missing_mask_names_the_mask() {
    let dir = tempfile::tempdir().unwrap();
    mvtec_tree(dir.path());
    std::fs::remove_file(dir.path().join("widget/ground_truth/crack/001_mask.png")).unwrap();
    let err = read_mvtec(dir.path(), "widget").unwrap_err();
    assert!(
        matches!(&err, Error::MissingFile { path, .. } if path.ends_with("crack/001_mask.png")),
        "{err}"
    );
    assert!(err.to_string().contains("test/crack/001.png"), "{err}");
}

#[test]
fn mvtec_empty_train_folder_is_an_error_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    mvtec_tree(dir.path());
    for f in ["000.png", "001.png"] {
        std::fs::remove_file(dir.path().join("widget/train/good").join(f)).unwrap();
    }
    let err = read_mvtec(dir.path(), "widget").unwrap_err();
    assert!(matches!(&err, Error::Empty { path } if path.ends_with("widget/train/good")), "{err}");
    let err = read_mvtec(dir.path(), "nothing").unwrap_err();
    assert!(
        matches!(&err, Error::MissingFile { path, .. } if path.ends_with("nothing/train/good")),
        "{err}"
    );
}

#[test]
fn mvtec_pool_folder_is_read_into_the_pool() {
    let dir = tempfile::tempdir().unwrap();
    mvtec_tree(dir.path());
    for f in ["pool/crack/000.png", "pool/hole/000.png", "ground_truth_pool/crack/000_mask.png"] {
        write_png(&dir.path().join("widget").join(f), 8, 8);
    }
    let err = read_mvtec(dir.path(), "widget").unwrap_err();
    assert!(
        matches!(&err, Error::MissingFile { path, referenced_by } if path.ends_with("ground_truth_pool/hole/000_mask.png") && referenced_by.starts_with("pool image")),
        "{err}"
    );
    write_png(&dir.path().join("widget/ground_truth_pool/hole/000_mask.png"), 8, 8);
    let d = read_mvtec(dir.path(), "widget").unwrap();
    assert_eq!(
        summary(&d.pool),
        [a("widget/pool/crack/000.png", "crack"), a("widget/pool/hole/000.png", "hole")]
    );
    assert_eq!(d.test.len(), 3, "the test set is read as without a pool");
    assert_eq!(
        d.pool[1].mask_path.as_deref(),
        Some(dir.path().join("widget/ground_truth_pool/hole/000_mask.png").as_path())
    );
    write_png(&dir.path().join("widget/pool/good/000.png"), 8, 8);
    let err = read_mvtec(dir.path(), "widget").unwrap_err();
    assert!(err.to_string().contains("the pool holds anomalies only"), "{err}");
}

#[test]
fn mvtec_without_a_pool_has_an_empty_pool() {
    let dir = tempfile::tempdir().unwrap();
    mvtec_tree(dir.path());
    assert!(read_mvtec(dir.path(), "widget").unwrap().pool.is_empty());
}

pub(crate) const VISA_CSV: &str = "object,split,label,image,mask
candle,train,normal,candle/Data/Images/Normal/0000.JPG,
candle,train,normal,candle/Data/Images/Normal/0001.JPG,
candle,test,normal,candle/Data/Images/Normal/0002.JPG,
candle,test,anomaly,candle/Data/Images/Anomaly/000.JPG,candle/Data/Masks/Anomaly/000.png
capsules,train,normal,capsules/Data/Images/Normal/0000.JPG,
";

pub(crate) fn visa_tree(root: &Path, csv: &str) {
    write_text(&root.join("split_csv/1cls.csv"), csv);
    for f in [
        "Images/Normal/0000.JPG",
        "Images/Normal/0001.JPG",
        "Images/Normal/0002.JPG",
        "Images/Anomaly/000.JPG",
    ] {
        let path = root.join("candle/Data").join(f);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        image::RgbImage::new(8, 8).save_with_format(&path, image::ImageFormat::Jpeg).unwrap();
    }
    write_png(&root.join("candle/Data/Masks/Anomaly/000.png"), 8, 8);
}

#[test]
fn visa_split_is_read_for_one_object() {
    let dir = tempfile::tempdir().unwrap();
    visa_tree(dir.path(), VISA_CSV);
    let d = read_visa(dir.path(), "candle").unwrap();
    assert_eq!(
        summary(&d.train),
        [n("candle/Data/Images/Normal/0000.JPG"), n("candle/Data/Images/Normal/0001.JPG")]
    );
    assert_eq!(
        summary(&d.test),
        [
            a("candle/Data/Images/Anomaly/000.JPG", "anomaly"),
            n("candle/Data/Images/Normal/0002.JPG")
        ]
    );
}

#[test]
fn visa_bad_rows_give_errors_naming_the_line() {
    let dir = tempfile::tempdir().unwrap();
    let missing = VISA_CSV.replace("Normal/0001.JPG", "Normal/0009.JPG");
    visa_tree(dir.path(), &missing);
    let err = read_visa(dir.path(), "candle").unwrap_err();
    assert!(
        matches!(&err, Error::MissingFile { path, referenced_by } if path.ends_with("0009.JPG") && referenced_by.ends_with("line 3")),
        "{err}"
    );

    let duplicate = format!("{VISA_CSV}candle,test,normal,candle/Data/Images/Normal/0002.JPG,\n");
    visa_tree(dir.path(), &duplicate);
    let err = read_visa(dir.path(), "candle").unwrap_err();
    assert!(
        matches!(&err, Error::DuplicateId { id, .. } if id.as_str() == "candle/Data/Images/Normal/0002.JPG"),
        "{err}"
    );

    visa_tree(dir.path(), &VISA_CSV.replace("test,anomaly", "test,broken"));
    let err = read_visa(dir.path(), "candle").unwrap_err();
    assert!(err.to_string().contains("line 5: unknown label `broken`"), "{err}");

    visa_tree(dir.path(), &format!("\u{feff}{}", VISA_CSV.replace('\n', "\r\n")));
    assert_eq!(
        read_visa(dir.path(), "candle").unwrap().train.len(),
        2,
        "a BOM and CRLF line ends are accepted"
    );

    visa_tree(dir.path(), &VISA_CSV.replace("object,", "thing,"));
    assert!(
        read_visa(dir.path(), "candle").unwrap_err().to_string().contains("no column `object`")
    );
}

fn realiad_entry(class: &str, image: &str, mask: Option<&str>) -> serde_json::Value {
    serde_json::json!({"category": "toy_brick", "anomaly_class": class, "image_path": image, "mask_path": mask})
}

pub(crate) fn realiad_tree(root: &Path, train: &[serde_json::Value], test: &[serde_json::Value]) {
    let json = serde_json::json!({"meta": {"prefix": ""}, "train": train, "test": test});
    write_text(&root.join("realiad_jsons_fuiad_0.4/toy_brick.json"), &json.to_string());
    for entry in train.iter().chain(test) {
        write_png(
            &root.join("realiad_1024/toy_brick").join(entry["image_path"].as_str().unwrap()),
            8,
            8,
        );
        if let Some(mask) = entry["mask_path"].as_str() {
            write_png(&root.join("realiad_1024/toy_brick").join(mask), 8, 8);
        }
    }
}

pub(crate) fn realiad_entries() -> (Vec<serde_json::Value>, Vec<serde_json::Value>) {
    let train = vec![
        realiad_entry("OK", "OK/S0001/toy_brick_0001_OK_C1_20230101.jpg", None),
        realiad_entry("OK", "OK/S0001/toy_brick_0001_OK_C2_20230101.jpg", None),
        realiad_entry(
            "AK",
            "NG/AK/S0100/toy_brick_0100_NG_C1_20230101.jpg",
            Some("NG/AK/S0100/toy_brick_0100_NG_C1_20230101.png"),
        ),
    ];
    let test = vec![
        realiad_entry("OK", "OK/S0002/toy_brick_0002_OK_C5_20230101.jpg", None),
        realiad_entry(
            "QS",
            "NG/QS/S0200/toy_brick_0200_NG_C3_20230101.jpg",
            Some("NG/QS/S0200/toy_brick_0200_NG_C3_20230101.png"),
        ),
    ];
    (train, test)
}

#[test]
fn realiad_fuiad_split_keeps_hidden_labels_groups_and_reports_contamination() {
    let dir = tempfile::tempdir().unwrap();
    let (train, test) = realiad_entries();
    realiad_tree(dir.path(), &train, &test);
    let d: Dataset = read_realiad(dir.path(), RealIadSplit::Fuiad04, "toy_brick").unwrap();
    assert_eq!(d.train.len(), 3);
    assert_eq!(d.n_train_anomalous(), 1);
    let anomalous = d.train.iter().find(|s| s.is_anomalous()).unwrap();
    assert_eq!(anomalous.id.as_str(), "toy_brick/NG/AK/S0100/toy_brick_0100_NG_C1_20230101.jpg");
    assert_eq!(anomalous.defect_type.as_deref(), Some("AK"));
    let groups: Vec<_> = d.train.iter().map(|s| s.group.clone().unwrap()).collect();
    assert_eq!(
        groups,
        [
            GroupId::new("toy_brick_0100_NG"),
            GroupId::new("toy_brick_0001_OK"),
            GroupId::new("toy_brick_0001_OK")
        ]
    );
    let report = d.contamination.unwrap();
    assert_eq!(
        (report.requested_ratio, report.n_train_normal, report.n_train_anomalous),
        (0.4, 2, 1)
    );
    assert!((report.achieved_ratio - 1.0 / 3.0).abs() < 1e-12);
}

#[test]
fn realiad_bad_entries_give_errors_naming_them() {
    let dir = tempfile::tempdir().unwrap();
    let (mut train, test) = realiad_entries();
    realiad_tree(dir.path(), &train, &test);
    train.push(realiad_entry("OK", "OK/S0003/toy_brick_0003_OK_C1_x.jpg", None));
    let json = serde_json::json!({"meta": {}, "train": train, "test": test});
    write_text(&dir.path().join("realiad_jsons_fuiad_0.4/toy_brick.json"), &json.to_string());
    let err = read_realiad(dir.path(), RealIadSplit::Fuiad04, "toy_brick").unwrap_err();
    assert!(
        matches!(&err, Error::MissingFile { path, referenced_by } if path.ends_with("toy_brick_0003_OK_C1_x.jpg") && referenced_by.ends_with("train[3]")),
        "{err}"
    );

    let (mut train, test) = realiad_entries();
    train.push(train[0].clone());
    realiad_tree(dir.path(), &train, &test);
    let err = read_realiad(dir.path(), RealIadSplit::Fuiad04, "toy_brick").unwrap_err();
    assert!(
        matches!(&err, Error::DuplicateId { id, .. } if id.as_str().ends_with("toy_brick_0001_OK_C1_20230101.jpg")),
        "{err}"
    );

    write_text(&dir.path().join("realiad_jsons_fuiad_0.4/toy_brick.json"), "{\"train\": [");
    let err = read_realiad(dir.path(), RealIadSplit::Fuiad04, "toy_brick").unwrap_err();
    assert!(matches!(&err, Error::Parse { path, .. } if path.ends_with("toy_brick.json")), "{err}");
}

/// A json entry without a required field, or an anomaly without its mask, is an error naming
/// the file and the field or entry.
#[test]
fn realiad_entries_missing_a_field_are_errors_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let (train, test) = realiad_entries();
    realiad_tree(dir.path(), &train, &test);
    let json_path = dir.path().join("realiad_jsons_fuiad_0.4/toy_brick.json");
    let mut no_image = train.clone();
    no_image[1].as_object_mut().unwrap().remove("image_path");
    write_text(&json_path, &serde_json::json!({"train": no_image, "test": test}).to_string());
    let err = read_realiad(dir.path(), RealIadSplit::Fuiad04, "toy_brick").unwrap_err();
    assert!(
        err.to_string().contains("toy_brick.json")
            && err.to_string().contains("missing field `image_path`"),
        "{err}"
    );
    let mut no_mask = train.clone();
    no_mask[2]["mask_path"] = serde_json::Value::Null;
    write_text(&json_path, &serde_json::json!({"train": no_mask, "test": test}).to_string());
    let err = read_realiad(dir.path(), RealIadSplit::Fuiad04, "toy_brick").unwrap_err();
    assert!(err.to_string().contains("train[2] is anomalous but has no mask_path"), "{err}");
    write_text(&json_path, &serde_json::json!({"train": train}).to_string());
    let err = read_realiad(dir.path(), RealIadSplit::Fuiad04, "toy_brick").unwrap_err();
    assert!(err.to_string().contains("missing field `test`"), "{err}");
}

#[test]
fn realiad_group_prefixes() {
    fn check(name: &str, expected: Option<&str>) {
        let got = realiad_group(Path::new(name)).ok();
        assert_eq!(got.as_ref().map(GroupId::as_str), expected, "{name}");
    }
    check("audiojack_0001_OK_C1_20231021130155.jpg", Some("audiojack_0001_OK"));
    check("usb_adaptor_0042_NG_C5_2023.jpg", Some("usb_adaptor_0042_NG"));
    check("rolled_strip_base_1234_NG_C12_x.png", Some("rolled_strip_base_1234_NG"));
    check("audiojack_001_OK_C1_x.jpg", None);
    check("audiojack_0001_OK_view1.jpg", None);
    check("0001_OK_C1_x.jpg", None);
}

#[test]
fn image_folder_is_recursive_and_sorted() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    write_png(&root.join("b.png"), 4, 4);
    write_png(&root.join("sub/deeper/a.PNG"), 4, 4);
    image::GrayImage::new(4, 4).save(root.join("sub/c.bmp")).unwrap();
    image::ImageBuffer::<image::Luma<u16>, Vec<u16>>::new(4, 4)
        .save(root.join("sub/d.tiff"))
        .unwrap();
    write_text(&root.join("notes.txt"), "not an image");
    let ids: Vec<String> =
        read_image_folder(root).unwrap().iter().map(|s| s.id.to_string()).collect();
    assert_eq!(ids, ["b.png", "sub/c.bmp", "sub/d.tiff", "sub/deeper/a.PNG"]);
    let empty = tempfile::tempdir().unwrap();
    let err = read_image_folder(empty.path()).unwrap_err();
    assert!(matches!(&err, Error::Empty { path } if path == empty.path()), "{err}");
}

pub(crate) fn write_idx(path: &Path, dims: &[u32], data: &[u8]) {
    use std::io::Write;
    let mut bytes = vec![0, 0, 8, dims.len() as u8];
    for d in dims {
        bytes.extend_from_slice(&d.to_be_bytes());
    }
    bytes.extend_from_slice(data);
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(&bytes).unwrap();
    std::fs::write(path, gz.finish().unwrap()).unwrap();
}

/// A miniature Fashion-MNIST: `n` images per split, image `i` of class `i % 10`, filled with `i`.
fn fashion_tree(dir: &Path, n: u32) {
    for split in ["train", "t10k"] {
        let pixels: Vec<u8> = (0..n).flat_map(|i| vec![i as u8; 28 * 28]).collect();
        let labels: Vec<u8> = (0..n).map(|i| (i % 10) as u8).collect();
        write_idx(&dir.join(format!("{split}-images-idx3-ubyte.gz")), &[n, 28, 28], &pixels);
        write_idx(&dir.join(format!("{split}-labels-idx1-ubyte.gz")), &[n], &labels);
    }
}

#[test]
fn fashion_mnist_one_class_protocol_with_contamination() {
    let idx = tempfile::tempdir().unwrap();
    fashion_tree(idx.path(), 200);
    let out = tempfile::tempdir().unwrap();
    let config = FashionMnistConfig { normal_class: 3, contamination_ratio: 0.2, seed: 5 };
    let d = read_fashion_mnist(idx.path(), out.path(), &config).unwrap();
    assert_eq!(d.category, "fashion-mnist-dress");
    assert_eq!((d.train.len(), d.n_train_anomalous()), (25, 5));
    assert_eq!((d.test.len(), d.n_test_anomalous()), (200, 180));
    assert_eq!(d.contamination.as_ref().unwrap().achieved_ratio, 0.2);
    assert!(d.train.iter().all(|s| s.id.as_str().starts_with("train/")));
    let first = image::open(&d.train[0].image_path).unwrap().to_luma8();
    assert_eq!(first.dimensions(), (28, 28));
    let index: u8 = d.train[0].id.as_str()[6..11].parse().unwrap();
    assert_eq!(first.get_pixel(0, 0).0[0], index);
    let again = read_fashion_mnist(idx.path(), out.path(), &config).unwrap();
    assert_eq!(again.train, d.train);
}

#[test]
fn fashion_mnist_bad_input_is_an_error_naming_the_file() {
    let idx = tempfile::tempdir().unwrap();
    fashion_tree(idx.path(), 20);
    let out = tempfile::tempdir().unwrap();
    let config = FashionMnistConfig { normal_class: 10, contamination_ratio: 0.0, seed: 0 };
    assert!(matches!(
        read_fashion_mnist(idx.path(), out.path(), &config),
        Err(Error::Config { field: "normal_class", .. })
    ));
    let labels = idx.path().join("t10k-labels-idx1-ubyte.gz");
    write_idx(&labels, &[20, 1], &[0; 20]);
    let config = FashionMnistConfig { normal_class: 0, contamination_ratio: 0.0, seed: 0 };
    let err = read_fashion_mnist(idx.path(), out.path(), &config).unwrap_err();
    assert!(matches!(&err, Error::Parse { path, .. } if *path == labels), "{err}");
    std::fs::write(&labels, b"not gzip").unwrap();
    let err = read_fashion_mnist(idx.path(), out.path(), &config).unwrap_err();
    assert!(matches!(&err, Error::Parse { path, .. } if *path == labels), "{err}");
}

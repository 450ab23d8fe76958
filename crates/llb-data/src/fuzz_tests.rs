//! Fuzzing of this crate's parsers of outside bytes (`llb_types::fuzz`): PNG, JPEG, TIFF and BMP
//! through the limited decoder, Fashion-MNIST idx files, Real-IAD json splits and the VisA split
//! csv. A fixed number of seeded mutants each; no panic, peak memory within a bound linear in
//! the input length.

use crate::preprocess::{MAX_IMAGE_EXPANSION, decode_image_bytes};
use crate::readers::tests::{VISA_CSV, realiad_entries, realiad_tree, visa_tree};
use crate::readers::{MAX_IDX_BYTES, parse_idx};
use crate::{RealIadSplit, read_realiad, read_visa};
use image::{DynamicImage, ImageFormat};
use llb_types::fuzz::{PeakAlloc, run};
use std::io::Write;
use std::path::Path;

#[global_allocator]
static ALLOC: PeakAlloc = PeakAlloc;

fn encoded(image: DynamicImage, format: ImageFormat) -> Vec<u8> {
    let mut out = std::io::Cursor::new(Vec::new());
    image.write_to(&mut out, format).unwrap();
    out.into_inner()
}

/// A small textured image, so that encoders do not collapse it to nothing.
fn texture(w: u32, h: u32) -> image::RgbImage {
    image::RgbImage::from_fn(w, h, |x, y| {
        image::Rgb([(x * 7) as u8, (y * 11) as u8, (x ^ y) as u8])
    })
}

#[test]
fn image_decoder() {
    let rgb = texture(24, 16);
    let grey16 = image::ImageBuffer::<image::Luma<u16>, _>::from_fn(16, 12, |x, y| {
        image::Luma([(x * 4000 + y * 300) as u16])
    });
    let corpus = vec![
        encoded(DynamicImage::ImageRgb8(rgb.clone()), ImageFormat::Png),
        encoded(DynamicImage::ImageLuma16(grey16), ImageFormat::Png),
        encoded(DynamicImage::ImageRgb8(rgb.clone()), ImageFormat::Jpeg),
        encoded(DynamicImage::ImageRgb8(rgb.clone()), ImageFormat::Tiff),
        encoded(DynamicImage::ImageRgb8(rgb), ImageFormat::Bmp),
    ];
    let tokens: [&[u8]; 4] = [
        b"IHDR\x00\x00\x40\x00\x00\x00\x40\x00",
        b"\xff\xc0\x00\x11\x08\x7f\xff\x7f\xff",
        b"IDAT",
        b"\xff\xd9",
    ];
    // Decoded pixels are capped at `MAX_IMAGE_EXPANSION` bytes per file byte plus 1 MiB; the
    // decoders' own buffers (zlib window, Huffman tables, rows) add a few MiB at most.
    let bound = |len: usize| MAX_IMAGE_EXPANSION as usize * len + (8 << 20);
    run("png/jpeg/tiff/bmp decoder", &corpus, &tokens, 1000, 31, bound, |b| {
        decode_image_bytes(b, Path::new("x")).map(drop)
    })
    .assert_clean();
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(bytes).unwrap();
    gz.finish().unwrap()
}

#[test]
fn fashion_mnist_idx_reader() {
    let idx = |dims: &[u32], data: &[u8]| {
        let mut bytes = vec![0, 0, 8, dims.len() as u8];
        dims.iter().for_each(|d| bytes.extend_from_slice(&d.to_be_bytes()));
        bytes.extend_from_slice(data);
        bytes
    };
    let images = idx(&[3, 28, 28], &[7; 3 * 28 * 28]);
    let labels = idx(&[3], &[1, 2, 3]);
    let parse = |raw: &[u8]| {
        let n_dims = usize::from(raw.get(3).copied().unwrap_or(1)).clamp(1, 3);
        parse_idx(raw, n_dims, Path::new("x.gz")).map(drop)
    };
    // The raw idx layout (header fields mutated directly), then gzip streams as read from disk.
    let bound = |len: usize| 2 * len + (1 << 20);
    run(
        "idx (raw)",
        &[images.clone(), labels.clone()],
        &[b"\xff\xff\xff\xff"],
        1000,
        32,
        bound,
        parse,
    )
    .assert_clean();
    let gz_bound = |len: usize| 2 * 1032 * len + (1 << 20);
    run("idx (gzip)", &[gzip(&images)], &[], 1000, 33, gz_bound, |b| {
        parse_idx(flate2::read::GzDecoder::new(b), 3, Path::new("x.gz")).map(drop)
    })
    .assert_clean();
    // A header asking for 2^32 × 28 × 28 bytes is refused before decompressing anything more.
    let lying = gzip(&idx(&[u32::MAX, 28, 28], &[0; 16]));
    let err =
        parse_idx(flate2::read::GzDecoder::new(&lying[..]), 3, Path::new("x.gz")).unwrap_err();
    assert!(err.to_string().contains(&format!("more than {MAX_IDX_BYTES} bytes")), "{err}");
}

#[test]
fn realiad_json_split_reader() {
    let dir = tempfile::tempdir().unwrap();
    let (train, test) = realiad_entries();
    realiad_tree(dir.path(), &train, &test);
    let json = dir.path().join("realiad_jsons_fuiad_0.4/toy_brick.json");
    let corpus = vec![std::fs::read(&json).unwrap()];
    let tokens: [&[u8]; 5] = [b"null", b"\"OK\"", b"\"../\"", b"[[[[[[[[[[[[", b"\"mask_path\":"];
    run(
        "real-iad json split",
        &corpus,
        &tokens,
        1000,
        34,
        |len| 64 * len + (64 << 10),
        |b| {
            std::fs::write(&json, b).unwrap();
            read_realiad(dir.path(), RealIadSplit::Fuiad04, "toy_brick").map(drop)
        },
    )
    .assert_clean();
}

#[test]
fn visa_split_csv_reader() {
    let dir = tempfile::tempdir().unwrap();
    visa_tree(dir.path(), VISA_CSV);
    let csv = dir.path().join("split_csv/1cls.csv");
    let tokens: [&[u8]; 5] = [b",", b"\n", b"anomaly", b"train", b"\xef\xbb\xbf"];
    run(
        "visa split csv",
        &[VISA_CSV.as_bytes().to_vec()],
        &tokens,
        1000,
        35,
        |len| 64 * len + (64 << 10),
        |b| {
            std::fs::write(&csv, b).unwrap();
            read_visa(dir.path(), "candle").map(drop)
        },
    )
    .assert_clean();
}

/// A valid PNG whose header is rewritten to claim `w × h` pixels (checksum recomputed).
fn png_claiming(w: u32, h: u32) -> Vec<u8> {
    let mut png = encoded(DynamicImage::ImageRgb8(texture(8, 8)), ImageFormat::Png);
    // Signature (8), IHDR length (4), "IHDR" (4), width (4), height (4), …, CRC after 13 bytes.
    png[16..20].copy_from_slice(&w.to_be_bytes());
    png[20..24].copy_from_slice(&h.to_be_bytes());
    let mut crc = flate2::Crc::new();
    crc.update(&png[12..29]);
    png[29..33].copy_from_slice(&crc.sum().to_be_bytes());
    png
}

/// A file of a few hundred bytes whose header claims 12,000 × 12,000 RGB pixels (432 MB, under
/// the `image` crate's 512 MiB default, so it used to be allocated) is refused from its header,
/// before any pixel buffer is allocated.
#[test]
fn an_image_header_claiming_more_than_the_file_can_hold_is_refused_before_decoding() {
    let png = png_claiming(12_000, 12_000);
    assert!(png.len() < 1000);
    let (result, peak) =
        llb_types::fuzz::measure_peak(|| decode_image_bytes(&png, Path::new("big.png")));
    let err = result.unwrap_err().to_string();
    assert!(err.contains("big.png") && err.contains("12000×12000"), "{err}");
    assert!(peak < 1 << 20, "peak {peak} bytes");
    // Past the side limit, the decoder refuses it by itself.
    let err = decode_image_bytes(&png_claiming(20_000, 8), Path::new("wide.png")).unwrap_err();
    assert!(err.to_string().contains("wide.png"), "{err}");
    // Empty and truncated files are decode errors naming the file.
    for bytes in [&png[..0], &png[..40]] {
        let err = decode_image_bytes(bytes, Path::new("cut.png")).unwrap_err();
        assert!(err.to_string().contains("cut.png"), "{err}");
    }
}

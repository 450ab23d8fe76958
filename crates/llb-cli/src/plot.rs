//! PNG rendering of fused-score histograms (normal vs anomalous), with a tiny built-in bitmap font
//! for the title, legend and axis labels.

use anyhow::Context;
use image::{Rgb, RgbImage};
use llb_purify::{Histogram, HistogramBin};
use std::path::Path;

const WIDTH: u32 = 800;
const HEIGHT: u32 = 480;
const LEFT: u32 = 70;
const RIGHT: u32 = 20;
const TOP: u32 = 70;
const BOTTOM: u32 = 40;
/// Pixel size of one font dot.
const TEXT_SCALE: u32 = 2;

const BACKGROUND: Rgb<u8> = Rgb([255, 255, 255]);
const INK: Rgb<u8> = Rgb([40, 40, 40]);
/// Bar colour of normal samples.
pub(crate) const NORMAL: Rgb<u8> = Rgb([70, 130, 180]);
/// Bar colour of anomalous samples.
pub(crate) const ANOMALOUS: Rgb<u8> = Rgb([220, 20, 60]);
/// Bar colour of unlabeled samples.
pub(crate) const UNLABELED: Rgb<u8> = Rgb([150, 150, 150]);
/// Colour of the cut marker.
pub(crate) const CUT: Rgb<u8> = Rgb([255, 140, 0]);

/// One bar series: its colour, its legend name and the count it takes from a bin.
type Series = (Rgb<u8>, &'static str, fn(&HistogramBin) -> u32);

/// The series in drawing order; empty ones are left out of a chart.
const SERIES: [Series; 3] = [
    (NORMAL, "NORMAL", |b| b.normal),
    (ANOMALOUS, "ANOMALOUS", |b| b.anomalous),
    (UNLABELED, "UNLABELED", |b| b.unlabeled),
];

/// Renders `histogram` as an 800×480 PNG bar chart and writes it atomically to `path`
/// (`llb_types::atomic`: a uniquely named temporary file in the same folder, synced, renamed).
///
/// Each bin shows one bar per non-empty series side by side: normal (blue), anomalous (red) and
/// unlabeled (grey); the cut, if any, is an orange vertical line. The title, a legend, the score
/// range and the largest count are drawn in a 5×7 bitmap font (upper case; characters outside
/// the font show as `?`).
pub(crate) fn histogram_png(path: &Path, histogram: &Histogram, title: &str) -> anyhow::Result<()> {
    let image = render(histogram, title);
    llb_types::atomic::write_with(path, |file| {
        let mut out = std::io::BufWriter::new(file);
        image.write_to(&mut out, image::ImageFormat::Png).map_err(std::io::Error::other)?;
        std::io::Write::flush(&mut out)
    })
    .with_context(|| format!("writing histogram PNG {}", path.display()))
}

/// The chart as an image (see [`histogram_png`]).
fn render(histogram: &Histogram, title: &str) -> RgbImage {
    let mut img = RgbImage::from_pixel(WIDTH, HEIGHT, BACKGROUND);
    let (plot_w, plot_h) = (WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM);
    let bins = &histogram.bins;
    let series: Vec<Series> = SERIES
        .into_iter()
        .filter(|(_, _, count)| bins.iter().map(count).sum::<u32>() > 0)
        .collect();
    let max_count = histogram.max_count().max(1);
    if !bins.is_empty() && !series.is_empty() {
        let bin_w = f64::from(plot_w) / bins.len() as f64;
        let bar_w = bin_w / series.len() as f64;
        for (b, bin) in bins.iter().enumerate() {
            for (s, (colour, _, count)) in series.iter().enumerate() {
                let h = (f64::from(count(bin)) / f64::from(max_count) * f64::from(plot_h)).round()
                    as u32;
                let x0 = LEFT + (b as f64 * bin_w + s as f64 * bar_w).floor() as u32;
                let x1 = LEFT + (b as f64 * bin_w + (s + 1) as f64 * bar_w).floor() as u32;
                fill(
                    &mut img,
                    x0,
                    TOP + plot_h - h,
                    x1.saturating_sub(1).max(x0 + 1),
                    TOP + plot_h,
                    *colour,
                );
            }
        }
    }
    if let (Some(cut), Some(first), Some(last)) = (histogram.cut, bins.first(), bins.last()) {
        let (lo, hi) = (f64::from(first.lo), f64::from(last.hi));
        if hi > lo && (lo..=hi).contains(&f64::from(cut)) {
            let x =
                LEFT + ((f64::from(cut) - lo) / (hi - lo) * f64::from(plot_w - 1)).round() as u32;
            fill(&mut img, x.saturating_sub(1), TOP, x + 2, TOP + plot_h, CUT);
        }
    }
    // Axes.
    fill(&mut img, LEFT - 2, TOP, LEFT, TOP + plot_h + 2, INK);
    fill(&mut img, LEFT - 2, TOP + plot_h, LEFT + plot_w, TOP + plot_h + 2, INK);
    // Title, legend and labels.
    draw_text(&mut img, LEFT, 10, title, INK);
    let mut x = LEFT;
    let mut legend: Vec<(Rgb<u8>, &str)> = series.iter().map(|(c, name, _)| (*c, *name)).collect();
    if histogram.cut.is_some() {
        legend.push((CUT, "CUT"));
    }
    for (colour, name) in legend {
        fill(&mut img, x, 38, x + 14, 52, colour);
        x = draw_text(&mut img, x + 20, 38, name, INK) + 24;
    }
    draw_text(&mut img, 4, TOP, &max_count.to_string(), INK);
    draw_text(&mut img, 4, TOP + plot_h - 14, "0", INK);
    if let (Some(first), Some(last)) = (bins.first(), bins.last()) {
        draw_text(&mut img, LEFT, TOP + plot_h + 8, &format!("{:.4}", first.lo), INK);
        let hi = format!("{:.4}", last.hi);
        draw_text(&mut img, WIDTH - RIGHT - text_width(&hi), TOP + plot_h + 8, &hi, INK);
    }
    img
}

/// Fills the rectangle `[x0, x1) × [y0, y1)`, clipped to the image.
fn fill(img: &mut RgbImage, x0: u32, y0: u32, x1: u32, y1: u32, colour: Rgb<u8>) {
    for y in y0..y1.min(img.height()) {
        for x in x0..x1.min(img.width()) {
            img.put_pixel(x, y, colour);
        }
    }
}

/// Width in pixels of `text` in the bitmap font.
fn text_width(text: &str) -> u32 {
    text.chars().count() as u32 * 6 * TEXT_SCALE
}

/// Draws `text` with its top-left corner at `(x, y)`; returns the x just after it.
fn draw_text(img: &mut RgbImage, x: u32, y: u32, text: &str, colour: Rgb<u8>) -> u32 {
    let mut pen = x;
    for c in text.chars() {
        for (row, bits) in glyph(c).iter().enumerate() {
            for (col, dot) in bits.bytes().enumerate() {
                if dot == b'1' {
                    let (px, py) = (pen + col as u32 * TEXT_SCALE, y + row as u32 * TEXT_SCALE);
                    fill(img, px, py, px + TEXT_SCALE, py + TEXT_SCALE, colour);
                }
            }
        }
        pen += 6 * TEXT_SCALE;
    }
    pen
}

/// The 5×7 dot pattern of a character (lower case drawn as upper case, unknown as `?`).
fn glyph(c: char) -> [&'static str; 7] {
    match c.to_ascii_uppercase() {
        '0' => ["01110", "10001", "10011", "10101", "11001", "10001", "01110"],
        '1' => ["00100", "01100", "00100", "00100", "00100", "00100", "01110"],
        '2' => ["01110", "10001", "00001", "00010", "00100", "01000", "11111"],
        '3' => ["11111", "00010", "00100", "00010", "00001", "10001", "01110"],
        '4' => ["00010", "00110", "01010", "10010", "11111", "00010", "00010"],
        '5' => ["11111", "10000", "11110", "00001", "00001", "10001", "01110"],
        '6' => ["00110", "01000", "10000", "11110", "10001", "10001", "01110"],
        '7' => ["11111", "00001", "00010", "00100", "01000", "01000", "01000"],
        '8' => ["01110", "10001", "10001", "01110", "10001", "10001", "01110"],
        '9' => ["01110", "10001", "10001", "01111", "00001", "00010", "01100"],
        'A' => ["01110", "10001", "10001", "11111", "10001", "10001", "10001"],
        'B' => ["11110", "10001", "10001", "11110", "10001", "10001", "11110"],
        'C' => ["01110", "10001", "10000", "10000", "10000", "10001", "01110"],
        'D' => ["11100", "10010", "10001", "10001", "10001", "10010", "11100"],
        'E' => ["11111", "10000", "10000", "11110", "10000", "10000", "11111"],
        'F' => ["11111", "10000", "10000", "11110", "10000", "10000", "10000"],
        'G' => ["01110", "10001", "10000", "10111", "10001", "10001", "01111"],
        'H' => ["10001", "10001", "10001", "11111", "10001", "10001", "10001"],
        'I' => ["01110", "00100", "00100", "00100", "00100", "00100", "01110"],
        'J' => ["00111", "00010", "00010", "00010", "00010", "10010", "01100"],
        'K' => ["10001", "10010", "10100", "11000", "10100", "10010", "10001"],
        'L' => ["10000", "10000", "10000", "10000", "10000", "10000", "11111"],
        'M' => ["10001", "11011", "10101", "10101", "10001", "10001", "10001"],
        'N' => ["10001", "10001", "11001", "10101", "10011", "10001", "10001"],
        'O' => ["01110", "10001", "10001", "10001", "10001", "10001", "01110"],
        'P' => ["11110", "10001", "10001", "11110", "10000", "10000", "10000"],
        'Q' => ["01110", "10001", "10001", "10001", "10101", "10010", "01101"],
        'R' => ["11110", "10001", "10001", "11110", "10100", "10010", "10001"],
        'S' => ["01111", "10000", "10000", "01110", "00001", "00001", "11110"],
        'T' => ["11111", "00100", "00100", "00100", "00100", "00100", "00100"],
        'U' => ["10001", "10001", "10001", "10001", "10001", "10001", "01110"],
        'V' => ["10001", "10001", "10001", "10001", "10001", "01010", "00100"],
        'W' => ["10001", "10001", "10001", "10101", "10101", "10101", "01010"],
        'X' => ["10001", "10001", "01010", "00100", "01010", "10001", "10001"],
        'Y' => ["10001", "10001", "10001", "01010", "00100", "00100", "00100"],
        'Z' => ["11111", "00001", "00010", "00100", "01000", "10000", "11111"],
        ' ' => ["00000"; 7],
        '.' => ["00000", "00000", "00000", "00000", "00000", "01100", "01100"],
        ',' => ["00000", "00000", "00000", "00000", "01100", "00100", "01000"],
        '-' => ["00000", "00000", "00000", "11111", "00000", "00000", "00000"],
        '_' => ["00000", "00000", "00000", "00000", "00000", "00000", "11111"],
        '(' => ["00010", "00100", "01000", "01000", "01000", "00100", "00010"],
        ')' => ["01000", "00100", "00010", "00010", "00010", "00100", "01000"],
        ':' => ["00000", "01100", "01100", "00000", "01100", "01100", "00000"],
        '=' => ["00000", "00000", "11111", "00000", "11111", "00000", "00000"],
        '/' => ["00000", "00001", "00010", "00100", "01000", "10000", "00000"],
        '%' => ["11000", "11001", "00010", "00100", "01000", "10011", "00011"],
        '+' => ["00000", "00100", "00100", "11111", "00100", "00100", "00000"],
        _ => ["01110", "10001", "00001", "00010", "00100", "00000", "00100"],
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use llb_purify::FusedScores;
    use llb_types::{Label, SampleId};
    use std::collections::BTreeMap;

    fn count(img: &RgbImage, colour: Rgb<u8>) -> usize {
        img.pixels().filter(|p| **p == colour).count()
    }

    #[test]
    fn writes_a_png_that_decodes_back_with_both_series_and_the_cut() {
        let scores = [0.1, 0.12, 0.15, 0.2, 0.22, 0.8, 0.9];
        let ids: Vec<SampleId> =
            (0..scores.len()).map(|i| SampleId::new(format!("s{i}"))).collect();
        let labels: BTreeMap<SampleId, Label> = ids
            .iter()
            .enumerate()
            .map(|(i, id)| (id.clone(), if i >= 5 { Label::Anomalous } else { Label::Normal }))
            .collect();
        let fused = FusedScores::new("mean", ids, scores.to_vec()).unwrap();
        let histogram = Histogram::new(&fused, Some(&labels), 8).unwrap().with_cut(0.22);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("hist.png");
        histogram_png(&path, &histogram, "bottle: mean, keep-fraction(0.7)").unwrap();
        let img = image::open(&path).unwrap().to_rgb8();
        assert_eq!(img.dimensions(), (WIDTH, HEIGHT));
        assert!(count(&img, NORMAL) > 1000, "normal bars are drawn");
        assert!(count(&img, ANOMALOUS) > 1000, "anomalous bars are drawn");
        assert!(count(&img, CUT) > 100, "the cut is marked");
        assert_eq!(count(&img, UNLABELED), 0, "no unlabeled series when everything is labelled");
        let title_ink = (0..30)
            .flat_map(|y| (LEFT..WIDTH).map(move |x| (x, y)))
            .filter(|&(x, y)| *img.get_pixel(x, y) == INK)
            .count();
        assert!(title_ink > 100, "the title is drawn");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1, "no temporary file is left");
    }

    #[test]
    fn taller_bars_for_larger_counts() {
        let bin = |lo: f32, unlabeled: u32| HistogramBin {
            lo,
            hi: lo + 1.0,
            normal: 0,
            anomalous: 0,
            unlabeled,
        };
        let histogram = Histogram { bins: vec![bin(0.0, 1), bin(1.0, 4)], cut: None };
        let img = render(&histogram, "");
        let column = |x: u32| (0..HEIGHT).filter(|&y| *img.get_pixel(x, y) == UNLABELED).count();
        let plot_w = WIDTH - LEFT - RIGHT;
        let (short, tall) = (column(LEFT + plot_w / 4), column(LEFT + 3 * plot_w / 4));
        assert_eq!(tall, (HEIGHT - TOP - BOTTOM) as usize);
        assert!((short as f64 - tall as f64 / 4.0).abs() <= 1.0, "{short} vs {tall}");
        assert_eq!((count(&img, NORMAL), count(&img, CUT)), (0, 0));
    }

    #[test]
    fn glyphs_are_five_by_seven_and_text_advances() {
        for c in "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ .,-_():=/%+?~".chars() {
            assert!(
                glyph(c)
                    .iter()
                    .all(|row| row.len() == 5 && row.bytes().all(|b| b == b'0' || b == b'1')),
                "{c}"
            );
        }
        assert_eq!(glyph('a'), glyph('A'));
        let mut img = RgbImage::from_pixel(40, 20, BACKGROUND);
        assert_eq!(draw_text(&mut img, 0, 0, "1.", INK), 2 * 6 * TEXT_SCALE);
        assert_eq!(text_width("1."), 24);
        assert_eq!(*img.get_pixel(4, 0), INK, "top dot of `1`");
    }

    #[test]
    fn an_unwritable_path_is_an_error_naming_it() {
        let histogram = Histogram { bins: vec![], cut: None };
        let dir = tempfile::tempdir().unwrap();
        // A regular file where a folder is needed.
        let blocker = dir.path().join("file");
        std::fs::write(&blocker, b"").unwrap();
        let path = blocker.join("h.png");
        let err = histogram_png(&path, &histogram, "t").unwrap_err();
        assert!(format!("{err:#}").contains(&*path.to_string_lossy()), "{err:#}");
    }
}

//! A small SVG line chart (metric vs α, one line per method), written as text: no plotting
//! dependency, and the file diffs well.

use super::results::{Results, Row, Sel};
use std::fmt::Write;

const PALETTE: [&str; 6] = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b"];

/// Reads one metric of a row.
type Metric = fn(&Row) -> Option<f64>;

/// Two panels side by side: image AUROC and pixel AUPRO (%), against α, per method.
pub(crate) fn metric_vs_alpha(results: &Results) -> String {
    let (panel_w, panel_h, margin) = (320.0, 240.0, 48.0);
    let mut svg = String::new();
    let width = 2.0 * (panel_w + margin) + margin;
    let _ = writeln!(
        svg,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{}" font-family="sans-serif" font-size="12">"#,
        panel_h + 2.0 * margin + 20.0
    );
    let _ = writeln!(svg, r#"<rect width="100%" height="100%" fill="white"/>"#);
    let ratios = &results.manifest.contamination_ratios;
    let max_ratio = ratios.iter().copied().fold(0.0, f64::max).max(1e-9);
    let metrics: [(&str, Metric); 2] =
        [("image AUROC (%)", |r| Some(r.i_auroc)), ("pixel AUPRO (%)", |r| r.p_aupro)];
    for (panel, (title, metric)) in metrics.iter().enumerate() {
        let x0 = margin + panel as f64 * (panel_w + margin);
        let y0 = margin;
        let series: Vec<(String, Vec<(f64, f64)>)> = results
            .methods()
            .into_iter()
            .map(|m| {
                let points = ratios
                    .iter()
                    .filter_map(|&a| {
                        results.estimate(Sel::main(&m, a), *metric).map(|e| (a, 100.0 * e.mean))
                    })
                    .collect();
                (m, points)
            })
            .collect();
        let values: Vec<f64> = series.iter().flat_map(|(_, p)| p.iter().map(|&(_, v)| v)).collect();
        let lo = (values.iter().copied().fold(100.0, f64::min) - 2.0).floor().max(0.0);
        let hi = (values.iter().copied().fold(0.0, f64::max) + 2.0).ceil().min(100.0).max(lo + 1.0);
        let x = |a: f64| x0 + a / max_ratio * panel_w;
        let y = |v: f64| y0 + panel_h - (v - lo) / (hi - lo) * panel_h;
        let _ = writeln!(
            svg,
            r#"<text x="{}" y="{}" text-anchor="middle">{title}</text>"#,
            x0 + panel_w / 2.0,
            y0 - 10.0
        );
        let _ = writeln!(
            svg,
            r#"<rect x="{x0}" y="{y0}" width="{panel_w}" height="{panel_h}" fill="none" stroke="black"/>"#
        );
        for &a in ratios {
            let _ = writeln!(
                svg,
                r#"<text x="{}" y="{}" text-anchor="middle">{a}</text>"#,
                x(a),
                y0 + panel_h + 16.0
            );
        }
        let _ = writeln!(
            svg,
            r#"<text x="{}" y="{}" text-anchor="middle">α</text>"#,
            x0 + panel_w / 2.0,
            y0 + panel_h + 32.0
        );
        for v in [lo, (lo + hi) / 2.0, hi] {
            let _ = writeln!(
                svg,
                r#"<text x="{}" y="{}" text-anchor="end">{v:.0}</text>"#,
                x0 - 4.0,
                y(v) + 4.0
            );
        }
        for (i, (method, points)) in series.iter().enumerate() {
            let colour = PALETTE[i % PALETTE.len()];
            let path: Vec<String> =
                points.iter().map(|&(a, v)| format!("{:.1},{:.1}", x(a), y(v))).collect();
            let _ = writeln!(
                svg,
                r#"<polyline fill="none" stroke="{colour}" stroke-width="2" points="{}"/>"#,
                path.join(" ")
            );
            for &(a, v) in points {
                let _ = writeln!(
                    svg,
                    r#"<circle cx="{:.1}" cy="{:.1}" r="3" fill="{colour}"/>"#,
                    x(a),
                    y(v)
                );
            }
            if panel == 0 {
                let ly = y0 + 16.0 + 16.0 * i as f64;
                let _ = writeln!(
                    svg,
                    r#"<text x="{}" y="{ly}" fill="{colour}">{method}</text>"#,
                    x0 + 8.0
                );
            }
        }
    }
    svg.push_str("</svg>\n");
    svg
}

//! The synthetic defects. Each one edits a tile in place and returns its exact mask: the pixels
//! it changed on purpose (row-major, `true` = defect). Sizes are fractions of the tile side, so
//! the defects scale with `tile_size_px`; sizes, shapes and strengths are drawn per defect.

use super::config::DefectKind;
use super::math::{Tile, cos, sin};
use rand::Rng;
use std::f64::consts::PI;

/// Applies one defect of `kind` to `tile`; `donor` is a tile from elsewhere (another texture or
/// another place of the same one) for cut-paste. Returns the mask, never empty.
pub(crate) fn apply(
    kind: DefectKind,
    tile: &mut Tile,
    donor: &Tile,
    rng: &mut impl Rng,
) -> Vec<bool> {
    let mask = match kind {
        DefectKind::Scratch => scratch(tile, rng),
        DefectKind::CutPaste => cut_paste(tile, donor, rng),
        DefectKind::Stain => stain(tile, rng),
        DefectKind::Hole => hole(tile, rng),
        DefectKind::ColourShift => colour_shift(tile, rng),
        DefectKind::Warp => warp(tile, rng),
    };
    debug_assert!(mask.iter().any(|&m| m), "{kind:?} produced an empty mask");
    mask
}

/// An irregular blob: an ellipse whose radius wobbles with the angle
/// (`r(θ) = r·(1 + Σ a_k·sin(kθ + φ_k))`, k = 2..5). Returns `(inside, depth)` where depth is
/// 0 at the rim and 1 at the centre.
pub(crate) struct Blob {
    cx: f64,
    cy: f64,
    radius: f64,
    aspect: f64,
    cos_rot: f64,
    sin_rot: f64,
    wobble: Vec<(f64, f64, f64)>,
}

impl Blob {
    /// A blob with the given centre, radius (px), aspect (minor/major axis), rotation (rad) and
    /// wobble terms `(amplitude, phase)` for k = 2, 3, ….
    pub(crate) fn new(
        (cx, cy): (f64, f64),
        radius: f64,
        aspect: f64,
        rotation: f64,
        wobble: &[(f64, f64)],
    ) -> Self {
        Self {
            cx,
            cy,
            radius,
            aspect,
            cos_rot: cos(rotation),
            sin_rot: sin(rotation),
            wobble: wobble.iter().map(|&(amp, phase)| (amp, cos(phase), sin(phase))).collect(),
        }
    }

    fn random(size: f64, r_lo: f64, r_hi: f64, irregularity: f64, rng: &mut impl Rng) -> Self {
        let radius = size * rng.random_range(r_lo..r_hi);
        let margin = radius.min(size / 2.0 - 1.0);
        let rot = rng.random_range(0.0..PI);
        let wobble = (2..=5)
            .map(|k| {
                let amp = rng.random_range(0.0..irregularity / f64::from(k));
                let phase = rng.random_range(0.0..2.0 * PI);
                (amp, cos(phase), sin(phase))
            })
            .collect();
        Self {
            cx: rng.random_range(margin..size - margin),
            cy: rng.random_range(margin..size - margin),
            radius,
            aspect: rng.random_range(0.45..1.0),
            cos_rot: cos(rot),
            sin_rot: sin(rot),
            wobble,
        }
    }

    /// Depth in `(0, 1]` inside the blob, `None` outside.
    fn depth(&self, x: f64, y: f64) -> Option<f64> {
        let (dx, dy) = (x - self.cx, y - self.cy);
        let u = dx * self.cos_rot + dy * self.sin_rot;
        let v = (-dx * self.sin_rot + dy * self.cos_rot) / self.aspect;
        let d = (u * u + v * v).sqrt();
        if d == 0.0 {
            return Some(1.0);
        }
        // cos(kθ), sin(kθ) by the Chebyshev recurrence from cos θ = u/d, sin θ = v/d.
        let (c1, s1) = (u / d, v / d);
        let (mut ck, mut sk) = (c1, s1);
        let mut wobble = 0.0;
        for &(amp, cp, sp) in &self.wobble {
            (ck, sk) = (ck * c1 - sk * s1, sk * c1 + ck * s1);
            wobble += amp * (sk * cp + ck * sp);
        }
        let rim = self.radius * (1.0 + wobble).max(0.3);
        (d < rim).then(|| 1.0 - d / rim)
    }

    /// The pixels inside the blob with their depth; never empty (the centre pixel at least).
    pub(crate) fn mask(&self, n: usize) -> Vec<(usize, usize, f64)> {
        let mut inside = Vec::new();
        for y in 0..n {
            for x in 0..n {
                if let Some(depth) = self.depth(x as f64 + 0.5, y as f64 + 0.5) {
                    inside.push((x, y, depth));
                }
            }
        }
        if inside.is_empty() {
            let (x, y) = (self.cx as usize, self.cy as usize);
            inside.push((x.min(n - 1), y.min(n - 1), 1.0));
        }
        inside
    }
}

pub(crate) fn to_mask(n: usize, pixels: &[(usize, usize, f64)]) -> Vec<bool> {
    let mut mask = vec![false; n * n];
    for &(x, y, _) in pixels {
        mask[y * n + x] = true;
    }
    mask
}

fn scratch(tile: &mut Tile, rng: &mut impl Rng) -> Vec<bool> {
    let n = tile.size;
    let s = n as f64;
    let length = s * rng.random_range(0.2..0.7);
    let angle = rng.random_range(0.0..2.0 * PI);
    let (x0, y0) = (rng.random_range(0.15 * s..0.85 * s), rng.random_range(0.15 * s..0.85 * s));
    let (x2, y2) = (
        (x0 + length * cos(angle)).clamp(2.0, s - 2.0),
        (y0 + length * sin(angle)).clamp(2.0, s - 2.0),
    );
    let bend = length * rng.random_range(-0.5..0.5);
    let (x1, y1) = ((x0 + x2) / 2.0 - bend * sin(angle), (y0 + y2) / 2.0 + bend * cos(angle));
    let points = bezier((x0, y0), (x1, y1), (x2, y2));
    let half_width = rng.random_range(0.5..1.75);
    let strength = rng.random_range(0.35f32..0.8);
    let lighter = rng.random_bool(0.5);
    paint_scratch(tile, &points, half_width, strength, lighter)
}

/// Lightens (or darkens) by `strength` every pixel within `half_width` of the polyline `points`;
/// returns the mask (the first point's pixel when no pixel centre is close enough).
pub(crate) fn paint_scratch(
    tile: &mut Tile,
    points: &[(f64, f64)],
    half_width: f64,
    strength: f32,
    lighter: bool,
) -> Vec<bool> {
    let n = tile.size;
    let s = n as f64;
    let mut mask = vec![false; n * n];
    let (lo_x, hi_x) = points.iter().fold((s, 0.0f64), |(lo, hi), p| (lo.min(p.0), hi.max(p.0)));
    let (lo_y, hi_y) = points.iter().fold((s, 0.0f64), |(lo, hi), p| (lo.min(p.1), hi.max(p.1)));
    let range =
        |lo: f64, hi: f64| (lo - 3.0).max(0.0) as usize..((hi + 3.0).min(s - 1.0) as usize + 1);
    for y in range(lo_y, hi_y) {
        for x in range(lo_x, hi_x) {
            let (px, py) = (x as f64 + 0.5, y as f64 + 0.5);
            let d2 = points
                .windows(2)
                .map(|w| segment_distance2(px, py, w[0], w[1]))
                .fold(f64::MAX, f64::min);
            if d2 <= half_width * half_width {
                mask[y * n + x] = true;
                let v = tile.get(x, y);
                let v = v
                    .map(|c| if lighter { c + (1.0 - c) * strength } else { c * (1.0 - strength) });
                tile.set(x, y, v);
            }
        }
    }
    if !mask.iter().any(|&m| m) {
        let (x, y) = (points[0].0 as usize, points[0].1 as usize);
        mask[y * n + x] = true;
        tile.set(x, y, if lighter { [1.0; 3] } else { [0.0; 3] });
    }
    mask
}

/// The quadratic Bézier curve from `p0` through control point `p1` to `p2`, as 41 points.
pub(crate) fn bezier(p0: (f64, f64), p1: (f64, f64), p2: (f64, f64)) -> Vec<(f64, f64)> {
    (0..=40)
        .map(|i| {
            let t = f64::from(i) / 40.0;
            let (a, b, c) = ((1.0 - t) * (1.0 - t), 2.0 * t * (1.0 - t), t * t);
            (a * p0.0 + b * p1.0 + c * p2.0, a * p0.1 + b * p1.1 + c * p2.1)
        })
        .collect()
}

fn segment_distance2(px: f64, py: f64, a: (f64, f64), b: (f64, f64)) -> f64 {
    let (dx, dy) = (b.0 - a.0, b.1 - a.1);
    let len2 = dx * dx + dy * dy;
    let t = if len2 == 0.0 {
        0.0
    } else {
        (((px - a.0) * dx + (py - a.1) * dy) / len2).clamp(0.0, 1.0)
    };
    let (ex, ey) = (a.0 + t * dx - px, a.1 + t * dy - py);
    ex * ex + ey * ey
}

fn cut_paste(tile: &mut Tile, donor: &Tile, rng: &mut impl Rng) -> Vec<bool> {
    let n = tile.size;
    let s = n as f64;
    let pixels = if rng.random_bool(0.5) {
        let (w, h) = (
            (s * rng.random_range(0.08..0.3)) as usize + 2,
            (s * rng.random_range(0.08..0.3)) as usize + 2,
        );
        let (x0, y0) = (rng.random_range(0..n - w), rng.random_range(0..n - h));
        (y0..y0 + h).flat_map(|y| (x0..x0 + w).map(move |x| (x, y, 1.0))).collect()
    } else {
        Blob::random(s, 0.06, 0.18, 0.5, rng).mask(n)
    };
    let gain = rng.random_range(0.85f32..1.15);
    for &(x, y, _) in &pixels {
        tile.set(x, y, donor.get(x, y).map(|c| c * gain));
    }
    to_mask(n, &pixels)
}

fn stain(tile: &mut Tile, rng: &mut impl Rng) -> Vec<bool> {
    let n = tile.size;
    let pixels = Blob::random(n as f64, 0.05, 0.18, 0.6, rng).mask(n);
    let darken = rng.random_range(0.45f32..0.85);
    let tint = [1.0, rng.random_range(0.8f32..1.0), rng.random_range(0.6f32..0.95)];
    let feather = rng.random_range(0.1..0.5);
    paint_stain(tile, &pixels, darken, tint, feather)
}

/// Darkens and tints the blob `pixels`, fully from `feather` depth inwards, 40 % at the rim.
pub(crate) fn paint_stain(
    tile: &mut Tile,
    pixels: &[(usize, usize, f64)],
    darken: f32,
    tint: [f32; 3],
    feather: f64,
) -> Vec<bool> {
    for &(x, y, depth) in pixels {
        let alpha = (0.4 + 0.6 * (depth / feather).min(1.0)) as f32;
        let v = tile.get(x, y);
        let stained: [f32; 3] = std::array::from_fn(|c| v[c] * darken * tint[c]);
        tile.set(x, y, std::array::from_fn(|c| v[c] + (stained[c] - v[c]) * alpha));
    }
    to_mask(tile.size, pixels)
}

fn hole(tile: &mut Tile, rng: &mut impl Rng) -> Vec<bool> {
    let n = tile.size;
    let pixels = Blob::random(n as f64, 0.03, 0.1, 0.35, rng).mask(n);
    let floor = rng.random_range(0.02f32..0.15);
    paint_hole(tile, &pixels, floor, rng)
}

/// Paints the blob `pixels` a dark grey `floor`, lighter towards the rim, with a little noise.
pub(crate) fn paint_hole(
    tile: &mut Tile,
    pixels: &[(usize, usize, f64)],
    floor: f32,
    rng: &mut impl Rng,
) -> Vec<bool> {
    for &(x, y, depth) in pixels {
        let shade = floor + 0.12 * (1.0 - depth as f32) + rng.random_range(-0.02f32..0.02);
        tile.set(x, y, [shade.max(0.0); 3]);
    }
    to_mask(tile.size, pixels)
}

fn colour_shift(tile: &mut Tile, rng: &mut impl Rng) -> Vec<bool> {
    let n = tile.size;
    let pixels = Blob::random(n as f64, 0.08, 0.25, 0.4, rng).mask(n);
    let gain: [f32; 3] = if rng.random_bool(0.5) {
        let g = if rng.random_bool(0.5) {
            rng.random_range(0.55..0.8)
        } else {
            rng.random_range(1.2..1.5)
        };
        [g; 3]
    } else {
        let mut g = [1.0; 3];
        g[rng.random_range(0..3)] = if rng.random_bool(0.5) { 0.75 } else { 1.25 };
        g
    };
    paint_gain(tile, &pixels, gain)
}

/// Multiplies each channel of the blob `pixels` by `gain` (plus a small offset in its direction).
pub(crate) fn paint_gain(
    tile: &mut Tile,
    pixels: &[(usize, usize, f64)],
    gain: [f32; 3],
) -> Vec<bool> {
    for &(x, y, _) in pixels {
        let v = tile.get(x, y);
        tile.set(
            x,
            y,
            std::array::from_fn(|c| {
                (v[c] * gain[c] + 0.02 * (gain[c] - 1.0).signum()).clamp(0.0, 1.0)
            }),
        );
    }
    to_mask(tile.size, pixels)
}

fn warp(tile: &mut Tile, rng: &mut impl Rng) -> Vec<bool> {
    let n = tile.size;
    let s = n as f64;
    let radius = s * rng.random_range(0.06..0.16);
    let (cx, cy) = (rng.random_range(radius..s - radius), rng.random_range(radius..s - radius));
    let swirl = rng.random_bool(0.5);
    let strength = if swirl { rng.random_range(0.8..2.5) } else { rng.random_range(0.35..0.7) };
    paint_warp(tile, (cx, cy), radius, swirl, strength)
}

/// Swirls (by up to `strength` rad) or pinches (by up to `strength` of the radius) the disc of
/// `radius` px around `(cx, cy)`; the mask holds the pixels moved by half a pixel or more.
pub(crate) fn paint_warp(
    tile: &mut Tile,
    (cx, cy): (f64, f64),
    radius: f64,
    swirl: bool,
    strength: f64,
) -> Vec<bool> {
    let n = tile.size;
    let source = tile.clone();
    let mut mask = vec![false; n * n];
    let lo = |c: f64| (c - radius).floor().max(0.0) as usize;
    let hi = |c: f64| ((c + radius).ceil() as usize).min(n);
    for y in lo(cy)..hi(cy) {
        for x in lo(cx)..hi(cx) {
            let (dx, dy) = (x as f64 + 0.5 - cx, y as f64 + 0.5 - cy);
            let d = (dx * dx + dy * dy).sqrt();
            if d >= radius {
                continue;
            }
            let falloff = (1.0 - d / radius) * (1.0 - d / radius);
            let (sx, sy) = if swirl {
                let a = strength * falloff;
                (cx + dx * cos(a) - dy * sin(a), cy + dx * sin(a) + dy * cos(a))
            } else {
                let k = 1.0 - strength * falloff;
                (cx + dx * k, cy + dy * k)
            };
            let (ux, uy) = (sx - (x as f64 + 0.5), sy - (y as f64 + 0.5));
            if ux * ux + uy * uy >= 0.25 {
                mask[y * n + x] = true;
                tile.set(x, y, source.sample(sx - 0.5, sy - 0.5));
            }
        }
    }
    if !mask.iter().any(|&m| m) {
        // A warp too small to move any pixel by half a pixel (tiny tiles): invert the centre
        // pixel, so the mask never marks an unchanged pixel.
        let (x, y) = (cx as usize, cy as usize);
        mask[y * n + x] = true;
        tile.set(x, y, tile.get(x, y).map(|c| 1.0 - c));
    }
    mask
}

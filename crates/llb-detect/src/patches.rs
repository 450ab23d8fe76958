//! Turning encoder feature maps into a patch matrix: one row per spatial position per image.

use crate::{Error, Result};
use candle_core::{DType, Device, Tensor};

/// Feature layers flattened to patches: `matrix` is `[n_images·h·w, channels]` f32, contiguous,
/// rows ordered image-major then row-major over the grid (`row = i·h·w + y·w + x`).
#[derive(Clone, Debug)]
pub(crate) struct PatchMatrix {
    /// The patch features, `[n_images·h·w, channels]` f32.
    pub(crate) matrix: Tensor,
    /// Number of images.
    pub(crate) n_images: usize,
    /// The feature grid `(h, w)`.
    pub(crate) grid: (usize, usize),
}

/// Checks the layers and concatenates them along channels into a [`PatchMatrix`] on `device`.
///
/// Every layer must be `[N, C_l, h, w]` with the same `N`, `h` and `w`; the channels of all layers
/// are concatenated in order. Values must be finite.
pub(crate) fn patch_matrix(layers: &[Tensor], device: &Device) -> Result<PatchMatrix> {
    let first = layers.first().ok_or_else(|| Error::Empty { what: "no feature layers".into() })?;
    let dims = first.dims().to_vec();
    if dims.len() != 4 {
        return Err(shape_error("feature layer 0", "[N, C, h, w]", &dims));
    }
    let (n, h, w) = (dims[0], dims[2], dims[3]);
    if n == 0 || h == 0 || w == 0 {
        return Err(Error::Empty { what: format!("feature layer 0 has shape {dims:?}") });
    }
    let mut parts = Vec::with_capacity(layers.len());
    for (index, layer) in layers.iter().enumerate() {
        let d = layer.dims();
        if d.len() != 4 || d[0] != n || d[2] != h || d[3] != w || d[1] == 0 {
            let expected = format!("[{n}, C>0, {h}, {w}] like layer 0");
            return Err(shape_error(&format!("feature layer {index}"), &expected, d));
        }
        parts.push(layer.to_device(device)?.to_dtype(DType::F32)?);
    }
    // The concatenated layers are dropped as soon as the permuted copy exists, so at most two
    // copies of the patches are alive at once.
    let matrix = {
        let stacked = if parts.len() == 1 { parts.remove(0) } else { Tensor::cat(&parts, 1)? };
        drop(parts);
        let channels = stacked.dim(1)?;
        stacked.permute((0, 2, 3, 1))?.contiguous()?.reshape((n * h * w, channels))?
    };
    ensure_finite(&matrix, "feature layers")?;
    Ok(PatchMatrix { matrix, n_images: n, grid: (h, w) })
}

/// Fails with [`Error::NonFinite`] when `tensor` holds a NaN or an infinity.
pub(crate) fn ensure_finite(tensor: &Tensor, what: &str) -> Result<()> {
    // `x - x` is 0 for finite values and NaN for NaN or ±inf, and a sum of zeros is exactly 0.
    // Checked in slices of at most `FINITE_CHECK_ELEMENTS` along dimension 0, so the check's
    // temporaries stay small however large the tensor is.
    let rows = tensor.dims().first().copied().unwrap_or(1).max(1);
    let per_row = tensor.elem_count() / rows;
    let step = (FINITE_CHECK_ELEMENTS / per_row.max(1)).max(1);
    let mut start = 0;
    while start < rows {
        let len = step.min(rows - start);
        let part =
            if tensor.rank() == 0 { tensor.clone() } else { tensor.narrow(0, start, len)? };
        let total = part.sub(&part)?.abs()?.sum_all()?.to_dtype(DType::F32)?.to_scalar::<f32>()?;
        if total != 0.0 {
            return Err(Error::NonFinite { what: what.to_string() });
        }
        start += len;
    }
    Ok(())
}

/// Largest slice [`ensure_finite`] checks at once (16 MiB of f32).
const FINITE_CHECK_ELEMENTS: usize = 1 << 22;

/// Builds an [`Error::Shape`].
pub(crate) fn shape_error(what: &str, expected: &str, got: &[usize]) -> Error {
    Error::Shape { what: what.to_string(), expected: expected.to_string(), got: got.to_vec() }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_are_image_major_then_row_major() -> Result<()> {
        let dev = Device::Cpu;
        // Layer a: value = 100·i + 10·y + x on one channel; layer b: the negated value.
        let mut a = Vec::new();
        for i in 0..2 {
            for y in 0..2 {
                for x in 0..3 {
                    a.push((100 * i + 10 * y + x) as f32);
                }
            }
        }
        let la = Tensor::from_vec(a.clone(), (2, 1, 2, 3), &dev)?;
        let lb = la.neg()?;
        let patches = patch_matrix(&[la, lb], &dev)?;
        assert_eq!(patches.grid, (2, 3));
        assert_eq!(patches.n_images, 2);
        let rows = patches.matrix.to_vec2::<f32>()?;
        assert_eq!(rows.len(), 12);
        for (row, value) in rows.iter().zip(&a) {
            assert_eq!(row, &vec![*value, -*value]);
        }
        Ok(())
    }

    #[test]
    fn bad_layers_are_errors() -> Result<()> {
        let dev = Device::Cpu;
        let ok = Tensor::zeros((2, 3, 4, 4), DType::F32, &dev)?;
        assert!(matches!(patch_matrix(&[], &dev), Err(Error::Empty { .. })));
        let three_d = Tensor::zeros((2, 3, 4), DType::F32, &dev)?;
        assert!(matches!(patch_matrix(&[three_d], &dev), Err(Error::Shape { .. })));
        let other_grid = Tensor::zeros((2, 3, 4, 5), DType::F32, &dev)?;
        assert!(matches!(patch_matrix(&[ok.clone(), other_grid], &dev), Err(Error::Shape { .. })));
        let no_images = Tensor::zeros((0, 3, 4, 4), DType::F32, &dev)?;
        assert!(matches!(patch_matrix(&[no_images], &dev), Err(Error::Empty { .. })));
        let nan = Tensor::new(&[[[[f32::NAN]]]], &dev)?;
        assert!(matches!(patch_matrix(&[nan], &dev), Err(Error::NonFinite { .. })));
        // A non-finite value in the last of several checked slices.
        let rows = 2 * FINITE_CHECK_ELEMENTS / 1024 + 1;
        let mut values = vec![0.5_f32; rows * 1024];
        values[rows * 1024 - 1] = f32::NEG_INFINITY;
        let late = Tensor::from_vec(values, (rows, 1024), &dev)?;
        assert!(matches!(ensure_finite(&late, "x"), Err(Error::NonFinite { .. })));
        assert!(ensure_finite(&late.narrow(0, 0, rows - 1)?, "x").is_ok());
        assert!(ensure_finite(&Tensor::new(0.5_f32, &dev)?, "x").is_ok());
        assert!(ensure_finite(&Tensor::new(f32::NAN, &dev)?, "x").is_err());
        let inf = Tensor::new(&[[[[f32::INFINITY]]]], &dev)?;
        assert!(matches!(patch_matrix(&[inf], &dev), Err(Error::NonFinite { .. })));
        assert!(patch_matrix(&[ok], &dev).is_ok());
        Ok(())
    }
}

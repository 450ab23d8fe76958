//! `.npy` anomaly maps: the float32 2-D arrays `llb predict --save-maps` writes and
//! `llb metrics --maps` reads.

use crate::metrics_cmd::bad;
use std::path::Path;

/// A 2-D float32 array read from a `.npy` file, row-major.
#[derive(Debug)]
pub(crate) struct NpyMap {
    /// `height × width` values, row-major.
    pub(crate) values: Vec<f32>,
    /// Columns.
    pub(crate) width: usize,
    /// Rows.
    pub(crate) height: usize,
}

/// Reads a `.npy` file holding a little-endian float32 (`<f4`) 2-D array in C order; a bad file
/// is a [`bad`] input error naming it.
pub(crate) fn read_npy(path: &Path) -> anyhow::Result<NpyMap> {
    let bytes = std::fs::read(path).map_err(|e| bad(format!("reading {}: {e}", path.display())))?;
    parse_npy(&bytes).map_err(|e| bad(format!("{}: {e}", path.display())))
}

/// Parses `.npy` bytes. Sizes are checked before anything is allocated: the data must be exactly
/// `height × width × 4` bytes (with overflow checked), so the values never take more memory than
/// the input.
pub(crate) fn parse_npy(bytes: &[u8]) -> Result<NpyMap, String> {
    let rest = bytes.strip_prefix(b"\x93NUMPY").ok_or("not a .npy file (bad magic)")?;
    let (header_len, header_start): (usize, usize) = match rest.first() {
        Some(1) if rest.len() >= 4 => (usize::from(u16::from_le_bytes([rest[2], rest[3]])), 10),
        Some(2 | 3) if rest.len() >= 6 => {
            (u32::from_le_bytes([rest[2], rest[3], rest[4], rest[5]]) as usize, 12)
        }
        _ => return Err("unsupported or truncated .npy version".into()),
    };
    let header = header_start
        .checked_add(header_len)
        .and_then(|end| bytes.get(header_start..end))
        .ok_or("truncated .npy header")?;
    let header = std::str::from_utf8(header).map_err(|_| "the .npy header is not text")?;
    let descr = header_value(header, "descr")?;
    if !matches!(descr.trim_matches(['\'', '"']), "<f4" | "=f4" | "f4") {
        return Err(format!("dtype {descr}, expected '<f4' (float32, little-endian)"));
    }
    if header_value(header, "fortran_order")? != "False" {
        return Err("Fortran-ordered array, expected C order".into());
    }
    let shape = header_value(header, "shape")?;
    let dims: Vec<usize> = shape
        .trim_matches(['(', ')'])
        .split(',')
        .map(str::trim)
        .filter(|d| !d.is_empty())
        .map(|d| d.parse().map_err(|_| format!("bad shape {shape}")))
        .collect::<Result<_, _>>()?;
    let [height, width] = dims[..] else {
        return Err(format!("shape {shape} has rank {}, expected a 2-D map", dims.len()));
    };
    let data = &bytes[header_start + header_len..];
    let needed = width
        .checked_mul(height)
        .and_then(|n| n.checked_mul(4))
        .ok_or_else(|| format!("shape {shape} is too large"))?;
    if data.len() != needed {
        return Err(format!("shape {shape} needs {needed} data bytes, file has {}", data.len()));
    }
    let values =
        data.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect();
    Ok(NpyMap { values, width, height })
}

/// The raw value of `'key': value` in a `.npy` header dict (up to the next top-level comma).
fn header_value<'a>(header: &'a str, key: &str) -> Result<&'a str, String> {
    let start =
        header.find(&format!("'{key}'")).ok_or_else(|| format!("the .npy header lacks '{key}'"))?;
    let after = header[start + key.len() + 2..].trim_start().strip_prefix(':').unwrap_or("");
    let after = after.trim_start();
    let end = if after.starts_with('(') {
        after.find(')').map(|i| i + 1)
    } else {
        after.find([',', '}'])
    };
    Ok(after[..end.unwrap_or(after.len())].trim())
}

/// A `.npy` v1.0 file as numpy writes it.
#[cfg(test)]
pub(crate) fn npy_bytes(descr: &str, shape: &str, values: &[f32]) -> Vec<u8> {
    let mut header = format!("{{'descr': '{descr}', 'fortran_order': False, 'shape': {shape}, }}");
    while (10 + header.len() + 1) % 64 != 0 {
        header.push(' ');
    }
    header.push('\n');
    let mut out = b"\x93NUMPY\x01\x00".to_vec();
    out.extend((header.len() as u16).to_le_bytes());
    out.extend(header.as_bytes());
    out.extend(values.iter().flat_map(|v| v.to_le_bytes()));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn npy_files_parse() {
        let map = parse_npy(&npy_bytes("<f4", "(2, 3)", &[1.0, 2.0, 3.0, 4.0, 5.0, 6.5])).unwrap();
        assert_eq!((map.width, map.height), (3, 2));
        assert_eq!(map.values, [1.0, 2.0, 3.0, 4.0, 5.0, 6.5]);
    }

    #[test]
    fn bad_npy_files_are_described() {
        let cases = [
            (npy_bytes("<f8", "(1, 1)", &[0.0, 0.0]), "dtype '<f8'"),
            (npy_bytes("<f4", "(4,)", &[0.0; 4]), "rank 1"),
            (npy_bytes("<f4", "(1, 2, 2)", &[0.0; 4]), "rank 3"),
            (npy_bytes("<f4", "(2, 2)", &[0.0; 3]), "needs 16 data bytes"),
            (b"PK\x03\x04".to_vec(), "bad magic"),
            // Regression: `height × width × 4` was not checked for overflow.
            (npy_bytes("<f4", "(4611686018427387904, 4)", &[0.0]), "too large"),
            (npy_bytes("<f4", "(1048576, 1048576)", &[0.0]), "needs 4398046511104 data bytes"),
        ];
        for (bytes, expected) in cases {
            let err = parse_npy(&bytes).unwrap_err();
            assert!(err.contains(expected), "{err}");
        }
        let mut fortran = npy_bytes("<f4", "(1, 1)", &[0.0]);
        let at = fortran.windows(5).position(|w| w == b"False").unwrap();
        fortran[at..at + 5].copy_from_slice(b"True ");
        assert!(parse_npy(&fortran).unwrap_err().contains("Fortran"));
        // A version-2 header length pointing past the end.
        let mut huge = b"\x93NUMPY\x02\x00".to_vec();
        huge.extend(u32::MAX.to_le_bytes());
        assert!(parse_npy(&huge).unwrap_err().contains("truncated"));
    }
}

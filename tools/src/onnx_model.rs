//! ONNX models in the tools: the listing of a model's inputs and outputs,
//! input files (raw or .npy) and the file names outputs are dumped to.

use crate::npy;
use npu::{Quant, TensorData, TensorType};
use npu_onnx::{IoInfo, Model};
use std::path::Path;

fn quant(ty: &TensorType) -> String {
    match &ty.quant {
        None => "-".into(),
        // uint8: its own zero point (0..255), not the int8 view's.
        Some(Quant::PerTensor { scale, .. }) => {
            format!("scale={scale:?} zp={}", ty.zero_point_value())
        }
        Some(Quant::PerChannel { scales, axis, .. }) => {
            format!("per-channel axis={axis} ({} scales)", scales.len())
        }
    }
}

/// The model's inputs and outputs: name, dtype, shape, quantization.
pub fn describe(m: &Model) -> String {
    let mut s = format!(
        "opset {}, produced by {}; {} nodes: {}\n",
        m.opset,
        if m.producer.is_empty() {
            "?"
        } else {
            &m.producer
        },
        m.op_counts.values().sum::<usize>(),
        m.op_counts
            .iter()
            .map(|(k, v)| format!("{k} x{v}"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    for (kind, list) in [("input", &m.inputs), ("output", &m.outputs)] {
        for io in list {
            s += &format!(
                "  {kind:6} {:30} {:4} {:?} {}\n",
                io.name,
                io.ty.dtype.name(),
                io.ty.shape,
                quant(&io.ty)
            );
        }
    }
    s
}

/// The inputs and outputs as the file declares them (symbolic dimensions
/// by name), for a model that does not import as it is.
pub fn describe_declared(ins: &[npu_onnx::Declared], outs: &[npu_onnx::Declared]) -> String {
    let mut s = String::new();
    for (kind, list) in [("input", ins), ("output", outs)] {
        for d in list {
            s += &format!(
                "  {kind:6} {:30} {} [{}] (as declared)\n",
                d.name,
                d.elem_type,
                d.dims.join(", ")
            );
        }
    }
    s
}

/// Data for input `io` from `path`: an .npy file (its dtype and shape
/// must match) or raw little-endian bytes of the input's exact size.
pub fn read_input(io: &IoInfo, path: &Path) -> Result<TensorData, String> {
    let bytes = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let ty = &io.ty;
    if path.extension().is_some_and(|e| e == "npy") {
        let (dt, shape, data) =
            npy::parse(&bytes).map_err(|e| format!("{}: {e}", path.display()))?;
        if dt != ty.dtype || shape != ty.shape {
            return Err(format!(
                "--input {}: {} holds {} {:?}, the input takes {} {:?}",
                io.name,
                path.display(),
                dt.name(),
                shape,
                ty.dtype.name(),
                ty.shape
            ));
        }
        return Ok(data);
    }
    if bytes.len() != ty.bytes() {
        return Err(format!(
            "--input {}: {} has {} bytes, the input takes {} ({} x {})",
            io.name,
            path.display(),
            bytes.len(),
            ty.bytes(),
            ty.elems(),
            ty.dtype.name()
        ));
    }
    Ok(TensorData::from_bytes(ty.dtype, &bytes))
}

/// A file name for tensor `name`: ONNX names may hold `/`, `:` and more.
pub fn file_name(name: &str) -> String {
    let s: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "._-".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect();
    match s.as_str() {
        "" | "." | ".." => format!("_{s}"),
        _ => s,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_names_stay_in_the_directory() {
        assert_eq!(
            file_name("save_infer_model/scale_0.tmp_1"),
            "save_infer_model_scale_0.tmp_1"
        );
        assert_eq!(file_name(".."), "_..");
        assert_eq!(file_name("x:0"), "x_0");
    }
}

//! Initializers and constants: ONNX `TensorProto` data (inline or in an
//! external file) decoded into host tensors the importer can fold.

use crate::ImportError;
use onnx_protobuf::tensor_proto::{DataLocation, DataType};
use onnx_protobuf::TensorProto;
use protobuf::Enum;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Component, Path};

/// Element data of a host tensor. Integer kinds the IR has no type for
/// (int64 shapes, uint8) are kept for folding and converted on use.
#[derive(Clone, Debug, PartialEq)]
pub enum Data {
    F32(Vec<f32>),
    I64(Vec<i64>),
    I32(Vec<i32>),
    I8(Vec<i8>),
    U8(Vec<u8>),
}

impl Data {
    pub fn len(&self) -> usize {
        match self {
            Data::F32(v) => v.len(),
            Data::I64(v) => v.len(),
            Data::I32(v) => v.len(),
            Data::I8(v) => v.len(),
            Data::U8(v) => v.len(),
        }
    }
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
    pub fn kind(&self) -> &'static str {
        match self {
            Data::F32(_) => "float32",
            Data::I64(_) => "int64",
            Data::I32(_) => "int32",
            Data::I8(_) => "int8",
            Data::U8(_) => "uint8",
        }
    }
    /// Every element as i64 (shapes, axes, indices), if integral.
    pub fn as_i64(&self) -> Option<Vec<i64>> {
        Some(match self {
            Data::F32(_) => return None,
            Data::I64(v) => v.clone(),
            Data::I32(v) => v.iter().map(|&x| x as i64).collect(),
            Data::I8(v) => v.iter().map(|&x| x as i64).collect(),
            Data::U8(v) => v.iter().map(|&x| x as i64).collect(),
        })
    }
    /// Every element as f32.
    pub fn as_f32(&self) -> Vec<f32> {
        match self {
            Data::F32(v) => v.clone(),
            Data::I64(v) => v.iter().map(|&x| x as f32).collect(),
            Data::I32(v) => v.iter().map(|&x| x as f32).collect(),
            Data::I8(v) => v.iter().map(|&x| x as f32).collect(),
            Data::U8(v) => v.iter().map(|&x| x as f32).collect(),
        }
    }
    /// Elements at `idx`, in that order.
    pub fn gather(&self, idx: &[usize]) -> Data {
        fn g<T: Copy>(v: &[T], idx: &[usize]) -> Vec<T> {
            idx.iter().map(|&i| v[i]).collect()
        }
        match self {
            Data::F32(v) => Data::F32(g(v, idx)),
            Data::I64(v) => Data::I64(g(v, idx)),
            Data::I32(v) => Data::I32(g(v, idx)),
            Data::I8(v) => Data::I8(g(v, idx)),
            Data::U8(v) => Data::U8(g(v, idx)),
        }
    }
}

/// A tensor known at import time.
#[derive(Clone, Debug, PartialEq)]
pub struct HostTensor {
    pub shape: Vec<usize>,
    pub data: Data,
}

impl HostTensor {
    pub fn elems(&self) -> usize {
        self.shape.iter().product()
    }
    pub fn i64s(v: Vec<i64>) -> HostTensor {
        HostTensor {
            shape: vec![v.len()],
            data: Data::I64(v),
        }
    }
}

/// Largest tensor the importer decodes (4 GiB): a bound on what a file's
/// `dims` can make it allocate.
const MAX_TENSOR_BYTES: u64 = 1 << 32;

/// Decode `t`; external data is read relative to `base` (the model's
/// directory) and must stay inside it.
pub fn decode(t: &TensorProto, base: Option<&Path>) -> Result<HostTensor, ImportError> {
    let bad = |why: String| ImportError::Tensor {
        name: t.name.clone(),
        why,
    };
    let mut shape = Vec::with_capacity(t.dims.len());
    let mut elems: u64 = 1;
    for &d in &t.dims {
        if d < 0 {
            return Err(bad(format!("negative dimension {d}")));
        }
        elems = elems
            .checked_mul(d as u64)
            .filter(|&n| n <= MAX_TENSOR_BYTES)
            .ok_or_else(|| bad(format!("dims {:?} are too large", t.dims)))?;
        shape.push(d as usize);
    }
    let n = elems as usize;
    let dtype = DataType::from_i32(t.data_type)
        .ok_or_else(|| bad(format!("unknown data type {}", t.data_type)))?;
    let esize = match dtype {
        DataType::FLOAT | DataType::INT32 => 4,
        DataType::INT64 | DataType::DOUBLE => 8,
        DataType::FLOAT16 | DataType::BFLOAT16 => 2,
        DataType::INT8 | DataType::UINT8 | DataType::BOOL => 1,
        other => {
            return Err(bad(format!(
                "data type {other:?} is not supported (float, float16, bfloat16, double, int8, uint8, bool, int32, int64 are)"
            )))
        }
    };
    // float16 and bfloat16 widen to f32 here, exactly: the IR computes in
    // f32 (a float16 graph input or output converts on the device).
    let widen = |bits: &mut dyn Iterator<Item = u16>| -> Vec<f32> {
        if dtype == DataType::FLOAT16 {
            bits.map(npu::isa::f16_to_f32).collect()
        } else {
            bits.map(npu::isa::bf16_to_f32).collect()
        }
    };
    let external = t.data_location.enum_value() == Ok(DataLocation::EXTERNAL);
    let raw: Option<Vec<u8>> = if external {
        Some(read_external(t, base, n as u64 * esize).map_err(bad)?)
    } else if !t.raw_data.is_empty() {
        Some(t.raw_data.clone())
    } else {
        None
    };
    if let Some(raw) = raw {
        if raw.len() as u64 != n as u64 * esize {
            return Err(bad(format!(
                "{} bytes of data for {n} elements of {esize} bytes",
                raw.len()
            )));
        }
        let data = match dtype {
            DataType::FLOAT => Data::F32(
                raw.chunks_exact(4)
                    .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                    .collect(),
            ),
            DataType::DOUBLE => Data::F32(
                raw.chunks_exact(8)
                    .map(|c| f64::from_le_bytes(c.try_into().unwrap_or([0; 8])) as f32)
                    .collect(),
            ),
            DataType::INT32 => Data::I32(
                raw.chunks_exact(4)
                    .map(|c| i32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                    .collect(),
            ),
            DataType::INT64 => Data::I64(
                raw.chunks_exact(8)
                    .map(|c| i64::from_le_bytes(c.try_into().unwrap_or([0; 8])))
                    .collect(),
            ),
            DataType::INT8 => Data::I8(raw.iter().map(|&b| b as i8).collect()),
            DataType::FLOAT16 | DataType::BFLOAT16 => Data::F32(widen(
                &mut raw
                    .chunks_exact(2)
                    .map(|c| u16::from_le_bytes([c[0], c[1]])),
            )),
            _ => Data::U8(raw),
        };
        return Ok(HostTensor { shape, data });
    }
    // Typed fields (small tensors, Constant nodes).
    let data = match dtype {
        DataType::FLOAT => Data::F32(t.float_data.clone()),
        DataType::DOUBLE => Data::F32(t.double_data.iter().map(|&x| x as f32).collect()),
        DataType::INT32 => Data::I32(t.int32_data.clone()),
        DataType::INT64 => Data::I64(t.int64_data.clone()),
        DataType::INT8 => Data::I8(t.int32_data.iter().map(|&x| x as i8).collect()),
        // ONNX keeps 16-bit floats' bit patterns in int32_data.
        DataType::FLOAT16 | DataType::BFLOAT16 => {
            Data::F32(widen(&mut t.int32_data.iter().map(|&x| x as u16)))
        }
        _ => Data::U8(t.int32_data.iter().map(|&x| x as u8).collect()),
    };
    if data.len() != n {
        return Err(bad(format!(
            "{} values for shape {:?} ({n} elements)",
            data.len(),
            shape
        )));
    }
    Ok(HostTensor { shape, data })
}

/// The bytes of an external-data tensor: `location` (a relative path
/// inside the model's directory), `offset`, `length`.
fn read_external(t: &TensorProto, base: Option<&Path>, want: u64) -> Result<Vec<u8>, String> {
    let base = base.ok_or("external data needs the model's directory (load it from a file)")?;
    let mut location = None;
    let (mut offset, mut length) = (0u64, None);
    for e in &t.external_data {
        match e.key.as_str() {
            "location" => location = Some(e.value.clone()),
            "offset" => {
                offset = e
                    .value
                    .parse()
                    .map_err(|_| format!("offset `{}`", e.value))?
            }
            "length" => {
                length = Some(
                    e.value
                        .parse::<u64>()
                        .map_err(|_| format!("length `{}`", e.value))?,
                )
            }
            _ => {}
        }
    }
    let location = location.ok_or("external data without a location")?;
    let rel = Path::new(&location);
    // A model names files beside it; never one elsewhere on the machine.
    if rel
        .components()
        .any(|c| !matches!(c, Component::Normal(_) | Component::CurDir))
    {
        return Err(format!(
            "external data location `{location}` must be a relative path inside the model's directory"
        ));
    }
    let len = length.unwrap_or(want);
    if len != want {
        return Err(format!(
            "external data length {len} differs from the {want} bytes the tensor needs"
        ));
    }
    let path = base.join(rel);
    let mut f = std::fs::File::open(&path).map_err(|e| format!("{}: {e}", path.display()))?;
    let size = f
        .metadata()
        .map_err(|e| format!("{}: {e}", path.display()))?
        .len();
    if offset.checked_add(len).is_none_or(|end| end > size) {
        return Err(format!(
            "{}: bytes {offset}..{offset}+{len} lie outside the file ({size} bytes)",
            path.display()
        ));
    }
    f.seek(SeekFrom::Start(offset))
        .map_err(|e| format!("{}: {e}", path.display()))?;
    let mut buf = vec![0u8; len as usize];
    f.read_exact(&mut buf)
        .map_err(|e| format!("{}: {e}", path.display()))?;
    Ok(buf)
}

//! The `.npy` files numpy writes (`numpy.save`), for tensors in and out of
//! npu-submit: format versions 1-3, little-endian float32/int8/int32 (and
//! uint8, float16) in C order, which is what the NPU's tensors are.
//! (numpy's format: numpy/lib/format.py, "NPY format".)

use npu::{DType, TensorData};

const MAGIC: &[u8] = b"\x93NUMPY";

/// The dtype and shape of an .npy file, and its data.
pub fn parse(b: &[u8]) -> Result<(DType, Vec<usize>, TensorData), String> {
    if b.len() < 10 || &b[..6] != MAGIC {
        return Err("not an .npy file (no \\x93NUMPY magic)".into());
    }
    let (hlen, start) = match b[6] {
        1 => (u16::from_le_bytes([b[8], b[9]]) as usize, 10usize),
        2 | 3 if b.len() >= 12 => (u32::from_le_bytes([b[8], b[9], b[10], b[11]]) as usize, 12),
        v => return Err(format!(".npy format version {v} is not supported")),
    };
    let end = start
        .checked_add(hlen)
        .filter(|&e| e <= b.len())
        .ok_or(".npy header is longer than the file")?;
    let header = std::str::from_utf8(&b[start..end]).map_err(|_| ".npy header is not text")?;
    let field = |key: &str| -> Result<&str, String> {
        let at = header
            .find(&format!("'{key}'"))
            .ok_or(format!(".npy header has no '{key}'"))?;
        let rest = &header[at + key.len() + 2..];
        let rest = rest
            .trim_start()
            .strip_prefix(':')
            .ok_or("bad .npy header")?;
        Ok(rest.trim_start())
    };
    let descr = field("descr")?;
    let dtype = if descr.starts_with("'<f4'") {
        DType::F32
    } else if descr.starts_with("'|i1'") || descr.starts_with("'i1'") {
        DType::I8
    } else if descr.starts_with("'|u1'") || descr.starts_with("'u1'") {
        DType::U8
    } else if descr.starts_with("'<i4'") {
        DType::I32
    } else if descr.starts_with("'<f2'") {
        DType::F16
    } else {
        return Err(format!(
            ".npy dtype {} is not supported (float32 '<f4', int8 '|i1', uint8 '|u1', int32 '<i4', float16 '<f2')",
            descr.split(',').next().unwrap_or(descr)
        ));
    };
    if !field("fortran_order")?.starts_with("False") {
        return Err(".npy data in Fortran order is not supported; save a C-ordered array".into());
    }
    let shape_txt = field("shape")?;
    let inner = shape_txt
        .strip_prefix('(')
        .and_then(|s| s.split(')').next())
        .ok_or("bad .npy shape")?;
    let shape: Vec<usize> = inner
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| s.parse().map_err(|_| format!("bad .npy dimension `{s}`")))
        .collect::<Result<_, _>>()?;
    let elems = shape
        .iter()
        .try_fold(1usize, |a, &d| a.checked_mul(d))
        .ok_or("the .npy shape is too large")?;
    let data = &b[end..];
    if Some(data.len()) != elems.checked_mul(dtype.size()) {
        return Err(format!(
            ".npy data is {} bytes, shape {shape:?} of {} needs {}",
            data.len(),
            dtype.name(),
            elems.saturating_mul(dtype.size())
        ));
    }
    Ok((dtype, shape, TensorData::from_bytes(dtype, data)))
}

/// An .npy file (version 1.0) holding `data` with `shape`.
pub fn write(data: &TensorData, shape: &[usize]) -> Vec<u8> {
    let descr = match data {
        TensorData::F32(_) => "<f4",
        TensorData::I8(_) => "|i1",
        TensorData::I32(_) => "<i4",
        TensorData::U8(_) => "|u1",
        TensorData::F16(_) => "<f2",
        // numpy has no bfloat16: the bit patterns, as uint16.
        TensorData::Bf16(_) => "<u2",
    };
    let dims: Vec<String> = shape.iter().map(|d| d.to_string()).collect();
    let shape_txt = match dims.len() {
        1 => format!("({},)", dims[0]),
        _ => format!("({})", dims.join(", ")),
    };
    let mut header =
        format!("{{'descr': '{descr}', 'fortran_order': False, 'shape': {shape_txt}, }}");
    // Pad with spaces so the data starts 64-byte aligned; end with \n.
    while (10 + header.len() + 1) % 64 != 0 {
        header.push(' ');
    }
    header.push('\n');
    let mut out = MAGIC.to_vec();
    out.extend_from_slice(&[1, 0]);
    out.extend_from_slice(&(header.len() as u16).to_le_bytes());
    out.extend_from_slice(header.as_bytes());
    out.extend_from_slice(&data.to_bytes());
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Bytes numpy 2.x wrote for `np.save(f, np.arange(6, dtype=np.float32).reshape(2, 3))`.
    fn numpy_bytes() -> Vec<u8> {
        let mut h = b"{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }".to_vec();
        while (10 + h.len() + 1) % 64 != 0 {
            h.push(b' ');
        }
        h.push(b'\n');
        let mut b = MAGIC.to_vec();
        b.extend_from_slice(&[1, 0]);
        b.extend_from_slice(&(h.len() as u16).to_le_bytes());
        b.extend_from_slice(&h);
        for i in 0..6 {
            b.extend_from_slice(&(i as f32).to_le_bytes());
        }
        b
    }

    #[test]
    fn reads_what_numpy_writes() {
        let (dt, shape, data) = parse(&numpy_bytes()).unwrap();
        assert_eq!(dt, DType::F32);
        assert_eq!(shape, vec![2, 3]);
        assert_eq!(data, TensorData::F32(vec![0.0, 1.0, 2.0, 3.0, 4.0, 5.0]));
        assert_eq!(write(&data, &shape), numpy_bytes());
    }

    /// A float16 file as numpy writes it (`np.save(f, np.array([1, -2,
    /// 65504], dtype=np.float16))`: descr '<f2', the IEEE binary16 bits).
    #[test]
    fn reads_and_writes_float16() {
        let mut h = b"{'descr': '<f2', 'fortran_order': False, 'shape': (3,), }".to_vec();
        while (10 + h.len() + 1) % 64 != 0 {
            h.push(b' ');
        }
        h.push(b'\n');
        let mut b = MAGIC.to_vec();
        b.extend_from_slice(&[1, 0]);
        b.extend_from_slice(&(h.len() as u16).to_le_bytes());
        b.extend_from_slice(&h);
        b.extend_from_slice(&[0x00, 0x3c, 0x00, 0xc0, 0xff, 0x7b]);
        let (dt, shape, data) = parse(&b).unwrap();
        assert_eq!((dt, shape.as_slice()), (DType::F16, &[3][..]));
        assert_eq!(data, TensorData::F16(vec![0x3c00, 0xc000, 0x7bff]));
        assert_eq!(write(&data, &shape), b);
    }

    #[test]
    fn refuses_bad_files() {
        assert!(parse(b"hello").is_err());
        let mut b = numpy_bytes();
        b.pop();
        assert!(parse(&b).unwrap_err().contains("bytes"));
        let mut f64 = numpy_bytes();
        let at = f64.windows(3).position(|w| w == b"<f4").unwrap();
        f64[at + 2] = b'8';
        assert!(parse(&f64).unwrap_err().contains("<f8"));
    }
}

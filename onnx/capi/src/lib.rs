//! libnpu's ONNX plugin (libnpu-onnx.so.1): the one entry point libnpu's
//! `npu_model_load_onnx()` looks up, `npu_onnx_compile_v1`. It imports an
//! ONNX file with npu-onnx, compiles it for the target libnpu gives and
//! hands back the compiled model's bytes (or an error message) through
//! libnpu's sink; libnpu loads those bytes like a saved model. Only C
//! types and bytes cross: this library has its own copy of libnpu's code,
//! whose handles never leave it.
#![allow(clippy::not_unsafe_ptr_arg_deref)]

use npu::api::{self, Error, Status};
use npu::capi::{NpuStatus, OnnxSink, OnnxTarget};
use npu_onnx::ImportError;
use std::collections::HashMap;
use std::ffi::{c_char, c_void, CStr};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::Path;

fn import_status(e: &ImportError) -> Status {
    match e {
        ImportError::Io { why, .. } if why.contains("No such file") => Status::NotFound,
        ImportError::Io { .. } => Status::Io,
        ImportError::Decode(_) => Status::Parse,
        _ => Status::Unsupported,
    }
}

/// "NAME=D0,D1,...;NAME=..." (npu.h's npu_model_load_onnx).
fn parse_shapes(spec: &str) -> Result<HashMap<String, Vec<usize>>, Error> {
    let bad = |why: String| Error::new(Status::InvalidArgument, format!("input_shapes: {why}"));
    let mut shapes = HashMap::new();
    for item in spec.split(';').map(str::trim).filter(|s| !s.is_empty()) {
        let (name, dims) = item
            .split_once('=')
            .ok_or_else(|| bad(format!("`{item}` is not NAME=D0,D1,...")))?;
        let dims = dims
            .split(',')
            .map(|d| d.trim().parse::<usize>())
            .collect::<Result<Vec<_>, _>>()
            .map_err(|_| {
                bad(format!(
                    "`{dims}`: the dimensions are numbers, e.g. 1,3,48,192"
                ))
            })?;
        if shapes.insert(name.trim().to_string(), dims).is_some() {
            return Err(bad(format!("`{name}` is given twice")));
        }
    }
    Ok(shapes)
}

fn compile(
    path: *const c_char,
    input_shapes: *const c_char,
    target: *const OnnxTarget,
) -> Result<Vec<u8>, Error> {
    if path.is_null() || target.is_null() {
        return Err(Error::new(Status::InvalidArgument, "NULL path or target"));
    }
    // SAFETY: libnpu passes a NUL-terminated path and a target that live
    // through the call.
    let (path, target) = unsafe { (CStr::from_ptr(path), &*target) };
    if (target.struct_size as usize) < size_of::<OnnxTarget>() {
        return Err(Error::new(
            Status::Internal,
            "libnpu passed an older target than this plugin knows",
        ));
    }
    let path = path
        .to_str()
        .map_err(|_| Error::new(Status::InvalidArgument, "the path is not UTF-8"))?;
    let input_shapes = if input_shapes.is_null() {
        HashMap::new()
    } else {
        // SAFETY: libnpu passes NULL or a NUL-terminated string.
        let spec = unsafe { CStr::from_ptr(input_shapes) };
        parse_shapes(
            spec.to_str()
                .map_err(|_| Error::new(Status::InvalidArgument, "input_shapes is not UTF-8"))?,
        )?
    };
    let opts = npu_onnx::Options {
        input_shapes,
        cpu_fallback: false,
    };
    let model = npu_onnx::load(Path::new(path), &opts)
        .map_err(|e| Error::new(import_status(&e), format!("{path}: {e}")))?;
    // The compiled model shows the ONNX names and shapes (an output may be
    // the reshaped view of an IR value).
    let aliases: Vec<_> = model
        .inputs
        .iter()
        .chain(&model.outputs)
        .map(|io| (io.ir_name.clone(), io.name.clone(), io.ty.clone()))
        .collect();
    api::compile_to_bytes(&model.graph, &target.target(), &aliases)
}

/// Import and compile the ONNX file `path` for `target`; `sink(ctx, ...)`
/// gets the compiled model's bytes (status NPU_OK) or the error message.
#[no_mangle]
pub extern "C" fn npu_onnx_compile_v1(
    path: *const c_char,
    input_shapes: *const c_char,
    target: *const OnnxTarget,
    sink: OnnxSink,
    ctx: *mut c_void,
) -> NpuStatus {
    let result = catch_unwind(AssertUnwindSafe(|| compile(path, input_shapes, target)))
        .unwrap_or_else(|_| {
            Err(Error::new(
                Status::Internal,
                "internal error (panic) in libnpu-onnx",
            ))
        });
    match result {
        Ok(bytes) => {
            sink(ctx, bytes.as_ptr(), bytes.len());
            Status::Ok as NpuStatus
        }
        Err(e) => {
            sink(ctx, e.message.as_ptr(), e.message.len());
            e.status as NpuStatus
        }
    }
}

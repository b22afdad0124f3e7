//! The C ABI (include/npu.h): opaque sessions and kernels, byte buffers in
//! and out, errors as -1 with a message from `npu_last_error()`.
//!
//! Every entry point checks its pointers for NULL and never unwinds into C.
//! The rest of the pointer contract (valid, sized as stated, not freed
//! twice) is C's, stated in npu.h; the functions are not `unsafe fn` because
//! C cannot tell the difference and Rust users have the safe API.
#![allow(clippy::not_unsafe_ptr_arg_deref)]

use crate::reference::TensorData;
use crate::runtime::{self, Kernel, Run, Session};
use crate::DType;
use std::cell::RefCell;
use std::collections::HashMap;
use std::ffi::{c_char, c_int, CStr, CString};
use std::panic::{catch_unwind, AssertUnwindSafe};

thread_local! {
    static LAST_ERROR: RefCell<CString> = RefCell::new(CString::default());
}

fn set_error(msg: impl std::fmt::Display) {
    let c = CString::new(msg.to_string().replace('\0', " ")).unwrap_or_default();
    LAST_ERROR.with(|e| *e.borrow_mut() = c);
}

/// Run `f`, turning errors and panics into -1 (or NULL) plus a message.
fn guard<T>(fail: T, f: impl FnOnce() -> Result<T, String>) -> T {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(Ok(v)) => v,
        Ok(Err(msg)) => {
            set_error(msg);
            fail
        }
        Err(_) => {
            set_error("internal error (panic) in libnpu");
            fail
        }
    }
}

/// An open device (`struct npu_session` in C).
pub struct NpuSession(Session);

/// A compiled kernel with its inputs and last results (`struct npu_kernel`).
pub struct NpuKernel {
    kernel: Kernel,
    inputs: HashMap<String, TensorData>,
    last: Option<Run>,
}

fn cstr<'a>(p: *const c_char, what: &str) -> Result<&'a str, String> {
    if p.is_null() {
        return Err(format!("{what} is NULL"));
    }
    // SAFETY: the caller passes a NUL-terminated string (C contract).
    unsafe { CStr::from_ptr(p) }
        .to_str()
        .map_err(|_| format!("{what} is not UTF-8"))
}

fn session<'a>(s: *mut NpuSession) -> Result<&'a mut Session, String> {
    // SAFETY: a non-NULL pointer came from npu_open*() and is not freed (C contract).
    unsafe { s.as_mut() }
        .map(|s| &mut s.0)
        .ok_or_else(|| "session is NULL".to_string())
}

fn kernel<'a>(k: *mut NpuKernel) -> Result<&'a mut NpuKernel, String> {
    // SAFETY: a non-NULL pointer came from npu_compile() and is not freed (C contract).
    unsafe { k.as_mut() }.ok_or_else(|| "kernel is NULL".to_string())
}

/// The library version, "major.minor.patch".
#[no_mangle]
pub extern "C" fn npu_version() -> *const c_char {
    concat!(env!("CARGO_PKG_VERSION"), "\0").as_ptr().cast()
}

/// The message of the last error of this thread ("" if none). Valid until
/// the next libnpu call on this thread.
#[no_mangle]
pub extern "C" fn npu_last_error() -> *const c_char {
    LAST_ERROR.with(|e| e.borrow().as_ptr())
}

/// Open the first onpu NPU. NULL on error.
#[no_mangle]
pub extern "C" fn npu_open() -> *mut NpuSession {
    guard(std::ptr::null_mut(), || {
        Ok(Box::into_raw(Box::new(NpuSession(
            Session::open().map_err(|e| e.to_string())?,
        ))))
    })
}

/// Open the in-process device model with `sram_size` bytes of SRAM (for
/// hosts without the driver). NULL on error.
#[no_mangle]
pub extern "C" fn npu_open_model(sram_size: u32) -> *mut NpuSession {
    guard(std::ptr::null_mut(), || {
        #[cfg(feature = "model")]
        if sram_size < runtime::model_min_sram() {
            return Err(format!(
                "SRAM size {sram_size} is below the {}-byte minimum",
                runtime::model_min_sram()
            ));
        }
        #[cfg(feature = "model")]
        return Ok(Box::into_raw(Box::new(NpuSession(Session::model(
            sram_size,
        )))));
        #[cfg(not(feature = "model"))]
        Err(format!("libnpu was built without the device model (feature `model`), so no model with {sram_size} bytes of SRAM"))
    })
}

/// Close a session (NULL is ignored).
#[no_mangle]
pub extern "C" fn npu_close(s: *mut NpuSession) {
    if !s.is_null() {
        // SAFETY: from npu_open*(), freed once (C contract).
        drop(unsafe { Box::from_raw(s) });
    }
}

/// The SRAM size kernels are tiled for; 0 for a NULL session.
#[no_mangle]
pub extern "C" fn npu_sram_size(s: *mut NpuSession) -> u32 {
    guard(0, || Ok(session(s)?.sram_size()))
}

/// Compile a kernel in the text form for the session's device. NULL on
/// error (parse errors carry the line).
#[no_mangle]
pub extern "C" fn npu_compile(s: *mut NpuSession, source: *const c_char) -> *mut NpuKernel {
    guard(std::ptr::null_mut(), || {
        let s = session(s)?;
        let kernel = s
            .compile_text(cstr(source, "source")?)
            .map_err(|e| e.to_string())?;
        Ok(Box::into_raw(Box::new(NpuKernel {
            kernel,
            inputs: HashMap::new(),
            last: None,
        })))
    })
}

/// Free a kernel (NULL is ignored).
#[no_mangle]
pub extern "C" fn npu_kernel_free(k: *mut NpuKernel) {
    if !k.is_null() {
        // SAFETY: from npu_compile(), freed once (C contract).
        drop(unsafe { Box::from_raw(k) });
    }
}

/// Set input `name` from `bytes` bytes at `data` (f32 or int8, as the
/// kernel declares it; the size must match exactly). 0 or -1.
#[no_mangle]
pub extern "C" fn npu_set_input(
    k: *mut NpuKernel,
    name: *const c_char,
    data: *const u8,
    bytes: usize,
) -> c_int {
    guard(-1, || {
        let k = kernel(k)?;
        let name = cstr(name, "name")?;
        let v = k
            .kernel
            .graph
            .inputs()
            .find(|&v| k.kernel.graph.node(v).name == name)
            .ok_or_else(|| format!("the kernel has no input `{name}`"))?;
        let ty = k.kernel.graph.ty(v);
        if bytes != ty.bytes() {
            return Err(format!(
                "input `{name}` takes {} bytes, not {bytes}",
                ty.bytes()
            ));
        }
        if data.is_null() {
            return Err("data is NULL".into());
        }
        // SAFETY: `data` points at `bytes` readable bytes (C contract).
        let b = unsafe { std::slice::from_raw_parts(data, bytes) };
        k.inputs
            .insert(name.to_string(), TensorData::from_bytes(ty.dtype, b));
        Ok(0)
    })
}

fn input_of(k: &NpuKernel, name: &str) -> Result<crate::TensorType, String> {
    let g = &k.kernel.graph;
    let v = g
        .inputs()
        .find(|&v| g.node(v).name == name)
        .ok_or_else(|| format!("the kernel has no input `{name}`"))?;
    Ok(g.ty(v).clone())
}

fn output_of(k: &NpuKernel, name: &str) -> Result<crate::TensorType, String> {
    let g = &k.kernel.graph;
    let o = g
        .outputs()
        .iter()
        .find(|&&o| g.node(o).name == name)
        .ok_or_else(|| format!("the kernel has no output `{name}`"))?;
    Ok(g.ty(*o).clone())
}

/// Set input `name` from `count` elements of type `dtype` at `data`.
fn set_typed<T: Copy>(
    k: *mut NpuKernel,
    name: *const c_char,
    data: *const T,
    count: usize,
    dtype: DType,
    wrap: fn(Vec<T>) -> TensorData,
) -> c_int {
    guard(-1, || {
        let k = kernel(k)?;
        let name = cstr(name, "name")?;
        let ty = input_of(k, name)?;
        if ty.dtype != dtype {
            return Err(format!(
                "input `{name}` is {}, not {}",
                ty.dtype.name(),
                dtype.name()
            ));
        }
        if count != ty.elems() {
            return Err(format!(
                "input `{name}` takes {} values, not {count}",
                ty.elems()
            ));
        }
        if data.is_null() {
            return Err("data is NULL".into());
        }
        // SAFETY: `data` points at `count` readable, aligned `T`s (C contract).
        let v = unsafe { std::slice::from_raw_parts(data, count) }.to_vec();
        k.inputs.insert(name.to_string(), wrap(v));
        Ok(0)
    })
}

/// Copy `count` elements of output `name` of the last run to `data`.
fn get_typed<T: Copy>(
    k: *mut NpuKernel,
    name: *const c_char,
    data: *mut T,
    count: usize,
    dtype: DType,
    unwrap: fn(&TensorData) -> Option<&[T]>,
) -> c_int {
    guard(-1, || {
        let k = kernel(k)?;
        let name = cstr(name, "name")?;
        let ty = output_of(k, name)?;
        if ty.dtype != dtype {
            return Err(format!(
                "output `{name}` is {}, not {}",
                ty.dtype.name(),
                dtype.name()
            ));
        }
        let run = k.last.as_ref().ok_or("the kernel has not run yet")?;
        let out = run
            .outputs
            .get(name)
            .and_then(unwrap)
            .ok_or_else(|| format!("no {} output `{name}` in the last run", dtype.name()))?;
        if count != out.len() {
            return Err(format!(
                "output `{name}` has {} values, not {count}",
                out.len()
            ));
        }
        if data.is_null() {
            return Err("data is NULL".into());
        }
        // SAFETY: `data` points at `count` writable, aligned `T`s (C contract).
        unsafe { std::ptr::copy_nonoverlapping(out.as_ptr(), data, count) };
        Ok(0)
    })
}

/// Set an f32 input from `count` floats. 0 or -1 (also for a non-f32 input).
#[no_mangle]
pub extern "C" fn npu_set_input_f32(
    k: *mut NpuKernel,
    name: *const c_char,
    data: *const f32,
    count: usize,
) -> c_int {
    set_typed(k, name, data, count, DType::F32, TensorData::F32)
}

/// Set an int8 input from `count` values. 0 or -1.
#[no_mangle]
pub extern "C" fn npu_set_input_i8(
    k: *mut NpuKernel,
    name: *const c_char,
    data: *const i8,
    count: usize,
) -> c_int {
    set_typed(k, name, data, count, DType::I8, TensorData::I8)
}

/// Set an int32 input (int8 kernels' biases) from `count` values. 0 or -1.
#[no_mangle]
pub extern "C" fn npu_set_input_i32(
    k: *mut NpuKernel,
    name: *const c_char,
    data: *const i32,
    count: usize,
) -> c_int {
    set_typed(k, name, data, count, DType::I32, TensorData::I32)
}

/// Copy an f32 output of the last run (`count` must be its length). 0 or -1.
#[no_mangle]
pub extern "C" fn npu_get_output_f32(
    k: *mut NpuKernel,
    name: *const c_char,
    data: *mut f32,
    count: usize,
) -> c_int {
    get_typed(k, name, data, count, DType::F32, |d| match d {
        TensorData::F32(v) => Some(v),
        _ => None,
    })
}

/// Copy an int8 output of the last run. 0 or -1.
#[no_mangle]
pub extern "C" fn npu_get_output_i8(
    k: *mut NpuKernel,
    name: *const c_char,
    data: *mut i8,
    count: usize,
) -> c_int {
    get_typed(k, name, data, count, DType::I8, |d| match d {
        TensorData::I8(v) => Some(v),
        _ => None,
    })
}

/// Fill every input not set yet with seeded random values. 0 or -1.
#[no_mangle]
pub extern "C" fn npu_random_inputs(k: *mut NpuKernel, seed: u64) -> c_int {
    guard(-1, || {
        let k = kernel(k)?;
        for (n, d) in runtime::random_inputs(&k.kernel.graph, seed) {
            k.inputs.entry(n).or_insert(d);
        }
        Ok(0)
    })
}

/// Run the kernel on the session's device and wait. 0 or -1 (a device
/// fault comes with its code and address in the message).
#[no_mangle]
pub extern "C" fn npu_run(s: *mut NpuSession, k: *mut NpuKernel) -> c_int {
    guard(-1, || {
        let s = session(s)?;
        let k = kernel(k)?;
        k.last = Some(s.run(&k.kernel, &k.inputs).map_err(|e| e.to_string())?);
        Ok(0)
    })
}

/// Bytes of output `name`; 0 if there is no such output.
#[no_mangle]
pub extern "C" fn npu_output_size(k: *mut NpuKernel, name: *const c_char) -> usize {
    guard(0, || {
        let k = kernel(k)?;
        let name = cstr(name, "name")?;
        let o = k
            .kernel
            .graph
            .outputs()
            .iter()
            .find(|&&o| k.kernel.graph.node(o).name == name)
            .ok_or_else(|| format!("no output `{name}`"))?;
        Ok(k.kernel.graph.ty(*o).bytes())
    })
}

/// Copy output `name` of the last run into `data` (`bytes` must be its
/// size). 0 or -1.
#[no_mangle]
pub extern "C" fn npu_get_output(
    k: *mut NpuKernel,
    name: *const c_char,
    data: *mut u8,
    bytes: usize,
) -> c_int {
    guard(-1, || {
        let k = kernel(k)?;
        let name = cstr(name, "name")?;
        let run = k.last.as_ref().ok_or("the kernel has not run yet")?;
        let out = run
            .outputs
            .get(name)
            .ok_or_else(|| format!("no output `{name}`"))?
            .to_bytes();
        if bytes != out.len() {
            return Err(format!(
                "output `{name}` has {} bytes, not {bytes}",
                out.len()
            ));
        }
        if data.is_null() {
            return Err("data is NULL".into());
        }
        // SAFETY: `data` points at `bytes` writable bytes (C contract).
        unsafe { std::ptr::copy_nonoverlapping(out.as_ptr(), data, bytes) };
        Ok(0)
    })
}

/// Compare the last run with the CPU reference (int8 exactly, f32 within
/// `tolerance` relative). 0 if equal, -1 with the first difference.
#[no_mangle]
pub extern "C" fn npu_check(k: *mut NpuKernel, tolerance: f32) -> c_int {
    guard(-1, || {
        let k = kernel(k)?;
        let run = k.last.as_ref().ok_or("the kernel has not run yet")?;
        runtime::check(&k.kernel.graph, &k.inputs, &run.outputs, tolerance)
            .map_err(|e| e.to_string())?;
        Ok(0)
    })
}

/// Modelled device cycles of the last run (0 if none).
#[no_mangle]
pub extern "C" fn npu_last_cycles(k: *mut NpuKernel) -> u64 {
    guard(0, || Ok(kernel(k)?.last.as_ref().map_or(0, |r| r.cycles)))
}

/// Instructions in the kernel's command buffer.
#[no_mangle]
pub extern "C" fn npu_kernel_insns(k: *mut NpuKernel) -> usize {
    guard(0, || Ok(kernel(k)?.kernel.program.insns().len()))
}

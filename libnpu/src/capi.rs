//! The C ABI (include/npu.h): runtime API v1 ([`crate::api`]) behind
//! opaque handles.
//!
//! Handles are `Box`es of thread-safe types (`Sync`, locking inside where
//! they change), and every entry point takes them as shared references:
//! no `&mut` is ever made from a C pointer, so any number of threads may
//! call in with the same handle. Every call returns an `npu_status`; its
//! error object, if the caller asked for one, is the caller's (no
//! per-thread state). Every entry point checks its pointers for NULL and
//! never unwinds into C. The rest of the pointer contract (valid, sized as
//! stated, freed once, not while another thread uses it) is C's, stated in
//! npu.h; the functions are not `unsafe fn` because C cannot tell the
//! difference and Rust users have the safe API.
#![allow(clippy::not_unsafe_ptr_arg_deref)]

use crate::api::{self, CompiledModel, Error, Fence, InferRequest, Npu, Status};
use crate::DType;
use std::ffi::{c_char, c_int, CStr, CString};
use std::os::fd::{BorrowedFd, RawFd};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::Path;
use std::time::Duration;

/// `npu_status`: [`Status`] as C sees it.
pub type NpuStatus = u32;

/// An error the caller owns (`npu_error`).
pub struct NpuError {
    error: Error,
    message: CString,
}

/// `npu_device`.
pub struct NpuDevice(Npu);

/// `npu_model`: the model and the C strings of its tensor names.
pub struct NpuModel {
    model: CompiledModel,
    input_names: Vec<CString>,
    output_names: Vec<CString>,
}

/// `npu_request`.
pub struct NpuRequest(InferRequest);

/// `npu_fence`.
pub struct NpuFence(Fence);

/// `npu_device_list`.
pub struct NpuDeviceList(Vec<CString>);

fn c_string(s: &str) -> CString {
    CString::new(s.replace('\0', " ")).unwrap_or_default()
}

/// Run `f`; on an error (or a panic) give its status and, if `err` is
/// not NULL, a new error object there.
fn call(err: *mut *mut NpuError, f: impl FnOnce() -> Result<(), Error>) -> NpuStatus {
    let e = match catch_unwind(AssertUnwindSafe(f)) {
        Ok(Ok(())) => return Status::Ok as NpuStatus,
        Ok(Err(e)) => e,
        Err(_) => Error::new(Status::Internal, "internal error (panic) in libnpu"),
    };
    let status = e.status as NpuStatus;
    if !err.is_null() {
        let message = c_string(&e.message);
        // SAFETY: `err` points at a writable `npu_error *` (C contract).
        unsafe { *err = Box::into_raw(Box::new(NpuError { error: e, message })) };
    }
    status
}

fn null(what: &str) -> Error {
    Error::new(Status::InvalidArgument, format!("{what} is NULL"))
}

fn cstr<'a>(p: *const c_char, what: &str) -> Result<&'a str, Error> {
    if p.is_null() {
        return Err(null(what));
    }
    // SAFETY: the caller passes a NUL-terminated string (C contract).
    unsafe { CStr::from_ptr(p) }
        .to_str()
        .map_err(|_| Error::new(Status::InvalidArgument, format!("{what} is not UTF-8")))
}

/// A shared reference to a handle's object.
fn handle<'a, T>(p: *const T, what: &str) -> Result<&'a T, Error> {
    // SAFETY: a non-NULL handle came from its constructor and is not freed
    // (C contract); the types are Sync, so shared use from threads is fine.
    unsafe { p.as_ref() }.ok_or_else(|| null(what))
}

/// Store a new handle in `*out`.
fn give<T>(out: *mut *mut T, what: &str, value: T) -> Result<(), Error> {
    if out.is_null() {
        return Err(null(what));
    }
    // SAFETY: `out` points at a writable pointer (C contract).
    unsafe { *out = Box::into_raw(Box::new(value)) };
    Ok(())
}

/// Free a handle (NULL is ignored).
fn free<T>(p: *mut T) {
    if !p.is_null() {
        // SAFETY: from its constructor, freed once, no longer used (C contract).
        drop(unsafe { Box::from_raw(p) });
    }
}

/// The library's version, "major.minor.patch".
#[no_mangle]
pub extern "C" fn npu_version() -> *const c_char {
    concat!(env!("NPU_API_VERSION"), "\0").as_ptr().cast()
}

/// The enumerator's name of a status.
#[no_mangle]
pub extern "C" fn npu_status_name(status: NpuStatus) -> *const c_char {
    const NAMES: [&str; 12] = [
        "NPU_OK\0",
        "NPU_ERROR_INVALID_ARGUMENT\0",
        "NPU_ERROR_NOT_FOUND\0",
        "NPU_ERROR_UNSUPPORTED\0",
        "NPU_ERROR_PARSE\0",
        "NPU_ERROR_COMPILE\0",
        "NPU_ERROR_DEVICE\0",
        "NPU_ERROR_JOB_FAULT\0",
        "NPU_ERROR_TIMEOUT\0",
        "NPU_ERROR_BUSY\0",
        "NPU_ERROR_IO\0",
        "NPU_ERROR_INTERNAL\0",
    ];
    NAMES
        .get(status as usize)
        .copied()
        .unwrap_or("?\0")
        .as_ptr()
        .cast()
}

#[no_mangle]
pub extern "C" fn npu_error_status(err: *const NpuError) -> NpuStatus {
    // SAFETY: NULL or from a failed call, not freed (C contract).
    unsafe { err.as_ref() }.map_or(Status::Ok, |e| e.error.status) as NpuStatus
}

#[no_mangle]
pub extern "C" fn npu_error_message(err: *const NpuError) -> *const c_char {
    // SAFETY: as above.
    match unsafe { err.as_ref() } {
        Some(e) => e.message.as_ptr(),
        None => c"".as_ptr(),
    }
}

/// The fault of a job-fault error: kind (the fault code), address, seqno.
#[no_mangle]
pub extern "C" fn npu_error_fault(
    err: *const NpuError,
    kind: *mut u32,
    address: *mut u64,
    seqno: *mut u64,
) -> NpuStatus {
    // SAFETY: as above.
    let Some(f) = unsafe { err.as_ref() }.and_then(|e| e.error.fault) else {
        return Status::NotFound as NpuStatus;
    };
    // SAFETY: each non-NULL pointer is writable (C contract).
    unsafe {
        if let Some(k) = kind.as_mut() {
            *k = f.code;
        }
        if let Some(a) = address.as_mut() {
            *a = f.address;
        }
        if let Some(s) = seqno.as_mut() {
            *s = f.seqno;
        }
    }
    Status::Ok as NpuStatus
}

#[no_mangle]
pub extern "C" fn npu_error_free(err: *mut NpuError) {
    free(err)
}

#[no_mangle]
pub extern "C" fn npu_device_list_get(
    list: *mut *mut NpuDeviceList,
    err: *mut *mut NpuError,
) -> NpuStatus {
    call(err, || {
        let paths = api::devices()
            .iter()
            .map(|p| c_string(&p.to_string_lossy()))
            .collect();
        give(list, "list", NpuDeviceList(paths))
    })
}

#[no_mangle]
pub extern "C" fn npu_device_list_count(list: *const NpuDeviceList) -> usize {
    // SAFETY: NULL or from npu_device_list_get, not freed (C contract).
    unsafe { list.as_ref() }.map_or(0, |l| l.0.len())
}

#[no_mangle]
pub extern "C" fn npu_device_list_path(list: *const NpuDeviceList, index: usize) -> *const c_char {
    // SAFETY: as above.
    unsafe { list.as_ref() }
        .and_then(|l| l.0.get(index))
        .map_or(std::ptr::null(), |p| p.as_ptr())
}

#[no_mangle]
pub extern "C" fn npu_device_list_free(list: *mut NpuDeviceList) {
    free(list)
}

/// Open an onpu node by path, or the first one for NULL.
#[no_mangle]
pub extern "C" fn npu_device_open(
    path: *const c_char,
    device: *mut *mut NpuDevice,
    err: *mut *mut NpuError,
) -> NpuStatus {
    call(err, || {
        let npu = if path.is_null() {
            Npu::open()?
        } else {
            Npu::open_path(Path::new(cstr(path, "path")?))?
        };
        give(device, "device", NpuDevice(npu))
    })
}

/// Open an onpu node from the caller's descriptor (duplicated).
#[no_mangle]
pub extern "C" fn npu_device_open_fd(
    fd: c_int,
    device: *mut *mut NpuDevice,
    err: *mut *mut NpuError,
) -> NpuStatus {
    call(err, || {
        if fd < 0 {
            return Err(Error::new(
                Status::InvalidArgument,
                format!("fd {fd} is not a descriptor"),
            ));
        }
        // SAFETY: the caller passes an open descriptor it keeps open
        // during the call (C contract); we use a duplicate of it.
        let fd = unsafe { BorrowedFd::borrow_raw(fd as RawFd) };
        let own = fd.try_clone_to_owned().map_err(|e| {
            Error::new(
                Status::InvalidArgument,
                format!("cannot duplicate the fd: {e}"),
            )
        })?;
        give(device, "device", NpuDevice(Npu::open_fd(own)?))
    })
}

/// The device model in-process.
#[no_mangle]
pub extern "C" fn npu_device_open_model(
    sram_size: u32,
    device: *mut *mut NpuDevice,
    err: *mut *mut NpuError,
) -> NpuStatus {
    call(err, || {
        give(device, "device", NpuDevice(Npu::model(sram_size)?))
    })
}

#[no_mangle]
pub extern "C" fn npu_device_close(device: *mut NpuDevice) {
    free(device)
}

/// `struct npu_device_info`, version 1.
#[repr(C)]
pub struct NpuDeviceInfo {
    pub struct_size: u32,
    pub backend: u32,
    pub device_id: u32,
    pub revision: u32,
    pub isa_version: u32,
    pub sram_size: u32,
    pub contexts: u32,
    pub va_bits: u32,
    pub caps: u32,
    pub clock_khz: u32,
    pub job_timeout_ms: u32,
    pub reserved: u32,
    pub va_start: u64,
    pub va_end: u64,
}

/// Write `value` to a caller's struct that starts with `struct_size`:
/// only the bytes both sides know (an older caller's struct is shorter).
fn fill_struct<T>(out: *mut T, value: &T, what: &str) -> Result<(), Error> {
    if out.is_null() {
        return Err(null(what));
    }
    // SAFETY: `out` starts with a readable u32 struct_size (C contract).
    let size = unsafe { out.cast::<u32>().read_unaligned() } as usize;
    if size < 4 {
        return Err(Error::new(
            Status::InvalidArgument,
            format!("{what}->struct_size is {size}: set it to sizeof"),
        ));
    }
    let n = size.min(size_of::<T>());
    // SAFETY: the caller's struct has `size` writable bytes (C contract);
    // we copy at most that many, and struct_size itself stays as it was.
    unsafe {
        std::ptr::copy_nonoverlapping(
            (value as *const T).cast::<u8>().add(4),
            out.cast::<u8>().add(4),
            n - 4,
        )
    };
    Ok(())
}

#[no_mangle]
pub extern "C" fn npu_device_query(
    device: *const NpuDevice,
    info: *mut NpuDeviceInfo,
    err: *mut *mut NpuError,
) -> NpuStatus {
    call(err, || {
        let d = handle(device, "device")?.0.info();
        let p = &d.params;
        let value = NpuDeviceInfo {
            struct_size: size_of::<NpuDeviceInfo>() as u32,
            backend: match d.backend {
                api::BackendKind::Accel => 1,
                api::BackendKind::Model => 2,
            },
            device_id: p.device_id,
            revision: p.revision,
            isa_version: p.isa_version,
            sram_size: p.sram_size,
            contexts: p.contexts,
            va_bits: p.va_bits,
            caps: p.caps,
            clock_khz: p.clock_khz,
            job_timeout_ms: p.job_timeout_ms,
            reserved: 0,
            va_start: p.va_start,
            va_end: p.va_end,
        };
        fill_struct(info, &value, "info")
    })
}

fn c_model(model: CompiledModel) -> NpuModel {
    let names = |l: &[api::TensorInfo]| l.iter().map(|t| c_string(&t.name)).collect();
    NpuModel {
        input_names: names(model.inputs()),
        output_names: names(model.outputs()),
        model,
    }
}

#[no_mangle]
pub extern "C" fn npu_model_load_text(
    device: *const NpuDevice,
    source: *const c_char,
    model: *mut *mut NpuModel,
    err: *mut *mut NpuError,
) -> NpuStatus {
    call(err, || {
        let d = handle(device, "device")?;
        let m = d.0.load_text(cstr(source, "source")?)?;
        give(model, "model", c_model(m))
    })
}

#[no_mangle]
pub extern "C" fn npu_model_load_file(
    device: *const NpuDevice,
    path: *const c_char,
    model: *mut *mut NpuModel,
    err: *mut *mut NpuError,
) -> NpuStatus {
    call(err, || {
        let d = handle(device, "device")?;
        let m = d.0.load_file(Path::new(cstr(path, "path")?))?;
        give(model, "model", c_model(m))
    })
}

#[no_mangle]
pub extern "C" fn npu_model_save(
    model: *const NpuModel,
    path: *const c_char,
    err: *mut *mut NpuError,
) -> NpuStatus {
    call(err, || {
        handle(model, "model")?
            .model
            .save(Path::new(cstr(path, "path")?))
    })
}

#[no_mangle]
pub extern "C" fn npu_model_free(model: *mut NpuModel) {
    free(model)
}

fn write<T>(out: *mut T, what: &str, v: T) -> Result<(), Error> {
    if out.is_null() {
        return Err(null(what));
    }
    // SAFETY: `out` points at a writable T (C contract).
    unsafe { out.write(v) };
    Ok(())
}

#[no_mangle]
pub extern "C" fn npu_model_input_count(
    model: *const NpuModel,
    count: *mut usize,
    err: *mut *mut NpuError,
) -> NpuStatus {
    call(err, || {
        write(count, "count", handle(model, "model")?.model.inputs().len())
    })
}

#[no_mangle]
pub extern "C" fn npu_model_output_count(
    model: *const NpuModel,
    count: *mut usize,
    err: *mut *mut NpuError,
) -> NpuStatus {
    call(err, || {
        write(
            count,
            "count",
            handle(model, "model")?.model.outputs().len(),
        )
    })
}

/// `NPU_MAX_RANK`.
const MAX_RANK: usize = 8;

/// `struct npu_tensor_info`, version 1.
#[repr(C)]
pub struct NpuTensorInfo {
    pub struct_size: u32,
    pub dtype: u32,
    pub name: *const c_char,
    pub rank: u32,
    pub quantized: u32,
    pub shape: [i64; MAX_RANK],
    pub bytes: u64,
    pub scale: f32,
    pub zero_point: i32,
    pub quant_axis: i32,
}

/// The `NPU_DTYPE_*` number of a dtype (npu.h's `enum npu_dtype`).
pub fn dtype_code(d: DType) -> u32 {
    match d {
        DType::F32 => 1,
        DType::I8 => 2,
        DType::I32 => 3,
        DType::U8 => 4,
        DType::F16 => 5,
        DType::Bf16 => 6,
    }
}

fn tensor_info(t: &api::TensorInfo, name: &CString) -> Result<NpuTensorInfo, Error> {
    let ty = &t.ty;
    if ty.shape.len() > MAX_RANK {
        return Err(Error::new(
            Status::Unsupported,
            format!(
                "`{}` has rank {} (NPU_MAX_RANK is {MAX_RANK})",
                t.name,
                ty.shape.len()
            ),
        ));
    }
    let mut shape = [0i64; MAX_RANK];
    for (s, &d) in shape.iter_mut().zip(&ty.shape) {
        *s = d as i64;
    }
    let (quantized, scale, zero_point, quant_axis) = match &ty.quant {
        None => (0, 0.0, 0, -1),
        // uint8: the uint8 zero point (0..255).
        Some(crate::Quant::PerTensor { scale, .. }) => (1, *scale, ty.zero_point_value(), -1),
        Some(q @ crate::Quant::PerChannel { axis, .. }) => {
            (1, q.scale(0), i32::from(q.zero_point_of(0)), *axis as i32)
        }
    };
    Ok(NpuTensorInfo {
        struct_size: size_of::<NpuTensorInfo>() as u32,
        dtype: dtype_code(ty.dtype),
        name: name.as_ptr(),
        rank: ty.shape.len() as u32,
        quantized,
        shape,
        bytes: ty.bytes() as u64,
        scale,
        zero_point,
        quant_axis,
    })
}

fn io_info(
    model: *const NpuModel,
    index: usize,
    info: *mut NpuTensorInfo,
    output: bool,
) -> Result<(), Error> {
    let m = handle(model, "model")?;
    let (list, names, what) = if output {
        (m.model.outputs(), &m.output_names, "output")
    } else {
        (m.model.inputs(), &m.input_names, "input")
    };
    let t = list.get(index).ok_or_else(|| {
        Error::new(
            Status::NotFound,
            format!("no {what} {index}: the model has {}", list.len()),
        )
    })?;
    fill_struct(info, &tensor_info(t, &names[index])?, "info")
}

#[no_mangle]
pub extern "C" fn npu_model_input_info(
    model: *const NpuModel,
    index: usize,
    info: *mut NpuTensorInfo,
    err: *mut *mut NpuError,
) -> NpuStatus {
    call(err, || io_info(model, index, info, false))
}

#[no_mangle]
pub extern "C" fn npu_model_output_info(
    model: *const NpuModel,
    index: usize,
    info: *mut NpuTensorInfo,
    err: *mut *mut NpuError,
) -> NpuStatus {
    call(err, || io_info(model, index, info, true))
}

#[no_mangle]
pub extern "C" fn npu_request_create(
    model: *const NpuModel,
    request: *mut *mut NpuRequest,
    err: *mut *mut NpuError,
) -> NpuStatus {
    call(err, || {
        let m = handle(model, "model")?;
        give(request, "request", NpuRequest(m.model.request()))
    })
}

/// Free a request, after its run in flight (which may use the caller's
/// bound buffers) has ended.
#[no_mangle]
pub extern "C" fn npu_request_free(request: *mut NpuRequest) {
    // SAFETY: NULL or from npu_request_create, not freed (C contract).
    if let Some(r) = unsafe { request.as_ref() } {
        r.0.wait_idle();
    }
    free(request)
}

fn bytes<'a>(data: *const u8, len: usize) -> Result<&'a [u8], Error> {
    if data.is_null() {
        return Err(null("data"));
    }
    // SAFETY: `data` points at `len` readable bytes (C contract).
    Ok(unsafe { std::slice::from_raw_parts(data, len) })
}

#[no_mangle]
pub extern "C" fn npu_request_set_input(
    request: *const NpuRequest,
    name: *const c_char,
    data: *const u8,
    len: usize,
    err: *mut *mut NpuError,
) -> NpuStatus {
    call(err, || {
        let r = handle(request, "request")?;
        r.0.set_input(cstr(name, "name")?, bytes(data, len)?)
    })
}

#[no_mangle]
pub extern "C" fn npu_request_bind_input(
    request: *const NpuRequest,
    name: *const c_char,
    data: *const u8,
    len: usize,
    err: *mut *mut NpuError,
) -> NpuStatus {
    call(err, || {
        let r = handle(request, "request")?;
        // SAFETY: npu.h states the binding's contract to the caller.
        unsafe { r.0.bind_input(cstr(name, "name")?, data, len) }
    })
}

#[no_mangle]
pub extern "C" fn npu_request_bind_output(
    request: *const NpuRequest,
    name: *const c_char,
    data: *mut u8,
    len: usize,
    err: *mut *mut NpuError,
) -> NpuStatus {
    call(err, || {
        let r = handle(request, "request")?;
        // SAFETY: npu.h states the binding's contract to the caller.
        unsafe { r.0.bind_output(cstr(name, "name")?, data, len) }
    })
}

/// A descriptor the caller passes: non-negative, borrowed for the call.
fn borrowed_fd<'a>(fd: c_int) -> Result<BorrowedFd<'a>, Error> {
    if fd < 0 {
        return Err(Error::new(
            Status::InvalidArgument,
            format!("fd {fd} is not a descriptor"),
        ));
    }
    // SAFETY: the caller keeps `fd` open during the call (C contract); an
    // fd that is not open gives EBADF from the ioctl, not undefined
    // behaviour.
    Ok(unsafe { BorrowedFd::borrow_raw(fd as RawFd) })
}

/// Store a new descriptor in `*out` (the caller's to close).
fn give_fd(out: *mut c_int, fd: std::os::fd::OwnedFd) {
    // SAFETY: `out` was checked non-NULL and is writable (C contract).
    unsafe { out.write(std::os::fd::IntoRawFd::into_raw_fd(fd)) };
}

/// The body of both dma-buf exports: `export` names which buffer.
fn export_dmabuf(
    request: *const NpuRequest,
    name: *const c_char,
    fd: *mut c_int,
    err: *mut *mut NpuError,
    export: impl FnOnce(&InferRequest, &str) -> Result<std::os::fd::OwnedFd, Error>,
) -> NpuStatus {
    call(err, || {
        let r = handle(request, "request")?;
        let name = cstr(name, "name")?;
        if fd.is_null() {
            return Err(null("fd"));
        }
        give_fd(fd, export(&r.0, name)?);
        Ok(())
    })
}

#[no_mangle]
pub extern "C" fn npu_request_export_input_dmabuf(
    request: *const NpuRequest,
    name: *const c_char,
    fd: *mut c_int,
    err: *mut *mut NpuError,
) -> NpuStatus {
    export_dmabuf(request, name, fd, err, InferRequest::export_input_dmabuf)
}

#[no_mangle]
pub extern "C" fn npu_request_export_output_dmabuf(
    request: *const NpuRequest,
    name: *const c_char,
    fd: *mut c_int,
    err: *mut *mut NpuError,
) -> NpuStatus {
    export_dmabuf(request, name, fd, err, InferRequest::export_output_dmabuf)
}

#[no_mangle]
pub extern "C" fn npu_request_bind_input_dmabuf(
    request: *const NpuRequest,
    name: *const c_char,
    fd: c_int,
    err: *mut *mut NpuError,
) -> NpuStatus {
    call(err, || {
        let r = handle(request, "request")?;
        r.0.bind_input_dmabuf(cstr(name, "name")?, borrowed_fd(fd)?)
    })
}

#[no_mangle]
pub extern "C" fn npu_request_bind_output_dmabuf(
    request: *const NpuRequest,
    name: *const c_char,
    fd: c_int,
    err: *mut *mut NpuError,
) -> NpuStatus {
    call(err, || {
        let r = handle(request, "request")?;
        r.0.bind_output_dmabuf(cstr(name, "name")?, borrowed_fd(fd)?)
    })
}

#[no_mangle]
pub extern "C" fn npu_request_is_zero_copy(
    request: *const NpuRequest,
    name: *const c_char,
    zero_copy: *mut c_int,
    err: *mut *mut NpuError,
) -> NpuStatus {
    call(err, || {
        let r = handle(request, "request")?;
        let name = cstr(name, "name")?;
        if zero_copy.is_null() {
            return Err(null("zero_copy"));
        }
        let z = r.0.is_zero_copy(name)?;
        // SAFETY: `zero_copy` is writable (C contract), checked non-NULL.
        unsafe { zero_copy.write(c_int::from(z)) };
        Ok(())
    })
}

#[no_mangle]
pub extern "C" fn npu_request_run(
    request: *const NpuRequest,
    err: *mut *mut NpuError,
) -> NpuStatus {
    call(err, || handle(request, "request")?.0.run().map(drop))
}

#[no_mangle]
pub extern "C" fn npu_request_start(
    request: *const NpuRequest,
    wait_for: *const *const NpuFence,
    count: usize,
    fence: *mut *mut NpuFence,
    err: *mut *mut NpuError,
) -> NpuStatus {
    call(err, || {
        let r = handle(request, "request")?;
        if fence.is_null() {
            return Err(null("fence"));
        }
        let after: Vec<Fence> = if count == 0 {
            Vec::new()
        } else {
            if wait_for.is_null() {
                return Err(null("wait_for"));
            }
            // SAFETY: `wait_for` points at `count` fence pointers (C contract).
            let list = unsafe { std::slice::from_raw_parts(wait_for, count) };
            list.iter()
                .map(|&f| handle(f, "a fence in wait_for").map(|f| f.0.clone()))
                .collect::<Result<_, _>>()?
        };
        let f = r.0.start(&after)?;
        give(fence, "fence", NpuFence(f))
    })
}

/// Start a run whose first job waits for sync_files (duplicated).
#[no_mangle]
pub extern "C" fn npu_request_start_after_sync_files(
    request: *const NpuRequest,
    fds: *const c_int,
    count: usize,
    fence: *mut *mut NpuFence,
    err: *mut *mut NpuError,
) -> NpuStatus {
    call(err, || {
        let r = handle(request, "request")?;
        if fence.is_null() {
            return Err(null("fence"));
        }
        let raw: &[c_int] = if count == 0 {
            &[]
        } else if fds.is_null() {
            return Err(null("fds"));
        } else {
            // SAFETY: `fds` points at `count` descriptors (C contract).
            unsafe { std::slice::from_raw_parts(fds, count) }
        };
        let owned = raw
            .iter()
            .map(|&fd| {
                if fd < 0 {
                    return Err(Error::new(
                        Status::InvalidArgument,
                        format!("fd {fd} is not a descriptor"),
                    ));
                }
                // SAFETY: the caller keeps `fd` open during the call (C
                // contract); we use a duplicate.
                unsafe { BorrowedFd::borrow_raw(fd as RawFd) }
                    .try_clone_to_owned()
                    .map_err(|e| {
                        Error::new(
                            Status::InvalidArgument,
                            format!("cannot duplicate fd {fd}: {e}"),
                        )
                    })
            })
            .collect::<Result<Vec<_>, _>>()?;
        let f = r.0.start_after(&[], owned)?;
        give(fence, "fence", NpuFence(f))
    })
}

#[no_mangle]
pub extern "C" fn npu_request_get_output(
    request: *const NpuRequest,
    name: *const c_char,
    data: *mut u8,
    len: usize,
    err: *mut *mut NpuError,
) -> NpuStatus {
    call(err, || {
        let r = handle(request, "request")?;
        let name = cstr(name, "name")?;
        let out = r.0.output(name)?;
        if len != out.len() {
            return Err(Error::new(
                Status::InvalidArgument,
                format!("output `{name}` is {} bytes, not {len}", out.len()),
            ));
        }
        if data.is_null() {
            return Err(null("data"));
        }
        // SAFETY: `data` points at `len` writable bytes (C contract).
        unsafe { std::ptr::copy_nonoverlapping(out.as_ptr(), data, len) };
        Ok(())
    })
}

#[no_mangle]
pub extern "C" fn npu_request_stats(
    request: *const NpuRequest,
    cycles: *mut u64,
    uploaded_bytes: *mut u64,
    err: *mut *mut NpuError,
) -> NpuStatus {
    call(err, || {
        let s = handle(request, "request")?.0.stats()?;
        // SAFETY: each non-NULL pointer is writable (C contract).
        unsafe {
            if let Some(c) = cycles.as_mut() {
                *c = s.cycles;
            }
            if let Some(u) = uploaded_bytes.as_mut() {
                *u = s.uploaded;
            }
        }
        Ok(())
    })
}

#[no_mangle]
pub extern "C" fn npu_fence_wait(
    fence: *const NpuFence,
    timeout_ns: i64,
    err: *mut *mut NpuError,
) -> NpuStatus {
    call(err, || {
        let f = handle(fence, "fence")?;
        let timeout = u64::try_from(timeout_ns).ok().map(Duration::from_nanos);
        f.0.wait(timeout).map(drop)
    })
}

#[no_mangle]
pub extern "C" fn npu_fence_export_sync_file(
    fence: *const NpuFence,
    fd: *mut c_int,
    err: *mut *mut NpuError,
) -> NpuStatus {
    call(err, || {
        let f = handle(fence, "fence")?;
        if fd.is_null() {
            return Err(null("fd"));
        }
        let sync_file = f.0.export_sync_file()?;
        // SAFETY: `fd` is writable (C contract); the caller owns the fd.
        unsafe { fd.write(std::os::fd::IntoRawFd::into_raw_fd(sync_file)) };
        Ok(())
    })
}

#[no_mangle]
pub extern "C" fn npu_fence_free(fence: *mut NpuFence) {
    free(fence)
}

#[no_mangle]
pub extern "C" fn npu_device_run_raw(
    device: *const NpuDevice,
    commands: *const u8,
    len: usize,
    sizes: *const u64,
    count: usize,
    addresses: *mut u64,
    err: *mut *mut NpuError,
) -> NpuStatus {
    call(err, || {
        let d = handle(device, "device")?;
        let cmd = bytes(commands, len)?;
        let sizes: &[u64] = if count == 0 {
            &[]
        } else if sizes.is_null() {
            return Err(null("sizes"));
        } else {
            // SAFETY: `sizes` points at `count` u64s (C contract).
            unsafe { std::slice::from_raw_parts(sizes, count) }
        };
        let run = d.0.run_raw(cmd, sizes)?;
        if !addresses.is_null() {
            // SAFETY: `addresses` has room for `count` u64s (C contract).
            let out = unsafe { std::slice::from_raw_parts_mut(addresses, count) };
            out.copy_from_slice(&run.addresses[..count]);
        }
        Ok(())
    })
}

// ONNX models: libnpu does not parse ONNX itself (the importer, npu-onnx,
// is built on libnpu and heavier). npu_model_load_onnx() loads the
// importer's plugin, libnpu-onnx.so.1 (onnx/capi), on first use; the plugin
// imports and compiles the model for this device's target and hands back
// the compiled model's bytes, which libnpu loads like a saved model. Only
// bytes and C types cross between the two libraries (each has its own copy
// of the Rust code), never a handle or an allocation.

/// The plugin's file name (found like any dlopen() name), unless
/// `NPU_ONNX_LIBRARY` names another file.
pub const ONNX_PLUGIN: &str = "libnpu-onnx.so.1";
/// The plugin's entry point; a new plugin ABI gets a new name.
pub const ONNX_COMPILE_SYMBOL: &CStr = c"npu_onnx_compile_v1";

/// What the plugin compiles for: [`api::Target`] in C types.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct OnnxTarget {
    pub struct_size: u32,
    pub sram_size: u32,
    pub max_job_bytes: u32,
    /// [`ONNX_DOUBLE_BUFFER`] | [`ONNX_FUSE`].
    pub flags: u32,
}
pub const ONNX_DOUBLE_BUFFER: u32 = 1;
pub const ONNX_FUSE: u32 = 2;

impl OnnxTarget {
    pub fn new(t: &api::Target) -> OnnxTarget {
        OnnxTarget {
            struct_size: size_of::<OnnxTarget>() as u32,
            sram_size: t.sram_size,
            max_job_bytes: t.options.max_job_bytes,
            flags: if t.options.double_buffer {
                ONNX_DOUBLE_BUFFER
            } else {
                0
            } | if t.options.fuse { ONNX_FUSE } else { 0 },
        }
    }

    pub fn target(&self) -> api::Target {
        api::Target {
            sram_size: self.sram_size,
            options: crate::CompileOptions {
                double_buffer: self.flags & ONNX_DOUBLE_BUFFER != 0,
                fuse: self.flags & ONNX_FUSE != 0,
                max_job_bytes: self.max_job_bytes,
            },
        }
    }
}

/// Where the plugin writes its answer: the compiled model's bytes on
/// success, else the error message (UTF-8). Called once, during the call.
pub type OnnxSink = extern "C" fn(ctx: *mut std::ffi::c_void, data: *const u8, len: usize);

/// `npu_onnx_compile_v1(path, input_shapes, target, sink, ctx)`: an
/// `npu_status`. `input_shapes` is NULL or npu.h's "NAME=D0,D1,...;...".
pub type OnnxCompile = unsafe extern "C" fn(
    path: *const c_char,
    input_shapes: *const c_char,
    target: *const OnnxTarget,
    sink: OnnxSink,
    ctx: *mut std::ffi::c_void,
) -> NpuStatus;

extern "C" fn collect(ctx: *mut std::ffi::c_void, data: *const u8, len: usize) {
    if ctx.is_null() || (data.is_null() && len > 0) {
        return;
    }
    // SAFETY: `ctx` is the Vec onnx_compile passed for this call, and
    // `data` has `len` readable bytes (the plugin's contract).
    unsafe {
        let out = &mut *ctx.cast::<Vec<u8>>();
        if len > 0 {
            out.extend_from_slice(std::slice::from_raw_parts(data, len));
        }
    }
}

/// The plugin's entry point, loaded once (and never unloaded: a model's
/// code may still be in use when another thread asks).
fn onnx_plugin() -> Result<OnnxCompile, Error> {
    use nix::libc;
    use std::sync::OnceLock;
    static PLUGIN: OnceLock<Result<usize, String>> = OnceLock::new();
    let found = PLUGIN.get_or_init(|| {
        let name = std::env::var("NPU_ONNX_LIBRARY").unwrap_or_else(|_| ONNX_PLUGIN.into());
        let c_name = CString::new(name.clone()).map_err(|_| format!("{name}: has a NUL"))?;
        let dl_error = || {
            // SAFETY: dlerror() gives NULL or a NUL-terminated string.
            let e = unsafe { libc::dlerror() };
            if e.is_null() {
                String::from("unknown error")
            } else {
                // SAFETY: as above.
                unsafe { CStr::from_ptr(e) }.to_string_lossy().into_owned()
            }
        };
        // SAFETY: dlopen of a library; its initialisers are Rust's (none
        // that matter). RTLD_LOCAL: its copy of libnpu's symbols stays its own.
        let lib = unsafe { libc::dlopen(c_name.as_ptr(), libc::RTLD_NOW | libc::RTLD_LOCAL) };
        if lib.is_null() {
            return Err(dl_error());
        }
        // SAFETY: a symbol lookup in the library just opened.
        let sym = unsafe { libc::dlsym(lib, ONNX_COMPILE_SYMBOL.as_ptr()) };
        if sym.is_null() {
            return Err(format!("{name}: {}", dl_error()));
        }
        Ok(sym as usize)
    });
    match found {
        // SAFETY: the symbol is the plugin's npu_onnx_compile_v1, of this type.
        Ok(f) => Ok(unsafe { std::mem::transmute::<usize, OnnxCompile>(*f) }),
        Err(why) => Err(Error::new(
            Status::Unsupported,
            format!(
                "ONNX models need libnpu's ONNX plugin ({ONNX_PLUGIN}, `make install-libnpu-onnx`; NPU_ONNX_LIBRARY names another file): {why}"
            ),
        )),
    }
}

/// Import an ONNX file with the plugin and compile it for `npu`.
fn onnx_compile(npu: &Npu, path: &CStr, shapes: Option<&CStr>) -> Result<Vec<u8>, Error> {
    let compile = onnx_plugin()?;
    let target = OnnxTarget::new(&npu.target());
    let mut out: Vec<u8> = Vec::new();
    // SAFETY: the plugin's entry point with a NUL-terminated path, a
    // target that lives through the call, and `collect` with our Vec.
    let status = unsafe {
        compile(
            path.as_ptr(),
            shapes.map_or(std::ptr::null(), CStr::as_ptr),
            &target,
            collect,
            (&mut out as *mut Vec<u8>).cast(),
        )
    };
    if status == Status::Ok as NpuStatus {
        return Ok(out);
    }
    let status = [
        Status::InvalidArgument,
        Status::NotFound,
        Status::Unsupported,
        Status::Parse,
        Status::Compile,
        Status::Io,
    ]
    .into_iter()
    .find(|s| *s as NpuStatus == status)
    .unwrap_or(Status::Internal);
    Err(Error::new(
        status,
        String::from_utf8_lossy(&out).into_owned(),
    ))
}

/// An ONNX model file, imported and compiled for the device by the ONNX
/// plugin.
#[no_mangle]
pub extern "C" fn npu_model_load_onnx(
    device: *const NpuDevice,
    path: *const c_char,
    input_shapes: *const c_char,
    model: *mut *mut NpuModel,
    err: *mut *mut NpuError,
) -> NpuStatus {
    call(err, || {
        let d = handle(device, "device")?;
        cstr(path, "path")?;
        // SAFETY: checked non-NULL just above; NUL-terminated (C contract).
        let c_path = unsafe { CStr::from_ptr(path) };
        let shapes = if input_shapes.is_null() {
            None
        } else {
            cstr(input_shapes, "input_shapes")?;
            // SAFETY: as for the path.
            Some(unsafe { CStr::from_ptr(input_shapes) })
        };
        let bytes = onnx_compile(&d.0, c_path, shapes)?;
        let m = d.0.load_compiled(&bytes)?;
        give(model, "model", c_model(m))
    })
}

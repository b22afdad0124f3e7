//! Runtime API v1: what runtimes build on (Documentation/userspace/runtime.rst).
//!
//! * [`Npu`]: an open device (the NPU through the driver, or the device
//!   model); cheap to clone, usable from any number of threads.
//! * [`CompiledModel`]: a model loaded and compiled once for an [`Npu`]
//!   (or read from a file [`CompiledModel::save`] wrote). Its constants go
//!   to the device with its first run and stay resident.
//! * [`InferRequest`]: one model's inputs and outputs; as many per model as
//!   wanted, each run synchronously ([`InferRequest::run`]) or
//!   asynchronously ([`InferRequest::start`], a [`Fence`]). One run at a
//!   time per request; requests of one device run one after the other on
//!   it (the device executes one job at a time).
//! * [`Error`]: a [`Status`] code, a message and the device fault if a job
//!   faulted.
//!
//! The C API (include/npu.h) is this module behind opaque handles.

use crate::device::{self, Device, DeviceError, Params, SharedBuffer, SharedDevice};
use crate::ir::{DType, Graph, Quant, TensorType};
use crate::lower::{BufferDesc, BufferKind, Program, ProgramParts};
use crate::runtime::{self, Session};
use crate::{compile, CompileOptions, DeviceParams};
use npu_isa::{Fault, Insn};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// What a call gave; the numbers are the C API's `enum npu_status`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u32)]
pub enum Status {
    Ok = 0,
    InvalidArgument = 1,
    NotFound = 2,
    Unsupported = 3,
    Parse = 4,
    Compile = 5,
    Device = 6,
    JobFault = 7,
    Timeout = 8,
    Busy = 9,
    Io = 10,
    Internal = 11,
}

impl Status {
    /// The C enumerator's name.
    pub fn name(self) -> &'static str {
        match self {
            Status::Ok => "NPU_OK",
            Status::InvalidArgument => "NPU_ERROR_INVALID_ARGUMENT",
            Status::NotFound => "NPU_ERROR_NOT_FOUND",
            Status::Unsupported => "NPU_ERROR_UNSUPPORTED",
            Status::Parse => "NPU_ERROR_PARSE",
            Status::Compile => "NPU_ERROR_COMPILE",
            Status::Device => "NPU_ERROR_DEVICE",
            Status::JobFault => "NPU_ERROR_JOB_FAULT",
            Status::Timeout => "NPU_ERROR_TIMEOUT",
            Status::Busy => "NPU_ERROR_BUSY",
            Status::Io => "NPU_ERROR_IO",
            Status::Internal => "NPU_ERROR_INTERNAL",
        }
    }
}

/// A device fault: what the job's completion record says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct JobFault {
    /// The fault code (Documentation/hw/npu-hw.rst); [`JobFault::kind`]
    /// names it.
    pub code: u32,
    /// What the address means depends on the code (an NPU address for MMU
    /// faults, a command buffer offset for instruction faults).
    pub address: u64,
    /// The job's sequence number.
    pub seqno: u64,
}

impl JobFault {
    /// `None` for a code this libnpu does not know.
    pub fn kind(&self) -> Option<Fault> {
        Fault::from_code(self.code)
    }
}

/// An error of the runtime API: a status, a message, the fault of a job
/// that faulted. Cloneable, so every waiter on a [`Fence`] gets it.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct Error {
    pub status: Status,
    pub message: String,
    pub fault: Option<JobFault>,
}

impl Error {
    pub fn new(status: Status, message: impl Into<String>) -> Error {
        Error {
            status,
            message: message.into(),
            fault: None,
        }
    }
}

fn invalid(message: impl Into<String>) -> Error {
    Error::new(Status::InvalidArgument, message)
}

impl From<DeviceError> for Error {
    fn from(e: DeviceError) -> Error {
        let status = match &e {
            DeviceError::NotFound => Status::NotFound,
            DeviceError::Open { source, .. } if source.kind() == std::io::ErrorKind::NotFound => {
                Status::NotFound
            }
            DeviceError::Open { .. }
            | DeviceError::NotOnpu { .. }
            | DeviceError::Ioctl { .. }
            | DeviceError::Map { .. }
            | DeviceError::JobCanceled { .. } => Status::Device,
            DeviceError::JobFault { .. } => Status::JobFault,
            DeviceError::JobTimedOut { .. } | DeviceError::WaitTimeout { .. } => Status::Timeout,
            DeviceError::Invalid(_) => Status::InvalidArgument,
        };
        let fault = match e {
            DeviceError::JobFault {
                seqno,
                status,
                addr,
            } => Some(JobFault {
                code: status,
                address: addr,
                seqno,
            }),
            _ => None,
        };
        Error {
            status,
            message: e.to_string(),
            fault,
        }
    }
}

impl From<runtime::Error> for Error {
    fn from(e: runtime::Error) -> Error {
        let status = match &e {
            runtime::Error::Device(_) => Status::Device,
            runtime::Error::Parse(_) => Status::Parse,
            runtime::Error::Compile(_) => Status::Compile,
            runtime::Error::Input { .. }
            | runtime::Error::Model(_)
            | runtime::Error::Request(_) => Status::InvalidArgument,
            runtime::Error::Reference(_) | runtime::Error::Mismatch { .. } => Status::Internal,
        };
        match e {
            runtime::Error::Device(d) => d.into(),
            e => Error::new(status, e.to_string()),
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// How long the device model waits for an input sync_file: past it the run
/// fails (the accel backend's jobs are bounded by the driver instead).
const FENCE_WAIT_LIMIT: Duration = Duration::from_secs(600);

/// Which backend an [`Npu`] runs on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BackendKind {
    /// The onpu driver through /dev/accel.
    Accel,
    /// The in-process device model.
    Model,
}

/// What a device is and can do.
#[derive(Clone, Debug)]
pub struct DeviceInfo {
    pub backend: BackendKind,
    /// The accel node (none for the model).
    pub path: Option<PathBuf>,
    /// The driver's GET_PARAM values; for the model, its SRAM size and
    /// what the emulated device reports by default.
    pub params: Params,
}

struct NpuInner {
    session: Mutex<Session>,
    info: DeviceInfo,
    options: CompileOptions,
    /// The accel backend's device file, for buffer objects requests own
    /// (userptr, dma-buf) without taking the session's lock; none on the
    /// device model.
    buffers: Option<SharedDevice>,
}

/// An open device. Clones share it; it is closed with the last clone and
/// the last model or request using it.
#[derive(Clone)]
pub struct Npu(Arc<NpuInner>);

/// The onpu accel nodes, in number order (accel2 before accel10).
pub fn devices() -> Vec<PathBuf> {
    device::find_devices()
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Every holder leaves the data consistent before it can panic.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Npu {
    /// The first onpu NPU.
    pub fn open() -> Result<Npu> {
        Ok(Npu::on(Device::open()?))
    }

    pub fn open_path(path: &Path) -> Result<Npu> {
        Ok(Npu::on(Device::open_path(path)?))
    }

    /// An accel node the caller opened (read-write).
    pub fn open_fd(fd: OwnedFd) -> Result<Npu> {
        Ok(Npu::on(Device::from_fd(fd)?))
    }

    /// The device model in-process with `sram_size` bytes of SRAM.
    #[cfg(feature = "model")]
    pub fn model(sram_size: u32) -> Result<Npu> {
        let min = runtime::model_min_sram();
        if sram_size < min {
            return Err(invalid(format!(
                "SRAM size {sram_size} is below the device model's {min}-byte minimum"
            )));
        }
        // What the model backend builds: the emulated device's VA size, the
        // driver's VA start, two contexts; no driver, so no job timeout.
        let va_bits = npu_device::mmu::VA_BITS;
        let params = Params {
            sram_size,
            contexts: 2,
            va_bits,
            va_start: 1 << 20,
            va_end: 1 << va_bits,
            ..Params::default()
        };
        Ok(Npu::with_session(
            Session::model(sram_size),
            DeviceInfo {
                backend: BackendKind::Model,
                path: None,
                params,
            },
            None,
        ))
    }

    /// The device model, which this build does not have.
    #[cfg(not(feature = "model"))]
    pub fn model(sram_size: u32) -> Result<Npu> {
        Err(Error::new(
            Status::Unsupported,
            format!("libnpu was built without the device model (cargo feature `model`), so no model with {sram_size} bytes of SRAM"),
        ))
    }

    fn on(dev: Device) -> Npu {
        let info = DeviceInfo {
            backend: BackendKind::Accel,
            path: Some(dev.path().to_owned()),
            params: *dev.params(),
        };
        let buffers = Some(dev.shared());
        Npu::with_session(Session::on(dev), info, buffers)
    }

    fn with_session(session: Session, info: DeviceInfo, buffers: Option<SharedDevice>) -> Npu {
        let options = session.options;
        Npu(Arc::new(NpuInner {
            session: Mutex::new(session),
            info,
            options,
            buffers,
        }))
    }

    pub fn info(&self) -> &DeviceInfo {
        &self.0.info
    }

    /// Compile a model in libnpu's text form.
    pub fn load_text(&self, source: &str) -> Result<CompiledModel> {
        let graph = crate::text::parse(source)
            .map_err(|e| Error::new(Status::Parse, format!("parse error at {e}")))?;
        self.load_graph(graph)
    }

    /// Compile a model given as IR.
    pub fn load_graph(&self, graph: Graph) -> Result<CompiledModel> {
        let t = Instant::now();
        let target = self.target();
        let (program, inputs, outputs) = compile_io(&graph, &target)?;
        Ok(CompiledModel(Arc::new(ModelInner {
            npu: self.clone(),
            program,
            key: runtime::next_program_key(),
            inputs,
            outputs,
            sram_size: target.sram_size,
            graph: Some(graph),
            compile_time: t.elapsed(),
        })))
    }

    /// What models are compiled for on this device.
    pub fn target(&self) -> Target {
        Target {
            sram_size: self.0.info.params.sram_size,
            options: self.0.options,
        }
    }

    /// A model file: a compiled model [`CompiledModel::save`] wrote (by its
    /// magic), else libnpu's text form.
    pub fn load_file(&self, path: &Path) -> Result<CompiledModel> {
        let bytes = std::fs::read(path).map_err(|e| {
            let status = if e.kind() == std::io::ErrorKind::NotFound {
                Status::NotFound
            } else {
                Status::Io
            };
            Error::new(status, format!("cannot read {}: {e}", path.display()))
        })?;
        if bytes.starts_with(MAGIC) {
            return self.load_compiled(&bytes).map_err(|e| Error {
                message: format!("{}: {}", path.display(), e.message),
                ..e
            });
        }
        let text = std::str::from_utf8(&bytes).map_err(|_| {
            Error::new(
                Status::Parse,
                format!(
                    "{}: neither a compiled model nor UTF-8 text",
                    path.display()
                ),
            )
        })?;
        self.load_text(text)
    }

    /// A compiled model from the bytes [`CompiledModel::to_bytes`] gave.
    pub fn load_compiled(&self, bytes: &[u8]) -> Result<CompiledModel> {
        let t = Instant::now();
        let (sram_size, inputs, outputs, program) = decode(bytes)
            .map_err(|e| Error::new(Status::Parse, format!("not a valid compiled model: {e}")))?;
        let have = self.0.info.params.sram_size;
        if sram_size > have {
            return Err(Error::new(
                Status::Unsupported,
                format!(
                    "the model was compiled for {sram_size} bytes of SRAM; this device has {have}"
                ),
            ));
        }
        Ok(CompiledModel(Arc::new(ModelInner {
            npu: self.clone(),
            program,
            key: runtime::next_program_key(),
            inputs,
            outputs,
            sram_size,
            graph: None,
            compile_time: t.elapsed(),
        })))
    }

    /// Submit a command buffer as it is, with zero-filled buffers of these
    /// sizes placed in order (the job may read and write them all); their
    /// bytes after the job and their NPU addresses.
    pub fn run_raw(&self, commands: &[u8], sizes: &[u64]) -> Result<RawRun> {
        let buffers: Vec<(u64, &[u8])> = sizes.iter().map(|&s| (s, &[][..])).collect();
        let e = lock(&self.0.session).run_raw(commands, &buffers)?;
        Ok(RawRun {
            buffers: e.outputs,
            addresses: e.addrs,
            cycles: e.cycles,
        })
    }
}

/// What a model is compiled for: a device's SRAM size and the compiler's
/// options for it ([`Npu::target`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Target {
    pub sram_size: u32,
    pub options: CompileOptions,
}

/// Compile `graph` and find the buffers of its inputs and outputs.
fn compile_io(
    graph: &Graph,
    target: &Target,
) -> Result<(Program, Vec<TensorInfo>, Vec<TensorInfo>)> {
    let program = compile(
        graph,
        DeviceParams {
            sram_size: target.sram_size,
        },
        target.options,
    )
    .map_err(|e| Error::new(Status::Compile, format!("compile: {e}")))?;
    let io = |v| {
        let name = graph.node(v).name.clone();
        let buffer = program.buffer_of(&name).ok_or_else(|| {
            Error::new(
                Status::Internal,
                format!("`{name}` has no buffer in the program"),
            )
        })?;
        Ok(TensorInfo {
            name,
            ty: graph.ty(v).clone(),
            buffer,
        })
    };
    let inputs = graph.inputs().map(io).collect::<Result<Vec<_>>>()?;
    let outputs = graph
        .outputs()
        .iter()
        .map(|&v| io(v))
        .collect::<Result<Vec<_>>>()?;
    Ok((program, inputs, outputs))
}

/// Compile `graph` for `target` without a device, into the bytes
/// [`Npu::load_compiled`] reads: for importers in other libraries, which
/// hand libnpu a compiled model (the C API's `npu_model_load_onnx`).
/// `aliases` renames inputs and outputs: (the IR value's name, the name and
/// type to show instead, of the same size in bytes).
pub fn compile_to_bytes(
    graph: &Graph,
    target: &Target,
    aliases: &[(String, String, TensorType)],
) -> Result<Vec<u8>> {
    let (program, mut inputs, mut outputs) = compile_io(graph, target)?;
    for (ir, name, ty) in aliases {
        let t = inputs
            .iter_mut()
            .chain(outputs.iter_mut())
            .find(|t| t.name == *ir)
            .ok_or_else(|| invalid(format!("alias of `{ir}`: no such input or output")))?;
        if t.ty.bytes() != ty.bytes() {
            return Err(invalid(format!(
                "alias `{name}` of `{ir}`: {ty} is not the size of {}",
                t.ty
            )));
        }
        t.name = name.clone();
        t.ty = ty.clone();
    }
    Ok(encode_parts(target.sram_size, &inputs, &outputs, &program))
}

/// What [`Npu::run_raw`] gives back.
#[derive(Debug)]
pub struct RawRun {
    pub buffers: Vec<Vec<u8>>,
    pub addresses: Vec<u64>,
    pub cycles: u64,
}

/// A model input or output.
#[derive(Clone, Debug, PartialEq)]
pub struct TensorInfo {
    pub name: String,
    /// Element type, shape and quantization (scale, zero point).
    pub ty: TensorType,
    /// The program's buffer holding it.
    buffer: usize,
}

struct ModelInner {
    npu: Npu,
    program: Program,
    /// Names its constants to the backend, which keeps them resident.
    key: u64,
    inputs: Vec<TensorInfo>,
    outputs: Vec<TensorInfo>,
    /// The SRAM size it was compiled for.
    sram_size: u32,
    /// The source graph (none for a model read compiled).
    graph: Option<Graph>,
    compile_time: Duration,
}

/// A model compiled for a device. Clones share it.
#[derive(Clone)]
pub struct CompiledModel(Arc<ModelInner>);

impl CompiledModel {
    pub fn inputs(&self) -> &[TensorInfo] {
        &self.0.inputs
    }

    pub fn outputs(&self) -> &[TensorInfo] {
        &self.0.outputs
    }

    pub fn program(&self) -> &Program {
        &self.0.program
    }

    /// The IR it was compiled from (none if it was read compiled).
    pub fn graph(&self) -> Option<&Graph> {
        self.0.graph.as_ref()
    }

    /// Compiling it (or reading it compiled) took this long.
    pub fn compile_time(&self) -> Duration {
        self.0.compile_time
    }

    pub fn npu(&self) -> &Npu {
        &self.0.npu
    }

    /// A new request with no inputs set.
    pub fn request(&self) -> InferRequest {
        let n_in = self.0.inputs.len();
        let n_out = self.0.outputs.len();
        InferRequest(Arc::new(RequestInner {
            model: self.clone(),
            state: Mutex::new(RequestState {
                inputs: (0..n_in).map(|_| None).collect(),
                outputs: (0..n_out).map(|_| Output::Kept).collect(),
                results: (0..n_out).map(|_| None).collect(),
                stats: None,
            }),
            busy: Mutex::new(false),
            idle: Condvar::new(),
        }))
    }

    fn input_index(&self, name: &str) -> Result<usize> {
        self.0
            .inputs
            .iter()
            .position(|t| t.name == name)
            .ok_or_else(|| Error::new(Status::NotFound, format!("the model has no input `{name}`")))
    }

    fn output_index(&self, name: &str) -> Result<usize> {
        self.0
            .outputs
            .iter()
            .position(|t| t.name == name)
            .ok_or_else(|| {
                Error::new(
                    Status::NotFound,
                    format!("the model has no output `{name}`"),
                )
            })
    }

    /// Run with the caller's buffers: `inputs` by name (every input,
    /// exactly its size), `outputs` by name (any of them, exactly its
    /// size) written on success. The request-free form of a run.
    pub fn run_with(
        &self,
        inputs: &[(&str, &[u8])],
        outputs: &mut [(&str, &mut [u8])],
    ) -> Result<RunStats> {
        let mut given: Vec<Option<&[u8]>> = vec![None; self.0.inputs.len()];
        for &(name, data) in inputs {
            given[self.input_index(name)?] = Some(data);
        }
        let ins = given
            .iter()
            .enumerate()
            .map(|(i, d)| {
                d.ok_or_else(|| invalid(format!("input `{}` is not set", self.0.inputs[i].name)))
            })
            .collect::<Result<Vec<_>>>()?;
        let (results, stats) = self.execute(&ins, None, &[])?;
        for (name, buf) in outputs.iter_mut() {
            let i = self.output_index(name)?;
            check_size(&self.0.outputs[i], buf.len())?;
            buf.copy_from_slice(&results[i]);
        }
        Ok(stats)
    }

    /// Run with one byte slice per input, in order; every output's bytes.
    fn execute(
        &self,
        inputs: &[&[u8]],
        on_submit: Option<runtime::OnSubmit<'_>>,
        wait_for: &[BorrowedFd<'_>],
    ) -> Result<(Vec<Vec<u8>>, RunStats)> {
        let m = &*self.0;
        let mut ins = Vec::with_capacity(inputs.len());
        for (t, data) in m.inputs.iter().zip(inputs) {
            check_size(t, data.len())?;
            ins.push((t.buffer, *data));
        }
        let outs: Vec<(usize, usize)> =
            m.outputs.iter().map(|t| (t.buffer, t.ty.bytes())).collect();
        self.execute_buffers(&ins, &outs, &[], on_submit, wait_for)
    }

    /// Run with `inputs` (program buffer, bytes) copied in, `outputs`
    /// (program buffer, bytes) read back, `external` buffer objects used in
    /// place.
    fn execute_buffers(
        &self,
        inputs: &[(usize, &[u8])],
        outputs: &[(usize, usize)],
        external: &[(usize, &SharedBuffer)],
        on_submit: Option<runtime::OnSubmit<'_>>,
        wait_for: &[BorrowedFd<'_>],
    ) -> Result<(Vec<Vec<u8>>, RunStats)> {
        let m = &*self.0;
        let t = Instant::now();
        let e = lock(&m.npu.0.session).execute_program(
            &m.program,
            m.key,
            inputs,
            outputs,
            runtime::Extra {
                on_submit,
                wait_for,
                external,
            },
        )?;
        let downloaded = e.outputs.iter().map(|o| o.len() as u64).sum();
        Ok((
            e.outputs,
            RunStats {
                cycles: e.cycles,
                uploaded: e.uploaded,
                downloaded,
                device_time: e.device_time,
                total_time: t.elapsed(),
            },
        ))
    }

    /// The size of the program's buffer of a tensor.
    fn buffer_size(&self, t: &TensorInfo) -> u64 {
        self.0.program.buffers()[t.buffer].size
    }

    /// The compiled model as bytes ([`Npu::load_compiled`] reads them).
    pub fn to_bytes(&self) -> Vec<u8> {
        encode(&self.0)
    }

    /// Write the compiled model to a file ([`Npu::load_file`] reads it
    /// without compiling).
    pub fn save(&self, path: &Path) -> Result<()> {
        std::fs::write(path, self.to_bytes())
            .map_err(|e| Error::new(Status::Io, format!("cannot write {}: {e}", path.display())))
    }
}

fn check_size(t: &TensorInfo, bytes: usize) -> Result<()> {
    if bytes != t.ty.bytes() {
        return Err(invalid(format!(
            "`{}` ({}) is {} bytes, not {bytes}",
            t.name,
            t.ty,
            t.ty.bytes()
        )));
    }
    Ok(())
}

/// Figures of one run.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RunStats {
    /// Modelled device cycles.
    pub cycles: u64,
    /// Bytes copied to the device: the inputs, and the constants on a
    /// model's first run (they stay resident after it). Inputs the device
    /// reads in place (zero-copy bindings, dma-bufs) are not copied.
    pub uploaded: u64,
    /// Bytes copied back from the device: the outputs not written in place
    /// (zero-copy bindings and dma-bufs are).
    pub downloaded: u64,
    /// Submit to completion.
    pub device_time: Duration,
    /// The whole run, waiting for the device included.
    pub total_time: Duration,
}

/// Memory of the caller's, bound to a request (the C API's bind calls).
#[derive(Clone, Copy)]
struct Raw {
    ptr: *mut u8,
    len: usize,
}

// SAFETY: a bound buffer is the caller's promise (InferRequest::bind_*) to
// stay valid, and untouched by others, while runs may use it; the request
// only reads or writes it inside a run.
unsafe impl Send for Raw {}

impl Raw {
    fn overlaps(&self, other: &Raw) -> bool {
        let (a, b) = (self.ptr as usize, other.ptr as usize);
        a < b.saturating_add(other.len) && b < a.saturating_add(self.len)
    }
}

/// How runs use a buffer the caller bound.
enum Placement {
    /// Not decided yet: the next run tries to use it in place.
    Undecided,
    /// In place: a userptr buffer object of that memory, kept for later
    /// runs (they do not pin it again) until the binding is replaced.
    InPlace(SharedBuffer),
    /// Copied in (an input) or out (an output) at each run, and why.
    Copied(String),
}

/// The caller's memory bound to an input or an output.
struct Bound {
    raw: Raw,
    placement: Placement,
    /// How the last run used it: None before one; Some(None) in place;
    /// Some(Some(why)) copied.
    last: Option<Option<String>>,
}

impl Bound {
    fn new(raw: Raw) -> Bound {
        Bound {
            raw,
            placement: Placement::Undecided,
            last: None,
        }
    }

    /// Why the run being set up copies it (None: in place).
    fn why_copied(&self) -> Option<String> {
        match &self.placement {
            Placement::InPlace(_) => None,
            Placement::Copied(why) => Some(why.clone()),
            Placement::Undecided => Some("not placed yet".into()),
        }
    }
}

enum Input {
    /// Copied into the request (set_input).
    Owned(Vec<u8>),
    /// The caller's memory (bind_input).
    Bound(Bound),
    /// A buffer object: a dma-buf the caller bound, or the request's own
    /// that it exported.
    Object(SharedBuffer),
}

enum Output {
    /// Read back into the request (InferRequest::output).
    Kept,
    /// The caller's memory (bind_output).
    Bound(Bound),
    /// A buffer object, as for inputs.
    Object(SharedBuffer),
}

/// Where a run's read-back output goes.
enum Dest {
    Kept(usize),
    Caller(Raw),
}

/// Try to use `raw` in place as a program buffer of `size` bytes: a
/// userptr object of it, or why not.
fn userptr_of(
    raw: Raw,
    dev: Option<&SharedDevice>,
    size: u64,
    input: bool,
) -> Result<SharedBuffer, String> {
    let dev = dev.ok_or("the device model has no buffer objects")?;
    let page = device::page_size();
    if raw.ptr as usize % page != 0 {
        return Err(format!(
            "{:p} does not start a page ({page} bytes)",
            raw.ptr
        ));
    }
    if (raw.len as u64) < size {
        return Err(format!(
            "the program's buffer ({size} bytes) is larger than the {} bytes bound",
            raw.len
        ));
    }
    // SAFETY: the binder promised the memory valid (bind_input,
    // bind_output) until the binding is replaced, which drops the object;
    // the request touches it through the object only inside runs.
    let writable = unsafe { dev.userptr(raw.ptr, raw.len, false) };
    match writable {
        // Memory the process may only read (an input in read-only pages):
        // pinned read-only. Writable pins come first because they give the
        // process's own pages (a read-only pin of never-written memory may
        // be a page the process later replaces by writing).
        Err(DeviceError::Ioctl {
            errno: nix::errno::Errno::EFAULT,
            ..
        }) if input => {
            // SAFETY: as above.
            unsafe { dev.userptr(raw.ptr, raw.len, true) }
        }
        r => r,
    }
    .map_err(|e| e.to_string())
}

/// Decide, once per binding, whether runs use `b` in place.
fn place(b: &mut Bound, dev: Option<&SharedDevice>, size: u64, input: bool) {
    if let Placement::Undecided = b.placement {
        b.placement = match userptr_of(b.raw, dev, size, input) {
            Ok(o) => Placement::InPlace(o),
            Err(why) => {
                log::debug!("a bound buffer is copied at each run: {why}");
                Placement::Copied(why)
            }
        };
    }
}

struct RequestState {
    inputs: Vec<Option<Input>>,
    outputs: Vec<Output>,
    /// The last successful run's outputs read back into the request.
    results: Vec<Option<Vec<u8>>>,
    stats: Option<RunStats>,
}

struct RequestInner {
    model: CompiledModel,
    state: Mutex<RequestState>,
    /// A run is in flight.
    busy: Mutex<bool>,
    idle: Condvar,
}

/// Inputs and outputs of one model, run as often as wanted. Clones share
/// the request.
#[derive(Clone)]
pub struct InferRequest(Arc<RequestInner>);

/// Ends the request's run (clears `busy`) when dropped, also on a panic.
struct RunGuard<'a>(&'a RequestInner);

impl Drop for RunGuard<'_> {
    fn drop(&mut self) {
        *lock(&self.0.busy) = false;
        self.0.idle.notify_all();
    }
}

/// A dma-buf descriptor's import failure as the caller's error where it is
/// the descriptor's fault.
fn import_error(fd: BorrowedFd<'_>, e: DeviceError) -> Error {
    use std::os::fd::AsRawFd;
    let fd = fd.as_raw_fd();
    match e {
        DeviceError::Ioctl {
            errno: nix::errno::Errno::EBADF,
            ..
        } => invalid(format!("fd {fd} is not an open file descriptor")),
        DeviceError::Ioctl {
            errno: nix::errno::Errno::EINVAL,
            ..
        } => invalid(format!(
            "fd {fd} is not a dma-buf (PRIME_FD_TO_HANDLE: EINVAL)"
        )),
        e => Error::from(e),
    }
}

impl InferRequest {
    pub fn model(&self) -> &CompiledModel {
        &self.0.model
    }

    /// The request's state, if no run is in flight.
    fn idle_state(&self) -> Result<MutexGuard<'_, RequestState>> {
        let busy = lock(&self.0.busy);
        if *busy {
            return Err(Error::new(Status::Busy, "the request has a run in flight"));
        }
        // Taken while `busy` is held: no run can start in between.
        Ok(lock(&self.0.state))
    }

    /// Copy an input into the request.
    pub fn set_input(&self, name: &str, data: &[u8]) -> Result<()> {
        let i = self.0.model.input_index(name)?;
        check_size(&self.0.model.0.inputs[i], data.len())?;
        self.idle_state()?.inputs[i] = Some(Input::Owned(data.to_vec()));
        Ok(())
    }

    /// Use the caller's memory for an input at each run, without copying
    /// it into the request. On the accel backend runs read it in place
    /// (zero-copy: a userptr buffer object of it, made by the first run and
    /// kept, so the memory stays pinned until the binding is replaced or
    /// the request dropped) if it starts on a page boundary and the kernel
    /// can pin it; otherwise, and on the device model, each run copies it
    /// to the device ([`InferRequest::is_zero_copy`] says which).
    ///
    /// # Safety
    /// `data` must point at `len` readable bytes that stay valid, and are
    /// not written, until every run started after this call has ended (or
    /// the input is set or bound again). In place, the device reads the
    /// rest of the last page too: it must be this process's memory.
    pub unsafe fn bind_input(&self, name: &str, data: *const u8, len: usize) -> Result<()> {
        let i = self.0.model.input_index(name)?;
        check_size(&self.0.model.0.inputs[i], len)?;
        if data.is_null() {
            return Err(invalid("data is NULL"));
        }
        self.idle_state()?.inputs[i] = Some(Input::Bound(Bound::new(Raw {
            ptr: data.cast_mut(),
            len,
        })));
        Ok(())
    }

    /// Have runs write an output to the caller's memory. On the accel
    /// backend the device writes it there in place (zero-copy, as for
    /// [`InferRequest::bind_input`]) when the memory starts on a page
    /// boundary, can be pinned and overlaps no other buffer bound to the
    /// request; otherwise it is copied there when a run succeeds.
    ///
    /// # Safety
    /// `data` must point at `len` writable bytes that stay valid, and that
    /// nothing else reads or writes, until every run started after this
    /// call has ended (or the output is bound again). In place, a run that
    /// fails may have written part of it.
    pub unsafe fn bind_output(&self, name: &str, data: *mut u8, len: usize) -> Result<()> {
        let i = self.0.model.output_index(name)?;
        check_size(&self.0.model.0.outputs[i], len)?;
        if data.is_null() {
            return Err(invalid("data is NULL"));
        }
        let mut st = self.idle_state()?;
        st.outputs[i] = Output::Bound(Bound::new(Raw { ptr: data, len }));
        st.results[i] = None;
        Ok(())
    }

    /// The accel backend's device file, or why `what` needs it.
    fn buffer_objects(&self, what: &str) -> Result<&SharedDevice> {
        self.0.model.0.npu.0.buffers.as_ref().ok_or_else(|| {
            Error::new(
                Status::Unsupported,
                format!("{what}: not supported on this backend (the device model has no buffer objects; dma-bufs need /dev/accel)"),
            )
        })
    }

    /// Import `fd` for `t`: a dma-buf of exactly the tensor's buffer in
    /// whole pages.
    fn import_for(&self, t: &TensorInfo, what: &str, fd: BorrowedFd<'_>) -> Result<SharedBuffer> {
        let dev = self.buffer_objects(&format!("bind a dma-buf to {what} `{}`", t.name))?;
        let page = device::page_size() as u64;
        let want = self.0.model.buffer_size(t).div_ceil(page) * page;
        let b = dev.import(fd).map_err(|e| import_error(fd, e))?;
        if b.size() != want {
            return Err(invalid(format!(
                "the dma-buf is {} bytes; {what} `{}` ({}) takes one of {want} bytes (its {} bytes in whole pages)",
                b.size(),
                t.name,
                t.ty,
                t.ty.bytes()
            )));
        }
        Ok(b)
    }

    /// Bind a dma-buf (PRIME import) as an input: runs read it in place.
    /// Its size must be the input's in whole pages (what
    /// [`InferRequest::export_output_dmabuf`] of an output of the same
    /// size gives). `fd` stays the caller's (close it when you like); the
    /// request holds the buffer until the input is set or bound again, or
    /// the request is dropped. Another run writing it is ordered before
    /// this request's runs by the kernel when it was submitted first
    /// (implicit fences); anything else writing it is the caller's to
    /// order. [`Status::Unsupported`] on the device model.
    pub fn bind_input_dmabuf(&self, name: &str, fd: BorrowedFd<'_>) -> Result<()> {
        let model = &self.0.model;
        let i = model.input_index(name)?;
        let mut st = self.idle_state()?;
        let b = self.import_for(&model.0.inputs[i], "input", fd)?;
        st.inputs[i] = Some(Input::Object(b));
        Ok(())
    }

    /// Bind a dma-buf as an output: runs write it in place. As
    /// [`InferRequest::bind_input_dmabuf`]; [`InferRequest::output`] reads
    /// it back if the CPU can map it.
    pub fn bind_output_dmabuf(&self, name: &str, fd: BorrowedFd<'_>) -> Result<()> {
        let model = &self.0.model;
        let i = model.output_index(name)?;
        let mut st = self.idle_state()?;
        let b = self.import_for(&model.0.outputs[i], "output", fd)?;
        st.outputs[i] = Output::Object(b);
        st.results[i] = None;
        Ok(())
    }

    /// A new buffer object for `t`, starting with `init` (zeros after it).
    fn new_object(&self, t: &TensorInfo, what: &str, init: &[u8]) -> Result<SharedBuffer> {
        let dev = self.buffer_objects(&format!("export {what} `{}` as a dma-buf", t.name))?;
        let mut b = dev.alloc(self.0.model.buffer_size(t).max(1))?;
        b.bytes_mut()[..init.len()].copy_from_slice(init);
        Ok(b)
    }

    /// Export an input as a dma-buf (PRIME export), e.g. for a producer in
    /// another process or a request that writes it: from now on the input
    /// lives in a buffer object of the request's (holding what the input
    /// held, if it was set), which runs read in place. Each call gives a
    /// new descriptor of the same buffer, the caller's to close; the
    /// buffer lives while the request uses it or any descriptor or
    /// importer holds it. Setting or binding the input again lets it go
    /// (the dma-buf stays valid for its holders). [`Status::Unsupported`]
    /// on the device model.
    pub fn export_input_dmabuf(&self, name: &str) -> Result<OwnedFd> {
        let model = &self.0.model;
        let i = model.input_index(name)?;
        let mut st = self.idle_state()?;
        let t = &model.0.inputs[i];
        if let Some(Input::Object(b)) = &st.inputs[i] {
            return Ok(b.export()?);
        }
        let b = match &st.inputs[i] {
            Some(Input::Owned(v)) => self.new_object(t, "input", v)?,
            // SAFETY: the binder promised `len` readable bytes while bound.
            Some(Input::Bound(b)) => self.new_object(t, "input", unsafe {
                std::slice::from_raw_parts(b.raw.ptr, b.raw.len)
            })?,
            _ => self.new_object(t, "input", &[])?,
        };
        let fd = b.export()?;
        st.inputs[i] = Some(Input::Object(b));
        Ok(fd)
    }

    /// Export an output as a dma-buf: from now on runs write it in place
    /// into a buffer object of the request's, which a consumer (another
    /// process, another request's [`InferRequest::bind_input_dmabuf`])
    /// reads without a copy; [`InferRequest::output`] still reads it back.
    /// Ownership as for [`InferRequest::export_input_dmabuf`].
    pub fn export_output_dmabuf(&self, name: &str) -> Result<OwnedFd> {
        let model = &self.0.model;
        let i = model.output_index(name)?;
        let mut st = self.idle_state()?;
        if let Output::Object(b) = &st.outputs[i] {
            return Ok(b.export()?);
        }
        let init = st.results[i].take().unwrap_or_default();
        let b = self.new_object(&model.0.outputs[i], "output", &init)?;
        let fd = b.export()?;
        st.outputs[i] = Output::Object(b);
        Ok(fd)
    }

    /// Whether the last run used the input or output `name` in place: a
    /// dma-buf (always), or memory bound with `bind_*` that the device
    /// reached directly (false before the first run, on the device model,
    /// and for memory runs copy: [`InferRequest::copy_reason`] says why).
    pub fn is_zero_copy(&self, name: &str) -> Result<bool> {
        Ok(self.placement(name)?.0)
    }

    /// Why the last run copied the bound input or output `name` instead of
    /// using it in place; None if it did not (or there was no run, or the
    /// tensor is not bound to the caller's memory).
    pub fn copy_reason(&self, name: &str) -> Result<Option<String>> {
        Ok(self.placement(name)?.1)
    }

    fn placement(&self, name: &str) -> Result<(bool, Option<String>)> {
        let model = &self.0.model;
        let st = self.idle_state()?;
        let of_bound = |b: &Bound| match &b.last {
            Some(None) => (true, None),
            Some(Some(why)) => (false, Some(why.clone())),
            None => (false, None),
        };
        if let Ok(i) = model.input_index(name) {
            return Ok(match &st.inputs[i] {
                Some(Input::Object(_)) => (true, None),
                Some(Input::Bound(b)) => of_bound(b),
                _ => (false, None),
            });
        }
        let i = model.output_index(name).map_err(|_| {
            Error::new(
                Status::NotFound,
                format!("the model has no input or output `{name}`"),
            )
        })?;
        Ok(match &st.outputs[i] {
            Output::Object(_) => (true, None),
            Output::Bound(b) => of_bound(b),
            Output::Kept => (false, None),
        })
    }

    /// An output of the last successful run (not one bound to the
    /// caller's memory: that is where it went). One in a dma-buf is read
    /// from it as it is now.
    pub fn output(&self, name: &str) -> Result<Vec<u8>> {
        let i = self.0.model.output_index(name)?;
        let st = self.idle_state()?;
        if st.stats.is_none() {
            return Err(invalid("the request has not run successfully yet"));
        }
        match &st.outputs[i] {
            Output::Bound(_) => Err(invalid(format!(
                "output `{name}` is bound to the caller's memory: it is there"
            ))),
            Output::Object(b) if !b.is_mapped() => Err(invalid(format!(
                "output `{name}` is in a dma-buf the CPU cannot map here: read it through the dma-buf"
            ))),
            Output::Object(b) => {
                Ok(b.bytes()[..self.0.model.0.outputs[i].ty.bytes()].to_vec())
            }
            Output::Kept => st.results[i]
                .clone()
                .ok_or_else(|| Error::new(Status::Internal, format!("no result for `{name}`"))),
        }
    }

    /// Figures of the last successful run.
    pub fn stats(&self) -> Result<RunStats> {
        self.idle_state()?
            .stats
            .ok_or_else(|| invalid("the request has not run successfully yet"))
    }

    /// Mark a run in flight, or say there is one.
    fn begin(&self) -> Result<RunGuard<'_>> {
        let mut busy = lock(&self.0.busy);
        if *busy {
            return Err(Error::new(Status::Busy, "the request has a run in flight"));
        }
        *busy = true;
        Ok(RunGuard(&self.0))
    }

    /// Run and wait.
    pub fn run(&self) -> Result<RunStats> {
        let _guard = self.begin()?;
        self.run_now(None, &[])
    }

    /// The run itself; the caller holds the run guard.
    fn run_now(
        &self,
        on_submit: Option<runtime::OnSubmit<'_>>,
        wait_for: &[BorrowedFd<'_>],
    ) -> Result<RunStats> {
        let model = &self.0.model;
        let m = &*model.0;
        let dev = m.npu.0.buffers.as_ref();
        let mut guard = lock(&self.0.state);
        let st = &mut *guard;
        // Where bound memory goes: in place where it can (once per binding).
        for (t, input) in m.inputs.iter().zip(&mut st.inputs) {
            if let Some(Input::Bound(b)) = input {
                place(b, dev, model.buffer_size(t), true);
            }
        }
        for (t, output) in m.outputs.iter().zip(&mut st.outputs) {
            if let Output::Bound(b) = output {
                place(b, dev, model.buffer_size(t), false);
            }
        }
        let bound: Vec<Raw> = (st.inputs.iter().filter_map(|x| match x {
            Some(Input::Bound(b)) => Some(b.raw),
            _ => None,
        }))
        .chain(st.outputs.iter().filter_map(|x| match x {
            Output::Bound(b) => Some(b.raw),
            _ => None,
        }))
        .collect();
        let mut ins: Vec<(usize, &[u8])> = Vec::new();
        let mut external: Vec<(usize, &SharedBuffer)> = Vec::new();
        let mut back: Vec<(usize, usize)> = Vec::new();
        let mut dests: Vec<Dest> = Vec::new();
        // How each bound tensor goes this run (None: in place).
        let mut last_in: Vec<Option<String>> = vec![None; m.inputs.len()];
        let mut last_out: Vec<Option<String>> = vec![None; m.outputs.len()];
        // (tensor, object, written) of the objects used in place.
        let mut objects: Vec<(&str, &SharedBuffer, bool)> = Vec::new();
        for (i, (t, input)) in m.inputs.iter().zip(&st.inputs).enumerate() {
            match input {
                None => return Err(invalid(format!("input `{}` is not set", t.name))),
                Some(Input::Owned(v)) => ins.push((t.buffer, v)),
                Some(Input::Bound(Bound {
                    placement: Placement::InPlace(o),
                    ..
                }))
                | Some(Input::Object(o)) => {
                    external.push((t.buffer, o));
                    objects.push((&t.name, o, false));
                }
                Some(Input::Bound(b)) => {
                    last_in[i] = b.why_copied();
                    // SAFETY: the binder promised `len` readable bytes for
                    // the run (bind_input), checked non-NULL there.
                    ins.push((t.buffer, unsafe {
                        std::slice::from_raw_parts(b.raw.ptr, b.raw.len)
                    }))
                }
            }
        }
        for (i, (t, output)) in m.outputs.iter().zip(&st.outputs).enumerate() {
            match output {
                Output::Kept => {
                    back.push((t.buffer, t.ty.bytes()));
                    dests.push(Dest::Kept(i));
                }
                // In place only if the device writing it cannot change
                // another binding's memory.
                Output::Bound(Bound {
                    placement: Placement::InPlace(o),
                    raw,
                    ..
                }) if bound.iter().filter(|r| r.overlaps(raw)).count() == 1 => {
                    external.push((t.buffer, o));
                    objects.push((&t.name, o, true));
                }
                Output::Object(o) => {
                    external.push((t.buffer, o));
                    objects.push((&t.name, o, true));
                }
                Output::Bound(b) => {
                    last_out[i] = Some(b.why_copied().unwrap_or_else(|| {
                        "the memory overlaps another buffer bound to the request".into()
                    }));
                    back.push((t.buffer, t.ty.bytes()));
                    dests.push(Dest::Caller(b.raw));
                }
            }
        }
        // One object as two tensors, one of them written: the program
        // would read or write one tensor as the other.
        for (n, (a, x, wa)) in objects.iter().enumerate() {
            if let Some((b, _, _)) = objects[..n]
                .iter()
                .find(|(_, y, wb)| (*wa || *wb) && x.same_object(y))
            {
                return Err(invalid(format!(
                    "`{b}` and `{a}` are bound to the same buffer object, and the run writes one of them"
                )));
            }
        }
        let (outs, stats) = model.execute_buffers(&ins, &back, &external, on_submit, wait_for)?;
        drop((ins, external, objects));
        for (dest, out) in dests.into_iter().zip(outs) {
            match dest {
                Dest::Kept(i) => st.results[i] = Some(out),
                Dest::Caller(r) => {
                    // SAFETY: the binder promised `len` writable bytes
                    // (bind_output); `len` is the output's size, checked there.
                    unsafe { std::ptr::copy_nonoverlapping(out.as_ptr(), r.ptr, r.len) };
                }
            }
        }
        for ((output, last), result) in st.outputs.iter_mut().zip(last_out).zip(&mut st.results) {
            match output {
                Output::Kept => {}
                Output::Bound(b) => {
                    b.last = Some(last);
                    *result = None;
                }
                Output::Object(_) => *result = None,
            }
        }
        for (input, last) in st.inputs.iter_mut().zip(last_in) {
            if let Some(Input::Bound(b)) = input {
                b.last = Some(last);
            }
        }
        st.stats = Some(stats);
        Ok(stats)
    }

    /// Start a run on another thread, after every fence in `after` has
    /// ended well (if one failed, the run fails with its error, without
    /// running); the fence ends with the run.
    pub fn start(&self, after: &[Fence]) -> Result<Fence> {
        self.start_after(after, Vec::new())
    }

    /// [`InferRequest::start`], the run's first job also waiting for
    /// `sync_files` (kernel fences of other drivers or runs: on the accel
    /// backend imported as the job's in-fences; the device model polls
    /// them until readable).
    pub fn start_after(&self, after: &[Fence], sync_files: Vec<OwnedFd>) -> Result<Fence> {
        let guard = self.begin()?;
        std::mem::forget(guard);
        let fence = Fence(Arc::new(FenceState {
            state: Mutex::new(FenceInner {
                result: None,
                sync_file: None,
            }),
            changed: Condvar::new(),
        }));
        let (req, f, after) = (self.clone(), fence.clone(), after.to_vec());
        let spawned = std::thread::Builder::new()
            .name("npu-request".into())
            .spawn(move || {
                let run = || {
                    let _guard = RunGuard(&req.0);
                    match after.iter().find_map(|a| a.wait(None).err()) {
                        Some(e) => Err(Error {
                            message: format!("a fence this run waited for failed: {}", e.message),
                            ..e
                        }),
                        None => {
                            let cb = |s: runtime::SyncFile| f.set_sync_file(s);
                            let fds: Vec<BorrowedFd<'_>> =
                                sync_files.iter().map(|f| f.as_fd()).collect();
                            // The device model has no in-fences: wait here,
                            // before taking the device, so that other runs
                            // go on meanwhile.
                            let polled = match req.model().npu().info().backend {
                                BackendKind::Model => fds.iter().try_for_each(|fd| {
                                    runtime::wait_readable(*fd, FENCE_WAIT_LIMIT)
                                        .map_err(Error::from)
                                }),
                                BackendKind::Accel => Ok(()),
                            };
                            polled.and_then(|()| req.run_now(Some(runtime::OnSubmit(&cb)), &fds))
                        }
                    }
                };
                // A panic must still end the fence, or its waiters hang.
                let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(run))
                    .unwrap_or_else(|_| {
                        Err(Error::new(
                            Status::Internal,
                            "internal error (panic) in libnpu",
                        ))
                    });
                f.signal(result);
            });
        if let Err(e) = spawned {
            drop(RunGuard(&self.0));
            return Err(Error::new(
                Status::Internal,
                format!("cannot start a thread: {e}"),
            ));
        }
        Ok(fence)
    }

    /// Wait until no run is in flight.
    pub fn wait_idle(&self) {
        let mut busy = lock(&self.0.busy);
        while *busy {
            busy = self.0.idle.wait(busy).unwrap_or_else(|e| e.into_inner());
        }
    }
}

struct FenceInner {
    result: Option<Result<RunStats>>,
    /// The sync_file of the run's last job, once it is queued (backends
    /// with kernel fences only).
    sync_file: Option<runtime::SyncFile>,
}

struct FenceState {
    state: Mutex<FenceInner>,
    changed: Condvar,
}

/// The end of an asynchronous run ([`InferRequest::start`]). Clones share
/// it; any number of threads may wait.
#[derive(Clone)]
pub struct Fence(Arc<FenceState>);

impl Fence {
    fn signal(&self, result: Result<RunStats>) {
        lock(&self.0.state).result = Some(result);
        self.0.changed.notify_all();
    }

    fn set_sync_file(&self, s: runtime::SyncFile) {
        lock(&self.0.state).sync_file = Some(s);
        self.0.changed.notify_all();
    }

    /// Whether the run has ended.
    pub fn is_signaled(&self) -> bool {
        lock(&self.0.state).result.is_some()
    }

    /// Wait until `ready` holds, at most `timeout` (`None`: no limit).
    fn wait_for<T>(
        &self,
        timeout: Option<Duration>,
        ready: impl Fn(&FenceInner) -> Option<T>,
    ) -> Result<T> {
        let deadline = timeout.and_then(|t| Instant::now().checked_add(t));
        let mut st = lock(&self.0.state);
        loop {
            if let Some(v) = ready(&st) {
                return Ok(v);
            }
            // No deadline (none given, or one past what an Instant holds):
            // wait as long as it takes.
            st = match deadline {
                None => self.0.changed.wait(st).unwrap_or_else(|e| e.into_inner()),
                Some(d) => {
                    let left = d.saturating_duration_since(Instant::now());
                    if left.is_zero() {
                        return Err(Error::new(Status::Timeout, "the run has not ended yet"));
                    }
                    self.0
                        .changed
                        .wait_timeout(st, left)
                        .unwrap_or_else(|e| e.into_inner())
                        .0
                }
            };
        }
    }

    /// Wait for the run, at most `timeout` (`None`: no limit): its figures
    /// or its error; [`Status::Timeout`] if it has not ended in time.
    pub fn wait(&self, timeout: Option<Duration>) -> Result<RunStats> {
        self.wait_for(timeout, |st| st.result.clone())?
    }

    /// A sync_file descriptor that signals when the run's last job ends
    /// (poll it for POLLIN, or give it to another driver as an in-fence).
    /// Waits until that job is queued. Only the accel backend has kernel
    /// fences: elsewhere, and for a run that failed before its job was
    /// queued, [`Status::Unsupported`] or the run's error.
    pub fn export_sync_file(&self) -> Result<OwnedFd> {
        let got = self.wait_for(None, |st| match (&st.sync_file, &st.result) {
            (Some(Ok(fd)), _) => Some(fd.try_clone().map_err(|e| {
                Error::new(
                    Status::Device,
                    format!("cannot duplicate the sync_file: {e}"),
                )
            })),
            (Some(Err(why)), _) => Some(Err(Error::new(
                Status::Device,
                format!("the job's fence could not be exported: {why}"),
            ))),
            (None, Some(Err(e))) => Some(Err(e.clone())),
            (None, Some(Ok(_))) => Some(Err(Error::new(
                Status::Unsupported,
                "this backend has no kernel fences (the device model): no sync_file",
            ))),
            (None, None) => None,
        })?;
        got
    }
}

// The compiled-model file: MAGIC, then little-endian fields, lengths before
// contents; every length is checked against the bytes left before anything
// is allocated for it (files are input like any other).
const MAGIC: &[u8; 8] = b"NPUMODEL";
/// Bumped when the layout changes; older files are refused, not misread.
const FORMAT_VERSION: u32 = 1;

struct Writer(Vec<u8>);

impl Writer {
    fn u8(&mut self, v: u8) {
        self.0.push(v);
    }
    fn u32(&mut self, v: u32) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    fn u64(&mut self, v: u64) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    fn len(&mut self, n: usize) {
        self.u64(n as u64);
    }
    fn bytes(&mut self, b: &[u8]) {
        self.len(b.len());
        self.0.extend_from_slice(b);
    }
    fn str(&mut self, s: &str) {
        self.bytes(s.as_bytes());
    }
    fn tensor(&mut self, t: &TensorInfo) {
        self.str(&t.name);
        self.u8(match t.ty.dtype {
            DType::F32 => 1,
            DType::I8 => 2,
            DType::I32 => 3,
            DType::U8 => 4,
            DType::F16 => 5,
            DType::Bf16 => 6,
        });
        self.len(t.ty.shape.len());
        for &d in &t.ty.shape {
            self.len(d);
        }
        match &t.ty.quant {
            None => self.u8(0),
            Some(Quant::PerTensor { scale, zero_point }) => {
                self.u8(1);
                self.u32(scale.to_bits());
                self.u8(*zero_point as u8);
            }
            Some(Quant::PerChannel {
                scales,
                axis,
                zero_points,
            }) => {
                // 3: with zero points (one byte each, after the scales).
                let zps = zero_points.iter().any(|&z| z != 0);
                self.u8(if zps { 3 } else { 2 });
                self.len(*axis);
                self.len(scales.len());
                for s in scales {
                    self.u32(s.to_bits());
                }
                if zps {
                    for &z in zero_points {
                        self.u8(z as u8);
                    }
                }
            }
        }
        self.len(t.buffer);
    }
}

fn encode(m: &ModelInner) -> Vec<u8> {
    encode_parts(m.sram_size, &m.inputs, &m.outputs, &m.program)
}

fn encode_parts(
    sram_size: u32,
    inputs: &[TensorInfo],
    outputs: &[TensorInfo],
    program: &Program,
) -> Vec<u8> {
    let mut w = Writer(MAGIC.to_vec());
    w.u32(FORMAT_VERSION);
    w.u32(sram_size);
    for list in [inputs, outputs] {
        w.len(list.len());
        for t in list {
            w.tensor(t);
        }
    }
    let p = program.to_parts();
    w.len(p.insns.len());
    for i in &p.insns {
        w.0.extend_from_slice(&i.encode());
    }
    w.len(p.relocs.len());
    for &(i, b) in &p.relocs {
        w.len(i);
        w.len(b);
    }
    w.len(p.buffers.len());
    for b in &p.buffers {
        w.str(&b.name);
        w.u8(match b.kind {
            BufferKind::Input => 0,
            BufferKind::Output => 1,
            BufferKind::Scratch => 2,
            BufferKind::Constant => 3,
        });
        w.u64(b.size);
    }
    w.len(p.io.len());
    for (n, b) in &p.io {
        w.str(n);
        w.len(*b);
    }
    w.bytes(&p.constants);
    w.len(p.jobs.len());
    for r in &p.jobs {
        w.len(r.start);
        w.len(r.end);
    }
    w.0
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], String> {
        if n > self.0.len() {
            return Err(format!("{n} bytes wanted, {} left", self.0.len()));
        }
        let (a, b) = self.0.split_at(n);
        self.0 = b;
        Ok(a)
    }
    fn u8(&mut self) -> Result<u8, String> {
        Ok(self.take(1)?[0])
    }
    fn u32(&mut self) -> Result<u32, String> {
        Ok(u32::from_le_bytes(
            self.take(4)?.try_into().map_err(|_| "short")?,
        ))
    }
    fn u64(&mut self) -> Result<u64, String> {
        Ok(u64::from_le_bytes(
            self.take(8)?.try_into().map_err(|_| "short")?,
        ))
    }
    /// A count of items of at least `min_item` bytes each: no more than
    /// the bytes left could hold.
    fn count(&mut self, min_item: usize) -> Result<usize, String> {
        let n = self.u64()?;
        if n > (self.0.len() / min_item.max(1)) as u64 {
            return Err(format!("a count of {n} does not fit the file"));
        }
        Ok(n as usize)
    }
    fn index(&mut self) -> Result<usize, String> {
        usize::try_from(self.u64()?).map_err(|_| "an index out of range".to_string())
    }
    fn bytes(&mut self) -> Result<&'a [u8], String> {
        let n = self.count(1)?;
        self.take(n)
    }
    fn str(&mut self) -> Result<String, String> {
        String::from_utf8(self.bytes()?.to_vec()).map_err(|_| "a name is not UTF-8".into())
    }
    fn tensor(&mut self) -> Result<TensorInfo, String> {
        let name = self.str()?;
        let dtype = match self.u8()? {
            1 => DType::F32,
            2 => DType::I8,
            3 => DType::I32,
            4 => DType::U8,
            5 => DType::F16,
            6 => DType::Bf16,
            d => return Err(format!("`{name}`: dtype {d}")),
        };
        let rank = self.count(8)?;
        let shape = (0..rank)
            .map(|_| self.index())
            .collect::<Result<Vec<_>, _>>()?;
        let quant = match self.u8()? {
            0 => None,
            1 => Some(Quant::PerTensor {
                scale: f32::from_bits(self.u32()?),
                zero_point: self.u8()? as i8,
            }),
            tag @ (2 | 3) => {
                let axis = self.index()?;
                let n = self.count(4)?;
                let scales = (0..n)
                    .map(|_| self.u32().map(f32::from_bits))
                    .collect::<Result<Vec<_>, _>>()?;
                let zero_points = if tag == 3 {
                    (0..n)
                        .map(|_| self.u8().map(|z| z as i8))
                        .collect::<Result<Vec<_>, _>>()?
                } else {
                    vec![]
                };
                Some(Quant::PerChannel {
                    scales,
                    axis,
                    zero_points,
                })
            }
            q => return Err(format!("`{name}`: quantization {q}")),
        };
        let ty = TensorType {
            dtype,
            shape,
            quant,
        };
        if ty.checked_bytes().is_none() {
            return Err(format!("`{name}`: a shape too large"));
        }
        let buffer = self.index()?;
        Ok(TensorInfo { name, ty, buffer })
    }
}

type Decoded = (u32, Vec<TensorInfo>, Vec<TensorInfo>, Program);

fn decode(bytes: &[u8]) -> Result<Decoded, String> {
    let mut r = Reader(bytes);
    if r.take(MAGIC.len())? != MAGIC {
        return Err("no NPUMODEL magic".into());
    }
    let version = r.u32()?;
    if version != FORMAT_VERSION {
        return Err(format!(
            "format version {version}; this libnpu reads version {FORMAT_VERSION} (compile the model again)"
        ));
    }
    let sram_size = r.u32()?;
    let mut lists = [Vec::new(), Vec::new()];
    for list in &mut lists {
        let n = r.count(16)?;
        for _ in 0..n {
            list.push(r.tensor()?);
        }
    }
    let n = r.count(npu_isa::INSN_SIZE)?;
    let mut insns = Vec::with_capacity(n);
    for i in 0..n {
        let b: &[u8; npu_isa::INSN_SIZE] = r
            .take(npu_isa::INSN_SIZE)?
            .try_into()
            .map_err(|_| "short")?;
        insns.push(Insn::decode(b).map_err(|e| format!("instruction {i}: {e:?}"))?);
    }
    let n = r.count(16)?;
    let relocs = (0..n)
        .map(|_| Ok((r.index()?, r.index()?)))
        .collect::<Result<Vec<_>, String>>()?;
    let n = r.count(17)?;
    let mut buffers = Vec::with_capacity(n);
    for _ in 0..n {
        let name = r.str()?;
        let kind = match r.u8()? {
            0 => BufferKind::Input,
            1 => BufferKind::Output,
            2 => BufferKind::Scratch,
            3 => BufferKind::Constant,
            k => return Err(format!("buffer kind {k}")),
        };
        let size = r.u64()?;
        buffers.push(BufferDesc { name, kind, size });
    }
    let n = r.count(16)?;
    let io = (0..n)
        .map(|_| Ok((r.str()?, r.index()?)))
        .collect::<Result<Vec<_>, String>>()?;
    let constants = r.bytes()?.to_vec();
    let n = r.count(16)?;
    let jobs = (0..n)
        .map(|_| Ok(r.index()?..r.index()?))
        .collect::<Result<Vec<_>, String>>()?;
    if !r.0.is_empty() {
        return Err(format!("{} bytes after the end", r.0.len()));
    }
    let program = Program::from_parts(ProgramParts {
        insns,
        relocs,
        buffers,
        io,
        constants,
        jobs,
    })?;
    let [inputs, outputs] = lists;
    for t in inputs.iter().chain(&outputs) {
        match program.buffers().get(t.buffer) {
            Some(b) if b.size >= t.ty.bytes() as u64 => {}
            _ => return Err(format!("`{}` has no buffer that holds it", t.name)),
        }
    }
    Ok((sram_size, inputs, outputs, program))
}

impl std::fmt::Debug for Npu {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("Npu").field(&self.0.info).finish()
    }
}

impl std::fmt::Debug for CompiledModel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CompiledModel")
            .field("inputs", &self.0.inputs)
            .field("outputs", &self.0.outputs)
            .field("instructions", &self.0.program.insns().len())
            .finish()
    }
}

impl std::fmt::Debug for InferRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InferRequest")
            .field("model", &self.0.model)
            .field("busy", &*lock(&self.0.busy))
            .finish()
    }
}

impl std::fmt::Debug for Fence {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Fence")
            .field("signaled", &self.is_signaled())
            .finish()
    }
}

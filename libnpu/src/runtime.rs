//! Running compiled kernels: a [`Session`] compiles for the device it is
//! bound to (its SRAM size, queried), places the program's buffers, uploads
//! inputs, submits, waits and reads the outputs back, and can check them
//! against the CPU reference.
//!
//! Execution sits behind the small [`Backend`] trait, so the same path runs
//! on the NPU through the onpu driver ([`Accel`]) and, with the `model`
//! feature, on the device model in-process ([`Model`]: the same rings, MMU
//! and engines the emulated PCI device has), for hosts without the driver.

use crate::device::{Buffer, Device, DeviceError, Job, ParkedBuffer, SharedBuffer};
use crate::ir::Graph;
use crate::lower::BufferKind;
use crate::reference::{self, TensorData};
use crate::{compile, CompileOptions, DeviceParams, LowerError, Program};
use std::collections::HashMap;
use std::os::fd::BorrowedFd;
use std::time::{Duration, Instant};

/// Everything a session can fail with.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Device(#[from] DeviceError),
    #[error("parse error at {0}")]
    Parse(String),
    #[error("compile: {0}")]
    Compile(#[from] LowerError),
    #[error("input `{name}`: {why}")]
    Input { name: String, why: String },
    #[error("reference executor: {0}")]
    Reference(String),
    #[error("{output}[{index}]: the NPU gave {got}, the CPU reference {want}")]
    Mismatch {
        output: String,
        index: usize,
        got: String,
        want: String,
    },
    #[error("the device model: {0}")]
    Model(String),
    #[error("bad job: {0}")]
    Request(String),
}

impl Error {
    /// The device fault, if the job faulted.
    pub fn fault(&self) -> Option<npu_isa::Fault> {
        match self {
            Error::Device(d) => d.fault(),
            _ => None,
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// A compiled kernel.
pub struct Kernel {
    pub graph: Graph,
    pub program: Program,
    pub compile_time: Duration,
    /// Names this kernel's constants to backends that keep them resident.
    id: u64,
}

/// Source of [`Kernel`] ids.
static NEXT_KERNEL_ID: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);

/// A new key for a compiled program's resident constants
/// ([`Session::execute_program`]).
pub fn next_program_key() -> u64 {
    NEXT_KERNEL_ID.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
}

/// One run's results.
#[derive(Debug)]
pub struct Run {
    pub outputs: HashMap<String, TensorData>,
    /// Modelled device cycles.
    pub cycles: u64,
    /// Submit to completion, wall clock.
    pub device_time: Duration,
    /// The command buffer as submitted (bound to `addrs`).
    pub cmdbuf: Vec<u8>,
    /// The NPU address of each of the program's buffers in this run.
    pub addrs: Vec<u64>,
    /// Bytes of inputs (and constants, unless the backend kept them
    /// resident from an earlier run of the kernel) copied to the device.
    pub uploaded: u64,
}

/// One job for a [`Backend`]: buffers to place, in this order, what they
/// start with and what to read back. Buffers not in `inputs` start zeroed.
#[derive(Clone, Copy, Debug)]
pub struct Request<'a> {
    /// Size of each buffer in bytes (at least 1).
    pub sizes: &'a [u64],
    /// Whether the job writes each buffer (else it only reads it).
    pub writes: &'a [bool],
    /// (buffer index, initial bytes from its start).
    pub inputs: &'a [(usize, &'a [u8])],
    /// (buffer index, bytes to read back from its start).
    pub outputs: &'a [(usize, usize)],
    /// Longest run time on the device; 0 for the driver's default.
    pub timeout_ms: u32,
    /// How long to wait for the job before giving up on it.
    pub wait_timeout: Duration,
    /// Byte sizes of the jobs the command bytes hold, run one after the
    /// other on the same buffers; empty: one job of all the bytes.
    pub jobs: &'a [usize],
    /// (buffer index, key) of read-only buffers whose initial bytes are
    /// the same in every request with that key (a kernel's constants): a
    /// backend may keep such a buffer between requests and not upload it
    /// again.
    pub resident: &'a [(usize, u64)],
    /// Called once the last job is queued on a backend with kernel fences
    /// (the accel one), with a sync_file of that job's fence.
    pub on_submit: Option<OnSubmit<'a>>,
    /// sync_files the first job waits for (the accel backend imports them
    /// as in-fences; the device model polls them until readable).
    pub wait_for: &'a [BorrowedFd<'a>],
    /// (buffer index, buffer object) of buffers the caller placed itself:
    /// buffer objects of the accel backend's device file (the caller's
    /// memory as a userptr object, a dma-buf's), used as they are, without
    /// copying in, clearing or reading back. Each is at least its buffer's
    /// size and is named by neither `inputs` nor `outputs`. Backends
    /// without buffer objects (the device model) refuse them.
    pub external: &'a [(usize, &'a SharedBuffer)],
}

/// The parts of a [`Request`] beyond buffers and bytes that
/// [`Session::execute_program`] passes on: see their fields there.
#[derive(Clone, Copy, Debug, Default)]
pub struct Extra<'a> {
    pub on_submit: Option<OnSubmit<'a>>,
    pub wait_for: &'a [BorrowedFd<'a>],
    pub external: &'a [(usize, &'a SharedBuffer)],
}

/// What [`Request::on_submit`] is given: a sync_file that signals when the
/// request's last job ends, or why there is none.
pub type SyncFile = std::result::Result<std::os::fd::OwnedFd, String>;

/// [`Request::on_submit`]'s callback.
#[derive(Clone, Copy)]
pub struct OnSubmit<'a>(pub &'a dyn Fn(SyncFile));

impl std::fmt::Debug for OnSubmit<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("OnSubmit")
    }
}

impl Request<'_> {
    /// Indices and sizes agree, so backends can index without checks.
    pub fn validate(&self) -> Result<()> {
        let bad = |m: String| Err(Error::Request(m));
        if self.sizes.len() != self.writes.len() {
            return bad(format!(
                "{} buffer sizes but {} write flags",
                self.sizes.len(),
                self.writes.len()
            ));
        }
        if let Some(i) = self
            .sizes
            .iter()
            .position(|&s| s == 0 || s > npu_uapi::DRM_ONPU_BO_MAX_SIZE)
        {
            return bad(format!(
                "buffer {i}: {} bytes is not in 1..={}",
                self.sizes[i],
                npu_uapi::DRM_ONPU_BO_MAX_SIZE
            ));
        }
        for (n, &(i, b)) in self.external.iter().enumerate() {
            match self.sizes.get(i) {
                None => {
                    return bad(format!(
                        "external buffer {i} does not exist ({} buffers)",
                        self.sizes.len()
                    ))
                }
                Some(&size) if b.size() < size => {
                    return bad(format!(
                        "buffer {i} of {size} bytes is external, in an object of {} bytes",
                        b.size()
                    ))
                }
                Some(_) => {}
            }
            let named = self.inputs.iter().any(|x| x.0 == i)
                || self.outputs.iter().any(|x| x.0 == i)
                || self.resident.iter().any(|x| x.0 == i)
                || self.external[..n].iter().any(|x| x.0 == i);
            if named {
                return bad(format!(
                    "buffer {i} is external and also copied in, read back, resident or external twice"
                ));
            }
        }
        for (i, len) in self
            .inputs
            .iter()
            .map(|&(i, b)| (i, b.len()))
            .chain(self.outputs.iter().copied())
        {
            match self.sizes.get(i) {
                None => {
                    return bad(format!(
                        "buffer {i} does not exist ({} buffers)",
                        self.sizes.len()
                    ))
                }
                Some(&size) if len as u64 > size => {
                    return bad(format!("{len} bytes do not fit buffer {i} of {size} bytes"))
                }
                Some(_) => {}
            }
        }
        Ok(())
    }
}

/// What a backend gives back for a [`Request`].
#[derive(Debug)]
pub struct Execution {
    /// The bytes of each of the request's `outputs`, in order.
    pub outputs: Vec<Vec<u8>>,
    pub cycles: u64,
    pub device_time: Duration,
    pub cmdbuf: Vec<u8>,
    pub addrs: Vec<u64>,
    /// Bytes of initial buffer contents this run copied to the device
    /// (resident buffers that were kept are not counted).
    pub uploaded: u64,
}

/// Something that runs command buffers: place the request's buffers, give
/// their NPU addresses to `bind` for the command buffer, run it, wait, and
/// read the outputs back. A job that faults is an error naming the fault.
pub trait Backend: Send {
    /// "accel", "model", ...
    fn name(&self) -> &'static str;
    /// The SRAM size programs must be tiled for.
    fn sram_size(&self) -> u32;
    /// The open NPU, for a backend that has one.
    fn device(&self) -> Option<&Device> {
        None
    }
    fn execute(
        &mut self,
        req: &Request<'_>,
        bind: &dyn Fn(&[u64]) -> Result<Vec<u8>>,
    ) -> Result<Execution>;
}

/// The NPU through the onpu driver: a buffer object per buffer, the
/// command buffer in one more, one SUBMIT listing them all, one WAIT.
///
/// Buffer objects outlive the run: after a job completes they are parked
/// and the next run takes the ones that fit (cleared where the request
/// wants zeroes). Creating, mapping and first-touching a buffer object
/// costs a few syscalls and page faults per page; clearing it costs a
/// memset. A request identical to an earlier one gets the same buffers in
/// the same order, so its NPU addresses repeat.
pub struct Accel {
    dev: Device,
    /// Oldest first; at most `POOL_MAX_BUFFERS` and `POOL_MAX_BYTES`.
    pool: Vec<ParkedBuffer>,
    /// Resident buffers by key, oldest first; at most `RESIDENT_MAX`.
    resident: Vec<(u64, ParkedBuffer)>,
}

/// Kernels whose constants [`Accel`] keeps on the device.
const RESIDENT_MAX: usize = 8;

/// Bounds on what [`Accel`] keeps between runs.
const POOL_MAX_BUFFERS: usize = 64;
const POOL_MAX_BYTES: u64 = 256 << 20;

impl Accel {
    pub fn new(dev: Device) -> Accel {
        Accel {
            dev,
            pool: Vec::new(),
            resident: Vec::new(),
        }
    }

    /// A buffer of at least `size` bytes whose first `size` bytes start
    /// with `init` and are zero after it: a parked one of at most twice
    /// the size (page-rounded), else a new one.
    fn take<'d>(
        dev: &'d Device,
        pool: &mut Vec<ParkedBuffer>,
        size: u64,
        init: &[u8],
    ) -> Result<Buffer<'d>> {
        let want = size.div_ceil(PAGE) * PAGE;
        let fit = pool
            .iter()
            .enumerate()
            .filter(|(_, p)| p.size() >= want && p.size() / 2 <= want)
            .min_by_key(|(i, p)| (p.size(), *i))
            .map(|(i, _)| i);
        let mut b = match fit {
            None => {
                let mut b = dev.alloc(size)?;
                b.bytes_mut()[..init.len()].copy_from_slice(init);
                return Ok(b);
            }
            Some(i) => dev
                .unpark(pool.remove(i))
                .map_err(|_| Error::Request("a pooled buffer of another device file".into()))?,
        };
        let bytes = &mut b.bytes_mut()[..size as usize];
        bytes[..init.len()].copy_from_slice(init);
        bytes[init.len()..].fill(0);
        Ok(b)
    }

    /// Keep `bufs` for later runs, then drop the oldest beyond the bounds.
    fn keep(pool: &mut Vec<ParkedBuffer>, dev: &Device, bufs: Vec<Buffer<'_>>) {
        pool.extend(bufs.into_iter().map(Buffer::park));
        let mut bytes: u64 = pool.iter().map(ParkedBuffer::size).sum();
        while pool.len() > POOL_MAX_BUFFERS || bytes > POOL_MAX_BYTES {
            let oldest = pool.remove(0);
            bytes -= oldest.size();
            // Closes the handle (a parked buffer is always this device's).
            drop(dev.unpark(oldest));
        }
    }
}

const PAGE: u64 = 4096;

impl Drop for Accel {
    fn drop(&mut self) {
        for p in self
            .pool
            .drain(..)
            .chain(self.resident.drain(..).map(|r| r.1))
        {
            drop(self.dev.unpark(p));
        }
    }
}

impl Backend for Accel {
    fn name(&self) -> &'static str {
        "accel"
    }

    fn sram_size(&self) -> u32 {
        self.dev.params().sram_size
    }

    fn device(&self) -> Option<&Device> {
        Some(&self.dev)
    }

    fn execute(
        &mut self,
        req: &Request<'_>,
        bind: &dyn Fn(&[u64]) -> Result<Vec<u8>>,
    ) -> Result<Execution> {
        req.validate()?;
        let Accel {
            dev,
            pool,
            resident,
        } = self;
        let mut init: Vec<&[u8]> = vec![&[]; req.sizes.len()];
        for &(i, bytes) in req.inputs {
            init[i] = bytes;
        }
        let key_of = |i: usize| req.resident.iter().find(|r| r.0 == i).map(|r| r.1);
        let mut bufs = Vec::with_capacity(req.sizes.len());
        let mut uploaded = 0;
        let external_of = |i: usize| req.external.iter().find(|x| x.0 == i).map(|x| x.1);
        for (i, (&size, init)) in req.sizes.iter().zip(&init).enumerate() {
            // The caller's own buffer object, as it is.
            if let Some(b) = external_of(i) {
                bufs.push(dev.view(b)?);
                continue;
            }
            // A resident buffer of this key holds these bytes already.
            let kept = key_of(i).and_then(|k| {
                resident
                    .iter()
                    .position(|(rk, p)| *rk == k && p.size() >= size)
            });
            if let Some(pos) = kept {
                let (_, p) = resident.remove(pos);
                bufs.push(dev.unpark(p).map_err(|_| {
                    Error::Request("a resident buffer of another device file".into())
                })?);
                continue;
            }
            uploaded += init.len() as u64;
            bufs.push(Accel::take(dev, pool, size, init)?);
        }
        // The command buffer comes after the buffers, so that a fresh file
        // gives the same addresses again (npu-submit --raw replays dumps
        // that way).
        let addrs: Vec<u64> = bufs.iter().map(|b| b.npu_addr()).collect();
        let cmd = bind(&addrs)?;
        let spans = job_spans(req.jobs, cmd.len())?;
        let cmdbuf = Accel::take(dev, pool, cmd.len().max(1) as u64, &cmd)?;
        // Jobs run back to back: each waits for the previous one's fence.
        // The caller's sync_files, imported for the first job to wait for.
        let inputs_in = req
            .wait_for
            .iter()
            .map(|fd| {
                let s = dev.syncobj(false)?;
                s.import_sync_file(*fd)?;
                Ok(s)
            })
            .collect::<Result<Vec<_>>>()?;
        // With on_submit the last job signals one more, exported.
        let extra = usize::from(req.on_submit.is_some());
        let fences = (1..spans.len() + extra)
            .map(|_| dev.syncobj(false))
            .collect::<Result<Vec<_>, _>>()?;
        let t = Instant::now();
        let mut seqnos = Vec::with_capacity(spans.len());
        for (i, &(offset, size)) in spans.iter().enumerate() {
            let mut job = Job::new(&cmdbuf, size as u64);
            job.cmdbuf_offset = offset as u64;
            job.timeout_ms = req.timeout_ms;
            job.buffers = bufs.iter().zip(req.writes).map(|(b, &w)| (b, w)).collect();
            if i > 0 {
                job = job.after(&fences[i - 1]);
            } else {
                for s in &inputs_in {
                    job = job.after(s);
                }
            }
            if let Some(f) = fences.get(i) {
                job = job.signal(f);
            }
            seqnos.push(dev.submit(&job)?);
        }
        if let (Some(cb), Some(last)) = (req.on_submit, fences.last()) {
            (cb.0)(last.export_sync_file().map_err(|e| e.to_string()));
        }
        // On any error the buffers are closed, not kept: a job that did not
        // end may still be using them.
        let mut cycles = 0;
        for seqno in seqnos {
            cycles += dev.wait(seqno, req.wait_timeout)?.cycles;
        }
        let device_time = t.elapsed();
        drop(fences);
        let outputs = req
            .outputs
            .iter()
            .map(|&(i, n)| bufs[i].bytes()[..n].to_vec())
            .collect();
        // Resident buffers go back under their key, the rest to the pool.
        let mut rest = Vec::with_capacity(bufs.len() + 1);
        for (i, b) in bufs.into_iter().enumerate() {
            match key_of(i) {
                // The caller keeps its own (the view's reference goes).
                _ if external_of(i).is_some() => drop(b),
                Some(k) => resident.push((k, b.park())),
                None => rest.push(b),
            }
        }
        while resident.len() > RESIDENT_MAX {
            drop(dev.unpark(resident.remove(0).1));
        }
        rest.push(cmdbuf);
        Accel::keep(pool, dev, rest);
        Ok(Execution {
            outputs,
            cycles,
            device_time,
            cmdbuf: cmd,
            addrs,
            uploaded,
        })
    }
}

/// (byte offset, size) of each job in a command buffer of `len` bytes.
fn job_spans(jobs: &[usize], len: usize) -> Result<Vec<(usize, usize)>> {
    if jobs.is_empty() {
        return Ok(vec![(0, len)]);
    }
    if jobs.iter().sum::<usize>() != len || jobs.contains(&0) {
        return Err(Error::Request(format!(
            "job sizes {jobs:?} do not split a command buffer of {len} bytes"
        )));
    }
    let mut off = 0;
    Ok(jobs
        .iter()
        .map(|&n| {
            off += n;
            (off - n, n)
        })
        .collect())
}

/// A device to compile for and run on.
pub struct Session {
    backend: Box<dyn Backend>,
    pub options: CompileOptions,
    /// Per-job timeout given to the driver (0: its default).
    pub timeout_ms: u32,
    /// How long [`Session::run`] waits for a job.
    pub wait_timeout: Duration,
}

impl Session {
    /// The first onpu NPU.
    pub fn open() -> Result<Session> {
        Ok(Session::on(Device::open()?))
    }

    pub fn on(device: Device) -> Session {
        // Longer than any job may run, with room for jobs queued before it.
        let wait = Duration::from_millis(u64::from(device.params().job_timeout_ms) * 4)
            .max(Duration::from_secs(60));
        let mut s = Session::with_backend(Box::new(Accel::new(device)));
        s.wait_timeout = wait;
        s
    }

    /// The in-process device model with `sram_size` bytes of SRAM.
    #[cfg(feature = "model")]
    pub fn model(sram_size: u32) -> Session {
        Session::with_backend(Box::new(Model::new(sram_size)))
    }

    /// Any other backend.
    pub fn with_backend(backend: Box<dyn Backend>) -> Session {
        Session {
            backend,
            options: CompileOptions::default(),
            timeout_ms: 0,
            wait_timeout: Duration::from_secs(60),
        }
    }

    pub fn backend_name(&self) -> &'static str {
        self.backend.name()
    }

    /// The SRAM size the compiler tiles for, as the device reports it.
    pub fn sram_size(&self) -> u32 {
        self.backend.sram_size()
    }

    pub fn device(&self) -> Option<&Device> {
        self.backend.device()
    }

    /// Compile a kernel in the text form.
    pub fn compile_text(&self, src: &str) -> Result<Kernel> {
        let graph = crate::text::parse(src).map_err(|e| Error::Parse(e.to_string()))?;
        self.compile(graph)
    }

    /// Compile an IR graph.
    pub fn compile(&self, graph: Graph) -> Result<Kernel> {
        let t = Instant::now();
        let program = compile(
            &graph,
            DeviceParams {
                sram_size: self.sram_size(),
            },
            self.options,
        )?;
        Ok(Kernel {
            graph,
            program,
            compile_time: t.elapsed(),
            id: next_program_key(),
        })
    }

    /// Run `k` on the device with `inputs` (by input name).
    pub fn run(&mut self, k: &Kernel, inputs: &HashMap<String, TensorData>) -> Result<Run> {
        let prog = &k.program;
        let mut bytes_in = Vec::new();
        for v in k.graph.inputs() {
            let node = k.graph.node(v);
            let ty = k.graph.ty(v);
            let data = inputs.get(&node.name).ok_or_else(|| Error::Input {
                name: node.name.clone(),
                why: "not given".into(),
            })?;
            if data.dtype() != ty.dtype || data.len() != ty.elems() {
                return Err(Error::Input {
                    name: node.name.clone(),
                    why: format!(
                        "want {} {} values, got {} {}",
                        ty.elems(),
                        ty.dtype.name(),
                        data.len(),
                        data.dtype().name()
                    ),
                });
            }
            let i = prog.buffer_of(&node.name).ok_or_else(|| Error::Input {
                name: node.name.clone(),
                why: "no buffer in the program".into(),
            })?;
            bytes_in.push((i, data.to_bytes()));
        }
        if let Some(name) = inputs
            .keys()
            .find(|n| !k.graph.inputs().any(|v| k.graph.node(v).name == **n))
        {
            return Err(Error::Input {
                name: name.clone(),
                why: "the kernel has no such input".into(),
            });
        }
        let outs: Vec<(String, usize, crate::DType, usize)> = k
            .graph
            .outputs()
            .iter()
            .filter_map(|&o| {
                let n = &k.graph.node(o).name;
                let ty = k.graph.ty(o);
                prog.buffer_of(n)
                    .map(|i| (n.clone(), i, ty.dtype, ty.bytes()))
            })
            .collect();
        let inputs: Vec<(usize, &[u8])> =
            bytes_in.iter().map(|(i, b)| (*i, b.as_slice())).collect();
        let wanted: Vec<(usize, usize)> = outs.iter().map(|(_, i, _, n)| (*i, *n)).collect();
        let e = self.execute_program(prog, k.id, &inputs, &wanted, Extra::default())?;
        let outputs = outs
            .iter()
            .zip(e.outputs)
            .map(|((n, _, dt, _), b)| (n.clone(), TensorData::from_bytes(*dt, &b)))
            .collect();
        Ok(Run {
            outputs,
            cycles: e.cycles,
            device_time: e.device_time,
            cmdbuf: e.cmdbuf,
            addrs: e.addrs,
            uploaded: e.uploaded,
        })
    }

    /// Run a compiled program: `inputs` are (buffer index, bytes) of its
    /// input buffers, `outputs` (buffer index, bytes) to read back. The
    /// constants go with it under `key` (one per compiled program), so a
    /// backend that kept them from an earlier run does not upload them again.
    pub fn execute_program(
        &mut self,
        prog: &Program,
        key: u64,
        inputs: &[(usize, &[u8])],
        outputs: &[(usize, usize)],
        extra: Extra<'_>,
    ) -> Result<Execution> {
        let Extra {
            on_submit,
            wait_for,
            external,
        } = extra;
        let sizes: Vec<u64> = prog.buffers().iter().map(|b| b.size.max(1)).collect();
        let writes: Vec<bool> = prog
            .buffers()
            .iter()
            .map(|b| !matches!(b.kind, BufferKind::Input | BufferKind::Constant))
            .collect();
        let mut inputs = inputs.to_vec();
        let constant = prog
            .buffers()
            .iter()
            .position(|b| b.kind == BufferKind::Constant);
        // The packed constants start the constant buffer.
        if let Some(i) = constant {
            inputs.push((i, prog.constants()));
        }
        let jobs = prog.job_sizes();
        let resident: Vec<(usize, u64)> = constant.map(|i| (i, key)).into_iter().collect();
        let req = Request {
            sizes: &sizes,
            writes: &writes,
            inputs: &inputs,
            outputs,
            timeout_ms: self.timeout_ms,
            wait_timeout: self.wait_timeout,
            jobs: &jobs,
            resident: &resident,
            on_submit,
            wait_for,
            external,
        };
        let e = self
            .backend
            .execute(&req, &|addrs| Ok(prog.bind_jobs(addrs)?))?;
        log::debug!(
            "{} backend: {} cycles, {:?} submit to completion",
            self.backend.name(),
            e.cycles,
            e.device_time
        );
        Ok(e)
    }

    /// [`Session::run`], then [`check`] against the CPU reference.
    pub fn run_checked(
        &mut self,
        k: &Kernel,
        inputs: &HashMap<String, TensorData>,
        tolerance: f32,
    ) -> Result<Run> {
        let run = self.run(k, inputs)?;
        check(&k.graph, inputs, &run.outputs, tolerance)?;
        Ok(run)
    }

    /// Submit a command buffer as it is, with `buffers` (size, initial
    /// bytes) placed in order (the job may read and write them all); every
    /// buffer's bytes come back in the [`Execution`]'s outputs.
    pub fn run_raw(&mut self, cmd: &[u8], buffers: &[(u64, &[u8])]) -> Result<Execution> {
        let insn = npu_isa::INSN_SIZE;
        if cmd.is_empty() || cmd.len() % insn != 0 {
            return Err(Error::Request(format!(
                "a command buffer of {} bytes is not a whole number of {insn}-byte instructions",
                cmd.len()
            )));
        }
        let sizes: Vec<u64> = buffers.iter().map(|(s, _)| *s).collect();
        let writes = vec![true; buffers.len()];
        let inputs: Vec<(usize, &[u8])> = buffers
            .iter()
            .enumerate()
            .filter(|(_, (_, b))| !b.is_empty())
            .map(|(i, (_, b))| (i, *b))
            .collect();
        let outputs: Vec<(usize, usize)> = sizes
            .iter()
            .enumerate()
            .map(|(i, &s)| (i, s as usize))
            .collect();
        let req = Request {
            sizes: &sizes,
            writes: &writes,
            inputs: &inputs,
            outputs: &outputs,
            timeout_ms: self.timeout_ms,
            wait_timeout: self.wait_timeout,
            jobs: &[],
            resident: &[],
            on_submit: None,
            wait_for: &[],
            external: &[],
        };
        self.backend.execute(&req, &|_| Ok(cmd.to_vec()))
    }
}

/// Random inputs for every input of `g` from a seed (xorshift64*), the
/// values tests and tools use: f32 in [-1, 1), int8 over the whole range.
pub fn random_inputs(g: &Graph, seed: u64) -> HashMap<String, TensorData> {
    let mut s = seed | 1;
    let mut next = move || {
        s ^= s >> 12;
        s ^= s << 25;
        s ^= s >> 27;
        s.wrapping_mul(0x2545_f491_4f6c_dd1d)
    };
    g.inputs()
        .map(|v| {
            let ty = g.ty(v);
            let n = ty.elems();
            let d = match ty.dtype {
                crate::DType::F32 => TensorData::F32(
                    (0..n)
                        .map(|_| (next() >> 40) as f32 / (1u64 << 23) as f32 - 1.0)
                        .collect(),
                ),
                crate::DType::I8 => TensorData::I8((0..n).map(|_| next() as i8).collect()),
                crate::DType::U8 => TensorData::U8((0..n).map(|_| next() as u8).collect()),
                // Values in [-1, 1) as the f32 ones, rounded to the type.
                crate::DType::F16 | crate::DType::Bf16 => {
                    let f32s = (0..n).map(|_| (next() >> 40) as f32 / (1u64 << 23) as f32 - 1.0);
                    if ty.dtype == crate::DType::F16 {
                        TensorData::F16(f32s.map(|x| half::f16::from_f32(x).to_bits()).collect())
                    } else {
                        TensorData::Bf16(f32s.map(|x| half::bf16::from_f32(x).to_bits()).collect())
                    }
                }
                crate::DType::I32 => {
                    TensorData::I32((0..n).map(|_| (next() % 20001) as i32 - 10000).collect())
                }
            };
            (g.node(v).name.clone(), d)
        })
        .collect()
}

/// Compare `got` with the CPU reference for `inputs`: int8 exactly, f32
/// within `tol` relative to max(1, |want|).
pub fn check(
    g: &Graph,
    inputs: &HashMap<String, TensorData>,
    got: &HashMap<String, TensorData>,
    tol: f32,
) -> Result<()> {
    let want = reference::run(g, inputs).map_err(|e| Error::Reference(e.to_string()))?;
    let mut names: Vec<&String> = want.keys().collect();
    names.sort();
    for name in names {
        let w = &want[name].data;
        let d = got
            .get(name)
            .ok_or_else(|| Error::Reference(format!("no device output `{name}`")))?;
        let mismatch = |index: usize, got: String, want: String| Error::Mismatch {
            output: name.clone(),
            index,
            got,
            want,
        };
        match (w, d) {
            (TensorData::F32(w), TensorData::F32(d)) => {
                for (i, (a, b)) in w.iter().zip(d).enumerate() {
                    let close = a == b
                        || (a.is_nan() && b.is_nan())
                        || (a - b).abs() <= tol * a.abs().max(1.0);
                    if !close {
                        return Err(mismatch(i, b.to_string(), a.to_string()));
                    }
                }
            }
            (TensorData::I8(w), TensorData::I8(d)) => {
                if let Some(i) = w.iter().zip(d).position(|(a, b)| a != b) {
                    return Err(mismatch(i, d[i].to_string(), w[i].to_string()));
                }
            }
            (TensorData::I32(w), TensorData::I32(d)) => {
                if let Some(i) = w.iter().zip(d).position(|(a, b)| a != b) {
                    return Err(mismatch(i, d[i].to_string(), w[i].to_string()));
                }
            }
            // In real values: f32 results within `tol` may round to
            // neighbouring 16-bit values, one step (2^-10 relative for f16,
            // 2^-7 for bf16) apart.
            (TensorData::F16(w), TensorData::F16(d))
            | (TensorData::Bf16(w), TensorData::Bf16(d)) => {
                let f16 = matches!(want[name].data, TensorData::F16(_));
                let real = |h: u16| {
                    if f16 {
                        half::f16::from_bits(h).to_f32()
                    } else {
                        half::bf16::from_bits(h).to_f32()
                    }
                };
                let step = if f16 { 2f32.powi(-10) } else { 2f32.powi(-7) };
                for (i, (&a, &b)) in w.iter().zip(d).enumerate() {
                    let (a, b) = (real(a), real(b));
                    let close = a.to_bits() == b.to_bits()
                        || (a.is_nan() && b.is_nan())
                        || (a - b).abs() <= (tol + step) * a.abs().max(1.0);
                    if !close {
                        return Err(mismatch(i, b.to_string(), a.to_string()));
                    }
                }
            }
            (TensorData::U8(w), TensorData::U8(d)) => {
                if let Some(i) = w.iter().zip(d).position(|(a, b)| a != b) {
                    return Err(mismatch(i, d[i].to_string(), w[i].to_string()));
                }
            }
            _ => {
                return Err(Error::Reference(format!(
                    "`{name}`: the device and the reference disagree on the type"
                )))
            }
        }
    }
    Ok(())
}

/// Wait until `fd` polls readable (a sync_file: signalled), at most
/// `timeout`.
pub(crate) fn wait_readable(fd: BorrowedFd<'_>, timeout: Duration) -> Result<()> {
    use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
    let deadline = Instant::now() + timeout;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let ms = PollTimeout::try_from(left.as_millis().min(i32::MAX as u128) as i32)
            .unwrap_or(PollTimeout::MAX);
        let mut fds = [PollFd::new(fd, PollFlags::POLLIN)];
        match poll(&mut fds, ms) {
            Ok(0) => {
                return Err(Error::Request(format!(
                    "an input fence did not signal within {timeout:?}"
                )))
            }
            Ok(_) => {
                let r = fds[0].revents().unwrap_or(PollFlags::empty());
                if r.contains(PollFlags::POLLIN) {
                    return Ok(());
                }
                return Err(Error::Request(format!(
                    "an input fence polled {r:?}, not readable"
                )));
            }
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => return Err(Error::Request(format!("polling an input fence: {e}"))),
        }
    }
}

#[cfg(feature = "model")]
pub use model::Model;

/// The smallest SRAM the device model accepts.
#[cfg(feature = "model")]
pub fn model_min_sram() -> u32 {
    model::MIN_SRAM
}

#[cfg(feature = "model")]
mod model {
    //! The device model in-process: the request's buffers are mapped in one
    //! context of a `Bench` where the driver would map them (from 1 MiB up,
    //! each followed by an unmapped guard page, the command buffer last), so
    //! command buffers and fault addresses match the accel backend's.
    use super::{Backend, Error, Execution, Request, Result};
    use crate::device::DeviceError;
    use npu_device::testbench::Bench;
    use npu_device::DeviceConfig;
    use std::time::Instant;

    const PAGE: u64 = 0x1000;
    /// DRM_ONPU_PARAM_VA_START of the driver.
    const VA_START: u64 = 1 << 20;
    /// Smallest SRAM the device model is built with.
    pub const MIN_SRAM: u32 = 4096;

    pub struct Model {
        sram_size: u32,
        /// The devices of the last runs of different layouts (most recent
        /// last, at most `super::RESIDENT_MAX`), so each kernel's resident
        /// buffers stay in the memory of one of them.
        kept: Vec<Kept>,
    }

    struct Kept {
        sizes: Vec<u64>,
        writes: Vec<bool>,
        cmd_len: usize,
        resident: Vec<(usize, u64)>,
        bench: Bench,
    }

    impl Model {
        pub fn new(sram_size: u32) -> Model {
            Model {
                sram_size,
                kept: Vec::new(),
            }
        }
    }

    impl Backend for Model {
        fn name(&self) -> &'static str {
            "model"
        }

        fn sram_size(&self) -> u32 {
            self.sram_size
        }

        fn execute(
            &mut self,
            req: &Request<'_>,
            bind: &dyn Fn(&[u64]) -> Result<Vec<u8>>,
        ) -> Result<Execution> {
            req.validate()?;
            if !req.external.is_empty() {
                return Err(Error::Request(
                    "the device model has no buffer objects: it cannot use the caller's (userptr, dma-buf)"
                        .into(),
                ));
            }
            if self.sram_size < MIN_SRAM {
                return Err(Error::Model(format!(
                    "{} bytes of SRAM is below the model's {MIN_SRAM}-byte minimum",
                    self.sram_size
                )));
            }
            let mut vas = Vec::with_capacity(req.sizes.len());
            let mut va = VA_START;
            for &size in req.sizes {
                vas.push(va);
                va += size.next_multiple_of(PAGE) + PAGE;
            }
            let cmd = bind(&vas)?;
            let spans = super::job_spans(req.jobs, cmd.len())?;
            if let Some(&(_, n)) = spans
                .iter()
                .find(|(_, n)| *n > npu_uapi::DRM_ONPU_MAX_CMDBUF_SIZE as usize)
            {
                return Err(Error::Request(format!(
                    "a job of {n} bytes of commands is above the {}-byte limit",
                    npu_uapi::DRM_ONPU_MAX_CMDBUF_SIZE
                )));
            }
            // The last run's device when the layout is the same (its
            // resident buffers still hold their bytes), else a new one.
            // One with this request's resident buffers, else one without any.
            let same_layout =
                |k: &Kept| k.sizes == req.sizes && k.writes == req.writes && k.cmd_len == cmd.len();
            let pos = self
                .kept
                .iter()
                .rposition(|k| same_layout(k) && k.resident == req.resident)
                // Never another kernel's: its constants would be lost.
                .or_else(|| {
                    self.kept
                        .iter()
                        .rposition(|k| same_layout(k) && k.resident.is_empty())
                });
            let same = pos.is_some();
            // Taken out: a run that fails leaves no device behind.
            let kept = pos.map(|p| self.kept.remove(p));
            let (mut bench, was_resident) = match kept {
                Some(k) => (k.bench, k.resident),
                None => {
                    // Guest memory for the buffers, the command buffer and
                    // the page tables (one 4 KiB table per 2 MiB, plus the
                    // upper levels).
                    let data = va - VA_START + (cmd.len() as u64).next_multiple_of(PAGE);
                    let mib = (data + data / 512).div_ceil(1 << 20) + 16;
                    let mut bench = Bench::new(
                        DeviceConfig {
                            sram_size: self.sram_size,
                            contexts: 2,
                            ..Default::default()
                        },
                        mib,
                    );
                    for (&va, (&size, &w)) in vas.iter().zip(req.sizes.iter().zip(req.writes)) {
                        bench.map(0, va, size, w);
                    }
                    bench.map(0, va, cmd.len() as u64, false);
                    (bench, Vec::new())
                }
            };
            let reused = same;
            let mut uploaded = 0;
            for (i, &size) in req.sizes.iter().enumerate() {
                if req
                    .resident
                    .iter()
                    .any(|r| r.0 == i && was_resident.contains(r))
                {
                    continue;
                }
                let init = req
                    .inputs
                    .iter()
                    .find(|x| x.0 == i)
                    .map(|x| x.1)
                    .unwrap_or(&[]);
                if !init.is_empty() {
                    bench.write(0, vas[i], init);
                    uploaded += init.len() as u64;
                }
                if reused && (init.len() as u64) < size {
                    // A new device's memory is zero; a kept one is cleared.
                    bench.write(
                        0,
                        vas[i] + init.len() as u64,
                        &vec![0; (size - init.len() as u64) as usize],
                    );
                }
            }
            bench.write(0, va, &cmd);
            for fd in req.wait_for {
                super::wait_readable(*fd, req.wait_timeout)?;
            }
            let t = Instant::now();
            let mut cycles = 0;
            for (offset, size) in spans {
                let seqno = bench.submit_raw(0, va + offset as u64, size as u32, 0);
                let c =
                    bench
                        .wait_completion(req.wait_timeout)
                        .ok_or(DeviceError::WaitTimeout {
                            seqno,
                            waited: req.wait_timeout,
                        })?;
                // Acknowledge like the driver: unacknowledged interrupts
                // coalesce, and the next wait would poll instead of wake.
                bench
                    .device
                    .mmio_write(npu_device::regs::IRQ_ACK, npu_device::regs::IRQ_ALL);
                if c.status != 0 {
                    return Err(DeviceError::JobFault {
                        seqno: c.seqno,
                        status: c.status,
                        addr: c.fault_addr,
                    }
                    .into());
                }
                cycles += u64::from(c.cycles);
            }
            let device_time = t.elapsed();
            let outputs = req
                .outputs
                .iter()
                .map(|&(i, n)| bench.read(0, vas[i], n))
                .collect();
            self.kept.push(Kept {
                sizes: req.sizes.to_vec(),
                writes: req.writes.to_vec(),
                cmd_len: cmd.len(),
                resident: req.resident.to_vec(),
                bench,
            });
            if self.kept.len() > super::RESIDENT_MAX {
                self.kept.remove(0);
            }
            Ok(Execution {
                outputs,
                cycles,
                device_time,
                cmdbuf: cmd,
                addrs: vas,
                uploaded,
            })
        }
    }
}

//! Running compiled kernels: a [`Session`] compiles for the device it is
//! bound to (its SRAM size, queried), places the program's buffers, uploads
//! inputs, submits, waits and reads the outputs back, and can check them
//! against the CPU reference.
//!
//! Execution sits behind the small [`Backend`] trait, so the same path runs
//! on the NPU through the onpu driver ([`Accel`]) and, with the `model`
//! feature, on the device model in-process ([`Model`]: the same rings, MMU
//! and engines the emulated PCI device has), for hosts without the driver.

use crate::device::{Buffer, Device, DeviceError, Job, ParkedBuffer};
use crate::ir::Graph;
use crate::lower::BufferKind;
use crate::reference::{self, TensorData};
use crate::{compile, CompileOptions, DeviceParams, LowerError, Program};
use std::collections::HashMap;
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
}

/// Bounds on what [`Accel`] keeps between runs.
const POOL_MAX_BUFFERS: usize = 64;
const POOL_MAX_BYTES: u64 = 256 << 20;

impl Accel {
    pub fn new(dev: Device) -> Accel {
        Accel {
            dev,
            pool: Vec::new(),
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
        for p in self.pool.drain(..) {
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
        let Accel { dev, pool } = self;
        let mut init: Vec<&[u8]> = vec![&[]; req.sizes.len()];
        for &(i, bytes) in req.inputs {
            init[i] = bytes;
        }
        let mut bufs = Vec::with_capacity(req.sizes.len());
        for (&size, init) in req.sizes.iter().zip(&init) {
            bufs.push(Accel::take(dev, pool, size, init)?);
        }
        // The command buffer comes after the buffers, so that a fresh file
        // gives the same addresses again (npu-submit --raw replays dumps
        // that way).
        let addrs: Vec<u64> = bufs.iter().map(|b| b.npu_addr()).collect();
        let cmd = bind(&addrs)?;
        let cmdbuf = Accel::take(dev, pool, cmd.len().max(1) as u64, &cmd)?;
        let mut job = Job::new(&cmdbuf, cmd.len() as u64);
        job.timeout_ms = req.timeout_ms;
        job.buffers = bufs.iter().zip(req.writes).map(|(b, &w)| (b, w)).collect();
        let t = Instant::now();
        let seqno = dev.submit(&job)?;
        // On any error the buffers are closed, not kept: a job that did not
        // end may still be using them.
        let outcome = dev.wait(seqno, req.wait_timeout)?;
        let device_time = t.elapsed();
        drop(job);
        let outputs = req
            .outputs
            .iter()
            .map(|&(i, n)| bufs[i].bytes()[..n].to_vec())
            .collect();
        bufs.push(cmdbuf);
        Accel::keep(pool, dev, bufs);
        Ok(Execution {
            outputs,
            cycles: outcome.cycles,
            device_time,
            cmdbuf: cmd,
            addrs,
        })
    }
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
        let sizes: Vec<u64> = prog.buffers().iter().map(|b| b.size.max(1)).collect();
        let writes: Vec<bool> = prog
            .buffers()
            .iter()
            .map(|b| b.kind != BufferKind::Input)
            .collect();
        let inputs: Vec<(usize, &[u8])> =
            bytes_in.iter().map(|(i, b)| (*i, b.as_slice())).collect();
        let wanted: Vec<(usize, usize)> = outs.iter().map(|(_, i, _, n)| (*i, *n)).collect();
        let req = Request {
            sizes: &sizes,
            writes: &writes,
            inputs: &inputs,
            outputs: &wanted,
            timeout_ms: self.timeout_ms,
            wait_timeout: self.wait_timeout,
        };
        let e = self.backend.execute(&req, &|addrs| Ok(prog.bind(addrs)?))?;
        log::debug!(
            "{} backend: {} cycles, {:?} submit to completion",
            self.backend.name(),
            e.cycles,
            e.device_time
        );
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
        })
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
            _ => {
                return Err(Error::Reference(format!(
                    "`{name}`: the device and the reference disagree on the type"
                )))
            }
        }
    }
    Ok(())
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
    }

    impl Model {
        pub fn new(sram_size: u32) -> Model {
            Model { sram_size }
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
            let cmd_len = u32::try_from(cmd.len()).map_err(|_| {
                Error::Request(format!(
                    "a command buffer of {} bytes is too large",
                    cmd.len()
                ))
            })?;
            // Guest memory for the buffers, the command buffer and the page
            // tables (one 4 KiB table per 2 MiB, plus the upper levels).
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
            for &(i, bytes) in req.inputs {
                bench.write(0, vas[i], bytes);
            }
            bench.map(0, va, cmd.len() as u64, false);
            bench.write(0, va, &cmd);
            let t = Instant::now();
            let seqno = bench.submit_raw(0, va, cmd_len, 0);
            let c = bench
                .wait_completion(req.wait_timeout)
                .ok_or(DeviceError::WaitTimeout {
                    seqno,
                    waited: req.wait_timeout,
                })?;
            let device_time = t.elapsed();
            if c.status != 0 {
                return Err(DeviceError::JobFault {
                    seqno: c.seqno,
                    status: c.status,
                    addr: c.fault_addr,
                }
                .into());
            }
            let outputs = req
                .outputs
                .iter()
                .map(|&(i, n)| bench.read(0, vas[i], n))
                .collect();
            Ok(Execution {
                outputs,
                cycles: u64::from(c.cycles),
                device_time,
                cmdbuf: cmd,
                addrs: vas,
            })
        }
    }
}

//! Running compiled kernels: a [`Session`] compiles for the device it is
//! bound to (its SRAM size, queried), places the program's buffers, uploads
//! inputs, submits, waits and reads the outputs back, and can check them
//! against the CPU reference.
//!
//! Two backends behind the same API: the NPU through the onpu driver
//! ([`crate::device`]) and, with the `model` feature, the device model run
//! in-process (the same rings, MMU and engines the emulated PCI device
//! has), for hosts without the driver.

use crate::device::{Device, DeviceError, Job};
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
    Mismatch { output: String, index: usize, got: String, want: String },
    #[error("the device model: {0}")]
    Model(String),
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
}

enum Backend {
    Accel(Device),
    #[cfg(feature = "model")]
    Model(Box<model::Model>),
}

/// A device to compile for and run on.
pub struct Session {
    backend: Backend,
    pub options: CompileOptions,
    /// Per-job timeout given to the driver (0: its default).
    pub timeout_ms: u32,
}

impl Session {
    /// The first onpu NPU.
    pub fn open() -> Result<Session> {
        Ok(Session::on(Device::open()?))
    }

    pub fn on(device: Device) -> Session {
        Session { backend: Backend::Accel(device), options: CompileOptions::default(), timeout_ms: 0 }
    }

    /// The in-process device model with `sram_size` bytes of SRAM.
    #[cfg(feature = "model")]
    pub fn model(sram_size: u32) -> Session {
        Session { backend: Backend::Model(Box::new(model::Model::new(sram_size))), options: CompileOptions::default(), timeout_ms: 0 }
    }

    pub fn backend_name(&self) -> &'static str {
        match &self.backend {
            Backend::Accel(_) => "accel",
            #[cfg(feature = "model")]
            Backend::Model(_) => "model",
        }
    }

    /// The SRAM size the compiler tiles for, as the device reports it.
    pub fn sram_size(&self) -> u32 {
        match &self.backend {
            Backend::Accel(d) => d.params().sram_size,
            #[cfg(feature = "model")]
            Backend::Model(m) => m.sram_size(),
        }
    }

    pub fn device(&self) -> Option<&Device> {
        match &self.backend {
            Backend::Accel(d) => Some(d),
            #[cfg(feature = "model")]
            Backend::Model(_) => None,
        }
    }

    /// Compile a kernel in the text form.
    pub fn compile_text(&self, src: &str) -> Result<Kernel> {
        let graph = crate::text::parse(src).map_err(|e| Error::Parse(e.to_string()))?;
        self.compile(graph)
    }

    pub fn compile(&self, graph: Graph) -> Result<Kernel> {
        let t = Instant::now();
        let program = compile(&graph, DeviceParams { sram_size: self.sram_size() }, self.options)?;
        Ok(Kernel { graph, program, compile_time: t.elapsed() })
    }

    /// Run `k` on the device with `inputs` (by input name).
    pub fn run(&mut self, k: &Kernel, inputs: &HashMap<String, TensorData>) -> Result<Run> {
        let prog = &k.program;
        let mut bytes_in = Vec::new();
        for v in k.graph.inputs() {
            let node = k.graph.node(v);
            let ty = k.graph.ty(v);
            let data = inputs.get(&node.name).ok_or_else(|| Error::Input { name: node.name.clone(), why: "not given".into() })?;
            if data.dtype() != ty.dtype || data.len() != ty.elems() {
                return Err(Error::Input {
                    name: node.name.clone(),
                    why: format!("want {} {} values, got {} {}", ty.elems(), ty.dtype.name(), data.len(), data.dtype().name()),
                });
            }
            let i = prog.buffer_of(&node.name).ok_or_else(|| Error::Input { name: node.name.clone(), why: "no buffer in the program".into() })?;
            bytes_in.push((i, data.to_bytes()));
        }
        let outs: Vec<(String, usize, crate::DType, usize)> = k
            .graph
            .outputs()
            .iter()
            .filter_map(|&o| {
                let n = &k.graph.node(o).name;
                let ty = k.graph.ty(o);
                prog.buffer_of(n).map(|i| (n.clone(), i, ty.dtype, ty.bytes()))
            })
            .collect();
        let wanted: Vec<(usize, usize)> = outs.iter().map(|(_, i, _, n)| (*i, *n)).collect();
        let (bytes_out, cycles, device_time) = match &mut self.backend {
            Backend::Accel(d) => run_accel(d, prog, &bytes_in, &wanted, self.timeout_ms)?,
            #[cfg(feature = "model")]
            Backend::Model(m) => m.run(prog, &bytes_in, &wanted)?,
        };
        let outputs = outs.iter().zip(bytes_out).map(|((n, _, dt, _), b)| (n.clone(), TensorData::from_bytes(*dt, &b))).collect();
        Ok(Run { outputs, cycles, device_time })
    }
}

/// Place, upload, submit, wait, download through the driver.
fn run_accel(d: &Device, prog: &Program, inputs: &[(usize, Vec<u8>)], outputs: &[(usize, usize)], timeout_ms: u32) -> Result<(Vec<Vec<u8>>, u64, Duration)> {
    let mut bufs = Vec::with_capacity(prog.buffers().len());
    for b in prog.buffers() {
        bufs.push(d.alloc(b.size.max(1))?);
    }
    for (i, bytes) in inputs {
        bufs[*i].bytes_mut()[..bytes.len()].copy_from_slice(bytes);
    }
    let vas: Vec<u64> = bufs.iter().map(|b| b.npu_addr()).collect();
    let cmd = prog.bind(&vas)?;
    let mut cmdbuf = d.alloc(cmd.len() as u64)?;
    cmdbuf.bytes_mut()[..cmd.len()].copy_from_slice(&cmd);
    let mut job = Job::new(&cmdbuf, cmd.len() as u64);
    job.timeout_ms = timeout_ms;
    for (b, desc) in bufs.iter().zip(prog.buffers()) {
        job.buffers.push((b, desc.kind != BufferKind::Input));
    }
    let t = Instant::now();
    let seqno = d.submit(&job)?;
    let outcome = d.wait(seqno, Duration::from_secs(60))?;
    let elapsed = t.elapsed();
    let out = outputs.iter().map(|(i, n)| bufs[*i].bytes()[..*n].to_vec()).collect();
    Ok((out, outcome.cycles, elapsed))
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
                crate::DType::F32 => TensorData::F32((0..n).map(|_| (next() >> 40) as f32 / (1u64 << 23) as f32 - 1.0).collect()),
                crate::DType::I8 => TensorData::I8((0..n).map(|_| next() as i8).collect()),
                crate::DType::I32 => TensorData::I32((0..n).map(|_| (next() % 20001) as i32 - 10000).collect()),
            };
            (g.node(v).name.clone(), d)
        })
        .collect()
}

/// Compare `got` with the CPU reference for `inputs`: int8 exactly, f32
/// within `tol` relative to max(1, |want|).
pub fn check(g: &Graph, inputs: &HashMap<String, TensorData>, got: &HashMap<String, TensorData>, tol: f32) -> Result<()> {
    let want = reference::run(g, inputs).map_err(|e| Error::Reference(e.to_string()))?;
    let mut names: Vec<&String> = want.keys().collect();
    names.sort();
    for name in names {
        let w = &want[name].data;
        let d = got.get(name).ok_or_else(|| Error::Reference(format!("no device output `{name}`")))?;
        let mismatch = |index: usize, got: String, want: String| Error::Mismatch { output: name.clone(), index, got, want };
        match (w, d) {
            (TensorData::F32(w), TensorData::F32(d)) => {
                for (i, (a, b)) in w.iter().zip(d).enumerate() {
                    let close = a == b || (a.is_nan() && b.is_nan()) || (a - b).abs() <= tol * a.abs().max(1.0);
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
            _ => return Err(Error::Reference(format!("`{name}`: the device and the reference disagree on the type"))),
        }
    }
    Ok(())
}

#[cfg(feature = "model")]
mod model {
    //! The device model in-process: the program's buffers are mapped in one
    //! context of a `Bench`, as the driver would map them.
    use super::{Error, Result};
    use crate::Program;
    use npu_device::testbench::Bench;
    use npu_device::DeviceConfig;
    use std::time::{Duration, Instant};

    pub struct Model {
        sram_size: u32,
    }

    impl Model {
        pub fn new(sram_size: u32) -> Model {
            Model { sram_size }
        }

        pub fn sram_size(&self) -> u32 {
            self.sram_size
        }

        pub fn run(&mut self, prog: &Program, inputs: &[(usize, Vec<u8>)], outputs: &[(usize, usize)]) -> Result<(Vec<Vec<u8>>, u64, Duration)> {
            let total: u64 = prog.buffers().iter().map(|b| b.size.next_multiple_of(0x1000) + 0x1000).sum::<u64>() + prog.cmdbuf_size() as u64;
            // Guest memory for the buffers, the command buffer and the page tables.
            let mib = total.div_ceil(1 << 20) * 2 + 16;
            let mut bench = Bench::new(DeviceConfig { sram_size: self.sram_size, contexts: 2, ..Default::default() }, mib);
            let mut va = 0x10_0000u64;
            let mut vas = Vec::new();
            for b in prog.buffers() {
                vas.push(va);
                bench.map(0, va, b.size.max(1), true);
                va += b.size.next_multiple_of(0x1000) + 0x1000;
            }
            for (i, bytes) in inputs {
                bench.write(0, vas[*i], bytes);
            }
            let cmd = prog.bind(&vas)?;
            let t = Instant::now();
            let c = bench.run(0, va, &cmd);
            let elapsed = t.elapsed();
            if c.status != 0 {
                return Err(Error::Device(crate::device::DeviceError::JobFault {
                    seqno: c.seqno,
                    status: c.status,
                    fault: crate::device::fault_name(c.status),
                    addr: c.fault_addr,
                }));
            }
            let out = outputs.iter().map(|(i, n)| bench.read(0, vas[*i], *n)).collect();
            Ok((out, u64::from(c.cycles), elapsed))
        }
    }
}

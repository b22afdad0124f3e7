//! Lowering: from a [`Graph`] to a command buffer for one device.
//!
//! * [`plan`]: memory planning: which buffer (input, output, scratch) and
//!   offset holds each value, and which ops fuse into their producer;
//! * [`emit`]: the instruction stream with VA relocations, and SRAM slots;
//! * [`ops`]: per-op tiling and instruction selection.
//!
//! The SRAM size comes from [`DeviceParams`] (read from the device's
//! SRAM_SIZE register); nothing here assumes a size.

mod chain;
mod conv;
mod emit;
mod movement;
mod ops;
mod plan;
mod select;
mod xformer;

pub use emit::{BufferDesc, BufferKind, Program, ProgramParts};

use crate::ir::Graph;

/// What the compiler needs to know about the target device.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DeviceParams {
    /// On-chip SRAM in bytes (the SRAM_SIZE register).
    pub sram_size: u32,
}

/// Knobs of the lowering.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CompileOptions {
    /// Two SRAM slots per streamed operand, so the DMA of tile i+1 overlaps
    /// the compute of tile i. Off: one slot, strictly serial (for comparison).
    pub double_buffer: bool,
    /// Fusion: activations, elementwise chains, residual adds and pools
    /// run on the SRAM tile of the op producing their operand (plan.rs).
    pub fuse: bool,
    /// Largest command buffer of one job: the driver's limit
    /// (DRM_ONPU_MAX_CMDBUF_SIZE). Longer programs run as several jobs.
    pub max_job_bytes: u32,
}

impl Default for CompileOptions {
    fn default() -> Self {
        CompileOptions {
            double_buffer: true,
            fuse: true,
            max_job_bytes: npu_uapi::DRM_ONPU_MAX_CMDBUF_SIZE,
        }
    }
}

/// Why a graph could not be compiled for a device.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum LowerError {
    #[error(
        "`{name}` ({op}) does not fit in {sram} bytes of SRAM even with the smallest tiles: {why}"
    )]
    SramTooSmall {
        name: String,
        op: &'static str,
        sram: u32,
        why: String,
    },
    #[error("`{name}` ({op}) cannot be lowered yet: {why}")]
    Unsupported {
        name: String,
        op: &'static str,
        why: String,
    },
    #[error(
        "bind: expected {want} buffer addresses (one per buffer of Program::buffers), got {got}"
    )]
    BindCount { want: usize, got: usize },
    #[error("bind: buffer `{name}` at NPU address {va:#x} is not 64-byte aligned or overflows the address space")]
    BindAddress { name: String, va: u64 },
    #[error("the graph is invalid: {0}")]
    Graph(#[from] crate::ir::GraphError),
    #[error("too large: {0}")]
    TooLarge(String),
    #[error("internal compiler error: {0}")]
    Internal(String),
}

/// Compile `graph` for a device with `params`.
pub fn compile(
    graph: &Graph,
    params: DeviceParams,
    opts: CompileOptions,
) -> Result<Program, LowerError> {
    graph.validate()?;
    let optimized = crate::ir::passes::optimize(graph)?;
    // int8 ops without an integer ISA form (elementwise, sigmoid/tanh/exp,
    // softmax) dequantize, compute in f32 and quantize on the SRAM tile
    // (ops.rs), as the language defines them; int8 pooling is POOL_I8.
    let graph = &optimized;
    let plan = plan::plan(graph, opts)?;
    let mut e = emit::Emitter::new(params, opts, plan.buffers.clone());
    // Each constant is packed about once (conv weights per tile, with
    // alignment padding per block).
    let const_bytes: usize = graph
        .nodes()
        .iter()
        .filter(|n| matches!(n.op, crate::ir::Op::Constant { .. }))
        .map(|n| n.ty.bytes() + 64)
        .sum();
    e.reserve_constants(const_bytes + const_bytes / 16);
    for step in &plan.steps {
        e.begin_step(&graph.node(step.node).name);
        let before = e.emitted();
        ops::lower_step(graph, &plan, step, &mut e)?;
        log::debug!(
            "{}: {} instructions",
            graph.node(step.node).name,
            e.emitted() - before
        );
    }
    let prog = e.finish(plan.io)?;
    log::debug!(
        "compiled {} nodes into {} instructions, {} buffers",
        graph.nodes().len(),
        prog.insns().len(),
        prog.buffers().len()
    );
    Ok(prog)
}

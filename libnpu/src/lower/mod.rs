//! Lowering: from a [`Graph`] to a command buffer for one device.
//!
//! * `legalize`: int8 ops without an integer ISA form become
//!   dequantize -> f32 -> quantize;
//! * [`plan`]: memory planning: which buffer (input, output, scratch) and
//!   offset holds each value, and which ops fuse into their producer;
//! * [`emit`]: the instruction stream with VA relocations, and SRAM slots;
//! * [`ops`]: per-op tiling and instruction selection.
//!
//! The SRAM size comes from [`DeviceParams`] (read from the device's
//! SRAM_SIZE register); nothing here assumes a size.

mod emit;
mod legalize;
mod ops;
mod plan;

pub use emit::{BufferDesc, BufferKind, Program};

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
    /// Fuse a relu/clamp into the gemm/conv2d producing its operand.
    pub fuse: bool,
}

impl Default for CompileOptions {
    fn default() -> Self {
        CompileOptions {
            double_buffer: true,
            fuse: true,
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
    #[error("a size exceeds the ISA's 32-bit fields: {0}")]
    TooLarge(String),
}

/// Compile `graph` for a device with `params`.
pub fn compile(
    graph: &Graph,
    params: DeviceParams,
    opts: CompileOptions,
) -> Result<Program, LowerError> {
    graph.validate()?;
    let legal = legalize::legalize(graph)?;
    let graph = &legal;
    let plan = plan::plan(graph, opts)?;
    let mut e = emit::Emitter::new(params, opts, plan.buffers.clone());
    for step in &plan.steps {
        ops::lower_step(graph, &plan, step, &mut e)?;
    }
    let prog = e.finish(plan.io);
    log::debug!(
        "compiled {} nodes into {} instructions, {} buffers",
        graph.nodes().len(),
        prog.insns().len(),
        prog.buffers().len()
    );
    Ok(prog)
}

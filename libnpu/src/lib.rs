//! libnpu: the userspace half of the open NPU stack.
//!
//! Architecture (one module per stage):
//!
//! * [`ir`]: typed tensors and a graph of ops, with shape inference and
//!   validation;
//! * [`text`]: a small text form for kernels, parsed into the IR and printed
//!   back (Documentation/userspace/kernel-language.rst);
//! * [`reference`]: a CPU executor for every op, the oracle every device
//!   result is checked against (bit-exact for int8);
//! * [`lower`]: tiling for the device's SRAM size, memory planning and
//!   instruction emission through the shared `npu-isa` encoder;
//! * [`device`]: the NPU through the onpu driver's ioctls (buffers, dma-bufs,
//!   jobs, waits, job errors);
//! * [`runtime`]: sessions that compile for a device, run and check, on the
//!   driver or on the in-process device model;
//! * [`api`]: runtime API v1, what runtimes build on: devices, compiled
//!   models with resident constants, requests run from any thread, fences;
//! * [`capi`]: the C ABI (include/npu.h), [`api`] behind opaque handles.

pub mod api;
pub mod capi;
pub mod device;
pub mod ir;
pub mod lower;
pub mod reference;
pub mod runtime;
pub mod text;

pub use api::{CompiledModel, Fence, InferRequest, Npu, Status};
pub use ir::{DType, Graph, GraphError, Quant, TensorType, ValueId};
pub use lower::{compile, CompileOptions, DeviceParams, LowerError, Program};
/// The shared instruction-set crate, for callers that inspect programs.
pub use npu_isa as isa;
pub use reference::{Tensor, TensorData};
pub use runtime::{Kernel, Session};

/// The C API's version (include/npu.h's NPU_VERSION_*), "major.minor.patch".
pub const API_VERSION: &str = env!("NPU_API_VERSION");

// SPDX-License-Identifier: GPL-2.0-only

//! DRM_IOCTL_ONPU_QUERY: structured descriptions of the device
//! (Documentation/uapi/onpu.rst, "QUERY").
//!
//! Size protocol: the caller says how many bytes it has room for; the
//! driver writes at most that many (a prefix of the struct, so an older
//! program keeps working when a struct grows) and always returns the full
//! size; 0 asks only for the size.

use kernel::{
    drm,
    prelude::*,
    transmute::AsBytes,
    uaccess::{UserPtr, UserSlice},
};

use crate::drv::OnpuDevice;
use crate::engine::JOB_TIMEOUT_MS;
use crate::file::File;
use crate::mmu;
use crate::uapi;

/// A query's struct as bytes for userspace (the uAPI types belong to the
/// kernel's uapi crate, so `AsBytes` is implemented on this wrapper).
#[repr(transparent)]
struct QueryOut<T>(T);

// SAFETY: `#[repr(C)]` structs of u32/u64 fields laid out without padding
// (the sizes are checked below against the sums of their fields), so every
// byte is initialised; `QueryOut` is transparent.
unsafe impl AsBytes for QueryOut<uapi::drm_onpu_query_caps> {}
// SAFETY: as above.
unsafe impl AsBytes for QueryOut<uapi::drm_onpu_query_cost_model> {}

const _: () = {
    assert!(core::mem::size_of::<uapi::drm_onpu_query_caps>() == 12 * 4 + 2 * 8);
    assert!(core::mem::size_of::<uapi::drm_onpu_query_cost_model>() == 8 * 4);
};

/// DRM_IOCTL_ONPU_QUERY.
pub(crate) fn query(
    dev: &OnpuDevice,
    req: &mut uapi::drm_onpu_query,
    _file: &drm::File<File>,
) -> Result<u32> {
    if req.flags != 0 || req.pad != 0 {
        return Err(EINVAL);
    }
    let p = &dev.engine.params;
    match req.query {
        uapi::drm_onpu_query_type_DRM_ONPU_QUERY_CAPS => {
            let caps = uapi::drm_onpu_query_caps {
                device_id: p.device_id.into(),
                revision: p.revision.into(),
                isa_version: p.isa_version,
                caps: p.caps,
                sram_size: p.sram_size,
                num_contexts: p.contexts,
                num_rings: p.num_rings,
                va_bits: p.va_bits,
                va_start: mmu::VA_START,
                va_end: mmu::VA_END,
                clock_khz: p.clock_khz,
                max_job_bos: uapi::DRM_ONPU_MAX_JOB_BOS,
                max_cmdbuf_size: uapi::DRM_ONPU_MAX_CMDBUF_SIZE,
                job_timeout_ms: JOB_TIMEOUT_MS,
            };
            copy_out(req, &QueryOut(caps))
        }
        uapi::drm_onpu_query_type_DRM_ONPU_QUERY_COST_MODEL => {
            let [dma_bytes_per_cycle, dma_latency, f32_macs_per_cycle, i8_macs_per_cycle, vector_elems_per_cycle, special_elems_per_cycle, insn_overhead, walk_cycles] =
                p.cost;
            let cost = uapi::drm_onpu_query_cost_model {
                dma_bytes_per_cycle,
                dma_latency,
                f32_macs_per_cycle,
                i8_macs_per_cycle,
                vector_elems_per_cycle,
                special_elems_per_cycle,
                insn_overhead,
                walk_cycles,
            };
            copy_out(req, &QueryOut(cost))
        }
        _ => Err(EINVAL),
    }
}

/// Write the first `req.size` bytes of `value` (at most all of it) to
/// `req.data`; return its full size in `req.size`.
fn copy_out<T: AsBytes>(req: &mut uapi::drm_onpu_query, value: &T) -> Result<u32> {
    let bytes = value.as_bytes();
    let len = bytes.len().min(req.size as usize);
    if len > 0 {
        let addr = usize::try_from(req.data).map_err(|_| EFAULT)?;
        UserSlice::new(UserPtr::from_addr(addr), len)
            .writer()
            .write_slice(&bytes[..len])?;
    }
    req.size = bytes.len() as u32;
    Ok(0)
}

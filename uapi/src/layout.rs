//! The C header and the Rust ABI must agree: compile a C program against
//! include/uapi/drm/onpu_accel.h that prints every size, offset and ioctl
//! number, and compare with the Rust definitions. bindings.rs is generated
//! from that header, so this fails when it was not regenerated after a
//! change to the header (or bindgen and the C compiler disagree).

extern crate std;
use crate::*;
use core::mem::{offset_of, size_of};
use std::format;
use std::process::Command;
use std::string::String;
use std::vec::Vec;

/// A minimal drm.h: the real one comes with the kernel headers, which the
/// host need not have. Only what onpu_accel.h uses.
const DRM_H: &str = r#"
#include <linux/types.h>
#include <linux/ioctl.h>
#define DRM_IOCTL_BASE 'd'
#define DRM_IOWR(nr, type) _IOWR(DRM_IOCTL_BASE, nr, type)
#define DRM_IOW(nr, type) _IOW(DRM_IOCTL_BASE, nr, type)
#define DRM_COMMAND_BASE 0x40
"#;

const PROBE_C: &str = r#"
#include <stdio.h>
#include <stddef.h>
#include "onpu_accel.h"
#define SIZE(t) printf(#t ".sizeof=%zu\n", sizeof(struct t))
#define OFF(t, f) printf(#t "." #f "=%zu\n", offsetof(struct t, f))
#define NUM(n) printf(#n "=%lu\n", (unsigned long)(n))
int main(void) {
    SIZE(drm_onpu_get_param); OFF(drm_onpu_get_param, param); OFF(drm_onpu_get_param, pad); OFF(drm_onpu_get_param, value);
    NUM(DRM_IOCTL_ONPU_GET_PARAM); NUM(DRM_IOCTL_ONPU_BO_CREATE); NUM(DRM_IOCTL_ONPU_BO_INFO);
    NUM(DRM_ONPU_BO_MAX_SIZE);
    SIZE(drm_onpu_bo_create); OFF(drm_onpu_bo_create, size); OFF(drm_onpu_bo_create, flags); OFF(drm_onpu_bo_create, handle);
    SIZE(drm_onpu_bo_info); OFF(drm_onpu_bo_info, handle); OFF(drm_onpu_bo_info, flags); OFF(drm_onpu_bo_info, size); OFF(drm_onpu_bo_info, mmap_offset);
    NUM(DRM_ONPU_PARAM_DEVICE_ID); NUM(DRM_ONPU_PARAM_REVISION); NUM(DRM_ONPU_PARAM_ISA_VERSION);
    NUM(DRM_ONPU_PARAM_SRAM_SIZE); NUM(DRM_ONPU_PARAM_NUM_CONTEXTS); NUM(DRM_ONPU_PARAM_VA_BITS);
    NUM(DRM_ONPU_PARAM_CAPS); NUM(DRM_ONPU_PARAM_CLOCK_KHZ);
    NUM(DRM_ONPU_PARAM_VA_START); NUM(DRM_ONPU_PARAM_VA_END);
    NUM(DRM_ONPU_PARAM_JOB_TIMEOUT_MS); NUM(DRM_ONPU_PARAM_NUM_PRIORITIES); NUM(DRM_ONPU_PARAM_COUNT);
    NUM(DRM_IOCTL_ONPU_QUERY); NUM(DRM_ONPU_QUERY_CAPS); NUM(DRM_ONPU_QUERY_COST_MODEL);
    SIZE(drm_onpu_query); OFF(drm_onpu_query, query); OFF(drm_onpu_query, flags); OFF(drm_onpu_query, size);
    OFF(drm_onpu_query, pad); OFF(drm_onpu_query, data);
    SIZE(drm_onpu_query_caps); OFF(drm_onpu_query_caps, device_id); OFF(drm_onpu_query_caps, revision);
    OFF(drm_onpu_query_caps, isa_version); OFF(drm_onpu_query_caps, caps); OFF(drm_onpu_query_caps, sram_size);
    OFF(drm_onpu_query_caps, num_contexts); OFF(drm_onpu_query_caps, num_rings); OFF(drm_onpu_query_caps, va_bits);
    OFF(drm_onpu_query_caps, va_start); OFF(drm_onpu_query_caps, va_end); OFF(drm_onpu_query_caps, clock_khz);
    OFF(drm_onpu_query_caps, max_job_bos); OFF(drm_onpu_query_caps, max_cmdbuf_size); OFF(drm_onpu_query_caps, job_timeout_ms);
    SIZE(drm_onpu_query_cost_model); OFF(drm_onpu_query_cost_model, dma_bytes_per_cycle);
    OFF(drm_onpu_query_cost_model, dma_latency); OFF(drm_onpu_query_cost_model, f32_macs_per_cycle);
    OFF(drm_onpu_query_cost_model, i8_macs_per_cycle); OFF(drm_onpu_query_cost_model, vector_elems_per_cycle);
    OFF(drm_onpu_query_cost_model, special_elems_per_cycle); OFF(drm_onpu_query_cost_model, insn_overhead);
    OFF(drm_onpu_query_cost_model, walk_cycles);
    OFF(drm_onpu_bo_create, npu_addr); OFF(drm_onpu_bo_info, npu_addr);
    OFF(drm_onpu_bo_info, bo_flags); OFF(drm_onpu_bo_info, pad);
    NUM(DRM_IOCTL_ONPU_BO_CREATE_USERPTR); SIZE(drm_onpu_bo_create_userptr);
    OFF(drm_onpu_bo_create_userptr, user_ptr); OFF(drm_onpu_bo_create_userptr, size);
    OFF(drm_onpu_bo_create_userptr, flags); OFF(drm_onpu_bo_create_userptr, handle);
    OFF(drm_onpu_bo_create_userptr, npu_addr);
    NUM(DRM_ONPU_BO_READ_ONLY); NUM(DRM_ONPU_BO_NO_MMAP); NUM(DRM_ONPU_BO_CPU_WC); NUM(DRM_ONPU_BO_CREATE_FLAGS);
    NUM(DRM_IOCTL_ONPU_QUEUE_CREATE);
    NUM(DRM_IOCTL_ONPU_QUEUE_DESTROY);
    NUM(DRM_IOCTL_ONPU_SUBMIT);
    NUM(DRM_IOCTL_ONPU_WAIT);
    NUM(DRM_IOCTL_ONPU_WAIT_BO);
    NUM(DRM_ONPU_PRIORITY_LOW);
    NUM(DRM_ONPU_PRIORITY_NORMAL);
    NUM(DRM_ONPU_PRIORITY_HIGH);
    NUM(DRM_ONPU_PRIORITY_REALTIME);
    NUM(DRM_ONPU_MAX_QUEUES);
    NUM(DRM_ONPU_MAX_QUEUE_JOBS);
    NUM(DRM_ONPU_BO_READ);
    NUM(DRM_ONPU_BO_WRITE);
    NUM(DRM_ONPU_MAX_JOB_BOS);
    NUM(DRM_ONPU_MAX_IN_SYNCS);
    NUM(DRM_ONPU_MAX_OUT_SYNCS);
    NUM(DRM_ONPU_MAX_CMDBUF_SIZE);
    NUM(DRM_ONPU_INSN_SIZE);
    NUM(DRM_ONPU_SYNC_WAIT_FOR_SUBMIT);
    NUM(DRM_ONPU_SUBMIT_PROFILE);
    NUM(DRM_ONPU_JOB_OK);
    NUM(DRM_ONPU_JOB_TIMEDOUT);
    NUM(DRM_ONPU_JOB_CANCELED);
    SIZE(drm_onpu_queue_create); OFF(drm_onpu_queue_create, context_id); OFF(drm_onpu_queue_create, priority); OFF(drm_onpu_queue_create, flags); OFF(drm_onpu_queue_create, queue_id);
    SIZE(drm_onpu_queue_destroy); OFF(drm_onpu_queue_destroy, queue_id); OFF(drm_onpu_queue_destroy, pad);
    SIZE(drm_onpu_obj_array); OFF(drm_onpu_obj_array, stride); OFF(drm_onpu_obj_array, count); OFF(drm_onpu_obj_array, array);
    SIZE(drm_onpu_bo_ref); OFF(drm_onpu_bo_ref, handle); OFF(drm_onpu_bo_ref, flags);
    SIZE(drm_onpu_sync); OFF(drm_onpu_sync, handle); OFF(drm_onpu_sync, flags); OFF(drm_onpu_sync, point);
    SIZE(drm_onpu_submit); OFF(drm_onpu_submit, queue_id); OFF(drm_onpu_submit, flags); OFF(drm_onpu_submit, cmdbuf_handle); OFF(drm_onpu_submit, cmdbuf_size); OFF(drm_onpu_submit, cmdbuf_offset); OFF(drm_onpu_submit, bos); OFF(drm_onpu_submit, in_syncs); OFF(drm_onpu_submit, out_syncs); OFF(drm_onpu_submit, timeout_ms); OFF(drm_onpu_submit, pad); OFF(drm_onpu_submit, seqno);
    SIZE(drm_onpu_job_profile); OFF(drm_onpu_job_profile, cycles); OFF(drm_onpu_job_profile, instructions); OFF(drm_onpu_job_profile, macs); OFF(drm_onpu_job_profile, dma_bytes_read); OFF(drm_onpu_job_profile, dma_bytes_written); OFF(drm_onpu_job_profile, dma_engine_cycles); OFF(drm_onpu_job_profile, compute_engine_cycles); OFF(drm_onpu_job_profile, reserved);
    SIZE(drm_onpu_wait); OFF(drm_onpu_wait, seqno); OFF(drm_onpu_wait, timeout_abs_ns); OFF(drm_onpu_wait, flags); OFF(drm_onpu_wait, status); OFF(drm_onpu_wait, error); OFF(drm_onpu_wait, profile_size); OFF(drm_onpu_wait, fault_addr); OFF(drm_onpu_wait, cycles); OFF(drm_onpu_wait, profile);
    SIZE(drm_onpu_wait_bo); OFF(drm_onpu_wait_bo, handle); OFF(drm_onpu_wait_bo, flags); OFF(drm_onpu_wait_bo, timeout_abs_ns);
    NUM(DRM_IOCTL_ONPU_CONTEXT_CREATE); NUM(DRM_IOCTL_ONPU_CONTEXT_DESTROY); NUM(DRM_ONPU_MAX_CONTEXTS);
    SIZE(drm_onpu_context_create); OFF(drm_onpu_context_create, flags); OFF(drm_onpu_context_create, context_id);
    SIZE(drm_onpu_context_destroy); OFF(drm_onpu_context_destroy, context_id); OFF(drm_onpu_context_destroy, pad);
    return 0;
}
"#;

fn c_values() -> Vec<(String, u64)> {
    let dir = std::env::temp_dir().join(format!("onpu-uapi-layout-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    std::fs::write(dir.join("drm.h"), DRM_H).expect("drm.h");
    std::fs::write(dir.join("probe.c"), PROBE_C).expect("probe.c");
    let header_dir = concat!(env!("CARGO_MANIFEST_DIR"), "/include/uapi/drm");
    let exe = dir.join("probe");
    let cc = Command::new(std::env::var("CC").unwrap_or_else(|_| "cc".into()))
        .args(["-std=c11", "-Wall", "-Werror", "-I"])
        .arg(&dir)
        .arg("-I")
        .arg(header_dir)
        .arg(dir.join("probe.c"))
        .arg("-o")
        .arg(&exe)
        .output()
        .expect("run the C compiler");
    assert!(
        cc.status.success(),
        "C header does not compile:\n{}",
        String::from_utf8_lossy(&cc.stderr)
    );
    let out = Command::new(&exe).output().expect("run probe");
    let _ = std::fs::remove_dir_all(&dir);
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| {
            l.split_once('=')
                .map(|(k, v)| (k.into(), v.parse().expect("number")))
        })
        .collect()
}

#[test]
fn c_header_matches_the_rust_abi() {
    let rust: &[(&str, u64)] = &[
        (
            "drm_onpu_get_param.sizeof",
            size_of::<drm_onpu_get_param>() as u64,
        ),
        (
            "drm_onpu_get_param.param",
            offset_of!(drm_onpu_get_param, param) as u64,
        ),
        (
            "drm_onpu_get_param.pad",
            offset_of!(drm_onpu_get_param, pad) as u64,
        ),
        (
            "drm_onpu_get_param.value",
            offset_of!(drm_onpu_get_param, value) as u64,
        ),
        ("DRM_IOCTL_ONPU_GET_PARAM", DRM_IOCTL_ONPU_GET_PARAM as u64),
        ("DRM_IOCTL_ONPU_BO_CREATE", DRM_IOCTL_ONPU_BO_CREATE as u64),
        ("DRM_IOCTL_ONPU_BO_INFO", DRM_IOCTL_ONPU_BO_INFO as u64),
        ("DRM_ONPU_BO_MAX_SIZE", DRM_ONPU_BO_MAX_SIZE),
        (
            "drm_onpu_bo_create.size",
            offset_of!(drm_onpu_bo_create, size) as u64,
        ),
        (
            "drm_onpu_bo_create.flags",
            offset_of!(drm_onpu_bo_create, flags) as u64,
        ),
        (
            "drm_onpu_bo_create.handle",
            offset_of!(drm_onpu_bo_create, handle) as u64,
        ),
        (
            "drm_onpu_bo_create.sizeof",
            size_of::<drm_onpu_bo_create>() as u64,
        ),
        (
            "drm_onpu_bo_info.handle",
            offset_of!(drm_onpu_bo_info, handle) as u64,
        ),
        (
            "drm_onpu_bo_info.flags",
            offset_of!(drm_onpu_bo_info, flags) as u64,
        ),
        (
            "drm_onpu_bo_info.size",
            offset_of!(drm_onpu_bo_info, size) as u64,
        ),
        (
            "drm_onpu_bo_info.mmap_offset",
            offset_of!(drm_onpu_bo_info, mmap_offset) as u64,
        ),
        (
            "drm_onpu_bo_info.sizeof",
            size_of::<drm_onpu_bo_info>() as u64,
        ),
        (
            "drm_onpu_bo_info.bo_flags",
            offset_of!(drm_onpu_bo_info, bo_flags) as u64,
        ),
        (
            "drm_onpu_bo_info.pad",
            offset_of!(drm_onpu_bo_info, pad) as u64,
        ),
        ("DRM_ONPU_BO_READ_ONLY", DRM_ONPU_BO_READ_ONLY as u64),
        (
            "DRM_IOCTL_ONPU_BO_CREATE_USERPTR",
            DRM_IOCTL_ONPU_BO_CREATE_USERPTR as u64,
        ),
        (
            "drm_onpu_bo_create_userptr.sizeof",
            size_of::<drm_onpu_bo_create_userptr>() as u64,
        ),
        (
            "drm_onpu_bo_create_userptr.user_ptr",
            offset_of!(drm_onpu_bo_create_userptr, user_ptr) as u64,
        ),
        (
            "drm_onpu_bo_create_userptr.size",
            offset_of!(drm_onpu_bo_create_userptr, size) as u64,
        ),
        (
            "drm_onpu_bo_create_userptr.flags",
            offset_of!(drm_onpu_bo_create_userptr, flags) as u64,
        ),
        (
            "drm_onpu_bo_create_userptr.handle",
            offset_of!(drm_onpu_bo_create_userptr, handle) as u64,
        ),
        (
            "drm_onpu_bo_create_userptr.npu_addr",
            offset_of!(drm_onpu_bo_create_userptr, npu_addr) as u64,
        ),
        ("DRM_ONPU_BO_NO_MMAP", DRM_ONPU_BO_NO_MMAP as u64),
        ("DRM_ONPU_BO_CPU_WC", DRM_ONPU_BO_CPU_WC as u64),
        ("DRM_ONPU_BO_CREATE_FLAGS", DRM_ONPU_BO_CREATE_FLAGS as u64),
        ("DRM_ONPU_PARAM_DEVICE_ID", DRM_ONPU_PARAM_DEVICE_ID as u64),
        ("DRM_ONPU_PARAM_REVISION", DRM_ONPU_PARAM_REVISION as u64),
        (
            "DRM_ONPU_PARAM_ISA_VERSION",
            DRM_ONPU_PARAM_ISA_VERSION as u64,
        ),
        ("DRM_ONPU_PARAM_SRAM_SIZE", DRM_ONPU_PARAM_SRAM_SIZE as u64),
        (
            "DRM_ONPU_PARAM_NUM_CONTEXTS",
            DRM_ONPU_PARAM_NUM_CONTEXTS as u64,
        ),
        ("DRM_ONPU_PARAM_VA_BITS", DRM_ONPU_PARAM_VA_BITS as u64),
        ("DRM_ONPU_PARAM_CAPS", DRM_ONPU_PARAM_CAPS as u64),
        ("DRM_ONPU_PARAM_CLOCK_KHZ", DRM_ONPU_PARAM_CLOCK_KHZ as u64),
        ("DRM_ONPU_PARAM_VA_START", DRM_ONPU_PARAM_VA_START as u64),
        ("DRM_ONPU_PARAM_VA_END", DRM_ONPU_PARAM_VA_END as u64),
        (
            "DRM_ONPU_PARAM_JOB_TIMEOUT_MS",
            DRM_ONPU_PARAM_JOB_TIMEOUT_MS as u64,
        ),
        (
            "DRM_ONPU_PARAM_NUM_PRIORITIES",
            DRM_ONPU_PARAM_NUM_PRIORITIES as u64,
        ),
        ("DRM_ONPU_PARAM_COUNT", DRM_ONPU_PARAM_COUNT as u64),
        ("DRM_IOCTL_ONPU_QUERY", DRM_IOCTL_ONPU_QUERY as u64),
        ("DRM_ONPU_QUERY_CAPS", DRM_ONPU_QUERY_CAPS as u64),
        (
            "DRM_ONPU_QUERY_COST_MODEL",
            DRM_ONPU_QUERY_COST_MODEL as u64,
        ),
        ("drm_onpu_query.sizeof", size_of::<drm_onpu_query>() as u64),
        (
            "drm_onpu_query.query",
            offset_of!(drm_onpu_query, query) as u64,
        ),
        (
            "drm_onpu_query.flags",
            offset_of!(drm_onpu_query, flags) as u64,
        ),
        (
            "drm_onpu_query.size",
            offset_of!(drm_onpu_query, size) as u64,
        ),
        ("drm_onpu_query.pad", offset_of!(drm_onpu_query, pad) as u64),
        (
            "drm_onpu_query.data",
            offset_of!(drm_onpu_query, data) as u64,
        ),
        (
            "drm_onpu_query_caps.sizeof",
            size_of::<drm_onpu_query_caps>() as u64,
        ),
        (
            "drm_onpu_query_caps.device_id",
            offset_of!(drm_onpu_query_caps, device_id) as u64,
        ),
        (
            "drm_onpu_query_caps.revision",
            offset_of!(drm_onpu_query_caps, revision) as u64,
        ),
        (
            "drm_onpu_query_caps.isa_version",
            offset_of!(drm_onpu_query_caps, isa_version) as u64,
        ),
        (
            "drm_onpu_query_caps.caps",
            offset_of!(drm_onpu_query_caps, caps) as u64,
        ),
        (
            "drm_onpu_query_caps.sram_size",
            offset_of!(drm_onpu_query_caps, sram_size) as u64,
        ),
        (
            "drm_onpu_query_caps.num_contexts",
            offset_of!(drm_onpu_query_caps, num_contexts) as u64,
        ),
        (
            "drm_onpu_query_caps.num_rings",
            offset_of!(drm_onpu_query_caps, num_rings) as u64,
        ),
        (
            "drm_onpu_query_caps.va_bits",
            offset_of!(drm_onpu_query_caps, va_bits) as u64,
        ),
        (
            "drm_onpu_query_caps.va_start",
            offset_of!(drm_onpu_query_caps, va_start) as u64,
        ),
        (
            "drm_onpu_query_caps.va_end",
            offset_of!(drm_onpu_query_caps, va_end) as u64,
        ),
        (
            "drm_onpu_query_caps.clock_khz",
            offset_of!(drm_onpu_query_caps, clock_khz) as u64,
        ),
        (
            "drm_onpu_query_caps.max_job_bos",
            offset_of!(drm_onpu_query_caps, max_job_bos) as u64,
        ),
        (
            "drm_onpu_query_caps.max_cmdbuf_size",
            offset_of!(drm_onpu_query_caps, max_cmdbuf_size) as u64,
        ),
        (
            "drm_onpu_query_caps.job_timeout_ms",
            offset_of!(drm_onpu_query_caps, job_timeout_ms) as u64,
        ),
        (
            "drm_onpu_query_cost_model.sizeof",
            size_of::<drm_onpu_query_cost_model>() as u64,
        ),
        (
            "drm_onpu_query_cost_model.dma_bytes_per_cycle",
            offset_of!(drm_onpu_query_cost_model, dma_bytes_per_cycle) as u64,
        ),
        (
            "drm_onpu_query_cost_model.dma_latency",
            offset_of!(drm_onpu_query_cost_model, dma_latency) as u64,
        ),
        (
            "drm_onpu_query_cost_model.f32_macs_per_cycle",
            offset_of!(drm_onpu_query_cost_model, f32_macs_per_cycle) as u64,
        ),
        (
            "drm_onpu_query_cost_model.i8_macs_per_cycle",
            offset_of!(drm_onpu_query_cost_model, i8_macs_per_cycle) as u64,
        ),
        (
            "drm_onpu_query_cost_model.vector_elems_per_cycle",
            offset_of!(drm_onpu_query_cost_model, vector_elems_per_cycle) as u64,
        ),
        (
            "drm_onpu_query_cost_model.special_elems_per_cycle",
            offset_of!(drm_onpu_query_cost_model, special_elems_per_cycle) as u64,
        ),
        (
            "drm_onpu_query_cost_model.insn_overhead",
            offset_of!(drm_onpu_query_cost_model, insn_overhead) as u64,
        ),
        (
            "drm_onpu_query_cost_model.walk_cycles",
            offset_of!(drm_onpu_query_cost_model, walk_cycles) as u64,
        ),
        (
            "drm_onpu_bo_create.npu_addr",
            offset_of!(drm_onpu_bo_create, npu_addr) as u64,
        ),
        (
            "drm_onpu_bo_info.npu_addr",
            offset_of!(drm_onpu_bo_info, npu_addr) as u64,
        ),
        (
            "DRM_IOCTL_ONPU_QUEUE_CREATE",
            DRM_IOCTL_ONPU_QUEUE_CREATE as u64,
        ),
        (
            "DRM_IOCTL_ONPU_QUEUE_DESTROY",
            DRM_IOCTL_ONPU_QUEUE_DESTROY as u64,
        ),
        ("DRM_IOCTL_ONPU_SUBMIT", DRM_IOCTL_ONPU_SUBMIT as u64),
        ("DRM_IOCTL_ONPU_WAIT", DRM_IOCTL_ONPU_WAIT as u64),
        ("DRM_IOCTL_ONPU_WAIT_BO", DRM_IOCTL_ONPU_WAIT_BO as u64),
        ("DRM_ONPU_PRIORITY_LOW", DRM_ONPU_PRIORITY_LOW as u64),
        ("DRM_ONPU_PRIORITY_NORMAL", DRM_ONPU_PRIORITY_NORMAL as u64),
        ("DRM_ONPU_PRIORITY_HIGH", DRM_ONPU_PRIORITY_HIGH as u64),
        (
            "DRM_ONPU_PRIORITY_REALTIME",
            DRM_ONPU_PRIORITY_REALTIME as u64,
        ),
        ("DRM_ONPU_MAX_QUEUES", DRM_ONPU_MAX_QUEUES as u64),
        ("DRM_ONPU_MAX_QUEUE_JOBS", DRM_ONPU_MAX_QUEUE_JOBS as u64),
        ("DRM_ONPU_BO_READ", DRM_ONPU_BO_READ as u64),
        ("DRM_ONPU_BO_WRITE", DRM_ONPU_BO_WRITE as u64),
        ("DRM_ONPU_MAX_JOB_BOS", DRM_ONPU_MAX_JOB_BOS as u64),
        ("DRM_ONPU_MAX_IN_SYNCS", DRM_ONPU_MAX_IN_SYNCS as u64),
        ("DRM_ONPU_MAX_OUT_SYNCS", DRM_ONPU_MAX_OUT_SYNCS as u64),
        ("DRM_ONPU_MAX_CMDBUF_SIZE", DRM_ONPU_MAX_CMDBUF_SIZE as u64),
        ("DRM_ONPU_INSN_SIZE", DRM_ONPU_INSN_SIZE as u64),
        (
            "DRM_ONPU_SYNC_WAIT_FOR_SUBMIT",
            DRM_ONPU_SYNC_WAIT_FOR_SUBMIT as u64,
        ),
        ("DRM_ONPU_SUBMIT_PROFILE", DRM_ONPU_SUBMIT_PROFILE as u64),
        ("DRM_ONPU_JOB_OK", DRM_ONPU_JOB_OK as u64),
        ("DRM_ONPU_JOB_TIMEDOUT", DRM_ONPU_JOB_TIMEDOUT as u64),
        ("DRM_ONPU_JOB_CANCELED", DRM_ONPU_JOB_CANCELED as u64),
        (
            "drm_onpu_queue_create.sizeof",
            size_of::<drm_onpu_queue_create>() as u64,
        ),
        (
            "drm_onpu_queue_create.context_id",
            offset_of!(drm_onpu_queue_create, context_id) as u64,
        ),
        (
            "drm_onpu_queue_create.priority",
            offset_of!(drm_onpu_queue_create, priority) as u64,
        ),
        (
            "drm_onpu_queue_create.flags",
            offset_of!(drm_onpu_queue_create, flags) as u64,
        ),
        (
            "drm_onpu_queue_create.queue_id",
            offset_of!(drm_onpu_queue_create, queue_id) as u64,
        ),
        (
            "drm_onpu_queue_destroy.sizeof",
            size_of::<drm_onpu_queue_destroy>() as u64,
        ),
        (
            "drm_onpu_queue_destroy.queue_id",
            offset_of!(drm_onpu_queue_destroy, queue_id) as u64,
        ),
        (
            "drm_onpu_queue_destroy.pad",
            offset_of!(drm_onpu_queue_destroy, pad) as u64,
        ),
        (
            "drm_onpu_obj_array.sizeof",
            size_of::<drm_onpu_obj_array>() as u64,
        ),
        (
            "drm_onpu_obj_array.stride",
            offset_of!(drm_onpu_obj_array, stride) as u64,
        ),
        (
            "drm_onpu_obj_array.count",
            offset_of!(drm_onpu_obj_array, count) as u64,
        ),
        (
            "drm_onpu_obj_array.array",
            offset_of!(drm_onpu_obj_array, array) as u64,
        ),
        (
            "drm_onpu_bo_ref.sizeof",
            size_of::<drm_onpu_bo_ref>() as u64,
        ),
        (
            "drm_onpu_bo_ref.handle",
            offset_of!(drm_onpu_bo_ref, handle) as u64,
        ),
        (
            "drm_onpu_bo_ref.flags",
            offset_of!(drm_onpu_bo_ref, flags) as u64,
        ),
        ("drm_onpu_sync.sizeof", size_of::<drm_onpu_sync>() as u64),
        (
            "drm_onpu_sync.handle",
            offset_of!(drm_onpu_sync, handle) as u64,
        ),
        (
            "drm_onpu_sync.flags",
            offset_of!(drm_onpu_sync, flags) as u64,
        ),
        (
            "drm_onpu_sync.point",
            offset_of!(drm_onpu_sync, point) as u64,
        ),
        (
            "drm_onpu_submit.sizeof",
            size_of::<drm_onpu_submit>() as u64,
        ),
        (
            "drm_onpu_submit.queue_id",
            offset_of!(drm_onpu_submit, queue_id) as u64,
        ),
        (
            "drm_onpu_submit.flags",
            offset_of!(drm_onpu_submit, flags) as u64,
        ),
        (
            "drm_onpu_submit.cmdbuf_handle",
            offset_of!(drm_onpu_submit, cmdbuf_handle) as u64,
        ),
        (
            "drm_onpu_submit.cmdbuf_size",
            offset_of!(drm_onpu_submit, cmdbuf_size) as u64,
        ),
        (
            "drm_onpu_submit.cmdbuf_offset",
            offset_of!(drm_onpu_submit, cmdbuf_offset) as u64,
        ),
        (
            "drm_onpu_submit.bos",
            offset_of!(drm_onpu_submit, bos) as u64,
        ),
        (
            "drm_onpu_submit.in_syncs",
            offset_of!(drm_onpu_submit, in_syncs) as u64,
        ),
        (
            "drm_onpu_submit.out_syncs",
            offset_of!(drm_onpu_submit, out_syncs) as u64,
        ),
        (
            "drm_onpu_submit.timeout_ms",
            offset_of!(drm_onpu_submit, timeout_ms) as u64,
        ),
        (
            "drm_onpu_submit.pad",
            offset_of!(drm_onpu_submit, pad) as u64,
        ),
        (
            "drm_onpu_submit.seqno",
            offset_of!(drm_onpu_submit, seqno) as u64,
        ),
        (
            "drm_onpu_job_profile.sizeof",
            size_of::<drm_onpu_job_profile>() as u64,
        ),
        (
            "drm_onpu_job_profile.cycles",
            offset_of!(drm_onpu_job_profile, cycles) as u64,
        ),
        (
            "drm_onpu_job_profile.instructions",
            offset_of!(drm_onpu_job_profile, instructions) as u64,
        ),
        (
            "drm_onpu_job_profile.macs",
            offset_of!(drm_onpu_job_profile, macs) as u64,
        ),
        (
            "drm_onpu_job_profile.dma_bytes_read",
            offset_of!(drm_onpu_job_profile, dma_bytes_read) as u64,
        ),
        (
            "drm_onpu_job_profile.dma_bytes_written",
            offset_of!(drm_onpu_job_profile, dma_bytes_written) as u64,
        ),
        (
            "drm_onpu_job_profile.dma_engine_cycles",
            offset_of!(drm_onpu_job_profile, dma_engine_cycles) as u64,
        ),
        (
            "drm_onpu_job_profile.compute_engine_cycles",
            offset_of!(drm_onpu_job_profile, compute_engine_cycles) as u64,
        ),
        (
            "drm_onpu_job_profile.reserved",
            offset_of!(drm_onpu_job_profile, reserved) as u64,
        ),
        ("drm_onpu_wait.sizeof", size_of::<drm_onpu_wait>() as u64),
        (
            "drm_onpu_wait.seqno",
            offset_of!(drm_onpu_wait, seqno) as u64,
        ),
        (
            "drm_onpu_wait.timeout_abs_ns",
            offset_of!(drm_onpu_wait, timeout_abs_ns) as u64,
        ),
        (
            "drm_onpu_wait.flags",
            offset_of!(drm_onpu_wait, flags) as u64,
        ),
        (
            "drm_onpu_wait.status",
            offset_of!(drm_onpu_wait, status) as u64,
        ),
        (
            "drm_onpu_wait.error",
            offset_of!(drm_onpu_wait, error) as u64,
        ),
        (
            "drm_onpu_wait.profile_size",
            offset_of!(drm_onpu_wait, profile_size) as u64,
        ),
        (
            "drm_onpu_wait.fault_addr",
            offset_of!(drm_onpu_wait, fault_addr) as u64,
        ),
        (
            "drm_onpu_wait.cycles",
            offset_of!(drm_onpu_wait, cycles) as u64,
        ),
        (
            "drm_onpu_wait.profile",
            offset_of!(drm_onpu_wait, profile) as u64,
        ),
        (
            "drm_onpu_wait_bo.sizeof",
            size_of::<drm_onpu_wait_bo>() as u64,
        ),
        (
            "drm_onpu_wait_bo.handle",
            offset_of!(drm_onpu_wait_bo, handle) as u64,
        ),
        (
            "drm_onpu_wait_bo.flags",
            offset_of!(drm_onpu_wait_bo, flags) as u64,
        ),
        (
            "drm_onpu_wait_bo.timeout_abs_ns",
            offset_of!(drm_onpu_wait_bo, timeout_abs_ns) as u64,
        ),
        (
            "DRM_IOCTL_ONPU_CONTEXT_CREATE",
            DRM_IOCTL_ONPU_CONTEXT_CREATE as u64,
        ),
        (
            "DRM_IOCTL_ONPU_CONTEXT_DESTROY",
            DRM_IOCTL_ONPU_CONTEXT_DESTROY as u64,
        ),
        ("DRM_ONPU_MAX_CONTEXTS", DRM_ONPU_MAX_CONTEXTS as u64),
        (
            "drm_onpu_context_create.sizeof",
            size_of::<drm_onpu_context_create>() as u64,
        ),
        (
            "drm_onpu_context_create.flags",
            offset_of!(drm_onpu_context_create, flags) as u64,
        ),
        (
            "drm_onpu_context_create.context_id",
            offset_of!(drm_onpu_context_create, context_id) as u64,
        ),
        (
            "drm_onpu_context_destroy.sizeof",
            size_of::<drm_onpu_context_destroy>() as u64,
        ),
        (
            "drm_onpu_context_destroy.context_id",
            offset_of!(drm_onpu_context_destroy, context_id) as u64,
        ),
        (
            "drm_onpu_context_destroy.pad",
            offset_of!(drm_onpu_context_destroy, pad) as u64,
        ),
    ];
    let c = c_values();
    assert_eq!(
        c.len(),
        rust.len(),
        "the C probe and the Rust list must name the same items"
    );
    for (name, value) in rust {
        let cv = c.iter().find(|(n, _)| n == name).map(|(_, v)| *v);
        assert_eq!(cv, Some(*value), "{name}: C says {cv:?}, Rust says {value}");
    }
}

#[test]
fn query_structs_have_the_designed_sizes() {
    // By hand from the field lists: 8 u32 + 2 u64 + 4 u32; 8 u32; 4 u32 + u64.
    assert_eq!(size_of::<drm_onpu_query_caps>(), 64);
    assert_eq!(size_of::<drm_onpu_query_cost_model>(), 32);
    assert_eq!(size_of::<drm_onpu_query>(), 24);
    // _IOWR('d', 0x41, 24).
    assert_eq!(DRM_IOCTL_ONPU_QUERY, 0xc018_6441);
}

#[test]
fn ioctl_number_encodes_direction_size_and_command() {
    // _IOWR('d', 0x40, 16) as computed by hand.
    assert_eq!(DRM_IOCTL_ONPU_GET_PARAM, 0xc010_6440);
    // _IOW('d', 0x4b, 16): direction 1 (write) in bits 30-31.
    assert_eq!(DRM_IOCTL_ONPU_WAIT_BO, 0x4010_644b);
    // _IOWR('d', 0x49, 88): SUBMIT's 88 bytes.
    assert_eq!(DRM_IOCTL_ONPU_SUBMIT, 0xc058_6449);
    // _IOW('d', 0x46, 8): write only, 8 bytes, command 0x40 + 6.
    assert_eq!(DRM_IOCTL_ONPU_CONTEXT_DESTROY, 0x4008_6446);
}

#[test]
fn drm_core_numbers_and_sizes_match_drm_h() {
    use crate::drm_core::*;
    // The values of drm.h's DRM_IOW(0x09, ...) and DRM_IOWR(0x2d/0x2e,
    // ...), computed by hand from the structs' sizes.
    assert_eq!(DRM_IOCTL_GEM_CLOSE, 0x4008_6409);
    assert_eq!(DRM_IOCTL_PRIME_HANDLE_TO_FD, 0xc00c_642d);
    assert_eq!(DRM_IOCTL_PRIME_FD_TO_HANDLE, 0xc00c_642e);
    // DRM_IOWR(0xBF..0xC3, ...).
    assert_eq!(DRM_IOCTL_SYNCOBJ_CREATE, 0xc008_64bf);
    assert_eq!(DRM_IOCTL_SYNCOBJ_DESTROY, 0xc008_64c0);
    assert_eq!(DRM_IOCTL_SYNCOBJ_HANDLE_TO_FD, 0xc010_64c1);
    assert_eq!(DRM_IOCTL_SYNCOBJ_FD_TO_HANDLE, 0xc010_64c2);
    assert_eq!(DRM_IOCTL_SYNCOBJ_WAIT, 0xc028_64c3);
    // DRM_IOWR(0xC5, 16 bytes), DRM_IOWR(0xCB/0xCD, 24 bytes).
    assert_eq!(DRM_IOCTL_SYNCOBJ_SIGNAL, 0xc010_64c5);
    assert_eq!(DRM_IOCTL_SYNCOBJ_QUERY, 0xc018_64cb);
    assert_eq!(DRM_IOCTL_SYNCOBJ_TIMELINE_SIGNAL, 0xc018_64cd);
    assert_eq!(size_of::<drm_syncobj_wait>(), 40);
    assert_eq!(offset_of!(drm_syncobj_wait, deadline_nsec), 32);
    // O_CLOEXEC and O_RDWR on Linux.
    assert_eq!(DRM_CLOEXEC, 0o2000000);
    assert_eq!(DRM_RDWR, 0o2);
    assert_eq!(DRM_IOCTL_BASE, b'd');
}

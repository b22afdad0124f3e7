//! The C header and the Rust ABI must agree: compile a C program against
//! include/uapi/drm/onpu_accel.h that prints every size, offset and ioctl
//! number, and compare with the Rust definitions.

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
    assert!(cc.status.success(), "C header does not compile:\n{}", String::from_utf8_lossy(&cc.stderr));
    let out = Command::new(&exe).output().expect("run probe");
    let _ = std::fs::remove_dir_all(&dir);
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split_once('=').map(|(k, v)| (k.into(), v.parse().expect("number"))))
        .collect()
}

#[test]
fn c_header_matches_the_rust_abi() {
    let rust: &[(&str, u64)] = &[
        ("drm_onpu_get_param.sizeof", size_of::<drm_onpu_get_param>() as u64),
        ("drm_onpu_get_param.param", offset_of!(drm_onpu_get_param, param) as u64),
        ("drm_onpu_get_param.pad", offset_of!(drm_onpu_get_param, pad) as u64),
        ("drm_onpu_get_param.value", offset_of!(drm_onpu_get_param, value) as u64),
        ("DRM_IOCTL_ONPU_GET_PARAM", DRM_IOCTL_ONPU_GET_PARAM as u64),
        ("DRM_IOCTL_ONPU_BO_CREATE", DRM_IOCTL_ONPU_BO_CREATE as u64),
        ("DRM_IOCTL_ONPU_BO_INFO", DRM_IOCTL_ONPU_BO_INFO as u64),
        ("DRM_ONPU_BO_MAX_SIZE", DRM_ONPU_BO_MAX_SIZE),
        ("drm_onpu_bo_create.size", offset_of!(drm_onpu_bo_create, size) as u64),
        ("drm_onpu_bo_create.flags", offset_of!(drm_onpu_bo_create, flags) as u64),
        ("drm_onpu_bo_create.handle", offset_of!(drm_onpu_bo_create, handle) as u64),
        ("drm_onpu_bo_create.sizeof", size_of::<drm_onpu_bo_create>() as u64),
        ("drm_onpu_bo_info.handle", offset_of!(drm_onpu_bo_info, handle) as u64),
        ("drm_onpu_bo_info.flags", offset_of!(drm_onpu_bo_info, flags) as u64),
        ("drm_onpu_bo_info.size", offset_of!(drm_onpu_bo_info, size) as u64),
        ("drm_onpu_bo_info.mmap_offset", offset_of!(drm_onpu_bo_info, mmap_offset) as u64),
        ("drm_onpu_bo_info.sizeof", size_of::<drm_onpu_bo_info>() as u64),
        ("DRM_ONPU_PARAM_DEVICE_ID", DRM_ONPU_PARAM_DEVICE_ID as u64),
        ("DRM_ONPU_PARAM_REVISION", DRM_ONPU_PARAM_REVISION as u64),
        ("DRM_ONPU_PARAM_ISA_VERSION", DRM_ONPU_PARAM_ISA_VERSION as u64),
        ("DRM_ONPU_PARAM_SRAM_SIZE", DRM_ONPU_PARAM_SRAM_SIZE as u64),
        ("DRM_ONPU_PARAM_NUM_CONTEXTS", DRM_ONPU_PARAM_NUM_CONTEXTS as u64),
        ("DRM_ONPU_PARAM_VA_BITS", DRM_ONPU_PARAM_VA_BITS as u64),
        ("DRM_ONPU_PARAM_CAPS", DRM_ONPU_PARAM_CAPS as u64),
        ("DRM_ONPU_PARAM_CLOCK_KHZ", DRM_ONPU_PARAM_CLOCK_KHZ as u64),
    ];
    let c = c_values();
    assert_eq!(c.len(), rust.len(), "the C probe and the Rust list must name the same items");
    for (name, value) in rust {
        let cv = c.iter().find(|(n, _)| n == name).map(|(_, v)| *v);
        assert_eq!(cv, Some(*value), "{name}: C says {cv:?}, Rust says {value}");
    }
}

#[test]
fn ioctl_number_encodes_direction_size_and_command() {
    // _IOWR('d', 0x40, 16) as computed by hand.
    assert_eq!(DRM_IOCTL_ONPU_GET_PARAM, 0xc010_6440);
}

//! The onpu uAPI for userspace.
//!
//! The ABI has one definition, the C header include/uapi/drm/onpu_accel.h.
//! bindgen turns it into src/bindings.rs (scripts/uapi-bindgen.sh; the lint
//! stage of `make test` regenerates it and fails on any difference), and the
//! kernel driver gets the same types from the kernel's `uapi` crate. What is
//! written by hand here is only a thin layer over the generated items:
//! `bitflags` types for the flag sets. The DRM core ioctls the stack uses
//! (drm_core) are generated the same way, from the kernel's drm.h.
#![no_std]

#[allow(
    non_camel_case_types,
    non_upper_case_globals,
    non_snake_case,
    dead_code,
    missing_docs,
    clippy::all
)]
mod bindings;
pub use bindings::*;

/// Flag sets as `bitflags` types over the header's flag bits.
pub mod flags;
pub use flags::*;

/// The DRM core ioctls the stack uses on accel nodes (GEM_CLOSE, PRIME,
/// SYNCOBJ_*): drm.h's structs, flags and ioctl numbers, generated from
/// bindgen/drm_core.h by scripts/uapi-bindgen.sh. Not the onpu driver's
/// ABI, so not in onpu_accel.h.
#[allow(
    non_camel_case_types,
    non_upper_case_globals,
    dead_code,
    missing_docs,
    clippy::all
)]
pub mod drm_core;
pub use drm_core::{DRM_COMMAND_BASE, DRM_IOCTL_BASE};

#[cfg(test)]
mod layout;

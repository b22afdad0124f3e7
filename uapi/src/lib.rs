//! The onpu uAPI for userspace: the `#[repr(C)]` ABI the driver is compiled
//! with (src/abi.rs), re-exported unchanged.
#![no_std]

mod abi;
pub use abi::*;

/// Flag sets as `bitflags` types (userspace only; abi.rs stays
/// dependency-free for the driver).
pub mod flags;
pub use flags::*;

pub mod drm_core;

#[cfg(test)]
mod layout;

//! The onpu uAPI for userspace: the `#[repr(C)]` ABI the driver is compiled
//! with (src/abi.rs), re-exported unchanged.
#![no_std]

mod abi;
pub use abi::*;

pub mod drm_core;

mod flags;
pub use flags::*;

#[cfg(test)]
mod layout;

//! Shared pieces of the guest tools and selftests: TAP output in the
//! kselftest style, and access to the accel device node.

pub mod accel;
pub mod kmod;
pub mod tap;

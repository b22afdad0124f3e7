//! The uAPI's flag sets as `bitflags` types, for userspace only (the driver
//! checks the raw bits of the kernel's uapi crate). Each type's bits are the
//! header's constants (bindings.rs); `bits()` gives the value to put in the
//! struct.

use crate::bindings as abi;

bitflags::bitflags! {
    /// &drm_onpu_bo_create.flags and &drm_onpu_bo_info.bo_flags.
    #[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
    pub struct BoFlags: u32 {
        const READ_ONLY = abi::DRM_ONPU_BO_READ_ONLY;
        const NO_MMAP = abi::DRM_ONPU_BO_NO_MMAP;
        const CPU_WC = abi::DRM_ONPU_BO_CPU_WC;
    }
}

bitflags::bitflags! {
    /// &drm_onpu_bo_ref.flags: how a job uses an object.
    #[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
    pub struct BoRefFlags: u32 {
        const READ = abi::DRM_ONPU_BO_READ;
        const WRITE = abi::DRM_ONPU_BO_WRITE;
    }
}

bitflags::bitflags! {
    /// &drm_onpu_sync.flags.
    #[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
    pub struct SyncFlags: u32 {
        const WAIT_FOR_SUBMIT = abi::DRM_ONPU_SYNC_WAIT_FOR_SUBMIT;
    }
}

bitflags::bitflags! {
    /// &drm_onpu_submit.flags.
    #[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
    pub struct SubmitFlags: u32 {
        const PROFILE = abi::DRM_ONPU_SUBMIT_PROFILE;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bo_flags_are_the_abi_bits() {
        assert_eq!(BoFlags::all().bits(), abi::DRM_ONPU_BO_CREATE_FLAGS);
        assert_eq!(BoFlags::READ_ONLY.bits(), 1);
        assert_eq!(BoFlags::NO_MMAP.bits(), 2);
        assert_eq!(BoFlags::CPU_WC.bits(), 4);
    }

    #[test]
    fn flag_bits_are_the_abi_values() {
        // The values of Documentation/uapi/onpu.rst, by hand.
        assert_eq!(BoRefFlags::READ.bits(), 1);
        assert_eq!(BoRefFlags::WRITE.bits(), 2);
        assert_eq!(SyncFlags::WAIT_FOR_SUBMIT.bits(), 1);
        assert_eq!(SubmitFlags::PROFILE.bits(), 1);
        assert_eq!(BoRefFlags::from_bits(4), None);
    }
}

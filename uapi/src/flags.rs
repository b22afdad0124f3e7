//! The uAPI's flag sets as `bitflags` types, for userspace. (The driver
//! compiles only abi.rs, and checks the raw words itself.)

use crate::abi;

bitflags::bitflags! {
    /// &drm_onpu_bo_create.flags and &drm_onpu_bo_info.bo_flags.
    #[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
    pub struct BoFlags: u32 {
        const READ_ONLY = abi::DRM_ONPU_BO_READ_ONLY;
        const NO_MMAP = abi::DRM_ONPU_BO_NO_MMAP;
        const CPU_WC = abi::DRM_ONPU_BO_CPU_WC;
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
}

// SPDX-License-Identifier: GPL-2.0-only

//! Per-open-file state and the ioctls.

use kernel::{drm, prelude::*};

use crate::drv::{OnpuDevice, OnpuDriver};
use crate::uapi;

/// State of one open /dev/accel/accelN file.
#[pin_data]
pub(crate) struct File {}

impl drm::file::DriverFile for File {
    type Driver = OnpuDriver;

    fn open(_dev: &OnpuDevice) -> Result<Pin<KBox<Self>>> {
        KBox::try_pin_init(try_pin_init!(Self {}), GFP_KERNEL)
    }
}

impl File {
    /// DRM_IOCTL_ONPU_GET_PARAM: one device parameter.
    pub(crate) fn get_param(
        dev: &OnpuDevice,
        req: &mut uapi::drm_onpu_get_param,
        _file: &drm::File<File>,
    ) -> Result<u32> {
        if req.pad != 0 {
            return Err(EINVAL);
        }
        let p = &dev.hw.params;
        req.value = match req.param {
            uapi::DRM_ONPU_PARAM_DEVICE_ID => p.device_id.into(),
            uapi::DRM_ONPU_PARAM_REVISION => p.revision.into(),
            uapi::DRM_ONPU_PARAM_ISA_VERSION => p.isa_version.into(),
            uapi::DRM_ONPU_PARAM_SRAM_SIZE => p.sram_size.into(),
            uapi::DRM_ONPU_PARAM_NUM_CONTEXTS => p.contexts.into(),
            uapi::DRM_ONPU_PARAM_VA_BITS => p.va_bits.into(),
            uapi::DRM_ONPU_PARAM_CAPS => p.caps.into(),
            uapi::DRM_ONPU_PARAM_CLOCK_KHZ => p.clock_khz.into(),
            _ => return Err(EINVAL),
        };
        Ok(0)
    }
}

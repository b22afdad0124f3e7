// SPDX-License-Identifier: GPL-2.0-only

//! Per-open-file state and the ioctls.

use kernel::{drm, drm::gem::BaseObject, prelude::*};

use crate::drv::{OnpuDevice, OnpuDriver};
use crate::gem;
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
        let p = &dev.engine.params;
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

    /// DRM_IOCTL_ONPU_BO_CREATE: a new shmem buffer object and its handle.
    pub(crate) fn bo_create(
        dev: &OnpuDevice,
        req: &mut uapi::drm_onpu_bo_create,
        file: &drm::File<File>,
    ) -> Result<u32> {
        if req.flags != 0 {
            return Err(EINVAL);
        }
        let bo = gem::create(dev, req.size)?;
        // The handle holds its own reference; ours drops at return.
        req.handle = bo.create_handle(file)?;
        req.size = bo.size() as u64;
        Ok(0)
    }

    /// DRM_IOCTL_ONPU_BO_INFO: size and mmap offset of a buffer object.
    pub(crate) fn bo_info(
        _dev: &OnpuDevice,
        req: &mut uapi::drm_onpu_bo_info,
        file: &drm::File<File>,
    ) -> Result<u32> {
        if req.flags != 0 {
            return Err(EINVAL);
        }
        let bo = gem::lookup(file, req.handle)?;
        req.size = bo.size() as u64;
        req.mmap_offset = bo.create_mmap_offset()?;
        Ok(0)
    }
}

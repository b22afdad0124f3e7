// SPDX-License-Identifier: GPL-2.0-only

//! PCI probe/remove and the DRM driver.

use kernel::{device::Core, drm, drm::ioctl, pci, prelude::*, sync::aref::ARef};

use crate::file::File;
use crate::gem::Bo;

use crate::hw::{self, Hw};
use crate::regs;

/// The DRM side of the driver.
pub(crate) struct OnpuDriver;

pub(crate) type OnpuDevice<Ctx = drm::Registered> = drm::Device<OnpuDriver, Ctx>;

/// Per-device data of the DRM device.
#[pin_data]
pub(crate) struct OnpuData {
    pub(crate) hw: Hw,
}

/// The PCI side of the driver.
pub(crate) struct OnpuPciDriver;

/// What the PCI device holds while bound: the DRM device's registration is
/// owned by devres, this keeps a reference for the lifetime of the binding.
pub(crate) struct OnpuPciData {
    drm: ARef<OnpuDevice>,
}

kernel::pci_device_table!(
    PCI_TABLE,
    MODULE_PCI_TABLE,
    <OnpuPciDriver as pci::Driver>::IdInfo,
    [(pci::DeviceId::from_id(pci::Vendor::from_raw(regs::PCI_VENDOR), regs::PCI_DEVICE as u32), ())]
);

impl pci::Driver for OnpuPciDriver {
    type IdInfo = ();
    type Data<'bound> = OnpuPciData;
    const ID_TABLE: pci::IdTable<Self::IdInfo> = &PCI_TABLE;

    fn probe<'bound>(
        pdev: &'bound pci::Device<Core<'_>>,
        _info: &'bound Self::IdInfo,
    ) -> impl PinInit<Self::Data<'bound>, Error> + 'bound {
        pdev.enable_device_mem()?;
        pdev.set_master();
        let bar = pdev.iomap_region_sized::<{ regs::BAR0_SIZE }>(0, c"onpu")?;
        let params = hw::identify(pdev, &bar)?;
        hw::reset(pdev.as_ref(), &bar)?;
        let bar = bar.into_devres()?;
        let data = try_pin_init!(OnpuData { hw: Hw { bar, params } });
        let drm = drm::UnregisteredDevice::<OnpuDriver>::new(pdev.as_ref(), data)?;
        let drm = drm::driver::Registration::new_foreign_owned(drm, pdev.as_ref(), 0)?;
        dev_info!(
            pdev,
            "open NPU: ISA {}.{}, {} KiB SRAM, {} contexts\n",
            params.isa_version >> 16,
            params.isa_version & 0xffff,
            params.sram_size / 1024,
            params.contexts
        );
        Ok(OnpuPciData { drm: drm.into() })
    }

    fn unbind<'bound>(pdev: &'bound pci::Device<Core<'_>>, this: Pin<&Self::Data<'bound>>) {
        // Leave the device quiet: no interrupts, no DMA into memory the
        // kernel is about to free.
        if let Ok(bar) = this.drm.hw.bar.access(pdev.as_ref()) {
            hw::quiesce(bar);
        }
    }
}

const INFO: drm::DriverInfo = drm::DriverInfo {
    major: 0,
    minor: 1,
    patchlevel: 0,
    name: c"onpu",
    desc: c"Open NPU accelerator",
};

#[vtable]
impl drm::Driver for OnpuDriver {
    type Data = OnpuData;
    type File = File;
    type Object<Ctx: drm::DeviceContext> = drm::gem::shmem::Object<Bo, Ctx>;

    const INFO: drm::DriverInfo = INFO;
    const FEAT_COMPUTE_ACCEL: bool = true;

    kernel::declare_drm_ioctls! {
        uapi: crate::uapi;
        (ONPU_GET_PARAM, drm_onpu_get_param, ioctl::RENDER_ALLOW, File::get_param),
        (ONPU_BO_CREATE, drm_onpu_bo_create, ioctl::RENDER_ALLOW, File::bo_create),
        (ONPU_BO_INFO, drm_onpu_bo_info, ioctl::RENDER_ALLOW, File::bo_info),
    }
}

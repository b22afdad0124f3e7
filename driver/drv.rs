// SPDX-License-Identifier: GPL-2.0-only

//! PCI probe/remove and the DRM driver.

use kernel::{
    device::Core,
    dma::{Device as _, DmaMask},
    drm,
    drm::ioctl,
    irq, pci,
    prelude::*,
    sync::{aref::ARef, Arc},
};

use crate::engine::Engine;
use crate::file::File;
use crate::gem::Bo;
use crate::hw;
use crate::irq::IrqHandler;
use crate::regs;
use crate::selftest;

/// The DRM side of the driver.
pub(crate) struct OnpuDriver;

pub(crate) type OnpuDevice<Ctx = drm::Registered> = drm::Device<OnpuDriver, Ctx>;

/// Per-device data of the DRM device.
#[pin_data]
pub(crate) struct OnpuData {
    pub(crate) engine: Arc<Engine>,
}

/// The PCI side of the driver.
pub(crate) struct OnpuPciDriver;

/// What the PCI device holds while bound: the interrupt handlers and a
/// reference to the DRM device (whose registration devres owns).
#[pin_data]
pub(crate) struct OnpuPciData {
    #[pin]
    job_irq: irq::ThreadedRegistration<IrqHandler>,
    #[pin]
    error_irq: irq::ThreadedRegistration<IrqHandler>,
    engine: Arc<Engine>,
    drm: ARef<OnpuDevice>,
}

kernel::pci_device_table!(
    PCI_TABLE,
    MODULE_PCI_TABLE,
    <OnpuPciDriver as pci::Driver>::IdInfo,
    [(
        pci::DeviceId::from_id(
            pci::Vendor::from_raw(regs::PCI_VENDOR),
            regs::PCI_DEVICE as u32
        ),
        ()
    )]
);

impl pci::Driver for OnpuPciDriver {
    type IdInfo = ();
    type Data<'bound> = OnpuPciData;
    const ID_TABLE: pci::IdTable<Self::IdInfo> = &PCI_TABLE;

    fn probe<'bound>(
        pdev: &'bound pci::Device<Core<'_>>,
        _info: &'bound Self::IdInfo,
    ) -> impl PinInit<Self::Data<'bound>, Error> + 'bound {
        pin_init::pin_init_scope(move || {
            let dev = pdev.as_ref();
            // Disabled again by devres (kernel patch 0035) when the driver
            // unbinds or the probe fails, after everything below.
            pdev.enable_device_mem()?;
            // Page-table entries carry bus addresses in bits 12..51, and the
            // MMU maps any run of pages: no segment limit.
            // SAFETY: probe, before any DMA allocation or mapping of this
            // device exists.
            unsafe {
                pdev.dma_set_mask_and_coherent(DmaMask::new::<52>())?;
                pdev.dma_set_max_seg_size(u32::MAX);
            }
            let bar = pdev.iomap_region_sized::<{ regs::BAR0_SIZE }>(0, c"onpu")?;
            let params = hw::identify(pdev, &bar)?;
            hw::reset(dev, &bar)?;
            let engine = Arc::pin_init(Engine::new(dev, bar.into_devres()?, params)?, GFP_KERNEL)?;
            // Vector 0 carries job completions, vector 1 faults and errors.
            let msix = pci::IrqTypes::default().with(pci::IrqType::MsiX);
            let vectors = pdev.alloc_irq_vectors(2, 2, msix)?;
            let (job_vector, error_vector) = (*vectors.start(), *vectors.end());
            let job_handler = Ok::<_, Error>(IrqHandler {
                engine: engine.clone(),
                causes: regs::IRQ_JOB_DONE,
            });
            let error_handler = Ok::<_, Error>(IrqHandler {
                engine: engine.clone(),
                causes: regs::IRQ_ERRORS,
            });
            Ok(try_pin_init!(OnpuPciData {
                job_irq <- pdev.request_threaded_irq(job_vector, irq::Flags::TRIGGER_NONE, c"onpu-job", job_handler),
                error_irq <- pdev.request_threaded_irq(error_vector, irq::Flags::TRIGGER_NONE, c"onpu-error", error_handler),
                engine: engine.clone(),
                drm: {
                    // From start() on, a failure must stop the device (and
                    // the watchdog) before the rings go with devres.
                    let engine: &Arc<Engine> = engine;
                    let registered = (|| {
                        // Bus mastering only from here, where the device
                        // first reaches memory: a probe failing earlier
                        // leaves it off, and shut_down() clears it after.
                        pdev.set_master();
                        engine.start(dev, 0)?;
                        selftest::run(dev, engine)?;
                        let data = try_pin_init!(OnpuData { engine: engine.clone() });
                        let drm = drm::UnregisteredDevice::<OnpuDriver>::new(dev, data)?;
                        crate::debugfs::init(&drm);
                        drm::driver::Registration::new_foreign_owned(drm, dev, 0)
                    })();
                    let drm = registered.inspect_err(|_| engine.shut_down(pdev))?;
                    // For the wedged uevent; unbind lets go of it.
                    engine.set_drm(drm);
                    dev_info!(
                        pdev,
                        "open NPU: ISA {}.{}, {} KiB SRAM, {} contexts\n",
                        params.isa_version >> 16,
                        params.isa_version & 0xffff,
                        params.sram_size / 1024,
                        params.contexts
                    );
                    drm.into()
                },
            }))
        })
    }

    fn unbind<'bound>(pdev: &'bound pci::Device<Core<'_>>, this: Pin<&Self::Data<'bound>>) {
        // Leave the device quiet (reset, bus mastering off: no DMA into
        // memory the kernel is about to free), end every queued job as
        // cancelled, then unplug the DRM device: every section ends and
        // open files get ENODEV from every ioctl. (The registration would
        // unplug it after this returns; shut_down needs it done before it
        // releases the DMA mappings.)
        this.engine.shut_down(pdev);
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
    const FEAT_SYNCOBJ: bool = true;
    const FEAT_SYNCOBJ_TIMELINE: bool = true;
    const OWNER: &'static ThisModule = &crate::THIS_MODULE;

    fn show_fdinfo(file: &drm::File<File>, printer: &mut drm::print::Printer<'_>) {
        File::show_fdinfo(file, printer)
    }

    kernel::declare_drm_ioctls! {
        (ONPU_GET_PARAM, drm_onpu_get_param, ioctl::RENDER_ALLOW, File::get_param),
        (ONPU_QUERY, drm_onpu_query, ioctl::RENDER_ALLOW, crate::query::query),
        (ONPU_BO_CREATE, drm_onpu_bo_create, ioctl::RENDER_ALLOW, File::bo_create),
        (ONPU_BO_CREATE_USERPTR, drm_onpu_bo_create_userptr, ioctl::RENDER_ALLOW, File::bo_create_userptr),
        (ONPU_BO_INFO, drm_onpu_bo_info, ioctl::RENDER_ALLOW, File::bo_info),
        (ONPU_CONTEXT_CREATE, drm_onpu_context_create, ioctl::RENDER_ALLOW, File::context_create),
        (ONPU_CONTEXT_DESTROY, drm_onpu_context_destroy, ioctl::RENDER_ALLOW, File::context_destroy),
        (ONPU_QUEUE_CREATE, drm_onpu_queue_create, ioctl::RENDER_ALLOW, File::queue_create),
        (ONPU_QUEUE_DESTROY, drm_onpu_queue_destroy, ioctl::RENDER_ALLOW, File::queue_destroy),
        (ONPU_SUBMIT, drm_onpu_submit, ioctl::RENDER_ALLOW, File::submit),
        (ONPU_WAIT, drm_onpu_wait, ioctl::RENDER_ALLOW, File::wait),
        (ONPU_WAIT_BO, drm_onpu_wait_bo, ioctl::RENDER_ALLOW, File::wait_bo),
    }
}

// SPDX-License-Identifier: GPL-2.0-only

//! debugfs: the device's files, in the DRM device's own directory
//! (/sys/kernel/debug/accel/<pci name>/), so a second device keeps its
//! own; the DRM core removes them when the device is unregistered.
//!
//! - `counters`: device-wide counters (jobs submitted, of them those
//!   SUBMIT's fast path wrote into the ring, completed, failed;
//!   resets; ring errors; live buffer objects), since the driver bound;
//! - `state`: ring indices and the queued jobs;
//! - `wedged`: 1 once a reset failed and the device was given up, else 0;
//! - `reset` (write anything): reset the NPU now, resubmitting what is
//!   queued (recovery tests).

use kernel::sync::Arc;

use crate::drv::{OnpuData, OnpuDriver};
use crate::engine::Engine;

pub(crate) fn init<C: kernel::drm::DeviceContext>(drm: &kernel::drm::Device<OnpuDriver, C>) {
    drm.debugfs_init(|data: &OnpuData, dir| {
        let engine = &data.engine;
        dir.read_callback_file(c"counters", engine, &|e: &Arc<Engine>, f| {
            e.write_counters(f)
        });
        dir.read_callback_file(c"state", engine, &|e: &Arc<Engine>, f| e.describe(f));
        dir.read_callback_file(c"wedged", engine, &|e: &Arc<Engine>, f| {
            writeln!(f, "{}", u8::from(e.is_wedged()))
        });
        dir.write_only_callback_file(c"reset", engine, &|e: &Arc<Engine>, _input| e.force_reset());
    });
}

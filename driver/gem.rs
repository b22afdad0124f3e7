// SPDX-License-Identifier: GPL-2.0-only

//! Buffer objects: shmem-backed GEM objects.

use kernel::{
    drm::{gem, DeviceContext},
    prelude::*,
};

use crate::drv::{OnpuDevice, OnpuDriver};

/// Driver data of a buffer object.
#[pin_data]
pub(crate) struct Bo {}

impl gem::DriverObject for Bo {
    type Driver = OnpuDriver;
    type Args = ();

    fn new<Ctx: DeviceContext>(_dev: &OnpuDevice<Ctx>, _size: usize, _args: ()) -> impl PinInit<Self, Error> {
        try_pin_init!(Self {})
    }
}

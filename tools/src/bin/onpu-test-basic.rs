//! Selftest: the accel node exists, opens, and GET_PARAM answers every
//! parameter sensibly and rejects bad arguments with the documented errno.

use npu::device::raw as accel;
use npu_tools::tap::Tap;
use npu_uapi as uapi;

fn expect(cond: bool, what: impl FnOnce() -> String) -> Result<(), String> {
    if cond {
        Ok(())
    } else {
        Err(what())
    }
}

fn main() {
    let mut tap = Tap::new(6);
    let path = match accel::find_device() {
        Ok(p) => p,
        Err(e) => {
            tap.check("onpu accel node present", Err(e.to_string()));
            std::process::exit(tap.finish());
        }
    };
    tap.check(
        "onpu accel node present",
        expect(path.starts_with("/dev/accel"), || format!("{path:?}")),
    );
    let file = match accel::open(&path) {
        Ok(f) => f,
        Err(e) => {
            tap.check("open", Err(e.to_string()));
            std::process::exit(tap.finish());
        }
    };
    tap.check("open", Ok(()));

    let params = [
        ("device-id", uapi::DRM_ONPU_PARAM_DEVICE_ID),
        ("revision", uapi::DRM_ONPU_PARAM_REVISION),
        ("isa-version", uapi::DRM_ONPU_PARAM_ISA_VERSION),
        ("sram-size", uapi::DRM_ONPU_PARAM_SRAM_SIZE),
        ("contexts", uapi::DRM_ONPU_PARAM_NUM_CONTEXTS),
        ("va-bits", uapi::DRM_ONPU_PARAM_VA_BITS),
        ("caps", uapi::DRM_ONPU_PARAM_CAPS),
        ("clock-khz", uapi::DRM_ONPU_PARAM_CLOCK_KHZ),
    ];
    let mut values = Vec::new();
    let mut all = Ok(());
    for (name, p) in params {
        match accel::get_param(&file, p) {
            Ok(v) => {
                println!("# {name} = {v:#x}");
                values.push(v);
            }
            Err(e) => all = Err(format!("{name}: errno {e}")),
        }
    }
    tap.check("get-param answers every parameter", all);
    tap.check(
        "get-param values match the hardware",
        expect(
            values.len() == 8
                && values[0] == 0x4e50
                && values[2] >> 16 == 1
                && values[3] >= 4096
                && values[5] == 39,
            || format!("{values:x?}"),
        ),
    );
    let r = accel::get_param(&file, uapi::DRM_ONPU_PARAM_COUNT);
    tap.check(
        "get-param rejects an unknown parameter with EINVAL",
        expect(r == Err(libc::EINVAL), || format!("{r:?}")),
    );
    let mut p = uapi::drm_onpu_get_param {
        param: uapi::DRM_ONPU_PARAM_SRAM_SIZE,
        pad: 1,
        value: 0,
    };
    let r = accel::ioctl(&file, &mut p);
    tap.check(
        "get-param rejects non-zero padding with EINVAL",
        expect(r == Err(libc::EINVAL), || format!("{r:?}")),
    );
    std::process::exit(tap.finish());
}

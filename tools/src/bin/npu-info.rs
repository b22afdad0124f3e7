//! npu-info: describe the NPU(s) the onpu driver exposes.
//!
//!   npu-info [DEVICE]      (default: the first onpu device)

use npu::device::raw as accel;
use npu_uapi as uapi;
use std::path::PathBuf;
use std::process::ExitCode;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.iter().any(|a| a == "-h" || a == "--help") || args.len() > 1 {
        eprintln!(
            "usage: npu-info [DEVICE]   (e.g. /dev/accel/accel0; default: the first onpu device)"
        );
        return ExitCode::from(2);
    }
    let path = match args.first() {
        Some(p) => PathBuf::from(p),
        None => match accel::find_device() {
            Ok(p) => p,
            Err(e) => {
                eprintln!("npu-info: {e} (is the onpu module loaded?)");
                return ExitCode::FAILURE;
            }
        },
    };
    let file = match accel::open(&path) {
        Ok(f) => f,
        Err(e) => {
            eprintln!("npu-info: cannot open {}: {e}", path.display());
            return ExitCode::FAILURE;
        }
    };
    let get = |p| accel::get_param(&file, p);
    let (Ok(dev), Ok(isa), Ok(sram), Ok(ctx), Ok(va), Ok(caps), Ok(clk)) = (
        get(uapi::DRM_ONPU_PARAM_DEVICE_ID),
        get(uapi::DRM_ONPU_PARAM_ISA_VERSION),
        get(uapi::DRM_ONPU_PARAM_SRAM_SIZE),
        get(uapi::DRM_ONPU_PARAM_NUM_CONTEXTS),
        get(uapi::DRM_ONPU_PARAM_VA_BITS),
        get(uapi::DRM_ONPU_PARAM_CAPS),
        get(uapi::DRM_ONPU_PARAM_CLOCK_KHZ),
    ) else {
        eprintln!(
            "npu-info: {} does not answer GET_PARAM: not an onpu device?",
            path.display()
        );
        return ExitCode::FAILURE;
    };
    let rev = get(uapi::DRM_ONPU_PARAM_REVISION).unwrap_or(0);
    let cap_names: Vec<&str> = [
        (0, "f32"),
        (1, "int8"),
        (2, "pool"),
        (31, "fault-injection"),
    ]
    .iter()
    .filter(|(b, _)| caps & (1 << b) != 0)
    .map(|(_, n)| *n)
    .collect();
    println!("{}:", path.display());
    println!("  device        1234:{dev:04x} rev {rev}");
    println!("  isa           {}.{}", isa >> 16, isa & 0xffff);
    println!("  sram          {} KiB", sram / 1024);
    println!("  contexts      {ctx}");
    println!("  va            {va} bits ({} GiB)", (1u64 << va) >> 30);
    println!("  clock         {} MHz (modelled)", clk / 1000);
    println!("  capabilities  {}", cap_names.join(" "));
    // Drivers before the job ioctls do not know these: leave them out.
    if let (Ok(start), Ok(end), Ok(timeout)) = (
        get(uapi::DRM_ONPU_PARAM_VA_START),
        get(uapi::DRM_ONPU_PARAM_VA_END),
        get(uapi::DRM_ONPU_PARAM_JOB_TIMEOUT_MS),
    ) {
        println!("  npu addresses {start:#x}..{end:#x} per open file");
        println!("  job timeout   {timeout} ms");
    }
    if let (Ok(sub), Ok(done), Ok(failed), Ok(resets)) = (
        get(uapi::DRM_ONPU_PARAM_JOBS_SUBMITTED),
        get(uapi::DRM_ONPU_PARAM_JOBS_COMPLETED),
        get(uapi::DRM_ONPU_PARAM_JOBS_FAILED),
        get(uapi::DRM_ONPU_PARAM_RESETS),
    ) {
        println!("  jobs          {sub} submitted, {done} completed, {failed} failed");
        println!("  resets        {resets}");
    }
    if let Ok(hw_ctx) = get(uapi::DRM_ONPU_PARAM_HW_CONTEXT) {
        println!("  hw context    {hw_ctx} (this open file's)");
    }
    ExitCode::SUCCESS
}

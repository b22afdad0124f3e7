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
    let caps = match accel::query::<uapi::drm_onpu_query_caps>(&file) {
        Ok(c) => c,
        Err(e) => {
            eprintln!(
                "npu-info: {} does not answer QUERY (errno {e}): not an onpu device, or an older driver?",
                path.display()
            );
            return ExitCode::FAILURE;
        }
    };
    let cap_names: Vec<&str> = [
        (0, "f32"),
        (1, "int8"),
        (2, "pool"),
        (3, "shadow-doorbell"),
        (4, "multi-ring"),
        (5, "job-profile"),
        (31, "fault-injection"),
    ]
    .iter()
    .filter(|(b, _)| caps.caps & (1 << b) != 0)
    .map(|(_, n)| *n)
    .collect();
    let c = &caps;
    println!("{}:", path.display());
    println!(
        "  device        1234:{:04x} rev {}",
        c.device_id, c.revision
    );
    println!(
        "  isa           {}.{}",
        c.isa_version >> 16,
        c.isa_version & 0xffff
    );
    println!("  sram          {} KiB", c.sram_size / 1024);
    println!("  contexts      {}", c.num_contexts);
    println!("  rings         {}", c.num_rings);
    println!(
        "  va            {} bits ({} GiB)",
        c.va_bits,
        (1u64 << c.va_bits.min(63)) >> 30
    );
    println!("  clock         {} MHz (modelled)", c.clock_khz / 1000);
    println!("  capabilities  {}", cap_names.join(" "));
    println!(
        "  npu addresses {:#x}..{:#x} per open file",
        c.va_start, c.va_end
    );
    println!(
        "  job limits    {} ms, {} objects, {} KiB of commands",
        c.job_timeout_ms,
        c.max_job_bos,
        c.max_cmdbuf_size / 1024
    );
    match accel::query::<uapi::drm_onpu_query_cost_model>(&file) {
        Ok(m) => {
            println!("  cost model    (cycles; Documentation/hw/npu-hw.rst \"Cost model\")");
            println!(
                "    dma         {} bytes/cycle, latency {}, page walk {}",
                m.dma_bytes_per_cycle, m.dma_latency, m.walk_cycles
            );
            println!(
                "    matmul      f32 {} MACs/cycle, int8 {} MACs/cycle",
                m.f32_macs_per_cycle, m.i8_macs_per_cycle
            );
            println!(
                "    vector      {} elements/cycle, special functions {}/cycle",
                m.vector_elems_per_cycle, m.special_elems_per_cycle
            );
            println!("    overhead    {} per instruction", m.insn_overhead);
        }
        Err(e) => {
            eprintln!("npu-info: QUERY(COST_MODEL): errno {e}");
            return ExitCode::FAILURE;
        }
    }
    ExitCode::SUCCESS
}

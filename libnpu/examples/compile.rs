//! Compile a kernel in the text form and print its command buffer.
//!
//! cargo run -p libnpu --example compile -- KERNEL.npu [SRAM_KIB] [--no-double-buffer]

use npu::{compile, CompileOptions, DeviceParams};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let path = args
        .first()
        .ok_or("usage: compile KERNEL.npu [SRAM_KIB] [--no-double-buffer]")?;
    let sram_kib: u32 = match args.get(1).filter(|a| !a.starts_with("--")) {
        Some(s) => s
            .parse()
            .map_err(|_| format!("SRAM size `{s}` is not a number of KiB"))?,
        None => 1024,
    };
    let src = std::fs::read_to_string(path).map_err(|e| format!("{path}: {e}"))?;
    let graph = npu::text::parse(&src).map_err(|e| format!("{path}:{e}"))?;
    let opts = CompileOptions {
        double_buffer: !args.iter().any(|a| a == "--no-double-buffer"),
        ..Default::default()
    };
    let prog = compile(
        &graph,
        DeviceParams {
            sram_size: sram_kib * 1024,
        },
        opts,
    )?;
    print!("{}", prog.disassemble());
    Ok(())
}

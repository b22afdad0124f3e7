//! The emulated ONPU as a vfio-user server process for QEMU's
//! `-device vfio-user-pci,socket=...`.

use npu_device::cost::CostModel;
use npu_device::inject::Injector;
use npu_device::mem::Bus;
use npu_device::regs::PerfCounter;
use npu_device::server::{irqs, regions, EventFdIrqs, NpuBackend};
use npu_device::{DelayEnder, Device, DeviceConfig};
use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::Mutex;

const USAGE: &str = "usage: npu-device-server --socket PATH [--sram-size BYTES] [--contexts N] [--inject RULE]... [--idle-poll-us N] [--control PATH] [-v]

  --socket PATH      unix socket QEMU connects to (must not exist yet)
  --sram-size BYTES  on-chip SRAM size (default 1048576; 4 KiB..256 MiB)
  --contexts N       hardware contexts (default 16; 1..256)
  --inject RULE      fault injection, repeatable: KIND[:TRIGGER] with KIND one of
                     hang, mmu-fault, drop-irq, corrupt-completion, spurious-irq,
                     delay=MS, slow-reset=MS, seed=N and TRIGGER one of tag=N,
                     every=N, nth=N, prob=P (see Documentation/hw/npu-hw.rst)
  --idle-poll-us N   how long the CP polls the shadow doorbell page after the
                     rings ran dry before it sleeps (default 0: none;
                     at most 1000000; 50 spares a filled queue its doorbells)
  --control PATH     unix socket taking fault-injection commands at run time,
                     one per line: inject RULE | clear | list (reply: ok... or error: ...)
  -v                 debug logging (or RUST_LOG)";

struct Args {
    socket: PathBuf,
    sram: u32,
    contexts: u32,
    inject: Vec<String>,
    control: Option<PathBuf>,
    idle_poll_us: u64,
    verbose: bool,
}

fn parse_args() -> Result<Args, String> {
    let mut it = std::env::args().skip(1);
    let mut a = Args {
        socket: PathBuf::new(),
        sram: 1 << 20,
        contexts: 16,
        inject: vec![],
        control: None,
        idle_poll_us: npu_device::device::IDLE_POLL_DEFAULT.as_micros() as u64,
        verbose: false,
    };
    let num = |v: Option<String>, what: &str| -> Result<u64, String> {
        let v = v.ok_or(format!("{what} needs a value"))?;
        v.parse::<u64>()
            .map_err(|_| format!("{what}: '{v}' is not a number"))
    };
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "--socket" => a.socket = it.next().ok_or("--socket needs a path")?.into(),
            "--sram-size" => {
                let v = num(it.next(), "--sram-size")?;
                if !(4096..=256 << 20).contains(&v) || v % 4096 != 0 {
                    return Err(
                        "--sram-size must be a multiple of 4096 between 4 KiB and 256 MiB".into(),
                    );
                }
                a.sram = v as u32;
            }
            "--contexts" => {
                let v = num(it.next(), "--contexts")?;
                if !(1..=256).contains(&v) {
                    return Err("--contexts must be between 1 and 256".into());
                }
                a.contexts = v as u32;
            }
            "--idle-poll-us" => {
                let v = num(it.next(), "--idle-poll-us")?;
                if v > npu_device::device::IDLE_POLL_MAX.as_micros() as u64 {
                    return Err(format!(
                        "--idle-poll-us must be at most {}",
                        npu_device::device::IDLE_POLL_MAX.as_micros()
                    ));
                }
                a.idle_poll_us = v;
            }
            "--inject" => a.inject.push(it.next().ok_or("--inject needs a rule")?),
            "--control" => a.control = Some(it.next().ok_or("--control needs a path")?.into()),
            "-v" | "--verbose" => a.verbose = true,
            "-h" | "--help" => return Err(String::new()),
            other => return Err(format!("unknown argument '{other}'")),
        }
    }
    if a.socket.as_os_str().is_empty() {
        return Err("--socket is required".into());
    }
    Ok(a)
}

fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            if !e.is_empty() {
                eprintln!("npu-device-server: {e}");
            }
            eprintln!("{USAGE}");
            return ExitCode::from(2);
        }
    };
    let level = if args.verbose { "debug" } else { "info" };
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or(level)).init();
    let inject = match Injector::parse(&args.inject) {
        Ok(i) => i,
        Err(e) => {
            eprintln!("npu-device-server: {e}");
            return ExitCode::from(2);
        }
    };
    let bus = Bus::default();
    let irqs_sink = Arc::new(EventFdIrqs::default());
    let config = DeviceConfig {
        sram_size: args.sram,
        contexts: args.contexts,
        cost: CostModel::default(),
        idle_poll: std::time::Duration::from_micros(args.idle_poll_us),
    };
    let device = match Device::try_new(config, bus.clone(), irqs_sink.clone(), inject) {
        Ok(d) => d,
        Err(e) => {
            eprintln!("npu-device-server: {e}");
            return ExitCode::FAILURE;
        }
    };
    if let Some(path) = &args.control {
        if let Err(e) = serve_control(path, device.injector(), device.delay_ender()) {
            eprintln!(
                "npu-device-server: cannot listen on {}: {e}",
                path.display()
            );
            return ExitCode::FAILURE;
        }
    }
    let server = match vfio_user::Server::new(&args.socket, true, irqs(), regions()) {
        Ok(s) => s,
        Err(e) => {
            eprintln!(
                "npu-device-server: cannot listen on {}: {e}",
                args.socket.display()
            );
            return ExitCode::FAILURE;
        }
    };
    log::info!(
        "listening on {} (SRAM {} KiB, {} contexts)",
        args.socket.display(),
        args.sram / 1024,
        args.contexts
    );
    let mut backend = NpuBackend::new(device, bus, irqs_sink);
    let result = server.run(&mut backend);
    let d = &backend.device;
    eprintln!(
        "npu-device-server: summary: jobs {} faulted {} irqs {} dma-read {} dma-written {} mmio-reads {} mmio-writes {}",
        d.perf(PerfCounter::JobsDone),
        d.perf(PerfCounter::JobsFaulted),
        d.perf(PerfCounter::IrqsSent),
        d.perf(PerfCounter::DmaBytesRead),
        d.perf(PerfCounter::DmaBytesWritten),
        backend.mmio_reads,
        backend.mmio_writes
    );
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("npu-device-server: connection ended with an error: {e}");
            ExitCode::FAILURE
        }
    }
}

/// The `--control` socket: one thread accepting clients one after another,
/// each sending lines of `inject RULE`, `clear` or `list`.
fn serve_control(
    path: &Path,
    inject: Arc<Mutex<Injector>>,
    delays: DelayEnder,
) -> std::io::Result<()> {
    let listener = UnixListener::bind(path)?;
    log::info!("control socket on {}", path.display());
    std::thread::Builder::new()
        .name("npu-control".into())
        .spawn(move || {
            for conn in listener.incoming().flatten() {
                if let Err(e) = control_client(conn, &inject, &delays) {
                    log::warn!("control client: {e}");
                }
            }
        })?;
    Ok(())
}

fn control_client(
    conn: UnixStream,
    inject: &Mutex<Injector>,
    delays: &DelayEnder,
) -> std::io::Result<()> {
    let mut out = conn.try_clone()?;
    for line in BufReader::new(conn).lines() {
        let line = line?;
        if line.trim().is_empty() {
            continue;
        }
        let reply = npu_device::device::control(inject, delays, &line);
        log::info!("control: {line} -> {reply}");
        writeln!(out, "{reply}")?;
    }
    Ok(())
}

//! npu-bench: what users of an NPU stack care about, each figure beside a
//! baseline measured in the same run. Runs in the guest, through the driver.
//!
//! Output: a readable table, plus one `BENCH {json}` line per figure for
//! scripts/bench.sh, which writes the report (build/bench/).
//!
//!   npu-bench [--quick] [--only latency|throughput|buffers|compute|copies]
//!
//! `--only` runs one section (for profiling it on the host while it runs).

use npu::device::{Device, Job};
use npu::reference;
use npu::runtime::{self, Session};
use npu_isa::{assemble, Insn, Strided};
use std::fs::OpenOptions;
use std::time::{Duration, Instant};

fn bench_line(section: &str, name: &str, fields: &[(&str, f64)]) {
    let f: Vec<String> = fields.iter().map(|(k, v)| format!("\"{k}\":{v}")).collect();
    println!(
        "BENCH {{\"section\":\"{section}\",\"name\":\"{name}\",{}}}",
        f.join(",")
    );
}

fn percentile(v: &mut [f64], p: f64) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[((v.len() as f64 - 1.0) * p).round() as usize]
}

fn us(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

/// A job that does nothing: END.
struct NullJob<'d> {
    cmd: npu::device::Buffer<'d>,
}

impl<'d> NullJob<'d> {
    fn new(dev: &'d Device) -> Result<Self, String> {
        let mut cmd = dev.alloc(4096).map_err(|e| e.to_string())?;
        let code = assemble(&[Insn::End]);
        cmd.bytes_mut()[..code.len()].copy_from_slice(&code);
        Ok(NullJob { cmd })
    }
    fn job(&self) -> Job<'_> {
        Job::new(&self.cmd, 64)
    }
}

/// BAR0 of the NPU mapped from sysfs; writes to the read-only ID register
/// are ignored by the device, so they cost exactly one MMIO write.
fn mmio_write_latency(n: usize) -> Option<Vec<f64>> {
    let accel = npu::device::find_devices().into_iter().next()?;
    let name = accel.file_name()?.to_string_lossy().into_owned();
    let pci = std::fs::read_link(format!("/sys/class/accel/{name}/device")).ok()?;
    let res = format!(
        "/sys/bus/pci/devices/{}/resource0",
        pci.file_name()?.to_string_lossy()
    );
    let f = OpenOptions::new().read(true).write(true).open(res).ok()?;
    let map = memmap2::MmapOptions::new().len(4096).map_raw(&f).ok()?;
    let reg = map.as_mut_ptr().cast::<u32>();
    let mut v = Vec::with_capacity(n);
    for _ in 0..n {
        let t = Instant::now();
        // SAFETY: offset 0 of BAR0 is the read-only ID register; the write
        // is ignored by the device and nothing else aliases the mapping.
        unsafe { reg.write_volatile(0) };
        v.push(us(t.elapsed()));
    }
    Some(v)
}

fn latency(dev: &Device, n: usize) -> Result<(), String> {
    let null = NullJob::new(dev)?;
    let mut rt = Vec::with_capacity(n);
    // Where the round trip goes: the SUBMIT ioctl, then the WAIT ioctl
    // (doorbell to interrupt to fence to wake-up).
    let (mut sub, mut wait) = (Vec::with_capacity(n), Vec::with_capacity(n));
    for _ in 0..n {
        let t = Instant::now();
        let s = dev.submit(&null.job()).map_err(|e| e.to_string())?;
        let t1 = Instant::now();
        dev.wait(s, Duration::from_secs(10))
            .map_err(|e| e.to_string())?;
        let t2 = Instant::now();
        rt.push(us(t2 - t));
        sub.push(us(t1 - t));
        wait.push(us(t2 - t1));
    }
    let (sub50, wait50) = (percentile(&mut sub, 0.5), percentile(&mut wait, 0.5));
    let mut io = Vec::with_capacity(n);
    for _ in 0..n {
        let t = Instant::now();
        dev.param(npu_uapi::DRM_ONPU_PARAM_SRAM_SIZE)
            .map_err(|e| e.to_string())?;
        io.push(us(t.elapsed()));
    }
    let mut mmio = mmio_write_latency(n).ok_or("cannot map BAR0 from sysfs (root needed)")?;
    let (rt50, rt99) = (percentile(&mut rt, 0.5), percentile(&mut rt, 0.99));
    let (io50, io99) = (percentile(&mut io, 0.5), percentile(&mut io, 0.99));
    let (mm50, mm99) = (percentile(&mut mmio, 0.5), percentile(&mut mmio, 0.99));
    let ratio = rt50 / (io50 + mm50);
    println!("submission round trip (null job, {n} runs): p50 {rt50:.1} us, p99 {rt99:.1} us");
    println!("  of which SUBMIT ioctl p50 {sub50:.1} us, WAIT ioctl p50 {wait50:.1} us");
    println!("  baselines: no-op ioctl p50 {io50:.1} us p99 {io99:.1} us; MMIO write p50 {mm50:.1} us p99 {mm99:.1} us");
    println!("  round trip / (ioctl + MMIO write) at p50: {ratio:.2}x (goal <= 2x)");
    bench_line(
        "latency",
        "null_job_round_trip",
        &[
            ("p50_us", rt50),
            ("p99_us", rt99),
            ("ioctl_p50_us", io50),
            ("ioctl_p99_us", io99),
            ("mmio_p50_us", mm50),
            ("mmio_p99_us", mm99),
            ("ratio_p50", ratio),
            ("submit_p50_us", sub50),
            ("wait_p50_us", wait50),
        ],
    );
    Ok(())
}

/// `procs` processes each keeping `depth` null jobs in flight for `secs`.
fn throughput(procs: usize, depth: usize, secs: f64) -> Result<f64, String> {
    let mut pids = Vec::new();
    let mut fds = Vec::new();
    for _ in 0..procs {
        let mut p = [0i32; 2];
        // SAFETY: a pipe to collect the child's count.
        unsafe { libc::pipe(p.as_mut_ptr()) };
        // SAFETY: the child runs the loop below and _exits.
        let pid = unsafe { libc::fork() };
        if pid == 0 {
            let count = (|| -> Result<u64, String> {
                let dev = Device::open().map_err(|e| e.to_string())?;
                let null = NullJob::new(&dev)?;
                let mut q = std::collections::VecDeque::new();
                let end = Instant::now() + Duration::from_secs_f64(secs);
                let mut done = 0u64;
                while Instant::now() < end {
                    while q.len() < depth {
                        q.push_back(dev.submit(&null.job()).map_err(|e| e.to_string())?);
                    }
                    if let Some(s) = q.pop_front() {
                        dev.wait(s, Duration::from_secs(10))
                            .map_err(|e| e.to_string())?;
                        done += 1;
                    }
                }
                for s in q {
                    let _ = dev.wait(s, Duration::from_secs(10));
                }
                Ok(done)
            })()
            .unwrap_or(0);
            let b = count.to_ne_bytes();
            // SAFETY: writing 8 bytes to our pipe, then leaving.
            unsafe {
                libc::write(p[1], b.as_ptr().cast(), 8);
                libc::_exit(0);
            }
        }
        // SAFETY: the parent only reads.
        unsafe { libc::close(p[1]) };
        pids.push(pid);
        fds.push(p[0]);
    }
    let mut total = 0u64;
    for (pid, fd) in pids.into_iter().zip(fds) {
        let mut b = [0u8; 8];
        // SAFETY: reading the child's 8 bytes; then reaping it.
        unsafe {
            libc::read(fd, b.as_mut_ptr().cast(), 8);
            libc::close(fd);
            libc::waitpid(pid, std::ptr::null_mut(), 0);
        }
        total += u64::from_ne_bytes(b);
    }
    Ok(total as f64 / secs)
}

fn buffers(dev: &Device, quick: bool) -> Result<(), String> {
    for size in [4u64 << 10, 64 << 10, 1 << 20, 16 << 20, 64 << 20] {
        let iters = if quick {
            2
        } else {
            ((256u64 << 20) / size).clamp(3, 500)
        };
        let t = Instant::now();
        for _ in 0..iters {
            let mut b = dev.alloc(size).map_err(|e| e.to_string())?;
            let bytes = b.bytes_mut();
            for i in (0..bytes.len()).step_by(4096) {
                bytes[i] = 1;
            }
        }
        let per_s = iters as f64 / t.elapsed().as_secs_f64();
        println!(
            "buffer create+map+touch+close, {:>6} KiB: {per_s:>9.1} /s ({:.1} MiB/s)",
            size >> 10,
            per_s * size as f64 / (1 << 20) as f64
        );
        bench_line(
            "buffers",
            &format!("{}KiB", size >> 10),
            &[
                ("size", size as f64),
                ("per_s", per_s),
                ("mib_per_s", per_s * size as f64 / (1 << 20) as f64),
            ],
        );
    }
    Ok(())
}

fn compute(quick: bool) -> Result<(), String> {
    let mut s = Session::open().map_err(|e| e.to_string())?;
    let small_cnn = include_str!("../../../libnpu/examples/small_cnn.npu");
    let mut kernels: Vec<(String, String)> = Vec::new();
    for n in if quick { vec![64] } else { vec![64, 128, 256] } {
        kernels.push((
            format!("gemm_f32_{n}"),
            format!("input a: f32[{n},{n}]\ninput b: f32[{n},{n}]\ny = gemm(a, b)\noutput y\n"),
        ));
        kernels.push((
            format!("gemm_i8_{n}"),
            format!("input a: i8[{n},{n}] q(scale=0.02, zp=0)\ninput b: i8[{n},{n}] q(scale=0.01, zp=0)\ny: i8 q(scale=0.1, zp=0) = gemm(a, b)\noutput y\n"),
        ));
    }
    kernels.push(("conv2d_3x3_16ch_32px".into(), "input x: f32[1,16,32,32]\ninput w: f32[16,16,3,3]\ny = conv2d(x, w, stride=1, pad=1)\noutput y\n".into()));
    kernels.push(("small_cnn".into(), small_cnn.into()));
    for (name, src) in kernels {
        let k = s.compile_text(&src).map_err(|e| format!("{name}: {e}"))?;
        let inputs = runtime::random_inputs(&k.graph, 1);
        let mut dev_t = Vec::new();
        let mut out = None;
        for _ in 0..3 {
            let t = Instant::now();
            let r = s.run(&k, &inputs).map_err(|e| format!("{name}: {e}"))?;
            dev_t.push(t.elapsed().as_secs_f64());
            out = Some(r);
        }
        // The baseline the same way: the median of three runs.
        let mut cpu_t = Vec::new();
        for _ in 0..3 {
            let t = Instant::now();
            reference::run(&k.graph, &inputs).map_err(|e| format!("{name}: {e}"))?;
            cpu_t.push(t.elapsed().as_secs_f64());
        }
        let cpu = percentile(&mut cpu_t, 0.5);
        let run = out.ok_or("no run")?;
        runtime::check(&k.graph, &inputs, &run.outputs, 1e-3)
            .map_err(|e| format!("{name}: {e}"))?;
        let npu = percentile(&mut dev_t, 0.5);
        println!(
            "{name:<22} compile {:>7.3} ms  NPU (whole stack) {:>9.3} ms  guest CPU {:>9.3} ms  speed-up {:>6.1}x  ({} cycles)",
            k.compile_time.as_secs_f64() * 1e3,
            npu * 1e3,
            cpu * 1e3,
            cpu / npu,
            run.cycles
        );
        bench_line(
            "compute",
            &name,
            &[
                ("compile_ms", k.compile_time.as_secs_f64() * 1e3),
                ("npu_ms", npu * 1e3),
                ("cpu_ms", cpu * 1e3),
                ("speedup", cpu / npu),
                ("cycles", run.cycles as f64),
            ],
        );
    }
    Ok(())
}

/// Bytes through the kernel's bounce buffers (swiotlb), from debugfs.
fn swiotlb_hiwater() -> Option<u64> {
    std::fs::read_to_string("/sys/kernel/debug/swiotlb/io_tlb_used_hiwater")
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// A buffer written through its mapping reaches the device as it is: the
/// device copies it to another buffer, and we count the copies made on the
/// way (bounce buffering; libnpu does none: the user writes the mapping).
fn zero_copy(dev: &Device) -> Result<(), String> {
    let size = 16u64 << 20;
    let before = swiotlb_hiwater();
    let mut src = dev.alloc(size).map_err(|e| e.to_string())?;
    let dst = dev.alloc(size).map_err(|e| e.to_string())?;
    for (i, b) in src.view_mut::<u32>().iter_mut().enumerate() {
        *b = i as u32 ^ 0x5a5a_5a5a;
    }
    let mut cmd = dev.alloc(1 << 20).map_err(|e| e.to_string())?;
    let chunk = 256u32 << 10;
    let mut insns = Vec::new();
    for off in (0..size).step_by(chunk as usize) {
        let c = Strided::contiguous(chunk);
        insns.push(Insn::DmaLoad {
            va: src.npu_addr() + off,
            sram: 0,
            mem: c,
            sram_layout: c,
        });
        insns.push(Insn::DmaStore {
            va: dst.npu_addr() + off,
            sram: 0,
            mem: c,
            sram_layout: c,
        });
    }
    insns.push(Insn::End);
    let code = assemble(&insns);
    cmd.bytes_mut()[..code.len()].copy_from_slice(&code);
    let job = Job::new(&cmd, code.len() as u64).reads(&src).writes(&dst);
    let s = dev.submit(&job).map_err(|e| e.to_string())?;
    dev.wait(s, Duration::from_secs(30))
        .map_err(|e| e.to_string())?;
    if dst.view::<u32>() != src.view::<u32>() {
        return Err("the device's copy differs".into());
    }
    let after = swiotlb_hiwater();
    let (bounced, how) = match (before, after) {
        (Some(b), Some(a)) => (
            (a.saturating_sub(b)) as f64,
            format!("swiotlb high water {b} -> {a}"),
        ),
        // No pool (all memory is DMA-able with the driver's 52-bit mask):
        // nothing can bounce.
        // (The directory exists empty when the kernel set up no pool.)
        _ if !std::path::Path::new("/sys/kernel/debug/swiotlb/io_tlb_nslabs").exists() => {
            (0.0, "no swiotlb pool in this kernel".into())
        }
        _ => (-1.0, "swiotlb counters unreadable".into()),
    };
    println!("zero copy: 16 MiB written through the mapping, copied by the device, identical; CPU copies by libnpu 0, bounce-buffer slots used {bounced} ({how})");
    bench_line(
        "copies",
        "mapped_buffer_to_device",
        &[
            ("bytes", size as f64),
            ("libnpu_copies", 0.0),
            ("swiotlb_slots", bounced),
        ],
    );
    Ok(())
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let quick = args.iter().any(|a| a == "--quick");
    const SECTIONS: [&str; 5] = ["latency", "throughput", "buffers", "compute", "copies"];
    let only = args
        .iter()
        .position(|a| a == "--only")
        .map(|i| args.get(i + 1).cloned().unwrap_or_default());
    if let Some(o) = &only {
        if !SECTIONS.contains(&o.as_str()) {
            eprintln!(
                "npu-bench: --only takes one of {}, not `{o}`",
                SECTIONS.join(", ")
            );
            std::process::exit(2);
        }
    }
    if let Some(a) = args
        .iter()
        .enumerate()
        .find(|&(i, a)| a != "--quick" && a != "--only" && (i == 0 || args[i - 1] != "--only"))
        .map(|(_, a)| a)
    {
        eprintln!(
            "npu-bench: unknown argument `{a}` (usage: npu-bench [--quick] [--only SECTION])"
        );
        std::process::exit(2);
    }
    let run = |s: &str| only.as_deref().is_none_or(|o| o == s);
    let dev = match Device::open() {
        Ok(d) => d,
        Err(e) => {
            eprintln!("npu-bench: {e}");
            std::process::exit(1);
        }
    };
    let mut failed = false;
    let mut step = |what: &str, r: Result<(), String>| {
        if let Err(e) = r {
            eprintln!("npu-bench: {what}: {e}");
            failed = true;
        }
    };
    if run("latency") {
        step("latency", latency(&dev, if quick { 200 } else { 2000 }));
    }
    let secs = if quick { 0.2 } else { 1.0 };
    for procs in if run("throughput") {
        vec![1usize, 4]
    } else {
        vec![]
    } {
        let mut line = format!("jobs/s, {procs} process(es), depth 1..64:");
        for depth in [1usize, 2, 4, 8, 16, 32, 64] {
            match throughput(procs, depth, secs) {
                Ok(jps) => {
                    line += &format!(" {jps:.0}");
                    bench_line(
                        "throughput",
                        &format!("p{procs}_d{depth}"),
                        &[
                            ("procs", procs as f64),
                            ("depth", depth as f64),
                            ("jobs_per_s", jps),
                        ],
                    );
                }
                Err(e) => step("throughput", Err(e)),
            }
        }
        println!("{line}");
    }
    if run("buffers") {
        step("buffers", buffers(&dev, quick));
    }
    if run("compute") {
        step("compute", compute(quick));
    }
    if run("copies") {
        step("zero copy", zero_copy(&dev));
    }
    std::process::exit(i32::from(failed));
}
